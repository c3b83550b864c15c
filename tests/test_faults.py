"""Reliable delivery (acks = true) under faults made from outside the daemons.

Air and ground run as separate processes (`python -m zerolink run -c FILE`, configs generated
per test), so that every fault is external: connections cut by the kernel (`ss -K`), daemons
killed with SIGKILL, a peer that vanishes from the network without FIN or RST (a veth pair
between two network namespaces made for the test). The components are the fast raw XEP-0114
clients of tests/test_reliable.py.

Where a test must decide when the link comes up (after a restart, so that the receiving
component is attached first), air reaches ground through a `Gate`: a TCP relay in the test
process, standing for the radio link, that accepts connections only while it is up.

The tests after "Regressions" reproduce, deterministically, product bugs these faults found;
each fails on the code before its fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import shutil
import signal
import socket
import time
from collections.abc import Callable

import pytest

from conftest import (
    AIR_IP,
    GROUND_IP,
    Side,
    free_port,
    require_commands,
    require_root,
    side_toml,
)
from daemons import FAST, Daemon, until
from netns import NetnsError, VethPair
from test_reliable import RawComponent, marker

READ_SIZE = 256 * 1024  # what asyncio's transport asks recv() for (selector_events.max_size)


# -- the link between them, as the test wants it --------------------------------------------


class Gate:
    """A TCP relay for air's dials to ground; while down it refuses connections.

    It dials ground from air's address, so ground's address identity check still applies.
    When either end of a relayed connection closes or fails, both are aborted: to the daemons
    that is a link failure like any other.
    """

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], source: str) -> None:
        self.listen, self.target, self.source = listen, target, source
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, *self.listen, reuse_address=True)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.sleep(0)

    async def _relay(self, r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
        try:
            r2, w2 = await asyncio.open_connection(*self.target, local_addr=(self.source, 0))
        except OSError:
            w1.transport.abort()
            return
        self._writers |= {w1, w2}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            for x in (w1, w2):
                x.transport.abort()
                self._writers.discard(x)

        for args in ((r1, w2), (r2, w1)):
            task = asyncio.create_task(pipe(*args))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


# -- components ------------------------------------------------------------------------------


def message(frm: str, to: str, body: str) -> str:
    return f"<message from='{frm}' to='{to}'><body>{body}</body></message>"


async def send_paced(
    comp: RawComponent,
    to: str,
    n: int,
    *,
    batch: int = 25,
    interval: float = 0.01,
    pad: str = "",
) -> None:
    """`n` numbered messages, `batch` per write, one write every `interval` seconds."""
    frm = f"pilot@{comp.domain}"
    for i in range(0, n, batch):
        chunk = "".join(message(frm, to, f"{j}{pad}") for j in range(i, min(i + batch, n)))
        comp.writer.write(chunk.encode())
        await comp.writer.drain()
        await asyncio.sleep(interval)


def numbers(bodies: list[str]) -> list[int]:
    return [int(b.split(" ", 1)[0]) for b in bodies]


def assert_exactly_once_in_order(got: list[int], n: int) -> None:
    missing = sorted(set(range(n)) - set(got))
    assert not missing, f"{len(missing)} lost, first {missing[:10]}"
    dups = len(got) - n
    assert dups == 0, f"{dups} duplicated"
    assert got == list(range(n)), "out of order"


def wait_log(daemon: Daemon, text: str, count: int = 1) -> Callable[[], bool]:
    return lambda: daemon.log().count(text) >= count


def link_up(daemon: Daemon, peer: str) -> bool:
    """The daemon's log has more "up" than "down" lines for its link to `peer`: at least one
    connection is attached now, and cutting it will be logged as "down"."""
    log = daemon.log()
    return log.count(f"link {peer}: up") > log.count(f"link {peer}: down")


async def all_acknowledged_then_marker(
    a: Daemon, g: Daemon, src: RawComponent, dst: RawComponent, timeout: float = 10
) -> None:
    """Until neither side has anything left to (re)send, then a marker from src to dst.

    Once both durable logs are empty nothing can be retransmitted; the marker then follows
    everything still on its way, so what dst holds after it is final (no fixed sleep).
    """
    await until(lambda: a.queued() == 0 and g.queued() == 0, timeout, "all acknowledged", a, g)
    await marker(src, dst, timeout)


# -- 1. connections cut by the kernel --------------------------------------------------------


def require_ss_kill() -> None:
    """Called first by the tests that cut connections with `ss -K`."""
    require_commands("ss", package="iproute2", purpose="cutting TCP connections (`ss -K`)")
    require_root("cutting TCP connections from outside the daemons (`ss -K`)")


async def ss_kill(src: str, dst: str, sport: int, dport: int) -> int:
    """`ss -K` the TCP sockets src:sport -> dst:* and src:* -> dst:dport; how many it killed."""
    proc = await asyncio.create_subprocess_exec(
        *("ss", "-K", "-H", "-t", "src", src, "dst", dst),
        *("(", "sport", "=", f":{sport}", "or", "dport", "=", f":{dport}", ")"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0 or err.strip():
        pytest.fail(
            f"ss -K failed ({proc.returncode}): {err.decode().strip()} — the kernel needs "
            "CONFIG_INET_DIAG_DESTROY and the test needs CAP_NET_ADMIN"
        )
    return len([line for line in out.decode().splitlines() if line.strip()])


ONE_DIALER = ({"direction": "outbound"}, {"direction": "inbound"})
BOTH_DIAL = ({}, {})  # direction = "both": simultaneous opens happen after some cuts


@pytest.mark.parametrize(
    "directions",
    [
        pytest.param(ONE_DIALER, id="air-dials"),
        pytest.param(BOTH_DIAL, id="both-dial"),
    ],
)
async def test_twenty_cuts_during_a_5000_message_transfer(tmp_path, procs, sides, directions):
    """Both directions at once; each cut kills one end (random) of whatever link is up."""
    require_ss_kill()
    air, ground = sides
    a = procs(air, ground, tmp_path, **directions[0]).start()
    g = procs(ground, air, tmp_path, **directions[1]).start()
    await asyncio.gather(a.serving(), g.serving())
    src = await RawComponent(air.bot, air.ip, air.comp_port).start()
    dst = await RawComponent(ground.bot, ground.ip, ground.comp_port).start()
    n, n_back, cuts = 5000, 1000, 20
    rng = random.Random()
    try:
        await until(wait_log(a, "link ground: up"), 10, "link up", a, g)
        t0 = time.monotonic()
        sending = asyncio.gather(
            send_paced(src, f"ops@{ground.bot}", n, batch=25, interval=0.012),
            send_paced(dst, f"ops@{air.bot}", n_back, batch=5, interval=0.012),
        )
        # 20 random moments, as points in the receiver's progress
        moments = sorted(rng.sample(range(50, n - 250), cuts))
        killed: list[tuple[int, str, int]] = []
        for at in moments:
            await until(lambda at=at: len(dst.bodies) >= at, 20, f"{at} delivered", a, g)
            side = rng.choice(["air", "ground"])
            deadline = time.monotonic() + 10
            while True:  # the link may be down at that moment: cut as soon as it is up
                # Up means attached on air's side (its log says so), not merely a TCP
                # connection: a connection cut before it is attached is never "down".
                if not link_up(a, "ground"):
                    assert time.monotonic() < deadline, "the link never came back up to be cut"
                    await asyncio.sleep(0.005)
                    continue
                if side == "air":  # air's end: air dialed ground, or ground dialed air
                    k = await ss_kill(AIR_IP, GROUND_IP, air.x2x_port, ground.x2x_port)
                else:
                    k = await ss_kill(GROUND_IP, AIR_IP, ground.x2x_port, air.x2x_port)
                if k:
                    killed.append((len(dst.bodies), side, k))
                    break
                assert time.monotonic() < deadline, "the link never came back up to be cut"
                await asyncio.sleep(0.005)
        cut_time = time.monotonic() - t0
        await sending
        await until(lambda: len(dst.bodies) >= n and len(src.bodies) >= n_back, 20, "all", a, g)
        await all_acknowledged_then_marker(a, g, src, dst)
        await marker(dst, src)  # and the other direction's late duplicates
        print(
            f"\n{len(killed)} cuts over {cut_time:.2f}s, at receiver progress "
            f"{[k[0] for k in killed]}; air's link went down "
            f"{a.log().count('link ground: down')} times, "
            f"{time.monotonic() - t0:.2f}s in all"
        )
        assert len(killed) == cuts
        assert killed[-1][0] < n, "the last cut came after the transfer"
        assert_exactly_once_in_order(numbers(dst.bodies), n)
        assert_exactly_once_in_order(numbers(src.bodies), n_back)
        assert src.errors == 0 and dst.errors == 0
        assert a.log().count("link ground: down") >= cuts
    finally:
        await src.close()
        await dst.close()


# -- 2. the sender killed with a backlog ------------------------------------------------------


def gated(air: Side, ground: Side) -> tuple[Gate, dict[str, object], dict[str, object]]:
    """A gate on ground's address; air only dials (through it), ground only accepts."""
    gate_port = free_port(GROUND_IP)
    gate = Gate((GROUND_IP, gate_port), (GROUND_IP, ground.x2x_port), AIR_IP)
    air_peer = {"direction": "outbound", "remote": f"{GROUND_IP}:{gate_port}"}
    return gate, air_peer, {"direction": "inbound"}


