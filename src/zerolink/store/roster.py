"""Rosters (RFC 6121 §2) with versioning (RFC 6121 §2.6, XEP-0237 style).

Each user's roster has an integer version, 0 while it has never changed, incremented by one on
every change. Each item remembers the version of its last change; a removed item leaves a
tombstone carrying the version of its removal. A client that presents version `v` can thus be
sent only the items changed after `v` and the contacts removed after `v`
(`changes_since`). Tombstones beyond `max_tombstones` per user are pruned, oldest first; the
roster then remembers the highest pruned version as its floor, and a client older than the
floor gets None from `changes_since` (the caller sends the full roster).

Rosters are keyed by the user's bare JID string ('local@domain') and belong to an account:
writing the roster of a JID without an account raises `NoSuchAccount`; reading it gives an
empty roster. Deleting the account deletes the roster.

The stored subscribe stanza of an inbound request (RFC 6121 §3.1.3: kept to be delivered
again until the user answers) is not part of the roster the client sees: setting it does not
change the version, and it is dropped when the item stops being `pending_in` or is removed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from zerolink.store.accounts import account_id_for_jid, require_account
from zerolink.store.db import Database, StoreError

SUBSCRIPTIONS = frozenset({"none", "to", "from", "both"})


class NoSuchRosterItem(StoreError):
    """An operation on a roster item that does not exist (or has been removed)."""


@dataclass(frozen=True)
class RosterItem:
    contact: str  # bare JID string
    name: str | None = None
    subscription: str = "none"  # 'none' | 'to' | 'from' | 'both'
    ask: bool = False  # outbound subscription request pending (ask='subscribe')
    approved: bool = False  # subscription pre-approved (RFC 6121 §3.4)
    pending_in: bool = False  # inbound subscription request awaiting the user's answer
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.contact, str) or not self.contact:
            raise ValueError("RosterItem.contact must be a non-empty bare JID string")
        if self.subscription not in SUBSCRIPTIONS:
            raise ValueError(
                f"RosterItem.subscription {self.subscription!r} not in {sorted(SUBSCRIPTIONS)}"
            )
        if isinstance(self.groups, str) or not isinstance(self.groups, Iterable):
            raise TypeError("RosterItem.groups must be a sequence of strings")
        groups = tuple(self.groups)
        if not all(isinstance(g, str) for g in groups):
            raise TypeError("RosterItem.groups must be a sequence of strings")
        object.__setattr__(self, "groups", groups)
        for flag in ("ask", "approved", "pending_in"):
            object.__setattr__(self, flag, bool(getattr(self, flag)))


_COLUMNS = "contact, name, subscription, ask, approved, pending_in, groups"


def _item(row: tuple) -> RosterItem:
    contact, name, subscription, ask, approved, pending_in, groups = row
    return RosterItem(
        contact=contact,
        name=name,
        subscription=subscription,
        ask=bool(ask),
        approved=bool(approved),
        pending_in=bool(pending_in),
        groups=tuple(json.loads(groups)),
    )


def _state(conn: sqlite3.Connection, aid: int) -> tuple[int, int]:
    """(version, floor) of an account's roster."""
    row = conn.execute(
        "SELECT version, floor FROM roster_state WHERE account_id = ?", (aid,)
    ).fetchone()
    return (0, 0) if row is None else (row[0], row[1])


def _bump(conn: sqlite3.Connection, aid: int) -> int:
    """Increment the roster version and return the new one."""
    conn.execute(
        "INSERT INTO roster_state (account_id, version) VALUES (?, 1) "
        "ON CONFLICT (account_id) DO UPDATE SET version = version + 1",
        (aid,),
    )
    return _state(conn, aid)[0]


