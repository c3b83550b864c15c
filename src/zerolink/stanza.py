"""Stanza helpers: kind checks and error replies (RFC 6120 §8.3).

Stanzas are `Element`s in the ``jabber:server`` namespace (see `zerolink.xml.element`).
"""

from __future__ import annotations

from zerolink.errors import STANZA_ERROR_NS, StanzaError
from zerolink.xml.element import SERVER_NS, Element

MESSAGE = f"{{{SERVER_NS}}}message"
PRESENCE = f"{{{SERVER_NS}}}presence"
IQ = f"{{{SERVER_NS}}}iq"
STANZA_TAGS = frozenset({MESSAGE, PRESENCE, IQ})
ERROR = f"{{{SERVER_NS}}}error"


def error_reply(stanza: Element, error: StanzaError) -> Element | None:
    """The error stanza to send back for `stanza`, or None when none may be sent.

    Never an error in reply to an error (RFC 6120 §8.3.1), and no reply to an iq result.
    The original payload is not echoed: on a 2400 bit/s link every byte counts, and the
    `id` is what the sender needs to correlate.
    """
    kind = stanza.attrib.get("type")
    if kind == "error" or (stanza.tag == IQ and kind == "result"):
        return None
    attrib = {"type": "error"}
    if "from" in stanza.attrib:
        attrib["to"] = stanza.attrib["from"]
    if "to" in stanza.attrib:
        attrib["from"] = stanza.attrib["to"]
    if "id" in stanza.attrib:
        attrib["id"] = stanza.attrib["id"]
    reply = Element(stanza.tag, attrib)
    reply.append(error_element(error))
    return reply


def error_element(error: StanzaError) -> Element:
    """The `<error type=..><condition/>[<text/>]</error>` child of an error stanza."""
    el = Element(ERROR, {"type": error.type})
    el.append(Element(f"{{{STANZA_ERROR_NS}}}{error.condition}"))
    if error.text:
        el.append(Element(f"{{{STANZA_ERROR_NS}}}text", None, [error.text]))
    return el


def error_condition(stanza: Element) -> str | None:
    """The RFC 6120 condition of an error stanza, if it has one."""
    err = stanza.find(ERROR)
    if err is None:
        return None
    for child in err.elements():
        if child.namespace == STANZA_ERROR_NS and child.local != "text":
            return child.local
    return None
