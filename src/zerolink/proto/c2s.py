"""RFC 6120 client-to-server stream, receiving (server) side, sans-I/O.

One `C2SSession` per client connection. Bytes go in with `receive_data`, stanzas out with
`send_stanza`; what to write comes out of `data_to_send`, what happened comes back as events.
Time is a parameter: the driver calls `handle_timer(now)` at `timer()`.

Negotiation, in order (RFC 6120 §4.3, §5, §6, §7)::

    header -> features [STARTTLS] -> <starttls/> -> <proceed/>   StartTLS event; the driver
                                                                 upgrades, tls_established()
    header -> features [SASL]     -> <auth/> ... <success/>      Authenticated event
    header -> features [bind]     -> bind iq                     BindRequest event; the host
                                                                 answers bind_succeeded/failed
    stanzas both ways                                            StanzaIn / StanzaRejected

Every "header" after the first is a stream restart: a fresh parser, a fresh stream id, and our
header again. The client's header must name a hosted domain in ``to`` (else ``host-unknown``)
and a version of at least 1.0 (else ``unsupported-version``, §4.7.5); on a restart it must
name the same domain as before (another hosted domain is ``not-authorized``). Our header
carries ``from`` (the domain), a fresh ``id``, ``version='1.0'``, ``xml:lang='en'``, and ``to``
echoing a well-formed ``from`` of the client's header (§4.7.2).

Choices where RFC 6120 leaves room or where several conditions could apply:

* TLS mandatory (`tls_required`, §5.3.1): only STARTTLS is advertised before TLS. ``<auth>``
  before TLS is answered with the SASL failure ``<encryption-required/>`` (§6.5.4) and counts
  as a failed attempt; a stanza or any other element is the stream error ``<not-authorized/>``
  (§4.9.3.12: "XML stanzas or other outbound data before the stream has been authenticated").
  `tls_required` without any way to get TLS is a configuration error (ValueError).
* ``<starttls/>`` when it is not on offer (no TLS, already secure, mid-SASL, after SASL) is
  answered with the TLS ``<failure/>`` and ``</stream:stream>`` (§5.4.2.2). Plaintext received
  after ``<starttls/>`` and before `tls_established` is discarded (it would otherwise be
  processed as if it came over TLS: the STARTTLS command-injection attack).
* SASL (§6.4): the exchange itself is `zerolink.proto.sasl`; ``<auth>`` with no text (no
  initial response) or ``=`` is answered with an empty challenge, since no mechanism offered
  has a valid empty first message. A new ``<auth>`` in the middle of an exchange abandons the
  old exchange (counted as failed). ``<response>`` with no exchange in progress is
  ``<malformed-request/>``; ``<abort/>`` is ``<aborted/>`` (§6.4.4). An authzid must be the
  user's own bare JID, else ``<invalid-authzid/>`` (§6.3.8, §6.5.6). An exception from the
  credential lookup is ``<temporary-auth-failure/>``. Every
  failed, aborted or abandoned attempt counts; the third is answered with its ``<failure>``
  followed by the stream error ``<policy-violation/>`` (§6.4.5: at least 2 and at most 5
  retries, then SHOULD be policy-violation).
* Empty challenges are written as ``<challenge/>``; success additional data follows §6.4.6
  (``=`` for zero-length, base64 otherwise, nothing when there is none).
* Before the resource is bound, any stanza other than the bind iq is the stream error
  ``<not-authorized/>`` (§7.1), including stanzas addressed to the server (stricter than
  required: there is no full JID to stamp them with yet). Non-stanza elements there are
  ``<unsupported-stanza-type/>``.
* Stanzas pipelined after the bind request (RFC 6120 does not forbid it), a second bind iq
  included, are held until the host answers the request, then handled as if they arrived
  after the answer. If the stream ends in that read (an error, the client's close), the
  answer cannot be written, but the stanzas before the end are still reported once bound.
* Bind (§7.6-7.7): a resourcepart that RFC 7622 rejects is the iq error ``<bad-request/>``
  (modify, §7.7.2.1); an empty ``<resource/>`` means "generate one" (None). One resource per
  stream (binding several is not part of RFC 6120): a second bind iq, pending or after
  success, is ``<not-allowed/>`` (cancel). `bind_failed` takes the RFC 6120 default error type
  of the condition (``conflict`` is cancel, §8.3.3.2) unless `type` is given. The bind result
  and errors carry no ``from`` unless the bind iq had a ``to``.
* RFC 3921 session iq after bind: an empty result. RFC 6120 dropped session establishment;
  the feature is advertised with ``<optional/>`` so that only old clients send it.
* Stanzas after bind (§8.1.2.1): a ``from`` other than the bound full JID or its bare JID
  (or malformed) is the stream error ``<invalid-from/>``; then ``from`` is stamped with the
  full JID. A missing ``to`` is left missing (the host decides: own account or server); a
  malformed one is `StanzaRejected` with ``<jid-malformed/>``. Other top-level elements are
  ``<unsupported-stanza-type/>``, except XEP-0198 ``<enable/>``/``<resume/>`` (any
  ``urn:xmpp:sm:N``), answered with ``<failed>`` + ``<feature-not-implemented/>``: clients
  try them even when they are not advertised.
* Negotiation deadlines: a stream that is not bound `auth_timeout` seconds after the
  connection started, or that takes more than `step_timeout` seconds for one step (to its
  stream header, from STARTTLS through the TLS handshake to the new header, to a SASL
  outcome, to the bind request), gets the stream error ``<policy-violation/>``: a client that
  sends a byte a second cannot hold a pre-authentication slot for the whole `auth_timeout`
  (§4.9.3.14: a local service policy). ``<connection-timeout/>`` (§4.9.3.4) is meant for a
  peer believed to have lost the ability to communicate (keepalives, pings, XEP-0198), which
  is not what a deadline measures; see `AUTH_TIMEOUT_CONDITION`. A deadline that passes
  during the TLS handshake just closes (no XML can be written then).
* Before authentication an element may be at most `PREAUTH_MAX_STANZA_SIZE` bytes (or
  `max_stanza_size` if smaller), so an anonymous client cannot make us buffer much.
* A client may pipeline the restart after its last SASL message (XEP-0305 Quickstart): what follows
  the element that completed SASL in the same read goes to the new stream's parser (the parser
  reports where each element ended). Whitespace between that element and the new header
  (go-xmpp sends a newline) is not part of the new stream.
* Closing (§4.4) is the X2X exchange: ``</stream:stream>``, wait `close_timeout` for the
  client's, done; a received ``</stream:stream>`` is answered with ours. After a stream error
  we write the error and ``</stream:stream>`` and are closed at once. Stanzas received while
  CLOSING are still reported (§4.4: the client may still be sending), but nothing can be sent.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass

from zerolink.errors import LocalProtocolError, RemoteProtocolError, StanzaError, StreamError
from zerolink.jid import JID, JIDError, canonical_jid, normalize_domain, parse_jid
from zerolink.proto.events import (
    STREAM_ERROR_TAG,
    Closed,
    StanzaIn,
    StanzaRejected,
    StreamErrorSent,
)
from zerolink.proto.sasl import (
    DEFAULT_ITERATIONS,
    SASL_NS,
    Challenge,
    CredentialLookup,
    SASLFailure,
    SASLServer,
    decode_payload,
    encode_payload,
    offered_mechanisms,
)
from zerolink.proto.stream import StreamSkeleton
from zerolink.stanza import IQ, STANZA_TAGS, error_element
from zerolink.xml.element import CLIENT_NS, Element
from zerolink.xml.parser import StanzaReceived, StreamClosed, StreamOpened, StreamParser
from zerolink.xml.serializer import STREAM_CLOSE, serialize, stream_header

__all__ = [
    "AUTH_TIMEOUT_CONDITION",
    "MAX_AUTH_ATTEMPTS",
    "PREAUTH_MAX_STANZA_SIZE",
    "AuthFailed",
    "Authenticated",
    "BindRequest",
    "C2SSession",
    "Closed",
    "Event",
    "StanzaIn",
    "StanzaRejected",
    "StartTLS",
    "State",
    "StreamErrorSent",
]

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION_NS = "urn:ietf:params:xml:ns:xmpp-session"
ROSTERVER_NS = "urn:xmpp:features:rosterver"
PRE_APPROVAL_NS = "urn:xmpp:features:pre-approval"  # RFC 6121 §3.4
SM_NS_PREFIX = "urn:xmpp:sm:"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"

STARTTLS = f"{{{TLS_NS}}}starttls"
AUTH = f"{{{SASL_NS}}}auth"
RESPONSE = f"{{{SASL_NS}}}response"
ABORT = f"{{{SASL_NS}}}abort"
BIND = f"{{{BIND_NS}}}bind"
RESOURCE = f"{{{BIND_NS}}}resource"
SESSION = f"{{{SESSION_NS}}}session"

#: Failed SASL attempts allowed on one stream (RFC 6120 §6.4.5: between 2 and 5 retries).
MAX_AUTH_ATTEMPTS = 3
#: Stream error for a stream not bound within `auth_timeout` (see the module docstring).
AUTH_TIMEOUT_CONDITION = "policy-violation"
#: Largest element before authentication (the largest SASL message is 16 KiB, 22 KiB in
#: base64): an unauthenticated client cannot make us buffer `max_stanza_size` bytes.
PREAUTH_MAX_STANZA_SIZE = 32 * 1024

_PROCEED = f"<proceed xmlns='{TLS_NS}'/>".encode()
_TLS_FAILURE = f"<failure xmlns='{TLS_NS}'/>".encode()


class State(enum.Enum):
    WAIT_HEADER = "wait-header"  # (re)started stream, waiting for the client's header
    NEGOTIATING = "negotiating"  # features sent: STARTTLS and/or SASL
    WAIT_TLS = "wait-tls"  # <proceed/> queued; the driver upgrades, then tls_established()
    WAIT_BIND = "wait-bind"  # authenticated, bind feature sent
    BIND_PENDING = "bind-pending"  # BindRequest emitted; the host answers
    BOUND = "bound"  # stanzas flow
    CLOSING = "closing"  # we sent </stream:stream> and wait for the client's
    CLOSED = "closed"  # nothing more to read or write; the driver closes the transport


# -- events ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StartTLS:
    """``<proceed/>`` is queued: flush it, upgrade the transport, call `tls_established`."""


@dataclass(frozen=True, slots=True)
class Authenticated:
    """SASL succeeded for ``local@domain``; the stream restarts."""

    local: str
    domain: str


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """A SASL attempt failed (``<failure>`` is queued): for the log, e.g. for fail2ban.

    `username` is the one the client tried (PRECIS-prepared), None when it never got that far.
    """

    username: str | None
    condition: str


@dataclass(frozen=True, slots=True)
class BindRequest:
    """The client asks for a resource (normalized; None: the host generates one).

    Answer with `C2SSession.bind_succeeded` or `C2SSession.bind_failed`.
    """

    resource: str | None


Event = (
    StartTLS
    | Authenticated
    | AuthFailed
    | BindRequest
    | StanzaIn
    | StanzaRejected
    | StreamErrorSent
    | Closed
)


class _Restart(Exception):
    """Internal: the element just handled restarted the stream (TLS or SASL success).

    `remainder` is what the client sent after that element in the same read.
    """

    def __init__(self, remainder: bytes = b"") -> None:
        super().__init__()
        self.remainder = remainder


class C2SSession(StreamSkeleton[State, Event]):
    """Server side of one client connection (see the module docstring)."""

    peer_name = "client"
    kind = "c2s"

    def __init__(
        self,
        *,
        domains: Container[str],
        lookup: CredentialLookup,
        stream_id_factory: Callable[[], str],
        tls_available: bool,
        tls_required: bool = True,
        direct_tls: bool = False,
        max_stanza_size: int = 262144,
        max_depth: int = 64,
        auth_timeout: float = 60.0,
        step_timeout: float = 0.0,
        close_timeout: float = 10.0,
        now: float = 0.0,
        nonce_factory: Callable[[], str] | None = None,
        sasl_secret: bytes | None = None,
        sasl_iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        if tls_required and not (tls_available or direct_tls):
            raise ValueError("tls_required needs tls_available or direct_tls")
        super().__init__(
            State.WAIT_HEADER,
            closing=State.CLOSING,
            closed=State.CLOSED,
            close_timeout=close_timeout,
        )
        self._domains = domains
        self._lookup = lookup
        self._new_id = stream_id_factory
        self._tls_available = tls_available and not direct_tls
        self._tls_required = tls_required
        self._max_stanza_size = max_stanza_size
        self._max_depth = max_depth
        self._nonce_factory = nonce_factory
        self._sasl_secret = sasl_secret
        self._sasl_iterations = sasl_iterations

        self.secure = direct_tls
        self.domain: str | None = None
        self.authenticated_user: str | None = None
        self.jid: JID | None = None
        self.stream_id: str | None = None

        self._auth_timeout = auth_timeout
        self._step_timeout = step_timeout
        self._auth_deadline: float | None = None
        self._step_deadline: float | None = None
        self._deadline: float | None = None  # the earlier of the two, until bound
        self.restart_clock(now)
        self._any_header_sent = False  # on this connection
        self._header_sent = False  # on the current (possibly restarted) stream
        self._sasl: SASLServer | None = None
        self._auth_failures = 0
        self._bind_id: str | None = None
        self._bind_to: str | None = None
        # Elements after a pending bind request (at most one read's worth: the host answers
        # the request before the next read).
        self._held: list[Element] = []
        self._bind_pending = False  # a BindRequest went out and the host has not answered
        self._parser = self._new_parser()

    # -- output ------------------------------------------------------------------------
    def _can_send(self) -> bool:
        return self.state is State.BOUND

    def _write_el(self, el: Element) -> None:
        self._out.append(serialize(el, content_ns=CLIENT_NS))

    def send_stanza(self, stanza: Element) -> None:
        """Queue a stanza for the client (in ``jabber:client``). Only valid when BOUND."""
        self._require_send("send a stanza")
        self._write_el(stanza)

    def send_serialized(self, data: bytes) -> None:
        """Queue stanzas already serialized for this stream (``serialize(el,
        content_ns=CLIENT_NS)``): the connection measures and keeps them before they go out.
        Only valid when BOUND."""
        if self.state is not State.BOUND:
            self._require_send("send a stanza")
        self._out.append(data)

    # -- calls from the driver and the host ----------------------------------------------
    def tls_established(self, now: float) -> None:
        """The TLS handshake that followed `StartTLS` is done: the stream restarts."""
        if self.state is not State.WAIT_TLS:
            raise LocalProtocolError(f"tls_established in state {self.state.value}")
        self.secure = True
        self._restart()
        self._stepped(now)

    def restart_clock(self, now: float) -> None:
        """Start the negotiation deadlines from `now` (the connection is taken up only now,
        e.g. after a login-throttle hold during which nothing was read)."""
        if self.state in (State.BOUND, State.CLOSING, State.CLOSED):
            return
        self._auth_deadline = now + self._auth_timeout if self._auth_timeout > 0 else None
        self._stepped(now)

    def _stepped(self, now: float) -> None:
        """A negotiation step completed: the next one has `step_timeout` seconds."""
        if self._step_timeout > 0:
            self._step_deadline = now + self._step_timeout
        deadlines = [d for d in (self._auth_deadline, self._step_deadline) if d is not None]
        self._deadline = min(deadlines) if deadlines else None

    def bind_succeeded(self, jid: JID) -> list[Event]:
        """Answer the pending `BindRequest` with `jid`; stanzas flow from now on.

        Returns the events of what the client pipelined after its bind request (RFC 6120
        allows it), processed now that there is a full JID to stamp them with.
        """
        if not self._bind_pending:
            raise LocalProtocolError(f"no bind request pending (state {self.state.value})")
        if (
            jid.resource is None
            or jid.local != self.authenticated_user
            or jid.domain != self.domain
        ):
            raise ValueError(f"{jid} is not a full JID of {self.authenticated_user}@{self.domain}")
        self._bind_pending = False
        if self.state is not State.BIND_PENDING:
            # The stream ended (an error, the client's close) after the request: nothing can
            # be answered, but the stanzas the client sent before the end still count (RFC
            # 6120 §4.9.1.1), as they would had the request come in a read of its own.
            self.jid = jid
            return self._held_after_end()
        result = self._iq_reply("result")
        result.subelement(BIND).subelement(f"{{{BIND_NS}}}jid", text=str(jid))
        self._write_el(result)
        self.jid = jid
        self.state = State.BOUND
        self._deadline = None
        return self._release_held()

    def bind_failed(
        self, condition: str, text: str | None = None, *, type: str | None = None
    ) -> list[Event]:
        """Answer the pending `BindRequest` with an iq error; the client may try again.

        Returns the events of what the client pipelined after its bind request.
        """
        if not self._bind_pending:
            raise LocalProtocolError(f"no bind request pending (state {self.state.value})")
        self._bind_pending = False
        if self.state is not State.BIND_PENDING:
            self._held.clear()  # unbound stanzas before the end: refused, as in one read
            return []
        reply = self._iq_reply("error")
        reply.append(error_element(StanzaError(condition, text, type)))
        self._write_el(reply)
        self.state = State.WAIT_BIND
        return self._release_held()

    def _held_after_end(self) -> list[Event]:
        """The held stanzas of a stream that ended before its bind was answered."""
        events: list[Event] = []
        held, self._held = self._held, []
        for el in held:
            if el.tag not in STANZA_TAGS:
                continue
            try:
                ev = self._stanza(el)
            except RemoteProtocolError:
                break  # the stream would have ended here
            if ev is not None:
                events.append(ev)
        return events

    def _release_held(self) -> list[Event]:
        """Process the elements that arrived while the bind request was pending."""
        return self._run(self._handle_held)

    def _handle_held(self) -> None:
        held, self._held = self._held, []
        for el in held:
            self._element(el)
            if self.state is State.CLOSED:
                break

    # -- close exchange and time (the rest is `StreamSkeleton`'s) ----------------------
    def _close_at_once(self) -> str | None:
        if self.state is State.WAIT_TLS or not self._any_header_sent:
            # Nothing of ours is open (or we cannot write XML mid-handshake).
            return "closed by server"
        return None

    def _can_write_xml(self) -> bool:
        return self.state not in (State.CLOSING, State.WAIT_TLS)

    def _ensure_header(self) -> None:
        if not self._header_sent:  # a restarted stream the client has not reopened yet
            self._write_header()

    def _next_timer(self) -> float | None:
        return self._deadline

    def _on_timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        if self.state is State.WAIT_TLS:
            self.state = State.CLOSED
            self._emit(Closed("TLS negotiation not finished in time"))
            return
        self._fail(StreamError(AUTH_TIMEOUT_CONDITION, "stream negotiation not finished in time"))

    # -- input -------------------------------------------------------------------------
    def _receive(self, data: bytes, now: float) -> None:
        before = (self.state, self._header_sent)
        while data and self.state not in (State.CLOSED, State.WAIT_TLS):
            try:
                self._process(data)
                break
            except _Restart as restart:
                # Bytes after <success/> belong to the new stream (a client pipelining its
                # restart, XEP-0305 §2); bytes after <starttls/> are dropped.
                data = restart.remainder
        if self._deadline is not None and (self.state, self._header_sent) != before:
            self._stepped(now)  # a stream header, STARTTLS, SASL success or bind request

    def _process(self, data: bytes) -> None:
        parser = self._parser
        parsed, error = self._parse(parser, data)
        for ev in parsed:
            if isinstance(ev, StanzaReceived):
                try:
                    self._element(ev.element)
                except _Restart:
                    if self.state is State.WAIT_TLS:
                        raise
                    # What the client sent after this element, in this read: handed to the
                    # new stream's parser exactly, by the offset the parser reported.
                    after = parser.received - ev.end
                    raise _Restart(data[len(data) - after :] if after else b"") from None
            elif isinstance(ev, StreamOpened):
                self._open(ev.attrs)
            elif isinstance(ev, StreamClosed):
                self._peer_closed()
                return
            if self.state is State.CLOSED:
                return
        if error is not None:
            raise error

    # -- stream header -----------------------------------------------------------------
    def _new_parser(self) -> StreamParser:
        limit = self._max_stanza_size
        preauth = self.authenticated_user is None
        if preauth:
            limit = min(limit, PREAUTH_MAX_STANZA_SIZE)
        # Before authentication the stream may restart after any element (SASL success),
        # so the parser reports where each element ended.
        return StreamParser(
            content_ns=CLIENT_NS,
            max_stanza_size=limit,
            max_depth=self._max_depth,
            track_ends=preauth,
        )

    def _restart(self) -> None:
        self._parser = self._new_parser()
        self._header_sent = False
        self.state = State.WAIT_HEADER

    def _write_header(self, to: str | None = None) -> None:
        self.stream_id = self._new_id()
        attrs = {"id": self.stream_id, "version": "1.0", "xml:lang": "en"}
        if self.domain is not None:
            attrs["from"] = self.domain
        if to is not None:
            attrs["to"] = to
        self._write(stream_header(attrs, default_ns=CLIENT_NS))
        self._header_sent = self._any_header_sent = True

    def _open(self, attrs: Mapping[str, str]) -> None:
        if self.state is State.CLOSING:
            return  # the client reopening a restarted stream we are closing
        to = attrs.get("to", "")
        try:
            domain: str | None = normalize_domain(to) if to else None
        except JIDError:
            domain = None
        hosted = domain is not None and domain in self._domains
        if self.domain is None and hosted:
            self.domain = domain
        client = attrs.get("from")
        try:
            echo = str(parse_jid(client)) if client else None
        except JIDError:
            echo = None
        # Our header goes out before any error, so that the client can read the error.
        self._write_header(echo)
        if not hosted:
            raise RemoteProtocolError(
                "host-unknown", f"{to!r} is not served here" if to else "no 'to'"
            )
        if domain != self.domain:
            raise RemoteProtocolError("not-authorized", f"this stream belongs to {self.domain}")
        if not _version_ok(attrs.get("version")):
            raise RemoteProtocolError("unsupported-version", "XMPP 1.0 or later is required")
        self._write(self._features())
        self.state = State.WAIT_BIND if self.authenticated_user is not None else State.NEGOTIATING

    def _starttls_offered(self) -> bool:
        return (
            self.state is State.NEGOTIATING
            and self._tls_available
            and not self.secure
            and self._sasl is None
        )

    def _features(self) -> bytes:
        children: list[Element] = []
        if self.authenticated_user is not None:
            children.append(Element(BIND))
            session = Element(SESSION)
            session.subelement(f"{{{SESSION_NS}}}optional")
            children.append(session)
            children.append(Element(f"{{{ROSTERVER_NS}}}ver"))
            children.append(Element(f"{{{PRE_APPROVAL_NS}}}sub"))
        else:
            if self._tls_available and not self.secure:
                tls = Element(STARTTLS)
                if self._tls_required:
                    tls.subelement(f"{{{TLS_NS}}}required")
                children.append(tls)
            if self.secure or not self._tls_required:
                mechs = Element(f"{{{SASL_NS}}}mechanisms")
                for name in offered_mechanisms(tls=self.secure):
                    mechs.subelement(f"{{{SASL_NS}}}mechanism", text=name)
                children.append(mechs)
        body = b"".join(serialize(c, content_ns=CLIENT_NS) for c in children)
        return b"<stream:features>" + body + b"</stream:features>"

    # -- top-level elements ------------------------------------------------------------
    def _element(self, el: Element) -> None:
        tag = el.tag
        if tag == STREAM_ERROR_TAG:
            self._peer_stream_error(el)
            return
        state = self.state
        if state is State.NEGOTIATING:
            self._negotiate(el)
        elif state is State.BOUND or (state is State.CLOSING and self.jid is not None):
            ev = self._stanza(el)
            if ev is not None:
                self._emit(ev)
        elif state in (State.WAIT_BIND, State.BIND_PENDING):
            self._pre_bind(el)
        # CLOSING before bind: negotiation is over, nothing more to do with its elements.

    # -- TLS and SASL ------------------------------------------------------------------
    def _negotiate(self, el: Element) -> None:
        tag = el.tag
        if tag == STARTTLS:
            if not self._starttls_offered():
                self._write(_TLS_FAILURE + STREAM_CLOSE)
                self.state = State.CLOSED
                self._emit(Closed("STARTTLS refused"))
                return
            self._write(_PROCEED)
            self.state = State.WAIT_TLS
            self._emit(StartTLS())
            raise _Restart
        if tag == AUTH:
            if self._sasl is not None:  # a new attempt abandons the one in progress
                self._sasl = None
                self._count_failure()
            self._auth(el)
        elif tag == RESPONSE:
            if self._sasl is None:
                self._sasl_failed(SASLFailure("malformed-request", "no authentication in progress"))
                return
            self._sasl_step(el.text)
        elif tag == ABORT:
            sasl, self._sasl = self._sasl, None
            self._sasl_failed(sasl.abort() if sasl is not None else SASLFailure("aborted"))
        else:
            raise RemoteProtocolError("not-authorized", "authenticate first")

    def _auth(self, el: Element) -> None:
        if self._tls_required and not self.secure:
            self._sasl_failed(SASLFailure("encryption-required", "use STARTTLS first"))
            return
        try:
            self._sasl = SASLServer(
                el.get("mechanism") or "",
                self._lookup,
                tls=self.secure,
                nonce_factory=self._nonce_factory,
                secret=self._sasl_secret,
                fake_iterations=self._sasl_iterations,
            )
        except SASLFailure as exc:
            self._sasl_failed(exc)
            return
        self._sasl_step(el.text)

    def _sasl_step(self, text: str) -> None:
        sasl = self._sasl
        assert sasl is not None and self.domain is not None
        try:
            result = sasl.step(decode_payload(text))
        except SASLFailure as exc:
            self._sasl = None
            self._sasl_failed(exc)
            return
        except Exception:  # the credential store failed: the client may retry later
            self._sasl = None
            self._sasl_failed(SASLFailure("temporary-auth-failure", "try again later"))
            return
        if isinstance(result, Challenge):
            self._write_el(_sasl_el("challenge", encode_payload(result.data or None)))
            return
        self._sasl = None
        try:
            user = JID(result.username, self.domain, None)
        except JIDError:
            self._sasl_failed(SASLFailure("not-authorized", "authentication failed"))
            return
        if result.authzid is not None:
            try:
                ok = parse_jid(result.authzid) == user
            except JIDError:
                ok = False
            if not ok:
                self._sasl_failed(SASLFailure("invalid-authzid", "authzid must be your bare JID"))
                return
        assert user.local is not None
        self._write_el(_sasl_el("success", encode_payload(result.data)))
        self.authenticated_user = user.local
        self._emit(Authenticated(user.local, user.domain))
        self._restart()
        raise _Restart

    def _sasl_failed(self, exc: SASLFailure) -> None:
        failure = Element(f"{{{SASL_NS}}}failure")
        failure.subelement(f"{{{SASL_NS}}}{exc.condition}")
        if exc.text:
            failure.subelement(f"{{{SASL_NS}}}text", text=exc.text)
        self._write_el(failure)
        self._emit(AuthFailed(exc.username, exc.condition))
        self._count_failure()

    def _count_failure(self) -> None:
        self._auth_failures += 1
        if self._auth_failures >= MAX_AUTH_ATTEMPTS:
            raise RemoteProtocolError("policy-violation", "too many failed authentication attempts")

    # -- resource binding --------------------------------------------------------------
    def _pre_bind(self, el: Element) -> None:
        if self.state is State.BIND_PENDING:
            # Pipelined after the bind request (another bind iq too): handled once the host
            # has answered, exactly as if it had come in a later read.
            self._held.append(el)
        elif el.tag == IQ and el.find(BIND) is not None:
            self._bind(el)
        elif _sm_request(el):
            self._sm_failed(el)
        elif el.tag in STANZA_TAGS:
            raise RemoteProtocolError("not-authorized", "bind a resource first")
        else:
            raise RemoteProtocolError("unsupported-stanza-type", f"unexpected element {el.tag}")

    def _bind(self, el: Element) -> None:
        if el.get("type") != "set":
            self._iq_error(el, StanzaError("bad-request", "bind is an iq of type 'set'"))
            return
        bind = el.find(BIND)
        assert bind is not None and self.authenticated_user is not None and self.domain
        res_el = bind.find(RESOURCE)
        resource = res_el.text if res_el is not None else ""
        normalized: str | None = None
        if resource:
            try:
                normalized = JID(self.authenticated_user, self.domain, resource).resource
            except JIDError as exc:
                self._iq_error(el, StanzaError("bad-request", f"resourcepart: {exc.text}"))
                return
        self._bind_id = el.get("id")
        self._bind_to = el.get("to")
        self._bind_pending = True
        self.state = State.BIND_PENDING
        self._emit(BindRequest(normalized))

    def _iq_reply(self, kind: str) -> Element:
        attrib = {"type": kind}
        if self._bind_id is not None:
            attrib["id"] = self._bind_id
        if self._bind_to:
            attrib["from"] = self._bind_to
        return Element(IQ, attrib)

    def _iq_error(self, iq: Element, error: StanzaError) -> None:
        """An iq error from the server itself for an iq it handles (bind, session)."""
        if iq.get("type") in ("result", "error"):
            return
        attrib = {"type": "error"}
        if "id" in iq.attrib:
            attrib["id"] = iq.attrib["id"]
        if iq.get("to"):
            attrib["from"] = iq.attrib["to"]
        reply = Element(IQ, attrib)
        reply.append(error_element(error))
        self._write_el(reply)

    def _sm_failed(self, el: Element) -> None:
        failed = Element(f"{{{el.namespace}}}failed")
        failed.subelement(f"{{{STANZAS_NS}}}feature-not-implemented")
        self._write_el(failed)

    # -- stanzas -----------------------------------------------------------------------
    def _stanza(self, el: Element) -> Event | None:
        jid = self.jid
        assert jid is not None
        if el.tag not in STANZA_TAGS:
            if _sm_request(el):
                if self.state is State.BOUND:
                    self._sm_failed(el)
                return None
            raise RemoteProtocolError("unsupported-stanza-type", f"unexpected element {el.tag}")
        if el.tag == IQ and el.get("type") in ("get", "set"):
            if el.find(BIND) is not None:
                if self.state is State.BOUND:
                    self._iq_error(el, StanzaError("not-allowed", "a resource is already bound"))
                return None
            if el.find(SESSION) is not None and self._to_server(el.get("to")):
                if self.state is State.BOUND:
                    reply = Element(IQ, {"type": "result"})
                    if "id" in el.attrib:
                        reply.attrib["id"] = el.attrib["id"]
                    if el.get("to"):
                        reply.attrib["from"] = el.attrib["to"]
                    self._write_el(reply)
                return None
        attrib = el.attrib
        sender = attrib.get("from")
        if sender is not None:
            try:
                claimed = parse_jid(sender)
            except JIDError:
                raise RemoteProtocolError("invalid-from", f"malformed 'from' {sender!r}") from None
            if claimed != jid and claimed != jid.bare:
                raise RemoteProtocolError("invalid-from", f"{claimed} is not {jid}")
        attrib["from"] = str(jid)
        recipient = attrib.get("to")
        if recipient is not None:
            try:
                attrib["to"] = canonical_jid(recipient)
            except JIDError as exc:
                return StanzaRejected(el, StanzaError("jid-malformed", f"to: {exc.text}"))
        return StanzaIn(el)

    def _to_server(self, to: str | None) -> bool:
        """True when a stanza's 'to' is absent or names this stream's domain."""
        if not to:
            return True
        try:
            return parse_jid(to) == JID(None, self.domain or "", None)
        except JIDError:
            return False


def _sasl_el(local: str, text: str) -> Element:
    return Element(f"{{{SASL_NS}}}{local}", None, [text] if text else None)


def _version_ok(version: str | None) -> bool:
    """RFC 6120 §4.7.5: "major.minor", each a non-negative integer; we need at least 1.0."""
    if not version:
        return False
    major, dot, minor = version.partition(".")
    if not (dot and major.isdigit() and minor.isdigit() and major.isascii() and minor.isascii()):
        return False
    return int(major) >= 1


def _sm_request(el: Element) -> bool:
    """XEP-0198 ``<enable/>`` or ``<resume/>`` (any version of the namespace)."""
    return el.namespace.startswith(SM_NS_PREFIX) and el.local in ("enable", "resume")
