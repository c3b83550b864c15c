"""Nothing acknowledged is lost: a full disk under the link logs, and answers that must not
overtake the commit of what came before them (daemons as processes, killed with SIGKILL).

A full disk is a tmpfs of a few hundred KiB mounted by the test over the daemon's data folder
(root only), filled with a file that the test removes to give the space back.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from slixmpp import ClientXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from conftest import AIR_IP, Side, free_port, require_root
from daemons import until
from test_reliable import RawComponent

pytestmark = pytest.mark.asyncio


@contextlib.contextmanager
def small_disk(path: Path, size_kib: int):
    """A tmpfs of `size_kib` KiB at `path` for the duration."""
    require_root("mounting a small tmpfs (a disk that fills up)")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path, leave_kib: int) -> Path:
    """Write a filler file that leaves about `leave_kib` KiB free; returns it."""
    import os

    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    filler = folder / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave_kib * 1024))
    return filler


class Replies(RawComponent):
    """A raw component that also records every error it gets back: (body, condition)."""

    def __init__(self, *a: object) -> None:
        super().__init__(*a)  # type: ignore[arg-type]
        self.refused: list[tuple[str, str]] = []
        self.raw = b""

    async def _read(self) -> None:
        while data := await self.reader.read(65536):
            self.raw += data
            self._buf += data
            *done, self._buf = self._buf.split(b"</message>")
            for chunk in done:
                body = re.search(rb"<body>([^<]*)</body>", chunk)
                if b"type='error'" in chunk:
                    body = re.search(rb" id='([^']*)'", chunk)  # errors do not echo the body
                    cond = re.search(
                        rb"<([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'", chunk
                    )
                    self.refused.append(
                        (
                            body.group(1).decode() if body else "",
                            cond.group(1).decode() if cond else "",
                        )
                    )
                elif body:
                    text = body.group(1).decode()
                    (self.markers if text.startswith("marker") else self.bodies).append(text)


def msg(frm: str, to: str, body: str, pad: str = "") -> str:
    return (
        f"<message from='{frm}' to='{to}' id='{body}'><body>{body}</body>"
        f"<x xmlns='urn:pad'>{pad}</x></message>"
    )


async def test_full_disk_refuses_at_once_loses_nothing_and_recovers(tmp_path, procs, sides):
    """Ground down, air's data folder fills up while 600 messages arrive for the link: each is
    either accepted (and delivered once, even across a kill -9 of air) or refused at once with
    resource-constraint; one log line when writes start failing, one when they work again."""
    air, ground = sides
    with small_disk(tmp_path / "air-data", 2048) as data:
        a = procs(air, ground, tmp_path).start()
        await a.serving()
        src = await Replies(air.bot, air.ip, air.comp_port).start()
        frm, to, pad = f"pilot@{air.bot}", f"ops@{ground.bot}", "p" * 1000
        try:
            # Warm up (the database and its WAL exist), then leave ~200 KiB.
            src.writer.write(msg(frm, to, "w0", pad).encode())
            await until(lambda: a.queued() == 1, 10, "first message stored", a)
            filler = fill(data, 200)
            for i in range(0, 600, 20):  # 30 reads, so 30 commits (or refusals)
                src.writer.write(
                    "".join(msg(frm, to, str(j), pad) for j in range(i, i + 20)).encode()
                )
                await src.writer.drain()
                await asyncio.sleep(0.02)
            src.writer.write(msg(frm, to, "marker refused").encode())
            # The marker comes after every one of the 600 (order is kept): once its bounce is
            # in, every refusal is in. "At once": seconds, not the stanza timeout.
            await until(
                lambda: any(b == "marker refused" for b, _ in src.refused),
                10,
                "the marker refused",
                a,
            )
            refused = {b for b, c in src.refused if c == "resource-constraint"}
            assert {c for _, c in src.refused} == {"resource-constraint"}
            assert 0 < len(refused - {"marker refused"}) < 600
            accepted = {str(i) for i in range(600)} - refused
            assert accepted, "nothing was stored before the disk filled up"
            log = a.log()
            assert log.count("link logs cannot be written") == 1, log[-3000:]
            assert "Traceback" not in log and "Exception in callback" not in log, log[-3000:]

            # Space comes back: acceptance resumes by itself (within the trial interval).
            filler.unlink()
            later = [f"L{i}" for i in range(20)]
            await asyncio.sleep(1.1)  # past the one-second trial interval, so a trial is due
            src.writer.write("".join(msg(frm, to, b, pad) for b in later).encode())
            want = 1 + len(accepted) + len(later)
            await until(lambda: a.queued() == want, 10, "the later messages stored", a)
            await until(
                lambda: "link logs can be written again" in a.log(), 5, "recovery logged", a
            )
            assert not set(later) & {b for b, _ in src.refused}

            # Kill -9 air, restart it, bring ground up: exactly the accepted ones arrive.
            a.kill9()
            await src.close()
            g = procs(ground, air, tmp_path).start()
            await g.serving()
            dst = await Replies(ground.bot, ground.ip, ground.comp_port).start()
            a.start()
            await a.serving()
            src = await Replies(air.bot, air.ip, air.comp_port).start()
            expected = ["w0", *sorted(accepted, key=int), *later]
            await until(lambda: len(dst.bodies) >= len(expected), 20, "delivery", a, g)
            await until(lambda: a.queued() == 0, 10, "all acknowledged", a, g)
            src.writer.write(msg(frm, to, "marker end").encode())
            await until(lambda: "marker end" in dst.markers, 10, "end marker", a, g)
            assert dst.bodies == expected  # nothing lost, nothing refused delivered, in order
            await dst.close()
        finally:
            await src.close()
            await a.stop()


# -- an answer goes out only after what came before it is durable ------------------------------


class Pilot(ClientXMPP):
    def __init__(self, side: Side, cafile: Path) -> None:
        super().__init__("pilot@air.example/cockpit", "pilot-pw")
        self.side = side
        self.ssl_context = ssl.create_default_context(cafile=str(cafile))

    def answer_to(self, iq_id: str) -> asyncio.Event:
        """Set when the iq with this id is answered (whatever the answer)."""
        done = asyncio.Event()
        self.register_handler(
            Callback(
                f"answer {iq_id}",
                MatchXPath("{jabber:client}iq"),
                lambda iq: done.set() if iq["id"] == iq_id else None,
            )
        )
        return done

    async def start(self) -> Pilot:
        self.connect(self.side.ip, self.side.c2s_port)
        await self.wait_until("session_start", timeout=10)
        return self


async def test_an_answer_never_overtakes_the_commit_of_earlier_stanzas(tmp_path, procs, sides):
    """10 messages for the link and a ping in one write; kill -9 the moment the ping's
    answer is read: the 10 are in air's link log every time (10 rounds)."""
    air, ground = sides
    air.c2s_port = free_port(AIR_IP)
    air.extra = f'[host]\nlisten = "{air.ip}:{air.c2s_port}"\n'
    a = procs(air, ground, tmp_path)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "zerolink",
            "user",
            "-c",
            str(a.config),
            "add",
            "pilot@air.example",
            "--password",
            "pilot-pw",
        ],
        check=True,
        capture_output=True,
    )
    lost = 0
    stored = 0
    for rnd in range(10):
        a.start()
        await a.serving()
        cafile = a.config.parent / f"{a.config.stem}-data" / "tls" / "self-signed.pem"
        c = await Pilot(air, cafile).start()
        pong = c.answer_to(f"p{rnd}")
        before = a.queued()
        burst = (
            "".join(
                f"<message to='ops@ground.example' id='r{rnd}m{i}'><body>{rnd}.{i}</body></message>"
                for i in range(10)
            )
            + f"<iq type='get' id='p{rnd}' to='air.example'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        c.send_raw(burst)
        await asyncio.wait_for(pong.wait(), 10)
        a.kill9()
        c.abort()
        after = a.queued()
        lost += before + 10 - after
        stored = after
    assert lost == 0, f"{lost} acknowledged stanzas lost over 10 kills"
    assert stored == 100


# -- the host's store: a full disk, and kill -9 under load -----------------------------------


def add_users(daemon, *users: str) -> None:
    for user in users:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "zerolink",
                "user",
                "-c",
                str(daemon.config),
                "add",
                user,
                "--password",
                "pw",
            ],
            check=True,
            capture_output=True,
        )


