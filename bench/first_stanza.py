"""Time and bytes to the first stanza across a slow, long link: XEP-0361 X2X vs RFC 6120 S2S.

On a link emulated in user space (bench/linkemu.py: two network namespaces joined by TUN
devices, round trip R, rate B bit/s each way, the whole IP path including TCP handshakes and
ACKs), it measures, from the moment the link is usable (both servers up, their local clients
connected, nothing on the link, no connection open) to the moment the recipient on the other
side reads the first stanza:

1. ``x2x-plain``: zerolink X2X over plain TCP (``connect = "on-demand"``: the stanza makes
   air dial ground; expected 1.5 RTT + serialization);
2. ``x2x-tls``: zerolink X2X over direct TLS 1.3 with mutual authentication (certificates from
   ``zerolink gen-cert``, signed by a CA made for the run, ``identity.mode = "tls"``);
3. ``x2x-tls-resumed``: the same pair, second connection: after the first one has closed
   (``idle_timeout`` of 2 s, the close exchange, TCP gone), the next stanza dials again and
   resumes the TLS session;
4. ``prosody-sasl``: two Prosody 0.12 servers with their default S2S (stream headers, features,
   STARTTLS, TLS, stream restart, SASL EXTERNAL, stream restart), using the same CA-signed
   certificates, which each trusts (``ssl.cafile``);
5. ``prosody-dialback``: the same, but the CA is not trusted (as with self-signed
   certificates): Prosody falls back to Server Dialback, and ground dials back to air.

plus ``x2x-burst``: 20 messages written at once on the X2X plain link once it is up.

The clock is CLOCK_MONOTONIC (shared by all namespaces): the bench process writes the stanza
(t0) and reads it on the other side (t1) through sockets it created inside each namespace; the
emulator timestamps every packet it forwards with the same clock, so the bytes that crossed the
link before the first stanza are the packets that entered the link at or after t0 and left it
by t1 (IP bytes: TCP/IP headers included, no link-layer framing; retransmissions included).

Every scenario gets a fresh link (new namespaces): no connection, no cached TCP metrics, no
TLS session from the scenario before. Resumption (3) runs in the same link as (2), as a real
reconnect would. Senders and recipients:

* zerolink: raw XEP-0114 components (the ones of bench/throughput.py) on each daemon's
  component listener at 127.0.0.1:5347 inside its namespace, ``bot.air.example`` ->
  ``bot.ground.example``;
* Prosody: raw c2s clients (SASL PLAIN on loopback, bind, presence) logged in before t0,
  ``pilot@air.example/bench`` -> ``ops@ground.example/bench``. Each namespace runs a tiny
  DNS server on 127.0.0.1:53 (A records for both domains, no SRV) that Prosody's resolver
  (libunbound) is pointed to with ``unbound = { resolvconf = ... }``; it answers locally, so
  DNS costs nothing on the link (on a real aircraft it could cost another round trip).

Needs root (namespaces, TUN), Prosody for 4-5, matplotlib for the chart (skipped without it).
Run from the repository root:

    python bench/first_stanza.py                         # R = 1 s and 3 s, 2400 bit/s
    python bench/first_stanza.py --rtt 0.6 --rate 9600   # one other link
    python bench/first_stanza.py --scenarios x2x-plain,x2x-tls --rtt 3

Exit status 0 when every scenario delivered its stanza, 1 when one did not, 2 when the bench
could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HANDSHAKE_OK_RE, HEADER_ID_RE, client_header, component_header, handshake
from linkemu import LinkEmu, LinkEmuError, Packet, ping

AIR, GROUND = "air", "ground"
DOMAIN = {AIR: "air.example", GROUND: "ground.example"}
SECRET = "bench-secret"
READ_SIZE = 1 << 16
BODY = "ETA 14:05 at LFPG, FL350, fuel 61 %, cabin nominal"
SCENARIOS = ("x2x-plain", "x2x-tls", "prosody-sasl", "prosody-dialback")
TLS_LOG_RE = re.compile(
    r"TLS (\S+) with \S+ \((full handshake|session resumed), (\d+) bytes sent, (\d+) received"
)


class BenchError(RuntimeError):
    """The benchmark could not run a scenario (the message says why)."""


# -- processes inside a namespace ----------------------------------------------------------------
def _die_with_parent() -> None:
    """Before exec: SIGKILL this child when the bench dies (`ip netns exec` execs in place)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Proc:
    """One server process started with `ip netns exec NS ...`, output to a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log = log
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(
                argv,
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=log.parent,
                preexec_fn=_die_with_parent,
            )

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def connect_in(
    link: LinkEmu, side: str, port: int, procs: list[Proc], timeout: float = 20.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A stream to 127.0.0.1:port inside `side`'s namespace, retried until it listens."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    while True:
        for p in procs:
            p.check()
        s = link.socket(side)
        try:
            await loop.sock_connect(s, ("127.0.0.1", port))
            break
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise BenchError(f"nothing listens on 127.0.0.1:{port} in {side}") from None
            await asyncio.sleep(0.1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return await asyncio.open_connection(sock=s, limit=READ_SIZE)


# -- XMPP clients (raw, as in bench/throughput.py) -----------------------------------------------
class Stream:
    """A raw XML stream: the bench's XEP-0114 component or c2s client, and its receive times."""

    def __init__(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.name = name
        self.reader = reader
        self.writer = writer
        self.buf = b""
        self.arrivals: list[float] = []  # monotonic time of each </message> read
        self.errors = 0
        self.got = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def read_until(
        self, pattern: re.Pattern[bytes], timeout: float = 20.0
    ) -> re.Match[bytes]:
        async with asyncio.timeout(timeout):
            while (m := pattern.search(self.buf)) is None:
                if b"stream:error" in self.buf or b"<failure" in self.buf:
                    raise BenchError(f"{self.name}: refused: {self.buf[:400]!r}")
                data = await self.reader.read(READ_SIZE)
                if not data:
                    raise BenchError(f"{self.name}: connection closed: {self.buf[:400]!r}")
                self.buf += data
        self.buf = self.buf[m.end() :]
        return m

    def start_counting(self) -> None:
        self.task = asyncio.create_task(self._count())

    async def _count(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                if b"</message>" not in self.buf:
                    data = await self.reader.read(READ_SIZE)
                    if not data:
                        return
                    now = time.monotonic()
                    self.buf += data
                else:
                    now = time.monotonic()
                while (end := self.buf.find(b"</message>")) >= 0:
                    chunk, self.buf = self.buf[: end + 10], self.buf[end + 10 :]
                    if re.search(rb"type=['\"]error['\"]", chunk):
                        self.errors += 1
                    else:
                        self.arrivals.append(now)
                    self.got.set()

    async def wait_messages(self, n: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(self.arrivals) < n:
                if self.task is not None and self.task.done():
                    raise BenchError(f"{self.name}: stream closed after {len(self.arrivals)}")
                self.got.clear()
                await self.got.wait()

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        with contextlib.suppress(OSError):
            self.writer.write(b"</stream:stream>")
        self.writer.close()


async def component(link: LinkEmu, side: str, port: int, domain: str, procs: list[Proc]) -> Stream:
    """A XEP-0114 component: header, SHA-1(id + secret) handshake."""
    r, w = await connect_in(link, side, port, procs)
    s = Stream(f"component {domain}", r, w)
    w.write(component_header(domain))
    m = await s.read_until(HEADER_ID_RE)
    w.write(handshake(m.group(2).decode(), SECRET))
    await s.read_until(HANDSHAKE_OK_RE)
    return s


async def c2s_client(
    link: LinkEmu, side: str, port: int, user: str, password: str, procs: list[Proc]
) -> Stream:
    """An RFC 6120 client on loopback: SASL PLAIN (no TLS on loopback), bind, presence."""
    domain = DOMAIN[side]
    r, w = await connect_in(link, side, port, procs)
    s = Stream(f"client {user}@{domain}", r, w)
    header = client_header(domain)
    w.write(header)
    await s.read_until(re.compile(rb"</stream:features>"))
    plain = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    w.write(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>".encode()
    )
    await s.read_until(re.compile(rb"<success\b[^>]*(/>|>.*?</success>)", re.S))
    w.write(header)
    await s.read_until(re.compile(rb"</stream:features>"))
    w.write(
        b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        b"<resource>bench</resource></bind></iq>"
    )
    await s.read_until(re.compile(rb"<iq\b[^>]*id=['\"]bind1['\"].*?</iq>", re.S))
    w.write(b"<presence/>")
    await asyncio.sleep(0.3)  # Prosody's presence processing (nothing leaves: empty rosters)
    return s


# -- DNS for Prosody --------------------------------------------------------------------------
class TinyDNS:
    """A UDP DNS server on 127.0.0.1:53 inside a namespace: A records for both domains.

    Everything else is NXDOMAIN (no SRV: Prosody then uses port 5269 on the A record), AAAA of
    a known name is an empty answer. It runs in a thread of the bench process.
    """

    def __init__(self, link: LinkEmu, side: str) -> None:
        self.records = {f"{DOMAIN[s]}.": link.addr[s] for s in (AIR, GROUND)}
        self.sock = link.socket(side, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 53))
        self.sock.settimeout(0.2)
        self.stopped = False
        self.queries: list[str] = []
        self.thread = threading.Thread(target=self._run, name=f"dns-{side}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped:
            try:
                wire, addr = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            try:
                q = dns.message.from_wire(wire)
                resp = dns.message.make_response(q, recursion_available=True)
                qq = q.question[0]
                name = qq.name.to_text().lower()
                self.queries.append(f"{name} {dns.rdatatype.to_text(qq.rdtype)}")
                if name not in self.records:
                    resp.set_rcode(dns.rcode.NXDOMAIN)
                elif qq.rdtype == dns.rdatatype.A:
                    resp.answer.append(dns.rrset.from_text(name, 60, "IN", "A", self.records[name]))
                self.sock.sendto(resp.to_wire(), addr)
            except Exception:  # a malformed query: ignore it
                continue

    def stop(self) -> None:
        self.stopped = True
        self.thread.join(2)
        self.sock.close()


# -- results -----------------------------------------------------------------------------------
@dataclass
class Result:
    scenario: str
    rtt: float
    rate: float
    ok: bool
    seconds: float = float("nan")
    bytes_up: int = 0  # IP bytes air -> ground before the stanza was read
    bytes_down: int = 0
    payload_up: int = 0  # TCP payload bytes
    payload_down: int = 0
    packets_up: int = 0
    packets_down: int = 0
    retrans: int = 0  # retransmitted TCP segments among them (SYNs included)
    retrans_bytes: int = 0  # their IP bytes (included in bytes_up/down)
    note: str = ""
    lateness_ms: float = 0.0  # the emulator's worst timing error during the scenario
    extra: dict[str, object] = field(default_factory=dict)
    trace: list[str] = field(default_factory=list)  # the packets, for --trace

    @property
    def rtts(self) -> float:
        return self.seconds / self.rtt if self.rtt else float("nan")


async def measure(link: LinkEmu, r: Result, t0: float, t1: float) -> None:
    # The emulator reports a packet on its pipe just after writing it; the stanza it carried
    # can reach the bench first. Give the report time to arrive before counting.
    await asyncio.sleep(0.3)
    ps: list[Packet] = link.window(t0, t1)
    r.seconds = t1 - t0
    for d in ("up", "down"):
        mine = [p for p in ps if p.direction == d]
        setattr(r, f"bytes_{d}", sum(p.size for p in mine))
        setattr(r, f"payload_{d}", sum(p.payload for p in mine))
        setattr(r, f"packets_{d}", len(mine))
    r.retrans = sum(1 for p in ps if p.retrans)
    r.retrans_bytes = sum(p.size for p in ps if p.retrans)
    r.trace = [
        f"{p.t_in - t0:8.3f} -> {p.t_out - t0:8.3f}  "
        f"{'air->gnd' if p.direction == 'up' else 'gnd->air'}  {p.size:5} B  "
        f"payload {p.payload:5}  {p.flags:<5}{'  retransmission' if p.retrans else ''}"
        for p in ps
    ]
    late = [p.t_out - p.due for p in ps]
    r.lateness_ms = 1000 * max(late, default=0.0)


async def wait_quiet(link: LinkEmu, quiet: float, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() - link.last_activity() < quiet:
        if time.monotonic() > deadline:
            raise BenchError(f"the link never went quiet for {quiet} s")
        await asyncio.sleep(0.05)


def tcp_open(link: LinkEmu, side: str) -> list[str]:
    """TCP connections of `side` to the other side that are not yet closed (TIME-WAIT is)."""
    other = link.addr[GROUND if side == AIR else AIR]
    out = subprocess.run(
        [*link.exec_prefix(side), "ss", "-tanH", "dst", other],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("TIME-WAIT")]


def stanza(frm: str, to: str, ident: str, full: bool = True) -> bytes:
    f = f" from='{frm}'" if full else ""
    return f"<message{f} to='{to}' type='chat' id='{ident}'><body>{BODY}</body></message>".encode()


# -- zerolink -----------------------------------------------------------------------------------
def zerolink_toml(link: LinkEmu, me: str, tmp: Path, *, tls: bool, idle: float) -> str:
    other = GROUND if me == AIR else AIR
    tls_part = (
        f"""tls = true
certificate = "{tmp / "certs" / f"{me}.pem"}"
key = "{tmp / "certs" / f"{me}.key"}"

[peer.identity]
mode = "tls"
ca = "{tmp / "certs" / "ca.pem"}"
"""
        if tls
        else f"""
[peer.identity]
mode = "address"
addresses = ["{link.addr[other]}"]
"""
    )
    return f"""# generated by bench/first_stanza.py
[server]
name = "{me}"
domains = ["{DOMAIN[me]}"]
data_dir = "{tmp / f"{me}-data"}"
log_level = "info"

[component_listener]
listen = "127.0.0.1:5347"

[[component]]
domain = "bot.{DOMAIN[me]}"
secret = "{SECRET}"

[[peer]]
name = "{other}"
domains = ["{DOMAIN[other]}", "*.{DOMAIN[other]}"]
remote = "{link.addr[other]}:5269"
listen = "{link.addr[me]}:5269"
direction = "both"
connect = "on-demand"
idle_timeout = {idle}
connect_timeout = {max(30, 10 * link.rtt)}
{tls_part}"""


async def run_zerolink(
    link: LinkEmu, tmp: Path, results: list[Result], *, tls: bool, burst: int, timeout: float
) -> None:
    """The X2X scenarios of one pair of daemons; each measurement is appended to `results`."""
    rtt, rate = link.rtt, link.rate
    tmp.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    streams: list[Stream] = []
    name = "x2x-tls" if tls else "x2x-plain"
    try:
        for side in (AIR, GROUND):
            cfg = tmp / f"{side}.toml"
            cfg.write_text(zerolink_toml(link, side, tmp, tls=tls, idle=2 if tls else 600))
            argv = [
                *link.exec_prefix(side),
                sys.executable,
                "-m",
                "zerolink",
                "run",
                "-c",
                str(cfg),
            ]
            procs.append(Proc(f"zerolink {side}", argv, tmp / f"{side}.log"))
        sender = await component(link, AIR, 5347, "bot.air.example", procs)
        receiver = await component(link, GROUND, 5347, "bot.ground.example", procs)
        streams += [sender, receiver]
        sender.start_counting()  # bounces come back to the sender
        receiver.start_counting()
        await asyncio.sleep(0.5)
        if link.snapshot():
            raise BenchError(f"{len(link.snapshot())} packets crossed the link before t0")
        frm, to = "pilot@bot.air.example/cockpit", "ops@bot.ground.example/desk"

        async def one(label: str, n: int, ident: str) -> Result:
            r = Result(label, rtt, rate, ok=False)
            results.append(r)
            before = len(receiver.arrivals)
            data = b"".join(stanza(frm, to, f"{ident}{i}") for i in range(n))
            t0 = time.monotonic()
            sender.writer.write(data)
            try:
                await receiver.wait_messages(before + n, timeout)
            except TimeoutError:
                r.note = f"not delivered within {timeout:g} s ({sender.errors} bounced)"
                return r
            t1 = receiver.arrivals[before + n - 1]
            await measure(link, r, t0, t1)
            r.ok = sender.errors == 0
            r.extra["stanza_bytes"] = len(data) // n
            if n > 1:
                r.extra["first_arrival_s"] = receiver.arrivals[before] - t0
            return r

        first = await one(name, 1, "m")
        air_log = procs[0]
        if tls:
            m = TLS_LOG_RE.search(air_log.text())
            if m:
                first.note = f"{m.group(1)}, air's log: {m.group(3)} B sent, {m.group(4)} B rcvd"
        if not first.ok:
            return
        if burst and not tls:
            await wait_quiet(link, 1.0)
            b = await one("x2x-burst", burst, "b")
            b.note = f"{burst} x {b.extra.get('stanza_bytes')} B stanzas, connection up"
        if tls:
            # Let the opener close the idle connection (close exchange), then dial again.
            deadline = time.monotonic() + 60 + 20 * rtt
            while tcp_open(link, AIR) or tcp_open(link, GROUND):
                for p in procs:
                    p.check()
                if time.monotonic() > deadline:
                    raise BenchError("the idle X2X connection did not close")
                await asyncio.sleep(0.2)
            await wait_quiet(link, 1.0)
            res = await one("x2x-tls-resumed", 1, "r")
            found = TLS_LOG_RE.findall(air_log.text())
            if len(found) >= 2:
                ver, kind, sent, rcvd = found[1]
                res.note = f"{ver} {kind}, air's log: {sent} B sent, {rcvd} B rcvd"
                if kind != "session resumed":
                    res.note = "NOT RESUMED: " + res.note
    finally:
        for s in streams:
            s.close()
        for p in procs:
            p.stop()


# -- Prosody ------------------------------------------------------------------------------------
def lua(s: str | Path) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def prosody_cfg(link: LinkEmu, me: str, tmp: Path, *, trust_ca: bool) -> str:
    certs = tmp / "certs"
    cafile = f"; cafile = {lua(certs / 'ca.pem')}" if trust_ca else ""
    return f"""-- generated by bench/first_stanza.py: Prosody's defaults for S2S except where noted
data_path = {lua(tmp / f"{me}-data")}
pidfile = {lua(tmp / f"{me}-data" / "prosody.pid")}
run_as_root = true
interfaces = {{ "127.0.0.1" }}          -- clients: loopback of this namespace
c2s_ports = {{ 5222 }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
component_ports = {{ }}
s2s_interfaces = {{ {lua(link.addr[me])} }}  -- S2S: the link address
s2s_ports = {{ 5269 }}
c2s_require_encryption = false         -- the bench clients are on loopback
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
s2s_timeout = 600                      -- default 90 s: measure, do not give up
unbound = {{ resolvconf = {lua(tmp / "resolv.conf")} }}   -- the bench's DNS in this namespace
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "posix" }}
log = {{ {{ levels = {{ min = "debug" }}, to = "console" }} }}
VirtualHost {lua(DOMAIN[me])}
    ssl = {{ certificate = {lua(certs / f"{me}.pem")}; key = {lua(certs / f"{me}.key")}{cafile} }}
"""


async def prosodyctl(cfg: Path, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "prosodyctl",
        "--config",
        str(cfg),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise BenchError(f"prosodyctl {' '.join(args)}: {out.decode(errors='replace')}")


def prosody_mechanism(log_text: str) -> str:
    if re.search(r"SASL EXTERNAL with \S+ succeeded", log_text):
        return "STARTTLS + SASL EXTERNAL"
    if re.search(r"dialback|db:result", log_text, re.I):
        return (
            "STARTTLS + dialback"
            if "STARTTLS" in log_text or "starttls" in log_text
            else "dialback"
        )
    return "?"


async def run_prosody(link: LinkEmu, tmp: Path, *, trust_ca: bool, timeout: float) -> Result:
    name = "prosody-sasl" if trust_ca else "prosody-dialback"
    r = Result(name, link.rtt, link.rate, ok=False)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    procs: list[Proc] = []
    streams: list[Stream] = []
    dnss: list[TinyDNS] = []
    try:
        cfgs = {}
        for side in (AIR, GROUND):
            (tmp / f"{side}-data").mkdir(exist_ok=True)
            cfgs[side] = tmp / f"prosody-{side}.cfg.lua"
            cfgs[side].write_text(prosody_cfg(link, side, tmp, trust_ca=trust_ca))
            dnss.append(TinyDNS(link, side))
        await prosodyctl(cfgs[AIR], "register", "pilot", DOMAIN[AIR], "pw-pilot")
        await prosodyctl(cfgs[GROUND], "register", "ops", DOMAIN[GROUND], "pw-ops")
        for side in (AIR, GROUND):
            argv = [*link.exec_prefix(side), "prosody", "--config", str(cfgs[side]), "-F"]
            procs.append(
                Proc(f"prosody {side}", argv, tmp / f"prosody-{side}.log", {"LANG": "C.UTF-8"})
            )
        sender = await c2s_client(link, AIR, 5222, "pilot", "pw-pilot", procs)
        receiver = await c2s_client(link, GROUND, 5222, "ops", "pw-ops", procs)
        streams += [sender, receiver]
        sender.start_counting()
        receiver.start_counting()
        await asyncio.sleep(0.5)
        if link.snapshot():
            raise BenchError(f"{len(link.snapshot())} packets crossed the link before t0")
        data = stanza("", "ops@ground.example/bench", "m0", full=False)
        t0 = time.monotonic()
        sender.writer.write(data)
        try:
            await receiver.wait_messages(1, timeout)
        except TimeoutError:
            r.note = f"not delivered within {timeout:g} s ({sender.errors} bounced)"
            return r
        await measure(link, r, t0, receiver.arrivals[0])
        r.ok = sender.errors == 0
        air_log, ground_log = procs[0].text(), procs[1].text()
        r.note = prosody_mechanism(air_log + ground_log)
        tls = re.findall(r"(TLSv1\.\d)", air_log)
        if tls:
            r.note += f", {tls[0]}"
        conns = sum(1 for p in link.window(t0, t0 + r.seconds) if p.flags == "S" and not p.retrans)
        r.extra["tcp_connections"] = conns
        r.note += f", {conns} TCP connection{'s' if conns > 1 else ''}"
        r.extra["dns_queries"] = sorted({q for d in dnss for q in d.queries})
        return r
    finally:
        for s in streams:
            s.close()
        for p in procs:
            p.stop()
        for d in dnss:
            d.stop()


# -- driver -------------------------------------------------------------------------------------
def gen_certs(tmp: Path) -> None:
    certs = tmp / "certs"
    run = [sys.executable, "-m", "zerolink", "gen-cert"]
    for args in (
        ["--ca-only", "--out", str(certs)],
        ["air.example", "--name", "air", "--out", str(certs)],
        ["ground.example", "--name", "ground", "--out", str(certs)],
    ):
        if "--ca-only" not in args:
            args += ["--ca", str(certs / "ca.pem"), "--ca-key", str(certs / "ca.key")]
        res = subprocess.run([*run, *args], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise BenchError(f"zerolink gen-cert {' '.join(args)}: {res.stderr or res.stdout}")


def self_test(rtt: float, args: argparse.Namespace) -> str:
    """Ping through a fresh link: the emulator's own error, before anything is measured."""
    with LinkEmu(rtt=rtt, rate=args.rate, queue_limit=args.queue_limit, mtu=args.mtu) as link:
        expected = rtt + 2 * 84 * 8 / args.rate
        got = ping(link, 3, expected + 0.2, 3 * rtt + 5)
        late = link.lateness()
    shown = ", ".join("lost" if t is None else f"{t * 1000:.1f}" for t in got)
    return (
        f"ping through the link (84-byte packets): {shown} ms, expected {expected * 1000:.1f} ms "
        f"(RTT + 2 x serialization); emulator lateness max {1000 * max(late, default=0):.1f} ms"
    )


async def run_all(args: argparse.Namespace, tmp: Path) -> list[Result]:
    results: list[Result] = []
    gen_certs(tmp)
    for rtt in args.rtt:
        timeout = 120 + 60 * rtt * max(1.0, 2400 / args.rate)
        args.self_test[rtt] = self_test(rtt, args)
        print(f"  R = {rtt:g} s: {args.self_test[rtt]}", file=sys.stderr, flush=True)
        for sc in args.scenarios:
            print(
                f"  R = {rtt:g} s, B = {args.rate:g} bit/s: {sc} ...", file=sys.stderr, flush=True
            )
            work = tmp / f"r{rtt:g}-{sc}"
            work.mkdir()
            (work / "certs").symlink_to(tmp / "certs")
            t_start = time.monotonic()
            with LinkEmu(
                rtt=rtt, rate=args.rate, queue_limit=args.queue_limit, mtu=args.mtu
            ) as link:
                got: list[Result] = []
                try:
                    if sc.startswith("x2x"):
                        await run_zerolink(
                            link, work, got, tls=sc == "x2x-tls", burst=args.burst, timeout=timeout
                        )
                    else:
                        got.append(
                            await run_prosody(
                                link, work, trust_ca=sc == "prosody-sasl", timeout=timeout
                            )
                        )
                except (BenchError, LinkEmuError, OSError) as exc:
                    got.append(Result(sc, rtt, args.rate, ok=False, note=f"failed: {exc}"))
                results += got
            for r in got:
                state = f"{r.seconds:.2f} s" if r.ok else f"FAILED ({r.note})"
                print(f"    {r.scenario}: {state}", file=sys.stderr, flush=True)
            print(
                f"    (scenario took {time.monotonic() - t_start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return results


ORDER = ["x2x-plain", "x2x-tls", "x2x-tls-resumed", "prosody-sasl", "prosody-dialback", "x2x-burst"]
LABEL = {
    "x2x-plain": "zerolink X2X, plain TCP",
    "x2x-tls": "zerolink X2X, TLS 1.3 full handshake",
    "x2x-tls-resumed": "zerolink X2X, TLS 1.3 resumed",
    "prosody-sasl": "Prosody S2S, STARTTLS + SASL EXTERNAL",
    "prosody-dialback": "Prosody S2S, STARTTLS + dialback",
    "x2x-burst": "zerolink X2X plain, 20-msg burst, link up",
}


def print_tables(results: list[Result], args: argparse.Namespace) -> None:
    for rtt in args.rtt:
        rows = sorted(
            (r for r in results if r.rtt == rtt),
            key=lambda r: ORDER.index(r.scenario) if r.scenario in ORDER else 99,
        )
        print(
            f"\nR = {rtt:g} s round trip, B = {args.rate:g} bit/s each way "
            f"(emulated link, IP bytes incl. TCP/IP headers; up = air -> ground)"
        )
        head = (
            f"{'scenario':<43} {'time (s)':>8} {'RTTs':>5} {'bytes up':>8} {'down':>6} "
            f"{'pkts up/down':>12} {'rexmit (B)':>11}  notes"
        )
        if rtt in args.self_test:
            print(args.self_test[rtt])
        print(head)
        print("-" * (len(head) + 30))
        for r in rows:
            label = LABEL.get(r.scenario, r.scenario)
            if not r.ok:
                why = (r.note.splitlines() or ["failed"])[0][:100]
                print(f"{label:<43} {'--':>8} {'--':>5} {'':>8} {'':>6} {'':>12} {'':>11}  {why}")
                continue
            if r.scenario == "x2x-burst" and "burst" in label:
                label = label.replace("20", str(args.burst))
            print(
                f"{label:<43} {r.seconds:8.2f} {r.rtts:5.2f} {r.bytes_up:8,} {r.bytes_down:6,} "
                f"{f'{r.packets_up}/{r.packets_down}':>12} "
                f"{f'{r.retrans} ({r.retrans_bytes:,})':>11}  {r.note}"
            )
        plain = next((r for r in rows if r.scenario == "x2x-plain" and r.ok), None)
        if plain:
            sb = plain.extra.get("stanza_bytes", 0)
            # SYN 60 B up, SYN-ACK 60 B down, ACK 52 B + data (52 + stanza) up: serialization
            ser = (60 + 60 + 52 + 52 + int(sb)) * 8 / args.rate
            print(
                f"model for X2X plain: 1.5 x {rtt:g} s + serialization of SYN, SYN-ACK, ACK and "
                f"the {sb}-byte stanza's segment ({ser:.2f} s) = {1.5 * rtt + ser:.2f} s"
            )


def chart(results: list[Result], args: argparse.Namespace, path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart: matplotlib is not installed (pip install matplotlib)"
    names = [s for s in ORDER if s != "x2x-burst" and any(r.scenario == s for r in results)]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.9 + 0.55 * len(names) * len(args.rtt)))
    height = 0.8 / len(args.rtt)
    for k, rtt in enumerate(args.rtt):
        by = {r.scenario: r for r in results if r.rtt == rtt and r.ok}
        ys = [i + k * height for i in range(len(names))]
        secs = [by[s].seconds if s in by else 0 for s in names]
        kb = [(by[s].bytes_up + by[s].bytes_down) / 1000 if s in by else 0 for s in names]
        for ax, vals, fmt in ((axes[0], secs, "{:.1f} s"), (axes[1], kb, "{:.2f} KB")):
            bars = ax.barh(ys, vals, height, label=f"RTT {rtt:g} s")
            for bar, v in zip(bars, vals, strict=True):
                if v:
                    ax.text(
                        v, bar.get_y() + height / 2, " " + fmt.format(v), va="center", fontsize=8
                    )
    for ax, title in (
        (axes[0], "time to the first stanza (s)"),
        (axes[1], "bytes on the link before it, both ways (KB)"),
    ):
        ax.set_yticks([i + height * (len(args.rtt) - 1) / 2 for i in range(len(names))])
        ax.set_yticklabels([LABEL[s] for s in names], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
        ax.margins(x=0.2)
    axes[1].set_yticklabels([])
    fig.suptitle(f"First stanza over an emulated link at {args.rate:g} bit/s each way", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return f"chart: {path}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--rtt", type=float, nargs="+", default=[1.0, 3.0], help="round trips in s (1 3)"
    )
    ap.add_argument("--rate", type=float, default=2400, help="bit/s each way (2400)")
    ap.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (x2x-tls includes the resumed "
        "connection, x2x-plain the burst)",
    )
    ap.add_argument("--burst", type=int, default=20, help="messages in the burst (20; 0: none)")
    ap.add_argument("--queue-limit", type=int, default=0, help="emulator queue, bytes (0: none)")
    ap.add_argument("--mtu", type=int, default=1500, help="MTU of the emulated link (1500)")
    ap.add_argument("--chart", default="bench/out/first_stanza.png", help="PNG path ('' for none)")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    ap.add_argument("--trace", action="store_true", help="print every packet of each measurement")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (configs, logs)")
    args = ap.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.self_test = {}
    bad = [s for s in args.scenarios if s not in SCENARIOS]
    if bad:
        ap.error(f"unknown scenario(s) {', '.join(bad)}; choose from {', '.join(SCENARIOS)}")
    if args.rate <= 0 or any(r < 0 for r in args.rtt):
        ap.error("--rate must be > 0 and --rtt >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces, TUN devices)", file=sys.stderr)
        return 2
    if any(s.startswith("prosody") for s in args.scenarios) and not shutil.which("prosody"):
        print("prosody not found: drop the prosody-* scenarios or install it", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanups, as Ctrl-C does
    tmp = Path(tempfile.mkdtemp(prefix="zerolink-first-stanza-"))
    t_start = time.monotonic()
    try:
        results = asyncio.run(run_all(args, tmp))
    except (BenchError, LinkEmuError, OSError) as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: servers stopped, namespaces deleted", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"work folder kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\nfirst stanza after the link comes up; {len(results)} measurements in "
        f"{time.monotonic() - t_start:.0f} s"
    )
    print_tables(results, args)
    for r in results:
        if not r.ok and "\n" in r.note:
            print(f"\n{r.scenario}, R = {r.rtt:g} s: {r.note}")
    worst = max((r.lateness_ms for r in results), default=0.0)
    print(f"\nemulator timing error (packet written later than due): at most {worst:.1f} ms")
    if args.chart:
        print(chart(results, args, Path(args.chart)))
    if args.trace:
        for r in results:
            print(
                f"\n{r.scenario}, R = {r.rtt:g} s: packets (entered -> left the link, s after t0)"
            )
            print("\n".join(r.trace))
    if args.json:
        print(json.dumps([{**asdict(r), "rtts": r.rtts} for r in results], indent=2))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
