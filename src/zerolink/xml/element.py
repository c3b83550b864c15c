"""The one XML element type used everywhere in zerolink.

Names are in Clark notation (``{namespace}local``); attributes without a namespace have plain
names, ``xml:lang`` is ``{http://www.w3.org/XML/1998/namespace}lang``. Children are a list of
`Element` and `str` (text nodes) in document order, so mixed content round-trips exactly.

Stanzas are held in the ``jabber:server`` namespace whatever stream they came from; the parser
and serializer map the stream's own content namespace (``jabber:client``,
``jabber:component:accept``) to and from it.
"""

from __future__ import annotations

from collections.abc import Iterator

XML_NS = "http://www.w3.org/XML/1998/namespace"
SERVER_NS = "jabber:server"
CLIENT_NS = "jabber:client"
COMPONENT_NS = "jabber:component:accept"
CONTENT_NAMESPACES = frozenset({SERVER_NS, CLIENT_NS, COMPONENT_NS})


def split_name(name: str) -> tuple[str, str]:
    """Split a Clark name into (namespace, local); namespace is '' when there is none."""
    if name.startswith("{"):
        ns, _, local = name[1:].partition("}")
        return ns, local
    return "", name


class Element:
    """An XML element: tag, attributes, and ordered children (elements and text)."""

    __slots__ = ("attrib", "children", "tag")

    def __init__(
        self,
        tag: str,
        attrib: dict[str, str] | None = None,
        children: list[Element | str] | None = None,
    ) -> None:
        self.tag = tag
        self.attrib: dict[str, str] = dict(attrib) if attrib else {}
        self.children: list[Element | str] = list(children) if children else []

    # -- names ---------------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        return split_name(self.tag)[0]

    @property
    def local(self) -> str:
        return split_name(self.tag)[1]

    # -- attributes ----------------------------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        return self.attrib.get(key, default)

    def set(self, key: str, value: str | None) -> None:
        """Set an attribute; None removes it."""
        if value is None:
            self.attrib.pop(key, None)
        else:
            self.attrib[key] = value

    # -- children ------------------------------------------------------------------------
    def append(self, child: Element | str) -> Element | str:
        self.children.append(child)
        return child

    def subelement(
        self, tag: str, attrib: dict[str, str] | None = None, text: str | None = None
    ) -> Element:
        """Append and return a new child element (with optional text)."""
        child = Element(tag, attrib, [text] if text else None)
        self.children.append(child)
        return child

    def elements(self) -> Iterator[Element]:
        """Child elements, skipping text nodes."""
        for c in self.children:
            if isinstance(c, Element):
                yield c

    def find(self, tag: str) -> Element | None:
        """First child element with this Clark name."""
        for c in self.children:
            if isinstance(c, Element) and c.tag == tag:
                return c
        return None

    def findall(self, tag: str) -> list[Element]:
        return [c for c in self.children if isinstance(c, Element) and c.tag == tag]

    @property
    def text(self) -> str:
        """Concatenated direct text children."""
        return "".join(c for c in self.children if isinstance(c, str))

    def copy(self) -> Element:
        """Deep copy."""
        return Element(
            self.tag,
            self.attrib,
            [c.copy() if isinstance(c, Element) else c for c in self.children],
        )

    # -- comparison ----------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Element):
            return NotImplemented
        return (
            self.tag == other.tag
            and self.attrib == other.attrib
            and _merged(self.children) == _merged(other.children)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Element {self.tag} {self.attrib!r} children={len(self.children)}>"


def _merged(children: list[Element | str]) -> list[Element | str]:
    """Children with adjacent text nodes joined and empty ones dropped (for equality)."""
    out: list[Element | str] = []
    for c in children:
        if isinstance(c, str):
            if not c:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + c
                continue
        out.append(c)
    return out