class User(Pilot):
    def __init__(self, jid: str, side: Side, cafile: Path) -> None:
        ClientXMPP.__init__(self, jid, "pw")
        self.side = side
        self.ssl_context = ssl.create_default_context(cafile=str(cafile))
        self.replies: dict[str, str] = {}  # iq or message id -> "result" or the error condition
        self.register_handler(Callback("all iq", MatchXPath("{jabber:client}iq"), self._iq))
        self.add_event_handler(
            "message_error", lambda m: self.replies.__setitem__(m["id"], m["error"]["condition"])
        )

    def _iq(self, iq) -> None:
        self.replies[iq["id"]] = iq["error"]["condition"] if iq["type"] == "error" else iq["type"]

    async def reply(self, ident: str, timeout: float = 10) -> str:
        await until(lambda: ident in self.replies, timeout, f"the answer to {ident}")
        return self.replies[ident]


def hosted_air(air: Side) -> None:
    air.c2s_port = free_port(AIR_IP)
    air.extra = f'[host]\nlisten = "{air.ip}:{air.c2s_port}"\n'


async def test_full_disk_under_the_host_store_refuses_stanzas_not_sessions(tmp_path, procs, sides):
    """Offline messages and roster changes that cannot be written come back to their sender
    with resource-constraint; the client stays connected; space back, they work."""
    air, ground = sides
    hosted_air(air)
    with small_disk(tmp_path / "air-data", 2048) as data:
        a = procs(air, ground, tmp_path)
        add_users(a, "pilot@air.example", "crew@air.example")
        a.start()
        await a.serving()
        cafile = data / "tls" / "self-signed.pem"
        pilot = await User("pilot@air.example/cockpit", air, cafile).start()
        try:
            filler = fill(data, 0)
            big = "x" * 60_000  # the WAL cannot grow: every write fails
            for i in range(5):
                pilot.send_raw(
                    f"<message to='crew@air.example' id='off{i}'><body>{big}</body></message>"
                )
                pilot.send_raw(
                    f"<iq type='set' id='r{i}'><query xmlns='jabber:iq:roster'>"
                    f"<item jid='c{i}@ground.example' name='{'n' * 200}'/></query></iq>"
                )
            for i in range(5):
                assert await pilot.reply(f"off{i}") == "resource-constraint"
                assert await pilot.reply(f"r{i}") == "resource-constraint"
            pilot.send_raw("<iq type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>")
            assert await pilot.reply("ping1") == "result"  # still connected
            log = a.log()
            assert log.count("host store cannot be written") == 1, log[-2000:]
            assert "Traceback" not in log
            filler.unlink()
            pilot.send_raw(
                "<message to='crew@air.example' id='later'><body>now it fits</body></message>"
            )
            pilot.send_raw(
                "<iq type='set' id='r-later'><query xmlns='jabber:iq:roster'>"
                "<item jid='later@ground.example'/></query></iq>"
            )
            assert await pilot.reply("r-later") == "result"
            crew = await User("crew@air.example/seat", air, cafile).start()
            got: list[str] = []
            crew.add_event_handler("message", lambda m: got.append(m["id"]))
            crew.send_presence()
            await until(lambda: "later" in got, 10, "the offline message")
            assert not any(g.startswith("off") for g in got)
            crew.abort()
        finally:
            pilot.abort()
            await a.stop()


