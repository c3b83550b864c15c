"""Daemons as separate processes (`python -m zerolink run -c FILE`), for tests whose faults
must come from outside: SIGKILL, cuts by the kernel, full disks. `procs` (a fixture in
conftest.py) makes them; every one still running is stopped at the end of the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Side

# Fast timers: loopback round trips are microseconds.
FAST = {
    "acks": True,
    "ack_every": 10,
    "ack_delay": 0.05,
    "reconnect_min": 0.05,
    "reconnect_max": 0.2,
    "connect_timeout": 1,
    "close_timeout": 1,
    "initial_delay": 0,
}
# -- daemons as processes -------------------------------------------------------------------


class Daemon:
    """One `python -m zerolink run` process; its log (all runs, appended) in a file."""

    def __init__(self, side: Side, config: Path, prefix: tuple[str, ...] = ()) -> None:
        self.side = side
        self.config = config
        self.prefix = prefix  # e.g. ("ip", "netns", "exec", NS)
        self.log_path = config.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self._mark = 0  # log offset where the current run starts

    def start(self) -> Daemon:
        self._mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *self.prefix,
                    *(sys.executable, "-m", "zerolink", "run"),
                    *("-c", str(self.config), "--log-level", "info"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def log(self, whole: bool = True) -> str:
        text = self.log_path.read_bytes() if self.log_path.exists() else b""
        return text[0 if whole else self._mark :].decode(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def serving(self, timeout: float = 20) -> None:
        """Until this run's listeners are open (its log says so)."""
        await until(
            lambda: f"{self.side.name}: serving" in self.log(whole=False),
            timeout,
            f"{self.side.name} serving",
            self,
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        for _ in range(100):
            if proc.poll() is not None:
                return
            await asyncio.sleep(0.05)
        proc.kill()
        proc.wait(10)

    def _query(self, sql: str) -> tuple:
        db = self.config.parent / f"{self.config.stem}-data" / "zerolink.sqlite"
        with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
            return conn.execute(sql).fetchone() or (0,)

    def queued(self) -> int:
        """Rows in this daemon's durable outbound log (read beside the running process)."""
        return self._query("SELECT count(*) FROM link_out")[0]

    def received(self) -> int:
        """The inbound count this daemon has saved (what it acknowledges at most)."""
        return self._query("SELECT received FROM link_state")[0]


async def until(predicate: Callable[[], bool], timeout: float, what: str, *daemons: Daemon) -> None:
    """Poll `predicate`; on timeout fail with the daemons' log tails."""
    deadline = time.monotonic() + timeout
    while not predicate():
        dead = [d for d in daemons if not d.alive()]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(
                f"--- {d.side.name} ({'running' if d.alive() else 'exited'}) log tail:\n"
                + "\n".join(d.log().splitlines()[-25:])
                for d in daemons
            )
            reason = f"{dead[0].side.name} exited" if dead else f"timed out after {timeout}s"
            raise AssertionError(f"waiting for {what}: {reason}\n{tails}")
        await asyncio.sleep(0.005)
