"""`zerolink demo` as a user starts it: two servers, accounts, a scripted exchange, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def test_demo_runs_the_scripted_exchange_and_stops_on_ctrl_c(tmp_path: Path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zerolink",
            "demo",
            "--dir",
            str(tmp_path),
            "--rtt",
            "0.2",
            "--rate",
            "19200",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "demo exchange complete" in line or "demo failed" in line:
                break
            assert time.monotonic() < deadline, "".join(lines)
        out = "".join(lines)
        assert "demo exchange complete" in out, out
        # what a user needs to log in with a real client
        assert "pilot@air.example" in out and "ops@ground.example" in out
        assert "127.0.0.2:5222" in out and "127.0.0.3:5222" in out
        assert "roster items at 'both'" in out
        assert "ops got 'Position" in out and "pilot got the reply" in out
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out + rest
        assert "Traceback" not in out + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (tmp_path / "air-data" / "zerolink.sqlite").exists()