async def test_kill_9_of_the_host_under_load_loses_nothing_acknowledged(tmp_path, procs, sides):
    """Messages for an offline user, each burst followed by a ping; kill -9 at random
    moments: after every restart the store is intact and holds every message sent before an
    answered ping."""
    import random
    import sqlite3

    air, ground = sides
    hosted_air(air)
    a = procs(air, ground, tmp_path)
    add_users(a, "pilot@air.example", "crew@air.example")
    db = a.config.parent / f"{a.config.stem}-data" / "zerolink.sqlite"
    acknowledged: set[str] = set()
    rng = random.Random()
    kills = 0
    for rnd in range(8):
        a.start()
        await a.serving()
        cafile = a.config.parent / f"{a.config.stem}-data" / "tls" / "self-signed.pem"
        pilot = await User("pilot@air.example/cockpit", air, cafile).start()
        sent: list[str] = []
        kill_at = rng.uniform(0.05, 0.4)
        loop = asyncio.get_running_loop()
        start = loop.time()
        burst = 0
        while loop.time() - start < kill_at:
            ids = [f"k{rnd}b{burst}m{i}" for i in range(10)]
            pilot.send_raw(
                "".join(
                    f"<message to='crew@air.example' id='{m}'><body>{m}</body></message>"
                    for m in ids
                )
                + f"<iq type='get' id='k{rnd}b{burst}p'><ping xmlns='urn:xmpp:ping'/></iq>"
            )
            sent.append((ids, f"k{rnd}b{burst}p"))  # type: ignore[arg-type]
            burst += 1
            await asyncio.sleep(0.005)
        a.kill9()
        kills += 1
        pilot.abort()
        for ids, ping in sent:  # type: ignore[misc]
            if ping in pilot.replies:  # answered: what came before it was handled
                acknowledged.update(m for m in ids if m not in pilot.replies)  # not refused
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = {
                row[0].decode() if isinstance(row[0], bytes) else row[0]
                for row in conn.execute("SELECT stanza FROM offline_message")
            }
        have = {m for m in acknowledged if any(f"id='{m}'" in s for s in stored)}
        assert have == acknowledged, f"lost {len(acknowledged - have)} acknowledged messages"
    assert kills == 8 and acknowledged
