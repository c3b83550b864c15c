"""Accounts of the embedded host and their SCRAM credentials (RFC 5802 / RFC 7677).

Only SCRAM verifiers are stored (salt, iteration count, StoredKey, ServerKey), never a
password. JIDs come in already normalized (PRECIS, IDNA) as a localpart and a domainpart;
the store compares them byte for byte. Rosters and offline messages belong to an account and
go with it (ON DELETE CASCADE).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from zerolink.store.db import Database, StoreError


class AccountExists(StoreError):
    """`create` of an account that is already there."""


class NoSuchAccount(StoreError):
    """An operation that needs an account, for a JID that has none."""


@dataclass(frozen=True)
class StoredScram:
    """The SCRAM verifier for one hash function. Keys are left out of repr (no logging)."""

    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("salt", "stored_key", "server_key"):
            if not isinstance(getattr(self, name), bytes):
                raise TypeError(f"StoredScram.{name} must be bytes")
        if (
            not isinstance(self.iterations, int)
            or isinstance(self.iterations, bool)
            or self.iterations < 1
        ):
            raise ValueError("StoredScram.iterations must be a positive int")


def _check_parts(local: str, domain: str) -> None:
    # The store keys rosters and offline queues by the bare JID 'local@domain' and splits it
    # at the '@': neither part may be empty or contain '@' or '/' (RFC 7622 forbids them).
    if not local or not domain or any(c in local + domain for c in "@/"):
        raise ValueError(f"not a normalized localpart and domainpart: {local!r}, {domain!r}")


def split_bare(user: str) -> tuple[str, str] | None:
    """('local', 'domain') of the bare JID 'local@domain', None if it has no localpart."""
    if "/" in user:
        raise ValueError(f"bare JID expected, got {user!r}")
    local, at, domain = user.partition("@")
    if not at or not local or not domain:
        return None
    return local, domain


def account_id(conn: sqlite3.Connection, local: str, domain: str) -> int | None:
    row = conn.execute(
        "SELECT id FROM account WHERE domain = ? AND local = ?", (domain, local)
    ).fetchone()
    return None if row is None else row[0]


def account_id_for_jid(conn: sqlite3.Connection, user: str) -> int | None:
    """The account id of a bare JID string, None if no such account."""
    parts = split_bare(user)
    return None if parts is None else account_id(conn, *parts)


def require_account(conn: sqlite3.Connection, user: str) -> int:
    aid = account_id_for_jid(conn, user)
    if aid is None:
        raise NoSuchAccount(f"no account {user}")
    return aid


def _check_creds(creds: dict[str, StoredScram]) -> None:
    for name, scram in creds.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"bad hash name {name!r}")
        if not isinstance(scram, StoredScram):
            raise TypeError(f"credentials for {name!r} must be a StoredScram")


def _write_creds(conn: sqlite3.Connection, aid: int, creds: dict[str, StoredScram]) -> None:
    conn.executemany(
        "INSERT INTO scram_credential (account_id, hash, salt, iterations, stored_key, "
        "server_key) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (aid, name, s.salt, s.iterations, s.stored_key, s.server_key)
            for name, s in creds.items()
        ],
    )


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, local: str, domain: str, creds: dict[str, StoredScram]) -> None:
        """New account with its credentials by hash name ('sha1', 'sha256')."""
        _check_parts(local, domain)
        _check_creds(creds)
        with self.db.transaction() as conn:
            if account_id(conn, local, domain) is not None:
                raise AccountExists(f"account {local}@{domain} exists")
            cur = conn.execute("INSERT INTO account (local, domain) VALUES (?, ?)", (local, domain))
            _write_creds(conn, cur.lastrowid, creds)

    def set_credentials(self, local: str, domain: str, creds: dict[str, StoredScram]) -> None:
        """Replace ALL the account's credentials (a hash left out is no longer usable)."""
        _check_creds(creds)
        with self.db.transaction() as conn:
            aid = account_id(conn, local, domain)
            if aid is None:
                raise NoSuchAccount(f"no account {local}@{domain}")
            conn.execute("DELETE FROM scram_credential WHERE account_id = ?", (aid,))
            _write_creds(conn, aid, creds)

    def delete(self, local: str, domain: str) -> None:
        """Delete the account with its credentials, roster and offline messages."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM account WHERE domain = ? AND local = ?", (domain, local)
            )
            if cur.rowcount == 0:
                raise NoSuchAccount(f"no account {local}@{domain}")

    def exists(self, local: str, domain: str) -> bool:
        with self.db.transaction(write=False) as conn:
            return account_id(conn, local, domain) is not None

    def credentials(self, local: str, domain: str, hash_name: str) -> StoredScram | None:
        """The verifier for `hash_name`, None if no account or none stored for that hash."""
        with self.db.transaction(write=False) as conn:
            row = conn.execute(
                "SELECT c.salt, c.iterations, c.stored_key, c.server_key "
                "FROM scram_credential c JOIN account a ON a.id = c.account_id "
                "WHERE a.domain = ? AND a.local = ? AND c.hash = ?",
                (domain, local, hash_name),
            ).fetchone()
        if row is None:
            return None
        return StoredScram(bytes(row[0]), row[1], bytes(row[2]), bytes(row[3]))

    def list(self, domain: str | None = None) -> list[tuple[str, str]]:
        """(local, domain) of every account, or of one domain's, sorted."""
        with self.db.transaction(write=False) as conn:
            if domain is None:
                rows = conn.execute("SELECT local, domain FROM account").fetchall()
            else:
                rows = conn.execute(
                    "SELECT local, domain FROM account WHERE domain = ?", (domain,)
                ).fetchall()
        return sorted((local, dom) for local, dom in rows)
