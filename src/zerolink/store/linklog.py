"""Durable outbound logs and counters of links with reliable delivery.

Writes are grouped: the link records what happened during one turn of the event loop and
`commit()` writes it in one transaction (WAL, synchronous=NORMAL: durable across a crash or
kill of the daemon; a power loss may lose the last transactions). A stanza counts as accepted
once its transaction is committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zerolink.store.db import Database


@dataclass(slots=True)
class LinkRecord:
    """What was stored for one peer link."""

    received: int = 0
    next_seq: int = 0
    entries: list[tuple[int, float, bytes]] = field(default_factory=list)  # seq, queued_at, xml


class LinkLogStore:
    """The `link_out` and `link_state` tables, with writes batched until `commit()`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._added: list[tuple[str, int, float, bytes]] = []
        self._removed: dict[str, list[int]] = {}
        self._below: dict[str, int] = {}
        self._state: dict[str, tuple[int, int]] = {}

    def load(self, peer: str) -> LinkRecord:
        with self.db.transaction(write=False) as conn:
            row = conn.execute(
                "SELECT received, next_seq FROM link_state WHERE peer = ?", (peer,)
            ).fetchone()
            entries = conn.execute(
                "SELECT seq, queued_at, stanza FROM link_out WHERE peer = ? ORDER BY seq",
                (peer,),
            ).fetchall()
        rec = LinkRecord(entries=[(s, q, bytes(x)) for s, q, x in entries])
        if row is not None:
            rec.received, rec.next_seq = row
        if rec.entries:
            rec.next_seq = max(rec.next_seq, rec.entries[-1][0] + 1)
        return rec

    @property
    def has_additions(self) -> bool:
        """True when stanzas are recorded that the next commit writes."""
        return bool(self._added)

    @property
    def dirty(self) -> bool:
        return bool(self._added or self._removed or self._below or self._state)

    def add(self, peer: str, seq: int, queued_at: float, stanza: bytes) -> None:
        self._added.append((peer, seq, queued_at, stanza))

    def remove_below(self, peer: str, seq: int) -> None:
        """Everything before `seq` was acknowledged."""
        self._below[peer] = max(seq, self._below.get(peer, seq))

    def remove(self, peer: str, seq: int) -> None:
        self._removed.setdefault(peer, []).append(seq)

    def state(self, peer: str, received: int, next_seq: int) -> None:
        self._state[peer] = (received, next_seq)

    def renumber(self, peer: str, shift: int) -> None:
        """Shift the stored sequence numbers of `peer` (after `commit()` of what is pending)."""
        offset = 1 << 62  # two steps, so no row collides with another mid-update
        with self.db.transaction() as conn:
            conn.execute("UPDATE link_out SET seq = seq + ? WHERE peer = ?", (shift + offset, peer))
            conn.execute("UPDATE link_out SET seq = seq - ? WHERE peer = ?", (offset, peer))

    def discard_added(self, peer: str, from_seq: int) -> None:
        """Forget recorded additions of `peer` from `from_seq` on (they could not be written
        and were refused to their senders: a later commit must not store them)."""
        self._added = [a for a in self._added if a[0] != peer or a[1] < from_seq]

    def commit(self) -> None:
        """Write everything recorded since the last commit, in one transaction.

        Raises `StoreError` (e.g. the disk is full) with everything still recorded, so that
        a later commit writes it; the caller decides what to refuse meanwhile.
        """
        if not self.dirty:
            return
        added, removed, below, state = self._added, self._removed, self._below, self._state
        self._added, self._removed, self._below, self._state = [], {}, {}, {}
        try:
            self._write(added, removed, below, state)
        except BaseException:
            # Keep it all, merged with whatever was recorded meanwhile (nothing can be: the
            # write is synchronous), for the next attempt.
            self._added = added + self._added
            for peer, seqs in removed.items():
                self._removed.setdefault(peer, [])[:0] = seqs
            for peer, seq in below.items():
                self._below[peer] = max(seq, self._below.get(peer, seq))
            self._state = {**state, **self._state}
            raise

    def _write(
        self,
        added: list[tuple[str, int, float, bytes]],
        removed: dict[str, list[int]],
        below: dict[str, int],
        state: dict[str, tuple[int, int]],
    ) -> None:
        with self.db.transaction() as conn:
            if added:
                conn.executemany(
                    "INSERT OR REPLACE INTO link_out (peer, seq, queued_at, stanza) "
                    "VALUES (?, ?, ?, ?)",
                    added,
                )
            for peer, seq in below.items():
                conn.execute("DELETE FROM link_out WHERE peer = ? AND seq < ?", (peer, seq))
            for peer, seqs in removed.items():
                conn.executemany(
                    "DELETE FROM link_out WHERE peer = ? AND seq = ?", [(peer, s) for s in seqs]
                )
            for peer, (received, next_seq) in state.items():
                conn.execute(
                    "INSERT INTO link_state (peer, received, next_seq) VALUES (?, ?, ?) "
                    "ON CONFLICT (peer) DO UPDATE SET received = excluded.received, "
                    "next_seq = excluded.next_seq",
                    (peer, received, next_seq),
                )
