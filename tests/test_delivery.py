"""Reliable delivery (docs/protocol.md, "Reliable delivery"), in memory with a fake clock.

Each test is one rule, owned by `zerolink.core.delivery.ReliableDelivery`; the log store is a
`FakeJournal` whose commits succeed unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zerolink.core.actions import (
    COMMIT,
    WAKE,
    Abort,
    Bounce,
    RequestAck,
    SendAck,
    SendOn,
    SendSync,
)
from zerolink.core.delivery import DeliverySettings, ReliableDelivery
from zerolink.xml.element import Element


@dataclass(eq=False)
class Conn:
    outbound: bool = True
    peer: str = "192.0.2.1:5269"
    is_open: bool = True
    paused: bool = False
    reading_paused: bool = False
    opened_at: float = 0.0
    last_stanza: float = 0.0


@dataclass
class FakeJournal:
    failing: str | None = None
    fail: bool = False
    added: dict[int, bytes] = field(default_factory=dict)
    state_rec: tuple[int, int] = (0, 0)
    commits: int = 0
    delivery: ReliableDelivery | None = None

    def accepting(self) -> bool:
        return self.failing is None

    def add(self, seq: int, data: bytes) -> None:
        self.added[seq] = data

    def remove(self, seq: int) -> None:
        self.added.pop(seq, None)

    def remove_below(self, seq: int) -> None:
        for s in [s for s in self.added if s < seq]:
            del self.added[s]

    def state(self, received: int, next_seq: int) -> None:
        self.state_rec = (received, next_seq)

    def discard_added(self, from_seq: int) -> None:
        for s in [s for s in self.added if s >= from_seq]:
            del self.added[s]

    def renumber(self, shift: int) -> bool:
        self.added = {s + shift: d for s, d in self.added.items()}
        return True

    def commit_now(self) -> bool:
        """As GroupCommit does: record the counters, commit, tell the writer."""
        assert self.delivery is not None
        self.delivery.before_commit()
        self.commits += 1
        self.bounced = self.delivery.committed(not self.fail)
        return not self.fail


def make(now: float = 0.0, **kw: object) -> tuple[ReliableDelivery, FakeJournal]:
    settings = dict(
        name="ground",
        queue_limit=100,
        queue_bytes=1 << 20,
        stanza_timeout=300.0,
        ack_every=10,
        ack_delay=1.0,
        ack_timeout=30.0,
        max_stanza_size=10_000,
        accept_max=65536,
    )
    settings.update(kw)
    journal = FakeJournal()
    d = ReliableDelivery(DeliverySettings(**settings), journal, now)  # type: ignore[arg-type]
    journal.delivery = d
    return d, journal


def msg(n: int) -> Element:
    attrs = {"from": "a@air.example", "to": "b@ground.example"}
    return Element("{jabber:server}message", attrs, [str(n)])


def sent(actions: list) -> list[str]:
    return [a.stanza.text for a in actions if isinstance(a, SendOn)]


def test_reliable_every_connection_starts_with_sync():
    d, _ = make()
    c = Conn()
    assert d.attached(c, 0.0) == [SendSync(c, 0, 0, 65536)]


def test_reliable_stanza_numbered_logged_and_sent_only_once_committed():
    d, j = make()
    c = Conn()
    d.attached(c, 0.0)
    assert d.accept(msg(1), 0.0, has_sender=True) == [COMMIT]
    assert 0 in j.added
    assert d.pump(c, 0.0, 128) == []  # not on disk yet
    j.commit_now()  # the end of the loop turn
    assert sent(d.pump(c, 0.0, 128)) == ["1"]


def test_reliable_stanza_without_connection_wakes_the_link():
    d, _ = make()
    assert d.accept(msg(1), 0.0, has_sender=False) == [COMMIT, WAKE]


def test_reliable_retransmits_unacknowledged_on_new_connection_after_sync():
    d, j = make()
    c1, c2 = Conn(), Conn()
    d.attached(c1, 0.0)
    for n in range(3):
        d.accept(msg(n), 0.0, True)
    j.commit_now()
    assert sent(d.pump(c1, 0.0, 128)) == ["0", "1", "2"]
    d.on_ack(1, 1.0)  # the peer has stanza 0
    d.detached(c1)
    assert d.attached(c2, 2.0) == [SendSync(c2, 0, 1, 65536)]
    assert sent(d.pump(c2, 2.0, 128)) == ["1", "2"]


def test_reliable_ack_releases_and_removes_from_the_store():
    d, j = make()
    c = Conn()
    d.attached(c, 0.0)
    for n in range(3):
        d.accept(msg(n), 0.0, True)
    j.commit_now()
    d.pump(c, 0.0, 128)
    actions = d.on_ack(2, 1.0)
    assert COMMIT in actions and len(d.log) == 1 and set(j.added) == {2}


def test_reliable_duplicate_dropped_after_retransmission():
    """The peer resends from its oldest unacknowledged; what we already counted is dropped."""
    d, _ = make()
    c1, c2 = Conn(outbound=False), Conn(outbound=False)
    d.on_sync(c1, 0, 0, None, 0.0)
    assert [d.arrived(c1, 0.0) for _ in range(3)] == [True, True, True]
    d.detached(c1)
    d.on_sync(c2, 0, 1, None, 1.0)  # it never saw our ack: resends from 1
    assert [d.arrived(c2, 1.0) for _ in range(3)] == [False, False, True]
    assert d.inbound.count == 4


def test_reliable_gap_counts_stanzas_the_peer_gave_up():
    d, _ = make()
    c = Conn(outbound=False)
    d.on_sync(c, 0, 5, None, 0.0)  # 0..4 timed out over there
    assert d.arrived(c, 0.0) and d.inbound.count == 6


def test_reliable_ack_batching_after_ack_every_stanzas():
    d, _ = make(ack_every=3, ack_delay=5.0)
    c = Conn(outbound=False)
    d.on_sync(c, 0, 0, None, 0.0)
    d.arrived(c, 0.0)
    assert d.timer() == 5.0  # one stanza: the ack waits for quiet
    d.arrived(c, 0.1)
    d.arrived(c, 0.2)
    assert d.timer() == 0.2  # ack_every reached: at once
    assert d.on_timer(0.2, c) == [SendAck(c, 3)]
    assert d.timer() is None


def test_reliable_ack_after_delay_of_quiet():
    d, _ = make(ack_every=10, ack_delay=1.0)
    c = Conn(outbound=False)
    d.on_sync(c, 0, 0, None, 0.0)
    d.arrived(c, 0.0)
    assert d.on_timer(0.5, c) == []
    assert d.on_timer(1.0, c) == [SendAck(c, 1)]


def test_reliable_ack_request_always_answered():
    d, _ = make()
    c = Conn(outbound=False)
    assert d.send_ack(c, requested=True) == [SendAck(c, 0)]
    assert d.send_ack(c) == []  # unrequested and no progress: nothing


def test_reliable_count_not_saved_while_route_holds_the_stanza():
    """A crash may repeat stanzas but never lose one: the count waits for the route."""

    class Route:
        held = 1

        def pending_output(self) -> int:
            return self.held

    d, j = make()
    c = Conn(outbound=False)
    route = Route()
    d.on_sync(c, 0, 0, None, 0.0)
    d.arrived(c, 0.0)
    d.delivered_to(route)
    j.commit_now()
    assert j.state_rec[0] == 0 and d.send_ack(c) == []
    route.held = 0
    j.commit_now()
    assert j.state_rec[0] == 1 and d.send_ack(c) == [SendAck(c, 1)]


def test_reliable_renumbered_when_peer_has_received_more():
    """Our state was lost (data folder wiped): renumber from the peer's count, send again."""
    d, j = make()
    c = Conn()
    d.attached(c, 0.0)
    d.accept(msg(1), 0.0, True)
    j.commit_now()
    d.pump(c, 0.0, 128)
    d.on_sync(c, 50, 0, None, 1.0)
    assert d.log.first_seq == 50 and set(j.added) == {50}
    out = d.pump(c, 1.0, 128)
    assert out[0] == SendSync(c, 0, 50, 65536) and sent(out) == ["1"]


