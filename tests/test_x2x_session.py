"""Transcript tests for the sans-I/O X2X session: bytes in -> events and bytes out."""

from __future__ import annotations

import pytest

from zerolink.domains import DomainSet
from zerolink.proto import x2x
from zerolink.proto.x2x import X2XSession, X2XSettings
from zerolink.xml.element import SERVER_NS, Element

AIR = DomainSet(["air.example", "*.air.example"])
GROUND = DomainSet(["ground.example", "*.ground.example"])


def session(local: DomainSet, peer: DomainSet, **kw) -> X2XSession:
    settings = X2XSettings(peer_domains=peer, is_local=local.__contains__, **kw)
    return X2XSession(settings, now=0.0)


def air() -> X2XSession:
    """Air's session: its peer is ground."""
    return session(AIR, GROUND)


def ground() -> X2XSession:
    return session(GROUND, AIR)


def message(frm: str, to: str, body: str = "hi", **attrs: str) -> Element:
    el = Element(f"{{{SERVER_NS}}}message", {"from": frm, "to": to, **attrs})
    el.subelement(f"{{{SERVER_NS}}}body", text=body)
    return el


def transfer(a: X2XSession, b: X2XSession, now: float = 0.0) -> list[x2x.Event]:
    return b.receive_data(a.data_to_send(), now)


def stanzas(events: list[x2x.Event]) -> list[Element]:
    return [e.stanza for e in events if isinstance(e, x2x.StanzaIn)]


def closed(events: list[x2x.Event]) -> x2x.Closed | None:
    return next((e for e in events if isinstance(e, x2x.Closed)), None)


def stream_error_sent(events: list[x2x.Event]) -> str | None:
    ev = next((e for e in events if isinstance(e, x2x.StreamErrorSent)), None)
    return ev.condition if ev else None


# -- implied stream ------------------------------------------------------------------------
def test_nothing_is_sent_before_the_first_stanza():
    a = air()
    assert a.data_to_send() == b""
    assert a.timer() == 60.0  # only the keepalive is pending


def test_first_bytes_are_the_first_stanza():
    a = air()
    a.send_stanza(message("pilot@air.example/r", "ops@ground.example"), 0.0)
    data = a.data_to_send()
    assert data == (
        b"<message from='pilot@air.example/r' to='ops@ground.example'><body>hi</body></message>"
    )


def test_stanzas_flow_both_ways_on_one_session_pair():
    a, g = air(), ground()
    m1 = message("pilot@air.example", "ops@ground.example", "up")
    m2 = message("ops@ground.example", "pilot@air.example", "down")
    a.send_stanza(m1, 0.0)
    assert stanzas(transfer(a, g)) == [m1]
    g.send_stanza(m2, 0.0)
    assert stanzas(transfer(g, a)) == [m2]
    assert a.counters.stanzas_out == 1 and a.counters.stanzas_in == 1


def test_wildcard_peer_domain_is_accepted():
    a, g = air(), ground()
    m = message("room@conference.ground.example/nick", "pilot@air.example")
    g.send_stanza(m, 0.0)
    assert stanzas(transfer(g, a)) == [m]


def test_presence_and_iq_are_stanzas_too():
    a, g = air(), ground()
    p = Element(f"{{{SERVER_NS}}}presence", {"from": "a@air.example/x", "to": "b@ground.example"})
    iq = Element(
        f"{{{SERVER_NS}}}iq",
        {"from": "a@air.example/x", "to": "ground.example", "type": "get", "id": "1"},
        [Element("{urn:xmpp:ping}ping")],
    )
    a.send_stanza(p, 0.0)
    a.send_stanza(iq, 0.0)
    data = a.data_to_send()
    assert b"<ping xmlns='urn:xmpp:ping'/>" in data
    assert stanzas(g.receive_data(data, 0.0)) == [p, iq]


