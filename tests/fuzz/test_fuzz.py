"""The fuzz harness in CI: every seed as it is, then a bounded number of mutated inputs per
target, derandomized (the same inputs on every run; no example database)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .mutate import mutate
from .program import Program, dump_literal
from .targets import TARGETS, Failure, Known, _conditions, check, seeds

#: Mutated inputs per target in CI (the whole file stays well under 20 s on one core).
EXAMPLES = {
    "parser": 800,
    "x2x": 500,
    "x2x-acks": 500,
    "c2s": 600,
    "component": 500,
    "component-client": 500,
}


def byte_by_byte(prog: Program) -> Program:
    steps = [
        ("data", [bytes([b]) for r in s[1] for b in r]) if s[0] == "data" else s for s in prog.steps
    ]
    return Program(prog.config, steps, prog.expect, prog.name)


@pytest.mark.parametrize("target", list(TARGETS))
def test_seeds_hold_the_oracles_and_their_expectation(target: str) -> None:
    """Each seed is a realistic transcript: it does what its ``expect`` marker says, and
    fed one byte per read it gives the same events."""
    for prog in seeds(target):
        events = check(target, byte_by_byte(prog))
        if prog.expect is None:
            continue
        conditions = _conditions(events)
        if prog.expect == "ok":
            assert conditions == [], prog.name
            if target != "parser":
                assert any(ev[0] == "StanzaIn" for ev in events), prog.name
        else:
            assert prog.expect in conditions, (prog.name, conditions)


@pytest.mark.parametrize("target", list(TARGETS))
def test_mutated_inputs_hold_the_oracles(target: str) -> None:
    pool = seeds(target)
    n_configs = len(TARGETS[target].configs)

    @settings(
        max_examples=EXAMPLES[target],
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.randoms(use_true_random=False))
    def one(rnd) -> None:
        prog = mutate(rnd, rnd.choice(pool), pool, n_configs)
        try:
            check(target, prog)
        except Known:
            pass
        except Failure as f:
            raise AssertionError(f"{f}\n{dump_literal(target, prog)}") from None

    one()