async def test_sender_killed_with_1000_queued_delivers_them_after_restart(tmp_path, procs, sides):
    air, ground = sides
    gate, air_peer, ground_peer = gated(air, ground)
    a = procs(air, ground, tmp_path, **air_peer).start()
    g = procs(ground, air, tmp_path, **ground_peer).start()
    await asyncio.gather(a.serving(), g.serving())
    src = await RawComponent(air.bot, air.ip, air.comp_port).start()
    dst = await RawComponent(ground.bot, ground.ip, ground.comp_port).start()
    n = 1000
    try:
        await src.send_many(f"ops@{ground.bot}", n)  # the link is down: all queue in air
        await until(lambda: a.queued() == n, 10, f"{n} queued on air's disk", a)
        a.kill9()
        await src.close()
        assert "link ground: up" not in a.log()
        a.start()
        await a.serving()
        await until(wait_log(a, f"restored {n} unacknowledged stanza(s)"), 5, "restored", a)
        src = await RawComponent(air.bot, air.ip, air.comp_port).start()
        await gate.up()
        await until(lambda: len(dst.bodies) >= n, 10, "delivered", a, g)
        await all_acknowledged_then_marker(a, g, src, dst)
        assert_exactly_once_in_order(numbers(dst.bodies), n)
        assert src.errors == 0
    finally:
        await gate.down()
        await src.close()
        await dst.close()


