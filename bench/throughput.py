"""Throughput benchmark for a zerolink pair on loopback (a script, not a test).

What it measures, for the path

    bench component --XEP-0114--> air (127.0.0.2) --XEP-0361 X2X--> ground (127.0.0.3)
        --XEP-0114--> bench component

1. end-to-end messages/second for N ``<message>`` stanzas of about --size bytes each: the time
   from the first byte sent by the sending component to the last stanza read by the receiving
   one; every body carries a sequence number and the receiver checks that all N arrived
   exactly once and in order (PASS/FAIL);
2. CPU seconds per 10,000 messages of each daemon: air and ground run as two separate
   processes (``python -m zerolink run -c FILE --log-level warning``) from configs generated
   in a temporary directory (the shape of examples/air.toml and examples/ground.toml, with free
   ports); utime+stime is read from /proc/PID/stat before the first send and after the last
   receipt;
3. in-process micro-benchmarks: the XML parser alone (`StreamParser` primed with the X2X
   implied header, fed a big buffer of the same stanzas in 64 KiB chunks) in MB/s, the X2X
   session's receive path (parser plus XEP-0361 §4.5 validation) and the serializer alone in
   stanzas/s;
4. bytes per stanza on the X2X link, computed as the size of the stanza as zerolink writes it
   (`zerolink.xml.serializer.serialize` in ``jabber:server``, no ``xmlns``), cross-checked
   with the kernel's counters of the X2X socket (``ss -tin``: bytes_sent and data segments of
   the 127.0.0.2 -> 127.0.0.3 connection during the run). Nothing is sent before the first
   stanza (implied stream header), so there is no setup cost to add.

The two component clients are written here with raw asyncio streams (stream header, read the
server's stream id, ``<handshake>`` = SHA-1(id + secret), wait for ``<handshake/>``); the sender
pipelines stanzas in batches (--batch per write, respecting drain()), the receiver counts
``</message>`` and reads the sequence numbers with a regex, carrying the incomplete tail of
each read over to the next one. They cost a small fraction of the daemons' CPU (printed).

Run from the repository root (Linux; needs 127.0.0.2 and 127.0.0.3, which loopback has):

    python bench/throughput.py --messages 20000
    python bench/throughput.py                      # 100,000 messages of ~200 bytes
    python bench/throughput.py --size 1000 --json   # bigger stanzas, JSON after the table
    python bench/throughput.py --pause-ground 2     # ground stalls 2 s: does anything bounce?

Exit status 0 when every message arrived exactly once and in order, 1 otherwise, 2 when the
benchmark could not run (a daemon did not start, the link did not come up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    HANDSHAKE_OK_RE,
    HEADER_ID_RE,
    DaemonProcess,
    component_header,
    free_port,
    handshake,
    print_table,
    proc_cpu,
    wait_listening,
)

from zerolink import __version__
from zerolink.domains import DomainSet
from zerolink.proto.x2x import StanzaIn, X2XSession, X2XSettings
from zerolink.xml.element import SERVER_NS, Element
from zerolink.xml.parser import X2X_HEADER, StanzaReceived, StreamParser
from zerolink.xml.serializer import serialize

AIR_IP = "127.0.0.2"
GROUND_IP = "127.0.0.3"
AIR_DOMAIN = "air.example"
GROUND_DOMAIN = "ground.example"
SECRET = "bench-secret"
SENDER_JID = f"load@bot.{AIR_DOMAIN}/bench"
RECEIVER_JID = f"sink@bot.{GROUND_DOMAIN}/bench"

CHUNK = 64 * 1024
READ_SIZE = 1 << 20

MESSAGE_END = b"</message>"
# Bench bodies start with a 10-digit sequence number and a space; warm-up bodies do not.
SEQ_RE = re.compile(rb"<body>(\d{10}) ")
ERROR_RE = re.compile(rb"<message\b[^>]*\btype=['\"]error['\"]")
FILLER = (
    "Position report: FL350, heading 271, ground speed 482 kt, fuel 61 %, cabin nominal. "
    "Next waypoint in 14 minutes; weather ahead light chop, no deviation requested. "
)


# -- stanzas ---------------------------------------------------------------------------------
def stanza(seq: int, pad: int) -> bytes:
    """One bench message; the body starts with the 10-digit sequence number."""
    text = (FILLER * (pad // len(FILLER) + 1))[:pad]
    return (
        f"<message from='{SENDER_JID}' to='{RECEIVER_JID}' type='chat' id='b{seq:010d}'>"
        f"<body>{seq:010d} {text}</body></message>"
    ).encode()


def padding_for(size: int) -> int:
    return max(0, size - len(stanza(0, 0)))


def warmup_stanza(i: int) -> bytes:
    return (
        f"<message from='{SENDER_JID}' to='{RECEIVER_JID}' type='chat' id='w{i}'>"
        f"<body>warm-up {i}</body></message>"
    ).encode()


# -- daemons ---------------------------------------------------------------------------------
@dataclass
class Side:
    name: str
    domain: str
    ip: str
    x2x_port: int = field(default=0)
    comp_port: int = field(default=0)

    def __post_init__(self) -> None:
        self.x2x_port = free_port(self.ip)
        self.comp_port = free_port(self.ip)


def daemon_toml(me: Side, other: Side, data_dir: Path) -> str:
    """A config shaped like examples/air.toml / examples/ground.toml, on free ports."""
    return f"""# generated by bench/throughput.py (shape of examples/{me.name}.toml)
