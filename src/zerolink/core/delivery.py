"""Reliable delivery for one peer link (``acks = true``; wire format in docs/protocol.md).

Outbound: every stanza accepted for the link gets the next sequence number and is written to
the link's durable log before it is sent; it stays there until the peer acknowledges it, and is
sent again on every new connection until then. Inbound: the link counts what it has received
over its whole life (persisted), drops what a retransmission repeats, and acknowledges in
batches: after `ack_every` stanzas or `ack_delay` seconds of quiet, never before the count is
on disk. A connection that leaves stanzas unacknowledged for `ack_timeout` is dead.

`_durable_next` is the first sequence number not yet on disk: only what is below it is sent.
A commit that fails takes back what it held (bounced with ``resource-constraint``) and the
count that the peer is told (`<sync/>`, `<a/>`) is the one on disk, `_disk_count`.

Nothing here waits for a round trip: on a new connection each side sends ``<sync/>`` and starts
retransmitting at once.

Sans-I/O: time comes in as `now`; what must be sent, bounced or committed at the end of the
loop turn comes back as actions (`zerolink.core.actions`); `timer()` is the one deadline (ack
batching, the dead-connection watchdog). The log store is reached through `Journal`, whose
`commit_now` is the one synchronous step: what a `<sync/>` or `<a/>` may announce depends on
whether that commit succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from zerolink.core.actions import (
    COMMIT,
    RELEASED,
    WAKE,
    Abort,
    Action,
    Bounce,
    RequestAck,
    SendAck,
    SendOn,
    SendSync,
)
from zerolink.core.carrier import Carrier
from zerolink.core.reliable import Entry, ReliableLog
from zerolink.counters import Inbound, unwrap
from zerolink.errors import StanzaError
from zerolink.xml.element import SERVER_NS, Element
from zerolink.xml.serializer import serialize

log = logging.getLogger("zerolink.link")

#: Shortest re-check of the dead-connection watchdog.
_MIN_RECHECK = 0.05


class Journal(Protocol):
    """The link's durable log, as the driver keeps it (`zerolink.net.reliable`)."""

    @property
    def failing(self) -> str | None:
        """Why the log cannot be written, while that lasts."""
        ...

    def accepting(self) -> bool:
        """False while commits fail (but for a trial now and then)."""
        ...

    def add(self, seq: int, data: bytes) -> None: ...

    def remove(self, seq: int) -> None: ...

    def remove_below(self, seq: int) -> None: ...

    def state(self, received: int, next_seq: int) -> None: ...

    def discard_added(self, from_seq: int) -> None: ...

    def renumber(self, shift: int) -> bool:
        """Move every stored sequence number up by `shift`; False if it cannot be written."""
        ...

    def commit_now(self) -> bool:
        """Commit what is recorded (calling `before_commit`/`committed`); False on failure."""
        ...


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """The peer's settings reliable delivery uses (from `PeerConfig` and the server's)."""

    name: str
    queue_limit: int
    queue_bytes: int
    stanza_timeout: float
    ack_every: int
    ack_delay: float
    ack_timeout: float
    max_stanza_size: int  # the largest we send (a larger one bounces at once)
    accept_max: int  # the largest we accept (told to the peer in our <sync/>)


def _pending(route: object) -> int:
    """Stanzas or bytes a route still holds in this process (0 when it cannot tell)."""
    pending = getattr(route, "pending_output", None)
    return pending() if pending is not None else 0


