"""Rosters of the local host (RFC 6121 §2) and their subscription states (§3).

Pure logic, no I/O. The roster store lives in ``zerolink.store``, which ``core`` must not
import: what the host needs of it is spelled out here as `typing.Protocol`s (`RosterStore`,
`OfflineStore`, `AccountStore`, `RosterItem`), which ``zerolink.store`` satisfies. New items
are made by a `MakeItem` callable passed to the host (``zerolink.store.roster.RosterItem``
itself fits), always called with keyword arguments.

The subscription state machine (RFC 6121 Appendix A) is in `zerolink.core.subscription`;
its names are re-exported here.

Items in the state "None + Pending In" with nothing else to show (no name, no group, no
pre-approval) exist only to hold an inbound request: like ejabberd, the host keeps them out of
the roster the client sees (`is_visible`), so a stranger's request does not add a contact; the
request reaches the client as a subscribe presence.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from zerolink.core.disco import iq_result
from zerolink.core.subscription import (
    Inbound,
    MakeItem,
    RosterItem,
    State,
    has_from,
    has_to,
    inbound,
    outbound,
)
from zerolink.errors import StanzaError
from zerolink.jid import JIDError, parse_jid
from zerolink.stanza import IQ
from zerolink.xml.element import Element

if TYPE_CHECKING:
    from zerolink.core.router import Router
    from zerolink.core.sessions import Resource, Resources

__all__ = [
    "GROUP",
    "ITEM",
    "QUERY",
    "ROSTER_NS",
    "AccountStore",
    "Inbound",
    "MakeItem",
    "OfflineStore",
    "Roster",
    "RosterItem",
    "RosterLimits",
    "RosterSet",
    "RosterStore",
    "State",
    "has_from",
    "has_to",
    "inbound",
    "is_empty",
    "is_visible",
    "item_element",
    "outbound",
    "parse_roster_set",
    "removed_element",
]

ROSTER_NS = "jabber:iq:roster"
QUERY = f"{{{ROSTER_NS}}}query"
ITEM = f"{{{ROSTER_NS}}}item"
GROUP = f"{{{ROSTER_NS}}}group"


@dataclass(frozen=True, slots=True)
class RosterLimits:
    """The server-configured limits of a roster (``host.roster_*``).

    RFC 6121 §2.3.3: a roster set whose item name or a group name is longer than a
    server-configured limit gets <not-acceptable/>; it sets no condition for too many groups
    (not-acceptable too, as for the other limits of an item) nor for a full roster. A full
    roster is a quota: <resource-constraint/> (RFC 6120 §8.3.3.18, "lacks the system
    resources necessary to service the request"). With the defaults the largest roster result
    is about 1 MB (1,000 items of 256 + 8 x 64 characters and a 30-byte JID; 2.5 MB if every
    character takes 3 bytes), under the default output budget of a client connection
    (``host.max_send_buffer``, 4 MiB).
    """

    max_items: int = 1000
    max_groups: int = 8
    max_name_chars: int = 256
    max_group_chars: int = 64


# -- what the host needs of the store ------------------------------------------------------------
class RosterStore(Protocol):
    """Rosters keyed by the user's bare JID string (``zerolink.store.roster.RosterStore``)."""

    def items(self, user: str) -> list[RosterItem]: ...
    def count(self, user: str) -> int: ...
    def get(self, user: str, contact: str) -> RosterItem | None: ...
    def put(self, user: str, item: RosterItem) -> int: ...
    def remove(self, user: str, contact: str) -> int | None: ...
    def version(self, user: str) -> int: ...
    def changes_since(
        self, user: str, version: int
    ) -> tuple[list[RosterItem], list[str], int] | None: ...
    def pending_in(self, user: str) -> list[tuple[str, bytes | None]]: ...
    def set_pending_stanza(self, user: str, contact: str, stanza: bytes | None) -> None: ...


class OfflineStore(Protocol):
    """XEP-0160 offline messages (``zerolink.store.offline.OfflineStore``)."""

    def push(self, user: str, stanza: bytes, stamp: float) -> bool: ...
    def batch(self, user: str, count: int, max_bytes: int) -> list[tuple[int, bytes, float]]: ...
    def remove_through(self, user: str, ident: int) -> None: ...
    def count(self, user: str) -> int: ...


class AccountStore(Protocol):
    def exists(self, local: str, domain: str) -> bool: ...


# -- states (the machine itself is in zerolink.core.subscription) ------------------------------
def is_visible(item: RosterItem) -> bool:
    """False for an item that only holds an inbound request ("None + Pending In", bare)."""
    return not (
        item.subscription == "none"
        and item.pending_in
        and not item.ask
        and not item.approved
        and item.name is None
        and not item.groups
    )


def is_empty(item: RosterItem) -> bool:
    """No subscription state, request, pre-approval, name or group: nothing worth keeping."""
    return (
        item.subscription == "none"
        and not (item.ask or item.pending_in or item.approved)
        and item.name is None
        and not item.groups
    )


def fields(item: RosterItem | None) -> tuple[object, ...] | None:
    """Every stored field, for comparing items of any class."""
    if item is None:
        return None
    return (
        item.contact,
        item.name,
        item.subscription,
        item.ask,
        item.approved,
        item.pending_in,
        tuple(item.groups),
    )


def view(item: RosterItem | None) -> tuple[object, ...] | None:
    """What the client sees of an item (None when it sees nothing)."""
    if item is None or not is_visible(item):
        return None
    return (item.contact, item.name, item.subscription, item.ask, item.approved, item.groups)


# -- XML ----------------------------------------------------------------------------------------
def item_element(item: RosterItem) -> Element:
    """``<item jid name subscription [ask] [approved]><group/>...</item>`` (RFC 6121 §2.1.2)."""
    attrib = {"jid": item.contact}
    if item.name is not None:
        attrib["name"] = item.name
    attrib["subscription"] = item.subscription
    if item.ask:
        attrib["ask"] = "subscribe"
    if item.approved:
        attrib["approved"] = "true"
    el = Element(ITEM, attrib)
    for g in item.groups:
        el.append(Element(GROUP, None, [g]))
    return el


def removed_element(contact: str) -> Element:
    return Element(ITEM, {"jid": contact, "subscription": "remove"})


def query_element(items: Sequence[Element] = (), ver: str | None = None) -> Element:
    return Element(QUERY, {"ver": ver} if ver is not None else None, list(items))


@dataclass(frozen=True, slots=True)
class RosterSet:
    """A validated roster set (RFC 6121 §2.3, §2.5)."""

    contact: str  # bare JID string
    remove: bool
    name: str | None
    groups: tuple[str, ...]


def parse_roster_set(query: Element, limits: RosterLimits | None = None) -> RosterSet:
    """Validate the ``<query/>`` of a roster set; raises `StanzaError` (RFC 6121 §2.3.3).

    The 'ask' and 'approved' attributes and any 'subscription' other than "remove" are ignored,
    as §2.1.2 requires of a server.
    """
    items = query.findall(ITEM)
    if len(items) != 1 or sum(1 for _ in query.elements()) != 1:
        raise StanzaError("bad-request", "a roster set carries exactly one item")
    item = items[0]
    raw = item.get("jid")
    if not raw:
        raise StanzaError("bad-request", "roster item without 'jid'")
    try:
        jid = parse_jid(raw)
    except JIDError as exc:
        raise StanzaError("jid-malformed", exc.text) from None
    if jid.resource is not None:
        raise StanzaError("bad-request", "roster items are bare JIDs")
    contact = str(jid)
    if item.get("subscription") == "remove":
        return RosterSet(contact, True, None, ())
    limits = limits or RosterLimits()
    name = item.get("name") or None
    if name is not None and len(name) > limits.max_name_chars:
        raise StanzaError("not-acceptable", f"name longer than {limits.max_name_chars} characters")
    groups: list[str] = []
    for g in item.findall(GROUP):
        text = g.text
        if not text:
            raise StanzaError("not-acceptable", "empty group name")
        if len(text) > limits.max_group_chars:
            raise StanzaError(
                "not-acceptable", f"group name longer than {limits.max_group_chars} characters"
            )
        if text in groups:
            raise StanzaError("bad-request", "duplicate group")
        groups.append(text)
        if len(groups) > limits.max_groups:
            raise StanzaError("not-acceptable", f"more than {limits.max_groups} groups")
    return RosterSet(contact, False, name, tuple(groups))


# -- the service ----------------------------------------------------------------------------------
class Roster:
    """The users' rosters: store access, what the client sees, roster pushes, roster IQs."""

    def __init__(
        self,
        store: RosterStore,
        make_item: MakeItem,
        resources: Resources,
        router: Router,
        limits: RosterLimits | None = None,
    ) -> None:
        self.store = store
        self.make_item = make_item
        self.resources = resources
        self.router = router
        self.limits = limits or RosterLimits()
        self._ids = itertools.count(1)

    def item(self, user: str, contact: str) -> RosterItem | None:
        return self.store.get(user, contact)

    def items(self, user: str) -> list[RosterItem]:
        return self.store.items(user)

    def save(
        self,
        user: str,
        old: RosterItem | None,
        new: RosterItem | None,
        *,
        force_push: bool = False,
    ) -> None:
        """Store `new` in place of `old` (None: remove) and push what the client sees change.

        An item left with nothing in it that the client never saw (a request declined or
        withdrawn) is deleted rather than kept. `force_push` (a roster set or remove by the
        user, RFC 6121 §2.3.2, §2.5.2) pushes even when nothing visible changed. A new
        contact in a roster that has `limits.max_items` items already raises `StanzaError`
        (resource-constraint), whoever adds it: the user, or a contact's subscription request.
        """
        if new is None:
            if old is None:
                return
            version = self.store.remove(user, old.contact)
            if version is not None and (force_push or is_visible(old)):
                self.push(user, removed_element(old.contact), version)
            return
        if not force_push:
            if fields(old) == fields(new):
                return
            if is_empty(new) and (old is None or not is_visible(old)):
                if old is not None:
                    self.store.remove(user, old.contact)
                return
        if old is None and self.store.count(user) >= self.limits.max_items:
            raise StanzaError(
                "resource-constraint", f"the roster is full ({self.limits.max_items} items)"
            )
        version = self.store.put(user, new)
        if force_push or view(old) != view(new):
            shown = force_push or is_visible(new)
            self.push(user, item_element(new) if shown else removed_element(new.contact), version)

    def push(self, user: str, item: Element, version: int) -> None:
        """A roster push to each interested resource of `user` (RFC 6121 §2.1.6)."""
        for r in self.resources.interested(user):
            self._push_to(r, item, str(version))

    def _push_to(self, res: Resource, item: Element, ver: str) -> None:
        iq = Element(IQ, {"type": "set", "id": f"push{next(self._ids)}", "to": str(res.jid)})
        iq.append(query_element([item.copy()], ver if res.versioning else None))
        self.router.route(iq)

    def handle(
        self,
        stanza: Element,
        query: Element,
        user: str,
        res: Resource | None,
        on_remove: Callable[[str, RosterItem], None],
    ) -> None:
        """A roster get or set by `user` from its resource `res`; answers through the router."""
        try:
            if stanza.get("type") == "get":
                self._get(stanza, query, user, res)
            else:
                self._set(stanza, query, user, on_remove)
        except StanzaError as exc:
            self.router.bounce(stanza, exc)

    def _get(self, stanza: Element, query: Element, user: str, res: Resource | None) -> None:
        """RFC 6121 §2.2, with versioning (§2.6)."""
        ver = query.get("ver")
        if res is not None:
            res.interested = True
            res.versioning = ver is not None
        if ver is not None and res is not None and ver.isascii() and ver.isdigit():
            changes = self.store.changes_since(user, int(ver))
            # From version 0 the client holds nothing: one result beats a push per item.
            if changes is not None and (int(ver) > 0 or changes[2] == 0):
                changed, removed, current = changes
                self.router.route(iq_result(stanza))  # §2.6.3: empty result, then pushes
                pushes = [item_element(i) for i in changed if is_visible(i)]
                pushes += [removed_element(c) for c in removed]
                for n, el in enumerate(pushes, 1):
                    # Only the last push moves the client to the current version: should the
                    # stream break half way, it asks again from its old one.
                    self._push_to(res, el, str(current) if n == len(pushes) else ver)
                return
        items = [item_element(i) for i in self.store.items(user) if is_visible(i)]
        version = str(self.store.version(user)) if ver is not None else None
        self.router.route(iq_result(stanza, query_element(items, version)))

    def _set(
        self,
        stanza: Element,
        query: Element,
        user: str,
        on_remove: Callable[[str, RosterItem], None],
    ) -> None:
        """RFC 6121 §2.3 (add, update) and §2.5 (remove)."""
        rs = parse_roster_set(query, self.limits)
        old = self.store.get(user, rs.contact)
        if rs.remove:
            if old is None:
                raise StanzaError("item-not-found")
            self.save(user, old, None, force_push=True)
            on_remove(user, old)
        else:
            if rs.contact == user:
                raise StanzaError("not-allowed", "you cannot be your own contact")
            s = State.of(old)
            new = self.make_item(
                contact=rs.contact,
                name=rs.name,
                subscription=s.subscription,
                ask=s.ask,
                approved=s.approved,
                pending_in=s.pending_in,
                groups=rs.groups,
            )
            self.save(user, old, new, force_push=True)
        self.router.route(iq_result(stanza))
