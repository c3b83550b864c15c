"""Every example configuration under examples/ is valid, as shipped and in a fresh clone.

Each ``*.toml`` below examples/ (at any depth) must load with `zerolink.config.load_config`
and pass ``zerolink check-config`` (exit 0). The same is checked on a copy of examples/ that
holds only what a fresh clone would (files git tracks or would track, none it ignores), so an
example cannot lean on a generated data folder or a certificate made locally. The TLS pair in
examples/tls must stay the same servers as the plain pair, differing only in its link.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zerolink.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CONFIGS = sorted(EXAMPLES.rglob("*.toml"))


def _id(path: Path) -> str:
    return path.relative_to(EXAMPLES).as_posix()


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zerolink", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_there_are_examples():
    names = {_id(p) for p in CONFIGS}
    assert {"air.toml", "ground.toml", "tls/air.toml", "tls/ground.toml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_example_loads(path: Path):
    cfg = load_config(path)
    assert cfg.server.domains


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_example_passes_check_config(path: Path):
    result = check_config(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "problem" not in result.stderr


def _fresh_clone_files() -> list[Path] | None:
    """What a clone of the repository would hold under examples/ (None without git)."""
    git = shutil.which("git")
    if git is None:
        return None
    listed = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "examples"],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    if listed.returncode != 0:
        return None  # not a git checkout (e.g. an unpacked sdist)
    return [ROOT / name for name in listed.stdout.decode().split("\0") if name]


def test_examples_need_nothing_a_fresh_clone_lacks(tmp_path: Path):
    files = _fresh_clone_files()
    if files is None:
        pytest.skip("not a git checkout")
    for src in files:
        if src.is_file():
            dst = tmp_path / src.relative_to(ROOT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    copies = sorted((tmp_path / "examples").rglob("*.toml"))
    assert [p.relative_to(tmp_path / "examples") for p in copies] == [
        p.relative_to(EXAMPLES) for p in CONFIGS
    ], "an example configuration is ignored by git"
    failures = []
    for path in copies:
        result = check_config(path)
        if result.returncode != 0:
            failures.append(f"{path.relative_to(tmp_path)}: {result.stderr.strip()}")
    assert not failures, "\n".join(failures)


def _server_without_link(cfg: Config) -> dict[str, object]:
    """Everything the TLS variant must share with the plain one."""
    (peer,) = cfg.peers
    assert cfg.host is not None
    return {
        "server": (cfg.server.name, cfg.server.domains, cfg.server.data_dir.resolve()),
        "host": (cfg.host.domains, cfg.host.listen, cfg.host.tls_required),
        "component_listener": cfg.component_listener,
        "components": cfg.components,
        "peer": (
            peer.name,
            peer.domains,
            peer.remote,
            peer.listen,
            peer.source,
            peer.direction,
            peer.connect,
        ),
    }


@pytest.mark.parametrize("side", ["air", "ground"])
def test_tls_pair_is_the_plain_pair_with_a_tls_link(side: str):
    plain = load_config(EXAMPLES / f"{side}.toml")
    tls = load_config(EXAMPLES / "tls" / f"{side}.toml")
    assert _server_without_link(tls) == _server_without_link(plain)
    (peer,) = tls.peers
    assert peer.tls
    assert peer.certificate == EXAMPLES / "tls" / f"{side}.pem"
    assert peer.key == EXAMPLES / "tls" / f"{side}.key"
    assert peer.identity.mode == "tls"
    assert peer.identity.ca == EXAMPLES / "tls" / "ca.pem"
    # timers and limits: the defaults, as in the plain pair
    skip = {"tls", "certificate", "key", "identity"}
    fields = [f.name for f in dataclasses.fields(peer) if f.name not in skip]
    (plain_peer,) = plain.peers
    assert {f: getattr(peer, f) for f in fields} == {f: getattr(plain_peer, f) for f in fields}


def test_tls_pair_trusts_each_other():
    """Each side's certificate is what the other side's identity check accepts."""
    from zerolink.net.identity import check_certificate

    air = load_config(EXAMPLES / "tls" / "air.toml")
    ground = load_config(EXAMPLES / "tls" / "ground.toml")
    for me, other in ((air, ground), (ground, air)):
        (theirs,) = other.peers
        (mine,) = me.peers
        assert theirs.certificate is not None
        der = _pem_to_der(theirs.certificate)
        for server in (False, True):
            assert check_certificate(mine, [der], server=server) is None


def _pem_to_der(path: Path) -> bytes:
    import ssl

    return ssl.PEM_cert_to_DER_cert(path.read_text())
