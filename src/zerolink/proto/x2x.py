"""XEP-0361 zero-handshake server-to-server session, sans-I/O.

One `X2XSession` per TCP (or TLS) connection. Bytes go in with `receive_data`, stanzas with
`send_stanza`; what to write comes out of `data_to_send`, what happened comes back as events.
Time is a parameter: the driver calls `handle_timer(now)` at `timer()`.

The stream is implied (§4.1): nothing is sent before the first stanza and the parser is primed
locally with the stream header the peer would have sent. Inbound stanzas are validated as RFC
6120 S2S would (§4.5): a ``from`` outside the peer's domains is ``invalid-from``, a ``to``
outside ours is ``host-unknown``, a missing address is ``improper-addressing``, any other
top-level element is ``unsupported-stanza-type``. These are stream errors: the stream error is
written, then ``</stream:stream>``, then the transport is closed.

A ``to`` outside our domains is the exception: standard S2S would end that one domain pair's
stream with ``host-unknown``, but an X2X connection multiplexes every domain pair (§4.4), so
closing it would take all the others down for one misrouted stanza (a MUC domain routed on one
side and forgotten on the other). It is answered with the stanza error
``remote-server-not-found`` and counted; the connection stays up. A ``from`` outside the peer's
domains stays ``invalid-from``: it is about who the peer is.

A peer that sends a stream header anyway (a standard S2S server pointed at an X2X port, or an
implementation that restates the header) is answered with a stream header of ours, so that its
parser can read what follows, then ``policy-violation`` and the close: it is a configuration
mismatch, and a clear error beats both sides waiting for each other until a timeout. When
the header comes with a ``<stream:error>`` of the peer's own in the same bytes (a standard S2S
server refusing us, e.g. Metre in its error paths), that error is reported too: it is usually
the one that says what is wrong.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from zerolink.domains import DomainSet
from zerolink.errors import StanzaError, StreamError
from zerolink.jid import JIDError, canonical_jid, normalize_domain, parse_jid
from zerolink.proto import acks
from zerolink.proto.events import (
    STREAM_ERROR_TAG,
    Closed,
    StanzaIn,
    StanzaRejected,
    StreamErrorReceived,
    StreamErrorSent,
    stream_error_of,
)
from zerolink.stanza import STANZA_TAGS
from zerolink.xml.element import CONTENT_NAMESPACES, SERVER_NS, Element
from zerolink.xml.parser import (
    X2X_HEADER,
    HeaderReceived,
    ParseError,
    StanzaReceived,
    StreamClosed,
    StreamParser,
)
from zerolink.xml.serializer import STREAM_CLOSE, serialize, stream_error, stream_header

IMPLIED_HEADER = X2X_HEADER  # defined once, in zerolink.xml.parser
KEEPALIVE = b" "


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # we sent </stream:stream> and wait for the peer's
    CLOSED = "closed"  # nothing more to read or write; the driver closes the transport


# -- events ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PeerClosing:
    """The peer sent ``</stream:stream>``; ours has been queued in reply."""


@dataclass(frozen=True, slots=True)
class SyncIn:
    """The peer's first element with acks: it has received `h`, will send `next` first."""

    h: int
    next: int
    max: int | None = None  # the largest stanza the peer accepts, if it says


@dataclass(frozen=True, slots=True)
class AckIn:
    h: int


@dataclass(frozen=True, slots=True)
class AckRequested:
    pass


Event = (
    StanzaIn
    | StanzaRejected
    | PeerClosing
    | StreamErrorSent
    | StreamErrorReceived
    | Closed
    | SyncIn
    | AckIn
    | AckRequested
)


@dataclass(slots=True)
class X2XSettings:
    """What the a-priori agreement fixes for one link."""

    peer_domains: DomainSet
    is_local: Callable[[str], bool]
    max_stanza_size: int = 262144
    max_depth: int = 64
    keepalive: float = 60.0  # 0 disables
    close_timeout: float = 10.0
    acks: bool = False  # reliable delivery (zerolink.proto.acks), agreed a priori


