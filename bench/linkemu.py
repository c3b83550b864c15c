"""A slow, high-latency IP link between two network namespaces, emulated in user space.

The kernel here has no netem, so the link is a process: it owns one TUN device in each of two
network namespaces it is given, reads every IP packet that one side routes to the other, and
writes it into the other side's TUN after

* serialization at `rate` bit/s: one FIFO per direction, a packet starts when the line is free
  and takes ``len(ip_packet) * 8 / rate`` seconds (IP bytes; no link-layer framing added);
* a fixed one-way propagation delay of ``rtt / 2``;
* optionally a queue limit per direction (bytes waiting for the line; beyond it, tail drop).

Unlike ``zerolink.net.slowlink`` (a TCP relay on loopback), this is the whole path: the TCP
handshake, ACKs, retransmissions and TLS records all pay the delay and the line rate, and the
kernels at both ends run their real TCP (initial RTO of 1 s, so SYNs are retransmitted when the
round trip is longer: that is what a real satellite path does too).

Use (needs root: namespaces, /dev/net/tun):

    with LinkEmu(rtt=3.0, rate=2400) as link:
        link.exec_prefix("air")                  # ["ip", "netns", "exec", "zl-air"]
        sock = link.socket("air")               # a TCP socket living in zl-air
        mark = time.monotonic()
        ...
        up, down = link.bytes_between(mark, t_end)  # IP bytes that crossed, each way

Addresses: air 10.254.0.1/32 in namespace ``zl-air``, ground 10.254.0.2/32 in ``zl-ground``,
each with a host route to the other via its TUN (``zl0``) and ``lo`` up. The emulator process
prints one line per packet it forwarded (times on CLOCK_MONOTONIC, which all namespaces
share); the context manager collects them, so a benchmark can count the bytes and packets that
crossed the link in any time window.

Standalone, as a self-test (ping through the link, the emulator's own timing error):

    python bench/linkemu.py --rtt 1 --rate 2400 --ping 3
    python bench/linkemu.py --rtt 3 --rate 2400 --hold   # keep it up until Ctrl-C

Teardown deletes both namespaces, also on an exception or Ctrl-C (a SIGKILL of the benchmark
leaves them: ``ip netns del zl-air; ip netns del zl-ground``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import heapq
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
TUN_NAME = "zl0"
IPV6_OFF = "/proc/sys/net/ipv6/conf/default/disable_ipv6"  # per namespace
DIRECTIONS = ("up", "down")  # up: air -> ground; down: ground -> air

_libc = ctypes.CDLL(None, use_errno=True)


class LinkEmuError(RuntimeError):
    """Setting up or running the emulated link failed (the message says which step)."""


def ip(*args: str) -> str:
    try:
        res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LinkEmuError(f"`ip {' '.join(args)}` could not run: {exc}") from exc
    if res.returncode != 0:
        raise LinkEmuError(f"`ip {' '.join(args)}` failed: {res.stderr.strip() or res.returncode}")
    return res.stdout


def setns(path: str) -> None:
    """Move the calling thread into the network namespace at `path`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def socket_in(
    ns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0
) -> socket.socket:
    """A non-blocking socket created inside namespace `ns` (it stays there for its life).

    setns(2) on network namespaces is per thread: a short-lived thread joins `ns`, makes the
    socket and ends; the caller's thread never changes namespace.
    """
    out: list[socket.socket | BaseException] = []

    def work() -> None:
        try:
            setns(f"/run/netns/{ns}")
            s = socket.socket(family, kind, proto)
            s.setblocking(False)
            out.append(s)
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=work, name=f"setns-{ns}")
    t.start()
    t.join()
    if isinstance(out[0], BaseException):
        raise LinkEmuError(f"cannot make a socket in namespace {ns}: {out[0]}") from out[0]
    return out[0]


# -- packets ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Packet:
    """One IP packet the emulator forwarded."""

    direction: str  # "up" (air -> ground) or "down"
    t_in: float  # read from the sender's TUN
    t_out: float  # written into the receiver's TUN (after delay)
    due: float  # when it should have been written (lateness = t_out - due)
    size: int  # IP packet length in bytes
    payload: int  # TCP payload bytes (0 for other protocols)
    flags: str  # TCP flags as letters (S, A, F, R, P), "icmp", "udp" or "ip"
    retrans: bool  # a TCP segment (data or SYN/FIN) whose sequence range was already sent
    dropped: bool  # tail-dropped by the queue limit (never delivered)


