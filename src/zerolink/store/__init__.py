"""SQLite persistence."""

from zerolink.store.accounts import AccountExists, AccountStore, NoSuchAccount, StoredScram
from zerolink.store.db import MIGRATIONS, Database, StoreError, schema_version
from zerolink.store.linklog import LinkLogStore, LinkRecord
from zerolink.store.offline import OfflineStore
from zerolink.store.roster import NoSuchRosterItem, RosterItem, RosterStore

__all__ = [
    "MIGRATIONS",
    "AccountExists",
    "AccountStore",
    "Database",
    "LinkLogStore",
    "LinkRecord",
    "NoSuchAccount",
    "NoSuchRosterItem",
    "OfflineStore",
    "RosterItem",
    "RosterStore",
    "StoreError",
    "StoredScram",
    "schema_version",
]