# -- validation (§4.5 as RFC 6120 S2S) ------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "condition"),
    [
        # from a domain the peer does not serve
        (b"<message from='x@evil.example' to='p@air.example'/>", "invalid-from"),
        # a suffix match must be on a label boundary
        (b"<message from='x@notground.example' to='p@air.example'/>", "invalid-from"),
        # from one of *our* domains: spoofing
        (b"<message from='x@air.example' to='p@air.example'/>", "invalid-from"),
        # malformed from that is not even a domain of the peer
        (b"<message from='@@' to='p@air.example'/>", "invalid-from"),
        # addresses missing
        (b"<message to='p@air.example'/>", "improper-addressing"),
        (b"<message from='x@ground.example'/>", "improper-addressing"),
        (b"<presence/>", "improper-addressing"),
        # not a stanza
        (b"<foo xmlns='urn:example'/>", "unsupported-stanza-type"),
        (
            b"<db:result xmlns:db='jabber:server:dialback' from='ground.example'"
            b" to='air.example'>k</db:result>",
            "unsupported-stanza-type",
        ),
        (b"<r xmlns='urn:xmpp:sm:3'/>", "unsupported-stanza-type"),
        (b"<stream:features/>", "unsupported-stanza-type"),
        # XML hygiene
        (b"<!-- hi --><message/>", "restricted-xml"),
        (
            b"<message from='x@ground.example' to='p@air.example'><a></b></message>",
            "not-well-formed",
        ),
        (b"<foo:message/>", "bad-namespace-prefix"),
    ],
)
def test_invalid_input_is_a_stream_error(raw: bytes, condition: str):
    a = air()
    events = a.receive_data(raw, 0.0)
    assert stream_error_sent(events) == condition
    assert closed(events) is not None
    assert stanzas(events) == []
    assert a.state is x2x.State.CLOSED
    out = a.data_to_send()
    assert out.startswith(b"<stream:error><" + condition.encode())
    assert b"xmlns='urn:ietf:params:xml:ns:xmpp-streams'" in out
    assert out.endswith(b"</stream:error></stream:stream>")
    # dead: nothing more is read
    assert a.receive_data(b"<message from='x@ground.example' to='p@air.example'/>", 0.0) == []


def test_stanzas_before_an_invalid_one_are_delivered():
    a = air()
    good = b"<message from='x@ground.example' to='p@air.example'/>"
    events = a.receive_data(
        good + b"<message from='x@evil.example' to='p@air.example'/>" + good, 0.0
    )
    assert len(stanzas(events)) == 1
    assert stream_error_sent(events) == "invalid-from"


def test_stream_error_is_readable_by_the_peer():
    a, g = air(), ground()
    a.receive_data(b"<message from='x@evil.example' to='p@air.example'/>", 0.0)
    events = transfer(a, g)
    err = next(e for e in events if isinstance(e, x2x.StreamErrorReceived))
    assert err.condition == "invalid-from"
    assert "evil.example" in (err.text or "")
    assert closed(events) is not None
    # g answered the close? It had not closed yet, so it sent ours in reply.
    assert g.data_to_send() == b"</stream:stream>"


def test_malformed_to_from_a_valid_peer_is_a_stanza_error():
    a = air()
    raw = b"<message from='x@ground.example' to='a b@air.example' id='m1'/>"
    events = a.receive_data(raw, 0.0)
    rejected = [e for e in events if isinstance(e, x2x.StanzaRejected)]
    assert len(rejected) == 1
    assert rejected[0].error.condition == "jid-malformed"
    assert rejected[0].stanza.get("id") == "m1"
    assert a.state is x2x.State.OPEN


def test_malformed_from_localpart_in_a_peer_domain_is_a_stanza_error():
    a = air()
    events = a.receive_data(b"<message from='a b@ground.example' to='p@air.example'/>", 0.0)
    assert isinstance(events[0], x2x.StanzaRejected)
    assert a.state is x2x.State.OPEN


def test_oversized_stanza_is_a_policy_violation():
    a = session(AIR, GROUND, max_stanza_size=1024)
    big = b"<message from='x@ground.example' to='p@air.example'><body>" + b"x" * 2000
    events = []
    for i in range(0, len(big), 100):
        events += a.receive_data(big[i : i + 100], 0.0)
    assert stream_error_sent(events) == "policy-violation"


# -- stream header received anyway -----------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    [
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='air.example' version='1.0'>",
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
        b" to='air.example' version='1.0'>",
    ],
)
def test_stream_header_from_peer_is_answered_with_policy_violation(header: bytes):
    a = air()
    events = a.receive_data(header, 0.0)
    assert stream_error_sent(events) == "policy-violation"
    out = a.data_to_send()
    # Our own header first, so that a standard RFC 6120 peer can parse the error.
    assert out.startswith(b"<?xml version='1.0'?><stream:stream ")
    assert b"<stream:error><policy-violation " in out
    assert out.endswith(b"</stream:stream>")


