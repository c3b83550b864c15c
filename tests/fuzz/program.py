"""What one fuzz input is (a `Program`) and the corpus file format.

A program is what a peer does to a session over one connection: data segments (each split
into the reads the session gets), and the driver's actions between them (time passing, a
close of ours, a stream error of ours, a stanza of ours). A segment boundary is where a real
peer waits for an answer (e.g. for ``<proceed/>`` before the TLS handshake): the split
invariance oracle re-splits the reads inside each segment, never across a boundary.

Corpus files (``corpus/<target>/*.xml``) are the bytes on the wire, with markers that the
loader removes (with one newline after each, so a file can put them on lines of their own)::

    <?fuzz config N?>        the target's configuration variant N (default 0)
    <?fuzz expect ok?>       the seed, unmutated, ends with no stream error on either side
    <?fuzz expect COND?>     ... ends with stream error COND (sent or received)
    <?fuzz read?>            segment boundary
    <?fuzz split?>           read boundary inside a segment (saved failures use it)
    <?fuzz time SECONDS?>    the clock advances; the session's timer runs if it is due
    <?fuzz close?>           the driver closes the session (close exchange)
    <?fuzz kick?>            the driver ends the stream with a stream error of its own (c2s:
                             conflict, component: policy-violation; others: close)
    <?fuzz send?>            the driver sends a stanza of its own (when the session allows)

A saved failure is also written as a Python literal (`dump_literal`), which is exact even
when the mutated bytes happen to contain a marker.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"

# ("data", [read, read, ...]) | ("time", seconds) | ("close",) | ("kick",) | ("send",)
Step = tuple

ACTIONS = ("close", "kick", "send")
_MARKER = re.compile(rb"<\?fuzz ([a-z]+)(?: ([^?]*))?\?>\n?")


@dataclass
class Program:
    config: int = 0
    steps: list[Step] = field(default_factory=list)
    expect: str | None = None  # only seeds carry an expectation
    name: str = ""

    def data_len(self) -> int:
        return sum(len(r) for s in self.steps if s[0] == "data" for r in s[1])

    def whole(self) -> Program:
        """The same program with every segment in one read."""
        steps = [("data", [b"".join(s[1])]) if s[0] == "data" else s for s in self.steps]
        return Program(self.config, steps, self.expect, self.name)


def parse(text: bytes, name: str = "") -> Program:
    """A corpus file's bytes -> `Program` (see the module docstring)."""
    prog = Program(name=name)
    reads: list[bytes] = []
    at = 0

    def flush_segment() -> None:
        nonlocal reads
        if any(reads):
            prog.steps.append(("data", [r for r in reads if r]))
        reads = []

    def add_bytes(b: bytes) -> None:
        if reads:
            reads[-1] += b
        else:
            reads.append(b)

    for m in _MARKER.finditer(text):
        add_bytes(text[at : m.start()])
        at = m.end()
        kind = m.group(1).decode()
        arg = (m.group(2) or b"").decode().strip()
        if kind == "config":
            prog.config = int(arg)
        elif kind == "expect":
            prog.expect = arg
        elif kind == "read":
            flush_segment()
        elif kind == "split":
            reads.append(b"")
        elif kind == "time":
            flush_segment()
            prog.steps.append(("time", float(arg)))
        elif kind in ACTIONS:
            flush_segment()
            prog.steps.append((kind,))
        else:
            raise ValueError(f"{name}: unknown marker {m.group(0)!r}")
    add_bytes(text[at:])
    flush_segment()
    return prog


def load(target: str) -> list[Program]:
    """The seed corpus of `target` (sorted by file name)."""
    folder = CORPUS / target
    seeds = [parse(p.read_bytes(), f"{target}/{p.name}") for p in sorted(folder.glob("*.xml"))]
    if not seeds:
        raise FileNotFoundError(f"no seeds in {folder}")
    return seeds


def dump(prog: Program) -> bytes:
    """`Program` -> corpus file bytes (readable; see `dump_literal` for the exact form)."""
    out = [b"<?fuzz config %d?>\n" % prog.config]
    prev_data = False
    for step in prog.steps:
        if step[0] == "data":
            if prev_data:
                out.append(b"<?fuzz read?>\n")
            out.append(b"<?fuzz split?>".join(step[1]))
            prev_data = True
            continue
        prev_data = False
        if step[0] == "time":
            out.append(b"<?fuzz time %g?>\n" % step[1])
        else:
            out.append(b"<?fuzz %s?>\n" % step[0].encode())
    return b"".join(out)


def dump_literal(target: str, prog: Program) -> str:
    return repr({"target": target, "config": prog.config, "steps": prog.steps}) + "\n"


def load_literal(text: str) -> tuple[str, Program]:
    d = ast.literal_eval(text)
    steps = [tuple(s) for s in d["steps"]]
    return d["target"], Program(d["config"], steps)