[server]
name = "{me.name}"
domains = ["{me.domain}"]
data_dir = "{data_dir}"
log_level = "warning"

[component_listener]
listen = "{me.ip}:{me.comp_port}"

[[component]]
domain = "bot.{me.domain}"
secret = "{SECRET}"

[[peer]]
name = "{other.name}"
domains = ["{other.domain}", "*.{other.domain}"]
remote = "{other.ip}:{other.x2x_port}"
listen = "{me.ip}:{me.x2x_port}"
direction = "both"
connect = "always"

[peer.identity]
mode = "address"
addresses = ["{other.ip}"]
"""


TCP_COUNTER_RE = re.compile(r"\b(bytes_sent|bytes_received|data_segs_out|segs_out):(\d+)")


def tcp_counters(src: str, dst: str) -> dict[str, dict[str, int]] | None:
    """Kernel counters of the TCP sockets from src to dst (``ss -tin``), None without ss.

    Component connections stay on one address (127.0.0.2 <-> 127.0.0.2), so src=air,
    dst=ground selects the X2X connection(s) as air's end sees them.
    """
    try:
        out = subprocess.run(
            ["ss", "-tinH", "state", "established", "src", src, "dst", dst],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    socks: dict[str, dict[str, int]] = {}
    key = ""
    for line in out.splitlines():
        if not line[:1].isspace():
            parts = line.split()
            key = " ".join(p for p in parts if ":" in p)  # local and peer address
            socks[key] = {}
        elif key:
            socks[key].update({k: int(v) for k, v in TCP_COUNTER_RE.findall(line)})
    return socks


def tcp_delta(
    before: dict[str, dict[str, int]] | None, after: dict[str, dict[str, int]] | None
) -> dict[str, int]:
    if before is None or after is None:
        return {}
    total: dict[str, int] = {}
    for key, counters in after.items():
        for name, value in counters.items():
            total[name] = total.get(name, 0) + value - before.get(key, {}).get(name, 0)
    return total


class Daemon(DaemonProcess):
    """One `python -m zerolink run` subprocess."""

    def __init__(self, side: Side, config: Path, log: Path) -> None:
        super().__init__(config, log, name=side.name)
        self.side = side

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # in case --pause-ground left it stopped
        proc.send_signal(signal.SIGTERM)
        for _ in range(100):
            if proc.poll() is not None:
                return
            await asyncio.sleep(0.05)
        proc.kill()
        proc.wait()


# -- raw XEP-0114 component client -------------------------------------------------------------
class Component:
    """A minimal XEP-0114 client: handshake, then raw bytes both ways."""

    def __init__(self, host: str, port: int, domain: str) -> None:
        self.host = host
        self.port = port
        self.domain = domain
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.leftover = b""

    async def connect(self, timeout: float = 10.0) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, limit=READ_SIZE
        )
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writer.write(component_header(self.domain))
        buf = await self._read_until(lambda b: HEADER_ID_RE.search(b) is not None, timeout)
        m = HEADER_ID_RE.search(buf)
        assert m is not None
        stream_id = m.group(2).decode()
        self.writer.write(handshake(stream_id, SECRET))
        rest = buf[m.end() :]
        rest = await self._read_until(
            lambda b: HANDSHAKE_OK_RE.search(b) is not None or b"stream:error" in b, timeout, rest
        )
        m2 = HANDSHAKE_OK_RE.search(rest)
        if m2 is None:
            raise RuntimeError(f"component {self.domain}: handshake refused: {rest[:300]!r}")
        self.leftover = rest[m2.end() :]

    async def _read_until(
        self, done: Callable[[bytes], bool], timeout: float, buf: bytes = b""
    ) -> bytes:
        async with asyncio.timeout(timeout):
            while not done(buf):
                data = await self.reader.read(READ_SIZE)
                if not data:
                    raise RuntimeError(f"component {self.domain}: connection closed: {buf!r}")
                buf += data
        return buf

    async def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.write(b"</stream:stream>")
            await self.writer.drain()
            async with asyncio.timeout(2):
                while await self.reader.read(READ_SIZE):
                    pass
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class Counter:
    """Reads a component stream: counts messages, bench sequence numbers and error stanzas.

    Only the part of the received bytes up to the last complete ``</message>`` is examined;
    the rest (an incomplete stanza) is carried over to the next read, so nothing split across
    reads is missed or counted twice.
    """

    def __init__(self, comp: Component, expected: int) -> None:
        self.comp = comp
        self.expected = expected
        self.messages = 0  # every </message>, warm-up included
        self.received = 0  # bench sequence numbers seen
        self.errors = 0  # type='error' messages
        self.out_of_order = 0
        self.bogus = 0  # sequence numbers >= expected
        self.seen = bytearray(expected)  # per-seq count, saturating at 255
        self.last = -1
        self.bytes = 0
        self.t_last: float | None = None
        self.error_samples: list[bytes] = []
        self.progress = asyncio.Event()
        self.done = asyncio.Event()
        self.closed = asyncio.Event()

    async def run(self) -> None:
        tail = self.comp.leftover
        read = self.comp.reader.read
        try:
            if tail:
                tail = self._consume(tail)
            while True:
                data = await read(READ_SIZE)
                if not data:
                    break
                self.bytes += len(data)
                tail = self._consume(tail + data if tail else data)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed.set()
            self.progress.set()
            self.done.set()

    def _consume(self, buf: bytes) -> bytes:
        end = buf.rfind(MESSAGE_END)
        if end < 0:
            return buf
        end += len(MESSAGE_END)
        chunk = buf[:end]
        self.messages += chunk.count(MESSAGE_END)
        if b"error" in chunk:
            errors = ERROR_RE.findall(chunk)
            if errors:
                self.errors += len(errors)
                if len(self.error_samples) < 3:
                    start = chunk.find(b"type='error'")
                    self.error_samples.append(chunk[max(0, start - 200) : start + 400])
        seqs = SEQ_RE.findall(chunk)
        if seqs:
            seen = self.seen
            n = self.expected
            last = self.last
            for raw in seqs:
                s = int(raw)
                if s >= n:
                    self.bogus += 1
                    continue
                if seen[s] < 255:
                    seen[s] += 1
                if s <= last:
                    self.out_of_order += 1
                last = s
            self.last = last
            self.received += len(seqs)
            if self.received >= n and not self.done.is_set():
                self.t_last = time.perf_counter()
                self.done.set()
            self.progress.set()
        return buf[end:]

    def exactly_once_in_order(self) -> bool:
        return (
            self.received == self.expected
            and self.out_of_order == 0
            and self.bogus == 0
            and self.seen.count(1) == self.expected
        )


# -- the end-to-end run -------------------------------------------------------------------------
@dataclass
class E2EResult:
    messages: int
    seconds: float
    send_seconds: float
    rate: float
    cpu: dict[str, float]
    tcp: dict[str, int]
    bench_cpu: float
    received: int
    errors: int
    out_of_order: int
    missing: int
    duplicated: int
    passed: bool
    error_samples: list[str]


async def end_to_end(args: argparse.Namespace, batches: list[bytes], tmp: Path) -> E2EResult:
    air = Side("air", AIR_DOMAIN, AIR_IP)
    ground = Side("ground", GROUND_DOMAIN, GROUND_IP)
    daemons: list[Daemon] = []
    for me, other in ((air, ground), (ground, air)):
        cfg = tmp / f"{me.name}.toml"
        cfg.write_text(daemon_toml(me, other, tmp / f"{me.name}-data"))
        daemons.append(Daemon(me, cfg, tmp / f"{me.name}.log"))
    comps: list[Component] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for d in daemons:
            d.start()
        for d in daemons:
            await wait_listening(d.side.ip, d.side.comp_port, d)
        sender = Component(AIR_IP, air.comp_port, f"bot.{AIR_DOMAIN}")
        receiver = Component(GROUND_IP, ground.comp_port, f"bot.{GROUND_DOMAIN}")
        for c in (sender, receiver):
            await c.connect()
            comps.append(c)
        # Large write buffer: drain() then only waits when several batches are in flight.
        sender.writer.transport.set_write_buffer_limits(high=4 * len(batches[0]))
        rx = Counter(receiver, args.messages)
        back = Counter(sender, args.messages)  # bounces come back to the sender
        tasks = [asyncio.create_task(rx.run()), asyncio.create_task(back.run())]

        # Warm-up: stanzas queue in air until the X2X link is up, then flow.
        warm = args.warmup
        sender.writer.write(b"".join(warmup_stanza(i) for i in range(warm)))
        await sender.writer.drain()
        deadline = time.monotonic() + 30
        while rx.messages < warm:
            for d in daemons:
                d.check_alive()
            if rx.closed.is_set() or back.errors or time.monotonic() > deadline:
                raise RuntimeError(
                    f"warm-up failed: {rx.messages}/{warm} arrived, {back.errors} bounced\n"
                    + "\n".join(f"--- {d.side.name} log:\n{d.log_tail()}" for d in daemons)
                )
            rx.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rx.progress.wait(), 0.1)
        await asyncio.sleep(0.2)  # let both daemons go idle

        # The measured run.
        cpu0 = {d.side.name: proc_cpu(d.pid) for d in daemons}
        tcp0 = tcp_counters(AIR_IP, GROUND_IP)
        bench0 = time.process_time()
        writer = sender.writer
        window = args.window
        per_batch = args.batch
        t0 = time.perf_counter()
        sent = 0
        if args.pause_ground > 0:  # a stalled peer: what happens to the flow?
            os.kill(daemons[1].pid, signal.SIGSTOP)
            asyncio.get_running_loop().call_later(
                args.pause_ground, os.kill, daemons[1].pid, signal.SIGCONT
            )
        for b in batches:
            if window:
                while sent - rx.received > window and not rx.closed.is_set():
                    rx.progress.clear()
                    await rx.progress.wait()
            writer.write(b)
            sent += per_batch
            await writer.drain()
        t_sent = time.perf_counter()
        last_seen, last_change = rx.received, time.monotonic()
        while not rx.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rx.done.wait(), 0.5)
            if rx.received != last_seen:
                last_seen, last_change = rx.received, time.monotonic()
            elif time.monotonic() - last_change > args.stall_timeout:
                break  # nothing moved for a while: report what arrived
            if any(d.proc is not None and d.proc.poll() is not None for d in daemons):
                break
        t_end = rx.t_last if rx.t_last is not None else time.perf_counter()
        cpu1 = {d.side.name: proc_cpu(d.pid) for d in daemons if d.proc and d.proc.poll() is None}
        tcp1 = tcp_counters(AIR_IP, GROUND_IP)
        bench_cpu = time.process_time() - bench0
        await asyncio.sleep(0.1)  # late bounces
        n = args.messages
        missing = rx.seen.count(0)
        duplicated = n - missing - rx.seen.count(1)
        return E2EResult(
            messages=n,
            seconds=t_end - t0,
            send_seconds=t_sent - t0,
            rate=rx.received / (t_end - t0) if t_end > t0 else 0.0,
            cpu={k: cpu1[k] - cpu0[k] for k in cpu1},
            tcp=tcp_delta(tcp0, tcp1),
            bench_cpu=bench_cpu,
            received=rx.received,
            errors=back.errors,
            out_of_order=rx.out_of_order,
            missing=missing,
            duplicated=duplicated,
            passed=rx.exactly_once_in_order() and back.errors == 0,
            error_samples=[s.decode(errors="replace") for s in back.error_samples],
        )
    finally:
        for c in comps:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.close(), 3)
        for t in tasks:
            t.cancel()
        for d in daemons:
            await d.stop()
        for d in daemons:
            d.print_log_problems()


# -- micro-benchmarks ------------------------------------------------------------------------------
def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def micro(stanzas: list[bytes], repeat: int) -> dict[str, Any]:
    buf = b"".join(stanzas)
    chunks = [buf[i : i + CHUNK] for i in range(0, len(buf), CHUNK)]
    n = len(stanzas)

    def parse(keep: list[Element] | None = None) -> int:
        # Like a daemon, drop each stanza once seen (keeping 50,000 trees alive would time
        # the garbage collector walking them, not the parser).
        p = StreamParser(content_ns=SERVER_NS, implied_header=X2X_HEADER)
        got = 0
        for c in chunks:
            for ev in p.feed(c):
                if type(ev) is StanzaReceived:
                    got += 1
                    if keep is not None:
                        keep.append(ev.element)
        return got

    t_parse, parsed = best_of(repeat, parse)
    assert parsed == n, f"parser produced {parsed} stanzas, expected {n}"
    elements: list[Element] = []
    parse(elements)  # the trees for the serializer benchmark

    settings = X2XSettings(
        peer_domains=DomainSet([AIR_DOMAIN, f"*.{AIR_DOMAIN}"]),
        is_local=DomainSet([GROUND_DOMAIN, f"*.{GROUND_DOMAIN}"]).__contains__,
    )

    def session() -> int:
        s = X2XSession(settings, now=0.0)
        got = 0
        for c in chunks:
            got += sum(1 for ev in s.receive_data(c, 0.0) if type(ev) is StanzaIn)
        return got

    t_session, accepted = best_of(repeat, session)
    assert accepted == n, f"X2X session accepted {accepted} stanzas, expected {n}"

    def ser() -> int:
        return sum(len(serialize(el, content_ns=SERVER_NS)) for el in elements)

    t_ser, out_bytes = best_of(repeat, ser)
    assert out_bytes == len(buf), "serializer output differs in size from the input"
    mb = len(buf) / 1e6
    return {
        "stanzas": n,
        "buffer_bytes": len(buf),
        "parser_mb_s": mb / t_parse,
        "parser_stanzas_s": n / t_parse,
        "x2x_receive_mb_s": mb / t_session,
        "x2x_receive_stanzas_s": n / t_session,
        "serializer_stanzas_s": n / t_ser,
        "serializer_mb_s": mb / t_ser,
    }


# -- output --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000, help="messages to send (100000)")
    ap.add_argument("--size", type=int, default=200, help="target stanza size in bytes (200)")
    ap.add_argument("--batch", type=int, default=500, help="stanzas per write (500)")
    ap.add_argument(
        "--window",
        type=int,
        default=0,
        help="max messages in flight (sent - received); 0 = unlimited (default)",
    )
    ap.add_argument("--warmup", type=int, default=200, help="warm-up messages, not timed (200)")
    ap.add_argument(
        "--micro-messages",
        type=int,
        default=50_000,
        help="stanzas in the parser/serializer micro-benchmarks (50000)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="micro-benchmark repeats, best kept")
    ap.add_argument(
        "--stall-timeout", type=float, default=15.0, help="give up after this long without progress"
    )
    ap.add_argument(
        "--pause-ground",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="SIGSTOP the ground daemon for this long at the first send (flow-control test)",
    )
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args(argv)
    if args.messages < 1 or args.batch < 1 or args.size < 1:
        ap.error("--messages, --batch and --size must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.messages
    pad = padding_for(args.size)
    sample = stanza(0, pad)
    # The stanza as zerolink writes it on the X2X link (parsed, then serialized).
    parsed = StreamParser(content_ns=SERVER_NS, implied_header=X2X_HEADER).feed(sample)
    element = next(ev.element for ev in parsed if type(ev) is StanzaReceived)
    wire = serialize(element, content_ns=SERVER_NS)

    all_stanzas = [stanza(i, pad) for i in range(n)]
    batches = [b"".join(all_stanzas[i : i + args.batch]) for i in range(0, n, args.batch)]

    with tempfile.TemporaryDirectory(prefix="zerolink-bench-") as tmp:
        try:
            e2e = asyncio.run(end_to_end(args, batches, Path(tmp)))
        except (RuntimeError, OSError, TimeoutError) as exc:
            print(f"benchmark could not run: {exc}", file=sys.stderr)
            return 2
    del batches

    micro_n = min(args.micro_messages, n) if args.micro_messages > 0 else n
    m = micro(all_stanzas[:micro_n], args.repeat)

    status = "PASS" if e2e.passed else "FAIL"
    print(
        f"zerolink {__version__} throughput, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; component -> air -> X2X -> ground -> component on loopback"
    )
    print(f"sample stanza ({len(sample)} bytes on the component stream):")
    print(f"  {sample.decode()}")
    rows = [
        ("messages", f"{n:,}"),
        *(
            [("ground stopped (SIGSTOP) at first send for (s)", f"{args.pause_ground:g}")]
            if args.pause_ground > 0
            else []
        ),
        ("stanza size, component stream (bytes)", f"{len(sample)}"),
        ("end-to-end time, first send -> last receipt (s)", f"{e2e.seconds:.3f}"),
        ("sender finished writing after (s)", f"{e2e.send_seconds:.3f}"),
        ("throughput (messages/s)", f"{e2e.rate:,.0f}"),
        ("throughput (payload MB/s)", f"{e2e.rate * len(sample) / 1e6:.2f}"),
        ("target (messages/s)", "20,000"),
    ]
    for name in ("air", "ground"):
        if name in e2e.cpu:
            cpu = e2e.cpu[name]
            rows.append((f"{name} CPU s per 10,000 messages", f"{cpu / n * 10_000:.3f}"))
            rows.append((f"{name} CPU s total (utime+stime)", f"{cpu:.2f}"))
            if cpu > 0:
                rows.append((f"{name} max messages/s at 100% of one core", f"{n / cpu:,.0f}"))
    rows.append(("bench clients CPU s per 10,000 messages", f"{e2e.bench_cpu / n * 10_000:.3f}"))
    rows += [
        ("received (bench sequence numbers)", f"{e2e.received:,}"),
        (
            "missing / duplicated / out of order",
            f"{e2e.missing} / {e2e.duplicated} / {e2e.out_of_order}",
        ),
        ("error stanzas bounced to the sender", f"{e2e.errors}"),
        (f"all {n:,} arrived exactly once in order", status),
    ]
    print_table("1-2. end to end (two daemon processes)", rows)

    print_table(
        f"3. in-process micro-benchmarks ({m['stanzas']:,} stanzas, "
        f"{m['buffer_bytes'] / 1e6:.1f} MB, 64 KiB chunks, best of {args.repeat})",
        [
            ("XML parser alone (MB/s)", f"{m['parser_mb_s']:.2f}"),
            ("XML parser alone (stanzas/s)", f"{m['parser_stanzas_s']:,.0f}"),
            ("X2X session receive, parse + §4.5 checks (MB/s)", f"{m['x2x_receive_mb_s']:.2f}"),
            ("X2X session receive (stanzas/s)", f"{m['x2x_receive_stanzas_s']:,.0f}"),
            ("serializer alone (stanzas/s)", f"{m['serializer_stanzas_s']:,.0f}"),
            ("serializer alone (MB/s)", f"{m['serializer_mb_s']:.2f}"),
        ],
    )

    wire_rows = [
        ("bytes per stanza on the X2X link (serialize())", f"{len(wire)}"),
        ("X2X bytes before the first stanza (implied header)", "0"),
    ]
    tcp = e2e.tcp
    if tcp.get("bytes_sent") and e2e.received:
        wire_rows.append(
            ("measured: X2X TCP payload bytes per message (ss)", f"{tcp['bytes_sent'] / n:.1f}")
        )
    if tcp.get("data_segs_out") and e2e.received:
        wire_rows.append(
            ("measured: messages per X2X TCP segment (ss)", f"{n / tcp['data_segs_out']:.1f}")
        )
    print_table("4. bytes on the wire", wire_rows)
    for s in e2e.error_samples:
        print(f"\nsample bounce: {s}")
    print(f"\nRESULT: {status} ({e2e.rate:,.0f} messages/s)")

    if args.json:
        result = {
            "zerolink": __version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "messages": n,
            "stanza_bytes_component": len(sample),
            "stanza_bytes_x2x": len(wire),
            "end_to_end": {
                "seconds": e2e.seconds,
                "send_seconds": e2e.send_seconds,
                "messages_per_s": e2e.rate,
                "cpu_s": e2e.cpu,
                "cpu_s_per_10k": {k: v / n * 10_000 for k, v in e2e.cpu.items()},
                "bench_cpu_s": e2e.bench_cpu,
                "x2x_tcp_air_to_ground": e2e.tcp,
                "received": e2e.received,
                "missing": e2e.missing,
                "duplicated": e2e.duplicated,
                "out_of_order": e2e.out_of_order,
                "errors": e2e.errors,
                "pass": e2e.passed,
            },
            "micro": m,
        }
        print(json.dumps(result, indent=2))
    return 0 if e2e.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
