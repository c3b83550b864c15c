"""Pre-authentication budgets, login throttling, negotiation deadlines and log rate limits, in
memory with a fake clock (issue 10, items 8-11). The floods over real sockets are in
test_abuse.py.
"""

from __future__ import annotations

import io
import logging

from zerolink.core.admission import Admission, source_of
from zerolink.core.throttle import MAX_DELAY, LoginThrottle
from zerolink.logs import RepeatFilter, make_handler
from zerolink.proto import c2s
from zerolink.proto.component import ComponentSession


# -- admission: per address, global, eviction of the idlest ------------------------------------
def test_admission_per_address_budget_refuses_the_next_from_that_address_only() -> None:
    adm: Admission[str] = Admission(total=10, per_address=2)
    assert adm.admit("a1", "192.0.2.1", 0).admitted
    assert adm.admit("a2", "192.0.2.1", 0).admitted
    v = adm.admit("a3", "192.0.2.1", 0.5)
    assert not v.admitted and "2 connections from 192.0.2.1" in v.reason
    assert adm.admit("b1", "192.0.2.2", 0.5).admitted  # another address is not affected


def test_admission_full_budget_evicts_the_longest_idle_instead_of_refusing() -> None:
    adm: Admission[str] = Admission(total=3, per_address=3, idle_after=2.0)
    for i, conn in enumerate(("old", "mid", "new")):
        assert adm.admit(conn, f"192.0.2.{i}", float(i)).admitted
    adm.active("old", 2.5)  # "old" sent a byte recently: "mid" is now the idlest
    v = adm.admit("newcomer", "192.0.2.9", 4.5)
    assert v.admitted and v.evict == "mid"
    assert len(adm) == 3


def test_admission_refuses_when_nobody_is_idle() -> None:
    adm: Admission[str] = Admission(total=2, per_address=2, idle_after=2.0)
    adm.admit("a", "192.0.2.1", 0)
    adm.admit("b", "192.0.2.2", 0)
    v = adm.admit("c", "192.0.2.3", 1.0)  # both connected a second ago: still negotiating
    assert not v.admitted and v.evict is None and "2 connections" in v.reason


def test_admission_per_address_evicts_only_from_that_address() -> None:
    adm: Admission[str] = Admission(total=10, per_address=1, idle_after=1.0)
    adm.admit("other", "192.0.2.2", 0)
    adm.admit("mine", "192.0.2.1", 0)
    v = adm.admit("mine-again", "192.0.2.1", 5)
    assert v.admitted and v.evict == "mine"


def test_admission_release_frees_the_slot() -> None:
    adm: Admission[str] = Admission(total=1, per_address=1)
    adm.admit("a", "192.0.2.1", 0)
    adm.release("a")
    adm.release("a")  # twice: no effect
    assert adm.admit("b", "192.0.2.1", 0).admitted
    assert adm.count("192.0.2.1") == 1


def test_admission_ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() -> None:
    assert source_of("2001:db8:1:2::5") == source_of("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7"
    adm: Admission[str] = Admission(total=10, per_address=1)
    adm.admit("a", "2001:db8::1", 0)
    assert not adm.admit("b", "2001:db8::2", 0).admitted


# -- login throttle ------------------------------------------------------------------------------
def test_throttle_allowed_failures_cost_nothing_then_delay_doubles() -> None:
    t = LoginThrottle(allowed=3, window=60)
    delays = [t.failed("192.0.2.1", "alice@example", float(i)) for i in range(8)]
    assert delays == [0, 0, 0, 1, 2, 4, 8, 16]


def test_throttle_delay_is_capped() -> None:
    t = LoginThrottle(allowed=0, window=1e9)
    delays = [t.failed("192.0.2.1", None, float(i)) for i in range(40)]
    assert max(delays) == MAX_DELAY


def test_throttle_failures_expire_with_the_window() -> None:
    t = LoginThrottle(allowed=1, window=10)
    t.failed("192.0.2.1", None, 0)
    assert t.failed("192.0.2.1", None, 1) == 1
    assert t.wait_before("192.0.2.1", 5) == 1
    assert t.wait_before("192.0.2.1", 11.5) == 0  # both failures are older than the window


def test_throttle_counts_per_account_across_addresses() -> None:
    t = LoginThrottle(allowed=2, window=60)
    for i in range(2):
        assert t.failed(f"192.0.2.{i}", "alice@example", 0) == 0
    # A third address guessing alice's password: the account's count decides.
    assert t.failed("192.0.2.9", "alice@example", 0) == 1
    # An address that failed for another account only once is not held before trying.
    assert t.wait_before("192.0.2.9", 0) == 0


def test_throttle_memory_is_bounded_under_a_flood_of_names() -> None:
    t = LoginThrottle(allowed=1, window=60)
    for i in range(30000):
        t.failed("192.0.2.1", f"user{i}@example", 0)
    assert len(t._failures) <= 10000


# -- c2s negotiation step deadlines --------------------------------------------------------------
def c2s_session(now: float = 0.0, **kw: object) -> c2s.C2SSession:
    return c2s.C2SSession(
        domains={"example.org"},
        lookup=lambda *_: None,
        stream_id_factory=lambda: "s1",
        tls_available=False,
        tls_required=False,
        now=now,
        **kw,  # type: ignore[arg-type]
    )


HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    b"to='example.org' version='1.0'>"
)