def test_reliable_dead_connection_watchdog_asks_then_aborts():
    d, j = make(ack_timeout=30.0)
    c = Conn()
    d.attached(c, 0.0)
    d.accept(msg(1), 0.0, True)
    j.commit_now()
    d.pump(c, 0.0, 128)
    assert d.timer() == 15.0
    assert d.on_timer(15.0, c) == [RequestAck(c)]
    assert d.timer() == 30.0
    assert d.on_timer(30.0, c) == [Abort(c)]


def test_reliable_watchdog_quiet_once_acknowledged():
    d, j = make(ack_timeout=30.0)
    c = Conn()
    d.attached(c, 0.0)
    d.accept(msg(1), 0.0, True)
    j.commit_now()
    d.pump(c, 0.0, 128)
    d.on_ack(1, 10.0)
    assert d.on_timer(15.0, c) == []


def test_reliable_failed_commit_bounces_what_it_held():
    d, j = make()
    d.accept(msg(1), 0.0, False)
    j.fail, j.failing = True, "disk full"
    j.commit_now()
    (bounce,) = j.bounced
    assert isinstance(bounce, Bounce) and bounce.error.condition == "resource-constraint"
    assert len(d.log) == 0 and j.added == {}
    (refused,) = d.accept(msg(2), 1.0, True)  # refused at once while it lasts
    assert isinstance(refused, Bounce)


