"""serialize / stream_header / stream_error: minimal namespaces, escaping, invalid characters."""

from __future__ import annotations

import pytest

from zerolink.xml import (
    CLIENT_NS,
    COMPONENT_NS,
    SERVER_NS,
    STREAM_CLOSE,
    X2X_HEADER,
    XML_NS,
    Element,
    StanzaReceived,
    StreamOpened,
    StreamParser,
    serialize,
    stream_error,
    stream_header,
)

S = "{jabber:server}"


def message() -> Element:
    return Element(f"{S}message", {"to": "a@b"}, [Element(f"{S}body", None, ["hi"])])


def test_stanza_in_content_namespace_has_no_xmlns() -> None:
    assert serialize(message()) == b"<message to='a@b'><body>hi</body></message>"


@pytest.mark.parametrize("ns", [COMPONENT_NS, CLIENT_NS])
def test_content_ns_switching(ns: str) -> None:
    assert serialize(message(), content_ns=ns) == b"<message to='a@b'><body>hi</body></message>"
    # written where a different default namespace is in force, it must declare its own
    assert (
        serialize(message(), content_ns=ns, default_ns="urn:other")
        == f"<message xmlns='{ns}' to='a@b'><body>hi</body></message>".encode()
    )


def test_empty_element() -> None:
    assert serialize(Element(f"{S}presence")) == b"<presence/>"
    assert serialize(Element(f"{S}iq", {"type": "get"}, [""])) == b"<iq type='get'></iq>"


def test_foreign_namespace_declared_once() -> None:
    form = Element(
        "{jabber:x:data}x",
        {"type": "form"},
        [
            Element(
                "{jabber:x:data}field", {"var": "a"}, [Element("{jabber:x:data}value", None, ["1"])]
            )
        ],
    )
    msg = Element(f"{S}message", None, [form, Element(f"{S}body", None, ["b"])])
    assert serialize(msg) == (
        b"<message><x xmlns='jabber:x:data' type='form'><field var='a'><value>1</value>"
        b"</field></x><body>b</body></message>"
    )


def test_nested_foreign_namespaces_and_back() -> None:
    el = Element(
        f"{S}iq",
        None,
        [
            Element(
                "{urn:a}a",
                None,
                [
                    Element("{urn:b}b", None, [Element("{urn:b}c"), Element(f"{S}d")]),
                    Element("{urn:a}e"),
                ],
            )
        ],
    )
    assert serialize(el, content_ns=CLIENT_NS) == (
        b"<iq><a xmlns='urn:a'><b xmlns='urn:b'><c/><d xmlns='jabber:client'/></b><e/></a></iq>"
    )


def test_element_without_namespace_undeclares_default() -> None:
    assert serialize(Element(f"{S}m", None, [Element("plain")])) == b"<m><plain xmlns=''/></m>"


def test_xml_lang() -> None:
    el = Element(f"{S}message", {f"{{{XML_NS}}}lang": "en", "id": "1"})
    assert serialize(el) == b"<message xml:lang='en' id='1'/>"


def test_namespaced_attribute_gets_prefix() -> None:
    el = Element(f"{S}m", {"{urn:q}a": "1", "{urn:q}b": "2", "{urn:r}c": "3", "d": "4"})
    out = serialize(el)
    assert out == (b"<m xmlns:ns0='urn:q' ns0:a='1' ns0:b='2' xmlns:ns1='urn:r' ns1:c='3' d='4'/>")
    (ev,) = StreamParser(implied_header=X2X_HEADER).feed(out)
    assert ev.element == el


def test_text_escaping() -> None:
    el = Element(f"{S}body", None, ["a & b < c > d ' \" \r\n\t é"])
    assert serialize(el) == "<body>a &amp; b &lt; c &gt; d ' \" &#13;\n\t é</body>".encode()


def test_attribute_escaping() -> None:
    el = Element(f"{S}m", {"a": "x&y<z>'\"\t\n\r"})
    assert serialize(el) == b"<m a='x&amp;y&lt;z>&apos;&quot;&#9;&#10;&#13;'/>"
    (ev,) = StreamParser(implied_header=X2X_HEADER).feed(serialize(el))
    assert isinstance(ev, StanzaReceived)
    assert ev.element == el


@pytest.mark.parametrize("bad", ["\x00", "\x01", "\x0b", "\x1f", "\ud800", "\uffff"])
def test_invalid_characters_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        serialize(Element(f"{S}body", None, [f"x{bad}y"]))
    with pytest.raises(ValueError):
        serialize(Element(f"{S}m", {"a": bad}))


@pytest.mark.parametrize("code", range(32))
def test_every_c0_control_in_ascii_and_non_ascii_stanzas(code: int) -> None:
    # ASCII output takes the bytes.translate fast path, non-ASCII output the regex: same answer.
    for text in (f"a{chr(code)}b", f"é{chr(code)}b"):
        el = Element(f"{S}body", None, [text])
        if code in (9, 10, 13):
            assert serialize(el) == f"<body>{text.replace(chr(13), '&#13;')}</body>".encode()
        else:
            with pytest.raises(ValueError):
                serialize(el)


def test_del_and_non_ascii_are_allowed() -> None:
    assert serialize(Element(f"{S}b", None, ["\x7f é ✈"])) == "<b>\x7f é ✈</b>".encode()


def test_allowed_whitespace_controls() -> None:
    assert serialize(Element(f"{S}b", None, ["\t\n"])) == b"<b>\t\n</b>"


def test_stream_header() -> None:
    out = stream_header(
        {"to": "b.example", "from": "a.example", "version": "1.0", f"{{{XML_NS}}}lang": "en"},
        default_ns=CLIENT_NS,
    )
    assert out == (
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='b.example' from='a.example' "
        b"version='1.0' xml:lang='en'>"
    )
    bare = stream_header(
        {"xmlns": "ignored", "id": "a'b"}, default_ns=SERVER_NS, xml_declaration=False
    )
    assert bare == (
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
        b" id='a&apos;b'>"
    )
    # and it parses back
    (ev,) = StreamParser(content_ns=CLIENT_NS).feed(out)
    assert isinstance(ev, StreamOpened)
    assert ev.attrs["to"] == "b.example"
    assert ev.attrs["xmlns"] == CLIENT_NS


def test_stream_close_and_error() -> None:
    assert STREAM_CLOSE == b"</stream:stream>"
    assert stream_error("host-unknown") == (
        b"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
    )
    assert stream_error("policy-violation", "too <big> & bad") == (
        b"<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>too &lt;big&gt; &amp; bad</text>"
        b"</stream:error>"
    )
    with pytest.raises(ValueError):
        stream_error("no-such-condition")


def test_stream_error_parses_in_stream() -> None:
    p = StreamParser(implied_header=X2X_HEADER)
    (ev,) = p.feed(stream_error("conflict", "x"))
    el = ev.element
    assert el.tag == "{http://etherx.jabber.org/streams}error"
    assert [c.tag for c in el.elements()] == [
        "{urn:ietf:params:xml:ns:xmpp-streams}conflict",
        "{urn:ietf:params:xml:ns:xmpp-streams}text",
    ]
