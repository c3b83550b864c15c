"""SQLite store of the embedded host: accounts, rosters, offline messages, migrations."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from zerolink.store import (
    AccountExists,
    AccountStore,
    Database,
    NoSuchAccount,
    NoSuchRosterItem,
    OfflineStore,
    RosterItem,
    RosterStore,
    StoredScram,
    StoreError,
    schema_version,
)
from zerolink.store import db as dbmod

ALICE = "alice@example.org"
BOB = "bob@example.net"
CAROL = "carol@example.net"


def scram(tag: bytes = b"x", iterations: int = 4096) -> StoredScram:
    return StoredScram(b"salt" + tag, iterations, b"stored" + tag, b"server" + tag)


CREDS = {"sha1": scram(b"1"), "sha256": scram(b"256")}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "lib" / "zerolink.db"


@pytest.fixture
def db(path: Path):
    d = Database(path)
    yield d
    d.close()


@pytest.fixture
def accounts(db: Database) -> AccountStore:
    a = AccountStore(db)
    a.create("alice", "example.org", CREDS)
    return a


@pytest.fixture
def roster(db: Database, accounts: AccountStore) -> RosterStore:
    return RosterStore(db)


@pytest.fixture
def offline(db: Database, accounts: AccountStore) -> OfflineStore:
    return OfflineStore(db, limit_per_user=3)


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def table_count(db: Database, table: str) -> int:
    with db.transaction(write=False) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# --- database, pragmas, migrations ------------------------------------------------------


def test_fresh_database_gets_latest_schema_and_pragmas(db: Database, path: Path):
    assert path.parent.is_dir()
    assert db.user_version == schema_version() == len(dbmod.MIGRATIONS) >= 1
    with db.transaction(write=False) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA application_id").fetchone()[0] == dbmod.APPLICATION_ID
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wal_mode_is_persistent_in_the_file(db: Database, path: Path):
    db.close()
    with raw(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema_version()


def test_newer_database_is_refused_naming_both_versions(db: Database, path: Path):
    db.close()
    newer = schema_version() + 5
    conn = raw(path)
    conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    with pytest.raises(StoreError) as e:
        Database(path)
    msg = str(e.value)
    assert f"schema version {newer}" in msg
    assert f"schema version {schema_version()}" in msg
    assert str(path) in msg


def test_migration_steps_upgrade_an_older_database(
    db: Database, path: Path, monkeypatch: pytest.MonkeyPatch
):
    AccountStore(db).create("alice", "example.org", CREDS)
    db.close()
    base = schema_version()

    def add_index(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE INDEX account_by_local ON account (local)")

    steps = [
        "CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT DEFAULT 'a;b');\n"
        "CREATE TRIGGER note_t AFTER INSERT ON note BEGIN "
        "UPDATE note SET body = body || ';' WHERE id = new.id; END;",
        add_index,
    ]
    monkeypatch.setattr(dbmod, "MIGRATIONS", [*dbmod.MIGRATIONS, *steps])
    d = Database(path)
    try:
        assert d.user_version == base + 2
        with d.transaction() as conn:
            conn.execute("INSERT INTO note (id) VALUES (1)")
            assert conn.execute("SELECT body FROM note").fetchone()[0] == "a;b;"
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"note", "note_t", "account_by_local"} <= names
        assert AccountStore(d).exists("alice", "example.org")  # data kept
    finally:
        d.close()


def test_failed_migration_applies_nothing(
    db: Database, path: Path, monkeypatch: pytest.MonkeyPatch
):
    db.close()
    base = schema_version()
    steps = ["CREATE TABLE fine (x)", "CREATE TABLE broken (x"]
    monkeypatch.setattr(dbmod, "MIGRATIONS", [*dbmod.MIGRATIONS, *steps])
    with pytest.raises(StoreError, match=f"schema version {base + 2}"):
        Database(path)
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == base
        assert (
            conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'fine'").fetchone()[0]
            == 0
        )


def test_split_sql_keeps_semicolons_inside_strings_and_triggers():
    script = (
        "CREATE TABLE t (x TEXT DEFAULT ';');\n-- comment; here\n"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END;\n;\n"
    )
    parts = dbmod.split_sql(script)
    assert len(parts) == 2
    assert "CREATE TRIGGER" in parts[1] and parts[1].endswith("END;")
    with pytest.raises(StoreError):
        dbmod.split_sql("CREATE TABLE t (x); SELECT 'unterminated")


def test_other_applications_file_is_refused(tmp_path: Path):
    other = tmp_path / "other.db"
    with raw(other) as conn:
        conn.execute("PRAGMA application_id = 42")
    with pytest.raises(StoreError, match="not a zerolink database"):
        Database(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        Database(junk)


def test_transaction_commits_rolls_back_and_refuses_nesting(db: Database):
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO account (local, domain) VALUES ('a', 'b')")
        raise RuntimeError
    assert table_count(db, "account") == 0
    with db.transaction(), pytest.raises(StoreError, match="nested"), db.transaction():
        pass
    with pytest.raises(StoreError), db.transaction() as conn:
        conn.execute("INSERT INTO nowhere VALUES (1)")  # sqlite3.Error -> StoreError
    with pytest.raises(StoreError), db.transaction(write=False) as conn:
        conn.execute("INSERT INTO account (local, domain) VALUES ('a', 'b')")  # read-only
    with db.transaction() as conn:  # query_only was switched off again
        conn.execute("INSERT INTO account (local, domain) VALUES ('a', 'b')")
    assert table_count(db, "account") == 1


def test_closed_database_raises_store_error(path: Path):
    d = Database(path)
    d.close()
    d.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        AccountStore(d).exists("a", "b")


def test_in_memory_database_works():
    with Database(":memory:") as d:
        AccountStore(d).create("a", "b", {})
        assert AccountStore(d).list() == [("a", "b")]


# --- accounts ---------------------------------------------------------------------------


def test_create_exists_duplicate_delete(db: Database):
    a = AccountStore(db)
    assert not a.exists("alice", "example.org")
    a.create("alice", "example.org", CREDS)
    assert a.exists("alice", "example.org")
    assert not a.exists("alice", "example.net")
    with pytest.raises(AccountExists):
        a.create("alice", "example.org", {})
    a.delete("alice", "example.org")
    assert not a.exists("alice", "example.org")
    with pytest.raises(NoSuchAccount):
        a.delete("alice", "example.org")
    assert isinstance(AccountExists("x"), StoreError)
    assert isinstance(NoSuchAccount("x"), StoreError)


def test_list_sorted_and_by_domain(db: Database):
    a = AccountStore(db)
    for local, domain in [
        ("zed", "a.example"),
        ("bob", "b.example"),
        ("amy", "b.example"),
        ("bob", "a.example"),
    ]:
        a.create(local, domain, {})
    assert a.list() == [
        ("amy", "b.example"),
        ("bob", "a.example"),
        ("bob", "b.example"),
        ("zed", "a.example"),
    ]
    assert a.list("b.example") == [("amy", "b.example"), ("bob", "b.example")]
    assert a.list("nowhere.example") == []


def test_credentials_round_trip_and_replacement(db: Database):
    a = AccountStore(db)
    a.create("alice", "example.org", CREDS)
    assert a.credentials("alice", "example.org", "sha1") == CREDS["sha1"]
    assert a.credentials("alice", "example.org", "sha256") == CREDS["sha256"]
    assert a.credentials("alice", "example.org", "sha512") is None
    assert a.credentials("nobody", "example.org", "sha1") is None
    new = {"sha256": scram(b"new", 10000)}
    a.set_credentials("alice", "example.org", new)
    assert a.credentials("alice", "example.org", "sha256") == new["sha256"]
    assert a.credentials("alice", "example.org", "sha1") is None  # replaced, not merged
    with pytest.raises(NoSuchAccount):
        a.set_credentials("nobody", "example.org", new)


def test_stored_scram_validation_and_repr():
    s = scram(b"k")
    assert "stored" not in repr(s) and "server" not in repr(s)
    with pytest.raises(ValueError):
        StoredScram(b"s", 0, b"a", b"b")
    with pytest.raises(TypeError):
        StoredScram("s", 1, b"a", b"b")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("local", "domain"), [("", "example.org"), ("a@b", "example.org"), ("a", ""), ("a", "x/y")]
)
def test_create_rejects_parts_that_are_not_normalized(db: Database, local: str, domain: str):
    with pytest.raises(ValueError):
        AccountStore(db).create(local, domain, {})


# --- roster -----------------------------------------------------------------------------


def test_roster_put_get_items_and_versions(roster: RosterStore):
    assert roster.version(ALICE) == 0
    assert roster.items(ALICE) == []
    bob = RosterItem(BOB, "Bob", "both", groups=("Friends", "Work"))
    carol = RosterItem(CAROL, None, "none", ask=True)
    assert roster.put(ALICE, carol) == 1
    assert roster.put(ALICE, bob) == 2
    assert roster.version(ALICE) == 2
    assert roster.items(ALICE) == [bob, carol]  # sorted by contact
    assert roster.get(ALICE, BOB) == bob
    assert roster.get(ALICE, "dave@example.net") is None
    # Replace: new version, new content.
    bob2 = RosterItem(BOB, "Robert", "to", approved=True, groups=["Ünïcode"])  # list -> tuple
    assert bob2.groups == ("Ünïcode",)
    assert roster.put(ALICE, bob2) == 3
    assert roster.get(ALICE, BOB) == bob2
    # Identical put: no change, no new version.
    assert roster.put(ALICE, bob2) == 3
    assert roster.version(ALICE) == 3


def test_roster_remove_leaves_tombstone(roster: RosterStore, db: Database):
    roster.put(ALICE, RosterItem(BOB))
    assert roster.remove(ALICE, BOB) == 2
    assert roster.get(ALICE, BOB) is None
    assert roster.items(ALICE) == []
    assert roster.remove(ALICE, BOB) is None  # nothing there any more
    assert roster.remove(ALICE, CAROL) is None
    assert roster.version(ALICE) == 2
    assert table_count(db, "roster_item") == 1  # the tombstone


def test_roster_count_is_live_items_only(roster: RosterStore):
    assert roster.count(ALICE) == 0 and roster.count("nobody@example.org") == 0
    roster.put(ALICE, RosterItem(BOB))
    roster.put(ALICE, RosterItem(CAROL, pending_in=True))  # holding a request counts too
    assert roster.count(ALICE) == 2
    roster.remove(ALICE, BOB)  # a tombstone does not
    assert roster.count(ALICE) == 1


def test_changes_since(roster: RosterStore):
    bob, carol = RosterItem(BOB, "Bob"), RosterItem(CAROL, "Carol")
    dave = RosterItem("dave@example.net")
    roster.put(ALICE, bob)  # 1
    roster.put(ALICE, carol)  # 2
    roster.put(ALICE, dave)  # 3
    assert roster.changes_since(ALICE, 3) == ([], [], 3)
    assert roster.remove(ALICE, CAROL) == 4
    bob2 = RosterItem(BOB, "Bobby", "from")
    assert roster.put(ALICE, bob2) == 5
    assert roster.changes_since(ALICE, 3) == ([bob2], [CAROL], 5)
    assert roster.changes_since(ALICE, 4) == ([bob2], [], 5)
    assert roster.changes_since(ALICE, 1) == ([bob2, dave], [CAROL], 5)
    # From 0 the client holds nothing: every live item, no removals to tell.
    assert roster.changes_since(ALICE, 0) == ([bob2, dave], [], 5)
    # Removed then added again: a change, not a removal.
    assert roster.put(ALICE, carol) == 6
    assert roster.changes_since(ALICE, 3) == ([bob2, carol], [], 6)
    # Unknown versions: the caller sends the full roster.
    assert roster.changes_since(ALICE, 7) is None
    assert roster.changes_since(ALICE, -1) is None


def test_changes_since_for_user_without_roster_or_account(roster: RosterStore):
    assert roster.changes_since(ALICE, 0) == ([], [], 0)
    assert roster.changes_since(ALICE, 1) is None
    assert roster.changes_since("nobody@example.org", 0) == ([], [], 0)
    assert roster.changes_since("example.org", 0) == ([], [], 0)


def test_tombstones_are_pruned_and_old_versions_become_unknown(db: Database, accounts):
    roster = RosterStore(db, max_tombstones=2)
    contacts = [f"c{i}@example.net" for i in range(4)]
    for c in contacts:
        roster.put(ALICE, RosterItem(c))  # versions 1..4
    for c in contacts[:3]:
        roster.remove(ALICE, c)  # versions 5, 6, 7: the tombstone of 5 is pruned
    assert table_count(db, "roster_item") == 1 + 2
    assert roster.changes_since(ALICE, 4) is None  # would have missed the removal at 5
    assert roster.changes_since(ALICE, 5) == ([], [contacts[1], contacts[2]], 7)
    assert roster.changes_since(ALICE, 0) is None  # below the floor too: full roster
    assert roster.items(ALICE) == [RosterItem(contacts[3])]


def test_roster_needs_an_account(roster: RosterStore):
    with pytest.raises(NoSuchAccount):
        roster.put("nobody@example.org", RosterItem(BOB))
    with pytest.raises(NoSuchAccount):
        roster.put("example.org", RosterItem(BOB))
    with pytest.raises(NoSuchAccount):
        roster.set_pending_stanza("nobody@example.org", BOB, b"<presence/>")
    assert roster.items("nobody@example.org") == []
    assert roster.get("nobody@example.org", BOB) is None
    assert roster.version("nobody@example.org") == 0
    assert roster.remove("nobody@example.org", BOB) is None
    assert roster.pending_in("nobody@example.org") == []
    with pytest.raises(ValueError):
        roster.items(ALICE + "/res")


def test_roster_item_validation():
    with pytest.raises(ValueError):
        RosterItem(BOB, subscription="remove")
    with pytest.raises(ValueError):
        RosterItem("")
    with pytest.raises(TypeError):
        RosterItem(BOB, groups="Friends")  # type: ignore[arg-type]


def test_pending_in_and_stored_subscribe_stanza(roster: RosterStore):
    stanza = b"<presence from='bob@example.net' type='subscribe'><status>hi</status></presence>"
    assert roster.put(ALICE, RosterItem(BOB, pending_in=True)) == 1
    assert roster.put(ALICE, RosterItem(CAROL, pending_in=True)) == 2
    roster.put(ALICE, RosterItem("dave@example.net"))  # 3, nothing pending
    assert roster.pending_in(ALICE) == [(BOB, None), (CAROL, None)]
    roster.set_pending_stanza(ALICE, BOB, stanza)
    assert roster.version(ALICE) == 3  # not a roster change
    assert roster.pending_in(ALICE) == [(BOB, stanza), (CAROL, None)]
    # Still pending after another change of the item: the stanza stays.
    roster.put(ALICE, RosterItem(BOB, "Bob", pending_in=True))
    assert roster.pending_in(ALICE)[0] == (BOB, stanza)
    # Answered: no longer pending, the stanza goes.
    roster.put(ALICE, RosterItem(BOB, "Bob", "from"))
    assert roster.pending_in(ALICE) == [(CAROL, None)]
    roster.put(ALICE, RosterItem(BOB, "Bob", "from", pending_in=True))
    assert roster.pending_in(ALICE)[0] == (BOB, None)
    # Clearing, and removal.
    roster.set_pending_stanza(ALICE, CAROL, stanza)
    roster.set_pending_stanza(ALICE, CAROL, None)
    assert roster.pending_in(ALICE)[1] == (CAROL, None)
    roster.set_pending_stanza(ALICE, CAROL, stanza)
    roster.remove(ALICE, CAROL)
    assert [c for c, _ in roster.pending_in(ALICE)] == [BOB]
    with pytest.raises(NoSuchRosterItem):
        roster.set_pending_stanza(ALICE, CAROL, stanza)  # a tombstone is not an item


# --- offline ----------------------------------------------------------------------------


def test_offline_push_pop_order_and_limit(offline: OfflineStore):
    assert offline.count(ALICE) == 0
    assert offline.pop_all(ALICE) == []
    msgs = [(b"<message id='%d'/>" % i, 1000.0 + i) for i in range(3)]
    for stanza, stamp in msgs:
        assert offline.push(ALICE, stanza, stamp)
    assert offline.count(ALICE) == 3
    assert not offline.push(ALICE, b"<message id='full'/>", 2000.0)  # limit 3
    assert offline.count(ALICE) == 3
    assert offline.pop_all(ALICE) == msgs  # arrival order, not stamp order needed
    assert offline.count(ALICE) == 0
    assert offline.pop_all(ALICE) == []
    assert offline.push(ALICE, b"\x00binary\xff", 5.5)  # room again
    assert offline.pop_all(ALICE) == [(b"\x00binary\xff", 5.5)]


def test_offline_arrival_order_not_stamp_order(offline: OfflineStore):
    offline.push(ALICE, b"<a/>", 30.0)
    offline.push(ALICE, b"<b/>", 10.0)
    assert [s for s, _ in offline.pop_all(ALICE)] == [b"<a/>", b"<b/>"]


def test_offline_needs_an_account(offline: OfflineStore):
    with pytest.raises(NoSuchAccount):
        offline.push("nobody@example.org", b"<message/>", 1.0)
    assert offline.count("nobody@example.org") == 0
    assert offline.pop_all("nobody@example.org") == []


def test_offline_quota_in_bytes(db: Database, accounts: AccountStore):
    accounts.create("bob", "example.net", CREDS)
    store = OfflineStore(db, limit_per_user=100, bytes_per_user=100)
    assert store.push(ALICE, b"x" * 60, 1.0)
    assert not store.push(ALICE, b"y" * 41, 2.0)  # 101 bytes
    assert store.push(ALICE, b"z" * 40, 3.0)  # exactly 100
    assert not store.push(ALICE, b"!", 4.0)
    assert store.push(BOB, b"b" * 100, 5.0)  # per user
    with pytest.raises(ValueError):
        OfflineStore(db, bytes_per_user=-1)


def test_offline_batches_are_read_then_removed(db: Database, accounts: AccountStore):
    accounts.create("bob", "example.net", CREDS)
    store = OfflineStore(db, limit_per_user=100)
    for i in range(7):
        store.push(ALICE, b"<m%d/>" % i + b"." * 95, float(i))  # 100 bytes each
    store.push(BOB, b"<bob/>", 9.0)
    first = store.batch(ALICE, 3, 10_000)
    assert [(s[:4], t) for _, s, t in first] == [(b"<m0/", 0.0), (b"<m1/", 1.0), (b"<m2/", 2.0)]
    assert store.batch(ALICE, 3, 10_000) == first  # read, not removed
    assert len(store.batch(ALICE, 100, 250)) == 2  # bounded in bytes
    assert len(store.batch(ALICE, 100, 10)) == 1  # but at least one
    store.remove_through(ALICE, first[-1][0])
    assert store.count(ALICE) == 4 and store.count(BOB) == 1
    assert [s[:4] for _, s, _ in store.batch(ALICE, 100, 10_000)] == [
        b"<m3/",
        b"<m4/",
        b"<m5/",
        b"<m6/",
    ]
    store.remove_through(ALICE, 10**9)
    assert store.batch(ALICE, 100, 10_000) == [] and store.count(BOB) == 1
    assert store.batch("nobody@example.org", 1, 1) == []
    store.remove_through("nobody@example.org", 1)


def test_offline_limit_zero_stores_nothing(db: Database, accounts: AccountStore):
    assert not OfflineStore(db, limit_per_user=0).push(ALICE, b"<message/>", 1.0)
    with pytest.raises(ValueError):
        OfflineStore(db, limit_per_user=-1)


# --- cascade, persistence, concurrency --------------------------------------------------


def test_delete_account_cascades(db: Database, accounts: AccountStore, roster: RosterStore):
    offline = OfflineStore(db)
    accounts.create("bob", "example.net", CREDS)
    for user in (ALICE, BOB):
        roster.put(user, RosterItem(CAROL, pending_in=True))
        roster.put(user, RosterItem("dave@example.net"))
        roster.remove(user, "dave@example.net")
        roster.set_pending_stanza(user, CAROL, b"<presence type='subscribe'/>")
        offline.push(user, b"<message/>", 1.0)
    accounts.delete("alice", "example.org")
    assert table_count(db, "scram_credential") == 2  # bob's
    assert table_count(db, "roster_item") == 2  # bob's item and tombstone
    assert table_count(db, "roster_state") == 1
    assert table_count(db, "offline_message") == 1
    assert roster.items(BOB) == [RosterItem(CAROL, pending_in=True)]
    assert offline.count(BOB) == 1
    # Created again: a new, empty account.
    accounts.create("alice", "example.org", {})
    assert roster.items(ALICE) == []
    assert roster.version(ALICE) == 0
    assert offline.count(ALICE) == 0


def test_persistence_across_reopen(path: Path):
    d = Database(path)
    AccountStore(d).create("alice", "example.org", CREDS)
    RosterStore(d).put(ALICE, RosterItem(BOB, "Bob", "both", groups=("G",)))
    RosterStore(d).remove(ALICE, BOB)
    RosterStore(d).put(ALICE, RosterItem(CAROL, pending_in=True))
    RosterStore(d).set_pending_stanza(ALICE, CAROL, b"<presence/>")
    OfflineStore(d).push(ALICE, b"<message/>", 12.5)
    d.close()

    d = Database(path)
    try:
        a, r, o = AccountStore(d), RosterStore(d), OfflineStore(d)
        assert a.list() == [("alice", "example.org")]
        assert a.credentials("alice", "example.org", "sha256") == CREDS["sha256"]
        assert r.version(ALICE) == 3
        assert r.items(ALICE) == [RosterItem(CAROL, pending_in=True)]
        assert r.changes_since(ALICE, 1) == ([RosterItem(CAROL, pending_in=True)], [BOB], 3)
        assert r.pending_in(ALICE) == [(CAROL, b"<presence/>")]
        assert o.pop_all(ALICE) == [(b"<message/>", 12.5)]
    finally:
        d.close()


def test_two_connections_on_one_file(path: Path):
    writer, reader = Database(path), Database(path)
    try:
        assert not AccountStore(reader).exists("alice", "example.org")
        AccountStore(writer).create("alice", "example.org", CREDS)
        assert AccountStore(reader).exists("alice", "example.org")
        RosterStore(writer).put(ALICE, RosterItem(BOB))
        assert RosterStore(reader).items(ALICE) == [RosterItem(BOB)]
        assert RosterStore(reader).version(ALICE) == 1
        OfflineStore(writer).push(ALICE, b"<message/>", 1.0)
        assert OfflineStore(reader).pop_all(ALICE) == [(b"<message/>", 1.0)]
        assert OfflineStore(writer).count(ALICE) == 0
        # WAL: an open read snapshot does not block a writer, and does not see its change.
        with reader.transaction(write=False) as conn:
            assert conn.execute("SELECT count(*) FROM roster_item").fetchone()[0] == 1
            RosterStore(writer).put(ALICE, RosterItem(CAROL))
            assert conn.execute("SELECT count(*) FROM roster_item").fetchone()[0] == 1
        assert RosterStore(reader).version(ALICE) == 2
    finally:
        writer.close()
        reader.close()


def test_lock_timeout_is_a_store_error(path: Path):
    first, second = Database(path), Database(path, timeout=0.05)
    try:
        with first.transaction(), pytest.raises(StoreError, match="locked"):
            AccountStore(second).create("bob", "example.net", {})
        AccountStore(second).create("bob", "example.net", {})  # free again
        assert AccountStore(first).exists("bob", "example.net")
    finally:
        first.close()
        second.close()
