"""The import order of DESIGN.md: errors <- jid <- xml <- stanza <- {proto, core} <- net <- app.

`proto` is sans-I/O: no asyncio, socket, ssl, select or clock. `proto` and `core` do not import
each other. Checked on the source, so a violation fails here before it spreads.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "zerolink"

LAYERS = {
    "errors": 0,
    "idn": 0,
    "logs": 0,
    "jid": 1,
    "domains": 1,
    "pins": 1,
    "certgen": 1,
    "xml": 2,
    "stanza": 3,
    "proto": 4,
    "core": 4,
    "store": 4,
    "config": 4,
    "net": 5,
    "app": 6,
    "demo": 7,
    "users": 5,
    "cli": 8,
    "__main__": 9,
    "__init__": 0,
}
IO_MODULES = {"asyncio", "socket", "ssl", "select", "selectors", "time", "threading"}


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def unit(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


def test_every_unit_has_a_layer():
    assert {unit(p) for p in modules()} <= set(LAYERS)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layers(path: Path):
    me = unit(path)
    for name in imports(path):
        if not name.startswith("zerolink."):
            continue
        target = name.split(".")[1]
        if target == me or target == "__init__":
            continue
        assert LAYERS[target] < LAYERS[me], f"{path.name} ({me}) imports {name}"


@pytest.mark.parametrize("path", sorted((SRC / "proto").rglob("*.py")), ids=lambda p: p.name)
def test_proto_is_sans_io(path: Path):
    bad = {n for n in imports(path) if n.split(".")[0] in IO_MODULES}
    assert not bad, f"{path.name} imports {bad}"
