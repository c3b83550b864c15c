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

from zerolink.errors import StanzaError, StreamError
from zerolink.jid import JIDError, canonical_jid, normalize_domain, parse_jid
from zerolink.proto.events import (
    STREAM_ERROR_TAG,
    Closed,
    StanzaIn,
    StanzaRejected,
    StreamErrorSent,
)
from zerolink.stanza import STANZA_TAGS
from zerolink.xml.element import COMPONENT_NS, SERVER_NS, Element
from zerolink.xml.parser import ParseError, StanzaReceived, StreamClosed, StreamOpened, StreamParser
from zerolink.xml.serializer import STREAM_CLOSE, serialize, stream_error, stream_header

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


class ComponentSession:
    """Server side of one component connection."""

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
        self._secrets = secrets
        self._handshake_deadline = now + handshake_timeout if handshake_timeout > 0 else None
        self.stream_id = stream_id
        self.state = State.WAIT_HEADER
        self.domain: str | None = None
        self._close_timeout = close_timeout
        self._close_deadline: float | None = None
        self._parser = StreamParser(
            content_ns=COMPONENT_NS, max_stanza_size=max_stanza_size, max_depth=max_depth
        )
        self._out: list[bytes] = []
        self._header_sent = False

    def data_to_send(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data

    def send_stanza(self, stanza: Element) -> None:
        if self.state is not State.OPEN:
            raise RuntimeError(f"cannot send on a component stream in state {self.state.value}")
        self._out.append(serialize(stanza, content_ns=COMPONENT_NS))

    def stream_error(self, condition: str, text: str | None = None) -> list[Event]:
        """End the stream with a stream error of ours (e.g. policy-violation)."""
        return self._fail(StreamError(condition, text))

    def close(self, now: float) -> list[Event]:
        if self.state in (State.OPEN, State.WAIT_HANDSHAKE):
            self._out.append(STREAM_CLOSE)
            self.state = State.CLOSING
            self._close_deadline = now + self._close_timeout
        elif self.state is State.WAIT_HEADER:
            self.state = State.CLOSED  # nothing of ours is open: the transport just closes
            return [Closed("closed before the component's stream header")]
        return []

    def timer(self) -> float | None:
        if self.state is State.CLOSING:
            return self._close_deadline
        if self.state in (State.WAIT_HEADER, State.WAIT_HANDSHAKE):
            return self._handshake_deadline
        return None

    def handle_timer(self, now: float) -> list[Event]:
        if self.state is State.CLOSING and self._close_deadline and now >= self._close_deadline:
            self.state = State.CLOSED
            return [Closed("component did not answer our stream close in time")]
        deadline = self._handshake_deadline
        if (
            self.state in (State.WAIT_HEADER, State.WAIT_HANDSHAKE)
            and deadline is not None
            and now >= deadline
        ):
            return self._fail(StreamError("policy-violation", "handshake not completed in time"))
        return []

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        if self.state is State.CLOSED:
            return []
        events: list[Event] = []
        error: ParseError | None = None
        try:
            parsed = self._parser.feed(data)
        except ParseError as exc:
            # Stanzas completed before the error are still processed (RFC 6120 §4.9.1.1).
            parsed, error = exc.events, exc
        try:
            for ev in parsed:
                if isinstance(ev, StreamOpened):
                    self._open(ev.attrs)
                elif isinstance(ev, StanzaReceived):
                    out = self._element(ev.element)
                    if out is not None:
                        events.append(out)
                    if self.state is State.CLOSED:  # a stream error of the component's
                        return events
                elif isinstance(ev, StreamClosed):
                    if self.state is not State.CLOSING:
                        self._out.append(STREAM_CLOSE)
                    self.state = State.CLOSED
                    events.append(Closed("stream closed by component"))
                    return events
            if error is not None:
                raise error
        except StreamError as exc:
            events.extend(self._fail(exc))
        return events

    def _open(self, attrs: Mapping[str, str]) -> None:
        to = attrs.get("to", "")
        try:
            domain = normalize_domain(to)
        except JIDError:
            domain = None
        # Our header goes out before any error, so the component can read the error.
        self._header_sent = True
        self._out.append(
            stream_header(
                {"id": self.stream_id, "from": domain or to},
                default_ns=COMPONENT_NS,
            )
        )
        if domain is None or domain not in self._secrets:
            raise StreamError("host-unknown", f"no component {to!r} is configured here")
        self.domain = domain
        self.state = State.WAIT_HANDSHAKE

    def _element(self, el: Element) -> Event | None:
        if el.tag == STREAM_ERROR_TAG:
            if self.state is not State.CLOSING:
                self._out.append(STREAM_CLOSE)
            self.state = State.CLOSED
            return Closed("component sent a stream error")
        if self.state is State.WAIT_HANDSHAKE:
            if el.tag != HANDSHAKE:
                raise StreamError("not-authorized", "handshake expected first")
            assert self.domain is not None
            expected = handshake_digest(self.stream_id, self._secrets[self.domain])
            # Compared as UTF-8 bytes: compare_digest refuses a str with non-ASCII characters,
            # and such a handshake is just as wrong as any other.
            given = el.text.strip().lower().encode("utf-8")
            if not hmac.compare_digest(given, expected.encode("ascii")):
                raise StreamError("not-authorized", "wrong handshake")
            self._out.append(b"<handshake/>")
            self.state = State.OPEN
            return Authenticated(self.domain)
        if self.state is not State.OPEN:
            return None
        if el.tag not in STANZA_TAGS:
            raise StreamError("unsupported-stanza-type", f"unexpected element {el.tag}")
        sender = el.attrib.get("from")
        if not sender:
            raise StreamError("improper-addressing", "stanza without 'from'")
        try:
            from_domain = parse_jid(sender).domain
        except JIDError:
            raise StreamError("invalid-from", f"malformed 'from' {sender!r}") from None
        if from_domain != self.domain:
            raise StreamError("invalid-from", f"{from_domain} is not {self.domain}")
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

    def _fail(self, exc: StreamError) -> list[Event]:
        if self.state is State.CLOSED:  # already over (and reported)
            return []
        if not self._header_sent:
            self._header_sent = True
            self._out.append(stream_header({"id": self.stream_id}, default_ns=COMPONENT_NS))
        if self.state not in (State.CLOSING, State.CLOSED):  # nothing after our close
            self._out.append(stream_error(exc.condition, exc.text))
            self._out.append(STREAM_CLOSE)
        self.state = State.CLOSED
        return [StreamErrorSent(exc.condition, exc.text), Closed(f"stream error {exc.condition}")]
