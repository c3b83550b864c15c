"""Transcript tests for compression on the sans-I/O X2X session (docs/protocol.md)."""

from __future__ import annotations

import pytest

from zerolink.domains import DomainSet
from zerolink.proto import x2x
from zerolink.proto.compression import CompressionSpec, link_dictionary
from zerolink.proto.x2x import X2XSession, X2XSettings
from zerolink.xml.element import SERVER_NS, Element

AIR = DomainSet(["air.example"])
GROUND = DomainSet(["ground.example"])
LINK = ("air.example", "ground.example")


def spec(codec="zstd", scope="stream", dic="builtin", domains=LINK) -> CompressionSpec:
    return CompressionSpec(codec, scope, link_dictionary(codec, dic, domains), dic)


def session(local, peer, compression) -> X2XSession:
    settings = X2XSettings(
        peer_domains=peer, is_local=local.__contains__, compression=compression
    )
    return X2XSession(settings, now=0.0)


def message(i: int, frm="a@air.example/r", to="b@ground.example/r") -> Element:
    el = Element(f"{{{SERVER_NS}}}message", {"from": frm, "to": to, "id": str(i)})
    el.subelement(f"{{{SERVER_NS}}}body", text=f"hello {i}")
    return el


def errors(events) -> list[x2x.StreamErrorSent]:
    return [e for e in events if isinstance(e, x2x.StreamErrorSent)]


@pytest.mark.parametrize("codec", ["zlib", "zstd"])
@pytest.mark.parametrize("scope", ["stream", "stanza"])
def test_compressed_link_delivers_both_ways(codec, scope):
    a = session(AIR, GROUND, spec(codec, scope))
    g = session(GROUND, AIR, spec(codec, scope))
    for i in range(3):
        a.send_stanza(message(i), 0.0)
        a.send_stanza(message(i + 100), 0.0)
        wire = a.data_to_send()
        assert wire[:1] == (b"\xfe" if i == 0 else wire[:1])
        got = [e.stanza.attrib["id"] for e in g.receive_data(wire, 0.0)]
        assert got == [str(i), str(i + 100)]
        g.send_stanza(message(i, "b@ground.example/r", "a@air.example/r"), 0.0)
        assert [e.stanza.attrib["id"] for e in a.receive_data(g.data_to_send(), 0.0)] == [str(i)]
    assert a.counters.wire_out < a.counters.bytes_out


def test_compression_dictionary_mismatch_is_named_on_both_sides():
    a = session(AIR, GROUND, spec(domains=("air.example", "ground.example")))
    g = session(GROUND, AIR, spec(domains=("air.example", "ground.example", "x.example")))
    a.send_stanza(message(1), 0.0)
    g.send_stanza(message(2, "b@ground.example/r", "a@air.example/r"), 0.0)
    a_wire, g_wire = a.data_to_send(), g.data_to_send()
    for side, wire in ((g, a_wire), (a, g_wire)):
        (err,) = errors(side.receive_data(wire, 0.0))
        assert err.condition == "bad-format"
        assert "compression mismatch" in err.text and "dictionary id" in err.text


def test_compression_on_one_side_only_is_named_on_both_sides():
    on = session(AIR, GROUND, spec("zlib"))
    off = session(GROUND, AIR, None)
    on.send_stanza(message(1), 0.0)
    off.send_stanza(message(2, "b@ground.example/r", "a@air.example/r"), 0.0)
    on_wire, off_wire = on.data_to_send(), off.data_to_send()
    (err,) = errors(off.receive_data(on_wire, 0.0))
    assert err.condition == "bad-format" and "compression is off" in err.text
    (err,) = errors(on.receive_data(off_wire, 0.0))
    assert err.condition == "bad-format" and "uncompressed" in err.text


def test_compression_corrupt_stream_is_a_stream_error():
    a = session(AIR, GROUND, spec("zlib", dic="none"))
    g = session(GROUND, AIR, spec("zlib", dic="none"))
    a.send_stanza(message(1), 0.0)
    wire = bytearray(a.data_to_send())
    wire[8:] = bytes(b ^ 0xA5 for b in wire[8:])
    events = g.receive_data(bytes(wire), 0.0)
    (err,) = errors(events)
    assert err.condition == "bad-format"
    assert g.state is x2x.State.CLOSED


def test_compression_stanza_limit_still_applies():
    a = session(AIR, GROUND, spec("zstd"))
    small = X2XSettings(
        peer_domains=AIR, is_local=GROUND.__contains__, compression=spec("zstd"),
        max_stanza_size=4096,
    )
    g = X2XSession(small, now=0.0)
    big = message(1)
    big.subelement(f"{{{SERVER_NS}}}x", text="a" * 100_000)
    a.send_stanza(big, 0.0)
    (err,) = errors(g.receive_data(a.data_to_send(), 0.0))
    assert err.condition == "policy-violation"
