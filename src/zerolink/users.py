"""Accounts of the embedded host: what `zerolink user …` and the demo do to them.

Passwords are turned into SCRAM-SHA-1 and SCRAM-SHA-256 salted keys here and never stored.
"""

from __future__ import annotations

from pathlib import Path

from zerolink.config import Config
from zerolink.jid import JID, JIDError, parse_jid
from zerolink.proto.sasl import ScramCredentials, derive_credentials
from zerolink.store import AccountExists, AccountStore, Database, NoSuchAccount, StoredScram

DB_NAME = "zerolink.sqlite"


class UserError(Exception):
    """A user command that cannot be carried out; the message says why."""


def database_path(cfg: Config) -> Path:
    return cfg.server.data_dir / DB_NAME


def open_database(cfg: Config) -> Database:
    return Database(database_path(cfg))


def scram_records(password: str) -> dict[str, StoredScram]:
    """Salted keys for both SCRAM hashes (each with its own salt)."""
    if not password:
        raise UserError("the password must not be empty")
    out = {}
    for hash_name in ("sha1", "sha256"):
        try:
            c = derive_credentials(password, hash_name)
        except ValueError as exc:
            raise UserError(f"unusable password: {exc}") from None
        out[hash_name] = StoredScram(c.salt, c.iterations, c.stored_key, c.server_key)
    return out


def as_scram(record: StoredScram) -> ScramCredentials:
    return ScramCredentials(record.salt, record.iterations, record.stored_key, record.server_key)


def hosted_jid(cfg: Config, text: str) -> JID:
    """A bare JID whose domain this server hosts, or UserError saying what is wrong."""
    try:
        jid = parse_jid(text)
    except JIDError as exc:
        raise UserError(f"{text!r} is not a valid JID: {exc}") from None
    if jid.local is None or jid.resource is not None:
        raise UserError(f"{text!r}: an account is a bare JID like user@{jid.domain}")
    hosted = cfg.host.domains if cfg.host is not None else ()
    if jid.domain not in hosted:
        where = ", ".join(hosted) if hosted else "no domain (the config has no [host] table)"
        raise UserError(f"{jid.domain} is not hosted by this server; it hosts {where}")
    return jid


def add_user(store: AccountStore, jid: JID, password: str) -> None:
    assert jid.local is not None
    try:
        store.create(jid.local, jid.domain, scram_records(password))
    except AccountExists:
        raise UserError(f"{jid} already exists") from None


def set_password(store: AccountStore, jid: JID, password: str) -> None:
    assert jid.local is not None
    try:
        store.set_credentials(jid.local, jid.domain, scram_records(password))
    except NoSuchAccount:
        raise UserError(f"{jid} does not exist") from None


def delete_user(store: AccountStore, jid: JID) -> None:
    assert jid.local is not None
    try:
        store.delete(jid.local, jid.domain)
    except NoSuchAccount:
        raise UserError(f"{jid} does not exist") from None
