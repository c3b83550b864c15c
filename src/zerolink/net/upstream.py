"""The upstream attachment: zerolink fronting an existing XMPP server (Prosody, ejabberd).

For each remote domain reachable over the links, zerolink connects out to the upstream's
XEP-0114 component port as that domain. What the upstream sends to it goes to the router (and
so over the matching X2X link); what arrives for the upstream's own domains is injected
through the component connection whose domain is the stanza's ``from`` domain, the only one
the upstream lets speak for that domain. While a component connection is down its stanzas wait
in a bounded queue and bounce with ``remote-server-timeout`` after `stanza_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING, Any

from zerolink.config import UpstreamComponent, UpstreamConfig
from zerolink.core.backoff import Backoff
from zerolink.core.queue import StanzaQueue
from zerolink.domains import DomainSet
from zerolink.errors import StanzaError
from zerolink.jid import JIDError, jid_domain
from zerolink.net.driver import SessionDriver
from zerolink.net.redact import COMPONENT_SECRETS
from zerolink.net.sockets import tune
from zerolink.net.tasks import cancel_and_wait
from zerolink.proto import component_client as proto
from zerolink.xml.element import SERVER_NS, Element
from zerolink.xml.parser import parse_stanza
from zerolink.xml.serializer import serialize

if TYPE_CHECKING:
    from zerolink.core.router import Router

log = logging.getLogger("zerolink.upstream")


class UpstreamRoute:
    """Route for the upstream's domains; one `Attachment` per remote domain."""

    name = "upstream"

    def __init__(
        self, cfg: UpstreamConfig, router: Router, *, max_stanza_size: int, max_depth: int
    ) -> None:
        self.cfg = cfg
        self.router = router
        self.fronted = DomainSet([*cfg.domains, *(f"*.{d}" for d in cfg.domains)])
        self.attachments = {
            c.domain: Attachment(c, self, max_stanza_size=max_stanza_size, max_depth=max_depth)
            for c in cfg.components
        }

    def start(self) -> None:
        for att in self.attachments.values():
            att.start()

    async def stop(self) -> None:
        await asyncio.gather(*(att.stop() for att in self.attachments.values()))

    def pending_output(self) -> int:
        """Stanzas waiting for a component connection, plus bytes not yet on a socket."""
        total = 0
        for att in self.attachments.values():
            total += len(att.queue)
            if att.conn is not None:
                total += att.conn.unflushed()
        return total

    def deliver(self, stanza: Element) -> None:
        """A stanza for the upstream: inject it as the component of its sender's domain."""
        try:
            domain = jid_domain(stanza.attrib.get("from", ""))
        except JIDError:
            self.router.bounce(stanza, StanzaError("jid-malformed", "malformed 'from'"))
            return
        att = self.attachments.get(domain)
        if att is None:
            self.router.bounce(
                stanza,
                StanzaError(
                    "service-unavailable",
                    f"{domain} has no component connection to the upstream server "
                    "(add it under [[upstream.component]])",
                ),
            )
            return
        att.deliver(stanza)

    def from_upstream(self, att: Attachment, stanza: Element) -> None:
        """What the upstream sends to one of our component domains goes over the links."""
        try:
            sender = jid_domain(stanza.attrib.get("from", ""))
        except JIDError:
            sender = None
        if sender is None or sender not in self.fronted:
            # The peer would end the X2X stream with invalid-from; refuse it here instead.
            self.router.bounce(
                stanza,
                StanzaError("not-allowed", f"zerolink fronts only {', '.join(self.cfg.domains)}"),
            )
            return
        self.router.route(stanza)


