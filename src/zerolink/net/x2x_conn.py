"""One XEP-0361 connection: drives an `X2XSession` and reports to its `PeerLink`.

Backpressure (`zerolink.net.flow`): a stanza from the peer routed to a congested route (a
component that does not read fast enough) pauses reading this connection until it drains, so
the peer's TCP waits instead of this daemon buffering without limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from zerolink.logs import FLOOD
from zerolink.net.driver import SessionDriver
from zerolink.net.flow import Inflow
from zerolink.net.identity import check_certificate
from zerolink.net.rdns import check_reverse_dns
from zerolink.net.sockets import tune
from zerolink.net.tlslayer import TLSLayer
from zerolink.proto import x2x
from zerolink.xml.element import Element

if TYPE_CHECKING:
    from zerolink.net.ends import LinkEnd, Listener

log = logging.getLogger("zerolink.link")


class X2XConnection(SessionDriver):
    """A TCP connection carrying an implied XEP-0361 stream.

    Outbound connections know their link from the start. Inbound ones are handed a
    `identify` callback that picks the link from the source address before a single byte is
    read; a connection that matches no peer is closed unread.
    """

    def __init__(self, *, link: LinkEnd | None = None, acceptor: Listener | None = None) -> None:
        super().__init__()
        self.link = link
        self.outbound = link is not None
        self.acceptor = acceptor
        self.up = False
        self.last_stanza = self.loop.time()
        self.opened_at = self.loop.time()  # TCP established (the protocol is made then)
        self.inflow = Inflow(self)
        self._addr: tuple[Any, ...] = ()
        self._counted = False  # in the acceptor's pre-identification budget
        self._deadline: asyncio.TimerHandle | None = None  # of the inbound TLS handshake

    @property
    def bytes_received(self) -> int:
        """Bytes of XML stream from the peer so far (after TLS, if any)."""
        return self.session.counters.bytes_in if self.session is not None else 0

    @property
    def reading_paused(self) -> bool:
        """Reading is paused for a slow local route (`zerolink.net.flow`)."""
        return self.inflow.paused

    @property
    def is_open(self) -> bool:
        return self.up and self.session is not None and self.session.state is x2x.State.OPEN

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._addr = transport.get_extra_info("peername") or ()
        if self.link is not None:  # we dialed
            cfg = self.link.cfg
            if cfg.tls:
                self.start_tls(self.link.client_tls())
            else:
                self._identified(self.link)
            return
        acceptor = self.acceptor
        assert acceptor is not None
        if acceptor.tls is not None:
            if not acceptor.could_be_peer(self._addr):
                self._reject("it matches no configured peer (closed before TLS)")
                return
            verdict = acceptor.admission.admit(self, str(self._addr[0]), self.loop.time())
            if not verdict.admitted:
                self._reject(verdict.reason)
                return
            self._counted = True
            if verdict.evict is not None:
                verdict.evict.evicted()
            self._deadline = self.loop.call_later(
                acceptor.handshake_timeout, self._handshake_expired
            )
            self.start_tls(TLSLayer(acceptor.tls, server_side=True))
            return  # the certificate (or the address) tells the peer after the handshake
        link = acceptor.by_address(self._addr)
        if link is None:
            self._reject("it matches no configured peer")
            return
        self._identified(link)

    def data_received(self, data: bytes) -> None:
        if self._counted and self.acceptor is not None:
            self.acceptor.admission.active(self, self.loop.time())
        super().data_received(data)

    def _handshake_expired(self) -> None:
        self._deadline = None
        assert self.acceptor is not None
        self._reject(f"TLS handshake not done within {self.acceptor.handshake_timeout:g} s")

    def evicted(self) -> None:
        """Make room for a newcomer: this handshake has been idle for a while."""
        self._uncount()
        log.info("closed idle TLS handshake from %s, for a new connection", self.peer, extra=FLOOD)
        self._abort()

    def _uncount(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._counted and self.acceptor is not None:
            self._counted = False
            self.acceptor.admission.release(self)

    def on_tls_handshake(self) -> None:
        self._uncount()
        tls = self.tls
        assert tls is not None
        chain = tls.peer_certificates()
        if self.link is not None:  # we dialed: is it really our peer?
            link = self.link
            if link.cfg.identity.mode == "tls":
                reason = check_certificate(link.cfg, chain, server=True)
                if reason is not None:
                    log.warning("link %s: rejected %s: %s", link.name, self.peer, reason)
                    link.dial_failed(reason)
                    self._abort()
                    return
            self._log_handshake(link)
            self._identified(link)
            return
        acceptor = self.acceptor
        assert acceptor is not None
        link, reasons = acceptor.by_certificate(self._addr, chain)
        if link is None:
            self._reject("; ".join(reasons) or "it matches no configured peer")
            return
        self._log_handshake(link)
        self._identified(link)

    def _log_handshake(self, link: LinkEnd) -> None:
        tls = self.tls
        assert tls is not None
        log.info(
            "link %s: TLS %s with %s (%s, %d bytes sent, %d received before the first stanza)",
            link.name,
            tls.conn.get_protocol_version_name(),
            self.peer,
            "session resumed" if tls.session_reused else "full handshake",
            tls.raw_out,
            tls.raw_in,
        )

    def on_tls_failed(self, reason: str) -> None:
        if self.outbound and self.link is not None:
            log.warning("link %s: TLS with %s failed: %s", self.link.name, self.peer, reason)
        else:
            self._reject(f"TLS failed: {reason}")

    def _reject(self, reason: str) -> None:
        listen = self.acceptor.listen if self.acceptor is not None else "?"
        log.warning("rejected connection from %s on %s: %s", self.peer, listen, reason, extra=FLOOD)
        self._abort()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _identified(self, link: LinkEnd) -> None:
        """The peer is known: check reverse DNS if configured, then carry stanzas."""
        self.link = link
        self.gate = link.before_output
        ident = link.cfg.identity
        if not self.outbound and ident.mode == "address" and ident.reverse_dns:
            assert self.transport is not None
            self.transport.pause_reading()
            self.loop.create_task(self._check_rdns(link))
            return
        self._open(link)

    async def _check_rdns(self, link: LinkEnd) -> None:
        ident = link.cfg.identity
        assert ident.reverse_dns is not None
        resolver = (ident.resolver.host, ident.resolver.port) if ident.resolver else None
        result = await check_reverse_dns(
            self._addr[0],
            ident.reverse_dns,
            dnssec=ident.dnssec,
            resolver=resolver,
            timeout=ident.dns_timeout,
        )
        if self.transport is None:
            return
        if not result.ok:
            self._reject(f"reverse DNS: {result.reason}")
            return
        log.info("link %s: reverse DNS of %s: %s", link.name, self.peer, result.reason)
        self.transport.resume_reading()
        self._open(link)

    def _open(self, link: LinkEnd) -> None:
        cfg = link.cfg
        assert self.transport is not None
        tune(
            self.transport.get_extra_info("socket"),
            user_timeout=cfg.tcp_user_timeout,
            keepalive_idle=cfg.keepalive or 60.0,
        )
        self.session = x2x.X2XSession(link.settings, now=self.loop.time())
        self.up = True
        link.attach(self)
        self.flush()
        self.feed_session(b"")  # whatever arrived while the peer was being identified

    def send_control(self, el: Element) -> None:
        """A reliable-delivery element (sync, a, r): not a stanza, not counted."""
        if self.session is not None:
            self.session.send_control(el, self.loop.time())
            self.schedule_flush()

    def send(self, stanza: Element) -> None:
        self.session.send_stanza(stanza, self.loop.time())
        self.last_stanza = self.loop.time()
        self.schedule_flush()

    def send_serialized(self, data: bytes) -> None:
        """A stanza already serialized in ``jabber:server`` (from a queue)."""
        self.session.send_serialized(data, self.loop.time())
        self.last_stanza = self.loop.time()
        self.schedule_flush()

    def handle_events(self, events: list[Any]) -> None:
        link = self.link
        assert link is not None
        inflow = self.inflow
        if inflow.held is not None:  # paused: keep the order, handle them when it resumes
            inflow.hold(events, 0)
            return
        for i, ev in enumerate(events):
            if type(ev) is x2x.StanzaIn:
                self.last_stanza = self.loop.time()
                if inflow.check(link.received(ev.stanza, self)):
                    inflow.hold(events, i + 1)
                    return
            elif isinstance(ev, x2x.StanzaRejected):
                link.rejected(ev.stanza, ev.error, self)
            elif isinstance(ev, x2x.SyncIn):  # these three only with acks on
                link.on_sync(self, ev.h, ev.next, ev.max)
            elif isinstance(ev, x2x.AckIn):
                link.on_ack(ev.h)
            elif isinstance(ev, x2x.AckRequested):
                link.ack_requested(self)
            elif isinstance(ev, x2x.StreamErrorSent | x2x.StreamErrorReceived):
                log.warning(
                    "link %s: stream error %s %s: %s%s",
                    link.name,
                    "sent to" if isinstance(ev, x2x.StreamErrorSent) else "from",
                    self.peer,
                    ev.condition,
                    f" ({ev.text})" if ev.text else "",
                )
            elif isinstance(ev, x2x.PeerClosing):
                log.info("link %s: %s closed its stream", link.name, self.peer)
            elif isinstance(ev, x2x.Closed):
                self.up = False
                link.detach(self, ev.reason)
                self.close_transport()

    def on_lost(self, reason: str) -> None:
        self._uncount()
        self.inflow.close()
        if self.outbound and self.tls is not None and self.link is not None:
            self.link.remember_tls_session(self.tls)
        if self.up and self.link is not None:
            self.up = False
            session = self.session
            if self.lost_cleanly and session is not None and session.state is x2x.State.CLOSING:
                # We had sent </stream:stream>; a FIN in reply is an ordinary, if terse, close.
                why = "closed: the peer closed the connection after our stream close"
            else:
                why = f"TCP connection lost ({reason})"
            self.link.detach(self, why)

    def on_writable(self) -> None:
        if self.link is not None:
            self.link.pump()
