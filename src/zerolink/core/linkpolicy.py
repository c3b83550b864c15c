"""XEP-0361 §4.3 for one peer link: which connection sends, when to dial, when to close.

The rules (docs/protocol.md, "Connection direction"):

- one connection is used both ways, whoever opened it (`sender`);
- when both servers opened one (simultaneous open), each sends only on the connection it
  opened, so each TCP connection carries one direction (`sender` prefers our own);
- while a connection from the peer is up we do not dial (``direction = both``), so the usual
  outcome is one shared connection; a random initial delay makes that likely at start-up;
- ``direction = inbound``: we never dial; ``outbound``/``both`` with a remote address: we do,
  always (``connect = always``) or while stanzas wait (``connect = on-demand``);
- the opener closes its connection when done: on-demand links close after `idle_timeout`;
- dials back off with jitter (`zerolink.core.backoff`).

Sans-I/O: events come in with the time (`now`), actions go out (`zerolink.core.actions`), and
`timer()` is the one deadline the driver arms.
"""

from __future__ import annotations

from dataclasses import dataclass

from zerolink.core.actions import DIAL, Action, Close
from zerolink.core.backoff import Backoff, Uniform
from zerolink.core.carrier import Carrier

# A peer's connection that comes this long (plus two round trips) after ours was made is not
# a simultaneous open: the peer dialed although ours was there to see.
SIMULTANEOUS_WINDOW = 0.5

#: A dialed connection that ends within this many seconds without a byte from the peer was
#: refused (identity, wrong port): back off as after a failed dial.
REFUSED_WITHIN = 10.0

#: Shortest re-check of the idle timer.
_MIN_RECHECK = 0.05


def second_connection_note(gap: float, rtt: float | None) -> str:
    """The log's words for a connection of the peer's that arrives `gap` seconds after ours.

    Within a round trip or two both dials crossed (a simultaneous open, §4.3). Later, the peer
    dialed while our connection was up: it does not see that one (it restarted, or a middlebox
    dropped our connection without telling either side).
    """
    if gap <= SIMULTANEOUS_WINDOW + 2 * (rtt or 0.0):
        return "; simultaneous open: both sides dialed at once, each sends on its own connection"
    return (
        f"; second connection: the peer dialed {gap:.1f}s after our connection was made, so it "
        "does not see ours (did it restart?); each side now sends on the connection it opened"
    )


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The peer's settings that §4.3 decisions depend on (from `PeerConfig`)."""

    direction: str = "both"  # both | outbound | inbound
    connect: str = "always"  # always | on-demand
    has_remote: bool = True
    idle_timeout: float = 60.0
    initial_delay: float = 0.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0


