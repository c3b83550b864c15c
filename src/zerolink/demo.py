"""`zerolink demo`: an aircraft and a ground station in one process, no other XMPP server.

It starts the air and ground servers of `examples/` (users hosted by zerolink itself, X2X on
loopback), creates one account on each side, prints how to log in with any XMPP client, runs a
short scripted exchange across the link and keeps running until Ctrl-C. Every run starts the
scripted pair from no subscription (what an earlier run in the same folder left between them is
removed), so that the exchange is shown again. With `--rtt` and
`--rate`, the X2X traffic goes through a user-space relay that delays and paces it, so that the
effect of a slow link can be felt without root.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import time
from pathlib import Path
from typing import Any

from zerolink.app import Server, StartupError
from zerolink.config import Config, parse_config
from zerolink.jid import JID
from zerolink.net.slowlink import SlowLink
from zerolink.store import RosterStore
from zerolink.users import UserError, add_user, hosted_jid, set_password
from zerolink.xml.element import SERVER_NS, Element

log = logging.getLogger("zerolink.demo")

SIDES = {
    "air": {
        "ip": "127.0.0.2",
        "domain": "air.example",
        "relay": "127.0.0.4",
        "user": "pilot",
        "peer": "ground",
    },
    "ground": {
        "ip": "127.0.0.3",
        "domain": "ground.example",
        "relay": "127.0.0.5",
        "user": "ops",
        "peer": "air",
    },
}


def demo_config(name: str, base: Path, *, relayed: bool) -> Config:
    """The example config of one side, with its data under `base`."""
    me, other = SIDES[name], SIDES[SIDES[name]["peer"]]
    # Through the relay, we dial the relay that stands in front of the other side.
    remote = f"{me['relay'] if relayed else other['ip']}:5269"
    data = {
        "server": {"name": name, "domains": [me["domain"]], "data_dir": f"{name}-data"},
        "host": {"domains": [me["domain"]], "listen": f"{me['ip']}:5222"},
        "component_listener": {"listen": f"{me['ip']}:5347"},
        "component": [{"domain": f"bot.{me['domain']}", "secret": "bot-secret"}],
        "peer": [
            {
                "name": me["peer"],
                "domains": [other["domain"], f"*.{other['domain']}"],
                "remote": remote,
                "listen": f"{me['ip']}:5269",
                "source": me["ip"],
                "identity": {"mode": "address", "addresses": [other["ip"]]},
                # One connection, opened by air: the relay models the link air dials over.
                "direction": "outbound" if name == "air" else "inbound",
                "connect": "always",
            }
        ],
    }
    return parse_config(data, base_dir=base, source=f"demo {name}", path=base / f"{name}.toml")


class ScriptSession:
    """A client session driven by the demo script (implements the host's ClientSession)."""

    def __init__(self, label: str, started: float) -> None:
        self.jid: JID | None = None
        self.label = label
        self.started = started
        self.inbox: asyncio.Queue[Element] = asyncio.Queue()

    def send(self, stanza: Element) -> None:
        self.inbox.put_nowait(stanza)

    def kick(self, condition: str, text: str | None = None) -> None:
        self.jid = None

    async def expect(self, predicate: Any, what: str, timeout: float) -> Element:
        """The first stanza that `predicate` accepts; TimeoutError saying what did not come."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            try:
                if left <= 0:
                    raise TimeoutError
                stanza = await asyncio.wait_for(self.inbox.get(), left)
            except TimeoutError:
                raise TimeoutError(
                    f"{self.label} did not receive {what} within {timeout:g}s"
                ) from None
            if predicate(stanza):
                return stanza


def _stanza(kind: str, **attrs: str) -> Element:
    return Element(f"{{{SERVER_NS}}}{kind}", {k: v for k, v in attrs.items() if v})


async def run_script(air: Server, ground: Server, *, timeout: float) -> list[tuple[float, str]]:
    """pilot@air.example and ops@ground.example subscribe to each other and chat."""
    assert air.host is not None and ground.host is not None
    t0 = time.monotonic()
    steps: list[tuple[float, str]] = []

    def step(text: str) -> None:
        steps.append((time.monotonic() - t0, text))
        print(f"  {time.monotonic() - t0:7.2f}s  {text}", flush=True)

    pilot, ops = ScriptSession("pilot", t0), ScriptSession("ops", t0)
    pj = air.host.bind(pilot, "pilot", "air.example", "demo")
    oj = ground.host.bind(ops, "ops", "ground.example", "demo")
    for host, sess in ((air.host, pilot), (ground.host, ops)):
        # Fetching the roster makes the session "interested" (RFC 6121 §2.1.6): it is then
        # told of subscription requests and approvals, like a real client.
        get = _stanza("iq", type="get", id="roster", **{"from": str(sess.jid)})
        get.append(Element("{jabber:iq:roster}query"))
        host.from_client(sess, get)
        host.from_client(sess, _stanza("presence", **{"from": str(sess.jid)}))

    def presence(kind: str, frm: JID, to: str) -> Element:
        return _stanza("presence", type=kind, to=to, **{"from": str(frm)})

    def is_presence(kind: str, frm: JID) -> Any:
        return lambda s: (
            s.local == "presence" and s.get("type") == kind and _bare(s.get("from")) == frm.bare
        )

    def is_message(body: str, frm: JID) -> Any:
        def match(s: Element) -> bool:
            text = s.find(f"{{{SERVER_NS}}}body")
            return (
                s.local == "message"
                and text is not None
                and text.text == body
                and _bare(s.get("from")) == frm.bare
            )

        return match

    air.host.from_client(pilot, presence("subscribe", pj, "ops@ground.example"))
    step("pilot@air.example asks to see ops@ground.example's presence")
    await ops.expect(
        is_presence("subscribe", pj), "pilot's subscription request (presence subscribe)", timeout
    )
    step("ops@ground.example received the request across the link")
    ground.host.from_client(ops, presence("subscribed", oj, "pilot@air.example"))
    ground.host.from_client(ops, presence("subscribe", oj, "pilot@air.example"))
    await pilot.expect(
        is_presence("subscribed", oj), "ops's approval (presence subscribed)", timeout
    )
    step("pilot@air.example was approved")
    await pilot.expect(
        is_presence("subscribe", oj), "ops's subscription request (presence subscribe)", timeout
    )
    air.host.from_client(pilot, presence("subscribed", pj, "ops@ground.example"))
    await ops.expect(
        is_presence("subscribed", pj), "pilot's approval (presence subscribed)", timeout
    )
    step("both are subscribed to each other (roster items at 'both')")

    text = "Position 47N 008E, FL350, ETA 14:05"
    msg = _stanza("message", type="chat", to="ops@ground.example", **{"from": str(pj)})
    msg.subelement(f"{{{SERVER_NS}}}body", text=text)
    sent = time.monotonic()
    air.host.from_client(pilot, msg)
    await ops.expect(is_message(text, pj), "pilot's message", timeout)
    step(f"ops got {text!r} ({time.monotonic() - sent:.2f}s one way)")
    text = "Copy, gate B12 is ready"
    reply = _stanza("message", type="chat", to=str(pj), **{"from": str(oj)})
    reply.subelement(f"{{{SERVER_NS}}}body", text=text)
    sent = time.monotonic()
    ground.host.from_client(ops, reply)
    await pilot.expect(is_message(text, oj), "ops's reply", timeout)
    step(f"pilot got the reply ({time.monotonic() - sent:.2f}s one way)")
    air.host.unbind(pilot)
    ground.host.unbind(ops)
    return steps


def _bare(raw: str | None) -> JID | None:
    try:
        return JID.parse(raw).bare if raw else None
    except ValueError:
        return None


def reset_pair(servers: dict[str, Server]) -> None:
    """Forget what an earlier run left between the scripted pair (a subscription at 'both',
    or half of one if it was interrupted), so that every run shows the whole exchange."""
    for name, side in SIDES.items():
        other = SIDES[side["peer"]]
        db = servers[name].db
        assert db is not None
        RosterStore(db).remove(
            f"{side['user']}@{side['domain']}", f"{other['user']}@{other['domain']}"
        )


def _ensure_account(server: Server, jid: str, password: str) -> None:
    target = hosted_jid(server.config, jid)
    try:
        add_user(server.accounts, target, password)
    except UserError:
        set_password(server.accounts, target, password)


async def demo(base: Path, *, rtt: float, rate: float | None) -> int:
    base.mkdir(parents=True, exist_ok=True)
    relayed = rtt > 0 or rate is not None
    servers = {n: Server(demo_config(n, base, relayed=relayed)) for n in SIDES}
    relays: list[SlowLink] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP too: the demo belongs to its terminal, and closing it ends the demo cleanly.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        if relayed:
            air, ground = SIDES["air"], SIDES["ground"]
            relay = SlowLink(
                (air["relay"], 5269), (ground["ip"], 5269), rtt=rtt, rate=rate, source=air["ip"]
            )
            await relay.start()
            relays.append(relay)
        # Ground (the listening side) first: air's first dial then reaches it, rather than a
        # relay with nothing behind it yet, which would take the first stanzas of a plain
        # link down with its connection.
        for name in ("ground", "air"):
            await servers[name].start()
        passwords = {}
        for name, side in SIDES.items():
            jid = f"{side['user']}@{side['domain']}"
            passwords[jid] = secrets.token_urlsafe(9)
            _ensure_account(servers[name], jid, passwords[jid])
        reset_pair(servers)
        link = f"rtt {rtt:g}s" + (f", {rate:g} bit/s" if rate else "") if relayed else "loopback"
        print(f"\nzerolink demo: air.example <-> ground.example over X2X ({link})\n", flush=True)
        print("Log in with any XMPP client (Gajim, Dino, Conversations, Profanity):")
        for side in SIDES.values():
            jid = f"{side['user']}@{side['domain']}"
            print(f"  {jid:22} password {passwords[jid]:14} server {side['ip']}:5222")
        print("  (STARTTLS with a self-signed certificate: accept it in the client)\n")
        print("Scripted exchange across the link:", flush=True)
        timeout = 30 + 10 * rtt
        await run_script(servers["air"], servers["ground"], timeout=timeout)
        print("\ndemo exchange complete; running until Ctrl-C", flush=True)
        await stop.wait()
        return 0
    except (OSError, TimeoutError, StartupError) as exc:
        print(f"demo failed: {exc or type(exc).__name__}", flush=True)
        return 1
    finally:
        for server in servers.values():
            await server.stop()
        for relay in relays:
            await relay.stop()
