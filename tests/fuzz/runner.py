"""Long fuzz runs: ``python -m tests.fuzz --target c2s --examples 1000000``.

Plain `random.Random` mutations (no Hypothesis: ~10x more inputs per second), a seeded run
is reproducible. Failures are grouped by kind; the first few of each kind are saved (exact
Python literal plus the readable corpus form), minimized when ``--minimize`` is given, and
can be replayed with ``--replay FILE``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

from .mutate import mutate
from .program import Program, dump, dump_literal, load_literal
from .targets import KNOWN_HITS, TARGETS, Failure, Known, check, seeds

SAVE_PER_KIND = 3
RECENT = 64  # mutants that passed, used again as bases (mutations stack up)


def _outcome(target: str, prog: Program, strict: bool) -> str | None:
    """The failure kind of `prog`, or None when every oracle holds."""
    try:
        check(target, prog, strict=strict)
    except Known as k:
        return "known:" + k.name
    except Failure as f:
        return f.kind
    return None


def minimize(target: str, prog: Program, kind: str, strict: bool, budget: int = 4000) -> Program:
    """A smaller program that still fails with `kind` (greedy: drop steps, merge reads,
    delete byte ranges from large to small)."""
    tries = 0

    def fails(p: Program) -> bool:
        nonlocal tries
        tries += 1
        return _outcome(target, p, strict) == kind

    best = prog
    changed = True
    while changed and tries < budget:
        changed = False
        for i in range(len(best.steps)):  # drop a step
            cand = Program(best.config, best.steps[:i] + best.steps[i + 1 :])
            if i < len(best.steps) and fails(cand):
                best, changed = cand, True
                break
        if changed:
            continue
        for i, step in enumerate(best.steps):  # merge two reads of a segment
            if step[0] == "data" and len(step[1]) > 1:
                for j in range(len(step[1]) - 1):
                    reads = [*step[1][:j], step[1][j] + step[1][j + 1], *step[1][j + 2 :]]
                    steps = [*best.steps[:i], ("data", reads), *best.steps[i + 1 :]]
                    cand = Program(best.config, steps)
                    if fails(cand):
                        best, changed = cand, True
                        break
            if changed:
                break
        if changed:
            continue
        for i, step in enumerate(best.steps):  # delete bytes from a read
            if step[0] != "data":
                continue
            for k, read in enumerate(step[1]):
                size = max(1, len(read) // 2)
                while size >= 1 and not changed and tries < budget:
                    for a in range(0, len(read), size):
                        new = read[:a] + read[a + size :]
                        reads = [r for r in (*step[1][:k], new, *step[1][k + 1 :]) if r]
                        steps = [*best.steps[:i], ("data", reads), *best.steps[i + 1 :]]
                        cand = Program(best.config, [s for s in steps if s[0] != "data" or s[1]])
                        if fails(cand):
                            best, changed = cand, True
                            break
                    size //= 2
                if changed:
                    break
            if changed:
                break
    return best


def _save(folder: Path, target: str, kind: str, n: int, prog: Program, detail: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    safe = kind.replace(":", "-")
    path = folder / f"{target}-{safe}-{n}.txt"
    text = (
        f"# {target}: {kind}\n# replay: python -m tests.fuzz --replay {path}\n"
        + "".join(f"# {line}\n" for line in detail.splitlines()[-30:])
        + dump_literal(target, prog)
        + "\n# corpus form:\n"
        + "".join(f"# {line}\n" for line in dump(prog).decode("utf-8", "replace").splitlines())
    )
    path.write_text(text, encoding="utf-8")
    return path


def run(
    target: str,
    examples: int,
    seed: int,
    seconds: float | None,
    strict: bool,
    crashes: Path,
    do_minimize: bool,
    out=sys.stdout,
) -> Counter[str]:
    rng = random.Random(seed)
    pool = seeds(target)
    n_configs = len(TARGETS[target].configs)
    recent: list[Program] = []
    stats: Counter[str] = Counter()
    looked_away: Counter[str] = Counter()
    start = last = time.monotonic()
    done = 0
    for done in range(1, examples + 1):
        base = rng.choice(recent) if recent and rng.random() < 0.3 else rng.choice(pool)
        prog = mutate(rng, base, pool, n_configs)
        stats["bytes"] += prog.data_len()
        KNOWN_HITS.clear()
        try:
            check(target, prog, strict=strict)
        except (Known, Failure) as exc:
            failure = exc.failure if isinstance(exc, Known) else exc
            kind = f"known:{exc.name}" if isinstance(exc, Known) else failure.kind
            stats[kind] += 1
            if stats[kind] <= SAVE_PER_KIND:
                if do_minimize and not isinstance(exc, Known):  # known ones have reproducers
                    prog = minimize(target, prog, kind, strict)
                path = _save(crashes, target, kind, stats[kind], prog, str(failure))
                print(f"[{target}] {kind}: saved {path}", file=out, flush=True)
        else:
            for name in KNOWN_HITS:  # inputs on which an oracle looked away (once each)
                looked_away[name] += 1
            if len(recent) < RECENT:
                recent.append(prog)
            else:
                recent[rng.randrange(RECENT)] = prog
        now = time.monotonic()
        if now - last >= 30:
            last = now
            print(f"[{target}] {done} inputs, {done / (now - start):.0f}/s", file=out, flush=True)
        if seconds is not None and now - start >= seconds:
            break
    elapsed = time.monotonic() - start
    stats["inputs"] = done
    fails = {k: v for k, v in stats.items() if k not in ("inputs", "bytes")}
    print(
        f"[{target}] done: {done} inputs ({stats['bytes'] / 1e6:.1f} MB) in {elapsed:.0f} s "
        f"({done / max(elapsed, 1e-9):.0f}/s), seed {seed}; failures: {fails or 'none'}; "
        f"known issues looked away from (inputs): {dict(looked_away) or 'none'}",
        file=out,
        flush=True,
    )
    return stats


def replay(path: Path, strict: bool) -> int:
    text = "\n".join(
        line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")
    )
    target, prog = load_literal(text)
    try:
        check(target, prog, strict=strict)
    except (Known, Failure) as exc:
        print(f"{target}: {exc}")
        return 1
    print(f"{target}: every oracle holds")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.splitlines()[0])
    ap.add_argument("--target", action="append", choices=[*TARGETS, "all"], help="repeatable")
    ap.add_argument("--examples", type=int, default=100_000, help="inputs per target")
    ap.add_argument("--seconds", type=float, help="stop a target after this long")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strict", action="store_true", help="known issues fail too")
    ap.add_argument("--minimize", action="store_true", help="minimize saved failures")
    ap.add_argument("--crashes", type=Path, default=Path("fuzz-failures"))
    ap.add_argument("--replay", type=Path, help="re-run one saved failure")
    args = ap.parse_args(argv)
    if args.replay:
        return replay(args.replay, args.strict)
    targets = args.target or ["all"]
    if "all" in targets:
        targets = list(TARGETS)
    failed = False
    for t in targets:
        stats = run(
            t, args.examples, args.seed, args.seconds, args.strict, args.crashes, args.minimize
        )
        failed |= any(not k.startswith("known:") for k in stats if k not in ("inputs", "bytes"))
    return 1 if failed else 0
