"""Reliable delivery for one peer link (``acks = true``; wire format in docs/protocol.md).

Outbound: every stanza accepted for the link gets the next sequence number and is written to
the link's durable log (`zerolink.store.LinkLogStore`) before it is sent; it stays there until
the peer acknowledges it, and is sent again on every new connection until then. Inbound: the
link counts what it has received over its whole life (persisted), drops what a retransmission
repeats, and acknowledges in batches: after `ack_every` stanzas or `ack_delay` seconds of
quiet, never before the count is on disk.

Commits are grouped per loop turn by `zerolink.net.commit.GroupCommit`, shared by every link
of the daemon. `_durable_next` is the first sequence number not yet on disk: only what is below
it is sent. A commit that fails takes back what it held (bounced with ``resource-constraint``)
and the count that the peer is told (`<sync/>`, `<a/>`) is the one on disk, `_disk_count`.

Nothing here waits for a round trip: on a new connection each side sends ``<sync/>`` and starts
retransmitting at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from zerolink.core.reliable import Entry, ReliableLog
from zerolink.errors import StanzaError
from zerolink.proto import acks
from zerolink.store import StoreError
from zerolink.xml.element import SERVER_NS, Element
from zerolink.xml.parser import StanzaReceived, StreamParser
from zerolink.xml.serializer import serialize

if TYPE_CHECKING:
    from zerolink.net.commit import GroupCommit
    from zerolink.net.link import PeerLink
    from zerolink.net.x2x_conn import X2XConnection
    from zerolink.store import LinkLogStore

log = logging.getLogger("zerolink.link")

_IMPLIED = b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>"


class Reliable:
    """The reliable-delivery state of one link: outbound log, inbound count, acks."""

    def __init__(
        self, link: PeerLink, store: LinkLogStore, commits: GroupCommit, max_stanza_size: int
    ) -> None:
        cfg = link.cfg
        self.link = link
        self.store = store
        self.commits = commits
        self.max_stanza_size = max_stanza_size
        self.loop = link.loop
        self.log = ReliableLog(cfg.queue_limit, cfg.queue_bytes, cfg.stanza_timeout)
        self.inbound = acks.Inbound()
        self._stream_conn: X2XConnection | None = None  # where our numbered stanzas go now
        self._announced: dict[int, int] = {}  # id(conn) -> the `next` we told it
        self._acked_count = 0  # inbound count in our last <a/> or <sync/>
        # Inbound count recorded for the next commit: never ahead of what left this process.
        self._saved_count = 0
        self._disk_count = 0  # the recorded count as of the last successful commit
        self._touched: set[object] = set()  # routes fed since the last save
        self._expect: dict[int, int] = {}  # id(conn) -> seq of the next stanza it brings
        self.peer_max: int | None = None  # the largest stanza the peer accepts (its sync)
        self._ack_handle: asyncio.TimerHandle | None = None
        self._last_conn: X2XConnection | None = None
        self._last_progress = self.loop.time()
        self._watch: asyncio.TimerHandle | None = None
        self._load()
        self._durable_next = self.log.next_seq  # stanzas below it are on disk
        self._pump_scheduled = False

    # -- persistence -------------------------------------------------------------------------
    def _load(self) -> None:
        rec = self.store.load(self.link.name)
        self.inbound.count = rec.received
        self._acked_count = self._saved_count = self._disk_count = rec.received
        self.log.next_seq = rec.next_seq
        parser = StreamParser(implied_header=_IMPLIED, max_stanza_size=1 << 30)
        now_wall, now = time.time(), self.loop.time()
        for seq, queued_at, xml in rec.entries:
            (ev,) = [e for e in parser.feed(xml) if isinstance(e, StanzaReceived)]
            deadline = now + (queued_at + self.log.timeout - now_wall)
            self.log.restore(Entry(seq, deadline, ev.element, len(xml)))
        if rec.entries or rec.received:
            log.info(
                "link %s: restored %d unacknowledged stanza(s); %d received so far",
                self.link.name,
                len(rec.entries),
                rec.received,
            )

    def _save_state(self) -> None:
        """Record the counters; the inbound count only once what it counts has left us.

        A stanza routed to a component or client may still sit in this process's buffers;
        if the daemon died then, a saved count would make it lost. So the count advances only
        when the routes fed since the last save have nothing pending: a crash then repeats
        stanzas (duplicates, bounded) but never loses one.
        """
        if all(_pending(route) == 0 for route in self._touched):
            self._touched.clear()
            self._saved_count = self.inbound.count
        self.store.state(self.link.name, self._saved_count, self.log.next_seq)

    def _schedule_turn(self) -> None:
        """Commit what this loop turn accepted, then send it (accepted = on disk)."""
        self.commits.request(self)

    def _commit(self) -> bool:
        """Commit now (the count or log must be on disk before what follows)."""
        return self.commits.commit_now(self)

    def before_commit(self) -> None:
        self._save_state()

    def committed(self, ok: bool) -> None:
        """After the commit attempt that held this link's records."""
        if ok:
            self._disk_count = self._saved_count
            if self.log.next_seq > self._durable_next:
                self._durable_next = self.log.next_seq
        elif self.log.next_seq > self._durable_next:
            self._refuse_undurable()
        # Not from here: a commit runs inside other connections' flushes (before_output), and
        # stanzas sent from inside a flush would overtake the bytes it is writing.
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.loop.call_soon(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._pump_scheduled = False
        self.link.pump()

    def _refuse_undurable(self) -> None:
        """The commit failed: what it held for this link was never sent; refuse it."""
        first = self._durable_next
        refused = self.log.drop_from(first)
        self.store.discard_added(self.link.name, first)
        self.store.state(self.link.name, self._saved_count, self.log.next_seq)
        error = StanzaError(
            "resource-constraint",
            f"stanza for link {self.link.name} not accepted: it cannot be stored "
            f"({self.commits.failing or 'write failed'})",
        )
        for entry in refused:
            self.link.router.bounce(entry.stanza, error)

    def stop(self) -> None:
        for handle in (self._ack_handle, self._watch):
            if handle is not None:
                handle.cancel()
        self._commit()

    # -- outbound ----------------------------------------------------------------------------
    def accept(self, stanza: Element) -> None:
        """A stanza for the peer: numbered, logged, sent after this turn's commit."""
        data = serialize(stanza, content_ns=SERVER_NS)
        if len(data) > self.max_stanza_size:
            self.link.router.bounce(
                stanza, StanzaError("policy-violation", "stanza larger than the link allows")
            )
            return
        if not self.commits.accepting():
            self.link.router.bounce(
                stanza,
                StanzaError(
                    "resource-constraint",
                    f"stanza for link {self.link.name} not accepted: it cannot be stored "
                    f"({self.commits.failing})",
                ),
            )
            return
        entry = self.log.push(stanza, self.loop.time(), len(data))
        if entry is None:
            self.link.router.bounce(
                stanza,
                StanzaError("resource-constraint", f"queue for link {self.link.name} is full"),
            )
            return
        self.store.add(self.link.name, entry.seq, time.time(), data)
        self._schedule_turn()
        if self.link.sender() is None:
            self.link._arm_expiry()
            self.link._wake.set()

    def pump(self) -> None:
        conn = self.link.sender()
        if conn is None:
            return
        if conn is not self._stream_conn:
            # Our numbered stream moves to this connection: restart at the oldest unacked.
            self.log.rewind()
            self._stream_conn = conn
        log_, key, announced = self.log, id(conn), self._announced
        sent = 0
        while log_ and not conn.paused:
            if log_.peek().seq >= self._durable_next:
                break  # not on disk yet: it leaves after the commit of this turn
            entry = log_.pop()
            if self.peer_max is not None and entry.size > self.peer_max:
                self._too_large(entry)
                continue
            if announced.get(key) != entry.seq:
                self._sync(conn, entry.seq)  # a gap, or a new stream: say where it resumes
            conn.send(entry.stanza)
            announced[key] = entry.seq + 1
            sent += 1
            if sent % 128 == 0:
                conn.flush()
        if sent:
            self._arm_watch()

    def _too_large(self, entry: Entry) -> None:
        """The peer said it accepts nothing this big: bounce it rather than loop on it."""
        self.log.discard_popped(entry)
        self.store.remove(self.link.name, entry.seq)
        self._schedule_turn()
        self.link.router.bounce(
            entry.stanza,
            StanzaError(
                "policy-violation",
                f"stanza of {entry.size} bytes; {self.link.name} accepts at most {self.peer_max}",
            ),
        )

    def expired(self, entries: list[Entry]) -> list[Element]:
        for entry in entries:
            self.store.remove(self.link.name, entry.seq)
        if entries:
            self._schedule_turn()
        return [e.stanza for e in entries]

    def on_ack(self, h_wire: int) -> None:
        h = acks.unwrap(h_wire, self.log.next_seq)
        if h > self.log.next_seq:
            self._renumber(h)
            return
        released = self.log.ack(h)
        if released or h > self.log.first_seq:
            self.store.remove_below(self.link.name, h)
            self._schedule_turn()
        self._last_progress = self.loop.time()
        if released:
            self.link._check_drained()

    def _renumber(self, h: int) -> None:
        """The peer has received more than this side ever numbered: our state was lost.

        (The data folder was wiped or restored from an old copy.) Everything still in our
        log is new to the peer, so it is renumbered to start at the peer's count and sent
        again after a fresh sync; nothing is dropped as acknowledged.
        """
        if not self._commit():
            return  # the disk refuses writes: renumber on a later acknowledgement
        shift = h - self.log.first_seq
        log.warning(
            "link %s: the peer has received %d stanzas but this side numbered only %d: its "
            "state was lost; renumbering %d queued stanza(s) from %d",
            self.link.name,
            h,
            self.log.next_seq,
            len(self.log),
            h,
        )
        self.log.renumber(shift)
        try:
            self.store.renumber(self.link.name, shift)
        except StoreError:
            self.log.renumber(-shift)
            return
        self._durable_next += shift
        self._commit()
        self._stream_conn = None  # the next pump syncs again and resends from the new head
        self._announced.clear()
        self._last_progress = self.loop.time()
        self._schedule_turn()

    # -- connections -------------------------------------------------------------------------
    def attached(self, conn: X2XConnection) -> None:
        """Every new connection starts with our <sync/> (before any stanza)."""
        self._last_progress = self.loop.time()
        self._sync(conn)

    def detached(self, conn: X2XConnection) -> None:
        """A connection is gone: what it carried unacknowledged goes again on the next one."""
        self._announced.pop(id(conn), None)
        self._expect.pop(id(conn), None)
        if conn is self._stream_conn:
            self._stream_conn = None
            self.log.rewind()

    def _sync(self, conn: X2XConnection, next_seq: int | None = None) -> None:
        self._commit()  # the count we announce must be on disk (if that fails, the older one)
        first = self.log.first_seq if next_seq is None else next_seq
        self._announced[id(conn)] = first
        conn.send_control(
            acks.sync_element(self._disk_count, first, self.link.settings.max_stanza_size)
        )
        self._acked_count = self._disk_count

    def on_sync(
        self, conn: X2XConnection, h_wire: int, next_wire: int, peer_max: int | None = None
    ) -> None:
        self._expect[id(conn)] = self.inbound.position(next_wire)
        if peer_max is not None:
            self.peer_max = peer_max
        self.on_ack(h_wire)

    # -- inbound -----------------------------------------------------------------------------
    def delivered_to(self, route: object) -> None:
        """The route a counted stanza went to (its buffers gate the saved count)."""
        if route is not None:
            self._touched.add(route)

    def arrived(self, conn: X2XConnection) -> bool:
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
                self.link.name,
                gap,
            )
        self._last_conn = conn
        if self.inbound.count - self._acked_count >= self.link.cfg.ack_every:
            self.loop.call_soon(self._ack_due)
        elif self._ack_handle is None:
            self._ack_handle = self.loop.call_later(self.link.cfg.ack_delay, self._ack_due)
        return True

    def _ack_due(self) -> None:
        self._ack_handle = None
        if self.inbound.count == self._acked_count:
            return
        conn = self._last_conn if self._last_conn and self._last_conn.is_open else None
        self.send_ack(conn or self.link.sender())
        if self._disk_count < self.inbound.count and self._ack_handle is None:
            # Some of it is still in our buffers toward a component or client: ask again.
            self._ack_handle = self.loop.call_later(self.link.cfg.ack_delay, self._ack_due)

    def send_ack(self, conn: X2XConnection | None, *, requested: bool = False) -> None:
        """`<a h=''/>` with the received count that is on disk (see `_save_state`).

        An `<r/>` is always answered, even without progress: it tells the sender that this
        side is alive though its count waits for a slow component (XEP-0198 semantics).
        """
        if conn is None or not conn.is_open:
            return
        self._commit()  # if that fails, the count on disk from before is what we can say
        if requested or self._disk_count != self._acked_count:
            self._acked_count = self._disk_count
            conn.send_control(acks.ack_element(self._disk_count))

    # -- dead connections --------------------------------------------------------------------
    def _arm_watch(self) -> None:
        if self._watch is None:
            self._watch = self.loop.call_later(self.link.cfg.ack_timeout / 2, self._check_acks)

    def _check_acks(self) -> None:
        """No acknowledgement for a while: ask once, then call the connection dead.

        This is what notices a half-open connection (the peer vanished without FIN or RST)
        while stanzas are waiting, within `ack_timeout`.
        """
        self._watch = None
        if not self.log.unacked:
            return
        conn = self._stream_conn
        quiet = self.loop.time() - self._last_progress
        if conn is None or not conn.is_open:
            return
        if quiet >= self.link.cfg.ack_timeout:
            log.warning(
                "link %s: no acknowledgement from %s for %.0fs: the connection is dead",
                self.link.name,
                conn.peer,
                quiet,
            )
            if conn.transport is not None:
                conn.transport.abort()
            return
        conn.send_control(acks.request_element())
        self._watch = self.loop.call_later(
            max(0.05, self.link.cfg.ack_timeout - quiet), self._check_acks
        )


def _pending(route: object) -> int:
    """Stanzas or bytes a route still holds in this process (0 when it cannot tell)."""
    pending = getattr(route, "pending_output", None)
    return pending() if pending is not None else 0
