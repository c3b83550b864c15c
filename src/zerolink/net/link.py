"""A peer link: the route to one a-priori-configured X2X server, over whatever connection is up.

Connection direction (XEP-0361 §4.3):
- one connection is used both ways, whoever opened it;
- when both servers opened one (simultaneous open), each sends only on the connection it
  opened, so each TCP connection carries one direction;
- while a connection from the peer is up we do not dial (``direction = both``), so the usual
  outcome is one shared connection; a random initial delay makes that likely at start-up;
- the opener closes its connection when done: on-demand links close after `idle_timeout`.

Stanzas wait in a queue bounded in count (`queue_limit`) and bytes (`queue_bytes`) while no
connection can take them; those that wait longer than `stanza_timeout` bounce with
``remote-server-timeout``, those that find the queue full with ``resource-constraint``.

Backpressure (`zerolink.net.flow`): once the queue holds ``high`` stanzas (half the limit) the
link is congested and the connections feeding it stop reading; they read again when the queue is
back at ``low`` (half of high) and the sending connection takes more (or there is none: a link
that is down still drains by timeouts). So a sender that takes part is slowed down instead of
bounced; the limit is only reached by senders that do not (bounces, local users).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from OpenSSL import SSL

from zerolink.config import PeerConfig, ServerConfig
from zerolink.core.queue import StanzaQueue
from zerolink.core.reliable import ReliableLog
from zerolink.domains import DomainSet
from zerolink.errors import StanzaError
from zerolink.net.flow import Valve
from zerolink.net.reliable import Reliable
from zerolink.net.sockets import tcp_rtt
from zerolink.net.tasks import cancel_and_wait
from zerolink.net.tlslayer import TLSLayer, make_context
from zerolink.net.x2x_conn import X2XConnection
from zerolink.proto.x2x import X2XSettings
from zerolink.xml.element import SERVER_NS, Element
from zerolink.xml.parser import parse_stanza
from zerolink.xml.serializer import serialize

if TYPE_CHECKING:
    from zerolink.core.router import Route, Router
    from zerolink.net.commit import GroupCommit
    from zerolink.store import LinkLogStore

log = logging.getLogger("zerolink.link")

# While pumping a backlog, hand the bytes to the transport every this many stanzas, so that it
# can push back (pause_writing) before the whole queue sits in its buffer.
_PUMP_FLUSH = 128


# A peer's connection that comes this long (plus two round trips) after ours was made is not
# a simultaneous open: the peer dialed although ours was there to see.
SIMULTANEOUS_WINDOW = 0.5


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


class PeerLink:
    """Route for a peer's domains; owns its connections, queue and dialer."""

    def __init__(
        self,
        cfg: PeerConfig,
        server: ServerConfig,
        router: Router,
        store: LinkLogStore | None = None,
        commits: GroupCommit | None = None,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.router = router
        self.loop = asyncio.get_running_loop()
        self.domains = DomainSet(cfg.domains)
        self.settings = X2XSettings(
            peer_domains=self.domains,
            is_local=router.is_local,
            max_stanza_size=server.max_stanza_size,
            max_depth=server.max_depth,
            keepalive=cfg.keepalive,
            close_timeout=cfg.close_timeout,
            acks=cfg.acks,
        )
        self.queue: StanzaQueue | ReliableLog = StanzaQueue(
            cfg.queue_limit, cfg.stanza_timeout, cfg.queue_bytes
        )
        self.reliable: Reliable | None = None
        if cfg.acks:
            assert store is not None and commits is not None, "acks = true needs the link store"
            self.reliable = Reliable(self, store, commits, server.max_stanza_size)
            self.queue = self.reliable.log
        # Water marks of the queue for backpressure (module docstring).
        self.high = max(1, cfg.queue_limit // 2)
        self.low = self.high // 2
        self._valve = Valve()
        self.outbound: X2XConnection | None = None
        self.inbound: list[X2XConnection] = []
        self._running = False
        self._wake = asyncio.Event()
        self._dialer: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self.connections_made = 0
        self._client_ctx: SSL.Context | None = None
        self.tls_session: SSL.Session | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def may_dial(self) -> bool:
        return self.cfg.direction != "inbound" and self.cfg.remote is not None

    def start(self) -> None:
        self._running = True
        if self.may_dial:
            self._dialer = self.loop.create_task(self._dial_loop(), name=f"dial-{self.name}")

    async def stop(self) -> None:
        """Close every connection with the close exchange, bounce what is still queued."""
        self._running = False
        if self._dialer is not None:
            await cancel_and_wait(self._dialer)
        for handle in (self._expiry, self._idle):
            if handle is not None:
                handle.cancel()
        conns = [c for c in (self.outbound, *self.inbound) if c is not None]
        for conn in conns:
            conn.begin_close()
        if conns:
            await asyncio.wait(
                [asyncio.ensure_future(c.closed.wait()) for c in conns],
                timeout=self.cfg.close_timeout + 1,
            )
        for conn in conns:
            if conn.transport is not None:
                conn.transport.abort()
        if self.reliable is not None:
            self.reliable.stop()  # the log stays on disk: it goes out after the restart
        else:
            assert isinstance(self.queue, StanzaQueue)
            for data in self.queue.clear():
                self.router.bounce(
                    parse_stanza(data), StanzaError("remote-server-timeout", "server shutting down")
                )
        self._valve.release()

    # -- routing ---------------------------------------------------------------------------
    def sender(self) -> X2XConnection | None:
        """The connection we send on: our own if we opened one (§4.3), else the peer's."""
        out = self.outbound
        if out is not None and out.is_open:
            return out
        for conn in self.inbound:
            if conn.is_open:
                return conn
        return None

    def deliver(self, stanza: Element) -> None:
        """Route entry point: send now if possible, otherwise queue (or bounce)."""
        if self.reliable is not None:
            self.reliable.accept(stanza)
            return
        conn = self.sender()
        if conn is not None and not conn.paused and not self.queue:
            conn.send(stanza)
            return
        queue = self.queue
        assert isinstance(queue, StanzaQueue)
        if not queue.push(serialize(stanza, content_ns=SERVER_NS), self.loop.time()):
            self.router.bounce(
                stanza, StanzaError("resource-constraint", queue.full_text(f"link {self.name}"))
            )
            return
        if conn is None:
            self._arm_expiry()
            self._wake.set()  # on-demand links dial when something waits
        else:
            self.pump()

    def received(self, stanza: Element, conn: X2XConnection) -> Route | None:
        """A stanza from the peer: route it; returns the route it went to (for backpressure)."""
        reliable = self.reliable
        if reliable is None:
            return self.router.route(stanza)
        if not reliable.arrived(conn):
            return None  # a retransmitted stanza we already have
        route = self.router.route(stanza)
        reliable.delivered_to(route)
        return route

    def rejected(self, stanza: Element, error: StanzaError, conn: X2XConnection) -> None:
        """A stanza from the peer that cannot be accepted: counted, answered, dropped."""
        if self.reliable is not None and not self.reliable.arrived(conn):
            return
        sender = stanza.attrib.get("from", "")
        domain = sender.split("/", 1)[0].rpartition("@")[2].lower()
        if domain in self.domains:
            log.info(
                "link %s: refused a stanza from %s to %s: %s%s",
                self.name,
                sender,
                stanza.attrib.get("to", ""),
                error.condition,
                f" ({error.text})" if error.text else "",
            )
            self.router.bounce(stanza, error)
        else:
            log.warning("link %s: dropped a stanza from %r: %s", self.name, sender, error)

    def pump(self) -> None:
        """Move queued stanzas onto the sending connection until it pushes back."""
        if self.reliable is not None:
            self.reliable.pump()
            self._check_drained()
            return
        conn = self.sender()
        queue = self.queue
        assert isinstance(queue, StanzaQueue)
        sent = 0
        while queue and conn is not None and not conn.paused:
            conn.send_serialized(queue.pop())
            sent += 1
            if sent % _PUMP_FLUSH == 0:
                conn.flush()  # the transport tells us (pause_writing) when it has enough
        self._check_drained()

    # -- backpressure (zerolink.net.flow) --------------------------------------------------
    def congested(self) -> bool:
        """True while the queue is at or above high water: feeders should stop reading."""
        queue = self.queue
        return len(queue) >= self.high or queue.bytes >= queue.max_bytes // 2

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once, on a later loop turn) when the queue is back at low water."""
        self._valve.wait(callback)
        self._check_drained()

    def cancel_drained(self, callback: Callable[[], None]) -> None:
        self._valve.cancel(callback)

    def _check_drained(self) -> None:
        """Wake the feeders if the queue is at low water and could move on."""
        queue = self.queue
        if not self._valve or len(queue) > self.low or queue.bytes > queue.max_bytes // 4:
            return
        conn = self.sender()
        if conn is not None and conn.paused:
            return  # resume_writing pumps and checks again; detach if it never comes
        self._valve.release()

    # -- connections -----------------------------------------------------------------------
    def attach(self, conn: X2XConnection) -> None:
        """A connection to the peer is up (ours or theirs)."""
        if conn.outbound:
            self.outbound = conn
        else:
            self.inbound.append(conn)
        self.connections_made += 1
        kind = "outbound" if conn.outbound else "inbound"
        log.info(
            "link %s: up (%s %s -> %s)%s",
            self.name,
            kind,
            conn.local if conn.outbound else conn.peer,
            conn.peer if conn.outbound else conn.local,
            self._second_connection(conn),
        )
        if self.reliable is not None:
            self.reliable.attached(conn)
        if conn.outbound and self.cfg.connect == "on-demand":
            self._arm_idle()
        self.pump()

    def _second_connection(self, conn: X2XConnection) -> str:
        """What the log says when `conn` is not the link's only connection."""
        if conn.outbound:
            # We dial only while no connection of the peer's is up: it came while we dialed.
            return second_connection_note(0.0, None) if self.inbound else ""
        others = [c for c in self.inbound if c is not conn]
        if self.outbound is not None:
            ours = self.outbound
            rtt = tcp_rtt(ours.transport.get_extra_info("socket")) if ours.transport else None
            return second_connection_note(conn.opened_at - ours.opened_at, rtt)
        if others:
            up = conn.opened_at - others[-1].opened_at
            return (
                f"; the peer opened another connection while its previous one ({others[-1].peer},"
                f" {up:.1f}s old) is still open here: the old one may be stale"
            )
        return ""

    def detach(self, conn: X2XConnection, reason: str) -> None:
        """A connection is gone; anything still queued waits for the next one."""
        if conn is self.outbound:
            self.outbound = None
        elif conn in self.inbound:
            self.inbound.remove(conn)
        else:
            return
        if self.reliable is not None:
            self.reliable.detached(conn)
        log.info(
            "link %s: down (%s %s): %s",
            self.name,
            "outbound" if conn.outbound else "inbound",
            conn.peer,
            reason,
        )
        if self.sender() is None:
            if self.queue:
                self._arm_expiry()
            self._wake.set()
            self._check_drained()
        else:
            self.pump()

    # -- TLS -------------------------------------------------------------------------------
    def client_tls(self) -> TLSLayer:
        """A TLS layer for a connection we dial, resuming the last session when we have one."""
        if self._client_ctx is None:
            cfg = self.cfg
            assert cfg.certificate is not None and cfg.key is not None
            self._client_ctx = make_context(str(cfg.certificate), str(cfg.key), server_side=False)
        name = next((d for d in self.cfg.domains if not d.startswith("*.")), None)
        return TLSLayer(
            self._client_ctx, server_side=False, session=self.tls_session, server_name=name
        )

    def remember_tls_session(self, layer: TLSLayer) -> None:
        """Keep the session (with its TLS 1.3 ticket) so that the next dial can resume it."""
        if layer.handshake_done:
            session = layer.session()
            if session is not None:
                self.tls_session = session

    def dial_failed(self, reason: str) -> None:
        """The connection we dialed was not our peer; the dial loop backs off as after a failure."""
        self.tls_session = None

    # -- dialing ---------------------------------------------------------------------------
    def _want_dial(self) -> bool:
        if not self._running or self.outbound is not None:
            return False
        if any(c.is_open for c in self.inbound):
            return False  # one connection both ways (§4.3)
        return self.cfg.connect == "always" or bool(self.queue)

    async def _dial_loop(self) -> None:
        cfg = self.cfg
        assert cfg.remote is not None
        delay = cfg.reconnect_min
        if cfg.direction == "both" and cfg.connect == "always" and cfg.initial_delay > 0:
            await asyncio.sleep(random.uniform(0, cfg.initial_delay))
        while self._running:
            if not self._want_dial():
                self._wake.clear()
                await self._wake.wait()
                continue
            local_addr = (cfg.source, 0) if cfg.source else None
            try:
                _, conn = await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: X2XConnection(link=self),
                        cfg.remote.host,
                        cfg.remote.port,
                        local_addr=local_addr,
                    ),
                    timeout=cfg.connect_timeout,
                )
            except (OSError, TimeoutError) as exc:
                wait = min(delay, cfg.reconnect_max) * random.uniform(0.5, 1.0)
                log.info(
                    "link %s: dial %s failed (%s); retry in %.1fs",
                    self.name,
                    cfg.remote,
                    exc or "timeout",
                    wait,
                )
                delay = min(delay * 2, cfg.reconnect_max)
                await asyncio.sleep(wait)
                continue
            opened = self.loop.time()
            await conn.closed.wait()
            if conn.bytes_received == 0 and self.loop.time() - opened < 10:
                # Accepted, then dropped without a byte (identity refused, wrong port...):
                # back off as after a failed dial instead of hammering the peer.
                delay = min(delay * 2, cfg.reconnect_max)
            else:
                delay = cfg.reconnect_min
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    # -- timers ----------------------------------------------------------------------------
    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            return
        deadline = self.queue.next_deadline()
        if deadline is not None:
            self._expiry = self.loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        if self.reliable is not None:
            expired = self.reliable.expired(self.reliable.log.expire(self.loop.time()))
        else:
            assert isinstance(self.queue, StanzaQueue)
            expired = [parse_stanza(d) for d in self.queue.expire(self.loop.time())]
        for stanza in expired:
            self.router.bounce(
                stanza,
                StanzaError("remote-server-timeout", f"link {self.name} did not come up in time"),
            )
        self._arm_expiry()
        self._check_drained()

    def _arm_idle(self) -> None:
        self._idle = self.loop.call_later(self.cfg.idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        """On-demand: the opener closes its connection once no stanza moved for a while."""
        self._idle = None
        conn = self.outbound
        if conn is None or not conn.is_open:
            return
        quiet = self.loop.time() - conn.last_stanza
        # Not idle while reading is paused for a slow local route: stanzas are waiting.
        if quiet >= self.cfg.idle_timeout and not self.queue and not conn.inflow.paused:
            log.info("link %s: idle for %.0fs, closing our connection", self.name, quiet)
            conn.begin_close()
        else:
            self._idle = self.loop.call_later(
                max(0.05, self.cfg.idle_timeout - quiet), self._check_idle
            )