class ReliableDelivery:
    """The reliable-delivery state of one link: outbound log, inbound count, acks."""

    def __init__(self, settings: DeliverySettings, journal: Journal, now: float) -> None:
        self.settings = settings
        self.name = settings.name
        self.journal = journal
        self.log = ReliableLog(settings.queue_limit, settings.queue_bytes, settings.stanza_timeout)
        self.inbound = Inbound()
        self._stream_conn: Carrier | None = None  # where our numbered stanzas go now
        self._announced: dict[int, int] = {}  # id(conn) -> the `next` we told it
        self._acked_count = 0  # inbound count in our last <a/> or <sync/>
        # Inbound count recorded for the next commit: never ahead of what left this process.
        self._saved_count = 0
        self._disk_count = 0  # the recorded count as of the last successful commit
        self._touched: set[object] = set()  # routes fed since the last save
        self._expect: dict[int, int] = {}  # id(conn) -> seq of the next stanza it brings
        self.peer_max: int | None = None  # the largest stanza the peer accepts (its sync)
        self._last_conn: Carrier | None = None
        self._last_progress = now
        self._ack_at: float | None = None  # the ack after `ack_delay` of quiet
        # Stanzas that arrived past `ack_every` since the last attempt, and when the first did:
        # one attempt each, at once. While the route still holds the bytes, each finds the
        # count not yet savable; a later one in the same turn may find them taken, so the
        # count is saved before the next read (the duplicate bound of docs/protocol.md).
        self._ack_hits = 0
        self._ack_soon: float | None = None
        self._watch_at: float | None = None
        self._durable_next = 0  # stanzas below it are on disk

    # -- persistence -------------------------------------------------------------------------
    def restore(self, received: int, next_seq: int, entries: Iterable[Entry]) -> None:
        """The state loaded from the store (before anything else happens)."""
        self.inbound.count = received
        self._acked_count = self._saved_count = self._disk_count = received
        self.log.next_seq = next_seq
        for entry in entries:
            self.log.restore(entry)
        self._durable_next = self.log.next_seq

    def before_commit(self) -> None:
        """Record the counters; the inbound count only once what it counts has left us.

        A stanza routed to a component or client may still sit in this process's buffers;
        if the daemon died then, a saved count would make it lost. So the count advances only
        when the routes fed since the last save have nothing pending: a crash then repeats
        stanzas (duplicates, bounded) but never loses one.
        """
        if all(_pending(route) == 0 for route in self._touched):
            self._touched.clear()
            self._saved_count = self.inbound.count
        self.journal.state(self._saved_count, self.log.next_seq)

    def committed(self, ok: bool) -> list[Action]:
        """After the commit attempt that held this link's records (the driver pumps next)."""
        if ok:
            self._disk_count = self._saved_count
            if self.log.next_seq > self._durable_next:
                self._durable_next = self.log.next_seq
            return []
        if self.log.next_seq > self._durable_next:
            return self._refuse_undurable()
        return []

    def _refuse_undurable(self) -> list[Action]:
        """The commit failed: what it held for this link was never sent; refuse it."""
        first = self._durable_next
        refused = self.log.drop_from(first)
        self.journal.discard_added(first)
        self.journal.state(self._saved_count, self.log.next_seq)
        error = StanzaError(
            "resource-constraint",
            f"stanza for link {self.name} not accepted: it cannot be stored "
            f"({self.journal.failing or 'write failed'})",
        )
        return [Bounce(entry.stanza, error) for entry in refused]

    def stop(self) -> None:
        self._ack_at = self._watch_at = self._ack_soon = None
        self.journal.commit_now()

    # -- timer --------------------------------------------------------------------------------
    def timer(self) -> float | None:
        """The next ack or watchdog deadline (None: none)."""
        times = [t for t in (self._ack_soon, self._ack_at, self._watch_at) if t is not None]
        return min(times) if times else None

    def on_timer(self, now: float, sender: Carrier | None) -> list[Action]:
        out: list[Action] = []
        if self._ack_soon is not None:
            hits, self._ack_hits, self._ack_soon = self._ack_hits, 0, None
            for _ in range(hits):
                out.extend(self._ack_due(now, sender))
        if self._ack_at is not None and now >= self._ack_at:
            out.extend(self._ack_due(now, sender))
        if self._watch_at is not None and now >= self._watch_at:
            out.extend(self._check_acks(now))
        return out

    # -- outbound ----------------------------------------------------------------------------
    def accept(self, stanza: Element, now: float, has_sender: bool) -> list[Action]:
        """A stanza for the peer: numbered, logged, sent after this turn's commit."""
        data = serialize(stanza, content_ns=SERVER_NS)
        if len(data) > self.settings.max_stanza_size:
            error = StanzaError("policy-violation", "stanza larger than the link allows")
            return [Bounce(stanza, error)]
        if not self.journal.accepting():
            error = StanzaError(
                "resource-constraint",
                f"stanza for link {self.name} not accepted: it cannot be stored "
                f"({self.journal.failing})",
            )
            return [Bounce(stanza, error)]
        entry = self.log.push(stanza, now, len(data))
        if entry is None:
            error = StanzaError("resource-constraint", f"queue for link {self.name} is full")
            return [Bounce(stanza, error)]
        self.journal.add(entry.seq, data)
        return [COMMIT] if has_sender else [COMMIT, WAKE]

    def pump(self, conn: Carrier, now: float, limit: int) -> list[Action]:
        """Up to `limit` stanzas to send on `conn` (our sender), with the syncs they need."""
        if conn is not self._stream_conn:
            # Our numbered stream moves to this connection: restart at the oldest unacked.
            self.log.rewind()
            self._stream_conn = conn
        log_, key, announced = self.log, id(conn), self._announced
        out: list[Action] = []
        sent = 0
        while log_ and sent < limit:
            if log_.peek().seq >= self._durable_next:
                break  # not on disk yet: it leaves after the commit of this turn
            entry = log_.pop()
            if self.peer_max is not None and entry.size > self.peer_max:
                out += (COMMIT, self._too_large(entry))
                continue
            if announced.get(key) != entry.seq:
                out.append(self._sync(conn, entry.seq))  # a gap, or a new stream: say where
            out.append(SendOn(conn, entry.stanza))
            announced[key] = entry.seq + 1
            sent += 1
        if sent and self._watch_at is None:
            self._watch_at = now + self.settings.ack_timeout / 2
        return out

    def _too_large(self, entry: Entry) -> Action:
        """The peer said it accepts nothing this big: bounce it rather than loop on it."""
        self.log.discard_popped(entry)
        self.journal.remove(entry.seq)
        return Bounce(
            entry.stanza,
            StanzaError(
                "policy-violation",
                f"stanza of {entry.size} bytes; {self.name} accepts at most {self.peer_max}",
            ),
        )

    def expire(self, now: float) -> list[Element]:
        """Remove the stanzas past their deadline (the driver bounces them and commits)."""
        entries = self.log.expire(now)
        for entry in entries:
            self.journal.remove(entry.seq)
        return [e.stanza for e in entries]

    def on_ack(self, h_wire: int, now: float) -> list[Action]:
        h = unwrap(h_wire, self.log.next_seq)
        if h > self.log.next_seq:
            return self._renumber(h, now)
        out: list[Action] = []
        released = self.log.ack(h)
        if released or h > self.log.first_seq:
            self.journal.remove_below(h)
            out.append(COMMIT)
        self._last_progress = now
        if released:
            out.append(RELEASED)
        return out

    def _renumber(self, h: int, now: float) -> list[Action]:
        """The peer has received more than this side ever numbered: our state was lost.

        (The data folder was wiped or restored from an old copy.) Everything still in our
        log is new to the peer, so it is renumbered to start at the peer's count and sent
        again after a fresh sync; nothing is dropped as acknowledged.
        """
        if not self.journal.commit_now():
            return []  # the disk refuses writes: renumber on a later acknowledgement
        shift = h - self.log.first_seq
        log.warning(
            "link %s: the peer has received %d stanzas but this side numbered only %d: its "
            "state was lost; renumbering %d queued stanza(s) from %d",
            self.name,
            h,
            self.log.next_seq,
            len(self.log),
            h,
        )
        self.log.renumber(shift)
        if not self.journal.renumber(shift):
            self.log.renumber(-shift)
            return []
        self._durable_next += shift
        self.journal.commit_now()
        self._stream_conn = None  # the next pump syncs again and resends from the new head
        self._announced.clear()
        self._last_progress = now
        return [COMMIT]

    # -- connections -------------------------------------------------------------------------
    def attached(self, conn: Carrier, now: float) -> list[Action]:
        """Every new connection starts with our <sync/> (before any stanza)."""
        self._last_progress = now
        return [self._sync(conn)]

    def detached(self, conn: Carrier) -> None:
        """A connection is gone: what it carried unacknowledged goes again on the next one."""
        self._announced.pop(id(conn), None)
        self._expect.pop(id(conn), None)
        if conn is self._last_conn:
            self._last_conn = None
        if conn is self._stream_conn:
            self._stream_conn = None
            self.log.rewind()

    def _sync(self, conn: Carrier, next_seq: int | None = None) -> Action:
        self.journal.commit_now()  # the count we announce must be on disk (else the older one)
        first = self.log.first_seq if next_seq is None else next_seq
        self._announced[id(conn)] = first
        self._acked_count = self._disk_count
        return SendSync(conn, self._disk_count, first, self.settings.accept_max)

    def on_sync(
        self, conn: Carrier, h_wire: int, next_wire: int, peer_max: int | None, now: float
    ) -> list[Action]:
        self._expect[id(conn)] = self.inbound.position(next_wire)
        if peer_max is not None:
            self.peer_max = peer_max
        return self.on_ack(h_wire, now)

    # -- inbound -----------------------------------------------------------------------------
    def delivered_to(self, route: object) -> None:
        """The route a counted stanza went to (its buffers gate the saved count)."""
        if route is not None:
            self._touched.add(route)

    def arrived(self, conn: Carrier, now: float) -> bool:
        """Count a stanza from the peer; False for a duplicate (drop it)."""
        key = id(conn)
        seq = self._expect.get(key, self.inbound.count)
        self._expect[key] = seq + 1
        new, gap = self.inbound.arrived(seq)
        if not new:
            return False
        if gap:
            log.warning(
                "link %s: the peer skipped %d stanza(s): it gave them up before they were "
                "acknowledged (they bounced there)",
                self.name,
                gap,
            )
        self._last_conn = conn
        if self.inbound.count - self._acked_count >= self.settings.ack_every:
            self._ack_hits += 1  # at once (on the next loop turn, before the next read)
            if self._ack_soon is None:
                self._ack_soon = now
        elif self._ack_at is None:
            self._ack_at = now + self.settings.ack_delay
        return True

    def _ack_due(self, now: float, sender: Carrier | None) -> list[Action]:
        self._ack_at = None
        if self.inbound.count == self._acked_count:
            return []
        last = self._last_conn
        out = self.send_ack(last if last is not None and last.is_open else sender)
        if self._disk_count < self.inbound.count and self._ack_at is None:
            # Some of it is still in our buffers toward a component or client: ask again.
            self._ack_at = now + self.settings.ack_delay
        return out

    def send_ack(self, conn: Carrier | None, *, requested: bool = False) -> list[Action]:
        """`<a h=''/>` with the received count that is on disk (see `before_commit`).

        An `<r/>` is always answered, even without progress: it tells the sender that this
        side is alive though its count waits for a slow component (XEP-0198 semantics).
        """
        if conn is None or not conn.is_open:
            return []
        self.journal.commit_now()  # if that fails, the count on disk from before is all we say
        if requested or self._disk_count != self._acked_count:
            self._acked_count = self._disk_count
            return [SendAck(conn, self._disk_count)]
        return []

    # -- dead connections --------------------------------------------------------------------
    def _check_acks(self, now: float) -> list[Action]:
        """No acknowledgement for a while: ask once, then call the connection dead.

        This is what notices a half-open connection (the peer vanished without FIN or RST)
        while stanzas are waiting, within `ack_timeout`.
        """
        self._watch_at = None
        if not self.log.unacked:
            return []
        conn = self._stream_conn
        quiet = now - self._last_progress
        if conn is None or not conn.is_open:
            return []
        timeout = self.settings.ack_timeout
        if quiet >= timeout:
            log.warning(
                "link %s: no acknowledgement from %s for %.0fs: the connection is dead",
                self.name,
                conn.peer,
                quiet,
            )
            return [Abort(conn)]
        self._watch_at = now + max(_MIN_RECHECK, timeout - quiet)
        return [RequestAck(conn)]
