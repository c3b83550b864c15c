"""Shared fixtures: loopback daemon pairs (air on 127.0.0.2, ground on 127.0.0.3) and slixmpp bots.

Daemons run in the test's own event loop as `zerolink.app.Server` objects, built from real
TOML files through the real config loader, and talk over real TCP sockets on loopback.
"""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from slixmpp import ComponentXMPP
from slixmpp.stanza import Message

from daemons import FAST, Daemon
from ports import free_port
from prosody import prosody_missing
from zerolink.app import Server
from zerolink.config import load_config

__all__ = ["free_port"]  # tests import it from here

AIR_IP = "127.0.0.2"
GROUND_IP = "127.0.0.3"


# -- what some tests need from the machine ---------------------------------------------------
# They fail (never skip) when it is missing, naming what is missing and how to get it: CI must
# not turn green by skipping them. `.ci/run` runs as root and installs the packages.

_CAPS = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21}


def _effective_caps() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def require_root(purpose: str) -> None:
    """Fail unless running as root with CAP_NET_ADMIN and CAP_SYS_ADMIN (`ip netns`, `ss -K`)."""
    if os.geteuid() != 0:
        pytest.fail(
            f"needs root for {purpose}: run the tests as root "
            "(e.g. `sudo .venv/bin/python -m pytest`; CI runs as root)",
            pytrace=False,
        )
    caps = _effective_caps()
    missing = [name for name, bit in _CAPS.items() if not caps >> bit & 1]
    if missing:
        pytest.fail(
            f"needs {' and '.join(missing)} for {purpose}: this root lacks them (in a "
            "container, run it with --cap-add=NET_ADMIN --cap-add=SYS_ADMIN or --privileged)",
            pytrace=False,
        )


def require_commands(*commands: str, package: str, purpose: str) -> None:
    """Fail unless every command is on PATH, naming the missing ones and their package."""
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found on PATH: needed for {purpose}. Install it "
            f"with `apt-get install {package}` (Debian/Ubuntu; .ci/run does this)",
            pytrace=False,
        )


def require_prosody() -> None:
    """Fail unless `prosody` and `prosodyctl` are installed (tests that run a real Prosody)."""
    why = prosody_missing()
    if why:
        pytest.fail(why, pytrace=False)


def require_openssl() -> None:
    """Fail unless the `openssl` command is installed (cross-checks of certificates and pins)."""
    require_commands("openssl", package="openssl", purpose="cross-checks with openssl")


@pytest.fixture
def openssl_installed() -> None:
    """For `@pytest.mark.usefixtures("openssl_installed")`."""
    require_openssl()


@dataclass
class Side:
    """One daemon's addresses and config text."""

    name: str
    domain: str
    ip: str
    x2x_port: int
    comp_port: int
    c2s_port: int = 0
    peer: dict[str, object] = field(default_factory=dict)
    extra: str = ""

    @property
    def bot(self) -> str:
        return f"bot.{self.domain}"


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def side_toml(
    me: Side,
    other: Side,
    peer_overrides: dict[str, object] | None = None,
    identity: str | None = None,
) -> str:
    peer: dict[str, object] = {
        "name": other.name,
        "domains": [other.domain, f"*.{other.domain}"],
        "remote": f"{other.ip}:{other.x2x_port}",
        "listen": f"{me.ip}:{me.x2x_port}",
        "direction": "both",
        "connect": "always",
        "reconnect_min": 0.05,
        "reconnect_max": 0.5,
        "initial_delay": 0,
        "close_timeout": 2,
        "connect_timeout": 2,
    }
    peer.update(peer_overrides or {})
    peer_lines = "\n".join(f"{k} = {toml_value(v)}" for k, v in peer.items())
    ident = identity or f'[peer.identity]\nmode = "address"\naddresses = ["{other.ip}"]'
    return f"""
[server]
name = "{me.name}"
domains = ["{me.domain}"]
log_level = "debug"

[component_listener]
listen = "{me.ip}:{me.comp_port}"

[[component]]
domain = "{me.bot}"
secret = "bot-secret"

[[peer]]
{peer_lines}
{ident}
{me.extra}
"""