def parse_ip(pkt: bytes) -> tuple[str, int, tuple[object, ...] | None, int, int]:
    """(flags, tcp payload bytes, flow key, seq, seq span) of an IPv4 packet."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return "ip", 0, None, 0, 0
    ihl = (pkt[0] & 0x0F) * 4
    total = struct.unpack_from("!H", pkt, 2)[0]
    proto = pkt[9]
    if proto == 1:
        return "icmp", 0, None, 0, 0
    if proto == 17:
        return "udp", 0, None, 0, 0
    if proto != 6 or len(pkt) < ihl + 20:
        return "ip", 0, None, 0, 0
    sport, dport, seq = struct.unpack_from("!HHI", pkt, ihl)
    doff = (pkt[ihl + 12] >> 4) * 4
    fl = pkt[ihl + 13]
    payload = max(0, total - ihl - doff)
    letters = "".join(
        c for bit, c in ((2, "S"), (16, "A"), (1, "F"), (4, "R"), (8, "P")) if fl & bit
    )
    span = payload + (1 if fl & 2 else 0) + (1 if fl & 1 else 0)
    key = (pkt[12:16], sport, pkt[16:20], dport)
    return letters, payload, key, seq, span


# -- the emulator process -----------------------------------------------------------------------
class _Line:
    """One direction of the link: a FIFO at `rate` bit/s, then `delay` seconds of propagation."""

    def __init__(self, name: str, rate: float, delay: float, queue_limit: int) -> None:
        self.name = name
        self.rate = rate
        self.delay = delay
        self.queue_limit = queue_limit
        self.line_free = 0.0
        self.sent_end: dict[object, int] = {}  # per TCP flow: highest seq + span seen (mod 2**32)

    def is_retrans(self, key: object, seq: int, span: int) -> bool:
        if key is None or span == 0:
            return False
        end = (seq + span) & 0xFFFFFFFF
        prev = self.sent_end.get(key)
        if prev is None:
            self.sent_end[key] = end
            return False
        # end <= prev in sequence space: nothing new in this segment
        if (prev - end) & 0xFFFFFFFF < 0x80000000:
            return True
        self.sent_end[key] = end
        return False


def serve(args: argparse.Namespace) -> int:
    """Run the emulator (called in the `--serve` subprocess)."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    fds = {}
    try:
        for side, ns in (("air", args.ns_air), ("ground", args.ns_ground)):
            setns(f"/run/netns/{ns}")
            # No IPv6 on the link: router solicitations and MLD reports would take line time.
            with contextlib.suppress(OSError), open(IPV6_OFF, "w") as f:
                f.write("1")
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", TUN_NAME.encode(), IFF_TUN | IFF_NO_PI))
            fds[side] = fd
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original namespace")
    finally:
        os.close(own)
    for ns, me, other in (
        (args.ns_air, args.air_ip, args.ground_ip),
        (args.ns_ground, args.ground_ip, args.air_ip),
    ):
        ip("-n", ns, "link", "set", TUN_NAME, "mtu", str(args.mtu), "txqueuelen", "1000")
        ip("-n", ns, "addr", "add", f"{me}/32", "dev", TUN_NAME)
        ip("-n", ns, "link", "set", TUN_NAME, "up")
        ip("-n", ns, "route", "add", f"{other}/32", "dev", TUN_NAME, "src", me)

    lines = {
        "up": _Line("up", args.rate, args.rtt / 2, args.queue_limit),
        "down": _Line("down", args.rate, args.rtt / 2, args.queue_limit),
    }
    src = {"up": fds["air"], "down": fds["ground"]}
    dst = {"up": fds["ground"], "down": fds["air"]}
    out = sys.stdout
    heap: list[tuple[float, int, str, bytes, str]] = []  # (due, n, direction, packet, info)
    counter = 0
    mono = time.monotonic

    def on_readable(direction: str) -> None:
        nonlocal counter
        fd = src[direction]
        line = lines[direction]
        while True:
            try:
                pkt = os.read(fd, 65536)
            except BlockingIOError:
                break
            now = mono()
            flags, payload, key, seq, span = parse_ip(pkt)
            retrans = line.is_retrans(key, seq, span)
            backlog = max(0.0, line.line_free - now) * line.rate / 8 if line.rate else 0.0
            info = f"{now:.6f} {direction} {len(pkt)} {payload} {flags} {int(retrans)}"
            if line.queue_limit and backlog + len(pkt) > line.queue_limit:
                out.write(f"P {info} 1 0 0\n")
                continue
            start = max(now, line.line_free)
            line.line_free = start + (len(pkt) * 8 / line.rate if line.rate else 0.0)
            due = line.line_free + line.delay
            counter += 1
            heapq.heappush(heap, (due, counter, direction, pkt, info))
        out.flush()

    def deliver_due() -> None:
        written = False
        while heap and heap[0][0] <= mono():
            due, _, direction, pkt, info = heapq.heappop(heap)
            with contextlib.suppress(OSError):
                os.write(dst[direction], pkt)
            out.write(f"P {info} 0 {mono():.6f} {due:.6f}\n")
            written = True
        if written:
            out.flush()

    class Stop(Exception):
        pass

    def stop(*_: object) -> None:
        raise Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sel = selectors.DefaultSelector()
    for direction in DIRECTIONS:
        sel.register(src[direction], selectors.EVENT_READ, direction)
    # The parent holds our stdin: when it goes away (even SIGKILLed), we stop.
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
    out.write("READY\n")
    out.flush()
    try:
        while True:
            deliver_due()
            wait = heap[0][0] - mono() if heap else None
            # The kernel lets poll/select wake up late by 0.1 % of the timeout (timer slack,
            # 1.5 ms for 1.5 s) and epoll counts whole milliseconds: wake up early, then
            # finish with short sleeps while still watching the TUN devices.
            margin = 0.002 + 0.002 * wait if wait is not None else 0.0
            if wait is not None and wait < margin:
                events = sel.select(0)
                if not events:
                    time.sleep(max(0.0, min(wait, 0.0005)))
                    continue
            else:
                events = sel.select(None if wait is None else wait - margin)
            for key, _ in events:
                if key.data is None:
                    raise Stop
                on_readable(key.data)
    except Stop:
        pass
    finally:
        sel.close()
        for fd in fds.values():
            os.close(fd)
    return 0


