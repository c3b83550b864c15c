"""The import order of DESIGN.md: errors <- jid <- xml <- stanza <- {proto, core} <- net <- app.

`proto` and `core` are sans-I/O: no asyncio, socket, ssl, select(ors), threading or clock.
`proto` and `core` do not import each other. Checked on the source (every import statement,
also inside functions, in the forms `import zerolink.x`, `from zerolink.x import y`,
`from zerolink import x` and relative imports), so a violation fails here before it spreads.
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
    "counters": 1,
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


def package_of(path: Path) -> list[str]:
    """The dotted package a module belongs to, e.g. ["zerolink", "proto"]."""
    rel = path.relative_to(SRC.parent)
    return list(rel.parts[:-1])


def imports(path: Path, source: str | None = None) -> list[str]:
    """Every module `path` imports, absolute; `from P import x` counts as P.x when P is ours."""
    tree = ast.parse(source if source is not None else path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(path)[: len(package_of(path)) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.append(module)
            if module == "zerolink" or module.startswith("zerolink."):
                # `from zerolink import net` imports the package zerolink.net
                folder = SRC.parent.joinpath(*module.split("."))
                out += [
                    f"{module}.{a.name}"
                    for a in node.names
                    if (folder / a.name).is_dir() or (folder / f"{a.name}.py").is_file()
                ]
    return out


def test_every_unit_has_a_layer():
    assert {unit(p) for p in modules()} <= set(LAYERS)


def layer_violations(path: Path, source: str | None = None) -> list[str]:
    me = unit(path)
    bad = []
    for name in imports(path, source):
        if not name.startswith("zerolink."):
            continue
        target = name.split(".")[1]
        if target == me or target == "__init__":
            continue
        if LAYERS[target] >= LAYERS[me]:  # also proto <-> core: the same layer
            bad.append(f"{path.name} ({me}) imports {name}")
    return bad


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layers(path: Path):
    assert layer_violations(path) == []


SANS_IO = sorted([*(SRC / "proto").rglob("*.py"), *(SRC / "core").rglob("*.py")])


@pytest.mark.parametrize("path", SANS_IO, ids=lambda p: str(p.relative_to(SRC)))
def test_proto_and_core_are_sans_io(path: Path):
    bad = {n for n in imports(path) if n.split(".")[0] in IO_MODULES}
    assert not bad, f"{path.relative_to(SRC)} imports {bad}"


# The checks above must see every form of import: each breach below is one they must catch.
BREACHES = {
    "from zerolink import net": "zerolink.net",
    "import zerolink.net.link": "zerolink.net.link",
    "from zerolink.net import link": "zerolink.net",
    "from .. import net": "zerolink.net",
    "from ..net.link import PeerLink": "zerolink.net.link",
    "def f():\n    import asyncio": "asyncio",
    "from time import monotonic": "time",
}


@pytest.mark.parametrize("source", BREACHES, ids=list(BREACHES.values()))
def test_the_import_scan_sees_every_form(source: str):
    path = SRC / "core" / "example.py"
    assert BREACHES[source] in imports(path, source)


@pytest.mark.parametrize(
    "source", ["from zerolink import net", "from ..net import link", "from zerolink import proto"]
)
def test_a_core_module_importing_net_or_proto_is_a_breach(source: str):
    assert layer_violations(SRC / "core" / "example.py", source)