# -- 3. the receiver killed mid-transfer ------------------------------------------------------


def duplicate_bound(ack_every: int, stanza_bytes: int) -> int:
    """docs/protocol.md, "Guarantees": ack_every - 1 + the stanzas one read can complete."""
    per_read = READ_SIZE // stanza_bytes + 1
    return ack_every - 1 + per_read


async def test_receiver_killed_mid_transfer_loses_nothing(tmp_path, procs, sides):
    """Two kills of ground at random points; duplicates stay within the documented bound."""
    air, ground = sides
    gate, air_peer, ground_peer = gated(air, ground)
    a = procs(air, ground, tmp_path, **air_peer).start()
    g = procs(ground, air, tmp_path, **ground_peer).start()
    await asyncio.gather(a.serving(), g.serving())
    await gate.up()
    n, kills = 5000, 2
    pad = " " + "x" * 1000  # ~1 KiB stanzas: one 256 KiB read completes at most ~250
    wire = len(message(f"pilot@{air.bot}", f"ops@{ground.bot}", f"0{pad}"))  # the smallest
    bound = duplicate_bound(FAST["ack_every"], wire)
    src = await RawComponent(air.bot, air.ip, air.comp_port).start()
    dst = await RawComponent(ground.bot, ground.ip, ground.comp_port).start()
    segments: list[list[int]] = []  # what each of ground's runs delivered
    rng = random.Random()
    try:
        sending = asyncio.create_task(
            send_paced(src, f"ops@{ground.bot}", n, batch=20, interval=0.005, pad=pad)
        )
        for at in sorted(rng.sample(range(500, n - 1000), kills)):
            done = sum(map(len, segments))
            await until(
                lambda at=at, done=done, d=dst: done + len(d.bodies) >= at, 20, f"{at}", a, g
            )
            g.kill9()
            await gate.down()  # the link stays down until ground's component is back
            with contextlib.suppress(OSError, TimeoutError):  # read what ground wrote
                await asyncio.wait_for(dst._task, 5)
            await dst.close()
            segments.append(numbers(dst.bodies))
            g.start()
            await g.serving()
            dst = await RawComponent(ground.bot, ground.ip, ground.comp_port).start()
            await gate.up()
        await sending
        await until(lambda: numbers(dst.bodies[-1:]) == [n - 1], 20, "the last one", a, g)
        await all_acknowledged_then_marker(a, g, src, dst)
        segments.append(numbers(dst.bodies))
        got = [x for seg in segments for x in seg]
        missing = sorted(set(range(n)) - set(got))
        assert not missing, f"{len(missing)} lost, first {missing[:10]}"
        # Each run of ground starts where its last saved count was: a stretch of what the
        # previous run had already delivered (the duplicates), then on in order.
        dups, high = [], segments[0][-1] if segments[0] else -1
        assert segments[0] == list(range(high + 1))
        for seg in segments[1:]:
            first = seg[0]
            assert first <= high + 1 and seg == list(range(first, first + len(seg))), seg[:20]
            dups.append(high + 1 - first)
            high = seg[-1]
        assert high == n - 1
        print(f"\nduplicates after each receiver kill: {dups} (bound {bound}, {wire}-byte stanzas)")
        assert all(d <= bound for d in dups), (dups, bound)
        assert src.errors == 0
    finally:
        await gate.down()
        await src.close()
        await dst.close()


