"""Who may hold a connection that has not authenticated yet (issue: idle floods lock out users).

Every listener gives strangers a budget: at most `total` connections that have not finished
setting up (authentication for clients, the handshake for components, identification for
X2X peers), and at most `per_address` of them from one source. A full budget evicts the
connection that has been idle longest — one that sent nothing for `idle_after` seconds — rather
than refusing the newcomer: a slow-loris attacker holds slots by sending nothing, a real client
progresses within moments. Only when no connection is idle is the newcomer refused.

Sources are addresses; an IPv6 source counts by its /64, the block one host or LAN gets, so
that one machine cannot take a new slot per address of its prefix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

C = TypeVar("C", bound=Hashable)

#: Seconds without a byte after which a pre-auth connection may be evicted for a newcomer.
IDLE_AFTER = 2.0


def source_of(address: str) -> str:
    """The budget key of a peer address: the address, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(slots=True)
class _Entry:
    source: str
    since: float  # admitted
    active: float  # last byte received


@dataclass(frozen=True, slots=True)
class Verdict(Generic[C]):
    """`admitted`, and the connection to close to make room (None when there was room)."""

    admitted: bool
    evict: C | None = None
    reason: str = ""


@dataclass(slots=True)
class Admission(Generic[C]):
    """The pre-authentication budget of one listener (see the module docstring)."""

    total: int
    per_address: int
    idle_after: float = IDLE_AFTER
    _entries: dict[C, _Entry] = field(default_factory=dict)
    _by_source: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._entries)

    def count(self, address: str) -> int:
        return self._by_source.get(source_of(address), 0)

    def admit(self, conn: C, address: str, now: float) -> Verdict[C]:
        """Take `conn` from `address` into the budget, or say why not (or whom to evict)."""
        source = source_of(address)
        evict: C | None = None
        if self._by_source.get(source, 0) >= self.per_address:
            evict = self._idlest(now, source)
            if evict is None:
                return Verdict(
                    False,
                    reason=f"{self.per_address} connections from {source} are already setting up",
                )
        elif len(self._entries) >= self.total:
            evict = self._idlest(now, None)
            if evict is None:
                return Verdict(False, reason=f"{self.total} connections are already setting up")
        if evict is not None:
            self.release(evict)
        self._entries[conn] = _Entry(source, now, now)
        self._by_source[source] = self._by_source.get(source, 0) + 1
        return Verdict(True, evict)

    def active(self, conn: C, now: float) -> None:
        """`conn` sent something: not idle."""
        entry = self._entries.get(conn)
        if entry is not None:
            entry.active = now

    def release(self, conn: C) -> None:
        """`conn` authenticated or closed: its slot is free."""
        entry = self._entries.pop(conn, None)
        if entry is None:
            return
        left = self._by_source[entry.source] - 1
        if left:
            self._by_source[entry.source] = left
        else:
            del self._by_source[entry.source]

    def _idlest(self, now: float, source: str | None) -> C | None:
        """The connection idle longest (of `source`, if given), if any is idle at all."""
        best: C | None = None
        best_active = now - self.idle_after
        for conn, entry in self._entries.items():
            if source is not None and entry.source != source:
                continue
            if entry.active <= best_active:
                best, best_active = conn, entry.active
        return best
