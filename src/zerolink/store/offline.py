"""Offline messages (XEP-0160): stanzas kept for a user with no available resource.

Stored as serialized XML bytes with the time of arrival (seconds since the epoch, given by the
caller: the store reads no clock), delivered in arrival order. Each user's queue holds at most
`limit_per_user` messages and `bytes_per_user` bytes of stanzas; a full queue refuses new ones
(the caller bounces them, XEP-0160 §2). The queue belongs to the account and goes with it.

Delivery reads a `batch` (oldest first, bounded in count and bytes) and deletes it with
`remove_through` once the client has it, so that neither a large queue nor a client that drops
half way costs memory or messages.
"""

from __future__ import annotations

from zerolink.store.accounts import account_id_for_jid, require_account
from zerolink.store.db import Database

DEFAULT_BYTES = 10 * 1024 * 1024


class OfflineStore:
    def __init__(
        self, db: Database, *, limit_per_user: int = 1000, bytes_per_user: int = DEFAULT_BYTES
    ) -> None:
        if limit_per_user < 0:
            raise ValueError("limit_per_user must be >= 0")
        if bytes_per_user < 0:
            raise ValueError("bytes_per_user must be >= 0")
        self.db = db
        self.limit_per_user = limit_per_user
        self.bytes_per_user = bytes_per_user

    def push(self, user: str, stanza: bytes, stamp: float) -> bool:
        """Queue `stanza` for the bare JID `user`; False if the queue is full (in messages or
        in bytes).

        Raises `NoSuchAccount` if `user` has no account.
        """
        blob = bytes(stanza)
        with self.db.transaction() as conn:
            aid = require_account(conn, user)
            count, size = conn.execute(
                "SELECT count(*), coalesce(sum(length(stanza)), 0) FROM offline_message "
                "WHERE account_id = ?",
                (aid,),
            ).fetchone()
            if count >= self.limit_per_user or size + len(blob) > self.bytes_per_user:
                return False
            conn.execute(
                "INSERT INTO offline_message (account_id, stamp, stanza) VALUES (?, ?, ?)",
                (aid, float(stamp), blob),
            )
            return True

    def batch(self, user: str, count: int, max_bytes: int) -> list[tuple[int, bytes, float]]:
        """The oldest of `user`'s queued messages as (id, stanza, stamp), left in the store: at
        most `count` of them and `max_bytes` bytes of stanzas, but at least one if any."""
        with self.db.transaction(write=False) as conn:
            aid = account_id_for_jid(conn, user)
            if aid is None:
                return []
            sizes = conn.execute(
                "SELECT id, length(stanza) FROM offline_message WHERE account_id = ? "
                "ORDER BY id LIMIT ?",
                (aid, max(1, count)),
            ).fetchall()
            if not sizes:
                return []
            total, last = 0, sizes[0][0]
            for ident, size in sizes:
                total += size
                if total > max_bytes and ident != sizes[0][0]:
                    break
                last = ident
            rows = conn.execute(
                "SELECT id, stanza, stamp FROM offline_message "
                "WHERE account_id = ? AND id <= ? ORDER BY id",
                (aid, last),
            ).fetchall()
        return [(i, bytes(s), t) for i, s, t in rows]

    def remove_through(self, user: str, ident: int) -> None:
        """Delete `user`'s queued messages up to the id `ident` (a delivered batch)."""
        with self.db.transaction() as conn:
            aid = account_id_for_jid(conn, user)
            if aid is not None:
                conn.execute(
                    "DELETE FROM offline_message WHERE account_id = ? AND id <= ?", (aid, ident)
                )

    def pop_all(self, user: str) -> list[tuple[bytes, float]]:
        """All of `user`'s queued (stanza, stamp), oldest first, removed from the store."""
        with self.db.transaction() as conn:
            aid = account_id_for_jid(conn, user)
            if aid is None:
                return []
            rows = conn.execute(
                "SELECT stanza, stamp FROM offline_message WHERE account_id = ? ORDER BY id",
                (aid,),
            ).fetchall()
            if rows:
                conn.execute("DELETE FROM offline_message WHERE account_id = ?", (aid,))
        return [(bytes(s), t) for s, t in rows]

    def count(self, user: str) -> int:
        with self.db.transaction(write=False) as conn:
            aid = account_id_for_jid(conn, user)
            if aid is None:
                return 0
            return conn.execute(
                "SELECT count(*) FROM offline_message WHERE account_id = ?", (aid,)
            ).fetchone()[0]