# -- 4. a peer that vanishes without FIN or RST ----------------------------------------------


class NsComponent(RawComponent):
    """RawComponent whose socket lives in a network namespace (see tests/netns.py)."""

    def __init__(self, domain: str, ip: str, port: int, sock: socket.socket) -> None:
        super().__init__(domain, ip, port)
        self.sock = sock

    async def start(self) -> NsComponent:
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(self.sock, (self.ip, self.port)), 5)
        self.reader, self.writer = await asyncio.open_connection(sock=self.sock)
        self.writer.write(
            f"<stream:stream xmlns='jabber:component:accept' "
            f"xmlns:stream='http://etherx.jabber.org/streams' to='{self.domain}'>".encode()
        )
        head = b""
        while b"<handshake/>" not in head:
            if (
                m := re.search(rb"<stream:stream[^>]*\bid='([^']+)'[^>]*>", head)
            ) and b"<handshake>" not in head:
                digest = hashlib.sha1((m.group(1).decode() + "bot-secret").encode()).hexdigest()
                self.writer.write(f"<handshake>{digest}</handshake>".encode())
                head += b"<handshake>"  # sent: do not send it again
            data = await asyncio.wait_for(self.reader.read(4096), 5)
            assert data, f"component {self.domain}: closed during the handshake: {head!r}"
            head += data
        self._task = asyncio.create_task(self._read())
        return self


