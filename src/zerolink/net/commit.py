"""Group commits of the link logs, and the rule that output waits for them.

Reliable delivery records what each link accepted during one turn of the event loop and
commits it in one transaction at the end of the turn (`request`). Two rules hang on that:

* A stanza is sent, and anything that tells a sender "later than X" (an iq result, an `<a/>`,
  a reply of a component or client) leaves this process, only once X is durable. Links send
  only what is committed; every other connection's flush commits first when a commit is
  pending (`before_output`), so a ping answered in the same read as ten messages cannot
  overtake their commit. That is still one commit per read at most, never one per stanza.
* A commit that fails (the disk is full) refuses what it could not write: each link bounces
  the stanzas of that commit with ``resource-constraint``, and while the condition lasts new
  stanzas are refused at once; one log line when it starts, one when it ends. Once a second,
  new stanzas are accepted again on trial, so acceptance resumes by itself when space returns.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from zerolink.store import LinkLogStore, StoreError

log = logging.getLogger("zerolink.store")

#: Seconds between trial acceptances while commits fail.
RETRY = 1.0


class Writer(Protocol):
    """A link that records into the log store (`zerolink.net.reliable.LinkJournal`)."""

    def before_commit(self) -> None:
        """Record the last state (counters) into the store."""

    def committed(self, ok: bool) -> None:
        """The commit that held this writer's records succeeded (or failed)."""


class GroupCommit:
    """The one commit per loop turn of a daemon's link logs (see the module docstring)."""

    def __init__(self, store: LinkLogStore) -> None:
        self.store = store
        self.loop = asyncio.get_running_loop()
        self._scheduled = False
        self._writers: dict[int, Writer] = {}  # those with records since the last commit
        #: Why the link logs cannot be written, while that lasts (None: they can).
        self.failing: str | None = None
        self.failing_since: float | None = None
        self._retry_at = 0.0

    @property
    def pending(self) -> bool:
        """True while something accepted in this turn waits for its commit."""
        return self._scheduled

    def request(self, writer: Writer) -> None:
        """`writer` recorded something: commit at the end of this loop turn (once)."""
        self._writers[id(writer)] = writer
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._run)

    def accepting(self) -> bool:
        """False while commits fail, except for one trial a second."""
        return self.failing is None or self.loop.time() >= self._retry_at

    def before_output(self) -> None:
        """A connection is about to write: what was accepted before must be durable first."""
        if self._scheduled:
            self.commit_now()

    def _run(self) -> None:
        if self._scheduled:
            self.commit_now()

    def commit_now(self, writer: Writer | None = None) -> bool:
        """Commit what is recorded; tell the writers; False if it could not be written."""
        self._scheduled = False
        if writer is not None:
            self._writers[id(writer)] = writer
        writers = list(self._writers.values())
        for w in writers:
            w.before_commit()
        with_stanzas = self.store.has_additions
        try:
            self.store.commit()
        except StoreError as exc:
            self._retry_at = self.loop.time() + RETRY
            if self.failing is None:
                self.failing = str(exc)
                self.failing_since = self.loop.time()
                log.error(
                    "link logs cannot be written (%s): stanzas for links with acks are refused "
                    "with resource-constraint until they can",
                    exc,
                )
            for w in writers:  # they stay registered: their records wait for the next try
                w.committed(False)
            return False
        self._writers.clear()
        if self.failing is not None and with_stanzas:
            since = self.failing_since or self.loop.time()
            log.warning(
                "link logs can be written again after %.0fs: stanzas are accepted",
                self.loop.time() - since,
            )
            self.failing = self.failing_since = None
        for w in writers:
            w.committed(True)
        return True
