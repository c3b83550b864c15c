"""XEP-0114 components attached to this server (a bot, a gateway), like Prosody's component port.

Backpressure both ways (`zerolink.net.flow`): a component whose stanzas go to a congested route
(a peer link whose queue is past high water) is not read until the route drains; and a
component that does not read what we write (its transport paused writing) makes its route
congested, so the connections feeding it (X2X links, other components) stop reading instead of
this daemon buffering for it without limit.

Not every sender takes part in backpressure: local clients, bounces, the host's own replies
write to the component whatever its state. What this process holds for one component is
therefore bounded in bytes too (``max_send_buffer`` of its ``[[component]]`` entry, or of
``[component_listener]``): past it, the component is ended with a ``policy-violation`` stream
error and the connection reset. What was still buffered for it is dropped (it was not reading
it); the component can connect again, and meanwhile its domain bounces.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zerolink.config import DEFAULT_SEND_BUFFER
from zerolink.core.admission import Admission
from zerolink.errors import StanzaError
from zerolink.logs import FLOOD
from zerolink.net.driver import SessionDriver
from zerolink.net.flow import Inflow, Valve
from zerolink.net.redact import COMPONENT_SECRETS
from zerolink.net.sockets import tune
from zerolink.proto import component as proto
from zerolink.xml.element import Element
from zerolink.xml.serializer import STREAM_CLOSE, stream_error

if TYPE_CHECKING:
    from zerolink.core.router import Router

log = logging.getLogger("zerolink.component")


class ComponentRoute:
    """Route for one configured component domain; bounces while no component is attached."""

    def __init__(
        self,
        domain: str,
        secret: str,
        router: Router,
        *,
        max_send_buffer: int = DEFAULT_SEND_BUFFER,
    ) -> None:
        self.name = f"component {domain}"
        self.domain = domain
        self.secret = secret
        self.router = router
        self.max_send_buffer = max_send_buffer
        self.conn: ComponentConnection | None = None
        self._valve = Valve()

    def pending_output(self) -> int:
        """Bytes written to the component that are still in this process's buffer."""
        return self.conn.unflushed() if self.conn is not None else 0

    def deliver(self, stanza: Element) -> None:
        conn = self.conn
        if conn is None:
            self.router.bounce(
                stanza, StanzaError("service-unavailable", f"{self.domain} is not connected")
            )
            return
        conn.send(stanza)

    # -- backpressure ----------------------------------------------------------------------
    def congested(self) -> bool:
        """True while the component does not read fast enough (its transport paused writing)."""
        conn = self.conn
        return conn is not None and conn.paused

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once, on a later loop turn) when the component can take more."""
        self._valve.wait(callback)
        if not self.congested():
            self._valve.release()

    def cancel_drained(self, callback: Callable[[], None]) -> None:
        self._valve.cancel(callback)

    def drained(self) -> None:
        """The component's transport can take more, or the component is gone."""
        self._valve.release()


