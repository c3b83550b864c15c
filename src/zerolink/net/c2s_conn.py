"""Client connections of the embedded host: drives a `C2SSession`, upgrades to TLS on STARTTLS."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL

from zerolink.config import HostConfig
from zerolink.errors import StanzaError
from zerolink.net.driver import SessionDriver
from zerolink.net.redact import SASL_SECRETS
from zerolink.net.sockets import tune
from zerolink.net.tlslayer import TLSLayer
from zerolink.proto import c2s
from zerolink.proto.sasl import ScramCredentials
from zerolink.xml.element import Element

if TYPE_CHECKING:
    from zerolink.core.host import LocalHost
    from zerolink.core.router import Router

log = logging.getLogger("zerolink.c2s")

Lookup = Callable[[str, str, str], ScramCredentials | None]  # (local, domain, hash) -> keys
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
        self.unauthenticated = 0
        self.connections: set[C2SConnection] = set()

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
        if lst.unauthenticated >= lst.cfg.max_unauthenticated:
            log.warning(
                "refused client %s: %d unauthenticated connections already",
                self.peer,
                lst.unauthenticated,
            )
            transport.abort()
            return
        lst.unauthenticated += 1
        self._counted = True
        lst.connections.add(self)
        tune(transport.get_extra_info("socket"), user_timeout=0, keepalive_idle=120)
        if self._direct_tls:
            self.start_tls(TLSLayer(lst.tls, server_side=True))
        self._arm()

    def on_lost(self, reason: str) -> None:
        self._uncount()
        self.listener.connections.discard(self)
        if self.jid is not None:
            log.info("client %s: disconnected (%s)", self.jid, reason)
            self.listener.host.unbind(self)
            self.jid = None

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.listener.unauthenticated -= 1

    # -- ClientSession for the host ----------------------------------------------------------
    def send(self, stanza: Element) -> None:
        if self.transport is None or self.session.state is not c2s.State.BOUND:
            return  # closing: the host learns of it through unbind
        self.session.send_stanza(stanza)
        self.schedule_flush()

    def kick(self, condition: str, text: str | None = None) -> None:
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
            elif isinstance(ev, c2s.BindRequest):
                self._bind(ev.resource)
            elif isinstance(ev, c2s.StreamErrorSent):
                log.info(
                    "client %s: stream error %s%s",
                    self.peer,
                    ev.condition,
                    f" ({ev.text})" if ev.text else "",
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
        log.info("client %s: TLS handshake failed: %s", self.peer, reason)
