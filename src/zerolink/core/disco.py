"""IQ answers of the local host: XEP-0030 disco, XEP-0199 ping, XEP-0092 version. Pure.

Only what the host really implements is advertised. Everything else addressed to the server or
to an account is ``service-unavailable`` (RFC 6120 §8.4, RFC 6121 §8.5), never
``feature-not-implemented``, so that nobody can tell an unknown namespace from a refused one.
"""

from __future__ import annotations

from zerolink.errors import StanzaError
from zerolink.stanza import IQ
from zerolink.xml.element import Element

__all__ = [
    "ACCOUNT_FEATURES",
    "DISCO_INFO",
    "DISCO_ITEMS",
    "OFFLINE",
    "PING",
    "PRE_APPROVAL",
    "ROSTERVER",
    "SERVER_FEATURES",
    "VERSION",
    "account_info",
    "iq_payload",
    "iq_result",
    "server_iq",
    "stream_features",
]

DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
PING = "urn:xmpp:ping"
VERSION = "jabber:iq:version"
OFFLINE = "msgoffline"  # XEP-0160 §6
ROSTER = "jabber:iq:roster"
ROSTERVER = "urn:xmpp:features:rosterver"  # RFC 6121 §2.6.1 stream feature
PRE_APPROVAL = "urn:xmpp:features:pre-approval"  # RFC 6121 §3.4 stream feature

SERVER_FEATURES = (DISCO_INFO, DISCO_ITEMS, ROSTER, VERSION, OFFLINE, PING)
ACCOUNT_FEATURES = (DISCO_INFO,)


def stream_features() -> list[Element]:
    """The client stream features the host's roster needs advertised (RFC 6121 §2.6.1, §3.4)."""
    return [Element(f"{{{ROSTERVER}}}ver"), Element(f"{{{PRE_APPROVAL}}}sub")]


def iq_result(request: Element, payload: Element | None = None) -> Element:
    """The result for `request`: addresses swapped (a request without 'to' gets no 'from')."""
    attrib = {"type": "result"}
    if "from" in request.attrib:
        attrib["to"] = request.attrib["from"]
    if "to" in request.attrib:
        attrib["from"] = request.attrib["to"]
    if "id" in request.attrib:
        attrib["id"] = request.attrib["id"]
    return Element(IQ, attrib, [payload] if payload is not None else None)


def iq_payload(iq: Element) -> Element:
    """The single child of an iq get/set (RFC 6120 §8.2.3); raises bad-request otherwise."""
    children = list(iq.elements())
    if iq.get("type") not in ("get", "set") or len(children) != 1:
        raise StanzaError("bad-request", "an iq get or set carries exactly one child")
    return children[0]


def _info(identity: dict[str, str], features: tuple[str, ...]) -> Element:
    q = Element(f"{{{DISCO_INFO}}}query")
    q.append(Element(f"{{{DISCO_INFO}}}identity", identity))
    for f in features:
        q.append(Element(f"{{{DISCO_INFO}}}feature", {"var": f}))
    return q


def server_iq(request: Element, payload: Element, software: tuple[str, str]) -> Element:
    """The answer to an iq get/set addressed to a hosted domain; raises `StanzaError`."""
    kind = request.get("type")
    tag = payload.tag
    if kind == "get" and tag in (f"{{{DISCO_INFO}}}query", f"{{{DISCO_ITEMS}}}query"):
        if payload.get("node") is not None:
            raise StanzaError("item-not-found")
        if tag == f"{{{DISCO_ITEMS}}}query":
            return iq_result(request, Element(tag))
        identity = {"category": "server", "type": "im", "name": software[0]}
        return iq_result(request, _info(identity, SERVER_FEATURES))
    if kind == "get" and tag == f"{{{PING}}}ping":
        return iq_result(request)
    if kind == "get" and tag == f"{{{VERSION}}}query":
        q = Element(tag)
        q.append(Element(f"{{{VERSION}}}name", None, [software[0]]))
        q.append(Element(f"{{{VERSION}}}version", None, [software[1]]))
        return iq_result(request, q)
    raise unsupported(payload)


def unsupported(payload: Element) -> StanzaError:
    """``service-unavailable`` that names the namespace (RFC 6120 §8.4): the sender (and
    the log) can tell a missing feature from a missing recipient."""
    return StanzaError("service-unavailable", f"{payload.namespace} is not supported")


def account_info(request: Element, payload: Element) -> Element:
    """disco#info of an account's bare JID (XEP-0030 §3.1, category 'account'); the caller
    checks that the requester may see it. Raises `StanzaError` for anything else."""
    if request.get("type") == "get" and payload.tag == f"{{{DISCO_INFO}}}query":
        if payload.get("node") is not None:
            raise StanzaError("item-not-found")
        return iq_result(
            request, _info({"category": "account", "type": "registered"}, ACCOUNT_FEATURES)
        )
    # Only a requester who may see the account gets here: naming the namespace tells it
    # nothing about the account it does not know already.
    raise unsupported(payload)