async def test_a_vanished_peer_is_detected_within_ack_timeout(tmp_path, procs):
    """Air in namespace a, ground in b, a veth between; ground's end goes down mid-transfer."""
    require_commands("ip", package="iproute2", purpose="network namespaces (`ip netns`)")
    require_root("two network namespaces joined by a veth pair (`ip netns`, `ip link`)")
    ack_timeout = 2.0
    async with contextlib.AsyncExitStack() as stack:
        try:
            pair = stack.enter_context(VethPair.create())
        except NetnsError as exc:
            pytest.fail(f"cannot build the two network namespaces this test needs: {exc}")
        air = Side("air", "air.example", pair.addr["a"], 5269, 5347)
        ground = Side("ground", "ground.example", pair.addr["b"], 5269, 5347)
        peer = {
            "ack_timeout": ack_timeout,
            "tcp_user_timeout": 30,  # not the kernel: the acknowledgements must notice it
            "connect_timeout": 0.5,
        }
        daemons = []
        for side, other, ns in ((air, ground, "a"), (ground, air, "b")):
            d = procs(side, other, tmp_path, tuple(pair.exec_prefix(ns)), **peer)
            # Components reach their daemon on the namespace's loopback, which stays up.
            cfg = d.config.read_text()
            d.config.write_text(cfg.replace(f'"{side.ip}:5347"', '"127.0.0.1:5347"'))
            stack.push_async_callback(d.stop)  # before the namespaces go
            daemons.append(d.start())
        a, g = daemons
        await asyncio.gather(a.serving(), g.serving())
        src = await NsComponent(air.bot, "127.0.0.1", 5347, pair.socket("a")).start()
        stack.push_async_callback(src.close)
        dst = await NsComponent(ground.bot, "127.0.0.1", 5347, pair.socket("b")).start()
        stack.push_async_callback(dst.close)
        n = 2000
        await until(wait_log(a, "link ground: up"), 10, "link up", a, g)
        sending = asyncio.create_task(
            send_paced(src, f"ops@{ground.bot}", n, batch=20, interval=0.01)
        )
        await until(lambda: len(dst.bodies) >= n // 4, 10, "a quarter delivered", a, g)
        pair.link("b", up=False)  # ground vanishes: no FIN, no RST
        t_cut = time.monotonic()
        at_cut = len(dst.bodies)
        dead = "no acknowledgement from"
        await until(wait_log(a, dead), ack_timeout + 3, "the dead connection noticed", a, g)
        detected = time.monotonic() - t_cut
        line = next(x for x in a.log().splitlines() if dead in x)
        assert "the connection is dead" in line
        assert at_cut < n, "the transfer ended before the cut"
        pair.link("b", up=True)
        t_up = time.monotonic()
        await sending
        await until(lambda: len(dst.bodies) >= n, 15, "all delivered", a, g)
        recovered = time.monotonic() - t_up
        await all_acknowledged_then_marker(a, g, src, dst)
        print(
            f"\nground vanished at {at_cut}/{n}; air noticed after {detected:.2f}s "
            f"(ack_timeout {ack_timeout}s); all delivered {recovered:.2f}s after the "
            f"link came back\n{line}"
        )
        assert detected <= ack_timeout + 0.5
        assert_exactly_once_in_order(numbers(dst.bodies), n)
        assert src.errors == 0


# -- 5. a stanza the receiver rejects ---------------------------------------------------------


class Tap(RawComponent):
    """RawComponent that also keeps every byte it read."""

    raw = b""

    async def _read(self) -> None:
        read = self.reader.read

        async def tapped(n: int) -> bytes:
            data = await read(n)
            self.raw += data
            return data

        self.reader.read = tapped  # type: ignore[method-assign]
        await super()._read()


async def test_a_rejected_stanza_does_not_loop_the_link(tmp_path, procs, sides):
    """Air routes *.ground.example to ground; ground serves no nowhere.ground.example."""
    air, ground = sides
    a = procs(air, ground, tmp_path).start()
    g = procs(ground, air, tmp_path).start()
    await asyncio.gather(a.serving(), g.serving())
    src = await Tap(air.bot, air.ip, air.comp_port).start()
    dst = await RawComponent(ground.bot, ground.ip, ground.comp_port).start()
    try:
        await until(wait_log(a, "link ground: up"), 10, "link up", a, g)
        frm = f"pilot@{air.bot}"
        src.writer.write(
            (
                "".join(message(frm, f"ops@{ground.bot}", str(i)) for i in range(50))
                + message(frm, "ops@nowhere.ground.example", "poison")
                + "".join(message(frm, f"ops@{ground.bot}", str(i)) for i in range(50, 100))
            ).encode()
        )
        await until(lambda: len(dst.bodies) >= 100 and src.errors >= 1, 5, "delivered", a, g)
        # The poison acknowledged too, then a marker over the same link: had the poison
        # taken the link down, the logs say so by now (no fixed sleep).
        await all_acknowledged_then_marker(a, g, src, dst)
        assert numbers(dst.bodies) == list(range(100))
        assert src.errors == 1
        error = re.search(rb"<message[^>]*type='error'.*?</message>", src.raw, re.S)
        assert error and b"remote-server-not-found" in error.group(0), src.raw[-500:]
        for d in (a, g):  # up once (twice after a simultaneous open), never down
            assert " down (" not in d.log() and "stream error" not in d.log(), d.log()
    finally:
        await src.close()
        await dst.close()


# -- Regressions: bugs found by the faults above, reproduced deterministically -------------


async def test_a_stalled_component_does_not_disorder_the_link(tmp_path, procs, sides):
    """Ground's component stops reading for a while: no stanza lost, duplicated or reordered.

    While it stalls, ground stops reading the X2X connection (backpressure). Air's end of the
    connection is cut twice meanwhile (as a dying link would, or air's ack_timeout when
    ground stops reading altogether); ground, not reading, does not notice. When the component
    reads again, ground handles what the dead connections still held, interleaved with the
    newest connection's stanzas: each must be judged by its own number (it used to be counted
    as the next one).
    """
    require_ss_kill()
    air, ground = sides
    a = procs(air, ground, tmp_path, ack_timeout=1).start()
    g = procs(ground, air, tmp_path, ack_timeout=1).start()
    await asyncio.gather(a.serving(), g.serving())
    n, pad = 12000, " " + "x" * 400
    src = await RawComponent(air.bot, air.ip, air.comp_port).start()
    dst = await RawComponent(ground.bot, ground.ip, ground.comp_port).start()
    try:
        await until(wait_log(a, "link ground: up"), 10, "link up", a, g)
        dst.writer.transport.pause_reading()  # the component stalls
        sending = asyncio.create_task(
            send_paced(src, f"ops@{ground.bot}", n, batch=200, interval=0.005, pad=pad)
        )
        for cut in range(2):
            await until(wait_log(a, "link ground: up", cut + 1), 10, "link up", a, g)
            await asyncio.sleep(0.3)  # stanzas pile up in ground's unread buffers
            await ss_kill(AIR_IP, GROUND_IP, air.x2x_port, ground.x2x_port)
        await until(wait_log(a, "link ground: up", 3), 10, "third connection", a, g)
        dst.writer.transport.resume_reading()
        await sending
        # Everything acknowledged: whatever ground will deliver, it has once the marker is in.
        await all_acknowledged_then_marker(a, g, src, dst, timeout=15)
        assert_exactly_once_in_order(numbers(dst.bodies), n)
    finally:
        await src.close()
        await dst.close()


async def test_receiver_killed_with_stanzas_in_its_kernel_queue_loses_nothing(
    tmp_path, procs, sides
):
    """Ground dies while its socket to a slow component still holds stanzas, and while that
    component has written something ground has not read yet (a gateway's upstream server
    writes all the time; SIGSTOP just before SIGKILL makes that certain here)."""
    air, ground = sides
    gate, air_peer, ground_peer = gated(air, ground)
    a = procs(air, ground, tmp_path, **air_peer).start()
    g = procs(ground, air, tmp_path, **ground_peer).start()
    await asyncio.gather(a.serving(), g.serving())
    await gate.up()
    n = 5000
    src = await RawComponent(air.bot, air.ip, air.comp_port).start()
    dst = await RawComponent(ground.bot, ground.ip, ground.comp_port).start()
    segments: list[list[int]] = []
    try:
        sending = asyncio.create_task(send_paced(src, f"ops@{ground.bot}", n, batch=500))
        await until(lambda: len(dst.bodies) >= 500, 10, "500 delivered", a, g)
        dst.writer.transport.pause_reading()  # the component stalls: ground's socket fills up
        await sending
        seen: list[int] = []  # until ground's saved count stops moving: everything is full

        def stuck() -> bool:
            seen.append(g.received())
            return len(seen) > 60 and seen[-1] == seen[-60]

        await until(stuck, 10, "ground stuck behind its component", a, g)
        g.proc.send_signal(signal.SIGSTOP)
        dst.writer.write(message(f"x@{ground.bot}", f"ops@{air.bot}", "unread").encode())
        await dst.writer.drain()
        await asyncio.sleep(0.05)
        g.kill9()
        await gate.down()
        dst.writer.transport.resume_reading()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(dst._task, 5)
        await dst.close()
        segments.append(numbers(dst.bodies))
        g.start()
        await g.serving()
        dst = await RawComponent(ground.bot, ground.ip, ground.comp_port).start()
        await gate.up()
        await all_acknowledged_then_marker(a, g, src, dst)
        segments.append(numbers(dst.bodies))
        got = {x for seg in segments for x in seg}
        missing = sorted(set(range(n)) - got)
        assert not missing, f"{len(missing)} lost: {missing[0]}..{missing[-1]}"
    finally:
        await gate.down()
        await src.close()
        await dst.close()


async def test_a_late_sync_on_a_second_connection_drops_nothing(tmp_path, daemons, sides):
    """Simultaneous open, with ground played by the test: each side sends on the connection it
    opened (XEP-0361 §4.3), and both connections start with both sides' <sync/>.

    Ground's <sync/> on air's connection says next='0' (nothing of ground's was acknowledged
    when it was written) and arrives after ground's first stanzas on its own connection: TCP
    connections are independent, and on a satellite link a lost segment waits a whole
    retransmission timeout.
    """
    air, ground = sides
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def ground_listener(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.put_nowait(w)

    srv = await asyncio.start_server(ground_listener, ground.ip, ground.x2x_port)
    path = tmp_path / "air.toml"
    path.write_text(side_toml(air, ground, peer_overrides=FAST))
    await daemons(path)
    dst = await RawComponent(air.bot, air.ip, air.comp_port).start()
    c1 = None
    try:
        c2 = await asyncio.wait_for(accepted.get(), 5)  # air dialed: its connection
        _, c1 = await asyncio.open_connection(air.ip, air.x2x_port, local_addr=(GROUND_IP, 0))
        frm, to = f"ops@{ground.bot}", f"pilot@{air.bot}"
        sync = b"<sync xmlns='urn:zerolink:x2x:acks:0' h='0' next='0'/>"
        c1.write(sync + "".join(message(frm, to, str(i)) for i in range(10)).encode())
        await wait_for_bodies(dst, 10)
        c2.write(sync)  # ground's first element on air's connection, delayed on the way
        await c2.drain()
        await asyncio.sleep(0.2)
        c1.write("".join(message(frm, to, str(i)) for i in range(10, 20)).encode())
        await c1.drain()
        with contextlib.suppress(AssertionError):
            await wait_for_bodies(dst, 20)
        assert numbers(dst.bodies) == list(range(20))
    finally:
        await dst.close()
        if c1 is not None:
            c1.close()
        srv.close()


async def wait_for_bodies(comp: RawComponent, n: int, timeout: float = 2) -> None:
    deadline = time.monotonic() + timeout
    while len(comp.bodies) < n:
        assert time.monotonic() < deadline, f"{len(comp.bodies)} of {n} arrived"
        await asyncio.sleep(0.01)


async def test_a_stanza_too_large_for_the_receiver_does_not_loop_the_link(tmp_path, procs, sides):
    """Ground has a smaller server.max_stanza_size than air (a configuration slip)."""
    air, ground = sides
    a = procs(air, ground, tmp_path)
    g = procs(ground, air, tmp_path)
    text = g.config.read_text()
    g.config.write_text(text.replace("[server]\n", "[server]\nmax_stanza_size = 2048\n", 1))
    a.start()
    g.start()
    await asyncio.gather(a.serving(), g.serving())
    src = await RawComponent(air.bot, air.ip, air.comp_port).start()
    dst = await RawComponent(ground.bot, ground.ip, ground.comp_port).start()
    try:
        await until(wait_log(a, "link ground: up"), 10, "link up", a, g)
        frm, to = f"pilot@{air.bot}", f"ops@{ground.bot}"
        src.writer.write(
            (
                message(frm, to, "0")
                + message(frm, to, "big " + "x" * 4000)
                + "".join(message(frm, to, str(i)) for i in range(1, 11))
            ).encode()
        )
        with contextlib.suppress(AssertionError):
            await until(lambda: len(dst.bodies) >= 11 and src.errors, 3, "the rest", a, g)
        ups = a.log().count("link ground: up")
        assert ups <= 2, f"the link came up {ups} times in a few seconds"
        assert numbers(dst.bodies) == list(range(11))
        assert src.errors == 1  # the big one bounced to its sender
    finally:
        await src.close()
        await dst.close()


async def test_a_sender_that_lost_its_state_loses_no_stanza(tmp_path, procs, sides):
    air, ground = sides
    gate, air_peer, ground_peer = gated(air, ground)
    a = procs(air, ground, tmp_path, **air_peer).start()
    g = procs(ground, air, tmp_path, **ground_peer).start()
    await asyncio.gather(a.serving(), g.serving())
    await gate.up()
    src = await RawComponent(air.bot, air.ip, air.comp_port).start()
    dst = await RawComponent(ground.bot, ground.ip, ground.comp_port).start()
    try:
        await src.send_many(f"ops@{ground.bot}", 100)
        await until(lambda: len(dst.bodies) >= 100 and a.queued() == 0, 5, "100 acked", a, g)
        await src.close()
        await a.stop()
        await gate.down()
        shutil.rmtree(a.config.parent / f"{a.config.stem}-data")  # air reinstalled
        a.start()
        await a.serving()
        src = await RawComponent(air.bot, air.ip, air.comp_port).start()
        await src.send_many(f"ops@{ground.bot}", 50, start=100)
        await until(lambda: a.queued() == 50, 5, "50 queued on the new air", a)
        await gate.up()
        with contextlib.suppress(AssertionError):
            await until(lambda: len(dst.bodies) >= 150, 3, "the 50", a, g)
        assert numbers(dst.bodies) == list(range(150))
    finally:
        await gate.down()
        await src.close()
        await dst.close()