class Attachment:
    """One component connection to the upstream, with its queue and reconnect loop."""

    def __init__(
        self, comp: UpstreamComponent, route: UpstreamRoute, *, max_stanza_size: int, max_depth: int
    ) -> None:
        self.comp = comp
        self.route = route
        self.cfg = route.cfg
        self.loop = asyncio.get_running_loop()
        self.queue = StanzaQueue(
            self.cfg.queue_limit, self.cfg.stanza_timeout, self.cfg.queue_bytes
        )
        self.conn: UpstreamConnection | None = None
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self.connections_made = 0

    def start(self) -> None:
        self._task = self.loop.create_task(
            self._connect_loop(), name=f"upstream-{self.comp.domain}"
        )

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self._expiry is not None:
            self._expiry.cancel()
        conn = self.conn
        if conn is not None:
            conn.begin_close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.closed.wait(), 3)
            if conn.transport is not None:
                conn.transport.abort()
        for data in self.queue.clear():
            self.route.router.bounce(
                parse_stanza(data), StanzaError("remote-server-timeout", "shutting down")
            )

    @property
    def up(self) -> bool:
        return self.conn is not None and self.conn.session.state is proto.State.OPEN

    def deliver(self, stanza: Element) -> None:
        if self.up and not self.queue:
            assert self.conn is not None
            self.conn.send(stanza)
            return
        if not self.queue.push(serialize(stanza, content_ns=SERVER_NS), self.loop.time()):
            self.route.router.bounce(
                stanza,
                StanzaError(
                    "resource-constraint", self.queue.full_text(f"upstream {self.comp.domain}")
                ),
            )
            return
        self._arm_expiry()

    def connected(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        self.connections_made += 1
        log.info("upstream %s: connected as component %s", self.cfg.address, self.comp.domain)
        while self.queue and self.up:
            conn.send_serialized(self.queue.pop())

    def lost(self, conn: UpstreamConnection, reason: str) -> None:
        if self.conn is conn:
            self.conn = None
            log.info(
                "upstream %s: component %s disconnected (%s)",
                self.cfg.address,
                self.comp.domain,
                reason,
            )

    async def _connect_loop(self) -> None:
        cfg = self.cfg
        backoff = Backoff(cfg.reconnect_min, cfg.reconnect_max, random.uniform)
        while True:
            try:
                _, conn = await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: UpstreamConnection(self), cfg.address.host, cfg.address.port
                    ),
                    cfg.connect_timeout,
                )
            except (OSError, TimeoutError) as exc:
                wait = backoff.failed()
                log.info(
                    "upstream %s: cannot connect as %s (%s); retry in %.1fs",
                    cfg.address,
                    self.comp.domain,
                    exc or "timeout",
                    wait,
                )
                await asyncio.sleep(wait)
                continue
            await conn.closed.wait()
            # Back off from an upstream that refuses us; reconnect quickly after a restart.
            await asyncio.sleep(backoff.ended(useful=conn.authenticated))

    def _arm_expiry(self) -> None:
        if self._expiry is None:
            deadline = self.queue.next_deadline()
            if deadline is not None:
                self._expiry = self.loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        for data in self.queue.expire(self.loop.time()):
            self.route.router.bounce(
                parse_stanza(data),
                StanzaError("remote-server-timeout", "the upstream server is not reachable"),
            )
        self._arm_expiry()


class UpstreamConnection(SessionDriver):
    """The TCP connection of one `Attachment`."""

    secret_elements = COMPONENT_SECRETS

    def __init__(self, att: Attachment) -> None:
        super().__init__()
        self.att = att
        self.gate = att.route.router.before_output
        self.authenticated = False
        self.session = proto.ComponentClient(
            att.comp.domain,
            att.comp.secret,
            max_stanza_size=att.max_stanza_size,
            max_depth=att.max_depth,
        )

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        tune(transport.get_extra_info("socket"), user_timeout=0, keepalive_idle=60)
        self.flush()  # our stream header goes first

    def send(self, stanza: Element) -> None:
        self.session.send_stanza(stanza)
        self.schedule_flush()

    def send_serialized(self, data: bytes) -> None:
        self.session.send_serialized(data)
        self.schedule_flush()

    def handle_events(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, proto.StanzaIn):
                self.att.route.from_upstream(self.att, ev.stanza)
            elif isinstance(ev, proto.Connected):
                self.authenticated = True
                self.att.connected(self)
            elif isinstance(ev, proto.Failed):
                log.warning(
                    "upstream %s: component %s refused: %s%s",
                    self.att.cfg.address,
                    self.att.comp.domain,
                    ev.condition,
                    f" ({ev.text})" if ev.text else "",
                )
            elif isinstance(ev, proto.Closed):
                self.att.lost(self, ev.reason)
                self.close_transport()

    def on_lost(self, reason: str) -> None:
        self.att.lost(self, reason)
