"""Offline messages (XEP-0160): stanzas kept for a user with no available resource.

Stored as serialized XML bytes with the time of arrival (seconds since the epoch, given by the
caller: the store reads no clock), delivered in arrival order and deleted in the same
transaction that reads them. Each user's queue holds at most `limit_per_user` messages; a
full queue refuses new ones (the caller bounces them, XEP-0160 §3). The queue belongs to the
account and goes with it.
"""

from __future__ import annotations

from zerolink.store.accounts import account_id_for_jid, require_account
from zerolink.store.db import Database


class OfflineStore:
    def __init__(self, db: Database, *, limit_per_user: int = 1000) -> None:
        if limit_per_user < 0:
            raise ValueError("limit_per_user must be >= 0")
        self.db = db
        self.limit_per_user = limit_per_user

    def push(self, user: str, stanza: bytes, stamp: float) -> bool:
        """Queue `stanza` for the bare JID `user`; False if the queue is full.

        Raises `NoSuchAccount` if `user` has no account.
        """
        blob = bytes(stanza)
        with self.db.transaction() as conn:
            aid = require_account(conn, user)
            count = conn.execute(
                "SELECT count(*) FROM offline_message WHERE account_id = ?", (aid,)
            ).fetchone()[0]
            if count >= self.limit_per_user:
                return False
            conn.execute(
                "INSERT INTO offline_message (account_id, stamp, stanza) VALUES (?, ?, ?)",
                (aid, float(stamp), blob),
            )
            return True

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