def test_reliable_stanza_larger_than_peer_accepts_bounced():
    d, j = make()
    c = Conn()
    d.on_sync(c, 0, 0, 10, 0.0)  # the peer accepts at most 10 bytes
    d.attached(c, 0.0)
    d.accept(msg(1), 0.0, True)
    j.commit_now()
    out = d.pump(c, 0.0, 128)
    assert sent(out) == [] and any(isinstance(a, Bounce) for a in out) and COMMIT in out


def test_reliable_stanza_larger_than_link_allows_bounced_at_once():
    d, _ = make(max_stanza_size=20)
    (bounce,) = d.accept(msg(1), 0.0, True)
    assert isinstance(bounce, Bounce) and bounce.error.condition == "policy-violation"


def test_reliable_unacknowledged_stanza_expires():
    d, j = make(stanza_timeout=60.0)
    d.accept(msg(1), 0.0, False)
    j.commit_now()
    assert d.log.next_deadline() == 60.0
    assert d.expire(59.0) == []
    assert [e.text for e in d.expire(60.0)] == ["1"] and j.added == {}


def test_reliable_pump_stops_at_the_limit_for_the_driver_to_flush():
    d, j = make()
    c = Conn()
    d.attached(c, 0.0)
    for n in range(5):
        d.accept(msg(n), 0.0, True)
    j.commit_now()
    assert sent(d.pump(c, 0.0, 2)) == ["0", "1"]
    assert sent(d.pump(c, 0.0, 2)) == ["2", "3"]
    assert sent(d.pump(c, 0.0, 2)) == ["4"]


def test_reliable_ack_retried_once_per_stanza_past_ack_every():
    """One attempt per stanza past `ack_every`, in the same turn: a later one finds the route's
    bytes taken and saves the count before the next read (the duplicate bound)."""

    class Route:
        checks = 0

        def pending_output(self) -> int:
            self.checks += 1
            return 1 if self.checks == 1 else 0  # taken by the second look

    d, _ = make(ack_every=2)
    c = Conn(outbound=False)
    route = Route()
    d.on_sync(c, 0, 0, None, 0.0)
    for _ in range(3):
        d.arrived(c, 0.0)
        d.delivered_to(route)
    assert d.on_timer(0.0, c) == [SendAck(c, 3)]  # the second of two attempts
