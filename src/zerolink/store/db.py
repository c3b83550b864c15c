"""The SQLite database of the embedded host: connection, transactions, schema migrations.

Synchronous by choice. The server calls the store from its asyncio event loop through the
stdlib `sqlite3` module, without a thread pool (no aiosqlite). Every operation is small and
local (a few rows, indexed, on a local disk) and runs as ONE short transaction, so it blocks
the loop for well under a millisecond in the common case; a thread hop per call would cost
more than the work. The rules that keep this true:

- each public store method opens exactly one transaction and closes it before returning;
  a transaction never spans an `await` (nesting is refused with `StoreError`, which is how
  a transaction left open across an `await` shows up);
- writes use ``BEGIN IMMEDIATE``: the write lock is taken up front, so a transaction never
  fails half way on a lock upgrade; another process (an admin command adding users while the
  server runs) makes us wait at most `timeout` seconds, then `StoreError`;
- WAL journal: readers and the one writer do not block each other; ``synchronous=NORMAL``
  (durable across a process crash; a power cut may lose the last transactions, never corrupt
  the file).

Schema versions live in ``PRAGMA user_version``. `MIGRATIONS` is the ordered list of steps:
step ``i`` (0-based) takes the schema from version ``i`` to ``i + 1``. Pending steps run at
open time in one transaction with foreign keys off (the SQLite procedure for table rebuilds),
followed by ``PRAGMA foreign_key_check``; on any error nothing is applied. A database whose
version is newer than the code is refused rather than guessed at.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from zerolink.errors import StorageError

log = logging.getLogger(__name__)

# "ZLNK": marks the file as ours; another application's SQLite file is refused.
APPLICATION_ID = 0x5A4C4E4B


class StoreError(StorageError):
    """A persistence failure: unusable database, lock timeout, misuse of transactions."""


Migration = str | Callable[[sqlite3.Connection], None]

_SCHEMA_1 = """
CREATE TABLE account (
    id      INTEGER PRIMARY KEY,
    local   TEXT NOT NULL,
    domain  TEXT NOT NULL,
    UNIQUE (domain, local)
);

CREATE TABLE scram_credential (
    account_id  INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    hash        TEXT NOT NULL,
    salt        BLOB NOT NULL,
    iterations  INTEGER NOT NULL CHECK (iterations > 0),
    stored_key  BLOB NOT NULL,
    server_key  BLOB NOT NULL,
    PRIMARY KEY (account_id, hash)
) WITHOUT ROWID;

