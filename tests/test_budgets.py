"""Memory budgets in bytes: a link that is down holds at most `queue_bytes` of stanzas (the
daemon is a separate process, so its RSS is measured from outside)."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from slixmpp import ClientXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from conftest import AIR_IP, Side, free_port, write_config
from zerolink.app import Server
from zerolink.config import load_config
from zerolink.core.queue import StanzaQueue
from zerolink.xml.element import Element


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Client(ClientXMPP):
    """A slixmpp client that records the condition of every error it gets, by stanza id."""

    def __init__(self, jid: str, password: str, side: Side, cafile: Path) -> None:
        super().__init__(jid, password)
        self.side = side
        self.ssl_context = ssl.create_default_context(cafile=str(cafile))
        self.errors: dict[str, str] = {}
        self.add_event_handler(
            "message_error", lambda m: self.errors.__setitem__(m["id"], m["error"]["condition"])
        )

    async def start(self) -> Client:
        self.connect(self.side.ip, self.side.c2s_port)
        await self.wait_until("session_start", timeout=10)
        return self

    async def ping(self, iq_id: str, timeout: float = 30) -> None:
        """A ping to the server, answered after everything this client sent before it."""
        done = asyncio.Event()
        self.register_handler(
            Callback(
                iq_id,
                MatchXPath("{jabber:client}iq"),
                lambda iq: done.set() if iq["id"] == iq_id else None,
            )
        )
        self.send_raw(
            f"<iq type='get' id='{iq_id}' to='air.example'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        await asyncio.wait_for(done.wait(), timeout)


def test_the_queue_is_bounded_in_count_and_bytes():
    q = StanzaQueue(limit=3, timeout=10, max_bytes=100)
    assert q.push(b"x" * 60, 0.0)
    assert not q.push(b"x" * 41, 0.0)  # 101 bytes
    assert q.push(b"x" * 40, 0.0) and q.bytes == 100
    assert q.push(b"", 0.0) and not q.push(b"", 0.0)  # the fourth: over the count
    assert q.pop() == b"x" * 60 and q.bytes == 40
    assert q.expire(10.0) == [b"x" * 40, b""] and q.bytes == 0 and not q


@pytest.mark.asyncio
async def test_a_down_link_holds_at_most_queue_bytes(tmp_path, procs, sides):
    """A client floods a link that is down with 200 KB messages: beyond queue_bytes they
    bounce with resource-constraint, the daemon's memory stays within the budget, and
    another user logs in and is answered meanwhile."""
    air, ground = sides
    air.c2s_port = free_port(AIR_IP)
    air.extra = f'[host]\nlisten = "{air.ip}:{air.c2s_port}"\n'
    budget = 4 * 1024 * 1024
    a = procs(air, ground, tmp_path, acks=False, queue_bytes=budget)
    for user in ("pilot", "copilot"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "zerolink",
                "user",
                "-c",
                str(a.config),
                "add",
                f"{user}@air.example",
                "--password",
                "pw",
            ],
            check=True,
            capture_output=True,
        )
    a.start()
    await a.serving()
    assert a.proc is not None
    cafile = a.config.parent / f"{a.config.stem}-data" / "tls" / "self-signed.pem"
    pilot = await Client("pilot@air.example/cockpit", "pw", air, cafile).start()
    try:
        await pilot.ping("warm")
        base = rss_kib(a.proc.pid)
        n, body = 300, "x" * 200_000  # 60 MB in all
        for i in range(n):
            pilot.send_raw(
                f"<message to='ops@ground.example' id='m{i}'><body>{body}</body></message>"
            )
            if i % 20 == 19:
                await pilot.ping(f"p{i}")
        copilot = await Client("copilot@air.example/seat", "pw", air, cafile).start()
        await copilot.ping("other")  # another user is served while the queue is full
        await copilot.disconnect()
        await pilot.ping("end")
        peak = rss_kib(a.proc.pid)
        bounced = [k for k, c in pilot.errors.items() if c == "resource-constraint"]
        accepted = n - len(pilot.errors)
        assert set(pilot.errors.values()) == {"resource-constraint"}
        assert accepted <= budget // 200_000 and len(bounced) >= n - budget // 200_000
        grown = (peak - base) * 1024
        assert grown < budget + 24 * 1024 * 1024, f"RSS grew by {grown >> 20} MiB"
    finally:
        pilot.abort()


@pytest.mark.asyncio
async def test_an_upstream_that_is_down_holds_at_most_queue_bytes(tmp_path, sides):
    """The upstream attachment's queue has the same byte budget as a link's."""
    air, ground = sides
    dead_port = free_port(AIR_IP)  # nothing listens there: the attachment stays down
    air.extra = (
        f'[upstream]\naddress = "{air.ip}:{dead_port}"\nqueue_bytes = 1048576\n'
        f'[[upstream.component]]\ndomain = "{ground.domain}"\nsecret = "s"\n'
    )
    server = Server(load_config(write_config(tmp_path, air, ground)))
    await server.start(start_links=False)
    try:
        assert server.upstream is not None
        (att,) = server.upstream.attachments.values()
        before = server.router.bounced
        for i in range(20):
            msg = Element(
                "{jabber:server}message",
                {"from": f"x@{ground.domain}", "to": f"u@{air.domain}", "id": str(i)},
            )
            msg.subelement("{jabber:server}body", text="y" * 100_000)
            server.router.route(msg)
        assert att.queue.bytes <= 1048576 and len(att.queue) == 10
        assert server.router.bounced - before == 10
    finally:
        await server.stop()
