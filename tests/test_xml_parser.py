"""StreamParser: events, namespace mapping, restricted XML, limits, incremental feeding."""

from __future__ import annotations

import pytest

from zerolink.errors import StreamError
from zerolink.xml import (
    CLIENT_NS,
    COMPONENT_NS,
    SERVER_NS,
    X2X_HEADER,
    XML_NS,
    Element,
    HeaderReceived,
    ParseError,
    StanzaReceived,
    StreamClosed,
    StreamOpened,
    StreamParser,
    Whitespace,
    deferral,
)

STREAMS = "http://etherx.jabber.org/streams"
S = "{jabber:server}"


def header(ns: str = SERVER_NS, extra: str = "") -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='{ns}' xmlns:stream='{STREAMS}'"
        f" to='example.net' version='1.0' xml:lang='en'{extra}>"
    ).encode()


def stanzas(events: list) -> list[Element]:
    return [e.element for e in events if isinstance(e, StanzaReceived)]


def without_ws(events: list) -> list:
    return [e for e in events if not isinstance(e, Whitespace)]


def feed_all(p: StreamParser, data: bytes, step: int | None = None) -> list:
    if step is None:
        return p.feed(data)
    out: list = []
    for i in range(0, len(data), step):
        out += p.feed(data[i : i + step])
    return out


def x2x() -> StreamParser:
    return StreamParser(implied_header=X2X_HEADER)


def condition_of(p: StreamParser, data: bytes, step: int | None = None) -> str:
    with pytest.raises(StreamError) as info:
        feed_all(p, data, step)
    return info.value.condition


# -- normal streams ----------------------------------------------------------------------------
def test_full_stream_events() -> None:
    p = StreamParser()
    assert not p.header_seen
    ev = p.feed(header())
    assert p.header_seen
    assert ev == [
        StreamOpened(
            {"to": "example.net", "version": "1.0", f"{{{XML_NS}}}lang": "en", "xmlns": SERVER_NS}
        )
    ]
    ev = p.feed(b"<message to='a@b' type='chat'><body>hi</body></message><iq type='get' id='1'/>")
    assert without_ws(ev) == ev
    assert [type(e) for e in ev] == [StanzaReceived, StanzaReceived]
    msg, iq = stanzas(ev)
    assert msg == Element(
        f"{S}message", {"to": "a@b", "type": "chat"}, [Element(f"{S}body", None, ["hi"])]
    )
    assert iq == Element(f"{S}iq", {"type": "get", "id": "1"})
    assert ev[0].size == len(b"<message to='a@b' type='chat'><body>hi</body>")  # end tag excluded
    assert ev[1].size == len(b"<iq type='get' id='1'/>")
    assert p.feed(b"</stream:stream>") == [StreamClosed()]
    # input after the close is ignored
    assert p.feed(b"<message/>") == []


def test_stream_without_xml_declaration() -> None:
    p = StreamParser()
    ev = p.feed(b"<stream:stream xmlns='jabber:server' xmlns:stream='" + STREAMS.encode() + b"'>")
    assert ev == [StreamOpened({"xmlns": SERVER_NS})]


def test_implied_header_mode() -> None:
    p = x2x()
    assert p.header_seen
    ev = p.feed(b"<message from='a@x' to='b@y'><body>1</body></message><presence/>")
    assert stanzas(ev) == [
        Element(f"{S}message", {"from": "a@x", "to": "b@y"}, [Element(f"{S}body", None, ["1"])]),
        Element(f"{S}presence"),
    ]
    assert not any(isinstance(e, StreamOpened) for e in ev)


def test_implied_header_must_match_content_ns() -> None:
    with pytest.raises(ValueError):
        StreamParser(content_ns=CLIENT_NS, implied_header=X2X_HEADER)
    with pytest.raises(ValueError):
        StreamParser(implied_header=X2X_HEADER + b"<message/>")


