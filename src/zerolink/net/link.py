"""A peer link: the route to one a-priori-configured X2X server, over whatever connection is up.

This is the driver: sockets, tasks and one timer. The decisions are made in the sans-I/O core
and come back as actions (`zerolink.core.actions`) that this module carries out:

- `zerolink.core.linkpolicy.LinkPolicy`: XEP-0361 §4.3 (which connection sends, when to dial,
  backoff, the opener closing an idle on-demand link);
- `zerolink.core.delivery.ReliableDelivery` (``acks = true``): numbering, ``<sync/>``,
  duplicates, acks, the dead-connection watchdog; its log store is `zerolink.net.reliable`.

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
from zerolink.core.actions import (
    Abort,
    Action,
    Bounce,
    Close,
    Commit,
    Dial,
    Released,
    RequestAck,
    SendAck,
    SendOn,
    SendSync,
    Wake,
)
from zerolink.core.delivery import DeliverySettings, ReliableDelivery
from zerolink.core.linkpolicy import (
    SIMULTANEOUS_WINDOW,
    LinkPolicy,
    PolicySettings,
    second_connection_note,
)
from zerolink.core.outbox import Outbox
from zerolink.core.queue import StanzaQueue
from zerolink.domains import DomainSet
from zerolink.errors import StanzaError
from zerolink.jid import domain_of
from zerolink.net.flow import Valve
from zerolink.net.reliable import LinkJournal
from zerolink.net.sockets import tcp_rtt
from zerolink.net.tasks import cancel_and_wait
from zerolink.net.tlslayer import TLSLayer, make_context
from zerolink.net.x2x_conn import X2XConnection
from zerolink.proto import acks
from zerolink.proto.x2x import X2XSettings
from zerolink.xml.element import SERVER_NS, Element
from zerolink.xml.parser import parse_stanza
from zerolink.xml.serializer import serialize

if TYPE_CHECKING:
    from zerolink.core.carrier import Carrier
    from zerolink.core.router import Route, Router
    from zerolink.net.commit import GroupCommit
    from zerolink.store import LinkLogStore

__all__ = ["SIMULTANEOUS_WINDOW", "PeerLink", "second_connection_note"]

log = logging.getLogger("zerolink.link")

# While pumping a backlog, hand the bytes to the transport every this many stanzas, so that it
# can push back (pause_writing) before the whole queue sits in its buffer.
_PUMP_FLUSH = 128


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
        self.policy = LinkPolicy(
            PolicySettings(
                direction=cfg.direction,
                connect=cfg.connect,
                has_remote=cfg.remote is not None,
                idle_timeout=cfg.idle_timeout,
                initial_delay=cfg.initial_delay,
                reconnect_min=cfg.reconnect_min,
                reconnect_max=cfg.reconnect_max,
            ),
            random.uniform,
        )
        self.delivery: ReliableDelivery | None = None
        self.journal: LinkJournal | None = None
        self._plain: StanzaQueue | None = None
        self.queue: Outbox
        if cfg.acks:
            assert store is not None and commits is not None, "acks = true needs the link store"
            self.journal = LinkJournal(cfg.name, store, commits, self._after_commit)
            self.delivery = ReliableDelivery(
                DeliverySettings(
                    name=cfg.name,
                    queue_limit=cfg.queue_limit,
                    queue_bytes=cfg.queue_bytes,
                    stanza_timeout=cfg.stanza_timeout,
                    ack_every=cfg.ack_every,
                    ack_delay=cfg.ack_delay,
                    ack_timeout=cfg.ack_timeout,
                    max_stanza_size=server.max_stanza_size,
                    accept_max=self.settings.max_stanza_size,
                ),
                self.journal,
                self.loop.time(),
            )
            self.journal.load(self.delivery, self.loop.time())
            self.queue = self.delivery.log
        else:
            self._plain = StanzaQueue(cfg.queue_limit, cfg.stanza_timeout, cfg.queue_bytes)
            self.queue = self._plain
        # Water marks of the queue for backpressure (module docstring).
        self.high = max(1, cfg.queue_limit // 2)
        self.low = self.high // 2
        self._valve = Valve()
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        self._expiring = False  # queued stanzas found no connection: their deadlines count
        self._dialer: asyncio.Task[None] | None = None
        self._pump_scheduled = False
        self.connections_made = 0
        self._client_ctx: SSL.Context | None = None
        self.tls_session: SSL.Session | None = None

    @property
    def before_output(self) -> Callable[[], None] | None:
        """What a connection calls before it writes (the router's gate: commits first)."""
        return self.router.before_output

    @property
    def outbound(self) -> X2XConnection | None:
        """Our connection to the peer, if one is up."""
        return self.policy.outbound  # type: ignore[return-value]

    @property
    def inbound(self) -> list[X2XConnection]:
        """The peer's connections to us that are up."""
        return self.policy.inbound  # type: ignore[return-value]

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def may_dial(self) -> bool:
        return self.policy.may_dial

    def start(self) -> None:
        self._do(self.policy.start(self.loop.time(), bool(self.queue)))
        self._rearm()

    async def stop(self) -> None:
        """Close every connection with the close exchange, bounce what is still queued."""
        self.policy.stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._dialer is not None:
            await cancel_and_wait(self._dialer)
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
        if self.delivery is not None:
            self.delivery.stop()  # the log stays on disk: it goes out after the restart
        else:
            assert self._plain is not None
            for data in self._plain.clear():
                self.router.bounce(
                    parse_stanza(data), StanzaError("remote-server-timeout", "server shutting down")
                )
        self._valve.release()

    # -- carrying out actions --------------------------------------------------------------
    def _do(self, actions: list[Action]) -> None:
        """Carry out what the policy or the reliable delivery decided, in order."""
        for a in actions:
            kind = type(a)
            if kind is SendOn:
                a.conn.send(a.stanza)  # type: ignore[union-attr]
            elif kind is SendAck:
                a.conn.send_control(acks.ack_element(a.received))  # type: ignore[union-attr]
            elif kind is SendSync:
                el = acks.sync_element(a.received, a.next_seq, a.max_size)  # type: ignore[union-attr]
                a.conn.send_control(el)  # type: ignore[union-attr]
            elif kind is RequestAck:
                a.conn.send_control(acks.request_element())  # type: ignore[union-attr]
            elif kind is Commit:
                assert self.journal is not None
                self.journal.request()
            elif kind is Bounce:
                self.router.bounce(a.stanza, a.error)  # type: ignore[union-attr]
            elif kind is Wake:
                self._waiting()
            elif kind is Released:
                self._check_drained()
            elif kind is Dial:
                self._dialer = self.loop.create_task(self._dial(), name=f"dial-{self.name}")
            elif kind is Close:
                a.conn.begin_close()  # type: ignore[union-attr]
            elif kind is Abort:
                transport = a.conn.transport  # type: ignore[union-attr]
                if transport is not None:
                    transport.abort()

    def _after_commit(self, actions: list[Action]) -> None:
        """A group commit held this link's records: bounce what it refused, then pump."""
        self._do(actions)
        # Not from here: a commit runs inside other connections' flushes (before_output), and
        # stanzas sent from inside a flush would overtake the bytes it is writing.
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.loop.call_soon(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._pump_scheduled = False
        self.pump()

    def _rearm(self) -> None:
        """Arm the one timer at the earliest deadline of the policy, delivery and queue."""
        t = self.policy.timer()
        if self.delivery is not None:
            d = self.delivery.timer()
            if d is not None and (t is None or d < t):
                t = d
        if self._expiring:
            q = self.queue.next_deadline()
            if q is None:
                self._expiring = False
            elif t is None or q < t:
                t = q
        if t is None:
            return  # a timer still armed fires, finds nothing due, and is not armed again
        if self._timer is not None:
            if self._timer_at <= t:
                return
            self._timer.cancel()
        self._timer_at = t
        if t <= self.loop.time():
            # Due now (an ack after `ack_every` stanzas): before the next read, as call_soon
            # runs, not after it as a due timer does; the next read's stanzas would still be
            # in the component's buffers and hold the saved count back (docs/protocol.md).
            self._timer = self.loop.call_soon(self._on_timer)
        else:
            self._timer = self.loop.call_at(t, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = max(self.loop.time(), self._timer_at)
        self._do(self.policy.on_timer(now, bool(self.queue)))
        if self.delivery is not None:
            self._do(self.delivery.on_timer(now, self.sender()))
        if self._expiring:
            deadline = self.queue.next_deadline()
            if deadline is not None and deadline <= now:
                self._expire(now)
        self._rearm()

    def _waiting(self) -> None:
        """A stanza waits and no connection takes it: its deadline counts; maybe dial."""
        self._expiring = True
        self._do(self.policy.queued(self.loop.time()))
        self._rearm()

    # -- routing ---------------------------------------------------------------------------
    def sender(self) -> X2XConnection | None:
        """The connection we send on: our own if we opened one (§4.3), else the peer's."""
        return self.policy.sender()  # type: ignore[return-value]

    def deliver(self, stanza: Element) -> None:
        """Route entry point: send now if possible, otherwise queue (or bounce)."""
        if self.delivery is not None:
            self._do(self.delivery.accept(stanza, self.loop.time(), self.sender() is not None))
            return
        conn = self.sender()
        queue = self._plain
        assert queue is not None
        if conn is not None and not conn.paused and not queue:
            conn.send(stanza)
            return
        if not queue.push(serialize(stanza, content_ns=SERVER_NS), self.loop.time()):
            self.router.bounce(
                stanza, StanzaError("resource-constraint", queue.full_text(f"link {self.name}"))
            )
            return
        if conn is None:
            self._waiting()  # on-demand links dial when something waits
        else:
            self.pump()

    def received(self, stanza: Element, conn: X2XConnection) -> Route | None:
        """A stanza from the peer: route it; returns the route it went to (for backpressure)."""
        delivery = self.delivery
        if delivery is None:
            return self.router.route(stanza)
        if not delivery.arrived(conn, self.loop.time()):
            return None  # a retransmitted stanza we already have
        route = self.router.route(stanza)
        delivery.delivered_to(route)
        self._rearm()
        return route

    def rejected(self, stanza: Element, error: StanzaError, conn: X2XConnection) -> None:
        """A stanza from the peer that cannot be accepted: counted, answered, dropped."""
        if self.delivery is not None:
            if not self.delivery.arrived(conn, self.loop.time()):
                return
            self._rearm()
        sender = stanza.attrib.get("from", "")
        if domain_of(sender) in self.domains:
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

    # -- reliable delivery elements from the peer (the session reports them with acks on) ---
    def on_sync(self, conn: Carrier, h: int, next_seq: int, peer_max: int | None) -> None:
        assert self.delivery is not None
        self._do(self.delivery.on_sync(conn, h, next_seq, peer_max, self.loop.time()))
        self._rearm()

    def on_ack(self, h: int) -> None:
        assert self.delivery is not None
        self._do(self.delivery.on_ack(h, self.loop.time()))

    def ack_requested(self, conn: Carrier) -> None:
        assert self.delivery is not None
        self._do(self.delivery.send_ack(conn, requested=True))

    def pump(self) -> None:
        """Move queued stanzas onto the sending connection until it pushes back."""
        conn = self.sender()
        if self.delivery is not None:
            if conn is not None:
                now = self.loop.time()
                while True:
                    actions = self.delivery.pump(conn, now, _PUMP_FLUSH)
                    self._do(actions)
                    if sum(type(a) is SendOn for a in actions) < _PUMP_FLUSH:
                        break
                    conn.flush()  # the transport tells us (pause_writing) when it has enough
                    if conn.paused:
                        break
                self._rearm()
            self._check_drained()
            return
        queue = self._plain
        assert queue is not None
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
        now = self.loop.time()
        self.policy.up(conn, now)
        self.connections_made += 1
        rtt = None
        ours = self.outbound
        if not conn.outbound and ours is not None and ours.transport is not None:
            rtt = tcp_rtt(ours.transport.get_extra_info("socket"))
        log.info(
            "link %s: up (%s %s -> %s)%s",
            self.name,
            "outbound" if conn.outbound else "inbound",
            conn.local if conn.outbound else conn.peer,
            conn.peer if conn.outbound else conn.local,
            self.policy.second_connection(conn, rtt),
        )
        if self.delivery is not None:
            self._do(self.delivery.attached(conn, now))
        self.pump()
        self._rearm()

    def detach(self, conn: X2XConnection, reason: str) -> None:
        """A connection is gone; anything still queued waits for the next one."""
        mine, actions = self.policy.down(conn, self.loop.time(), bool(self.queue))
        if not mine:
            return
        if self.delivery is not None:
            self.delivery.detached(conn)
        log.info(
            "link %s: down (%s %s): %s",
            self.name,
            "outbound" if conn.outbound else "inbound",
            conn.peer,
            reason,
        )
        if self.sender() is None:
            if self.queue:
                self._expiring = True
            self._do(actions)
            self._check_drained()
        else:
            self.pump()
        self._rearm()

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
    async def _dial(self) -> None:
        """One dial the policy asked for; it hears how it ended (for its backoff)."""
        cfg = self.cfg
        assert cfg.remote is not None
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
            wait = self.policy.dial_failed(self.loop.time())
            log.info(
                "link %s: dial %s failed (%s); retry in %.1fs",
                self.name,
                cfg.remote,
                exc or "timeout",
                wait,
            )
            self._rearm()
            return
        opened = self.loop.time()
        await conn.closed.wait()
        self.policy.dial_ended(self.loop.time(), opened, conn.bytes_received)
        self._rearm()

    # -- timers ----------------------------------------------------------------------------
    def _expire(self, now: float) -> None:
        """Bounce the stanzas whose deadline passed while no connection took them."""
        if self.delivery is not None:
            expired = self.delivery.expire(now)
            if expired:
                assert self.journal is not None
                self.journal.request()
        else:
            assert self._plain is not None
            expired = [parse_stanza(d) for d in self._plain.expire(now)]
        for stanza in expired:
            self.router.bounce(
                stanza,
                StanzaError("remote-server-timeout", f"link {self.name} did not come up in time"),
            )
        self._check_drained()