class LinkPolicy:
    """The connection policy of one peer link (module docstring)."""

    def __init__(self, settings: PolicySettings, uniform: Uniform) -> None:
        self.settings = settings
        self.uniform = uniform
        self.backoff = Backoff(settings.reconnect_min, settings.reconnect_max, uniform)
        self.outbound: Carrier | None = None
        self.inbound: list[Carrier] = []
        self.running = False
        self.dialing = False  # a dial is under way, or its connection is not over yet
        self._dial_at: float | None = None  # not before then (start-up delay, backoff)
        self._idle_at: float | None = None

    # -- rules --------------------------------------------------------------------------------
    @property
    def may_dial(self) -> bool:
        s = self.settings
        return s.direction != "inbound" and s.has_remote

    def sender(self) -> Carrier | None:
        """The connection we send on: our own if we opened one (§4.3), else the peer's."""
        out = self.outbound
        if out is not None and out.is_open:
            return out
        for conn in self.inbound:
            if conn.is_open:
                return conn
        return None

    def want_dial(self, queued: bool) -> bool:
        """Dial now? Not while any connection is ours or the peer's is open (§4.3)."""
        if not self.running or not self.may_dial or self.dialing or self.outbound is not None:
            return False
        if any(c.is_open for c in self.inbound):
            return False  # one connection both ways
        return self.settings.connect == "always" or queued

    def timer(self) -> float | None:
        """The next time `on_timer` has something to do (None: nothing until an event)."""
        dial_at = None if self.dialing else self._dial_at
        times = [t for t in (self._idle_at, dial_at) if t is not None]
        return min(times) if times else None

    # -- events -------------------------------------------------------------------------------
    def start(self, now: float, queued: bool) -> list[Action]:
        s = self.settings
        self.running = True
        if not self.may_dial:
            return []
        if s.direction == "both" and s.connect == "always" and s.initial_delay > 0:
            # Both sides start together: one waits a little longer and sees the other's dial.
            self._dial_at = now + self.uniform(0, s.initial_delay)
            return []
        return self._maybe_dial(now, queued)

    def stop(self) -> None:
        self.running = False
        self._dial_at = self._idle_at = None

    def up(self, conn: Carrier, now: float) -> None:
        """A connection to the peer is up (ours or theirs)."""
        if conn.outbound:
            self.outbound = conn
            if self.settings.connect == "on-demand":
                self._idle_at = now + self.settings.idle_timeout
        else:
            self.inbound.append(conn)

    def down(self, conn: Carrier, now: float, queued: bool) -> tuple[bool, list[Action]]:
        """A connection is gone; (was it one of ours, what to do now)."""
        if conn is self.outbound:
            self.outbound = None
        elif conn in self.inbound:
            self.inbound.remove(conn)
        else:
            return False, []
        return True, self._maybe_dial(now, queued)

    def queued(self, now: float) -> list[Action]:
        """A stanza waits and no connection takes it: on-demand links dial now."""
        return self._maybe_dial(now, True)

    def dial_failed(self, now: float) -> float:
        """The dial did not connect; returns the seconds until the next attempt."""
        self.dialing = False
        wait = self.backoff.failed()
        self._dial_at = now + wait
        return wait

    def dial_ended(self, now: float, opened_at: float, bytes_received: int) -> None:
        """The connection we dialed is over (closed, lost, or refused after connect)."""
        self.dialing = False
        refused = bytes_received == 0 and now - opened_at < REFUSED_WITHIN
        self._dial_at = now + self.backoff.ended(useful=not refused)

    def on_timer(self, now: float, queued: bool) -> list[Action]:
        """Time passed: the idle check of our on-demand connection, a dial that is due."""
        out: list[Action] = []
        if self._idle_at is not None and now >= self._idle_at:
            out.extend(self._check_idle(now, queued))
        out.extend(self._maybe_dial(now, queued))
        return out

    # -- internals ----------------------------------------------------------------------------
    def _maybe_dial(self, now: float, queued: bool) -> list[Action]:
        if self._dial_at is not None:
            if now < self._dial_at:
                return []  # timer() brings us back then
            self._dial_at = None  # the wait is over: from now on any event may dial
        if not self.want_dial(queued):
            return []
        self.dialing = True
        return [DIAL]

    def _check_idle(self, now: float, queued: bool) -> list[Action]:
        """On-demand: the opener closes its connection once no stanza moved for a while."""
        self._idle_at = None
        conn = self.outbound
        if conn is None or not conn.is_open:
            return []
        idle = self.settings.idle_timeout
        quiet = now - conn.last_stanza
        # Not idle while reading is paused for a slow local route: stanzas are waiting.
        if quiet >= idle and not queued and not conn.reading_paused:
            return [Close(conn)]
        self._idle_at = now + max(_MIN_RECHECK, idle - quiet)
        return []

    def second_connection(self, conn: Carrier, rtt: float | None) -> str:
        """What the log says when `conn` (just up) is not the link's only connection."""
        if conn.outbound:
            # We dial only while no connection of the peer's is up: it came while we dialed.
            return second_connection_note(0.0, None) if self.inbound else ""
        others = [c for c in self.inbound if c is not conn]
        if self.outbound is not None:
            return second_connection_note(conn.opened_at - self.outbound.opened_at, rtt)
        if others:
            up = conn.opened_at - others[-1].opened_at
            return (
                f"; the peer opened another connection while its previous one ({others[-1].peer},"
                f" {up:.1f}s old) is still open here: the old one may be stale"
            )
        return ""