@pytest.mark.parametrize("ns", [COMPONENT_NS, CLIENT_NS])
def test_content_namespace_is_mapped_to_server(ns: str) -> None:
    p = StreamParser(content_ns=ns)
    assert p.feed(header(ns))[0].attrs["xmlns"] == ns
    ev = p.feed(
        b"<message><body>x</body><x xmlns='jabber:x:data'><field/></x>"
        b"<y xmlns='" + ns.encode() + b"'/></message>"
    )
    (msg,) = stanzas(ev)
    assert msg.tag == f"{S}message"
    assert [c.tag for c in msg.elements()] == [f"{S}body", "{jabber:x:data}x", f"{S}y"]
    assert msg.find("{jabber:x:data}x").children[0].tag == "{jabber:x:data}field"


def test_stream_features_and_errors_are_stanzas() -> None:
    p = StreamParser(content_ns=CLIENT_NS)
    p.feed(header(CLIENT_NS))
    (el,) = stanzas(p.feed(b"<stream:features><starttls xmlns='urn:x'/></stream:features>"))
    assert el.tag == f"{{{STREAMS}}}features"
    assert el.children[0].tag == "{urn:x}starttls"


def test_namespaced_attributes() -> None:
    p = x2x()
    (el,) = stanzas(p.feed(b"<message xmlns:q='urn:q' q:a='1' xml:lang='de' b='2'/>"))
    assert el.attrib == {"{urn:q}a": "1", f"{{{XML_NS}}}lang": "de", "b": "2"}


# -- header checks -------------------------------------------------------------------------
def test_wrong_root_is_invalid_namespace() -> None:
    assert condition_of(StreamParser(), b"<stream xmlns='jabber:server'>") == "invalid-namespace"
    assert (
        condition_of(
            StreamParser(), b"<stream:stream xmlns:stream='urn:wrong' xmlns='jabber:server'>"
        )
        == "invalid-namespace"
    )


def test_wrong_default_namespace_is_invalid_namespace() -> None:
    assert condition_of(StreamParser(), header(CLIENT_NS)) == "invalid-namespace"
    assert (
        condition_of(StreamParser(content_ns=COMPONENT_NS), header(SERVER_NS))
        == "invalid-namespace"
    )
    no_default = b"<stream:stream xmlns:stream='" + STREAMS.encode() + b"'>"
    assert condition_of(StreamParser(), no_default) == "invalid-namespace"


def test_encoding_declaration() -> None:
    ok = b"<?xml version='1.0' encoding='utf-8'?>" + header()[len(b"<?xml version='1.0'?>") :]
    assert isinstance(StreamParser().feed(ok)[0], StreamOpened)
    bad = b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>"
    assert condition_of(StreamParser(), bad) == "unsupported-encoding"


# -- implied mode: header received anyway ------------------------------------------------------
def test_header_received_in_implied_mode() -> None:
    p = x2x()
    ev = p.feed(
        b"<message/><stream:stream xmlns='jabber:server' xmlns:stream='"
        + STREAMS.encode()
        + b"' to='b.example' version='1.0'><message/>"
    )
    assert ev == [
        StanzaReceived(Element(f"{S}message"), len(b"<message/>")),
        HeaderReceived({"to": "b.example", "version": "1.0", "xmlns": SERVER_NS}),
    ]
    assert p.feed(b"<message/></stream:stream>") == []


@pytest.mark.parametrize("step", [None, 1, 3])
def test_xml_declaration_in_implied_mode(step: int | None) -> None:
    data = b"\n <?xml version='1.0'?><stream:stream xmlns='jabber:server'>"
    ev = without_ws(feed_all(x2x(), data, step))
    assert ev == [HeaderReceived({})]


def test_misplaced_xml_declaration_later_is_not_well_formed() -> None:
    p = x2x()
    assert condition_of(p, b"<message/><?xml version='1.0'?>") == "not-well-formed"


# -- restricted XML --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        b"<message><!-- hi --></message>",
        b"<!-- between stanzas -->",
        b"<message><?foo bar?></message>",
        b"<?xml-stylesheet href='x'?>",
    ],
)
def test_comments_and_pis_are_restricted(payload: bytes) -> None:
    assert condition_of(x2x(), payload) == "restricted-xml"
    p = StreamParser()
    p.feed(header())
    assert condition_of(p, payload) == "restricted-xml"


def test_comment_before_header_is_restricted() -> None:
    assert condition_of(StreamParser(), b"<!-- x -->" + header()[21:]) == "restricted-xml"


def test_doctype_is_restricted() -> None:
    data = b"<?xml version='1.0'?><!DOCTYPE stream:stream><stream:stream/>"
    assert condition_of(StreamParser(), data) == "restricted-xml"


