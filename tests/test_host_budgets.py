"""Floods against a real daemon (issue 10, items 4 and 7): what it holds for clients, offline
storage, rosters and components stays within its budgets.

The daemon runs as a process of its own (its RSS is read from /proc/PID/status while the attack
runs); clients are `rawclient.RawClient`s over direct TLS, one of which logs in and then never
reads. Budgets are small so that each flood is a few tens of MB and a few seconds, and the
limits asserted are the budgets plus a fixed slack far below what the floods took before:

* a client that does not read: 60 MB sent to it took the daemon's RSS up by about as much
  (1,000 MB took it from 159 to 1,158 MB in the issue); now its session ends past
  ``host.max_send_buffer``, and every message is read, stored offline or bounced;
* offline storage: bounded in bytes (``host.offline_bytes``), delivered at login in batches;
* rosters: ``host.roster_max_items`` and the name limits, with their RFC 6121 errors;
* a component that does not read: ended past its ``max_send_buffer``.

Each time a legitimate user logs in while the attack runs, and gets an answer.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import AIR_IP, free_port
from rawclient import RawClient
from zerolink.config import load_config
from zerolink.proto.component import handshake_digest
from zerolink.store import AccountStore
from zerolink.users import add_user, hosted_jid, open_database

KIB = 1024
MIB = 1024 * KIB
BUDGET = 256 * KIB  # host.max_send_buffer and the component's
# Python's allocator, SQLite's page cache, TLS state, a turn of the loop's worth of stanzas: what
# the daemon may grow by beyond the budgets it is given. The floods below are 60 MB.
SLACK = 12 * MIB
BODY = "x" * 48_000  # under max_stanza_size = 65536


class Daemon:
    """`zerolink run` as a process, with its peak RSS sampled while a flood runs."""

    def __init__(
        self,
        tmp: Path,
        extra_host: str = "",
        extra: str = "",
        budget: int = BUDGET,
        extra_server: str = "",
        extra_listener: str = "",
    ) -> None:
        self.tmp = tmp
        self.c2s, self.tls, self.comp = (free_port(AIR_IP) for _ in range(3))
        self.config = tmp / "air.toml"
        self.config.write_text(
            f"""
[server]
name = "air"
domains = ["air.example"]
data_dir = "air-data"
max_stanza_size = 65536
{extra_server}

[host]
listen = "{AIR_IP}:{self.c2s}"
direct_tls_listen = "{AIR_IP}:{self.tls}"
max_send_buffer = {budget}
offline_limit = 100000
{extra_host}

[component_listener]
listen = "{AIR_IP}:{self.comp}"
max_send_buffer = {BUDGET}
{extra_listener}