# -- close exchange ---------------------------------------------------------------------------
def test_close_exchange_initiated_by_us():
    a, g = air(), ground()
    a.close(1.0)
    assert a.state is x2x.State.CLOSING
    assert a.timer() == 11.0
    events = transfer(a, g, 1.5)
    assert any(isinstance(e, x2x.PeerClosing) for e in events)
    assert closed(events) is not None and g.state is x2x.State.CLOSED
    events = transfer(g, a, 2.0)
    assert closed(events) is not None and a.state is x2x.State.CLOSED
    assert a.data_to_send() == b""


def test_close_exchange_initiated_by_peer():
    a = air()
    events = a.receive_data(
        b"<message from='x@ground.example' to='p@air.example'/></stream:stream>", 0.0
    )
    assert len(stanzas(events)) == 1
    assert closed(events) is not None
    assert a.data_to_send() == b"</stream:stream>"


def test_close_times_out_when_peer_does_not_answer():
    a = air()
    a.close(0.0)
    assert a.handle_timer(5.0) == []
    events = a.handle_timer(10.0)
    assert closed(events) is not None
    assert a.state is x2x.State.CLOSED


def test_stanzas_received_while_closing_are_still_delivered():
    a = air()
    a.close(0.0)
    a.data_to_send()
    events = a.receive_data(b"<message from='x@ground.example' to='p@air.example'/>", 0.1)
    assert len(stanzas(events)) == 1


def test_send_after_close_is_refused():
    a = air()
    a.close(0.0)
    with pytest.raises(RuntimeError):
        a.send_stanza(message("a@air.example", "b@ground.example"), 0.0)


# -- keepalive --------------------------------------------------------------------------------
def test_whitespace_keepalive_when_idle():
    a = session(AIR, GROUND, keepalive=30.0)
    assert a.timer() == 30.0
    a.handle_timer(29.0)
    assert a.data_to_send() == b""
    a.handle_timer(30.0)
    assert a.data_to_send() == b" "
    assert a.timer() == 60.0
    # a stanza sent postpones the next keepalive
    a.send_stanza(message("a@air.example", "b@ground.example"), 50.0)
    a.data_to_send()
    assert a.timer() == 80.0


def test_keepalive_disabled():
    a = session(AIR, GROUND, keepalive=0)
    assert a.timer() is None


def test_received_keepalives_are_ignored():
    a = air()
    events = a.receive_data(b"  \n <message from='x@ground.example' to='p@air.example'/> \t ", 0.0)
    assert len(stanzas(events)) == 1
    assert a.state is x2x.State.OPEN


# -- split reads -----------------------------------------------------------------------------
TRANSCRIPT = (
    " <message from='ops@ground.example/desk' to='pilot@air.example' type='chat' id='1'>"
    "<body>Élan &amp; ünïcödé ✈ &lt;ok&gt;</body></message>"
    "<presence from='ops@ground.example/desk' to='pilot@air.example'><show>away</show></presence>"
    " <iq from='ground.example' to='air.example' type='get' id='p'><ping xmlns='urn:xmpp:ping'/>"
    "</iq></stream:stream>"
).encode()


def _run(chunks: list[bytes]) -> tuple[list[Element], bytes]:
    a = air()
    events: list[x2x.Event] = []
    for c in chunks:
        events += a.receive_data(c, 0.0)
    return stanzas(events), a.data_to_send()


def test_split_reads_at_every_offset_give_the_same_result():
    whole = _run([TRANSCRIPT])
    assert len(whole[0]) == 3
    assert whole[1] == b"</stream:stream>"
    assert whole[0][0].find(f"{{{SERVER_NS}}}body").text == "Élan & ünïcödé ✈ <ok>"
    for i in range(1, len(TRANSCRIPT)):
        assert _run([TRANSCRIPT[:i], TRANSCRIPT[i:]]) == whole, i


def test_byte_by_byte():
    assert _run([TRANSCRIPT[i : i + 1] for i in range(len(TRANSCRIPT))]) == _run([TRANSCRIPT])


def test_stanzas_before_malformed_xml_in_the_same_read_are_delivered():
    a = air()
    good = b"<message from='x@ground.example' to='p@air.example'/>"
    events = a.receive_data(good + good + b"<message><a></b>", 0.0)
    assert len(stanzas(events)) == 2
    assert stream_error_sent(events) == "not-well-formed"


