"""Link compression codec (zerolink.proto.compression), in memory."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerolink.errors import RemoteProtocolError
from zerolink.proto.compression import (
    CHUNK,
    CompressionSpec,
    Compressor,
    Decompressor,
    link_dictionary,
)

DOMAINS = ("air.example", "ground.example")


def spec(codec: str, scope: str = "stream", dic: str = "builtin", domains=DOMAINS):
    return CompressionSpec(codec, scope, link_dictionary(codec, dic, domains), dic)


SPECS = [spec(c, s, d) for c in ("zlib", "zstd") for s in ("stream", "stanza") for d in
         ("builtin", "none")]

stanzas = st.lists(
    st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=4), max_size=6
)


@settings(max_examples=40, deadline=None)
@given(bursts=stanzas, cuts=st.lists(st.integers(min_value=1, max_value=50), max_size=20))
@pytest.mark.parametrize("sp", SPECS, ids=lambda s: f"{s.codec}-{s.scope}-{s.dictionary_name}")
def test_round_trip_any_bursts_any_split(sp, bursts, cuts):
    c, d = Compressor(sp), Decompressor(sp)
    wire = b"".join(c.compress(b) for b in bursts)
    out, i = [], 0
    for n in [*cuts, len(wire)]:
        out.extend(d.feed(wire[i : i + n]))
        i += n
    assert b"".join(out) == b"".join(b"".join(b) for b in bursts)


@pytest.mark.parametrize("sp", SPECS[:4:2], ids=lambda s: s.codec)
def test_each_burst_readable_when_it_arrives(sp):
    c, d = Compressor(sp), Decompressor(sp)
    for i in range(5):
        msg = b"<message id='%d'/>" % i
        assert b"".join(d.feed(c.compress([msg]))) == msg


@pytest.mark.parametrize("codec", ["zlib", "zstd"])
def test_dictionary_mismatch_is_named(codec):
    a = Compressor(spec(codec, domains=("a.example", "b.example")))
    b = Decompressor(spec(codec, domains=("a.example", "c.example")))
    with pytest.raises(RemoteProtocolError) as e:
        list(b.feed(a.compress([b"<message/>"])))
    assert e.value.condition == "bad-format"
    assert "dictionary id" in e.value.text and "compression mismatch" in e.value.text


def test_codec_mismatch_is_named():
    with pytest.raises(RemoteProtocolError, match=r"peer sends zlib.*expects zstd"):
        list(Decompressor(spec("zstd")).feed(Compressor(spec("zlib")).compress([b"<x/>"])))


def test_scope_mismatch_is_named():
    with pytest.raises(RemoteProtocolError, match=r"scope stanza.*scope stream"):
        list(Decompressor(spec("zlib")).feed(Compressor(spec("zlib", "stanza")).compress([b"x"])))


def test_plain_peer_on_a_compressed_link_is_named():
    with pytest.raises(RemoteProtocolError, match=r"uncompressed.*one side only"):
        list(Decompressor(spec("zlib")).feed(b"<message/>"))


@pytest.mark.parametrize("codec", ["zlib", "zstd"])
def test_corrupt_compressed_stream_is_bad_format(codec):
    wire = bytearray(Compressor(spec(codec, dic="none")).compress([b"<message>" * 20]))
    for i in range(6, len(wire)):
        wire[i] ^= 0x5A
    with pytest.raises(RemoteProtocolError) as e:
        list(Decompressor(spec(codec, dic="none")).feed(bytes(wire)))
    assert e.value.condition == "bad-format"


@pytest.mark.parametrize("codec", ["zlib", "zstd"])
def test_bomb_is_handed_out_in_bounded_chunks(codec):
    sp = spec(codec, dic="none")
    wire = Compressor(sp).compress([b" " * (8 * 1024 * 1024)])
    assert len(wire) < 100_000
    sizes = [len(c) for c in Decompressor(sp).feed(wire)]
    assert sum(sizes) == 8 * 1024 * 1024
    assert max(sizes) <= 3 * CHUNK


def test_zlib_wire_is_raw_deflate_after_the_header():
    sp = spec("zlib", dic="none")
    wire = Compressor(sp).compress([b"<message/>"])
    assert wire[0] == 0xFE and wire[1] == 0x10 and wire[2:6] == bytes(4)
    assert zlib.decompressobj(-15).decompress(wire[6:]) == b"<message/>"
