"""A daemon's life as an operator sees it: start on a bad machine, signals, shutdown with users
online, `zerolink user` beside a running server, the demo run twice, output into a pipe.

Daemons are real `zerolink` processes (signals go to them); clients are slixmpp.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from slixmpp import ClientXMPP

from conftest import AIR_IP, free_port
from zerolink.demo import ScriptSession

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def zerolink(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zerolink", *args], capture_output=True, text=True, timeout=60, **kw
    )


def host_config(tmp: Path, *, data_dir: str = "air-data", extra: str = "") -> Path:
    """air.example with its embedded host on a free port (and nothing else)."""
    port = free_port(AIR_IP)
    path = tmp / "air.toml"
    path.write_text(
        f"""
[server]
name = "air"
domains = ["air.example"]
data_dir = "{data_dir}"
log_level = "info"

[host]
listen = "{AIR_IP}:{port}"
{extra}
"""
    )
    return path


def c2s_port(config: Path) -> int:
    return int(re.search(rf'listen = "{AIR_IP}:(\d+)"', config.read_text()).group(1))


class Client(ClientXMPP):
    """A user's client, trusting the daemon's generated certificate."""

    def __init__(self, jid: str, password: str, cafile: Path) -> None:
        super().__init__(jid, password)
        self.ssl_context = ssl.create_default_context(cafile=str(cafile))
        self.register_plugin("xep_0199")
        self.presences: asyncio.Queue = asyncio.Queue()
        self.add_event_handler("presence", self.presences.put_nowait)
        self.gone = asyncio.Event()
        self.add_event_handler("disconnected", lambda _: self.gone.set())
        self.stream_errors: list[str] = []
        self.add_event_handler("stream_error", lambda e: self.stream_errors.append(e["condition"]))

    async def online(self, ip: str, port: int) -> Client:
        """Logged in, roster fetched, available."""
        self.connect(ip, port)
        await self.wait_until("session_start", timeout=10)
        await self.get_roster()
        self.send_presence()
        # our own available presence comes back: the server has processed it
        while True:
            p = await asyncio.wait_for(self.presences.get(), 10)
            if p["from"] == self.boundjid:
                return self

    async def stop(self) -> None:
        if self.is_connected():
            self.abort()


class Daemon:
    """`zerolink run -c CONFIG` with its log in a file (readable while it runs)."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.logfile = config.with_suffix(".log")
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Daemon:
        with self.logfile.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "zerolink",
                "run",
                "-c",
                str(self.config),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
            )
        await self.until(lambda log: ": serving " in log, "the daemon serving")
        return self

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    async def until(self, predicate: Callable[[str], bool], what: str, timeout: float = 20) -> str:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not predicate(text := self.log()):
            if self.proc.returncode is not None:
                raise AssertionError(
                    f"daemon exited ({self.proc.returncode}) before {what}:\n{text}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{text}")
            await asyncio.sleep(0.05)
        return text

    async def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        return self.proc.returncode, self.log()