def test_tls_handshake_on_a_plaintext_link_is_named():
    a = air()
    events = a.receive_data(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0.0)
    assert stream_error_sent(events) == "not-well-formed"
    err = next(e for e in events if isinstance(e, x2x.StreamErrorSent))
    assert "TLS handshake" in (err.text or "")


# -- reliable delivery (acks = true) ---------------------------------------------------------
SYNC = b"<sync xmlns='urn:zerolink:x2x:acks:0' h='3' next='7'/>"


def test_with_acks_the_peer_must_sync_first():
    a = session(AIR, GROUND, acks=True)
    events = a.receive_data(b"<message from='x@ground.example' to='p@air.example'/>", 0.0)
    assert stream_error_sent(events) == "policy-violation"


def test_sync_ack_and_request_are_reported():
    a = session(AIR, GROUND, acks=True)
    events = a.receive_data(
        SYNC + b"<message from='x@ground.example' to='p@air.example'/>"
        b"<a xmlns='urn:xmpp:sm:3' h='9'/><r xmlns='urn:xmpp:sm:3'/>",
        0.0,
    )
    assert events[0] == x2x.SyncIn(3, 7)
    assert isinstance(events[1], x2x.StanzaIn)
    assert events[2:] == [x2x.AckIn(9), x2x.AckRequested()]


def test_with_acks_an_invalid_stanza_is_rejected_not_a_stream_error():
    a = session(AIR, GROUND, acks=True)
    events = a.receive_data(
        SYNC + b"<message from='x@evil.example' to='p@air.example'/>"
        b"<message from='x@ground.example' to='p@elsewhere.example'/>",
        0.0,
    )
    rejected = [e for e in events if isinstance(e, x2x.StanzaRejected)]
    assert [r.error.condition for r in rejected] == ["forbidden", "remote-server-not-found"]
    assert a.state is x2x.State.OPEN


def test_without_acks_a_sync_names_the_mismatch():
    a = air()
    events = a.receive_data(SYNC, 0.0)
    err = next(e for e in events if isinstance(e, x2x.StreamErrorSent))
    assert err.condition == "unsupported-stanza-type"
    assert "set acks = true on both sides" in (err.text or "")


def test_malformed_counter_is_bad_format():
    a = session(AIR, GROUND, acks=True)
    events = a.receive_data(b"<a xmlns='urn:xmpp:sm:3' h='-1'/>", 0.0)
    assert stream_error_sent(events) == "bad-format"


def test_control_elements_are_written_with_their_namespace():
    from zerolink.proto import acks

    a = session(AIR, GROUND, acks=True)
    a.send_control(acks.ack_element(5), 0.0)
    assert a.data_to_send() == b"<a xmlns='urn:xmpp:sm:3' h='5'/>"


# -- §4.4: one connection carries every domain pair ------------------------------------------
@pytest.mark.parametrize("acks", [False, True], ids=["plain", "acks"])
@pytest.mark.parametrize(
    "to", ["p@elsewhere.example", "p@ground.example", "conference.elsewhere.example"]
)
def test_4_4_a_stanza_to_a_domain_not_served_here_is_a_stanza_error_not_a_stream_error(
    acks: bool, to: str
):
    a = session(AIR, GROUND, acks=acks)
    events = a.receive_data(
        (SYNC if acks else b"")
        + f"<message from='x@ground.example' to='{to}' id='m1'/>".encode()
        + b"<message from='x@ground.example' to='p@air.example' id='m2'/>",
        0.0,
    )
    rejected = [e for e in events if isinstance(e, x2x.StanzaRejected)]
    assert [(r.stanza.get("id"), r.error.condition) for r in rejected] == [
        ("m1", "remote-server-not-found")
    ]
    assert [el.get("id") for el in stanzas(events)] == ["m2"]  # the link keeps working
    assert a.state is x2x.State.OPEN and a.data_to_send() == b""
    assert a.counters.stanzas_rejected == 1


def test_4_5_a_from_outside_the_peer_domains_stays_a_stream_error():
    a = session(AIR, GROUND)
    events = a.receive_data(b"<message from='x@elsewhere.example' to='p@air.example'/>", 0.0)
    assert isinstance(events[0], x2x.StreamErrorSent) and events[0].condition == "invalid-from"
    assert a.state is x2x.State.CLOSED