def test_entity_bomb_rejected_without_expansion() -> None:
    ents = "".join(f"<!ENTITY e{i} '{f'&e{i - 1};' * 10 if i else 'lol'}'>" for i in range(10))
    bomb = f"<?xml version='1.0'?><!DOCTYPE s [{ents}]><s>&e9;</s>".encode()
    assert condition_of(StreamParser(), bomb) == "restricted-xml"
    assert condition_of(StreamParser(), bomb, step=7) == "restricted-xml"
    # defence in depth: without the DOCTYPE handler the first entity declaration still stops it
    p = StreamParser()
    p._parser.StartDoctypeDeclHandler = None
    with pytest.raises(StreamError) as info:
        p.feed(bomb)
    assert info.value.condition == "restricted-xml"
    assert "entity declaration" in info.value.text


def test_doctype_in_stream_is_rejected() -> None:
    assert condition_of(x2x(), b"<!DOCTYPE x [<!ENTITY a 'b'>]>") in {
        "restricted-xml",
        "not-well-formed",
    }


def test_undefined_entity_is_restricted() -> None:
    assert condition_of(x2x(), b"<message>&foo;</message>") == "restricted-xml"
    assert condition_of(x2x(), b"<message a='&bar;'/>") == "restricted-xml"


def test_predefined_entities_and_char_refs() -> None:
    (el,) = stanzas(
        x2x().feed(b"<m a='&quot;&apos;&#x9;'>&lt;&gt;&amp;&apos;&quot; &#233;&#x1F600;&#10;</m>")
    )
    assert el.attrib == {"a": "\"'\t"}
    assert el.text == "<>&'\" é😀\n"


# -- malformed input -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        b"<message></iq>",
        b"<message to=a/>",
        b"<message a='1' a='2'/>",
        b"<>",
        b"<m>&#0;</m>",
        b"<m>\x01</m>",
    ],
)
def test_not_well_formed(payload: bytes) -> None:
    p = x2x()
    with pytest.raises(StreamError) as info:
        p.feed(payload)
    assert info.value.condition == "not-well-formed"
    assert info.value.text  # carries expat's message


def test_unbound_prefix() -> None:
    assert condition_of(x2x(), b"<message><foo:bar/></message>") == "bad-namespace-prefix"
    assert condition_of(x2x(), b"<message foo:a='1'/>") == "bad-namespace-prefix"


@pytest.mark.parametrize("payload", [b"<m>\xff</m>", b"<m>\xc3\x28</m>", b"<m a='\xe9'/>"])
def test_non_utf8(payload: bytes) -> None:
    assert condition_of(x2x(), payload) == "not-well-formed"


def test_text_between_stanzas() -> None:
    p = x2x()
    assert stanzas(p.feed(b"<a/>"))
    assert condition_of(p, b" hello <b/>") == "not-well-formed"


def test_whitespace_keepalives() -> None:
    p = x2x()
    assert p.feed(b" ") == [Whitespace()]
    assert p.feed(b"\n\t\r\n ") == [Whitespace()]
    ev = p.feed(b" <a/> \n <b/> ")
    assert ev.count(Whitespace()) == 1
    assert [e.tag for e in stanzas(ev)] == [f"{S}a", f"{S}b"]
    # whitespace inside a stanza is content, not a keepalive
    ev = p.feed(b"<c> </c>")
    assert ev == [StanzaReceived(Element(f"{S}c", None, [" "]), len(b"<c> "))]


def test_dead_after_error() -> None:
    p = x2x()
    with pytest.raises(StreamError) as first:
        p.feed(b"<message><!-- x --></message>")
    for data in (b"<message/>", b""):
        with pytest.raises(StreamError) as again:
            p.feed(data)
        assert again.value.condition == first.value.condition == "restricted-xml"
        assert again.value.text == first.value.text


def test_error_carries_events_completed_before_it() -> None:
    p = x2x()
    with pytest.raises(ParseError) as info:
        p.feed(b"<a/><b/><c><!-- no --></c>")
    assert [e.element.tag for e in info.value.events] == [f"{S}a", f"{S}b"]
    with pytest.raises(ParseError) as again:
        p.feed(b"<d/>")
    assert again.value.events == []