class RosterStore:
    def __init__(self, db: Database, *, max_tombstones: int = 1000) -> None:
        if max_tombstones < 0:
            raise ValueError("max_tombstones must be >= 0")
        self.db = db
        self.max_tombstones = max_tombstones

    def items(self, user: str) -> list[RosterItem]:
        """The live items of `user`'s roster, sorted by contact."""
        with self.db.transaction(write=False) as conn:
            aid = account_id_for_jid(conn, user)
            if aid is None:
                return []
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM roster_item WHERE account_id = ? AND removed = 0",
                (aid,),
            ).fetchall()
        return sorted((_item(r) for r in rows), key=lambda i: i.contact)

    def count(self, user: str) -> int:
        """The number of live items (with those only holding an inbound request)."""
        with self.db.transaction(write=False) as conn:
            aid = account_id_for_jid(conn, user)
            if aid is None:
                return 0
            return conn.execute(
                "SELECT count(*) FROM roster_item WHERE account_id = ? AND removed = 0", (aid,)
            ).fetchone()[0]

    def get(self, user: str, contact: str) -> RosterItem | None:
        with self.db.transaction(write=False) as conn:
            aid = account_id_for_jid(conn, user)
            if aid is None:
                return None
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM roster_item "
                "WHERE account_id = ? AND contact = ? AND removed = 0",
                (aid, contact),
            ).fetchone()
        return None if row is None else _item(row)

    def put(self, user: str, item: RosterItem) -> int:
        """Insert or replace `item`; returns the roster version after it.

        Putting an item identical to the stored one changes nothing and returns the current
        version (no needless roster push). Raises `NoSuchAccount` if `user` has no account.
        """
        if not isinstance(item, RosterItem):
            raise TypeError("put() takes a RosterItem")
        groups = json.dumps(list(item.groups), ensure_ascii=False)
        with self.db.transaction() as conn:
            aid = require_account(conn, user)
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM roster_item "
                "WHERE account_id = ? AND contact = ? AND removed = 0",
                (aid, item.contact),
            ).fetchone()
            if row is not None and _item(row) == item:
                return _state(conn, aid)[0]
            version = _bump(conn, aid)
            conn.execute(
                "INSERT INTO roster_item (account_id, contact, version, removed, name, "
                "subscription, ask, approved, pending_in, groups, pending_stanza) "
                "VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, NULL) "
                "ON CONFLICT (account_id, contact) DO UPDATE SET "
                "version = excluded.version, name = excluded.name, "
                "subscription = excluded.subscription, ask = excluded.ask, "
                "approved = excluded.approved, pending_in = excluded.pending_in, "
                "groups = excluded.groups, "
                # Keep the stored subscribe stanza while the request is still pending.
                "pending_stanza = CASE WHEN removed = 0 AND excluded.pending_in "
                "THEN pending_stanza END, "
                "removed = 0",
                (
                    aid,
                    item.contact,
                    version,
                    item.name,
                    item.subscription,
                    int(item.ask),
                    int(item.approved),
                    int(item.pending_in),
                    groups,
                ),
            )
            return version

    def remove(self, user: str, contact: str) -> int | None:
        """Remove `contact` (leaving a tombstone); the new version, None if nothing was there."""
        with self.db.transaction() as conn:
            aid = account_id_for_jid(conn, user)
            if aid is None:
                return None
            exists = conn.execute(
                "SELECT 1 FROM roster_item WHERE account_id = ? AND contact = ? AND removed = 0",
                (aid, contact),
            ).fetchone()
            if exists is None:
                return None
            version = _bump(conn, aid)
            conn.execute(
                "UPDATE roster_item SET removed = 1, version = ?, name = NULL, "
                "subscription = 'none', ask = 0, approved = 0, pending_in = 0, groups = '[]', "
                "pending_stanza = NULL WHERE account_id = ? AND contact = ?",
                (version, aid, contact),
            )
            self._prune(conn, aid)
            return version

    def _prune(self, conn: sqlite3.Connection, aid: int) -> None:
        excess = (
            conn.execute(
                "SELECT count(*) FROM roster_item WHERE account_id = ? AND removed = 1", (aid,)
            ).fetchone()[0]
            - self.max_tombstones
        )
        if excess <= 0:
            return
        floor = conn.execute(
            "SELECT max(version) FROM (SELECT version FROM roster_item "
            "WHERE account_id = ? AND removed = 1 ORDER BY version LIMIT ?)",
            (aid, excess),
        ).fetchone()[0]
        conn.execute(
            "DELETE FROM roster_item WHERE account_id = ? AND removed = 1 AND version <= ?",
            (aid, floor),
        )
        conn.execute(
            "UPDATE roster_state SET floor = max(floor, ?) WHERE account_id = ?", (floor, aid)
        )

    def version(self, user: str) -> int:
        """The current roster version; 0 for an empty, never changed or unknown roster."""
        with self.db.transaction(write=False) as conn:
            aid = account_id_for_jid(conn, user)
            return 0 if aid is None else _state(conn, aid)[0]

    def changes_since(
        self, user: str, version: int
    ) -> tuple[list[RosterItem], list[str], int] | None:
        """(items changed after `version`, contacts removed after it, current version).

        None if `version` cannot be served incrementally: newer than the roster (another
        roster, or one that was deleted and created again) or older than the pruned floor.
        Both lists are sorted by contact. From version 0 the client holds nothing, so no
        removals are listed.
        """
        with self.db.transaction(write=False) as conn:
            aid = account_id_for_jid(conn, user)
            current, floor = (0, 0) if aid is None else _state(conn, aid)
            if version < 0 or version > current or version < floor:
                return None
            if aid is None or version == current:
                return [], [], current
            rows = conn.execute(
                f"SELECT removed, {_COLUMNS} FROM roster_item "
                "WHERE account_id = ? AND version > ? ORDER BY contact",
                (aid, version),
            ).fetchall()
        changed = [_item(r[1:]) for r in rows if not r[0]]
        removed = [r[1] for r in rows if r[0]] if version > 0 else []
        return changed, removed, current

    def pending_in(self, user: str) -> list[tuple[str, bytes | None]]:
        """Contacts with an inbound subscription request pending, with the stored subscribe
        stanza (serialized XML) if any; sorted by contact."""
        with self.db.transaction(write=False) as conn:
            aid = account_id_for_jid(conn, user)
            if aid is None:
                return []
            rows = conn.execute(
                "SELECT contact, pending_stanza FROM roster_item "
                "WHERE account_id = ? AND removed = 0 AND pending_in = 1 ORDER BY contact",
                (aid,),
            ).fetchall()
        return [(c, None if s is None else bytes(s)) for c, s in rows]

    def set_pending_stanza(self, user: str, contact: str, stanza: bytes | None) -> None:
        """Store (or clear, with None) the inbound subscribe stanza of a roster item.

        Not a roster change: the version stays. Raises `NoSuchAccount`, or
        `NoSuchRosterItem` if `contact` is not in the roster.
        """
        blob = None if stanza is None else bytes(stanza)
        with self.db.transaction() as conn:
            aid = require_account(conn, user)
            cur = conn.execute(
                "UPDATE roster_item SET pending_stanza = ? "
                "WHERE account_id = ? AND contact = ? AND removed = 0",
                (blob, aid, contact),
            )
            if cur.rowcount == 0:
                raise NoSuchRosterItem(f"{contact} is not in the roster of {user}")
