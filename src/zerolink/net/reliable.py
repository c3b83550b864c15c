"""The link log store behind `zerolink.core.delivery.ReliableDelivery` (``acks = true``).

The protocol is in core; this is its `Journal`: the store's records under the link's name,
with the wall-clock time a stanza was queued (so its deadline survives a restart), and the
daemon's `GroupCommit` (one commit per loop turn, shared by every link), for which it is the
`Writer` of this link.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from zerolink.core.actions import Action
from zerolink.core.reliable import Entry
from zerolink.store import StoreError
from zerolink.xml.parser import parse_stanza

if TYPE_CHECKING:
    from zerolink.core.delivery import ReliableDelivery
    from zerolink.net.commit import GroupCommit
    from zerolink.store import LinkLogStore

log = logging.getLogger("zerolink.link")


class LinkJournal:
    """One link's records in the link log store (see the module docstring)."""

    def __init__(
        self,
        name: str,
        store: LinkLogStore,
        commits: GroupCommit,
        after_commit: Callable[[list[Action]], None],
    ) -> None:
        self.name = name
        self.store = store
        self.commits = commits
        self.after_commit = after_commit
        self.delivery: ReliableDelivery | None = None  # set by `load`

    def load(self, delivery: ReliableDelivery, now: float) -> None:
        """Give `delivery` what the store kept from the link's previous life."""
        self.delivery = delivery
        rec = self.store.load(self.name)
        now_wall = time.time()
        timeout = delivery.log.timeout
        entries = [
            Entry(seq, now + (queued_at + timeout - now_wall), parse_stanza(xml), len(xml))
            for seq, queued_at, xml in rec.entries
        ]
        delivery.restore(rec.received, rec.next_seq, entries)
        if rec.entries or rec.received:
            log.info(
                "link %s: restored %d unacknowledged stanza(s); %d received so far",
                self.name,
                len(rec.entries),
                rec.received,
            )

    # -- Journal (zerolink.core.delivery) ----------------------------------------------------
    @property
    def failing(self) -> str | None:
        return self.commits.failing

    def accepting(self) -> bool:
        return self.commits.accepting()

    def add(self, seq: int, data: bytes) -> None:
        self.store.add(self.name, seq, time.time(), data)

    def remove(self, seq: int) -> None:
        self.store.remove(self.name, seq)

    def remove_below(self, seq: int) -> None:
        self.store.remove_below(self.name, seq)

    def state(self, received: int, next_seq: int) -> None:
        self.store.state(self.name, received, next_seq)

    def discard_added(self, from_seq: int) -> None:
        self.store.discard_added(self.name, from_seq)

    def renumber(self, shift: int) -> bool:
        try:
            self.store.renumber(self.name, shift)
        except StoreError:
            return False
        return True

    def commit_now(self) -> bool:
        return self.commits.commit_now(self)

    def request(self) -> None:
        """Commit at the end of this loop turn (the `Commit` action)."""
        self.commits.request(self)

    # -- Writer (zerolink.net.commit) --------------------------------------------------------
    def before_commit(self) -> None:
        assert self.delivery is not None
        self.delivery.before_commit()

    def committed(self, ok: bool) -> None:
        assert self.delivery is not None
        self.after_commit(self.delivery.committed(ok))