# -- incremental feeding ---------------------------------------------------------------------
def test_utf8_split_at_every_offset() -> None:
    text = "é€😀 ünïcödé 日本語"
    data = f"<message><body>{text}</body></message>".encode()
    for cut in range(len(data) + 1):
        p = x2x()
        ev = p.feed(data[:cut]) + p.feed(data[cut:])
        (el,) = stanzas(ev)
        assert el.find(f"{S}body").text == text, cut


STREAM_BYTES = (
    header(CLIENT_NS)
    + b"\n<message to='a@b' xml:lang='en'><body>x &amp; y &lt; \xc3\xa9</body>"
    + b"<x xmlns='jabber:x:data' type='form'><field var='a'><value>1</value></field></x>"
    + b"</message> <iq type='get' id='q'><query xmlns='jabber:iq:roster'/></iq>"
    + b"<presence/>\n</stream:stream>"
)


def test_byte_by_byte_equals_all_at_once() -> None:
    whole = StreamParser(content_ns=CLIENT_NS).feed(STREAM_BYTES)
    bytewise = feed_all(StreamParser(content_ns=CLIENT_NS), STREAM_BYTES, step=1)
    assert [type(e) for e in without_ws(whole)] == [
        StreamOpened,
        StanzaReceived,
        StanzaReceived,
        StanzaReceived,
        StreamClosed,
    ]
    assert without_ws(whole) == without_ws(bytewise)
    assert Whitespace() in bytewise


# -- limits ----------------------------------------------------------------------------------
def test_stanza_size_limit_detected_while_growing() -> None:
    p = StreamParser(implied_header=X2X_HEADER, max_stanza_size=1000)
    assert stanzas(p.feed(b"<message><body>" + b"x" * 900 + b"</body></message>"))
    p.feed(b"<message><body>")
    fed = 0
    with pytest.raises(StreamError) as info:
        for _ in range(1000):
            p.feed(b"y" * 10)
            fed += 10
    assert info.value.condition == "policy-violation"
    assert "too large" in info.value.text
    assert fed < 1100  # caught as soon as it crossed the limit


def test_stanza_size_limit_in_unfinished_start_tag() -> None:
    p = StreamParser(implied_header=X2X_HEADER, max_stanza_size=1000)
    p.feed(b"<message to='")
    with pytest.raises(StreamError) as info:
        for _ in range(200):
            p.feed(b"a" * 50)
    assert info.value.condition == "policy-violation"


def test_stanza_size_limit_in_one_big_feed() -> None:
    p = StreamParser(implied_header=X2X_HEADER, max_stanza_size=1000)
    assert condition_of(p, b"<m>" + b"z" * 100_000 + b"</m>") == "policy-violation"
    # many small stanzas in one big feed are fine
    p = StreamParser(implied_header=X2X_HEADER, max_stanza_size=1000)
    assert len(p.feed(b"<m>hello</m>" * 10_000)) == 10_000


def test_keepalives_do_not_count_towards_size() -> None:
    p = StreamParser(implied_header=X2X_HEADER, max_stanza_size=100)
    for _ in range(50):
        assert p.feed(b"          ") == [Whitespace()]
    assert stanzas(p.feed(b"<m/>"))


def test_depth_limit() -> None:
    ok = b"<a>" * 5 + b"</a>" * 5
    assert stanzas(StreamParser(implied_header=X2X_HEADER, max_depth=5).feed(ok))
    deep = b"<a>" * 6 + b"</a>" * 6
    p = StreamParser(implied_header=X2X_HEADER, max_depth=5)
    assert condition_of(p, deep) == "policy-violation"


# -- expat's reparse deferral (expat >= 2.6, and Debian 12's patched 2.5.0) ---------------------
IQ = (
    b"<iq type='get' id='abcdefghijklmnop' to='ground.example' from='air.example'>"
    b"<ping xmlns='urn:xmpp:ping'/></iq>"
)


def test_deferral_is_turned_off_on_this_python() -> None:
    # "deferring" means a stanza completed by a short second read would wait for more input.
    assert deferral.STATUS in ("python-api", "no-deferral", "ctypes")