@pytest.fixture
async def daemon() -> AsyncIterator[Callable[[Path], object]]:
    started: list[Daemon] = []

    async def start(config: Path) -> Daemon:
        d = Daemon(config)
        started.append(d)
        return await d.start()

    yield start
    for d in started:
        if d.proc is not None and d.proc.returncode is None:
            d.proc.kill()
            await d.proc.wait()


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed start prints (no traceback)."""
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


# -- item 4: shutdown with a client online ------------------------------------------------------
@pytest.mark.asyncio
async def test_sigterm_with_a_client_online_stops_cleanly(tmp_path: Path, daemon):
    config = host_config(tmp_path)
    res = zerolink("user", "-c", str(config), "add", "pilot@air.example", "--password", "pw")
    assert res.returncode == 0, res.stderr
    d = await daemon(config)
    client = Client("pilot@air.example/cockpit", "pw", tmp_path / "air-data/tls/self-signed.pem")
    await client.online(AIR_IP, c2s_port(config))
    try:
        code, log = await d.stop(signal.SIGTERM)
        assert "Traceback" not in log and "is closed" not in log, log
        assert code == 0, log
        assert "air: stopped" in log.splitlines()[-1], log
        # the client was told, with the RFC 6120 condition
        await asyncio.wait_for(client.gone.wait(), 10)
        assert client.stream_errors == ["system-shutdown"]
    finally:
        await client.stop()


# -- item 7: a machine that does not let the configuration run ----------------------------------
def test_data_dir_that_cannot_hold_the_database_is_a_one_line_error(tmp_path: Path):
    # The database file's place is taken by a folder: SQLite cannot open it, root or not.
    config = host_config(tmp_path)
    (tmp_path / "air-data" / "zerolink.sqlite").mkdir(parents=True)
    line = one_line_error(zerolink("run", "-c", str(config)))
    assert "cannot start: server.data_dir:" in line and "zerolink.sqlite" in line, line
    res = zerolink("user", "-c", str(config), "list")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "zerolink.sqlite" in res.stderr


def test_data_dir_under_a_regular_file_is_a_one_line_error(tmp_path: Path):
    (tmp_path / "plain-file").write_text("not a folder\n")
    config = host_config(tmp_path, data_dir="plain-file/data")
    line = one_line_error(zerolink("run", "-c", str(config)))
    assert "server.data_dir: cannot create" in line and "plain-file" in line, line
    res = zerolink("user", "-c", str(config), "add", "a@air.example", "--password", "x")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "plain-file" in res.stderr


@pytest.mark.parametrize(
    "broken, expected",
    [("certificate", "host.certificate: "), ("key", "host.key: ")],
)
def test_certificate_or_key_that_cannot_be_used_is_a_one_line_error(
    tmp_path: Path, broken: str, expected: str
):
    out = tmp_path / "tls"
    assert zerolink("gen-cert", "air.example", "--out", str(out)).returncode == 0
    files = {"certificate": out / "air.pem", "key": out / "air.key"}
    files[broken].write_text("this is not PEM\n")
    config = host_config(
        tmp_path, extra=f'certificate = "{files["certificate"]}"\nkey = "{files["key"]}"\n'
    )
    line = one_line_error(zerolink("run", "-c", str(config)))
    assert expected in line and str(files[broken]) in line, line


def test_key_of_another_certificate_is_a_one_line_error(tmp_path: Path):
    for name in ("one", "two"):
        res = zerolink("gen-cert", "air.example", "--out", str(tmp_path), "--name", name)
        assert res.returncode == 0, res.stderr
    config = host_config(
        tmp_path, extra=f'certificate = "{tmp_path / "one.pem"}"\nkey = "{tmp_path / "two.key"}"\n'
    )
    line = one_line_error(zerolink("run", "-c", str(config)))
    assert "host.key: " in line and "does not go with" in line, line


@pytest.mark.asyncio
async def test_certificate_gone_after_the_config_was_read(tmp_path: Path):
    """Between check-config and start (or as another user, without permission): unreadable."""
    from zerolink.app import Server, StartupError
    from zerolink.config import load_config

    assert zerolink("gen-cert", "air.example", "--out", str(tmp_path)).returncode == 0
    config = host_config(
        tmp_path, extra=f'certificate = "{tmp_path / "air.pem"}"\nkey = "{tmp_path / "air.key"}"\n'
    )
    cfg = load_config(config)
    (tmp_path / "air.pem").unlink()
    with pytest.raises(StartupError, match=r"^host\.certificate: cannot read .*air\.pem"):
        await Server(cfg).start()


# -- item 8: SIGHUP ---------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_sighup_is_logged_and_does_not_stop_the_server(tmp_path: Path, daemon):
    config = host_config(tmp_path)
    d = await daemon(config)
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    await d.until(lambda log: "SIGHUP" in log, "the SIGHUP log line")
    assert d.proc.returncode is None
    # still serving: a client connection is answered with a stream header
    reader, writer = await asyncio.open_connection(AIR_IP, c2s_port(config))
    writer.write(
        b"<?xml version='1.0'?><stream:stream to='air.example' version='1.0' "
        b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
    assert b"<stream:stream" in await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    code, log = await d.stop()
    assert code == 0 and "Traceback" not in log, log


def test_reopen_log_files_follows_a_rotated_file(tmp_path: Path):
    from zerolink.cli import reopen_log_files

    path = tmp_path / "zerolink.log"
    handler = logging.FileHandler(path)
    logger = logging.getLogger("zerolink")
    logger.addHandler(handler)
    try:
        logger.warning("before rotation")
        path.rename(tmp_path / "zerolink.log.1")  # what logrotate does
        assert reopen_log_files() >= 1  # pytest has its own file handler too
        logger.warning("after rotation")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert path.read_text().strip() == "after rotation"
    assert (tmp_path / "zerolink.log.1").read_text().strip() == "before rotation"


# -- item 12: `zerolink user` ---------------------------------------------------------------------
def test_user_command_on_a_config_without_host_says_so(tmp_path: Path):
    config = tmp_path / "relay.toml"
    config.write_text('[server]\nname = "relay"\ndomains = ["relay.example"]\ndata_dir = "d"\n')
    for args in (("list",), ("add", "a@relay.example", "--password", "x")):
        res = zerolink("user", "-c", str(config), *args)
        assert res.returncode == 1, res
        assert "hosts no users" in res.stderr and "[host]" in res.stderr
        assert "Traceback" not in res.stderr
    assert not (tmp_path / "d").exists()  # no data folder made for nothing


@pytest.mark.asyncio
async def test_user_delete_ends_the_sessions_of_the_running_server(tmp_path: Path, daemon):
    config = host_config(tmp_path)
    cfg = str(config)
    for user in ("pilot", "copilot"):
        res = zerolink("user", "-c", cfg, "add", f"{user}@air.example", "--password", "pw")
        assert res.returncode == 0, res.stderr
    d = await daemon(config)
    cafile = tmp_path / "air-data/tls/self-signed.pem"
    port = c2s_port(config)
    pilot = await Client("pilot@air.example/a", "pw", cafile).online(AIR_IP, port)
    copilot = await Client("copilot@air.example/b", "pw", cafile).online(AIR_IP, port)
    try:
        res = await asyncio.to_thread(zerolink, "user", "-c", cfg, "delete", "pilot@air.example")
        assert res.returncode == 0, res.stderr
        await asyncio.wait_for(pilot.gone.wait(), 10)
        assert pilot.stream_errors == ["not-authorized"]
        await d.until(lambda log: "pilot@air.example: account deleted" in log, "the log line")
        # the other user is untouched: a ping to the server is still answered
        await copilot.plugin["xep_0199"].ping("air.example", timeout=5)
        assert not copilot.gone.is_set()
    finally:
        await pilot.stop()
        await copilot.stop()
    code, log = await d.stop()
    assert code == 0 and "Traceback" not in log, log


# -- item 3 (and 4): the demo -------------------------------------------------------------------
class Demo:
    def __init__(self, base: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zerolink", "demo", "--dir", str(base), "--log-level", "info"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
        )
        self.lines: list[str] = []

    def wait_exchange(self, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "demo exchange complete" in line or "demo failed" in line:
                break
            assert time.monotonic() < deadline, "".join(self.lines)
        return "".join(self.lines)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        rest, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, "".join(self.lines) + rest

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def test_demo_runs_again_in_the_same_folder_and_stops_with_a_client_online(tmp_path: Path):
    first = Demo(tmp_path)
    try:
        assert "demo exchange complete" in first.wait_exchange()
        code, out = first.stop()
        assert code == 0, out
    finally:
        first.kill()
    second = Demo(tmp_path)  # the pair is subscribed now, from the first run
    try:
        out = second.wait_exchange()
        assert "demo exchange complete" in out, out
        assert "ops@ground.example received the request" in out
        password = re.search(r"pilot@air\.example\s+password (\S+)", out).group(1)

        async def online_then_ctrl_c() -> tuple[int, str]:
            cafile = tmp_path / "air-data/tls/self-signed.pem"
            client = await Client("pilot@air.example/gajim", password, cafile).online(AIR_IP, 5222)
            try:
                code, out = await asyncio.to_thread(second.stop)
                await asyncio.wait_for(client.gone.wait(), 10)
                return code, out
            finally:
                await client.stop()

        code, out = asyncio.run(online_then_ctrl_c())
        assert "Traceback" not in out and "is closed" not in out, out
        assert code == 0, out
        assert "air: stopped" in out and "ground: stopped" in out, out
    finally:
        second.kill()


@pytest.mark.asyncio
async def test_demo_failure_says_what_it_waited_for():
    session = ScriptSession("ops", 0.0)
    with pytest.raises(TimeoutError, match=r"^ops did not receive the subscription request"):
        await session.expect(lambda s: True, "the subscription request", 0.05)


# -- item 16: output into a closed pipe ---------------------------------------------------------
def test_output_into_a_closed_pipe_ends_quietly():
    """`zerolink check-config FILE | head`: the reader is gone before we write."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE: deterministic
    try:
        res = subprocess.run(
            [sys.executable, "-m", "zerolink", "check-config", str(EXAMPLES / "air.toml")],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
    assert res.stderr == ""
