"""The `zerolink` command as a user runs it: real processes, the example configs, slixmpp bots."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import AIR_IP, GROUND_IP, Bot, free_port

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def zerolink(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zerolink", *args], capture_output=True, text=True, timeout=60, **kw
    )


def test_check_config_accepts_the_examples():
    for name in ("air", "ground"):
        res = zerolink("check-config", str(EXAMPLES / f"{name}.toml"))
        assert res.returncode == 0, res.stderr
        assert f"server '{name}'" in res.stdout
        assert "peer '" in res.stdout
        assert "Traceback" not in res.stderr


def test_check_config_lists_every_problem_with_its_key_path(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        """
[server]
domains = ["air.example"]
log_levl = "info"

[[peer]]
name = "ground"
domains = []
remote = "127.0.0.3:99999"
direction = "sideways"
"""
    )
    res = zerolink("check-config", str(bad))
    assert res.returncode == 1
    err = res.stderr
    assert "Traceback" not in err
    assert "server.log_levl" in err and "log_level" in err  # unknown key, with suggestion
    assert "peer[0].domains" in err
    assert "peer[0].remote" in err
    assert "peer[0].direction" in err


def test_check_config_missing_file(tmp_path: Path):
    res = zerolink("check-config", str(tmp_path / "nope.toml"))
    assert res.returncode == 1
    assert "nope.toml" in res.stderr and "Traceback" not in res.stderr


def test_run_with_a_bad_config_exits_1_without_traceback(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\n")
    res = zerolink("run", "-c", str(bad))
    assert res.returncode == 1
    assert "server.domains" in res.stderr and "Traceback" not in res.stderr


def _example_pair(tmp_path: Path) -> dict[str, dict[str, int]]:
    """Copy the examples to tmp_path with free ports (the data folders land beside them)."""
    ports = {
        name: {"x2x": free_port(ip), "comp": free_port(ip), "c2s": free_port(ip)}
        for name, ip in (("air", AIR_IP), ("ground", GROUND_IP))
    }
    for name, ip, other, other_ip in (
        ("air", AIR_IP, "ground", GROUND_IP),
        ("ground", GROUND_IP, "air", AIR_IP),
    ):
        text = (EXAMPLES / f"{name}.toml").read_text()
        text = text.replace(f'"{ip}:5269"', f'"{ip}:{ports[name]["x2x"]}"')
        text = text.replace(f'"{other_ip}:5269"', f'"{other_ip}:{ports[other]["x2x"]}"')
        text = text.replace(f'"{ip}:5347"', f'"{ip}:{ports[name]["comp"]}"')
        text = text.replace(f'"{ip}:5222"', f'"{ip}:{ports[name]["c2s"]}"')
        (tmp_path / f"{name}.toml").write_text(text)
    return ports


@pytest.mark.asyncio
async def test_run_the_example_pair_as_two_processes(tmp_path: Path):
    ports = _example_pair(tmp_path)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = {
        name: await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "zerolink",
            "run",
            "-c",
            str(tmp_path / f"{name}.toml"),
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        for name in ("air", "ground")
    }
    logs: dict[str, bytes] = {}
    try:
        bots = {}
        for name, ip in (("air", AIR_IP), ("ground", GROUND_IP)):
            for _ in range(100):  # wait for the component port
                try:
                    _, w = await asyncio.open_connection(ip, ports[name]["comp"])
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            bots[name] = await Bot(f"bot.{name}.example", ports[name]["comp"], ip).start()
        air_bot, ground_bot = bots["air"], bots["ground"]
        # Sent at once: if the link is still coming up, the stanza waits in air's queue.
        air_bot.send_message(
            mto="ops@bot.ground.example", mfrom="pilot@bot.air.example", mbody="over the link"
        )
        assert (await ground_bot.next_message(10))["body"] == "over the link"
        ground_bot.send_message(
            mto="pilot@bot.air.example", mfrom="ops@bot.ground.example", mbody="roger"
        )
        assert (await air_bot.next_message(10))["body"] == "roger"
        for bot in bots.values():
            await bot.stop()
    finally:
        for name, proc in procs.items():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            try:
                _, err = await asyncio.wait_for(proc.communicate(), 20)
            except TimeoutError:
                proc.kill()
                _, err = await proc.communicate()
            logs[name] = err
    for name, proc in procs.items():
        text = logs[name].decode()
        assert proc.returncode == 0, text
        assert "Traceback" not in text
        assert "link " in text and ": up (" in text  # one line per link state change
    assert (tmp_path / "air-data").is_dir() and (tmp_path / "ground-data").is_dir()


def test_user_commands(tmp_path: Path):
    ports = _example_pair(tmp_path)
    del ports
    cfg = str(tmp_path / "air.toml")
    res = zerolink("user", "-c", cfg, "add", "Pilot@air.example", "--password", "s3cret")
    assert res.returncode == 0, res.stderr
    assert "created pilot@air.example" in res.stdout
    # an existing account, a domain not hosted, a full JID: clear errors, exit 1
    for args, expected in (
        (("add", "pilot@air.example", "--password", "x"), "already exists"),
        (("add", "ops@ground.example", "--password", "x"), "not hosted by this server"),
        (("add", "a@air.example/res", "--password", "x"), "bare JID"),
        (("add", "a b@air.example", "--password", "x"), "not a valid JID"),
        (("passwd", "nobody@air.example", "--password", "x"), "does not exist"),
        (("delete", "nobody@air.example"), "does not exist"),
    ):
        res = zerolink("user", "-c", cfg, *args)
        assert res.returncode == 1, args
        assert expected in res.stderr and "Traceback" not in res.stderr
    # password from stdin when not given
    res = zerolink("user", "-c", cfg, "add", "copilot@air.example", input="pw from stdin\n")
    assert res.returncode == 0, res.stderr
    res = zerolink("user", "-c", cfg, "list")
    assert res.stdout.split() == ["copilot@air.example", "pilot@air.example"]
    assert (
        zerolink("user", "-c", cfg, "passwd", "pilot@air.example", "--password", "n").returncode
        == 0
    )
    assert zerolink("user", "-c", cfg, "delete", "pilot@air.example").returncode == 0
    assert zerolink("user", "-c", cfg, "list", "air.example").stdout.split() == [
        "copilot@air.example"
    ]
    # the password is stored only as salted SCRAM keys
    raw = (tmp_path / "air-data" / "zerolink.sqlite").read_bytes()
    assert b"pw from stdin" not in raw


def test_user_add_never_shows_the_password(tmp_path: Path):
    """Neither the output nor an error names the password (an unusable one included)."""
    _example_pair(tmp_path)
    cfg = str(tmp_path / "air.toml")
    good, bad = "Secret-Of-The-Pilot-1", "Secret\x07Bell"
    runs = [
        zerolink("user", "-c", cfg, "add", "pilot@air.example", "--password", good),
        zerolink("user", "-c", cfg, "add", "copilot@air.example", input=good + "\n"),
        zerolink("user", "-c", cfg, "passwd", "pilot@air.example", "--password", bad),
        zerolink("user", "-c", cfg, "add", "pilot@air.example", "--password", good),
    ]
    assert [r.returncode for r in runs] == [0, 0, 1, 1]
    assert "unusable password" in runs[2].stderr
    for res in runs:
        for secret in (good, bad, "Secret"):
            assert secret not in res.stdout and secret not in res.stderr


@pytest.mark.asyncio
async def test_a_jid_cannot_forge_a_log_line(tmp_path: Path):
    """`&#10;` in a JID is a newline once decoded; the command's log still shows one line."""
    ports = _example_pair(tmp_path)
    forged = "2026-01-01 00:00:00,000 WARNING zerolink.link: link ground: up (forged)"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zerolink",
        "run",
        "-c",
        str(tmp_path / "air.toml"),
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert proc.stderr is not None
    lines: list[str] = []

    async def line_with(text: str) -> str:
        while True:
            raw = await asyncio.wait_for(proc.stderr.readline(), 10)
            assert raw, f"the daemon exited before logging {text!r}: {lines}"
            lines.append(raw.decode())
            if text in lines[-1]:
                return lines[-1]

    try:
        await line_with("components: listening on")
        bot = await Bot("bot.air.example", ports["air"]["comp"], AIR_IP).start()
        bot.send_raw(
            "<message from='pilot@bot.air.example' "
            f"to='ops@ground.example&#10;{forged}'><body>x</body></message>"
        )
        bounce = await line_with("bounced message from pilot@bot.air.example")
        await bot.stop()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), 20)
    lines += (rest or b"").decode().splitlines(keepends=True)
    assert "ops@ground.example\\n2026-01-01" in bounce
    assert not any(line.startswith("2026-01-01") for line in lines), lines
