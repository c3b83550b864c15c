"""Property tests: serialize -> parse is the identity; chunking the input never matters."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from zerolink.xml import (
    COMPONENT_NS,
    SERVER_NS,
    X2X_HEADER,
    XML_NS,
    Element,
    StanzaReceived,
    StreamParser,
    serialize,
)

NAMESPACES = [SERVER_NS, SERVER_NS, "urn:a", "urn:b:c", "http://x/y?z=1&w"]
LOCALS = ["message", "body", "x", "a-b", "é", "n.1"]
ATTR_NAMES = ["to", "from", "id", "type", f"{{{XML_NS}}}lang", "{urn:q}attr", "{urn:b:c}z"]

# Any character XML 1.0 can carry, biased towards the ones that need escaping.
xml_chars = st.one_of(
    st.sampled_from(list("&<>'\"\t\n\r ]")),
    st.characters(
        codec="utf-8",
        exclude_categories=("Cs",),
        exclude_characters="".join(map(chr, [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)]))
        + "\ufffe\uffff",
    ),
)
texts = st.text(xml_chars, max_size=12)

tags = st.builds(
    lambda ns, local: f"{{{ns}}}{local}", st.sampled_from(NAMESPACES), st.sampled_from(LOCALS)
)


def elements(max_leaves: int = 8) -> st.SearchStrategy[Element]:
    leaf = st.builds(Element, tags, st.dictionaries(st.sampled_from(ATTR_NAMES), texts, max_size=3))

    def extend(children: st.SearchStrategy[Element]) -> st.SearchStrategy[Element]:
        return st.builds(
            Element,
            tags,
            st.dictionaries(st.sampled_from(ATTR_NAMES), texts, max_size=3),
            st.lists(st.one_of(children, texts), max_size=4),
        )

    return st.recursive(leaf, extend, max_leaves=max_leaves)


def parse_all(data: bytes, cuts: list[int], content_ns: str = SERVER_NS) -> list[Element]:
    header = X2X_HEADER.replace(b"jabber:server", content_ns.encode())
    p = StreamParser(content_ns=content_ns, implied_header=header)
    out = []
    prev = 0
    for cut in [*sorted(cuts), len(data)]:
        out += [e.element for e in p.feed(data[prev:cut]) if isinstance(e, StanzaReceived)]
        prev = cut
    return out


@settings(max_examples=150, deadline=None)
@given(elements())
def test_serialize_then_parse_is_identity(el: Element) -> None:
    assert parse_all(serialize(el), []) == [el]


@settings(max_examples=60, deadline=None)
@given(elements())
def test_roundtrip_in_component_stream(el: Element) -> None:
    data = serialize(el, content_ns=COMPONENT_NS)
    assert parse_all(data, [], content_ns=COMPONENT_NS) == [el]


@settings(max_examples=80, deadline=None)
@given(st.lists(elements(4), min_size=1, max_size=5), st.data())
def test_chunking_never_matters(els: list[Element], data: st.DataObject) -> None:
    wire = b" ".join(serialize(e) for e in els)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    assert parse_all(wire, cuts) == els
