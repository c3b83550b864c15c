"""Transcript tests for the accepting side of XEP-0114, sans-I/O."""

from __future__ import annotations

import hashlib

from zerolink.proto import component as comp
from zerolink.proto.component import ComponentSession, handshake_digest
from zerolink.xml.element import SERVER_NS, Element

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='bot.air.example'>"
)


def new() -> ComponentSession:
    return ComponentSession({"bot.air.example": "bot-secret"}, "abc123")


def authed() -> ComponentSession:
    s = new()
    s.receive_data(HEADER, 0.0)
    digest = handshake_digest("abc123", "bot-secret").encode()
    events = s.receive_data(b"<handshake>" + digest + b"</handshake>", 0.0)
    assert events == [comp.Authenticated("bot.air.example")]
    s.data_to_send()
    return s


def test_handshake_digest_is_lowercase_hex_sha1_of_id_then_secret():
    # XEP-0114 §3: SHA-1 over the stream id concatenated with the secret, in hex.
    expected = hashlib.sha1(b"3BF96D32sundance").hexdigest()
    assert handshake_digest("3BF96D32", "sundance") == expected
    assert handshake_digest("3BF96D32", "sundance") != handshake_digest("sundance", "3BF96D32")


def test_header_and_handshake():
    s = new()
    assert s.receive_data(HEADER, 0.0) == []
    out = s.data_to_send()
    assert out.startswith(b"<?xml version='1.0'?><stream:stream ")
    assert b"xmlns='jabber:component:accept'" in out
    assert b"id='abc123'" in out and b"from='bot.air.example'" in out
    digest = handshake_digest("abc123", "bot-secret").encode()
    assert s.receive_data(b"<handshake>" + digest + b"</handshake>", 0.0) == [
        comp.Authenticated("bot.air.example")
    ]
    assert s.data_to_send() == b"<handshake/>"
    assert s.state is comp.State.OPEN


def test_wrong_secret_is_not_authorized():
    s = new()
    s.receive_data(HEADER, 0.0)
    s.data_to_send()
    events = s.receive_data(b"<handshake>" + b"0" * 40 + b"</handshake>", 0.0)
    assert events[0] == comp.StreamErrorSent("not-authorized", "wrong handshake")
    assert isinstance(events[1], comp.Closed)
    assert b"<not-authorized " in s.data_to_send()


def test_unknown_domain_is_host_unknown_after_our_header():
    s = ComponentSession({"other.example": "x"}, "id1")
    events = s.receive_data(HEADER, 0.0)
    assert events[0].condition == "host-unknown"
    out = s.data_to_send()
    assert out.startswith(b"<?xml version='1.0'?><stream:stream ")
    assert out.count(b"<stream:stream") == 1
    assert b"<host-unknown " in out and out.endswith(b"</stream:stream>")


def test_stanza_before_handshake_is_not_authorized():
    s = new()
    s.receive_data(HEADER, 0.0)
    events = s.receive_data(b"<message from='bot.air.example' to='a@air.example'/>", 0.0)
    assert events[0].condition == "not-authorized"


def test_wrong_stream_namespace():
    s = new()
    events = s.receive_data(HEADER.replace(b"jabber:component:accept", b"jabber:client"), 0.0)
    assert events[0].condition == "invalid-namespace"


def test_stanzas_are_held_in_server_namespace_and_written_in_component_namespace():
    s = authed()
    events = s.receive_data(
        b"<message from='bot.air.example' to='ops@ground.example'><body>x</body></message>", 0.0
    )
    (ev,) = events
    assert isinstance(ev, comp.StanzaIn)
    assert ev.stanza.tag == f"{{{SERVER_NS}}}message"
    assert ev.stanza.find(f"{{{SERVER_NS}}}body").text == "x"
    s.send_stanza(ev.stanza)
    assert s.data_to_send() == (
        b"<message from='bot.air.example' to='ops@ground.example'><body>x</body></message>"
    )


def test_from_outside_component_domain_is_invalid_from():
    s = authed()
    events = s.receive_data(b"<message from='x@air.example' to='a@ground.example'/>", 0.0)
    assert events[0].condition == "invalid-from"


def test_from_a_user_of_the_component_is_fine():
    s = authed()
    events = s.receive_data(b"<message from='u@bot.air.example/r' to='a@ground.example'/>", 0.0)
    assert isinstance(events[0], comp.StanzaIn)


def test_missing_or_malformed_to_is_a_stanza_error():
    s = authed()
    (ev,) = s.receive_data(b"<message from='bot.air.example' id='1'/>", 0.0)
    assert isinstance(ev, comp.StanzaRejected) and ev.error.condition == "jid-malformed"
    (ev,) = s.receive_data(b"<message from='bot.air.example' to='a b@x.example'/>", 0.0)
    assert isinstance(ev, comp.StanzaRejected)
    assert s.state is comp.State.OPEN


