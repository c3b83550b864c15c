"""Presence and subscriptions of the local host (RFC 6121 §3, §4), sans-I/O.

`Resources` keeps the bound client sessions and what RFC 6121 needs to know of each (available,
last presence, priority, interested in roster pushes, directed presence sent). `Presence` runs
the flows: outbound stanzas from a client, inbound ones to an existing account. Everything
leaves through ``router.route`` (to local users too, so local and remote contacts take one
path); stanzas are delivered to a session with ``session.send`` only once they have arrived.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from zerolink.core.sessions import ClientSession, Resource, Resources
from zerolink.core.subscription import (
    Inbound,
    State,
    has_from,
    has_to,
    inbound,
    outbound,
    with_state,
)
from zerolink.errors import StanzaError, StreamError
from zerolink.jid import JID, JIDError, parse_jid
from zerolink.stanza import PRESENCE
from zerolink.xml.element import SERVER_NS, Element
from zerolink.xml.parser import parse_stanza
from zerolink.xml.serializer import serialize

if TYPE_CHECKING:
    from zerolink.core.roster import Roster, RosterItem
    from zerolink.core.router import Router

__all__ = ["SUBSCRIPTION_TYPES", "ClientSession", "Presence", "Resource", "Resources"]

log = logging.getLogger("zerolink.host")

SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})
PRIORITY = f"{{{SERVER_NS}}}priority"
_INTEGER = re.compile("[+-]?[0-9]{1,4}").fullmatch
#: Bytes of an inbound subscribe stanza kept to be delivered again (status, nick: XEP-0172).
MAX_PENDING_STANZA = 2048


def presence(kind: str | None, frm: str, to: str) -> Element:
    attrib = {"from": frm, "to": to}
    if kind is not None:
        attrib["type"] = kind
    return Element(PRESENCE, attrib)


def parse_priority(stanza: Element) -> int:
    """The <priority/> of an available presence (RFC 6121 §4.7.2.3); raises ValueError."""
    el = stanza.find(PRIORITY)
    if el is None:
        return 0
    text = el.text.strip()
    if not _INTEGER(text) or not -128 <= int(text) <= 127:
        raise ValueError(f"invalid priority {text!r}")
    return int(text)


def parse_stored(raw: bytes) -> Element | None:
    """A stanza stored as bytes (serialized in ``jabber:server``), or None if unreadable."""
    try:
        return parse_stanza(raw)
    except (StreamError, ValueError) as exc:
        log.warning("unreadable stored stanza: %s", exc)
    return None


def send_all(resources: Iterable[Resource], stanza: Element) -> None:
    """Deliver `stanza` to each resource (a copy to all but the first)."""
    first = True
    for r in resources:
        r.session.send(stanza if first else stanza.copy())
        first = False


class Presence:
    """Presence broadcast, probes, directed presence and the subscription state machine."""

    def __init__(
        self,
        resources: Resources,
        roster: Roster,
        router: Router,
        *,
        on_available: Callable[[Resource], None],
    ) -> None:
        self.resources = resources
        self.roster = roster
        self.router = router
        # Called when a resource becomes available with a non-negative priority (offline
        # messages are then due, XEP-0160).
        self.on_available = on_available

    # -- helpers ---------------------------------------------------------------------------
    def _send(self, stanza: Element, to: str) -> None:
        """Route a copy of `stanza` addressed to `to`."""
        out = stanza.copy()
        out.set("to", to)
        self.router.route(out)

    def _send_current(self, user: str, contact: str) -> None:
        """The presence of each of the user's available resources, to `contact` (§3.1.5)."""
        for r in self.resources.available(user):
            if r.presence is not None:
                self._send(r.presence, contact)

    def _send_unavailable(self, user: str, contact: str) -> None:
        """Unavailable from each of the user's available resources, to `contact` (§3.2.2)."""
        for r in self.resources.available(user):
            self.router.route(presence("unavailable", str(r.jid), contact))

    # -- from a client ---------------------------------------------------------------------
    def from_client(self, res: Resource, stanza: Element, to: JID | None) -> None:
        kind = stanza.get("type")
        if kind in SUBSCRIPTION_TYPES:
            if to is None:
                self.router.bounce(stanza, StanzaError("bad-request", "no 'to'"))
                return
            self._outbound_subscription(res, stanza, to, kind)
        elif kind == "probe":
            # Only the server probes (§4.3); a client's probe is honoured only where the
            # server itself would send one, so it cannot provoke an 'unsubscribed' answer.
            if to is not None and has_to(self.roster.item(res.bare, str(to.bare))):
                self.router.route(presence("probe", res.bare, str(to.bare)))
        elif kind is None or kind == "unavailable":
            if to is None:
                self._broadcast(res, stanza)
            else:
                self._directed(res, stanza, to)
        elif kind == "error":
            if to is not None:
                self.router.route(stanza)
        else:
            self.router.bounce(stanza, StanzaError("bad-request", "unknown presence type"))

    def _broadcast(self, res: Resource, stanza: Element) -> None:
        """Initial and subsequent presence (§4.2.2, §4.4.2)."""
        if stanza.get("type") == "unavailable":
            self.unavailable(res, stanza)
            return
        try:
            priority = parse_priority(stanza)
        except ValueError as exc:
            self.router.bounce(stanza, StanzaError("bad-request", str(exc)))
            return
        initial = not res.available
        was_nonneg = res.available and res.priority >= 0
        stanza = stanza.copy()
        stanza.attrib.pop("to", None)
        res.available, res.presence, res.priority = True, stanza, priority
        user = res.bare
        items = self.roster.items(user)
        if initial:  # probes from the bare JID to the contacts the user is subscribed to
            for it in items:
                if has_to(it):
                    self.router.route(presence("probe", user, it.contact))
        for it in items:
            if has_from(it):
                self._send(stanza, it.contact)
        for r in self.resources.available(user):  # the user's resources, this one included
            self._send(stanza, str(r.jid))
        if initial:
            for r in self.resources.available(user):
                if r is not res and r.presence is not None:
                    self._send(r.presence, str(res.jid))
            self._redeliver_requests(res)
        if priority >= 0 and not was_nonneg:
            self.on_available(res)

    def _redeliver_requests(self, res: Resource) -> None:
        """Inbound subscription requests still unanswered (§3.1.3)."""
        for contact, raw in self.roster.store.pending_in(res.bare):
            stanza = parse_stored(raw) if raw else None
            if stanza is None:
                stanza = presence("subscribe", contact, res.bare)
            res.session.send(stanza)

    def unavailable(self, res: Resource, stanza: Element | None = None) -> None:
        """The resource goes unavailable, by presence or by disconnecting (§4.5.2, §4.6.3).

        A resource already unbound is no longer among the user's resources, so it is not sent
        its own unavailable presence; one still connected is (§4.5.2).
        """
        if stanza is None:
            out = Element(PRESENCE, {"type": "unavailable"})
        else:
            out = stanza.copy()
            out.attrib.pop("to", None)
        out.set("from", str(res.jid))
        user = res.bare
        targets: list[str] = []
        subscribers: set[str] = set()
        if res.available:
            subscribers = {it.contact for it in self.roster.items(user) if has_from(it)}
            targets += sorted(subscribers)
        for to in res.directed:
            try:
                if str(parse_jid(to).bare) in subscribers:
                    continue  # covered by the broadcast
            except JIDError:
                continue
            targets.append(to)
        if res.available:
            targets += [str(r.jid) for r in self.resources.available(user)]
        res.available, res.presence, res.priority = False, None, 0
        res.directed.clear()
        for to in targets:
            self._send(out, to)

    def _directed(self, res: Resource, stanza: Element, to: JID) -> None:
        """Directed presence (§4.6): remembered so that unavailable follows it later."""
        key = str(to)
        if stanza.get("type") == "unavailable":
            res.directed.pop(key, None)
        elif not (res.available and has_from(self.roster.item(res.bare, str(to.bare)))):
            res.directed[key] = None
        self.router.route(stanza)

    def _outbound_subscription(self, res: Resource, stanza: Element, to: JID, kind: str) -> None:
        """subscribe / subscribed / unsubscribe / unsubscribed from the user (§3, A.2)."""
        user, contact = res.bare, str(to.bare)
        if contact == user:
            return  # no subscription to oneself
        old = self.roster.item(user, contact)
        route, state = outbound(State.of(old), kind)
        try:
            self.roster.save(user, old, with_state(self.roster.make_item, contact, old, state))
        except StanzaError as exc:  # the roster is full
            self.router.bounce(stanza, exc)
            return
        if not route:
            return
        out = stanza.copy()
        out.set("from", user)  # §3.1.2: bare JIDs both ways
        out.set("to", contact)
        self.router.route(out)
        if kind == "subscribed":
            self._send_current(user, contact)  # §3.1.5
        elif kind == "unsubscribed" and has_from(old):
            self._send_unavailable(user, contact)  # §3.2.2

    def contact_removed(self, user: str, old: RosterItem) -> None:
        """A roster item was removed by the user: cancel both ways (§2.5.2)."""
        contact = old.contact
        if has_to(old) or old.ask:
            self.router.route(presence("unsubscribe", user, contact))
        if has_from(old) or old.pending_in:
            self.router.route(presence("unsubscribed", user, contact))
        if has_from(old):
            self._send_unavailable(user, contact)

    # -- to an existing account ------------------------------------------------------------
    def inbound(self, stanza: Element, to: JID, sender: JID | None, user: str) -> None:
        kind = stanza.get("type")
        if kind in SUBSCRIPTION_TYPES or kind == "probe":
            if sender is None:
                return
            if kind == "probe":
                self._probe(stanza, user, sender)
            else:
                self._inbound_subscription(stanza, user, str(sender.bare), kind)
        elif kind is None or kind == "unavailable" or kind == "error":
            if to.resource is None:  # §8.5.2.1: every available resource
                send_all(self.resources.available(user), stanza)
            else:  # §8.5.3: that resource, if connected; else ignored
                send_all(filter(None, [self.resources.get(to)]), stanza)
        else:
            log.debug("ignored presence of unknown type %r to %s", kind, user)

    def _inbound_subscription(self, stanza: Element, user: str, contact: str, kind: str) -> None:
        """A subscription stanza from `contact` to `user` (§3, A.3)."""
        if contact == user:
            return
        old = self.roster.item(user, contact)
        action, state = inbound(State.of(old), kind)
        if action is Inbound.IGNORE:
            return
        if action is Inbound.AUTO_REPLY:  # §3.1.3: already subscribed
            self.router.route(presence("subscribed", user, contact))
            self._send_current(user, contact)
            return
        try:
            self.roster.save(user, old, with_state(self.roster.make_item, contact, old, state))
        except StanzaError as exc:  # the roster is full: the requester is told
            self.router.bounce(stanza, exc)
            return
        if action is Inbound.AUTO_APPROVE:  # §3.4: pre-approved
            self.router.route(presence("subscribed", user, contact))
            self._send_current(user, contact)
            return
        out = stanza.copy()
        out.set("from", contact)
        out.set("to", user)
        if kind == "subscribe":  # §3.1.3: kept until answered, delivered to available ones
            raw = serialize(out)
            # Kept whole only if small: every pending request is delivered again at each login
            # (a bare subscribe is sent in place of a larger one).
            self.roster.store.set_pending_stanza(
                user, contact, raw if len(raw) <= MAX_PENDING_STANZA else None
            )
            send_all(self.resources.available(user), out)
            return
        send_all(self.resources.interested(user), out)  # §3.1.6, §3.2.3, §3.3.3
        if kind == "unsubscribe" and has_from(old):
            self._send_unavailable(user, contact)  # §3.3.3

    def _probe(self, stanza: Element, user: str, sender: JID) -> None:
        """An inbound presence probe (§4.3.2)."""
        prober = str(sender.bare)
        if prober == user or has_from(self.roster.item(user, prober)):
            reply_to = stanza.get("from") or prober
            available = [r for r in self.resources.available(user) if r.presence is not None]
            for r in available:
                self._send(r.presence, reply_to)  # type: ignore[arg-type]
            if not available:
                self.router.route(presence("unavailable", user, reply_to))
        else:
            # Not subscribed: 'unsubscribed', so that the prober's server fixes its roster
            # (§4.3.2; that does not touch a pre-approval here).
            self.router.route(presence("unsubscribed", user, prober))