@dataclass(slots=True)
class Counters:
    bytes_in: int = 0
    bytes_out: int = 0
    stanzas_in: int = 0
    stanzas_out: int = 0
    keepalives_out: int = 0
    stanzas_rejected: int = 0  # answered with a stanza error and dropped


class X2XSession:
    """State of one XEP-0361 stream, both directions."""

    def __init__(self, settings: X2XSettings, *, now: float) -> None:
        self.settings = settings
        self.state = State.OPEN
        self.counters = Counters()
        self._parser = StreamParser(
            content_ns=SERVER_NS,
            max_stanza_size=settings.max_stanza_size,
            max_depth=settings.max_depth,
            implied_header=IMPLIED_HEADER,
        )
        self._out: list[bytes] = []
        # The connection's first bytes: where a peer's stream header (and a stream error right
        # after it) is found when the parser reports one.
        self._opening = b""
        self._synced = not settings.acks
        self._last_send = now
        self._close_deadline: float | None = None

    # -- output ------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Bytes to write to the transport, in order; empties the buffer."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        self.counters.bytes_out += len(data)
        return data

    def _write(self, data: bytes, now: float | None) -> None:
        self._out.append(data)
        if now is not None:
            self._last_send = now

    def send_stanza(self, stanza: Element, now: float) -> None:
        """Queue a stanza for the peer. Only valid while OPEN."""
        if self.state is not State.OPEN:
            raise RuntimeError(f"cannot send on a {self.state.value} X2X stream")
        self._write(serialize(stanza, content_ns=SERVER_NS), now)
        self.counters.stanzas_out += 1

    def send_serialized(self, data: bytes, now: float) -> None:
        """Queue a stanza already serialized by `serialize` in ``jabber:server``."""
        if self.state is not State.OPEN:
            raise RuntimeError(f"cannot send on a {self.state.value} X2X stream")
        self._write(data, now)
        self.counters.stanzas_out += 1

    def close(self, now: float) -> list[Event]:
        """Start the close exchange (§4.1: a stream close SHOULD be exchanged)."""
        if self.state is State.OPEN:
            self._write(STREAM_CLOSE, now)
            self.state = State.CLOSING
            self._close_deadline = now + self.settings.close_timeout
        return []

    # -- time --------------------------------------------------------------------------
    def timer(self) -> float | None:
        """When `handle_timer` should next be called, or None."""
        if self.state is State.CLOSING:
            return self._close_deadline
        if self.state is State.OPEN and self.settings.keepalive > 0:
            return self._last_send + self.settings.keepalive
        return None

    def handle_timer(self, now: float) -> list[Event]:
        if self.state is State.CLOSING and self._close_deadline is not None:
            if now >= self._close_deadline:
                self.state = State.CLOSED
                return [Closed("peer did not answer our stream close in time")]
            return []
        if (
            self.state is State.OPEN
            and self.settings.keepalive > 0
            and now >= self._last_send + self.settings.keepalive
        ):
            self._write(KEEPALIVE, now)
            self.counters.keepalives_out += 1
        return []

    # -- input -------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer; returns what happened."""
        if self.state is State.CLOSED or not data:
            return []
        if self.counters.bytes_in == 0 and data[0] == 0x16:
            # A TLS record (handshake) where XML was expected: one side has tls on, one off.
            self.counters.bytes_in += len(data)
            return self._stream_error(
                StreamError(
                    "not-well-formed",
                    "this is a TLS handshake on a plaintext X2X link: "
                    "is tls = true configured on one side only?",
                ),
                now,
            )
        if self.counters.bytes_in < _OPENING_BYTES:
            self._opening += data[: _OPENING_BYTES - self.counters.bytes_in]
        seen = self.counters.bytes_in
        self.counters.bytes_in += len(data)
        error: ParseError | None = None
        try:
            parsed = self._parser.feed(data)
        except ParseError as exc:
            # Stanzas completed before the error are still processed (RFC 6120 §4.9.1.1).
            parsed, error = exc.events, exc
        events: list[Event] = []
        for ev in parsed:
            if isinstance(ev, StanzaReceived):
                try:
                    out = self._accept(ev.element)
                except StreamError as exc:
                    if self.settings.acks and exc.condition in _POISON:
                        # Counted, answered with a stanza error, dropped: a retransmitted bad
                        # stanza must not tear the link down again and again.
                        rejection = StanzaError(_POISON[exc.condition], exc.text)
                        self.counters.stanzas_rejected += 1
                        events.append(StanzaRejected(ev.element, rejection))
                        continue
                    events.extend(self._stream_error(exc, now))
                    return events
                if out is not None:
                    if type(out) is StanzaRejected:
                        self.counters.stanzas_rejected += 1
                    events.append(out)
            elif isinstance(ev, StreamClosed):
                events.extend(self._peer_closed(now))
                return events
            elif isinstance(ev, HeaderReceived):
                # The header and what follows it: in the connection's bytes so far while they
                # are few (a header split across reads), else in this read.
                if seen < _OPENING_BYTES:
                    where = self._opening + data[_OPENING_BYTES - seen :]
                else:
                    where = data
                theirs = self._error_after_header(where)
                if theirs is not None:
                    events.append(StreamErrorReceived(*theirs))
                if self.state is State.OPEN:  # nothing after our </stream:stream>
                    self._write(stream_header({}, default_ns=SERVER_NS), now)
                events.extend(
                    self._stream_error(
                        StreamError(
                            "policy-violation",
                            "stream headers are not used on this XEP-0361 zero-handshake link",
                        ),
                        now,
                    )
                )
                return events
        if error is not None:
            events.extend(self._stream_error(error, now))
        return events

    def _error_after_header(self, data: bytes) -> tuple[str, str | None] | None:
        """(condition, text) of a ``<stream:error>`` that follows a stream header in `data`.

        The session's parser stops at the header; a parser of an ordinary (not implied)
        stream reads from the header on. None when there is no complete stream error there.
        """
        start = _HEADER_START.search(data)
        if start is None:
            return None
        rest = data[start.start() :]
        ns = SERVER_NS
        tag = _STREAM_START_TAG.search(rest)
        if tag is not None:
            declared = _DEFAULT_NS.search(tag.group(0))
            if declared is not None:
                ns = declared.group(2).decode("utf-8", "replace")
        if ns not in CONTENT_NAMESPACES:
            # The parser's name caches are shared, one per content namespace: a peer may not
            # add one for a namespace of its choosing. No standard server uses another.
            return None
        parser = StreamParser(
            content_ns=ns,
            max_stanza_size=self.settings.max_stanza_size,
            max_depth=self.settings.max_depth,
        )
        try:
            parsed = parser.feed(rest)
        except ParseError as exc:
            parsed = exc.events
        for ev in parsed:
            if isinstance(ev, StanzaReceived) and ev.element.tag == STREAM_ERROR_TAG:
                return stream_error_of(ev.element)
        return None

    def _accept(self, el: Element) -> Event | None:
        """Validate one top-level element (XEP-0361 §4.5 as RFC 6120 S2S)."""
        if el.tag not in STANZA_TAGS:
            if el.tag == STREAM_ERROR_TAG:
                raise _PeerStreamError(el)
            if el.tag in (acks.SYNC, acks.ACK, acks.REQUEST):
                return self._ack_element(el)
            raise StreamError("unsupported-stanza-type", f"unexpected element {el.tag}")
        if self.settings.acks and not self._synced:
            raise StreamError(
                "policy-violation",
                "acks = true here: the first element must be <sync xmlns='"
                f"{acks.ACKS_NS}'/>; is acks set on both sides?",
            )
        attrib = el.attrib
        sender = attrib.get("from")
        recipient = attrib.get("to")
        if not sender or not recipient:
            missing = "from" if not sender else "to"
            raise StreamError("improper-addressing", f"stanza without '{missing}'")
        try:
            from_jid = parse_jid(sender)
        except JIDError as exc:
            # The domain may still be one of the peer's: then we can answer the sender.
            domain = _domain_of(sender)
            if domain is not None and domain in self.settings.peer_domains:
                return StanzaRejected(el, StanzaError("jid-malformed", f"from: {exc}"))
            raise StreamError("invalid-from", f"malformed 'from' {sender!r}") from None
        if from_jid.domain not in self.settings.peer_domains:
            raise StreamError("invalid-from", f"{from_jid.domain} is not served by this peer")
        try:
            to_jid = parse_jid(recipient)
        except JIDError as exc:
            return StanzaRejected(el, StanzaError("jid-malformed", f"to: {exc}"))
        # Addresses reach local entities normalized (x@GROUND.EXAMPLE. -> x@ground.example).
        attrib["from"] = canonical_jid(sender)
        attrib["to"] = canonical_jid(recipient)
        if not self.settings.is_local(to_jid.domain):
            # One domain pair's mistake, not the connection's (§4.4: the connection carries
            # every domain pair's stream): a stanza error, and the link stays up.
            return StanzaRejected(
                el,
                StanzaError("remote-server-not-found", f"{to_jid.domain} is not served here"),
            )
        self.counters.stanzas_in += 1
        return StanzaIn(el)

    def _ack_element(self, el: Element) -> Event:
        """Reliable-delivery elements (zerolink.proto.acks)."""
        if not self.settings.acks:
            raise StreamError(
                "unsupported-stanza-type",
                f"{el.tag} is zerolink reliable delivery: set acks = true on both sides",
            )
        try:
            if el.tag == acks.SYNC:
                self._synced = True
                limit = el.get("max")
                return SyncIn(
                    acks.counter(el.get("h")),
                    acks.counter(el.get("next")),
                    acks.counter(limit) if limit is not None else None,
                )
            if el.tag == acks.ACK:
                return AckIn(acks.counter(el.get("h")))
        except ValueError as exc:
            raise StreamError("bad-format", f"{el.local}: {exc}") from None
        return AckRequested()

    def send_control(self, el: Element, now: float) -> None:
        """Queue a non-stanza element (sync, a, r); not counted as a stanza."""
        if self.state is not State.OPEN:
            return
        self._write(serialize(el, content_ns=SERVER_NS), now)

    def _peer_closed(self, now: float) -> list[Event]:
        events: list[Event] = []
        if self.state is State.OPEN:
            self._write(STREAM_CLOSE, now)
            events.append(PeerClosing())
        self.state = State.CLOSED
        events.append(Closed("stream closed by peer"))
        return events

    def _stream_error(self, exc: StreamError, now: float) -> list[Event]:
        if isinstance(exc, _PeerStreamError):
            return self._received_stream_error(exc.element, now)
        events: list[Event] = [StreamErrorSent(exc.condition, exc.text)]
        if self.state is State.OPEN:
            self._write(stream_error(exc.condition, exc.text), now)
        if self.state is not State.CLOSED:
            if self.state is State.OPEN:
                self._write(STREAM_CLOSE, now)
            self.state = State.CLOSED
        events.append(Closed(f"stream error {exc.condition}: {exc.text or ''}".rstrip(": ")))
        return events

    def _received_stream_error(self, el: Element, now: float) -> list[Event]:
        condition, text = stream_error_of(el)
        if self.state is State.OPEN:
            self._write(STREAM_CLOSE, now)
        self.state = State.CLOSED
        return [
            StreamErrorReceived(condition, text),
            Closed(f"peer sent stream error {condition}" + (f": {text}" if text else "")),
        ]


# How much of a connection's start is kept to read a peer's stream header and stream error.
_OPENING_BYTES = 8192
_HEADER_START = re.compile(rb"<\?xml|<(?:[A-Za-z_][\w.-]*:)?stream[\s>]")
_STREAM_START_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?stream\s[^>]*>")
_DEFAULT_NS = re.compile(rb"\sxmlns\s*=\s*(['\"])(.*?)\1")


# With acks, these stream errors become stanza errors (the stanza is counted and dropped).
_POISON = {
    "invalid-from": "forbidden",
    "improper-addressing": "jid-malformed",
}


class _PeerStreamError(StreamError):
    """Internal: carries a received <stream:error> out of validation."""

    def __init__(self, element: Element) -> None:
        super().__init__("undefined-condition")
        self.element = element


def _domain_of(jid: str) -> str | None:
    """Best-effort normalized domain of a possibly malformed JID."""
    rest = jid.split("/", 1)[0]
    domain = rest.split("@", 1)[-1]
    try:
        return normalize_domain(domain)
    except JIDError:
        return None
