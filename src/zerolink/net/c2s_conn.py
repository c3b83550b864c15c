"""Client connections of the embedded host: drives a `C2SSession`, upgrades to TLS on STARTTLS.

Output to a bound client goes through an `Outbox` (`zerolink.net.outbox`): at most one chunk at
a time in asyncio's buffer, the rest waiting in the outbox, and the whole bounded by
``host.max_send_buffer``. A client that does not read past that budget has its session ended;
what it was sent and never got goes back to the host (`LocalHost.undelivered`): nothing lost,
memory bounded.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL

from zerolink.config import HostConfig
from zerolink.core.admission import Admission
from zerolink.core.throttle import LoginThrottle
from zerolink.errors import StanzaError, StreamError
from zerolink.logs import FLOOD
from zerolink.net.driver import SessionDriver
from zerolink.net.outbox import FLIGHT_BYTES, Outbox
from zerolink.net.redact import SASL_SECRETS
from zerolink.net.sockets import tune
from zerolink.net.tlslayer import TLSLayer
from zerolink.proto import c2s
from zerolink.proto.sasl import ScramCredentials
from zerolink.stanza import IQ, MESSAGE
from zerolink.xml.element import CLIENT_NS, Element
from zerolink.xml.parser import StanzaReceived, StreamParser
from zerolink.xml.serializer import serialize

if TYPE_CHECKING:
    from zerolink.core.host import LocalHost
    from zerolink.core.router import Router

log = logging.getLogger("zerolink.c2s")

Lookup = Callable[[str, str, str], ScramCredentials | None]  # (local, domain, hash) -> keys
# Seconds between looks at what the client's TCP has acknowledged, while something is in flight
# (doubling from the first to the last).
ACK_POLL = (0.01, 1.0)
_CLIENT_HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)
# SASL failures that mean "wrong credentials" (a guess): logged as warnings.
_CREDENTIAL_FAILURES = frozenset(
    {"not-authorized", "invalid-authzid", "account-disabled", "credentials-expired"}
)


class ClientListener:
    """Shared state of the client listeners: limits, TLS context, where accounts live."""

    def __init__(
        self,
        cfg: HostConfig,
        host: LocalHost,
        router: Router,
        lookup: Lookup,
        tls: SSL.Context,
        max_stanza_size: int,
        max_depth: int,
        *,
        sasl_secret: bytes | None = None,
    ) -> None:
        self.sasl_secret = sasl_secret
        self.cfg = cfg
        self.host = host
        self.router = router
        self.lookup = lookup
        self.tls = tls
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self.admission: Admission[C2SConnection] = Admission(
            cfg.max_unauthenticated, cfg.max_unauthenticated_per_address
        )
        self.throttle = LoginThrottle(cfg.auth_failures, cfg.auth_window)
        self.connections: set[C2SConnection] = set()

    @property
    def unauthenticated(self) -> int:
        return len(self.admission)

    def factory(self, *, direct_tls: bool) -> Callable[[], C2SConnection]:
        return lambda: C2SConnection(self, direct_tls=direct_tls)


class C2SConnection(SessionDriver):
    """One client connection; a `ClientSession` for the host once bound."""

    secret_elements = SASL_SECRETS

    def __init__(self, listener: ClientListener, *, direct_tls: bool) -> None:
        super().__init__()
        self.listener = listener
        self.jid = None
        self._counted = False
        self._direct_tls = direct_tls
        self.gate = listener.router.before_output
        cfg = listener.cfg
        self.outbox = Outbox()
        self._budget = cfg.max_send_buffer
        self._flight_bytes = min(FLIGHT_BYTES, max(1, cfg.max_send_buffer // 4))
        self._raw_out = 0  # bytes written to the transport (after TLS)
        self._over = False  # ended for going over the budget
        self._poll: asyncio.TimerHandle | None = None
        self._poll_delay = ACK_POLL[0]
        self._hold: asyncio.TimerHandle | None = None  # login throttle: nothing in or out
        self._address = ""
        self.session = c2s.C2SSession(
            domains=frozenset(cfg.domains),
            lookup=self._lookup,
            stream_id_factory=lambda: secrets.token_hex(8),
            tls_available=True,
            tls_required=cfg.tls_required,
            direct_tls=direct_tls,
            max_stanza_size=listener.max_stanza_size,
            max_depth=listener.max_depth,
            auth_timeout=cfg.auth_timeout,
            step_timeout=cfg.step_timeout,
            now=self.loop.time(),
            sasl_secret=listener.sasl_secret,
        )

    def _lookup(self, username: str, hash_name: str) -> ScramCredentials | None:
        domain = self.session.domain
        if domain is None:
            return None
        return self.listener.lookup(username, domain, hash_name)

    # -- lifecycle -------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        lst = self.listener
        peername = transport.get_extra_info("peername")
        self._address = str(peername[0]) if peername else self.peer
        now = self.loop.time()
        verdict = lst.admission.admit(self, self._address, now)
        if not verdict.admitted:
            log.warning("refused client %s: %s", self.peer, verdict.reason, extra=FLOOD)
            transport.abort()
            return
        if verdict.evict is not None:
            verdict.evict.evicted()
        self._counted = True
        lst.connections.add(self)
        # Paused as soon as asyncio holds a byte it could not hand to the kernel: the outbox
        # then keeps the rest (measured, and given back if never delivered).
        transport.set_write_buffer_limits(high=0)
        tune(transport.get_extra_info("socket"), user_timeout=0, keepalive_idle=120)
        if self._direct_tls:
            self.start_tls(TLSLayer(lst.tls, server_side=True))
        wait = lst.throttle.wait_before(self._address, now)
        if wait > 0:
            # An address that keeps guessing: its next attempt waits before anything is read,
            # so it costs no key derivation (zerolink.core.throttle).
            self._hold_for(wait)
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._counted:
            self.listener.admission.active(self, self.loop.time())
        super().data_received(data)

    def evicted(self) -> None:
        """Make room for a newcomer: this connection set up nothing for a while."""
        self._uncount()
        log.info(
            "client %s: closed idle before authentication, for a new connection",
            self.peer,
            extra=FLOOD,
        )
        if self.transport is not None:
            self.transport.abort()

    def _hold_for(self, seconds: float) -> None:
        """Read nothing and write nothing for `seconds` (login throttle)."""
        if self.transport is None:
            return
        if self._hold is None:
            self.transport.pause_reading()
        else:
            self._hold.cancel()
        self._hold = self.loop.call_later(seconds, self._release_hold)

    def _release_hold(self) -> None:
        self._hold = None
        if self.transport is None or self.transport.is_closing():
            return
        self.session.restart_clock(self.loop.time())
        self.transport.resume_reading()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None and self.outbox.in_flight:
            # The socket is still open: the kernel's send queue says what the client got. (Not
            # after a reset: the kernel has dropped that queue, the last look stands.)
            self._check_acks()
        super().connection_lost(exc)

    def on_lost(self, reason: str) -> None:
        self._uncount()
        self.listener.connections.discard(self)
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        if self.jid is not None:
            log.info("client %s: disconnected (%s)", self.jid, reason)
        self._release()

    def _release(self) -> None:
        """Unbind from the host and give it back what the client never got."""
        jid, self.jid = self.jid, None
        if jid is None:
            return
        host = self.listener.host
        host.unbind(self)
        undelivered = [el for el in map(_parse_sent, self.outbox.undelivered()) if el is not None]
        if undelivered:
            host.undelivered(jid, undelivered)

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.listener.admission.release(self)

    # -- ClientSession for the host ----------------------------------------------------------
    def send(self, stanza: Element) -> None:
        if self.transport is None:
            return  # gone: the host learns of it through unbind
        # Kept until delivered: what the host can store offline or bounce if it is not.
        keep = stanza.tag == MESSAGE or (stanza.tag == IQ and stanza.get("type") in ("get", "set"))
        self.outbox.put(serialize(stanza, content_ns=CLIENT_NS), keep=keep)
        self._queued()

    def send_stored(self, stanzas: list[Element], done: Callable[[], None]) -> None:
        if self.transport is None:
            return
        for stanza in stanzas:
            self.outbox.put(serialize(stanza, content_ns=CLIENT_NS), keep=False)
        self.outbox.mark(done)
        self._queued()

    def _queued(self) -> None:
        if self._over:
            return  # given back to the host when the connection is lost
        assert self.transport is not None
        held = self.outbox.size + self.transport.get_write_buffer_size()
        if held > self._budget:
            self._over_budget(held)
        elif self.session.state is c2s.State.BOUND:  # else closing: given back at the end
            self.schedule_flush()

    def _over_budget(self, held: int) -> None:
        """End the session: its client does not read what it is sent.

        The stream error is policy-violation (RFC 6120 §4.9.3.13, a local limit was exceeded)
        rather than connection-timeout (§4.9.3.4), which would claim the client is gone for
        good: it may be alive but too slow, and a human reading its log should learn which
        limit it hit. The error cannot reach a client that does not read: the connection is
        aborted, which frees what asyncio holds for it at once; what the client never got is
        given back to the host when the connection is lost (a turn of the loop later). Not a
        reset (SO_LINGER 0): Linux would throw away what the client's kernel has received and
        its application not read yet; closed normally, the kernel still delivers its queue.
        """
        self._over = True
        text = f"more than {self._budget} bytes waiting for the client (host.max_send_buffer)"
        log.warning(
            "client %s (%s): %d bytes not taken by the client, over host.max_send_buffer "
            "(%d): session ended (policy-violation)",
            self.jid,
            self.peer,
            held,
            self._budget,
        )
        self._check_acks()
        self.session.stream_error("policy-violation", text, self.loop.time())
        assert self.transport is not None
        self.transport.abort()

    # -- output ------------------------------------------------------------------------------
    def flush(self) -> None:
        if self._hold is not None:
            return  # the login throttle holds this connection's answer
        box = self.outbox
        t = self.transport
        if (
            box.waiting
            and not self.paused
            and self.session.state is c2s.State.BOUND
            and t is not None
            and not t.is_closing()
        ):
            for data in box.take(self._flight_bytes):
                self.session.send_serialized(data)
            super().flush()
            box.launched(self._raw_out)
            self._poll_delay = ACK_POLL[0]
        else:
            super().flush()
        if box.in_flight:
            self._check_acks()

    def begin_close(self) -> None:
        self.flush()  # before our </stream:stream>
        super().begin_close()

    def _write_raw(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self._raw_out += len(data)
        super()._write_raw(data)

    def on_writable(self) -> None:
        self.flush()  # the next chunk, if any

    def _check_acks(self) -> None:
        """Forget the flights the client's TCP has acknowledged; look again later while some
        are left (the kernel tells nobody when its send queue shrinks)."""
        if self.transport is None:
            return
        for mark in self.outbox.acked(self._raw_out - self.unflushed()):
            self.loop.call_soon(mark)
        if self.outbox.in_flight and self._poll is None:
            self._poll = self.loop.call_later(self._poll_delay, self._on_poll)
            self._poll_delay = min(self._poll_delay * 2, ACK_POLL[1])

    def _on_poll(self) -> None:
        self._poll = None
        self._check_acks()

    def kick(self, condition: str, text: str | None = None) -> None:
        self.flush()  # what waits goes out before the error, as far as the transport takes it
        events = self.session.stream_error(condition, text, self.loop.time())
        self.handle_events(events)
        self.close_transport()

    # -- events ----------------------------------------------------------------------------
    def handle_events(self, events: list[Any]) -> None:
        lst = self.listener
        for ev in events:
            if isinstance(ev, c2s.StanzaIn):
                lst.host.from_client(self, ev.stanza)
            elif isinstance(ev, c2s.StanzaRejected):
                lst.router.bounce(ev.stanza, ev.error)
            elif isinstance(ev, c2s.StartTLS):
                self.flush()  # <proceed/> in plaintext; every byte after it is TLS
                self.start_tls(TLSLayer(lst.tls, server_side=True))
            elif isinstance(ev, c2s.Authenticated):
                self._uncount()
                log.info("client %s: authenticated as %s@%s", self.peer, ev.local, ev.domain)
            elif isinstance(ev, c2s.AuthFailed):
                self._log_auth_failed(ev)
                if ev.condition in _CREDENTIAL_FAILURES:
                    account = f"{ev.username}@{self.session.domain}" if ev.username else None
                    delay = lst.throttle.failed(self._address, account, self.loop.time())
                    if delay > 0:
                        self._hold_for(delay)
            elif isinstance(ev, c2s.BindRequest):
                self._bind(ev.resource)
            elif isinstance(ev, c2s.StreamErrorSent):
                log.info(
                    "client %s: stream error %s%s",
                    self.peer,
                    ev.condition,
                    f" ({ev.text})" if ev.text else "",
                    extra=FLOOD,
                )
            elif isinstance(ev, c2s.Closed):
                self.close_transport()

    def _log_auth_failed(self, ev: c2s.AuthFailed) -> None:
        """One line per failed login, with the address, for fail2ban-style tools.

        A wrong password or unknown user (not-authorized) is a warning; a client that gave up
        or spoke SASL wrongly is only informative. The password never appears.
        """
        domain = self.session.domain or "?"
        who = f"{ev.username}@{domain}" if ev.username else f"(no username)@{domain}"
        host = self.peer.rpartition(":")[0].strip("[]") or self.peer
        level = logging.WARNING if ev.condition in _CREDENTIAL_FAILURES else logging.INFO
        log.log(
            level,
            "client %s: authentication failed for %s: %s (from %s)",
            self.peer,
            who,
            ev.condition,
            host,
            extra=FLOOD,
        )

    def _bind(self, resource: str | None) -> None:
        sess = self.session
        assert sess.authenticated_user is not None and sess.domain is not None
        try:
            jid = self.listener.host.bind(self, sess.authenticated_user, sess.domain, resource)
        except StanzaError as exc:
            self.handle_events(sess.bind_failed(exc.condition, exc.text))
            return
        self.jid = jid
        log.info("client %s: bound %s", self.peer, jid)
        self.handle_events(sess.bind_succeeded(jid))

    def on_tls_handshake(self) -> None:
        if not self.session.secure:
            self.session.tls_established(self.loop.time())

    def on_tls_failed(self, reason: str) -> None:
        log.info("client %s: TLS handshake failed: %s", self.peer, reason, extra=FLOOD)


def _parse_sent(raw: bytes) -> Element | None:
    """A stanza serialized for a client, read back (the outbox keeps bytes, not elements)."""
    parser = StreamParser(
        content_ns=CLIENT_NS, implied_header=_CLIENT_HEADER, max_stanza_size=len(raw) + 1
    )
    try:
        for ev in parser.feed(raw):
            if isinstance(ev, StanzaReceived):
                return ev.element
    except StreamError as exc:  # pragma: no cover - we serialized it ourselves
        log.warning("cannot read back a stanza sent to a client: %s", exc)
    return None