# -- the context manager ------------------------------------------------------------------------
@dataclass
class LinkEmu:
    """Two namespaces joined by the emulated link (see the module docstring)."""

    rtt: float = 1.0
    rate: float = 2400.0
    queue_limit: int = 0  # bytes per direction, 0 = unlimited
    mtu: int = 1500
    ns: dict[str, str] = field(default_factory=lambda: {"air": "zl-air", "ground": "zl-ground"})
    addr: dict[str, str] = field(
        default_factory=lambda: {"air": "10.254.0.1", "ground": "10.254.0.2"}
    )
    packets: list[Packet] = field(default_factory=list)
    _proc: subprocess.Popen[str] | None = None
    _reader: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _made: list[str] = field(default_factory=list)

    # context manager
    def __enter__(self) -> LinkEmu:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        existing = ip("netns", "list")
        for ns in self.ns.values():
            if re.search(rf"^{re.escape(ns)}(\s|$)", existing, re.M):
                raise LinkEmuError(
                    f"network namespace {ns} already exists (a previous run killed without "
                    f"cleanup, or another run in progress?): `ip netns del {ns}` if it is stale"
                )
        for ns in self.ns.values():
            ip("netns", "add", ns)
            self._made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        self._proc = subprocess.Popen(
            [
                *(sys.executable, os.path.abspath(__file__), "--serve"),
                *("--rtt", repr(self.rtt), "--rate", repr(self.rate)),
                *("--queue-limit", str(self.queue_limit), "--mtu", str(self.mtu)),
                *("--ns-air", self.ns["air"], "--ns-ground", self.ns["ground"]),
                *("--air-ip", self.addr["air"], "--ground-ip", self.addr["ground"]),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline()
        if first.strip() != "READY":
            err = self._proc.stderr.read() if self._proc.stderr else ""
            raise LinkEmuError(f"link emulator did not start: {first.strip()} {err.strip()}")
        self._reader = threading.Thread(target=self._read, name="linkemu-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            parts = line.split()
            if not parts or parts[0] != "P":
                continue
            t_in, direction, size, payload, flags, retrans, dropped = parts[1:8]
            t_out, due = (float(parts[8]), float(parts[9])) if dropped == "0" else (0.0, 0.0)
            p = Packet(
                direction,
                float(t_in),
                t_out,
                due,
                int(size),
                int(payload),
                flags,
                retrans == "1",
                dropped == "1",
            )
            with self._lock:
                self.packets.append(p)

    def close(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(2)
        errors = []
        for ns in reversed(self._made):
            # Processes we started inside and forgot would keep the namespace alive unseen.
            with contextlib.suppress(LinkEmuError):
                for pid in ip("netns", "pids", ns).split():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)
            try:
                ip("netns", "del", ns)
            except LinkEmuError as exc:
                errors.append(str(exc))
        self._made.clear()
        if errors:
            raise LinkEmuError("; ".join(errors))

    # helpers for benchmarks
    def exec_prefix(self, side: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns[side]]

    def socket(self, side: str, kind: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
        return socket_in(self.ns[side], socket.AF_INET, kind, proto)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def snapshot(self) -> list[Packet]:
        with self._lock:
            return list(self.packets)

    def window(self, t0: float, t1: float) -> list[Packet]:
        """Packets that entered the link at or after t0 and were delivered by t1."""
        return [p for p in self.snapshot() if not p.dropped and p.t_in >= t0 and p.t_out <= t1]

    def bytes_between(self, t0: float, t1: float) -> tuple[int, int]:
        ps = self.window(t0, t1)
        return (
            sum(p.size for p in ps if p.direction == "up"),
            sum(p.size for p in ps if p.direction == "down"),
        )

    def last_activity(self) -> float:
        ps = self.snapshot()
        return max((max(p.t_in, p.t_out) for p in ps), default=0.0)

    def wait_quiet(self, quiet: float, timeout: float = 120.0) -> bool:
        """Wait until no packet entered or left the link for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if time.monotonic() - self.last_activity() >= quiet:
                return True
            time.sleep(0.05)
        return False

    def lateness(self) -> list[float]:
        """How late each delivered packet was written, in seconds (the emulator's own jitter)."""
        return [p.t_out - p.due for p in self.snapshot() if not p.dropped]


# -- self-test ----------------------------------------------------------------------------------
def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(link: LinkEmu, count: int, interval: float, timeout: float) -> list[float | None]:
    """ICMP echo from air to ground through the link (what `ping` does, without needing it)."""
    s = link.socket("air", socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setblocking(True)
    ident = os.getpid() & 0xFFFF
    results: list[float | None] = []
    try:
        for seq in range(count):
            data = struct.pack("!d", time.monotonic()) + bytes(48)  # 56 bytes, like ping
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            msg = struct.pack("!BBHHH", 8, 0, _checksum(hdr + data), ident, seq) + data
            t0 = time.monotonic()
            s.sendto(msg, (link.addr["ground"], 0))
            rtt = None
            while (left := t0 + timeout - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    reply = s.recv(2048)
                except TimeoutError:
                    break
                ihl = (reply[0] & 0x0F) * 4
                typ, _, _, rid, rseq = struct.unpack_from("!BBHHH", reply, ihl)
                if typ == 0 and rid == ident and rseq == seq:
                    rtt = time.monotonic() - t0
                    break
            results.append(rtt)
            time.sleep(max(0.0, t0 + interval - time.monotonic()))
    finally:
        s.close()
    return results


def ping_test(link: LinkEmu, count: int) -> None:
    icmp = 84  # IPv4 + ICMP echo with ping's default 56 data bytes
    ser = icmp * 8 / link.rate if link.rate else 0.0
    expected = link.rtt + 2 * ser
    print(
        f"ping {link.addr['ground']} from {link.ns['air']} ({icmp}-byte packets), expected "
        f"{expected * 1000:.0f} ms = RTT {link.rtt * 1000:.0f} ms + 2 x {ser * 1000:.0f} ms "
        f"serialization at {link.rate:g} bit/s"
    )
    mark = time.monotonic()
    for seq, rtt in enumerate(ping(link, count, expected + 0.2, link.rtt * 3 + 5)):
        if rtt is None:
            print(f"  seq {seq}: no reply")
        else:
            print(f"  seq {seq}: {rtt * 1000:.1f} ms (error {(rtt - expected) * 1000:+.1f} ms)")
    late = [p.t_out - p.due for p in link.snapshot() if not p.dropped and p.t_in >= mark]
    if late:
        print(
            f"emulator lateness (written minus due) over {len(late)} packets: "
            f"mean {1000 * sum(late) / len(late):.2f} ms, max {1000 * max(late):.2f} ms"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rtt", type=float, default=1.0, help="round-trip time in seconds (1)")
    ap.add_argument("--rate", type=float, default=2400, help="bit/s each way (2400)")
    ap.add_argument("--queue-limit", type=int, default=0, help="bytes per direction (0: none)")
    ap.add_argument("--mtu", type=int, default=1500, help="MTU of the TUN devices (1500)")
    ap.add_argument("--ping", type=int, default=3, metavar="N", help="pings in the self-test")
    ap.add_argument("--hold", action="store_true", help="keep the link up until Ctrl-C")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ns-air", default="zl-air", help=argparse.SUPPRESS)
    ap.add_argument("--ns-ground", default="zl-ground", help=argparse.SUPPRESS)
    ap.add_argument("--air-ip", default="10.254.0.1", help=argparse.SUPPRESS)
    ap.add_argument("--ground-ip", default="10.254.0.2", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with LinkEmu(
            rtt=args.rtt, rate=args.rate, queue_limit=args.queue_limit, mtu=args.mtu
        ) as link:
            print(
                f"link up: {link.ns['air']} {link.addr['air']} <-> {link.ns['ground']} "
                f"{link.addr['ground']}, RTT {args.rtt:g} s, {args.rate:g} bit/s each way"
            )
            if args.ping:
                ping_test(link, args.ping)
            if args.hold:
                print("holding; Ctrl-C to tear down")
                with contextlib.suppress(KeyboardInterrupt):
                    while link.alive():
                        time.sleep(0.5)
    except LinkEmuError as exc:
        print(f"linkemu: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: namespaces deleted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