def write_config(tmp: Path, me: Side, other: Side, **kw: object) -> Path:
    path = tmp / f"{me.name}.toml"
    path.write_text(side_toml(me, other, **kw))  # type: ignore[arg-type]
    return path


@pytest.fixture
def sides() -> tuple[Side, Side]:
    air = Side("air", "air.example", AIR_IP, free_port(AIR_IP), free_port(AIR_IP))
    ground = Side("ground", "ground.example", GROUND_IP, free_port(GROUND_IP), free_port(GROUND_IP))
    return air, ground


class Bot(ComponentXMPP):
    """A slixmpp component that records what it receives."""

    def __init__(self, jid: str, port: int, host: str) -> None:
        super().__init__(jid, "bot-secret", host, port)
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.presences: asyncio.Queue[object] = asyncio.Queue()
        self._markers = 0
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        # Copies: slixmpp reuses and edits stanza objects after the handlers have run.
        self.add_event_handler("message", lambda m: self.messages.put_nowait(copy.copy(m)))
        self.add_event_handler("message_error", lambda m: self.messages.put_nowait(copy.copy(m)))
        self.add_event_handler(
            "presence_available", lambda p: self.presences.put_nowait(copy.copy(p))
        )
        self.add_event_handler(
            "presence_unavailable", lambda p: self.presences.put_nowait(copy.copy(p))
        )

    async def start(self) -> Bot:
        self.connect()
        await self.wait_until("session_start", timeout=10)
        return self

    async def stop(self) -> None:
        if self.is_connected():
            self.disconnect(wait=0.5)
            try:
                await asyncio.wait_for(self.wait_until("disconnected", 3), 4)
            except TimeoutError:
                self.abort()

    async def next_message(self, timeout: float = 5.0) -> Message:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def no_message(self, timeout: float = 5.0) -> bool:
        """True if nothing was routed to this bot before now; else AssertionError naming it.

        No fixed sleep: the bot sends a marker message to itself through its daemon and reads
        until the marker comes back. The daemon handles stanzas in order and the component
        stream is one TCP connection, so whatever the daemon routed to this bot before the
        marker arrives before it.
        """
        self._markers += 1
        body = f"marker {self._markers} {id(self)}"
        self.send_message(mto=self.boundjid.bare, mfrom=self.boundjid.bare, mbody=body)
        early = []
        while True:
            msg = await self.next_message(timeout)
            if msg["body"] == body:
                break
            early.append(msg)
        if early:
            raise AssertionError(f"unexpected message(s) before the marker: {early}")
        return True


async def start_bot(side: Side) -> Bot:
    return await Bot(side.bot, side.comp_port, side.ip).start()


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll until `predicate()` holds (state owned by the daemons, not by the test)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def daemons(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    """Factory: `await daemons(config_path)` starts a Server; all are stopped at the end."""
    started: list[Server] = []

    async def start(path: Path) -> Server:
        server = Server(load_config(path))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def error_condition(stanza) -> str | None:
    """The RFC 6120 condition of an error stanza received by slixmpp.

    Read from the XML itself: slixmpp's Error plugin looks for `<error/>` in jabber:client
    only, and on a component stream it would report a made-up condition.
    """
    for child in stanza.xml:
        if child.tag.endswith("}error"):
            for cond in child:
                if cond.tag.startswith("{" + STANZAS_NS + "}") and not cond.tag.endswith("}text"):
                    return cond.tag.split("}", 1)[1]
    return None


@pytest.fixture
async def procs() -> AsyncIterator[Callable[..., Daemon]]:
    """Factory for `daemons.Daemon`s (separate processes); every one still running is stopped
    at the end. ``procs(side, other, tmp, prefix=(), **peer_overrides)``."""
    made: list[Daemon] = []

    def make(
        side: Side, other: Side, tmp: Path, prefix: tuple[str, ...] = (), **peer: object
    ) -> Daemon:
        path = tmp / f"{side.name}.toml"
        path.write_text(side_toml(side, other, peer_overrides={**FAST, **peer}))
        daemon = Daemon(side, path, prefix)
        made.append(daemon)
        return daemon

    yield make
    await asyncio.gather(*(d.stop() for d in made))
