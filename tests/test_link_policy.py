"""XEP-0361 §4.3 connection policy and the reconnect backoff, in memory with a fake clock.

Each test is one rule of docs/protocol.md ("Connection direction"), owned by
`zerolink.core.linkpolicy` and `zerolink.core.backoff`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

from zerolink.core.actions import Close, Dial
from zerolink.core.backoff import Backoff
from zerolink.core.linkpolicy import REFUSED_WITHIN, LinkPolicy, PolicySettings

_tcp_ids = count(1)


@dataclass(eq=False)
class End:
    """One end of a TCP connection, as the policy sees it."""

    outbound: bool
    tcp: int = 0
    peer: str = "192.0.2.1:5269"
    is_open: bool = True
    paused: bool = False
    reading_paused: bool = False
    opened_at: float = 0.0
    last_stanza: float = 0.0


def tcp(now: float = 0.0) -> tuple[End, End]:
    """A connection: (the opener's end, the acceptor's end)."""
    n = next(_tcp_ids)
    return End(True, n, opened_at=now), End(False, n, opened_at=now)


def half(a: float, b: float) -> float:
    """A fixed 'random' source: the middle of the range."""
    return (a + b) / 2


def policy(**kw: object) -> LinkPolicy:
    p = LinkPolicy(PolicySettings(**kw), half)  # type: ignore[arg-type]
    return p


def test_4_3_one_connection_used_both_ways():
    """The peer's connection carries our stanzas too: we neither dial nor wait for our own."""
    p = policy()
    assert p.start(0.0, queued=False) == [Dial()]
    _, theirs = tcp()
    p.dial_failed(0.1)  # our dial did not get through; theirs did
    p.up(theirs, 0.2)
    assert p.sender() is theirs
    assert p.want_dial(queued=True) is False
    assert p.on_timer(100.0, queued=True) == []


def test_4_3_simultaneous_open_each_side_sends_on_its_own():
    """Both sides dialed at once: each sends on the connection it opened."""
    a, b = policy(), policy()
    assert a.start(0.0, False) == [Dial()] and b.start(0.0, False) == [Dial()]
    a_out, b_in = tcp()  # a's dial
    b_out, a_in = tcp()  # b's dial, crossing it
    for p, conns in ((a, (a_out, a_in)), (b, (b_in, b_out))):
        for c in conns:
            p.up(c, 0.1)
    assert a.sender() is a_out and b.sender() is b_out
    assert a.sender().tcp != b.sender().tcp  # one direction per TCP connection
    assert "simultaneous open" in a.second_connection(a_in, rtt=0.01)


def test_4_3_peer_connection_later_than_ours_is_not_simultaneous():
    p = policy()
    p.start(0.0, False)
    ours, _ = tcp(0.0)
    p.up(ours, 0.0)
    _, late = tcp(30.0)
    p.up(late, 30.0)
    assert "second connection" in p.second_connection(late, rtt=0.01)
    assert p.sender() is ours


def test_4_3_falls_back_to_peer_connection_when_ours_closes():
    p = policy()
    p.start(0.0, False)
    ours, _ = tcp()
    _, theirs = tcp()
    p.up(ours, 0.1)
    p.up(theirs, 0.1)
    ours.is_open = False  # closing
    assert p.sender() is theirs


def test_4_3_no_dial_while_peer_connection_open_then_redial_when_it_goes():
    p = policy(reconnect_min=1.0)
    p.start(0.0, False)
    p.dial_failed(0.0)
    _, theirs = tcp()
    p.up(theirs, 0.5)
    assert p.on_timer(5.0, False) == []
    mine, actions = p.down(theirs, 6.0, queued=False)
    assert mine and actions == [Dial()]  # connect = always: the link comes back up


def test_4_3_opener_closes_idle_on_demand_link():
    p = policy(connect="on-demand", idle_timeout=60.0)
    assert p.start(0.0, queued=False) == []  # on demand: nothing waits, no dial
    assert p.queued(1.0) == [Dial()]
    ours, _ = tcp(1.0)
    ours.last_stanza = 1.0
    p.up(ours, 1.0)
    assert p.timer() == 61.0
    assert p.on_timer(61.0, queued=False) == [Close(ours)]


