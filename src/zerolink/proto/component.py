"""XEP-0114 component session, accepting side, sans-I/O.

A bot or gateway connects, opens a ``jabber:component:accept`` stream naming its domain, and
proves it knows the shared secret with ``<handshake>`` = hex SHA-1 of stream id + secret. After
that its stanzas are routed like any other; their ``from`` must be in the component's domain.
The stream id comes from the caller so that this module stays deterministic.

A connection that has not completed its handshake `handshake_timeout` seconds after it was
made gets ``<policy-violation/>`` and is closed: before the handshake anybody can connect, and
a slot must not be held for nothing.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from zerolink.errors import RemoteProtocolError, StanzaError, StreamError
from zerolink.jid import JIDError, canonical_jid, normalize_domain, parse_jid
from zerolink.proto.events import (
    STREAM_ERROR_TAG,
    Closed,
    StanzaIn,
    StanzaRejected,
    StreamErrorSent,
)
from zerolink.proto.stream import StreamSkeleton
from zerolink.stanza import STANZA_TAGS
from zerolink.xml.element import COMPONENT_NS, SERVER_NS, Element
from zerolink.xml.parser import StanzaReceived, StreamClosed, StreamOpened, StreamParser
from zerolink.xml.serializer import serialize, stream_header

HANDSHAKE = f"{{{SERVER_NS}}}handshake"  # the parser maps the component namespace to ours


class State(enum.Enum):
    WAIT_HEADER = "wait-header"
    WAIT_HANDSHAKE = "wait-handshake"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Authenticated:
    domain: str


Event = Authenticated | StanzaIn | StanzaRejected | StreamErrorSent | Closed


def handshake_digest(stream_id: str, secret: str) -> str:
    """XEP-0114 §3: lowercase hex SHA-1 of the stream id concatenated with the secret."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


class ComponentSession(StreamSkeleton[State, Event]):
    """Server side of one component connection."""

    peer_name = "component"
    kind = "component"

    def __init__(
        self,
        secrets: Mapping[str, str],
        stream_id: str,
        *,
        max_stanza_size: int = 262144,
        max_depth: int = 64,
        close_timeout: float = 10.0,
        handshake_timeout: float = 0.0,
        now: float = 0.0,
    ) -> None:
        super().__init__(
            State.WAIT_HEADER,
            closing=State.CLOSING,
            closed=State.CLOSED,
            close_timeout=close_timeout,
        )
        self._secrets = secrets
        self._handshake_deadline = now + handshake_timeout if handshake_timeout > 0 else None
        self.stream_id = stream_id
        self.domain: str | None = None
        self._parser = StreamParser(
            content_ns=COMPONENT_NS, max_stanza_size=max_stanza_size, max_depth=max_depth
        )
        self._header_sent = False

    def _can_send(self) -> bool:
        return self.state is State.OPEN

    def send_stanza(self, stanza: Element) -> None:
        self._require_send()
        self._write(serialize(stanza, content_ns=COMPONENT_NS))

    def _close_at_once(self) -> str | None:
        if self.state is State.WAIT_HEADER:  # nothing of ours is open: the transport closes
            return "closed before the component's stream header"
        return None

    def _ensure_header(self) -> None:
        if not self._header_sent:
            self._header_sent = True
            self._write(stream_header({"id": self.stream_id}, default_ns=COMPONENT_NS))

    def _next_timer(self) -> float | None:
        if self.state in (State.WAIT_HEADER, State.WAIT_HANDSHAKE):
            return self._handshake_deadline
        return None

    def _on_timer(self, now: float) -> None:
        deadline = self._handshake_deadline
        if (
            self.state in (State.WAIT_HEADER, State.WAIT_HANDSHAKE)
            and deadline is not None
            and now >= deadline
        ):
            self._fail(StreamError("policy-violation", "handshake not completed in time"))

    def _receive(self, data: bytes, now: float) -> None:
        parsed, error = self._parse(self._parser, data)
        for ev in parsed:
            if isinstance(ev, StreamOpened):
                self._open(ev.attrs)
            elif isinstance(ev, StanzaReceived):
                self._element(ev.element)
                if self.state is State.CLOSED:  # a stream error of the component's
                    return
            elif isinstance(ev, StreamClosed):
                self._peer_closed()
                return
        if error is not None:
            raise error

    def _open(self, attrs: Mapping[str, str]) -> None:
        to = attrs.get("to", "")
        try:
            domain = normalize_domain(to)
        except JIDError:
            domain = None
        # Our header goes out before any error, so the component can read the error.
        self._header_sent = True
        self._write(
            stream_header(
                {"id": self.stream_id, "from": domain or to},
                default_ns=COMPONENT_NS,
            )
        )
        if domain is None or domain not in self._secrets:
            raise RemoteProtocolError("host-unknown", f"no component {to!r} is configured here")
        self.domain = domain
        self.state = State.WAIT_HANDSHAKE

    def _element(self, el: Element) -> None:
        if el.tag == STREAM_ERROR_TAG:
            self._peer_stream_error(el)
            return
        if self.state is State.WAIT_HANDSHAKE:
            if el.tag != HANDSHAKE:
                raise RemoteProtocolError("not-authorized", "handshake expected first")
            assert self.domain is not None
            expected = handshake_digest(self.stream_id, self._secrets[self.domain])
            # Compared as UTF-8 bytes: compare_digest refuses a str with non-ASCII characters,
            # and such a handshake is just as wrong as any other.
            given = el.text.strip().lower().encode("utf-8")
            if not hmac.compare_digest(given, expected.encode("ascii")):
                raise RemoteProtocolError("not-authorized", "wrong handshake")
            self._write(b"<handshake/>")
            self.state = State.OPEN
            self._emit(Authenticated(self.domain))
            return
        if self.state is State.OPEN:
            out = self._stanza(el)
            if out is not None:
                self._emit(out)

    def _stanza(self, el: Element) -> Event | None:
        if el.tag not in STANZA_TAGS:
            raise RemoteProtocolError("unsupported-stanza-type", f"unexpected element {el.tag}")
        sender = el.attrib.get("from")
        if not sender:
            raise RemoteProtocolError("improper-addressing", "stanza without 'from'")
        try:
            from_domain = parse_jid(sender).domain
        except JIDError:
            raise RemoteProtocolError("invalid-from", f"malformed 'from' {sender!r}") from None
        if from_domain != self.domain:
            raise RemoteProtocolError("invalid-from", f"{from_domain} is not {self.domain}")
        recipient = el.attrib.get("to")
        if not recipient:
            return StanzaRejected(el, StanzaError("jid-malformed", "stanza without 'to'"))
        try:
            to = canonical_jid(recipient)
        except JIDError as exc:
            return StanzaRejected(el, StanzaError("jid-malformed", f"to: {exc}"))
        el.attrib["from"] = canonical_jid(sender)  # addresses go on normalized
        el.attrib["to"] = to
        return StanzaIn(el)
