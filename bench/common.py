"""Helpers shared by the benchmark scripts (throughput.py, idle_clients.py, first_stanza.py).

Raw XMPP bits (stream headers, the XEP-0114 handshake), free ports, /proc readings, the daemon
subprocess and the result tables. The scripts import it with their own folder on sys.path, so
that ``python bench/X.py`` works from the repository root.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

STREAMS_NS = "http://etherx.jabber.org/streams"
COMPONENT_NS = "jabber:component:accept"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The server's stream header and its id (group 2).
HEADER_ID_RE = re.compile(rb"<stream:stream\b[^>]*?\bid=(['\"])([^'\"]*)\1[^>]*>")
# The server's answer to a good XEP-0114 handshake.
HANDSHAKE_OK_RE = re.compile(rb"<handshake\s*/>|<handshake\s*>\s*</handshake>")


# -- raw XMPP ----------------------------------------------------------------------------------
def component_header(domain: str) -> bytes:
    """The opening of a XEP-0114 component stream to `domain`."""
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='{COMPONENT_NS}' "
        f"xmlns:stream='{STREAMS_NS}' to='{domain}'>"
    ).encode()


def client_header(domain: str) -> bytes:
    """The opening of an RFC 6120 client stream to `domain`."""
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{STREAMS_NS}' "
        f"to='{domain}' version='1.0'>"
    ).encode()


def handshake(stream_id: str, secret: str) -> bytes:
    """XEP-0114 ``<handshake>``: hex SHA-1 of the server's stream id + the shared secret."""
    digest = hashlib.sha1((stream_id + secret).encode()).hexdigest()
    return f"<handshake>{digest}</handshake>".encode()


# -- ports and processes -------------------------------------------------------------------------
def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def proc_cpu(pid: int) -> float:
    """utime + stime of a process in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class DaemonProcess:
    """One `python -m zerolink run -c CONFIG --log-level warning` subprocess.

    `name` labels it in errors (``air exited ...``); without one it is ``the daemon``.
    """

    def __init__(self, config: Path, log: Path, name: str | None = None) -> None:
        self.name = name
        self.config = config
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "zerolink", "run"),
                    *("-c", str(self.config), "--log-level", "warning"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name or 'the daemon'} exited with status {self.proc.returncode}:\n"
                f"{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def print_log_problems(self, ignore: str | None = None) -> None:
        """The last warnings, errors and tracebacks of its log on stderr (lines with `ignore`
        left out)."""
        tail = [
            line
            for line in self.log_tail(200).splitlines()
            if (" WARNING " in line or " ERROR " in line or "Traceback" in line)
            and (ignore is None or ignore not in line)
        ]
        if tail:
            print(f"--- {self.name or 'daemon'} log (warnings and errors):", file=sys.stderr)
            print("\n".join(tail[-20:]), file=sys.stderr)


async def wait_listening(
    host: str, port: int, daemon: DaemonProcess, timeout: float = 20.0
) -> None:
    """Wait until something accepts connections on host:port (the daemon must stay alive)."""
    deadline = time.monotonic() + timeout
    while True:
        daemon.check_alive()
        try:
            _, w = await asyncio.open_connection(host, port)
        except OSError:
            if time.monotonic() > deadline:
                prefix = f"{daemon.name}: " if daemon.name else ""
                raise RuntimeError(f"{prefix}nothing listens on {host}:{port}") from None
            await asyncio.sleep(0.05)
            continue
        w.close()
        with contextlib.suppress(OSError):
            await w.wait_closed()
        return


# -- output --------------------------------------------------------------------------------------
def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    vwidth = max(len(v) for _, v in rows)
    print(f"\n{title}")
    print("-" * (width + vwidth + 3))
    for k, v in rows:
        print(f"{k:<{width}}   {v:>{vwidth}}")