[[component]]
domain = "bot.air.example"
secret = "bot-secret"
{extra}
"""
        )
        self.cfg = load_config(self.config)
        self.db_path = self.cfg.server.data_dir / "zerolink.sqlite"
        self.cafile = self.cfg.server.data_dir / "tls" / "self-signed.pem"
        self.log_path = tmp / "air.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak = 0
        self._sampling = False
        self._sampler: threading.Thread | None = None

    def add_users(self, *names: str) -> None:
        db = open_database(self.cfg)
        try:
            store = AccountStore(db)
            for name in names:
                add_user(store, hosted_jid(self.cfg, f"{name}@air.example"), "pw")
        finally:
            db.close()

    def start(self) -> Daemon:
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zerolink", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        self.until(lambda: ": serving " in self.log(), "the daemon serving")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def until(self, predicate, what: str, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc is not None and self.proc.poll() is None, f"exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.log()}"
            time.sleep(0.01)

    def rss(self) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * KIB
        raise AssertionError("no VmRSS")

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        """Sample the RSS every few milliseconds; `peak` is the highest seen."""
        self.peak = self.rss()
        self._sampling = True

        def run() -> None:
            while self._sampling:
                with contextlib.suppress(OSError, AssertionError):
                    self.peak = max(self.peak, self.rss())
                time.sleep(0.005)

        self._sampler = threading.Thread(target=run, daemon=True)
        self._sampler.start()
        try:
            yield
        finally:
            self._sampling = False
            self._sampler.join()

    def query(self, sql: str) -> list[tuple]:
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=5)) as conn:
            return conn.execute(sql).fetchall()

    def offline_ids(self) -> list[int]:
        return [
            int(m.group(1))
            for (raw,) in self.query("SELECT stanza FROM offline_message ORDER BY id")
            if (m := re.search(rb"id='m(\d+)'", raw))
        ]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def start(daemons: list[Daemon], tmp: Path, *users: str, **kw: object) -> Daemon:
    d = Daemon(tmp, **kw)  # type: ignore[arg-type]
    d.add_users(*users)
    daemons.append(d)
    return d.start()


def client(d: Daemon, jid: str, **kw: object) -> RawClient:
    return RawClient(AIR_IP, d.tls, d.cafile, jid, "pw", **kw)  # type: ignore[arg-type]


def ids(data: bytes, *, errors: bool = False) -> set[int]:
    """The ids of the messages (or of the message errors) in `data`."""
    out = set()
    for m in re.finditer(rb"<message\b[^>]*>", data):
        tag = m.group(0)
        if (b"type='error'" in tag) == errors and (n := re.search(rb"id='m(\d+)'", tag)):
            out.add(int(n.group(1)))
    return out


def flood(sender: RawClient, to: str, n: int, *, midway=None) -> None:  # type: ignore[no-untyped-def]
    """`n` messages of 48 KB to `to` as fast as the socket takes them; the sender reads what
    comes back (bounces) as it goes, as a real client does."""
    for i in range(n):
        sender.send(f"<message to='{to}' id='m{i}' type='chat'><body>{BODY}</body></message>")
        if i % 20 == 0:
            sender.drain()
        if midway is not None and i == n // 2:
            midway()
    sender.ping("after-flood")


def legitimate_login(d: Daemon, name: str) -> None:
    """Another user logs in during the attack and gets answers."""
    c = client(d, f"{name}@air.example/desk").login()
    try:
        c.ping("still-here")
    finally:
        c.close()


# -- item 4: a client that does not read ---------------------------------------------------------
def test_a_client_that_never_reads_is_ended_and_nothing_sent_to_it_is_lost(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    d = start(daemons, tmp_path, "victim", "sender", "other", extra_host="offline_bytes = 2097152")
    victim = client(d, "victim@air.example/v", rcvbuf=4096).login()  # ... and never reads again
    sender = client(d, "sender@air.example/s").login()
    n = 1250  # 60 MB
    base = d.rss()
    with d.sampling():
        flood(sender, "victim@air.example/v", n, midway=lambda: legitimate_login(d, "other"))
    grown = d.peak - base
    assert grown < BUDGET + SLACK, f"RSS grew by {grown / MIB:.1f} MiB (base {base / MIB:.1f})"
    assert re.search(
        r"client victim@air\.example/v \(.*\): \d+ bytes not taken by the client, over "
        rf"host\.max_send_buffer \({BUDGET}\): session ended \(policy-violation\)",
        d.log(),
    ), d.log()

    # Nothing lost: each message reached the victim's socket, or was stored offline, or bounced
    # to its sender (offline storage full) -- some may have done two of these, none none.
    got = ids(victim.read_all())
    stored = set(d.offline_ids())
    sender.sock.settimeout(2)
    bounced = ids(b"".join(sender.consumed) + sender.read_all(), errors=True)
    assert set(range(n)) - got - stored - bounced == set()
    assert stored and bounced  # the flood went on past the session's end and the quota
    assert sum(s for (s,) in d.query("SELECT length(stanza) FROM offline_message")) <= 2 * MIB

    # The victim's next login gets the stored ones, oldest first, and the store is emptied.
    again = client(d, "victim@air.example/v2").login()
    again.read_until(f"id='m{max(stored)}'".encode())
    d.until(lambda: d.offline_ids() == [], "the offline messages delivered")
    order = [int(x) for x in re.findall(rb"<message [^>]*id='m(\d+)'", b"".join(again.consumed))]
    assert set(order) == stored and order == sorted(order)


# -- item 7: offline storage ----------------------------------------------------------------------
def test_offline_storage_is_bounded_in_bytes_and_delivered_in_batches(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    d = start(
        daemons,
        tmp_path,
        "pilot",
        "sender",
        "other",
        extra_host="offline_bytes = 20971520",  # 20 MiB
        budget=1 * MIB,  # batches of 256 KiB
    )
    sender = client(d, "sender@air.example/s").login()
    n = 500  # 24 MB for a quota of 20 MiB
    flood(sender, "pilot@air.example", n)
    sender.sock.settimeout(2)
    bounced = ids(b"".join(sender.consumed) + sender.read_all(), errors=True)
    stored = d.offline_ids()
    assert sum(s for (s,) in d.query("SELECT length(stanza) FROM offline_message")) <= 20 * MIB
    assert stored == list(range(len(stored))) and bounced == set(range(len(stored), n))
    assert re.search(
        r"bounced message from sender@air\.example/s to pilot@air\.example: "
        r"service-unavailable \(offline storage full\)",
        d.log(),
    )

    # A login that reads a little and drops: what it did not get stays stored.
    first = client(d, "pilot@air.example/phone", rcvbuf=4096).login(presence=False)
    first.send("<presence/>")
    first.read_until(b"id='m3'")
    first.sock.close()
    d.until(lambda: "pilot@air.example/phone: disconnected" in d.log(), "the drop noticed")
    got_first = ids(b"".join(first.consumed))
    left = d.offline_ids()
    assert left and left == stored[len(stored) - len(left) :]  # the oldest ones went
    assert set(stored) - got_first <= set(left)  # and only those the client had

    # The next login gets the rest, in order, without holding them all in memory at once.
    base = d.rss()
    with d.sampling():
        second = client(d, "pilot@air.example/laptop").login(presence=False)
        second.send("<presence/>")
        second.read_until(f"id='m{stored[-1]}'".encode())
        midway = threading.Thread(target=legitimate_login, args=(d, "other"))
        midway.start()
        midway.join()
        d.until(lambda: d.offline_ids() == [], "the store emptied")
    grown = d.peak - base
    assert grown < 1 * MIB + SLACK, f"RSS grew by {grown / MIB:.1f} MiB for 20 MiB stored"
    order = [int(x) for x in re.findall(rb"<message [^>]*id='m(\d+)'", b"".join(second.consumed))]
    assert order == sorted(order) and set(order) == set(left)


# -- item 7: rosters ------------------------------------------------------------------------------
def test_roster_limits_over_a_real_connection(tmp_path: Path, daemons: list[Daemon]) -> None:
    d = start(
        daemons,
        tmp_path,
        "pilot",
        extra_host="roster_max_items = 20\nroster_max_groups = 2\nroster_max_group_chars = 8",
    )
    c = client(d, "pilot@air.example/r").login(presence=False)
    roster = "xmlns='jabber:iq:roster'"
    for i in range(22):
        c.send(
            f"<iq type='set' id='r{i}'><query {roster}><item jid='c{i}@x.example'/></query></iq>"
        )
    c.ping("sets-done")
    replies = b"".join(c.consumed)
    ok = [
        i
        for i in range(22)
        if re.search(rf"<iq [^>]*type='result'[^>]*id='r{i}'".encode(), replies)
        or re.search(rf"<iq [^>]*id='r{i}'[^>]*type='result'".encode(), replies)
    ]
    assert ok == list(range(20))
    assert replies.count(b"<resource-constraint ") == 2
    assert b"the roster is full (20 items)" in replies
    c.send(
        f"<iq type='set' id='g'><query {roster}><item jid='c0@x.example'>"
        f"<group>{'g' * 9}</group></item></query></iq>"
    )
    reply = c.read_until(b"</iq>")
    assert b"<not-acceptable " in reply and b"group name longer than 8 characters" in reply
    c.send(f"<iq type='get' id='all'><query {roster}/></iq>")
    result = c.read_until(b"</query></iq>")
    assert result.count(b"<item ") == 20


# -- item 4: a component that does not read -------------------------------------------------------
def component(d: Daemon) -> socket.socket:
    """XEP-0114 handshake as bot.air.example, with a small receive buffer; never reads after."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect((AIR_IP, d.comp))
    s.sendall(
        b"<stream:stream xmlns='jabber:component:accept' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='bot.air.example'>"
    )
    got = b""
    while b" id=" not in got or b">" not in got[got.index(b" id=") :]:
        got += s.recv(4096)
    stream_id = re.search(rb" id='([^']+)'", got).group(1).decode()  # type: ignore[union-attr]
    s.sendall(f"<handshake>{handshake_digest(stream_id, 'bot-secret')}</handshake>".encode())
    while b"<handshake/>" not in got:
        got += s.recv(4096)
    return s


def test_a_component_that_never_reads_is_ended_at_its_budget(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    d = start(daemons, tmp_path, "sender", "other")
    bot = component(d)
    d.until(lambda: "component bot.air.example: connected" in d.log(), "the component in")
    sender = client(d, "sender@air.example/s").login()
    n = 1250  # 60 MB
    base = d.rss()
    with d.sampling():
        flood(sender, "echo@bot.air.example", n, midway=lambda: legitimate_login(d, "other"))
    grown = d.peak - base
    assert grown < BUDGET + SLACK, f"RSS grew by {grown / MIB:.1f} MiB (base {base / MIB:.1f})"
    assert re.search(
        r"component bot\.air\.example: \d+ bytes not read by the component, over "
        rf"max_send_buffer \({BUDGET}\): ended \(policy-violation\)",
        d.log(),
    ), d.log()
    # From then on the domain bounces: the senders are told.
    sender.sock.settimeout(2)
    bounced = ids(b"".join(sender.consumed) + sender.read_all(), errors=True)
    assert bounced and max(bounced) == n - 1
    bot.close()