@pytest.mark.parametrize("sender", ["x@GROUND.EXAMPLE", "x@ground.example.", "X@Ground.Example/R"])
def test_4_5_addresses_go_on_normalized(sender: str):
    a = session(AIR, GROUND)
    raw = f"<message from='{sender}' to='P@AIR.EXAMPLE.'/>".encode()
    (el,) = stanzas(a.receive_data(raw, 0.0))
    assert el.get("from") in ("x@ground.example", "x@ground.example/R")
    assert el.get("to") == "p@air.example"


METRE_ERROR = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='ground.example' to='air.example' "
    b"version='1.0'><stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
    b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>No such domain air.example</text>"
    b"</stream:error></stream:stream>"
)


BARE_ERROR = METRE_ERROR[METRE_ERROR.index(b"<stream:stream") :]
EXPECTED = x2x.StreamErrorReceived("host-unknown", "No such domain air.example")


@pytest.mark.parametrize("reads", [[METRE_ERROR], [BARE_ERROR], [BARE_ERROR[:9], BARE_ERROR[9:]]])
def test_peer_stream_error_after_its_header_is_reported(reads: list[bytes]):
    """A standard S2S server refusing us sends its header and its own error in one write: we
    answer policy-violation, and its error (usually what says what is wrong) is reported."""
    a = air()
    events = [ev for data in reads for ev in a.receive_data(data, 0.0)]
    assert [e for e in events if isinstance(e, x2x.StreamErrorReceived)] == [EXPECTED]
    assert stream_error_sent(events) == "policy-violation"
    assert closed(events) is not None
    assert b"<policy-violation " in a.data_to_send()


def test_peer_stream_error_after_a_header_restated_later_on_the_link():
    a = air()
    stanza = b"<message from='x@ground.example' to='p@air.example'><body>b</body></message>"
    assert len(stanzas(a.receive_data(stanza, 0.0))) == 1
    events = a.receive_data(stanza + BARE_ERROR, 0.0)
    assert len(stanzas(events)) == 1 and EXPECTED in events


def test_peer_stream_error_after_a_bare_header_in_another_namespace():
    a = air()
    events = a.receive_data(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        b"<stream:error><invalid-namespace xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"</stream:error>",
        0.0,
    )
    assert x2x.StreamErrorReceived("invalid-namespace", None) in events
    assert stream_error_sent(events) == "policy-violation"


def test_a_header_without_an_error_reports_none():
    a = air()
    events = a.receive_data(
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>"
        b"<stream:features/>",
        0.0,
    )
    assert not any(isinstance(e, x2x.StreamErrorReceived) for e in events)
    assert stream_error_sent(events) == "policy-violation"


# -- found by the fuzz harness (tests/fuzz) --------------------------------------------------
def test_nothing_is_written_after_our_close_when_the_peer_then_sends_a_header():
    """RFC 6120 §4.4: after our </stream:stream> nothing more may be sent; a header answering
    the peer's there would be garbage after the end of our stream."""
    a = air()
    a.close(0.0)
    assert a.data_to_send() == b"</stream:stream>"
    events = a.receive_data(BARE_ERROR, 1.0)
    assert closed(events) is not None and a.state is x2x.State.CLOSED
    assert a.data_to_send() == b""


def test_a_peer_header_in_an_unknown_namespace_adds_no_shared_name_cache():
    """The parser's name caches are shared by every connection, one per content namespace:
    a peer's header may not create one for a namespace of its choosing (memory never freed)."""
    from zerolink.xml import parser

    before = set(parser._TAG_CACHES)
    for i in range(3):
        a = air()
        events = a.receive_data(
            f"<stream:stream xmlns='urn:x:{i}' xmlns:stream='http://etherx.jabber.org/streams'>"
            "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            "</stream:error>".encode(),
            0.0,
        )
        assert stream_error_sent(events) == "policy-violation"
    assert set(parser._TAG_CACHES) == before


def test_a_peer_stream_error_with_an_unknown_condition_is_undefined_condition():
    from zerolink.proto.events import stream_error_of
    from zerolink.xml.parser import parse_stanza

    err = parse_stanza(
        b"<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"
        b"<m\xc3\xa9ssage xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
    )
    assert stream_error_of(err) == ("undefined-condition", None)


def test_acks_counters_are_ascii_digits():
    from zerolink.proto import acks

    with pytest.raises(ValueError):
        acks.counter("\u0663")  # ARABIC-INDIC DIGIT THREE