@pytest.mark.parametrize("cut", range(1, len(IQ)))
def test_a_stanza_completed_by_a_second_read_is_delivered_at_once(cut: int) -> None:
    # The first read ends inside the first (long) tag; the second read is shorter than the
    # first, which is exactly when a deferring expat holds the token back.
    p = x2x()
    events = p.feed(IQ[:cut]) + p.feed(IQ[cut:])
    assert [el.get("id") for el in stanzas(events)] == ["abcdefghijklmnop"]


# -- names: bounded, and only short ones in the shared caches ------------------------------------
def test_a_very_long_element_name_is_a_policy_violation() -> None:
    name = "x" * 2000
    assert condition_of(x2x(), f"<{name}/>".encode()) == "policy-violation"


def test_a_very_long_namespaced_attribute_name_is_a_policy_violation() -> None:
    data = f"<message xmlns:p='urn:p' p:{'a' * 2000}='v'/>".encode()
    assert condition_of(x2x(), data) == "policy-violation"


def test_a_long_namespace_uri_counts_in_the_name() -> None:
    data = f"<q xmlns='urn:{'u' * 2000}'/>".encode()
    assert condition_of(x2x(), b"<iq>" + data + b"</iq>") == "policy-violation"


def test_distinct_names_do_not_grow_the_shared_caches() -> None:
    from zerolink.xml import parser as mod

    p = x2x()
    for i in range(3000):  # names of 1,000 characters: accepted, never cached
        name = f"n{i:04d}" + "x" * 995
        p.feed(f"<{name} xmlns='urn:x' xmlns:a='urn:a' a:{name}='v'/>".encode())
    caches = [*mod._TAG_CACHES.values(), mod._ATTR_CACHE]
    assert all(len(c) <= mod._CACHE_LIMIT for c in caches)
    assert not any(len(k) > mod._CACHED_NAME for c in caches for k in c)


# -- found by the fuzzer ----------------------------------------------------------------------
def ends(p: StreamParser, *chunks: bytes) -> list[int]:
    out: list[int] = []
    for c in chunks:
        out += [e.end for e in p.feed(c) if isinstance(e, StanzaReceived)]
    return out


def test_track_ends_of_an_empty_element_then_more() -> None:
    h = header(CLIENT_NS)
    p = StreamParser(content_ns=CLIENT_NS, track_ends=True)
    assert ends(p, h + b"<a/><b>x</b>") == [len(h) + 4, len(h) + 12]
    p = StreamParser(content_ns=CLIENT_NS, track_ends=True)
    assert ends(p, h + b"<a/></") == [len(h) + 4]  # once raised ValueError


def test_track_ends_with_an_implied_header() -> None:
    p = StreamParser(implied_header=X2X_HEADER, track_ends=True)
    assert ends(p, b"<a>x</a><b>y</b>") == [8, 16]
    p = StreamParser(implied_header=X2X_HEADER, track_ends=True)
    assert ends(p, b"<q a=", b"''/>") == [9]


@pytest.mark.parametrize("data", [b"x&e;", b"x<p:a/>"])
def test_text_before_an_error_wins_however_the_reads_fall(data: bytes) -> None:
    whole = condition_of(x2x(), data)
    split = condition_of(x2x(), data, step=1)
    assert whole == split == "not-well-formed"


def test_the_size_limit_does_not_depend_on_read_boundaries() -> None:
    st = b"<message><body>" + b"a" * 100 + b"</body><<"
    for cut in (None, 110, 50):
        p = StreamParser(implied_header=X2X_HEADER, max_stanza_size=100)
        chunks = [st] if cut is None else [st[:cut], st[cut:]]
        with pytest.raises(StreamError) as info:
            for c in chunks:
                p.feed(c)
        assert info.value.condition == "policy-violation", cut


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16"])
def test_utf16_is_refused(encoding: str) -> None:
    assert condition_of(x2x(), "<message/>".encode(encoding)) == "not-well-formed"
    assert condition_of(x2x(), b'"\x00') == condition_of(x2x(), b'"\x00', step=1)


def test_a_stanza_before_a_nul_byte_is_still_delivered() -> None:
    with pytest.raises(ParseError) as info:
        x2x().feed(b"<message from='a@b' to='c@d'/>\x00")
    assert info.value.condition == "not-well-formed" and len(stanzas(info.value.events)) == 1