def test_c2s_step_timeout_ends_a_client_that_trickles_its_header() -> None:
    s = c2s_session(auth_timeout=60, step_timeout=5)
    assert s.timer() == 5
    for i, byte in enumerate(HEADER[:-1]):  # one byte a second
        if float(i) >= 5:
            break
        s.receive_data(bytes([byte]), float(i))
    events = s.handle_timer(5.0)
    assert [type(e) for e in events] == [c2s.StreamErrorSent, c2s.Closed]
    assert events[0].condition == "policy-violation"


def test_c2s_each_completed_step_gives_the_next_step_its_own_deadline() -> None:
    s = c2s_session(auth_timeout=60, step_timeout=5)
    s.receive_data(HEADER, 4.0)  # the header: one step done
    assert s.timer() == 9.0
    assert s.handle_timer(8.9) == []


def test_c2s_auth_timeout_still_bounds_the_whole_negotiation() -> None:
    s = c2s_session(auth_timeout=6, step_timeout=5)
    s.receive_data(HEADER, 4.0)
    assert s.timer() == 6.0  # the earlier of the two


def test_c2s_restart_clock_starts_the_deadlines_again() -> None:
    s = c2s_session(auth_timeout=60, step_timeout=5)
    s.restart_clock(30.0)  # e.g. after a login-throttle hold
    assert s.timer() == 35.0


# -- component handshake deadline ----------------------------------------------------------------
def test_component_handshake_timeout_is_a_policy_violation() -> None:
    s = ComponentSession({"bot.example": "x"}, "id1", handshake_timeout=10, now=100)
    assert s.timer() == 110
    assert s.handle_timer(109.9) == []
    events = s.handle_timer(110)
    assert events[0].condition == "policy-violation"  # type: ignore[union-attr]
    assert b"policy-violation" in s.data_to_send()
    assert s.timer() is None


# -- log rate limit ------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_repeated_log_lines_are_limited_then_summarized() -> None:
    out = io.StringIO()
    handler = make_handler(out, rate_limit=False)
    clock = Clock()
    limiter = RepeatFilter(handler, burst=3, window=60, clock=clock)
    flood = {"zerolink_flood": True}
    handler.addFilter(limiter)
    logger = logging.getLogger("zerolink.test-repeats")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for i in range(2000):
            logger.warning("refused client %s: budget", f"192.0.2.{i % 250}:{i}", extra=flood)
        for _ in range(10):
            logger.warning("link %s: up", "ground")  # not marked: never limited
        logger.warning("a different message")
        clock.now = 61
        limiter.flush()
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert sum("refused client" in line and "more like" not in line for line in lines) == 3
    assert any(
        "... 1997 more like 'refused client %s: budget' in the last 61 s" in x for x in lines
    )
    assert sum("a different message" in line for line in lines) == 1
    assert sum("link ground: up" in line for line in lines) == 10
    assert len(lines) == 15
