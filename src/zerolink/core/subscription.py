"""The subscription state machine of RFC 6121 (§3, Appendix A), for one user and contact.

The state of a contact is Appendix A's: the ``to``/``from`` halves of `subscription`, ``ask``
(Pending Out), ``pending_in`` (Pending In), plus ``approved`` (a pre-approval, §3.4).
`outbound` and `inbound` are the Appendix A tables as functions. Pure logic; used by the
roster (`zerolink.core.roster`) and presence (`zerolink.core.presence`) alike, so that neither
imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

__all__ = [
    "Inbound",
    "MakeItem",
    "RosterItem",
    "State",
    "has_from",
    "has_to",
    "inbound",
    "outbound",
    "with_state",
]


class RosterItem(Protocol):
    """One roster entry (``zerolink.store.roster.RosterItem``); `contact` is a bare JID string."""

    @property
    def contact(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def subscription(self) -> str: ...  # 'none' | 'to' | 'from' | 'both'
    @property
    def ask(self) -> bool: ...
    @property
    def approved(self) -> bool: ...
    @property
    def pending_in(self) -> bool: ...
    @property
    def groups(self) -> tuple[str, ...]: ...


class MakeItem(Protocol):
    """Builds a `RosterItem`; called with these keyword arguments only."""

    def __call__(
        self,
        *,
        contact: str,
        name: str | None,
        subscription: str,
        ask: bool,
        approved: bool,
        pending_in: bool,
        groups: tuple[str, ...],
    ) -> RosterItem: ...


def has_to(item: RosterItem | None) -> bool:
    """The user receives the contact's presence."""
    return item is not None and item.subscription in ("to", "both")


def has_from(item: RosterItem | None) -> bool:
    """The contact receives the user's presence."""
    return item is not None and item.subscription in ("from", "both")


@dataclass(frozen=True, slots=True)
class State:
    """The Appendix A state of one contact, plus the §3.4 pre-approval."""

    to: bool = False
    frm: bool = False
    ask: bool = False  # Pending Out
    pending_in: bool = False  # Pending In
    approved: bool = False

    @classmethod
    def of(cls, item: RosterItem | None) -> State:
        if item is None:
            return cls()
        return cls(has_to(item), has_from(item), item.ask, item.pending_in, item.approved)

    @property
    def subscription(self) -> str:
        return ("none", "to", "from", "both")[self.to + 2 * self.frm]


def outbound(s: State, kind: str) -> tuple[bool, State]:
    """(route the stanza?, new state) when the user sends a subscription stanza (A.2, §3.4)."""
    if kind == "subscribe":  # A.2.1: always routed (the contact's server resyncs)
        return True, replace(s, ask=s.ask or not s.to)
    if kind == "unsubscribe":  # A.2.2: always routed
        return True, replace(s, to=False, ask=False)
    if kind == "subscribed":  # A.2.3
        if s.pending_in:
            return True, replace(s, frm=True, pending_in=False, approved=False)
        if s.frm:
            return False, s
        return False, replace(s, approved=True)  # §3.4.1 pre-approval, not routed
    if kind == "unsubscribed":  # A.2.4
        if s.pending_in or s.frm:
            return True, replace(s, frm=False, pending_in=False, approved=False)
        return False, replace(s, approved=False)  # §3.4: cancels a pre-approval, not routed
    raise ValueError(f"not a subscription type: {kind!r}")


class Inbound(Enum):
    """What the user's server does with an inbound subscription stanza (A.3)."""

    IGNORE = "ignore"  # no state change, not delivered
    DELIVER = "deliver"  # state changed: deliver to the user's resources, roster push
    AUTO_REPLY = "auto-reply"  # subscribe while already 'from': answer 'subscribed' (§3.1.3)
    AUTO_APPROVE = "auto-approve"  # subscribe pre-approved: 'from' granted, answered (§3.4)


def inbound(s: State, kind: str) -> tuple[Inbound, State]:
    """(action, new state) for a subscription stanza from a contact to the user (A.3)."""
    if kind == "subscribe":  # A.3.1
        if s.frm:
            return Inbound.AUTO_REPLY, s
        if s.approved:
            return Inbound.AUTO_APPROVE, replace(s, frm=True, approved=False, pending_in=False)
        if s.pending_in:
            return Inbound.IGNORE, s
        return Inbound.DELIVER, replace(s, pending_in=True)
    if kind == "subscribed":  # A.3.3
        if s.ask:
            return Inbound.DELIVER, replace(s, to=True, ask=False)
        return Inbound.IGNORE, s
    if kind == "unsubscribed":  # A.3.4 (a pre-approval is kept, §4.3.2)
        if s.ask or s.to:
            return Inbound.DELIVER, replace(s, to=False, ask=False)
        return Inbound.IGNORE, s
    if kind == "unsubscribe":  # A.3.2
        if s.pending_in or s.frm:
            return Inbound.DELIVER, replace(s, frm=False, pending_in=False)
        return Inbound.IGNORE, s
    raise ValueError(f"not a subscription type: {kind!r}")


def with_state(make_item: MakeItem, contact: str, old: RosterItem | None, s: State) -> RosterItem:
    """`old` (or a new item for `contact`) with the subscription state `s`."""
    return make_item(
        contact=contact,
        name=None if old is None else old.name,
        subscription=s.subscription,
        ask=s.ask,
        approved=s.approved,
        pending_in=s.pending_in,
        groups=() if old is None else tuple(old.groups),
    )