class ComponentConnection(SessionDriver):
    """One accepted component connection."""

    secret_elements = COMPONENT_SECRETS

    def __init__(
        self,
        routes: dict[str, ComponentRoute],
        router: Router,
        max_stanza_size: int,
        max_depth: int,
        admission: Admission[ComponentConnection] | None = None,
        handshake_timeout: float = 0.0,
    ) -> None:
        super().__init__()
        self.admission = admission
        self._counted = False
        self.routes = routes
        self.router = router
        self.gate = router.before_output
        self.route: ComponentRoute | None = None
        self.inflow = Inflow(self)
        secrets_by_domain = {d: r.secret for d, r in routes.items()}
        self.session = proto.ComponentSession(
            secrets_by_domain,
            secrets.token_hex(8),
            max_stanza_size=max_stanza_size,
            max_depth=max_depth,
            handshake_timeout=handshake_timeout,
            now=self.loop.time(),
        )

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if self.admission is not None:
            peername = transport.get_extra_info("peername")
            address = str(peername[0]) if peername else self.peer
            verdict = self.admission.admit(self, address, self.loop.time())
            if not verdict.admitted:
                log.warning(
                    "refused component connection %s: %s", self.peer, verdict.reason, extra=FLOOD
                )
                transport.abort()
                return
            self._counted = True
            if verdict.evict is not None:
                verdict.evict.evicted()
        tune(transport.get_extra_info("socket"), user_timeout=0, keepalive_idle=60)
        self._arm()  # the handshake deadline

    def data_received(self, data: bytes) -> None:
        if self._counted and self.admission is not None:
            self.admission.active(self, self.loop.time())
        super().data_received(data)

    def evicted(self) -> None:
        """Make room for a newcomer: this connection sent nothing for a while."""
        self._uncount()
        log.info(
            "component connection %s: closed idle before its handshake", self.peer, extra=FLOOD
        )
        if self.transport is not None:
            self.transport.abort()

    def _uncount(self) -> None:
        if self._counted and self.admission is not None:
            self._counted = False
            self.admission.release(self)

    def send(self, stanza: Element) -> None:
        if self.transport is None or self.transport.is_closing():
            return  # ended (over its budget, or gone): the route bounces from now on
        self.session.send_stanza(stanza)
        self.schedule_flush()

    def flush(self) -> None:
        super().flush()
        route, t = self.route, self.transport
        if route is not None and t is not None and not t.is_closing():
            held = t.get_write_buffer_size()
            if held > route.max_send_buffer:
                self._over_budget(route, held)

    def _over_budget(self, route: ComponentRoute, held: int) -> None:
        """The component does not read and is sent more than its budget: end it.

        policy-violation (RFC 6120 §4.9.3.13: a local limit was exceeded) rather than
        connection-timeout, which would claim the component is gone; it may only be slow. The
        error waits behind what it has not read, so the connection is reset at once: that
        frees the buffer now.
        """
        log.warning(
            "component %s: %d bytes not read by the component, over max_send_buffer (%d): "
            "ended (policy-violation)",
            route.domain,
            held,
            route.max_send_buffer,
        )
        self.session.stream_error(
            "policy-violation", f"more than {route.max_send_buffer} bytes not read"
        )
        self._release("over its output budget")
        assert self.transport is not None
        self.transport.abort()

    def on_writable(self) -> None:
        if self.route is not None:
            self.route.drained()

    def handle_events(self, events: list[Any]) -> None:
        inflow = self.inflow
        if inflow.held is not None:  # paused: keep the order, handle them when it resumes
            inflow.hold(events, 0)
            return
        route_stanza = self.router.route
        for i, ev in enumerate(events):
            if type(ev) is proto.StanzaIn:
                if inflow.check(route_stanza(ev.stanza)):
                    inflow.hold(events, i + 1)
                    return
            elif isinstance(ev, proto.StanzaRejected):
                self.router.bounce(ev.stanza, ev.error)
            elif isinstance(ev, proto.Authenticated):
                route = self.routes[ev.domain]
                if route.conn is not None:
                    log.warning(
                        "component %s from %s refused: already connected", ev.domain, self.peer
                    )
                    self.session.state = proto.State.CLOSED
                    if self.transport is not None:
                        self.transport.write(stream_error("conflict") + STREAM_CLOSE)
                    self.close_transport()
                    return
                self._uncount()
                route.conn = self
                self.route = route
                log.info("component %s: connected from %s", ev.domain, self.peer)
            elif isinstance(ev, proto.StreamErrorSent):
                log.warning(
                    "component connection %s: stream error %s%s",
                    self.peer,
                    ev.condition,
                    f" ({ev.text})" if ev.text else "",
                    extra=FLOOD,
                )
            elif isinstance(ev, proto.Closed):
                self._release(ev.reason)
                self.close_transport()

    def on_lost(self, reason: str) -> None:
        self._uncount()
        self.inflow.close()
        self._release(reason)

    def _release(self, reason: str) -> None:
        route = self.route
        if route is not None and route.conn is self:
            route.conn = None
            log.info("component %s: disconnected (%s)", route.domain, reason)
            route.drained()  # it bounces now: whoever waited for it may go on
        self.route = None
