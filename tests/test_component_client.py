"""Transcript tests for the connecting side of XEP-0114 (the gateway's upstream attachment)."""

from __future__ import annotations

import hashlib

from zerolink.proto import component as server_side
from zerolink.proto import component_client as client_side
from zerolink.proto.component_client import ComponentClient
from zerolink.xml.element import SERVER_NS, Element


def pair() -> tuple[ComponentClient, server_side.ComponentSession]:
    return (
        ComponentClient("ground.example", "gw-secret"),
        server_side.ComponentSession({"ground.example": "gw-secret"}, "s1d"),
    )


def test_client_speaks_first_and_authenticates_against_our_own_server_side():
    c, s = pair()
    hello = c.data_to_send()
    assert hello.startswith(b"<stream:stream xmlns='jabber:component:accept'")
    assert b"to='ground.example'" in hello and not hello.startswith(b"<?xml")
    assert s.receive_data(hello, 0.0) == []
    assert c.receive_data(s.data_to_send(), 0.0) == []
    expected = hashlib.sha1(b"s1dgw-secret").hexdigest().encode()
    handshake = c.data_to_send()
    assert handshake == b"<handshake>" + expected + b"</handshake>"
    assert s.receive_data(handshake, 0.0) == [server_side.Authenticated("ground.example")]
    assert c.receive_data(s.data_to_send(), 0.0) == [client_side.Connected()]
    # stanzas both ways, nothing answered by the client itself
    probe = b"<presence type='probe' from='pilot@air.example' to='ops@ground.example'/>"
    s.send_stanza(
        Element(
            f"{{{SERVER_NS}}}presence",
            {"type": "probe", "from": "pilot@air.example", "to": "ops@ground.example"},
        )
    )
    data = s.data_to_send()
    assert data == probe
    (ev,) = c.receive_data(data, 0.0)
    assert isinstance(ev, client_side.StanzaIn) and ev.stanza.get("type") == "probe"
    assert c.data_to_send() == b""  # no automatic answer to a probe


def test_wrong_secret_is_reported():
    c, _ = pair()
    c.data_to_send()
    s = server_side.ComponentSession({"ground.example": "other"}, "x")
    s.receive_data(
        b"<stream:stream xmlns='jabber:component:accept' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='ground.example'>",
        0.0,
    )
    c.receive_data(s.data_to_send(), 0.0)
    s.receive_data(c.data_to_send(), 0.0)
    events = c.receive_data(s.data_to_send(), 0.0)
    assert events[0] == client_side.Failed("not-authorized", "wrong handshake")
    assert isinstance(events[1], client_side.Closed)
    assert c.state is client_side.State.CLOSED


def test_header_without_id_fails_when_no_stream_error_explains_it():
    c, _ = pair()
    events = c.receive_data(
        b"<stream:stream xmlns='jabber:component:accept' "
        b"xmlns:stream='http://etherx.jabber.org/streams'>",
        0.0,
    )
    assert events == []
    events = c.receive_data(b"</stream:stream>", 0.0)
    assert events[0] == client_side.Failed("invalid-xml", "upstream stream header has no id")


def test_close_exchange():
    c, s = pair()
    s.receive_data(c.data_to_send(), 0.0)
    c.receive_data(s.data_to_send(), 0.0)
    s.receive_data(c.data_to_send(), 0.0)
    c.receive_data(s.data_to_send(), 0.0)
    c.close(1.0)
    assert c.data_to_send() == b"</stream:stream>"
    assert c.timer() == 11.0
    events = s.receive_data(b"</stream:stream>", 1.0)
    assert isinstance(events[0], server_side.Closed)
    events = c.receive_data(s.data_to_send(), 1.0)
    assert isinstance(events[0], client_side.Closed)


def test_empty_id_followed_by_a_stream_error_reports_that_error():
    c, _ = pair()
    c.data_to_send()
    events = c.receive_data(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' id='' "
        b"xmlns:stream='http://etherx.jabber.org/streams'><stream:error>"
        b"<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no such component</text>"
        b"</stream:error></stream:stream>",
        0.0,
    )
    assert events[0] == client_side.Failed("host-unknown", "no such component")


# -- found by the fuzz harness (tests/fuzz) --------------------------------------------------
def test_nothing_is_written_after_our_close():
    """RFC 6120 §4.4: malformed input after our </stream:stream> ends the stream without a
    stream error or a second close written after it."""
    c, s = pair()
    s.receive_data(c.data_to_send(), 0.0)
    c.receive_data(s.data_to_send(), 0.0)
    c.data_to_send()
    c.close(1.0)
    assert c.data_to_send() == b"</stream:stream>"
    events = c.receive_data(b"<<", 2.0)
    assert isinstance(events[-1], client_side.Closed) and c.state is client_side.State.CLOSED
    assert c.data_to_send() == b""
