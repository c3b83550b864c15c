"""A real Prosody for tests: config in a temporary folder, users, start, stop, restart.

Needs the `prosody` and `prosodyctl` commands (Debian package `prosody`, 0.12). Everything
listens on one loopback address given by the test (127.0.0.2 or 127.0.0.3): clients without
TLS on `c2s_port`, XEP-0114 components on `component_port`, no server-to-server.

    p = Prosody(tmp_path / "air", "air.example", "127.0.0.2", components={"ground.example": "s"})
    await p.register("pilot", "pilot-pw")
    await p.start()
    ...
    await p.restart()
    await p.stop()

Prosody's console log (debug level) goes to `p.log_path`; `p.log_tail()` returns its end for
failure messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
from pathlib import Path

from ports import free_port

PROSODY = "prosody"
PROSODYCTL = "prosodyctl"

MODULES = ("roster", "saslauth", "disco", "ping", "presence", "version", "posix")


class ProsodyError(RuntimeError):
    """Prosody is missing, would not start, or would not stop."""


def prosody_missing() -> str | None:
    """Why Prosody cannot be used here, or None when it can."""
    missing = [cmd for cmd in (PROSODY, PROSODYCTL) if shutil.which(cmd) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not found on PATH: these tests run a real Prosody. "
            "Install it with `apt-get install prosody` (Debian/Ubuntu; .ci/run does this)."
        )
    return None


def lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies (Linux), so that a
    killed or crashed test run leaves no Prosody behind holding its ports."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


async def port_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class Prosody:
    """One Prosody process serving `domain` on `ip`, with its config and data under `root`."""

    def __init__(
        self,
        root: Path,
        domain: str,
        ip: str,
        *,
        c2s_port: int | None = None,
        component_port: int | None = None,
        components: dict[str, str] | None = None,
        log_level: str = "debug",
        extra: str = "",
    ) -> None:
        self.root = Path(root)
        self.domain = domain
        self.ip = ip
        self.c2s_port = c2s_port or free_port(ip)
        self.component_port = component_port or free_port(ip)
        self.components = dict(components or {})
        self.log_level = log_level
        self.extra = extra
        self.config_path = self.root / "prosody.cfg.lua"
        self.data_dir = self.root / "data"
        self.certs_dir = self.root / "certs"
        self.log_path = self.root / "prosody.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.write_config()

    # ------------------------------------------------------------------ config

    def config_text(self) -> str:
        comps = "\n".join(
            f"Component {lua_string(d)}\n\tcomponent_secret = {lua_string(s)}\n"
            for d, s in self.components.items()
        )
        modules = "; ".join(lua_string(m) for m in MODULES)
        return f"""-- written by tests/prosody.py
data_path = {lua_string(str(self.data_dir))}
pidfile = {lua_string(str(self.data_dir / "prosody.pid"))}
certificates = {lua_string(str(self.certs_dir))}
run_as_root = true
interfaces = {{ {lua_string(self.ip)} }}
c2s_ports = {{ {self.c2s_port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
component_interfaces = {{ {lua_string(self.ip)} }}
component_ports = {{ {self.component_port} }}
s2s_ports = {{ }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
modules_enabled = {{ {modules} }}
modules_disabled = {{ "s2s" }}
log = {{ {{ levels = {{ min = {lua_string(self.log_level)} }}, to = "console" }} }}
{self.extra}
VirtualHost {lua_string(self.domain)}

{comps}"""

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self.certs_dir.mkdir(exist_ok=True)
        self.config_path.write_text(self.config_text())

    # ------------------------------------------------------------------ users

    async def prosodyctl(self, *args: str, timeout: float = 20.0) -> str:
        why = prosody_missing()
        if why:
            raise ProsodyError(why)
        proc = await asyncio.create_subprocess_exec(
            PROSODYCTL,
            "--config",
            str(self.config_path),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.root,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ProsodyError(f"prosodyctl {' '.join(args)} took more than {timeout}s") from None
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise ProsodyError(f"prosodyctl {' '.join(args)} exited {proc.returncode}: {text}")
        return text

    async def register(self, user: str, password: str) -> str:
        """Create `user@domain` (works whether or not Prosody is running)."""
        await self.prosodyctl("register", user, self.domain, password)
        return f"{user}@{self.domain}"

    # ------------------------------------------------------------------ process

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout: float = 15.0) -> None:
        """Start `prosody -F` and wait until the client and component ports accept."""
        why = prosody_missing()
        if why:
            raise ProsodyError(why)
        if self.running:
            return
        log = self.log_path.open("ab")
        log.write(f"===== start {self.starts + 1} =====\n".encode())
        log.flush()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                PROSODY,
                "--config",
                str(self.config_path),
                "-F",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.root,
                env={**os.environ, "LANG": "C.UTF-8"},
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self.starts += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.proc.returncode is not None:
                raise ProsodyError(
                    f"prosody for {self.domain} exited with {self.proc.returncode} at start:\n"
                    + self.log_tail()
                )
            if await port_open(self.ip, self.c2s_port) and (
                # Prosody opens its component port only when a Component is configured.
                not self.components or await port_open(self.ip, self.component_port)
            ):
                return
            if loop.time() > deadline:
                await self.stop()
                raise ProsodyError(
                    f"prosody for {self.domain} did not open {self.ip}:{self.c2s_port} and "
                    f":{self.component_port} within {timeout}s:\n" + self.log_tail()
                )
            await asyncio.sleep(0.05)

    async def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self.proc = None
        return proc.returncode

    async def kill(self) -> None:
        """SIGKILL: Prosody dies without closing its streams."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self.proc = None

    async def restart(self, timeout: float = 15.0) -> None:
        await self.stop()
        await self.start(timeout)

    # ------------------------------------------------------------------ diagnosis

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
