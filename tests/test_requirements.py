"""The test suite's own needs: tests that need root, Prosody or openssl fail (never skip) with a
message naming what is missing, and the daemons' ports never clash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import conftest
from conftest import free_port, require_commands, require_openssl, require_prosody, require_root

ROOT = Path(__file__).resolve().parents[1]


def test_free_port_never_hands_out_a_port_twice():
    # bind(0) picks at random: among a few hundred picks the same port comes back (a config
    # with two listeners on it is then refused, and the test fails once in a while).
    ports = [free_port("127.0.0.2") for _ in range(500)]
    assert len(set(ports)) == len(ports)


def test_require_root_names_root_when_not_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.fail.Exception, match=r"needs root for ss -K: run the tests as root"):
        require_root("ss -K")


def test_require_root_names_the_missing_capability(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(conftest, "_effective_caps", lambda: 1 << 21)  # CAP_SYS_ADMIN only
    with pytest.raises(pytest.fail.Exception, match=r"needs CAP_NET_ADMIN for ip netns"):
        require_root("ip netns")


def test_require_commands_name_the_command_and_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception) as info:
        require_openssl()
    assert "openssl not found on PATH" in str(info.value)
    assert "apt-get install openssl" in str(info.value)
    with pytest.raises(pytest.fail.Exception, match=r"prosody and prosodyctl not found on PATH"):
        require_prosody()
    with pytest.raises(pytest.fail.Exception, match=r"ss not found on PATH.*iproute2"):
        require_commands("ss", package="iproute2", purpose="ss -K")


def test_without_prosody_and_openssl_their_tests_fail_and_say_why(tmp_path):
    """The real tests, run with a PATH that has Python but neither Prosody nor openssl."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA"),
            *("--basetemp", str(tmp_path / "t")),
            "tests/test_pins.py::test_openssl_fingerprint_is_the_cert_pin",
            "tests/test_gateway.py::test_messages_both_ways",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "skipped" not in out.splitlines()[-1], out
    assert "openssl not found on PATH" in out, out
    assert "prosody and prosodyctl not found on PATH" in out, out
