"""Abuse of connections and logins against real daemons (issue 10, items 8-11).

The attacker connects from 127.0.0.66, legitimate users from the default loopback source:
two "hosts" as far as the daemon can tell. Each test shows that the attack takes only what its
budget allows and that others keep working while it runs (a login or a link message succeeds
during it). Budgets are small so that each attack is a few seconds; the in-memory rules are in
test_admission.py.
"""

from __future__ import annotations

import base64
import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import AIR_IP
from rawclient import HEADER, RawClient
from test_host_budgets import SLACK, Daemon, client, component, start

ATTACKER = "127.0.0.66"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"


@pytest.fixture
def hosts() -> Iterator[list[Daemon]]:
    """The daemons a test started (as processes), stopped at the end."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def stranger(port: int, ip: str = AIR_IP) -> socket.socket:
    s = socket.socket()
    s.bind((ATTACKER, 0))
    s.connect((ip, port))
    return s


def closed_now(s: socket.socket) -> bool:
    """The daemon has closed (or reset) this connection already."""
    readable, _, _ = select.select([s], [], [], 0)
    if not readable:
        return False
    try:
        return s.recv(65536, socket.MSG_PEEK) == b""
    except ConnectionError:
        return True


def read_to_end(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    out = b""
    with contextlib.suppress(OSError):
        while chunk := s.recv(65536):
            out += chunk
    return out


# -- item 8: idle pre-auth connections ----------------------------------------------------------
def test_idle_connections_from_one_address_hold_a_few_slots_and_logins_keep_working(
    tmp_path: Path, hosts: list[Daemon]
) -> None:
    d = start(
        hosts,
        tmp_path,
        "alice",
        extra_host="max_unauthenticated = 50\nmax_unauthenticated_per_address = 4",
    )
    base = d.rss()
    with d.sampling():
        idle = [stranger(d.c2s) for _ in range(300)]
        # A login after the flood: the daemon has taken every one of the 300 by then.
        c = client(d, "alice@air.example/desk").login()
        c.ping("during-the-flood")
        c.close()
    held = [s for s in idle if not closed_now(s)]
    print(
        f"\n300 idle connections from one address: {len(held)} held, RSS +"
        f"{(d.peak - base) / 2**20:.1f} MiB"
    )
    assert len(held) <= 4
    assert d.peak - base < SLACK
    log = d.log()
    assert log.count("refused client") <= 5, "every refusal logged: the rate limit is off"
    for s in idle:
        s.close()
    d.stop()  # the summary of what was not logged is written at the latest at shutdown
    assert "more like 'refused client %s: %s'" in d.log()


def test_a_client_trickling_its_header_is_cut_at_the_step_timeout(
    tmp_path: Path, hosts: list[Daemon]
) -> None:
    d = start(hosts, tmp_path, extra_host="step_timeout = 1")  # auth_timeout stays 60 s
    s = stranger(d.c2s)
    header = HEADER.format(domain="air.example").encode()
    t0 = time.monotonic()
    got = b""
    s.settimeout(0.2)
    for byte in header:  # five bytes a second: the header would take half a minute
        try:
            s.sendall(bytes([byte]))
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        except TimeoutError:
            continue
        except OSError:
            break
    elapsed = time.monotonic() - t0
    got += read_to_end(s, 2)
    assert b"policy-violation" in got, got
    assert elapsed < 10, f"held for {elapsed:.1f} s"


# -- item 10: password guessing -----------------------------------------------------------------
def guess(d: Daemon, deadline: float, answered: list[float]) -> None:
    """Wrong passwords for alice over direct TLS, one connection per guess, until `deadline`."""
    token = base64.b64encode(b"\0alice\0wrong").decode()
    while (left := deadline - time.monotonic()) > 0:
        try:
            c = RawClient(
                AIR_IP, d.tls, d.cafile, "alice@air.example", "x", source=ATTACKER, timeout=left
            )
        except OSError:
            continue  # refused: the address's budget is full
        try:
            c.send(HEADER.format(domain="air.example"))
            c.read_until(b"</stream:features>")
            c.send(
                f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
            )
            c.read_until(b"</failure>")
            if time.monotonic() < deadline:
                answered.append(time.monotonic())
        except (OSError, ConnectionError):
            pass
        finally:
            c.close()


def attack(d: Daemon, seconds: float, threads: int = 4) -> int:
    answered: list[float] = []
    deadline = time.monotonic() + seconds
    workers = [
        threading.Thread(target=guess, args=(d, deadline, answered), daemon=True)
        for _ in range(threads)
    ]
    for w in workers:
        w.start()
    return_when = time.monotonic() + seconds / 2
    while time.monotonic() < return_when:  # the owner logs in from elsewhere, mid-attack
        time.sleep(0.05)
    t0 = time.monotonic()
    c = client(d, "alice@air.example/phone").login()
    c.ping("owner-in")
    c.close()
    login_took = time.monotonic() - t0
    for w in workers:
        w.join(seconds + 15)
    print(
        f"\n{len(answered)} guesses answered in {seconds:g} s "
        f"({len(answered) / seconds:.1f}/s); the owner's login took {login_took:.2f} s"
    )
    assert login_took < 3, f"the owner's login took {login_took:.1f} s during the attack"
    return len(answered)


def test_password_guessing_is_throttled_and_the_owner_still_logs_in(
    tmp_path: Path, hosts: list[Daemon]
) -> None:
    d = start(hosts, tmp_path, "alice", extra_host="auth_failures = 3")
    answered = attack(d, 4.0)
    # 3 free failures, then 1 s, 2 s, 4 s ... per address and per account: a handful in 4 s
    # (hundreds a second without the throttle).
    assert answered <= 12
    assert "authentication failed for alice@air.example: not-authorized (from 127.0.0.66)" in (
        d.log()
    )
    assert "wrong" not in d.log()  # the password never reaches the log


# -- item 9: the component port -----------------------------------------------------------------
def test_component_port_bounds_strangers_and_ends_stalled_handshakes(
    tmp_path: Path, hosts: list[Daemon]
) -> None:
    d = start(
        hosts,
        tmp_path,
        extra_listener="max_unauthenticated_per_address = 4\nhandshake_timeout = 1",
    )
    idle = [stranger(d.comp) for _ in range(50)]
    bot = component(d)  # the real component connects during the flood
    d.until(lambda: "component bot.air.example: connected" in d.log(), "the component in")
    held = [s for s in idle if not closed_now(s)]
    assert len(held) <= 4
    ends = [read_to_end(s, 5) for s in held]
    assert all(b"policy-violation" in end for end in ends), ends
    assert not closed_now(bot)  # the component is not affected
    for s in (*idle, bot):
        s.close()
