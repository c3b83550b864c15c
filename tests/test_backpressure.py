"""Backpressure over real loopback sockets: a stalled peer or a slow component makes the sending
component's TCP wait; nothing is bounced, nothing is buffered without limit, all arrives in order.

The components here are raw XEP-0114 clients on non-blocking sockets (like bench/throughput.py),
so that a test decides exactly when a socket is read and a writer really waits on TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Side, wait_for, write_config
from zerolink.net.flow import Inflow, Valve
from zerolink.xml.element import COMPONENT_NS, Element
from zerolink.xml.parser import X2X_HEADER, StanzaReceived, StreamOpened, StreamParser

pytestmark = pytest.mark.asyncio

STREAMS_NS = "http://etherx.jabber.org/streams"
SECRET = "bot-secret"  # conftest's component secret
PAD = "x" * 100  # ~200-byte stanzas, like the benchmark's
KERNEL_BUFFER = 32 * 1024


def link_of(server):
    return next(iter(server.links.values()))


def connections(server) -> list:
    link = link_of(server)
    return [c for c in (link.outbound, *link.inbound) if c is not None]


def messages(air: Side, ground: Side, n: int, batch: int = 500) -> list[bytes]:
    """n chat messages from air's bot to ground's bot, `batch` per write, body = sequence."""
    out, cur = [], []
    for i in range(n):
        cur.append(
            f"<message from='load@{air.bot}/t' to='sink@{ground.bot}/t' type='chat' "
            f"id='m{i}'><body>{i}</body><thread>{PAD}</thread></message>"
        )
        if len(cur) == batch:
            out.append("".join(cur).encode())
            cur = []
    if cur:
        out.append("".join(cur).encode())
    return out


class RawComponent:
    """A minimal XEP-0114 client on a non-blocking socket; reads only when told to."""

    def __init__(self, ip: str, port: int, domain: str, *, rcvbuf: int | None = None) -> None:
        self.addr = (ip, port)
        self.domain = domain
        self.loop = asyncio.get_running_loop()
        self.sock = socket.socket()
        if rcvbuf is not None:  # small: the kernel holds little for a component that stalls
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setblocking(False)
        self.parser = StreamParser(content_ns=COMPONENT_NS)
        self.stanzas: list[Element] = []

    async def connect(self) -> None:
        await self.loop.sock_connect(self.sock, self.addr)
        await self.send(
            f"<stream:stream xmlns='{COMPONENT_NS}' xmlns:stream='{STREAMS_NS}' "
            f"to='{self.domain}'>".encode()
        )
        stream_id = None
        while stream_id is None:
            for ev in await self.read():
                if isinstance(ev, StreamOpened):
                    stream_id = ev.attrs["id"]
        digest = hashlib.sha1((stream_id + SECRET).encode()).hexdigest()
        await self.send(f"<handshake>{digest}</handshake>".encode())
        while not any(el.local == "handshake" for el in self.stanzas):
            await self.read()
        self.stanzas.clear()

    async def send(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    async def read(self, timeout: float = 5.0) -> list:
        data = await asyncio.wait_for(self.loop.sock_recv(self.sock, 1 << 20), timeout)
        assert data, f"component {self.domain}: connection closed"
        events = self.parser.feed(data)
        self.stanzas.extend(ev.element for ev in events if isinstance(ev, StanzaReceived))
        return events

    async def read_forever(self) -> None:
        with contextlib.suppress(OSError, AssertionError, asyncio.CancelledError):
            while True:
                await self.read(timeout=3600)

    def errors(self) -> list[Element]:
        return [el for el in self.stanzas if el.attrib.get("type") == "error"]

    def close(self) -> None:
        self.sock.close()


async def marker(frm: RawComponent, to: RawComponent, timeout: float = 5.0) -> None:
    """A body-less message from `frm` to `to` (which must be reading); until `to` has it.

    Delivery is ordered: whatever was routed to `to` on the same path before the marker (a
    bounce, say) is in `to.stanzas` once the marker is. No fixed sleep.
    """
    stanza_id = f"marker-{id(frm)}-{len(to.stanzas)}"
    await frm.send(f"<message from='m@{frm.domain}' to='m@{to.domain}' id='{stanza_id}'/>".encode())
    await wait_for(
        lambda: any(el.attrib.get("id") == stanza_id for el in to.stanzas),
        timeout=timeout,
        what=f"marker {stanza_id}",
    )


def sequence(stanzas: list[Element]) -> list[int]:
    out = []
    for el in stanzas:
        body = next(iter(el.elements()), None)
        if el.local == "message" and body is not None and body.local == "body":
            out.append(int(body.text))
    return out


def small_kernel_buffers(conn, *, send: bool = False, receive: bool = False) -> None:
    """Pin a daemon socket's kernel buffer small, so that the stall shows within a few MB.

    Loopback autotuning would otherwise let the kernel absorb several MB of what the test
    sends, which says nothing about zerolink's own buffers.
    """
    sock = conn.transport.get_extra_info("socket")
    if send:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_BUFFER)
    if receive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, KERNEL_BUFFER)


async def sample_while(seconds: float, probe: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        probe()
        await asyncio.sleep(0.005)


# -- a stalled peer ----------------------------------------------------------------------------
async def test_stalled_peer_pauses_the_component_instead_of_bouncing(
    tmp_path: Path, daemons, sides
):
    air, ground = sides
    loop = asyncio.get_running_loop()
    n, limit = 30_000, 1000
    # The "peer": a socket on ground's X2X address that accepts air's connection, then does not
    # read for 2 s. A small receive buffer, so that the kernel absorbs little of the stall.
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    lsock.bind((ground.ip, ground.x2x_port))
    lsock.listen()
    lsock.setblocking(False)
    peer: socket.socket | None = None
    comp: RawComponent | None = None
    tasks: list[asyncio.Task] = []
    try:
        a = await daemons(
            write_config(tmp_path, air, ground, peer_overrides={"queue_limit": limit})
        )
        peer, addr = await asyncio.wait_for(loop.sock_accept(lsock), 5)
        assert addr[0] == air.ip
        link = link_of(a)
        await wait_for(lambda: link.sender() is not None, what="link up")
        small_kernel_buffers(link.sender(), send=True)
        comp = RawComponent(air.ip, air.comp_port, air.bot)
        await comp.connect()
        conn = a.components[air.bot].conn
        assert conn is not None

        async def send_all() -> None:
            for batch in messages(air, ground, n):
                await comp.send(batch)

        tasks = [asyncio.create_task(send_all()), asyncio.create_task(comp.read_forever())]
        writer = tasks[0]
        seen = {"queue": 0, "paused": False}

        def probe() -> None:
            seen["queue"] = max(seen["queue"], len(link.queue))
            seen["paused"] |= conn.transport is not None and not conn.transport.is_reading()

        await sample_while(2.0, probe)
        # The component was paused, its writes wait on TCP, the queue stayed below its limit.
        assert seen["paused"]
        assert link.congested()
        assert not writer.done()
        assert seen["queue"] <= link.high < limit
        assert comp.errors() == []
        assert conn.inflow.pauses >= 1

        # The peer reads: everything arrives, once, in order, and the component is read again.
        parser = StreamParser(implied_header=X2X_HEADER)
        got: list[int] = []
        while len(got) < n:
            data = await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), 10)
            assert data, "air closed the X2X connection"
            for ev in parser.feed(data):
                if isinstance(ev, StanzaReceived):
                    got.extend(sequence([ev.element]))
        assert got == list(range(n))
        await asyncio.wait_for(writer, 5)
        assert len(link.queue) == 0 and not link.congested()
        assert conn.transport is not None and conn.transport.is_reading()
        await marker(comp, comp)  # a bounce to comp would come before it
        assert comp.errors() == []
        assert a.router.bounced == 0
    finally:
        for t in tasks:
            t.cancel()
        if comp is not None:
            comp.close()
        if peer is not None:
            peer.close()
        lsock.close()


# -- a slow component --------------------------------------------------------------------------
async def test_slow_component_pauses_the_x2x_reader_feeding_it(tmp_path: Path, daemons, sides):
    air, ground = sides
    n = 30_000
    a = await daemons(write_config(tmp_path, air, ground, peer_overrides={"queue_limit": 1000}))
    g = await daemons(write_config(tmp_path, ground, air))
    await wait_for(
        lambda: link_of(a).sender() is not None and link_of(g).sender() is not None,
        what="link up",
    )
    sender = RawComponent(air.ip, air.comp_port, air.bot)
    sink = RawComponent(ground.ip, ground.comp_port, ground.bot, rcvbuf=8192)
    tasks: list[asyncio.Task] = []
    try:
        await sender.connect()
        await sink.connect()
        sink_conn = g.components[ground.bot].conn
        assert sink_conn is not None
        small_kernel_buffers(sink_conn, send=True)
        for c in connections(g):
            small_kernel_buffers(c, receive=True)
        for c in connections(a):
            small_kernel_buffers(c, send=True)

        async def send_all() -> None:
            for batch in messages(air, ground, n):
                await sender.send(batch)

        tasks = [asyncio.create_task(send_all()), asyncio.create_task(sender.read_forever())]
        writer = tasks[0]
        seen = {"x2x_paused": False, "sink_buffer": 0, "held": 0, "air_queue": 0}

        def probe() -> None:
            for c in connections(g):
                if c.transport is not None and not c.transport.is_reading():
                    seen["x2x_paused"] = True
                seen["held"] = max(seen["held"], len(c.inflow.held or ()))
            if sink_conn.transport is not None:
                size = sink_conn.transport.get_write_buffer_size()
                seen["sink_buffer"] = max(seen["sink_buffer"], size)
            seen["air_queue"] = max(seen["air_queue"], len(link_of(a).queue))

        # The sink does not read for 2 s.
        await sample_while(2.0, probe)
        total = sum(len(b) for b in messages(air, ground, n))
        assert seen["x2x_paused"], "ground kept reading X2X for a component that does not read"
        assert g.components[ground.bot].congested()
        assert not writer.done()  # the pressure went all the way back to the sending component
        # Ground holds a bounded amount for the sink: its transport's high-water mark (64 KiB)
        # plus at most one X2X read (256 KiB), not the megabytes the sender tries to push;
        # stanzas parsed but not yet routed are at most one read's worth too.
        assert seen["sink_buffer"] < 400_000 < total
        assert seen["held"] < 256 * 1024 // 200
        assert seen["air_queue"] <= link_of(a).high
        assert sender.errors() == []

        # The sink reads: everything arrives in order, and ground reads X2X again.
        got: list[int] = []
        while len(got) < n:
            await sink.read(timeout=10)
            got.extend(sequence(sink.stanzas))
            sink.stanzas.clear()
        assert got == list(range(n))
        await asyncio.wait_for(writer, 5)
        await wait_for(
            lambda: all(c.transport.is_reading() for c in connections(g) if c.transport),
            what="ground reads X2X again",
        )
        assert not g.components[ground.bot].congested()
        sink_reader = asyncio.create_task(sink.read_forever())
        tasks.append(sink_reader)
        await marker(sink, sender)  # a bounce from either side would come before it
        assert sender.errors() == []
        assert a.router.bounced == 0 and g.router.bounced == 0
    finally:
        for t in tasks:
            t.cancel()
        sender.close()
        sink.close()


# -- the helpers alone ---------------------------------------------------------------------------
class FakeRoute:
    def __init__(self) -> None:
        self.full = False
        self.valve = Valve()

    def congested(self) -> bool:
        return self.full

    def when_drained(self, cb) -> None:
        self.valve.wait(cb)

    def cancel_drained(self, cb) -> None:
        self.valve.cancel(cb)


class FakeTransport:
    def __init__(self) -> None:
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class FakeDriver:
    """Routes every event to `route`, the way the connections do."""

    def __init__(self, route: FakeRoute) -> None:
        self.transport = FakeTransport()
        self.route = route
        self.inflow = Inflow(self)  # type: ignore[arg-type]
        self.handled: list[int] = []
        self.flushes = 0

    def handle_events(self, events: list) -> None:
        inflow = self.inflow
        if inflow.held is not None:
            inflow.hold(events, 0)
            return
        for i, ev in enumerate(events):
            self.handled.append(ev)
            if inflow.check(self.route):
                inflow.hold(events, i + 1)
                return

    def flush(self) -> None:
        self.flushes += 1


async def test_inflow_holds_events_in_order_and_resumes_once_drained():
    route = FakeRoute()
    d = FakeDriver(route)
    d.handle_events([0, 1])
    assert d.handled == [0, 1] and d.transport.reading
    route.full = True
    d.handle_events([2, 3, 4])  # 2 fills the route: 3, 4 are held, reading stops
    assert d.handled == [0, 1, 2] and not d.transport.reading
    d.handle_events([5])  # late events queue behind the held ones
    assert d.inflow.held == [3, 4, 5] and len(route.valve) == 1
    route.valve.release()  # released while still full: waits again, handles nothing
    await asyncio.sleep(0)
    assert d.handled == [0, 1, 2] and not d.transport.reading and len(route.valve) == 1
    route.full = False
    route.valve.release()
    assert d.handled == [0, 1, 2]  # never from inside release(): on the next loop turn
    await asyncio.sleep(0)
    assert d.handled == [0, 1, 2, 3, 4, 5] and d.transport.reading and d.inflow.held is None
    assert d.flushes == 1 and d.inflow.pauses == 1
    # a connection that goes away stops waiting
    route.full = True
    d.handle_events([6, 7])
    assert len(route.valve) == 1
    d.inflow.close()
    assert len(route.valve) == 0 and d.inflow.held is None


async def test_routes_without_backpressure_never_pause():
    d = FakeDriver(object())  # type: ignore[arg-type]
    d.handle_events([1, 2])
    assert d.handled == [1, 2] and d.transport.reading
    assert not d.inflow.check(None)
