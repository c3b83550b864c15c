"""Reliable delivery (acks = true): counters per link, sync on connect, retransmission.

Unit tests of the counters, then two daemons over loopback with raw XEP-0114 components fast
enough to push thousands of messages (slixmpp would be the bottleneck).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest

from conftest import GROUND_IP, wait_for, write_config
from zerolink.core.reliable import ReliableLog
from zerolink.proto import acks
from zerolink.xml.element import SERVER_NS, Element

# -- counters in memory -------------------------------------------------------------------


def test_unwrap_across_the_2_to_the_32_boundary():
    assert acks.unwrap(5, 10) == 5
    assert acks.unwrap(3, (1 << 32) + 1) == (1 << 32) + 3
    assert acks.unwrap((1 << 32) - 2, (1 << 32) + 1) == (1 << 32) - 2
    assert acks.sync_element((1 << 32) + 7, 3).get("h") == "7"


def test_inbound_drops_duplicates_below_its_count():
    inbound = acks.Inbound(count=10)
    seq = inbound.position(7)  # the peer restarts at 7: 7, 8, 9 are duplicates
    results = []
    for s in range(seq, seq + 5):
        results.append(inbound.arrived(s))
    assert results == [(False, 0)] * 3 + [(True, 0)] * 2
    assert inbound.count == 12


def test_inbound_jumps_over_stanzas_the_peer_gave_up():
    inbound = acks.Inbound(count=10)
    assert inbound.arrived(inbound.position(13)) == (True, 3)
    assert inbound.count == 14


def test_log_renumbers_when_this_side_lost_its_numbering():
    log = ReliableLog(limit=10, max_bytes=10_000, timeout=60)
    for _ in range(3):
        log.push(Element(f"{{{SERVER_NS}}}message"), 0.0, 10)
    log.renumber(100)
    assert log.first_seq == 100 and log.next_seq == 103 and len(log) == 3


def test_log_keeps_until_acked_and_rewinds():
    log = ReliableLog(limit=10, max_bytes=10_000, timeout=60)
    for i in range(4):
        log.push(Element(f"{{{SERVER_NS}}}message", {"id": str(i)}), 0.0, 100)
    assert [log.pop().seq for _ in range(3)] == [0, 1, 2]
    assert [e.seq for e in log.ack(2)] == [0, 1]
    assert log.rewind() == 2
    assert [log.pop().seq for _ in range(2)] == [2, 3]
    assert not log and len(log) == 2
    assert log.push(Element("x"), 0.0, 9_900) is None  # over the byte bound


def test_counter_must_be_below_2_to_the_32():
    with pytest.raises(ValueError):
        acks.counter(str(1 << 32))
    with pytest.raises(ValueError):
        acks.counter("-1")


# -- over loopback ------------------------------------------------------------------------


class RawComponent:
    """A minimal XEP-0114 client: pipelined sends, incremental receive of numbered bodies."""

    def __init__(self, domain: str, ip: str, port: int) -> None:
        self.domain, self.ip, self.port = domain, ip, port
        self.bodies: list[str] = []
        self.markers: list[str] = []  # bodies starting with "marker": kept out of `bodies`
        self.errors = 0
        self._buf = b""

    async def start(self) -> RawComponent:
        self.reader, self.writer = await asyncio.open_connection(self.ip, self.port)
        self.writer.write(
            f"<stream:stream xmlns='jabber:component:accept' "
            f"xmlns:stream='http://etherx.jabber.org/streams' to='{self.domain}'>".encode()
        )
        head = b""
        while b"id='" not in head or b">" not in head.split(b"id='", 1)[1]:
            head += await self.reader.read(4096)
        sid = re.search(rb"id='([^']+)'", head).group(1).decode()
        digest = hashlib.sha1((sid + "bot-secret").encode()).hexdigest()
        self.writer.write(f"<handshake>{digest}</handshake>".encode())
        while b"<handshake/>" not in head:
            head += await self.reader.read(4096)
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while data := await self.reader.read(65536):
            self._buf += data
            *done, self._buf = self._buf.split(b"</message>")
            for chunk in done:
                if b"type='error'" in chunk:
                    self.errors += 1
                m = re.search(rb"<body>([^<]*)</body>", chunk)
                if m:
                    body = m.group(1).decode()
                    (self.markers if body.startswith("marker") else self.bodies).append(body)

    async def send_many(self, to: str, n: int, start: int = 0, batch: int = 200) -> None:
        for i in range(start, start + n, batch):
            chunk = "".join(
                f"<message from='pilot@{self.domain}' to='{to}'><body>{j}</body></message>"
                for j in range(i, min(i + batch, start + n))
            )
            self.writer.write(chunk.encode())
            await self.writer.drain()
            await asyncio.sleep(0)

    async def close(self) -> None:
        self._task.cancel()
        self.writer.close()


_marker_count = 0


async def marker(src: RawComponent, dst: RawComponent, timeout: float = 10) -> None:
    """Send a marker message from `src` to `dst` and wait until `dst` has it.

    Delivery is ordered: whatever was routed to `dst` along the same path before the marker
    (a late duplicate, a retransmission of something still unacknowledged) has arrived once
    the marker has. The replacement for "sleep, then check that nothing more came".
    """
    global _marker_count
    _marker_count += 1
    body = f"marker {_marker_count}"
    src.writer.write(
        f"<message from='pilot@{src.domain}' to='ops@{dst.domain}'><body>{body}</body>"
        "</message>".encode()
    )
    await src.writer.drain()
    deadline = asyncio.get_running_loop().time() + timeout
    while body not in dst.markers:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"marker {body!r} not delivered within {timeout}s")
        await asyncio.sleep(0.005)


def link_of(server):
    return next(iter(server.links.values()))


def acks_on(extra: dict | None = None) -> dict:
    return {"acks": True, "ack_every": 10, "ack_delay": 0.05, **(extra or {})}


@pytest.fixture
async def pair(tmp_path: Path, daemons, sides):
    air, ground = sides
    a = await daemons(write_config(tmp_path, air, ground, peer_overrides=acks_on()))
    g = await daemons(write_config(tmp_path, ground, air, peer_overrides=acks_on()))
    await wait_for(lambda: link_of(a).sender() is not None, what="link up")
    return a, g, air, ground


async def test_sync_is_the_first_element_on_a_new_connection(tmp_path, daemons, sides):
    air, ground = sides
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def fake_ground(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.put_nowait(await reader.read(4096))
        writer.close()

    srv = await asyncio.start_server(fake_ground, ground.ip, ground.x2x_port)
    try:
        await daemons(write_config(tmp_path, air, ground, peer_overrides=acks_on()))
        data = await asyncio.wait_for(received.get(), 5)
        assert data == b"<sync xmlns='urn:zerolink:x2x:acks:0' h='0' next='0' max='262144'/>"
    finally:
        srv.close()
        await srv.wait_closed()


async def test_exactly_once_in_order_across_connection_cuts(pair):
    a, _g, air, ground = pair
    src = await RawComponent(air.bot, air.ip, air.comp_port).start()
    dst = await RawComponent(ground.bot, ground.ip, ground.comp_port).start()
    n = 3000
    try:
        sender = asyncio.create_task(src.send_many(f"ops@{ground.bot}", n))
        for cut in range(6):
            await wait_for(
                lambda c=cut: len(dst.bodies) > (c + 1) * n // 8, timeout=20, what="progress"
            )
            await wait_for(lambda: link_of(a).sender() is not None, what="link up again")
            conn = link_of(a).sender()
            conn.transport.abort()  # a link failure: no close exchange
            await wait_for(lambda c=conn: link_of(a).sender() is not c, what="cut noticed")
        await sender
        await wait_for(lambda: len(dst.bodies) >= n, timeout=30, what="all delivered")
        await wait_for(lambda: len(link_of(a).queue) == 0, what="all acknowledged")
        await marker(src, dst)  # nothing is left to resend; any late duplicate is in by now
        assert dst.bodies == [str(i) for i in range(n)]  # once each, in order
        assert src.errors == 0
        assert link_of(a).connections_made >= 7
    finally:
        await src.close()
        await dst.close()


async def test_queued_stanzas_survive_a_restart_of_the_sender(tmp_path, daemons, sides):
    from zerolink.app import Server
    from zerolink.config import load_config

    air, ground = sides
    # air only accepts, ground only dials: ground's component attaches before its link is up
    a_cfg = write_config(tmp_path, air, ground, peer_overrides=acks_on({"direction": "inbound"}))
    a = Server(load_config(a_cfg))
    await a.start()
    src = await RawComponent(air.bot, air.ip, air.comp_port).start()
    await src.send_many(f"ops@{ground.bot}", 200)
    await wait_for(lambda: len(link_of(a).queue) == 200, what="queued while ground is down")
    await src.close()
    await a.stop()
    a = await daemons(a_cfg)  # restarted: the log comes back from disk
    assert len(link_of(a).queue) == 200
    g = Server(
        load_config(
            write_config(tmp_path, ground, air, peer_overrides=acks_on({"direction": "outbound"}))
        )
    )
    await g.start(start_links=False)
    dst = await RawComponent(ground.bot, ground.ip, ground.comp_port).start()
    g.start_links()
    try:
        await wait_for(lambda: len(dst.bodies) >= 200, timeout=10, what="delivered")
        await wait_for(lambda: len(link_of(a).queue) == 0, what="all acknowledged")
        src = await RawComponent(air.bot, air.ip, air.comp_port).start()
        await marker(src, dst)
        assert dst.bodies == [str(i) for i in range(200)]
    finally:
        await src.close()
        await dst.close()
        await g.stop()


async def test_acks_on_one_side_only_is_a_clear_stream_error(tmp_path, daemons, sides, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    await daemons(write_config(tmp_path, air, ground, peer_overrides=acks_on()))
    await daemons(write_config(tmp_path, ground, air))
    await wait_for(
        lambda: "set acks = true on both sides" in caplog.text,
        timeout=5,
        what="the mismatch named in the log",
    )


async def test_a_rejected_stanza_is_counted_and_does_not_loop_the_link(tmp_path, daemons, sides):
    air, ground = sides
    await daemons(
        write_config(tmp_path, air, ground, peer_overrides=acks_on({"direction": "inbound"}))
    )
    dst = await RawComponent(air.bot, air.ip, air.comp_port).start()
    try:
        reader, writer = await asyncio.open_connection(
            air.ip, air.x2x_port, local_addr=(GROUND_IP, 0)
        )
        writer.write(
            b"<sync xmlns='urn:zerolink:x2x:acks:0' h='0' next='0'/>"
            b"<message from='spy@evil.example' to='bot.air.example'><body>bad</body></message>"
            b"<message from='ops@bot.ground.example' to='bot.air.example'><body>ok</body>"
            b"</message><r xmlns='urn:xmpp:sm:3'/>"
        )
        await writer.drain()
        data = b""
        while b"<a xmlns='urn:xmpp:sm:3' h='2'/>" not in data:
            chunk = await asyncio.wait_for(reader.read(4096), 5)
            assert chunk, f"connection closed; received {data!r}"
            data += chunk
        # both counted (h=2), the bad one dropped, the connection still up
        assert b"stream:error" not in data
        await wait_for(lambda: dst.bodies == ["ok"], what="the good one delivered")
        writer.close()
    finally:
        await dst.close()


async def test_ack_overhead_per_stanza(pair):
    """Acks cost a few bytes per burst, not per stanza (figure printed for the docs)."""
    a, g, air, ground = pair
    src = await RawComponent(air.bot, air.ip, air.comp_port).start()
    dst = await RawComponent(ground.bot, ground.ip, ground.comp_port).start()
    try:
        conn_g = next(c for c in (link_of(g).outbound, *link_of(g).inbound) if c is not None)
        before = conn_g.session.counters.bytes_out
        await src.send_many(f"ops@{ground.bot}", 1000)
        await wait_for(lambda: len(dst.bodies) >= 1000, what="delivered")
        await wait_for(lambda: len(link_of(a).queue) == 0, what="acknowledged")
        ack_bytes = conn_g.session.counters.bytes_out - before
        per_stanza = ack_bytes / 1000
        print(
            f"\nack bytes from the receiver: {ack_bytes} for 1000 stanzas "
            f"({per_stanza:.2f} bytes/stanza with ack_every=10)"
        )
        assert per_stanza < 4
    finally:
        await src.close()
        await dst.close()