def test_4_3_idle_on_demand_link_stays_while_stanzas_move():
    p = policy(connect="on-demand", idle_timeout=60.0)
    p.start(0.0, False)
    p.queued(0.0)
    ours, _ = tcp()
    p.up(ours, 0.0)
    ours.last_stanza = 50.0
    assert p.on_timer(60.0, queued=False) == []
    assert p.timer() == 110.0  # 60 s after the last stanza
    ours.reading_paused = True  # a slow local route holds stanzas back: not idle
    assert p.on_timer(110.0, queued=False) == []
    ours.reading_paused = False
    assert p.on_timer(p.timer(), queued=True) == []  # stanzas wait: not idle
    assert p.on_timer(p.timer(), queued=False) == [Close(ours)]


def test_4_3_acceptor_does_not_close_idle_on_demand_link():
    """Only the opener closes: the peer's idle connection is the peer's to close."""
    p = policy(connect="on-demand", idle_timeout=60.0)
    p.start(0.0, False)
    _, theirs = tcp()
    p.up(theirs, 0.0)
    assert p.timer() is None
    assert p.on_timer(1000.0, queued=False) == []


def test_4_3_direction_inbound_never_dials():
    p = policy(direction="inbound")
    assert p.start(0.0, queued=True) == []
    assert p.queued(1.0) == []
    assert p.on_timer(100.0, queued=True) == []


def test_4_3_direction_outbound_dials_without_initial_delay():
    p = policy(direction="outbound", initial_delay=5.0)
    assert p.start(0.0, queued=False) == [Dial()]


def test_4_3_no_remote_address_never_dials():
    p = policy(has_remote=False)
    assert p.start(0.0, queued=True) == [] and p.queued(0.0) == []


def test_4_3_both_ways_waits_a_random_initial_delay():
    """direction = both, connect = always: a random start delay makes one shared connection
    the usual outcome when both sides start together."""
    p = policy(initial_delay=4.0)
    assert p.start(0.0, queued=False) == []
    assert p.timer() == 2.0  # half() picks the middle of [0, 4]
    assert p.on_timer(1.0, False) == []
    assert p.on_timer(2.0, False) == [Dial()]


def test_4_3_one_dial_at_a_time():
    p = policy()
    assert p.start(0.0, False) == [Dial()]
    assert p.queued(0.1) == [] and p.on_timer(0.2, True) == []


def test_4_3_dial_failure_backs_off_with_jitter():
    p = policy(reconnect_min=2.0, reconnect_max=60.0)
    p.start(0.0, False)
    assert p.dial_failed(0.0) == 1.5  # 2 s, jittered to 3/4 by half()
    assert p.timer() == 1.5
    assert p.queued(1.0) == []  # not before the backoff is over
    assert p.on_timer(1.5, False) == [Dial()]
    assert p.dial_failed(2.0) == 3.0  # doubled


def test_4_3_connection_refused_after_connect_backs_off():
    p = policy(reconnect_min=2.0, reconnect_max=60.0)
    p.start(0.0, False)
    p.dial_ended(1.0, opened_at=0.5, bytes_received=0)  # accepted, dropped without a byte
    assert p.timer() == 1.0 + 4.0 * 0.75
    p.on_timer(p.timer(), False)
    p.dial_ended(100.0, opened_at=0.5 + REFUSED_WITHIN, bytes_received=0)  # it lived: reset
    assert p.timer() == 100.0 + 2.0 * 0.75


def test_backoff_doubles_with_jitter_up_to_the_maximum():
    draws: list[tuple[float, float]] = []

    def low(a: float, b: float) -> float:
        draws.append((a, b))
        return a

    b = Backoff(1.0, 5.0, low)
    assert [b.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 2.5, 2.5]
    assert set(draws) == {(0.5, 1.0)}  # jitter down to half, never above the delay


def test_backoff_resets_after_a_useful_connection():
    b = Backoff(1.0, 30.0, half)
    for _ in range(4):
        b.failed()
    assert b.ended(useful=True) == 0.75
    assert b.delay == 1.0


def test_backoff_doubles_before_waiting_after_a_refused_connection():
    b = Backoff(1.0, 30.0, half)
    assert b.ended(useful=False) == 1.5
    assert b.ended(useful=False) == 3.0
