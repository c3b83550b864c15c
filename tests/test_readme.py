"""README.md as a new user reads it: its steps work, and it points only inside the repository."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from slixmpp import ClientXMPP

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def paragraph_before(text: str, block: str) -> str:
    """The paragraph just above a fenced block (what the reader sees next to the command)."""
    head = text[: text.index(block)].rstrip().removesuffix("```sh").rstrip()
    return head.rsplit("\n\n", 1)[-1]


def test_readme_points_only_inside_the_repository():
    text = README.read_text()
    assert "../" not in text, "README points outside the repository"
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path = (ROOT / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), f"broken link: {target}"


def test_readme_says_what_the_tests_need_next_to_the_command():
    text = README.read_text()
    block = next(b for b in sh_blocks(text) if "-m pytest" in b)
    before = paragraph_before(text, block)
    after = text[text.index(block) + len(block) :].split("\n\n", 2)[1]
    near = before + after
    for need in ("root", "Prosody", "openssl", "ip netns"):
        assert need in near, f"the test command's paragraphs do not mention {need}"


class Login(ClientXMPP):
    def __init__(self, jid: str, password: str, cafile: Path) -> None:
        super().__init__(jid, password)
        self.ssl_context = ssl.create_default_context(cafile=str(cafile))


def zerolink_argv(line: str) -> list[str]:
    argv = shlex.split(line)
    assert argv[0] == ".venv/bin/zerolink", line
    return [sys.executable, "-m", "zerolink", *argv[1:]]


async def test_readme_two_daemons_with_an_account_on_each_side(tmp_path: Path):
    """The README's block, run as written (in a copy of examples/), then stopped as it says."""
    text = README.read_text()
    block = next(b for b in sh_blocks(text) if "zerolink run -c examples/ground.toml" in b)
    (tmp_path / "examples").mkdir()
    for name in ("air.toml", "ground.toml"):
        shutil.copy(ROOT / "examples" / name, tmp_path / "examples" / name)
    lines = [line for line in block.splitlines() if line.strip()]
    adds = [line for line in lines if " user " in line]
    runs = [line for line in lines if " run " in line]
    assert len(runs) == 1 and " & " in runs[0], block

    # An account on each side that hosts users.
    accounts: dict[str, tuple[str, str]] = {}  # config name -> (jid, password)
    for line in adds:
        argv = zerolink_argv(line)
        config, jid = argv[argv.index("-c") + 1], argv[-1]
        password = f"pw-{jid.split('@')[0]}"
        res = subprocess.run(
            argv,
            input=f"{password}\n{password}\n",
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        accounts[config] = (jid, password)
    assert set(accounts) == {"examples/air.toml", "examples/ground.toml"}, block

    # `A & B`: A in the background, B in the foreground.
    background, foreground = (zerolink_argv(part) for part in runs[0].split(" & "))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        for argv in (background, foreground):
            config = argv[argv.index("-c") + 1]
            logs[config] = tmp_path / f"{Path(config).stem}.log"
            with open(logs[config], "wb") as out:
                procs[config] = subprocess.Popen(
                    argv, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=env
                )
        deadline = time.monotonic() + 20
        while not all(": up (" in logs[c].read_text() for c in procs):
            for c, proc in procs.items():
                assert proc.poll() is None, f"{c} exited:\n{logs[c].read_text()}"
            assert time.monotonic() < deadline, "\n".join(p.read_text() for p in logs.values())
            await asyncio.sleep(0.05)

        for config, (jid, password) in accounts.items():
            cfg = tomllib.loads((tmp_path / config).read_text())
            host, port = cfg["host"]["listen"].rsplit(":", 1)
            data = tmp_path / "examples" / cfg["server"]["data_dir"]
            client = Login(jid, password, data / "tls" / "self-signed.pem")
            failed = asyncio.Event()
            client.add_event_handler("failed_all_auth", lambda _e, f=failed: f.set())
            client.connect(host, int(port))
            started = asyncio.ensure_future(client.wait_until("session_start", timeout=10))
            auth_failed = asyncio.ensure_future(failed.wait())
            await asyncio.wait([started, auth_failed], return_when=asyncio.FIRST_COMPLETED)
            auth_failed.cancel()
            assert started.done() and not started.exception(), f"{jid} could not log in"
            client.disconnect(wait=1)
            await client.wait_until("disconnected", timeout=5)

        # Ctrl-C stops the foreground one, `kill %1` (SIGTERM) the background one.
        for argv, sig in ((foreground, signal.SIGINT), (background, signal.SIGTERM)):
            config = argv[argv.index("-c") + 1]
            procs[config].send_signal(sig)
            assert procs[config].wait(15) == 0, logs[config].read_text()
        for log in logs.values():
            assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