-- One row per roster that has ever changed. `version` is the XEP-0237 roster version
-- (0 = empty, never changed); `floor` is the oldest version from which the changes can still
-- be told (tombstones at or below it have been pruned).
CREATE TABLE roster_state (
    account_id  INTEGER PRIMARY KEY REFERENCES account(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    floor       INTEGER NOT NULL DEFAULT 0
);

-- Live items and tombstones (removed = 1; only contact and version are meaningful).
-- `version` is the roster version of the item's last change.
CREATE TABLE roster_item (
    account_id      INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    contact         TEXT NOT NULL,
    version         INTEGER NOT NULL,
    removed         INTEGER NOT NULL DEFAULT 0,
    name            TEXT,
    subscription    TEXT NOT NULL DEFAULT 'none'
                    CHECK (subscription IN ('none', 'to', 'from', 'both')),
    ask             INTEGER NOT NULL DEFAULT 0,
    approved        INTEGER NOT NULL DEFAULT 0,
    pending_in      INTEGER NOT NULL DEFAULT 0,
    groups          TEXT NOT NULL DEFAULT '[]',   -- JSON array of strings
    pending_stanza  BLOB,                         -- the inbound <presence type='subscribe'/>
    PRIMARY KEY (account_id, contact)
);
CREATE INDEX roster_item_by_version ON roster_item (account_id, version);

-- XEP-0160 offline messages; arrival order is the rowid order.
CREATE TABLE offline_message (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES account(id) ON DELETE CASCADE,
    stamp       REAL NOT NULL,
    stanza      BLOB NOT NULL
);
CREATE INDEX offline_message_by_account ON offline_message (account_id, id);
"""

# Append only; never edit a step that has shipped. A step is an SQL script (several statements,
# no transaction control) or a callable given the connection inside the migration transaction.
# Reliable delivery on links (docs/protocol.md): the outbound log of each peer link and the
# link's counters. Wall-clock times, so that deadlines survive a restart.
_SCHEMA_2 = """
CREATE TABLE link_out (
    peer      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    queued_at REAL NOT NULL,
    stanza    BLOB NOT NULL,
    PRIMARY KEY (peer, seq)
) WITHOUT ROWID;

CREATE TABLE link_state (
    peer      TEXT PRIMARY KEY,
    received  INTEGER NOT NULL,
    next_seq  INTEGER NOT NULL
);
"""

MIGRATIONS: list[Migration] = [
    _SCHEMA_1,
    _SCHEMA_2,
]


def schema_version() -> int:
    """The schema version this code writes (the number of migration steps)."""
    return len(MIGRATIONS)


def split_sql(script: str) -> list[str]:
    """The statements of an SQL script, split where SQLite itself would end them.

    `Connection.executescript` cannot be used inside a transaction (it COMMITs first), so
    migration scripts are run one statement at a time. `sqlite3.complete_statement` keeps
    semicolons inside strings, comments and trigger bodies where they belong.
    """
    statements: list[str] = []
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\r\n;"):
                statements.append(buf.strip())
            buf = ""
    if buf.strip(" \t\r\n;"):
        raise StoreError(f"incomplete SQL statement in migration: {buf.strip()[:60]!r}")
    return statements


class Database:
    """One connection to the zerolink database file (created, with its folder, if missing)."""

    def __init__(self, path: Path | str, *, timeout: float = 5.0) -> None:
        self.path = path if str(path) == ":memory:" else Path(path)
        self._conn: sqlite3.Connection | None = None
        if isinstance(self.path, Path):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as e:
                raise StoreError(
                    f"cannot create the folder of database {self.path}: {e.strerror or e}"
                ) from e
            _create_private(self.path)
        try:
            # isolation_level=None: no implicit BEGIN/COMMIT from the module; we issue them.
            conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open database {self.path}: {e}") from e
        try:
            self._setup(conn)
        except sqlite3.Error as e:
            conn.close()
            raise StoreError(f"cannot open database {self.path}: {e}") from e
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id not in (0, APPLICATION_ID):
            raise StoreError(f"{self.path} is not a zerolink database (application_id {app_id:#x})")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal" and isinstance(self.path, Path):
            log.warning("%s: journal_mode is %s: WAL unavailable here", self.path, mode)
        conn.execute("PRAGMA synchronous=NORMAL")
        # Off while migrating (table rebuilds), checked before the commit, then on for good.
        conn.execute("PRAGMA foreign_keys=OFF")
        self._migrate(conn)
        conn.execute("PRAGMA foreign_keys=ON")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        latest = schema_version()
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current == latest:
            return
        if current > latest:
            raise self._too_new(current, latest)
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have migrated meanwhile.
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current > latest:
                raise self._too_new(current, latest)
            for version in range(current, latest):
                step = MIGRATIONS[version]
                try:
                    if callable(step):
                        step(conn)
                    else:
                        for statement in split_sql(step):
                            conn.execute(statement)
                except sqlite3.Error as e:
                    raise StoreError(
                        f"{self.path}: migration to schema version {version + 1} failed: {e}"
                    ) from e
                # PRAGMA takes no parameters; `version` is an int from range().
                conn.execute(f"PRAGMA user_version = {version + 1}")
            bad = conn.execute("PRAGMA foreign_key_check").fetchall()
            if bad:
                raise StoreError(
                    f"{self.path}: migration to schema version {latest} broke foreign keys "
                    f"(first: {tuple(bad[0])})"
                )
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if current:
            log.info("%s: schema migrated from version %d to %d", self.path, current, latest)

    def _too_new(self, found: int, latest: int) -> StoreError:
        return StoreError(
            f"database {self.path} has schema version {found}, newer than this version of "
            f"zerolink supports (schema version {latest}); upgrade zerolink or use another "
            f"database file"
        )

    @property
    def user_version(self) -> int:
        """The schema version of the open file."""
        return self._connection().execute("PRAGMA user_version").fetchone()[0]

    @property
    def data_version(self) -> int:
        """SQLite's counter of commits by OTHER connections (another process included): it
        changes when, e.g., `zerolink user delete` removed an account under a running server."""
        return self._connection().execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        """Close the connection (idempotent). Later calls raise `StoreError`."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"database {self.path} is closed")
        return self._conn

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction: COMMIT on normal exit, ROLLBACK on an exception.

        ``write=True`` (default) takes the write lock at once (``BEGIN IMMEDIATE``).
        ``write=False`` is a consistent read snapshot (``BEGIN DEFERRED``, ``query_only``;
        the snapshot is taken at the first read) that never waits for a writer.
        `sqlite3.Error` raised inside comes out as `StoreError`.
        Transactions do not nest.
        """
        conn = self._connection()
        if conn.in_transaction:
            raise StoreError(
                "a transaction is already open on this connection: store calls must not be "
                "nested, and a transaction must not span an await"
            )
        try:
            if not write:
                conn.execute("PRAGMA query_only = ON")
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
        except sqlite3.Error as e:
            if not write:
                conn.execute("PRAGMA query_only = OFF")
            raise StoreError(f"{self.path}: cannot begin transaction: {e}") from e
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"{self.path}: {e}") from e
            raise
        finally:
            if not write:
                conn.execute("PRAGMA query_only = OFF")


def _create_private(path: Path) -> None:
    """Create the file owner-only if missing (it holds SCRAM verifiers); SQLite gives its
    -wal and -shm files the same permissions."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as e:
        raise StoreError(f"cannot create database {path}: {e.strerror or e}") from e
    os.close(fd)