def test_close_both_ways():
    s = authed()
    events = s.receive_data(b"</stream:stream>", 0.0)
    assert isinstance(events[0], comp.Closed)
    assert s.data_to_send() == b"</stream:stream>"
    s2 = authed()
    s2.close(0.0)
    assert s2.data_to_send() == b"</stream:stream>"
    assert s2.timer() == 10.0
    assert isinstance(s2.handle_timer(10.0)[0], comp.Closed)


def test_element_serialization_roundtrip_through_component():
    s = authed()
    el = Element(
        f"{{{SERVER_NS}}}iq",
        {"from": "bot.air.example", "to": "air.example", "type": "get", "id": "p"},
        [Element("{urn:xmpp:ping}ping")],
    )
    s.send_stanza(el)
    data = s.data_to_send()
    (ev,) = authed().receive_data(data, 0.0)
    assert ev.stanza == el


def test_stanzas_before_malformed_xml_are_delivered():
    s = authed()
    good = b"<message from='bot.air.example' to='a@ground.example'/>"
    events = s.receive_data(good + b"<message><x></y>", 0.0)
    assert isinstance(events[0], comp.StanzaIn)
    assert events[1].condition == "not-well-formed"


def test_addresses_go_on_normalized():
    s = authed()
    raw = b"<message from='U@BOT.AIR.EXAMPLE.' to='A@Ground.Example/R'/>"
    (ev,) = s.receive_data(raw, 0.0)
    assert isinstance(ev, comp.StanzaIn)
    assert ev.stanza.get("from") == "u@bot.air.example"
    assert ev.stanza.get("to") == "a@ground.example/R"


def test_non_ascii_handshake_is_not_authorized():
    # hmac.compare_digest refuses non-ASCII str (TypeError): a handshake with "é" or "€" is
    # simply wrong, answered like any other wrong handshake, never a traceback.
    for text in ("é" * 40, "€", handshake_digest("abc123", "bot-secret")[:-1] + "é"):
        s = new()
        s.receive_data(HEADER, 0.0)
        s.data_to_send()
        events = s.receive_data(f"<handshake>{text}</handshake>".encode(), 0.0)
        assert events[0] == comp.StreamErrorSent("not-authorized", "wrong handshake")
        assert isinstance(events[1], comp.Closed)
        assert b"<not-authorized " in s.data_to_send()


# -- found by the fuzz harness (tests/fuzz) --------------------------------------------------
def test_nothing_is_written_after_our_close():
    """RFC 6120 §4.4: malformed input after our </stream:stream> ends the stream without a
    stream error or a second close written after it."""
    s = authed()
    s.close(1.0)
    assert s.data_to_send() == b"</stream:stream>"
    events = s.receive_data(b"<<", 2.0)
    assert isinstance(events[-1], comp.Closed) and s.state is comp.State.CLOSED
    assert s.data_to_send() == b""


def test_a_stream_error_received_while_closing_is_not_answered():
    s = authed()
    s.close(1.0)
    s.data_to_send()
    error = b"<stream:error><reset xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
    events = s.receive_data(error, 2.0)
    assert [type(e) for e in events] == [comp.Closed]
    assert s.data_to_send() == b""


def test_nothing_follows_the_close_of_a_stream_error_received():
    """A <stream:error> ends the stream: what follows in the same read is not processed (no
    second Closed, no stream error of ours after our </stream:stream>)."""
    s = authed()
    error = b"<stream:error><reset xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
    for tail in (b"<<", b"</stream:stream>", b"<message from='bot.air.example'/>"):
        s = authed()
        events = s.receive_data(error + tail, 0.0)
        assert [type(e) for e in events] == [comp.Closed], tail
        assert s.data_to_send() == b"</stream:stream>"


def test_close_before_the_header_reports_closed():
    """Drivers close the transport on Closed: a session closed before the component's header
    must say so, or the connection stays open."""
    s = new()
    events = s.close(0.0)
    assert [type(e) for e in events] == [comp.Closed] and s.state is comp.State.CLOSED
    assert s.data_to_send() == b""


def test_stream_error_on_a_closed_stream_reports_nothing():
    """A stream error of ours (e.g. the output budget) on a stream already over: no second
    Closed, nothing written (the driver closes the transport once)."""
    s = authed()
    assert [type(e) for e in s.receive_data(b"</stream:stream>", 0.0)] == [comp.Closed]
    s.data_to_send()
    assert s.stream_error("policy-violation", "over budget") == []
    assert s.data_to_send() == b""
