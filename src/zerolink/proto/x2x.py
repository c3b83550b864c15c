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
from collections.abc import Callable
from dataclasses import dataclass

from zerolink.domains import DomainSet
from zerolink.errors import RemoteProtocolError, StanzaError
from zerolink.jid import JIDError, canonical_jid, normalize_domain, parse_jid
from zerolink.proto import acks
from zerolink.proto.compression import MAGIC as COMPRESSION_MAGIC
from zerolink.proto.compression import CompressionSpec, Compressor, Decompressor
from zerolink.proto.events import (
    STREAM_ERROR_TAG,
    Closed,
    StanzaIn,
    StanzaRejected,
    StreamErrorReceived,
    StreamErrorSent,
    stream_error_of,
)
from zerolink.proto.stream import StreamSkeleton
from zerolink.stanza import STANZA_TAGS
from zerolink.xml.element import CONTENT_NAMESPACES, SERVER_NS, Element
from zerolink.xml.parser import (
    X2X_HEADER,
    HeaderReceived,
    StanzaReceived,
    StreamClosed,
    StreamParser,
)
from zerolink.xml.serializer import serialize, stream_header

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
    compression: CompressionSpec | None = None  # zerolink.proto.compression, agreed a priori


@dataclass(slots=True)
class Counters:
    bytes_in: int = 0  # of XML (decompressed, when compression is on)
    bytes_out: int = 0
    wire_in: int = 0  # compressed bytes, when compression is on
    wire_out: int = 0
    stanzas_in: int = 0
    stanzas_out: int = 0
    keepalives_out: int = 0
    stanzas_rejected: int = 0  # answered with a stanza error and dropped


class X2XSession(StreamSkeleton[State, Event]):
    """State of one XEP-0361 stream, both directions."""

    kind = "X2X"

    def __init__(self, settings: X2XSettings, *, now: float) -> None:
        super().__init__(
            State.OPEN,
            closing=State.CLOSING,
            closed=State.CLOSED,
            close_timeout=settings.close_timeout,
        )
        self.settings = settings
        self.counters = Counters()
        self._parser = StreamParser(
            content_ns=SERVER_NS,
            max_stanza_size=settings.max_stanza_size,
            max_depth=settings.max_depth,
            implied_header=IMPLIED_HEADER,
        )
        # The connection's first bytes: a peer's stream header (and a stream error right
        # after it) is read from there when the parser reports one that began in them.
        self._opening = b""
        self._synced = not settings.acks
        self._last_send = now
        spec = settings.compression
        self._deflate = Compressor(spec) if spec is not None else None
        self._inflate = Decompressor(spec) if spec is not None else None

    # -- output ------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Bytes to write to the transport, in order; empties the buffer. With compression,
        what is taken at once is one burst: compressed and flushed together."""
        if self._deflate is None:
            data = super().data_to_send()
            self.counters.bytes_out += len(data)
            return data
        units = self._out
        if not units:
            return b""
        self._out = []
        self.counters.bytes_out += sum(map(len, units))
        data = self._deflate.compress(units)
        self.counters.wire_out += len(data)
        return data

    def _can_send(self) -> bool:
        return self.state is State.OPEN

    def send_stanza(self, stanza: Element, now: float) -> None:
        """Queue a stanza for the peer. Only valid while OPEN (else `LocalProtocolError`)."""
        if self.state is not State.OPEN:
            self._require_send()
        self._out.append(serialize(stanza, content_ns=SERVER_NS))
        self._last_send = now
        self.counters.stanzas_out += 1

    def send_serialized(self, data: bytes, now: float) -> None:
        """Queue a stanza already serialized by `serialize` in ``jabber:server``."""
        if self.state is not State.OPEN:
            self._require_send()
        self._out.append(data)
        self._last_send = now
        self.counters.stanzas_out += 1

    def send_control(self, el: Element, now: float) -> None:
        """Queue a non-stanza element (sync, a, r); not counted as a stanza."""
        if self.state is not State.OPEN:
            return
        self._out.append(serialize(el, content_ns=SERVER_NS))
        self._last_send = now

    # -- time --------------------------------------------------------------------------
    def _next_timer(self) -> float | None:
        if self.settings.keepalive > 0:
            return self._last_send + self.settings.keepalive
        return None

    def _on_timer(self, now: float) -> None:
        if self.settings.keepalive > 0 and now >= self._last_send + self.settings.keepalive:
            self._out.append(KEEPALIVE)
            self._last_send = now
            self.counters.keepalives_out += 1

    # -- input -------------------------------------------------------------------------
    def _receive(self, data: bytes, now: float) -> None:
        first = self.counters.bytes_in == 0 and self.counters.wire_in == 0
        if first and data[0] == 0x16:
            # A TLS record (handshake) where XML was expected: one side has tls on, one off.
            self.counters.bytes_in += len(data)
            raise RemoteProtocolError(
                "not-well-formed",
                "this is a TLS handshake on a plaintext X2X link: "
                "is tls = true configured on one side only?",
            )
        inflate = self._inflate
        if inflate is None:
            if first and data[0] == COMPRESSION_MAGIC:
                self.counters.bytes_in += len(data)
                raise RemoteProtocolError(
                    "bad-format",
                    "the peer sends a compressed stream where compression is off: "
                    "is compression set on one side only?",
                )
            self._receive_xml(data)
            return
        self.counters.wire_in += len(data)
        for chunk in inflate.feed(data):
            self._receive_xml(chunk)
            if self.state is State.CLOSED:
                return

    def _receive_xml(self, data: bytes) -> None:
        """Handle XML of the peer's (after decompression, if any)."""
        seen = self.counters.bytes_in
        if seen < _OPENING_BYTES:
            self._opening += data[: _OPENING_BYTES - seen]
        self.counters.bytes_in += len(data)
        parsed, error = self._parse(self._parser, data)
        emit = self._events.append  # the queue is not replaced during a read
        for ev in parsed:
            if type(ev) is StanzaReceived:
                el = ev.element
                if el.tag == STREAM_ERROR_TAG:
                    self._peer_stream_error(el)
                    return
                try:
                    out = self._accept(el)
                except RemoteProtocolError as exc:
                    if not (self.settings.acks and exc.condition in _POISON):
                        raise
                    # Counted, answered with a stanza error, dropped: a retransmitted bad
                    # stanza must not tear the link down again and again.
                    self.counters.stanzas_rejected += 1
                    emit(StanzaRejected(el, StanzaError(_POISON[exc.condition], exc.text)))
                    continue
                if out is not None:
                    if type(out) is StanzaRejected:
                        self.counters.stanzas_rejected += 1
                    emit(out)
            elif isinstance(ev, StreamClosed):
                self._peer_closed()
                return
            elif isinstance(ev, HeaderReceived):
                theirs = self._error_after_header(ev.start, data, seen)
                if theirs is not None:
                    emit(StreamErrorReceived(*theirs))
                if self.state is State.OPEN:  # nothing after our </stream:stream>
                    self._write(stream_header({}, default_ns=SERVER_NS))
                raise RemoteProtocolError(
                    "policy-violation",
                    "stream headers are not used on this XEP-0361 zero-handshake link",
                )
        if error is not None:
            raise error

    def _error_after_header(
        self, start: int, data: bytes, seen: int
    ) -> tuple[str, str | None] | None:
        """(condition, text) of a ``<stream:error>`` after the peer's stream header, which the
        parser reports began at offset `start` of the connection; `data` is this read, which
        began at offset `seen`. None when there is no complete stream error there.

        The session's parser stops at the header; a parser of an ordinary (not implied)
        stream reads from the header on.
        """
        if start >= seen:
            rest = data[start - seen :]
        elif seen <= len(self._opening):  # the header began in an earlier read, kept
            rest = self._opening[start:seen] + data
        else:
            return None
        # Any content namespace a peer's header may declare; not one of its choosing (the
        # parser's name caches are shared, one per content namespace).
        parser = StreamParser(
            content_ns=SERVER_NS,
            also_ns=CONTENT_NAMESPACES,
            max_stanza_size=self.settings.max_stanza_size,
            max_depth=self.settings.max_depth,
        )
        parsed, _ = self._parse(parser, rest)
        for ev in parsed:
            if isinstance(ev, StanzaReceived) and ev.element.tag == STREAM_ERROR_TAG:
                return stream_error_of(ev.element)
        return None

    def _accept(self, el: Element) -> Event | None:
        """Validate one top-level element (XEP-0361 §4.5 as RFC 6120 S2S)."""
        if el.tag not in STANZA_TAGS:
            if el.tag in (acks.SYNC, acks.ACK, acks.REQUEST):
                return self._ack_element(el)
            raise RemoteProtocolError("unsupported-stanza-type", f"unexpected element {el.tag}")
        if self.settings.acks and not self._synced:
            raise RemoteProtocolError(
                "policy-violation",
                "acks = true here: the first element must be <sync xmlns='"
                f"{acks.ACKS_NS}'/>; is acks set on both sides?",
            )
        attrib = el.attrib
        sender = attrib.get("from")
        recipient = attrib.get("to")
        if not sender or not recipient:
            missing = "from" if not sender else "to"
            raise RemoteProtocolError("improper-addressing", f"stanza without '{missing}'")
        try:
            from_jid = parse_jid(sender)
        except JIDError as exc:
            # The domain may still be one of the peer's: then we can answer the sender.
            domain = _domain_of(sender)
            if domain is not None and domain in self.settings.peer_domains:
                return StanzaRejected(el, StanzaError("jid-malformed", f"from: {exc}"))
            raise RemoteProtocolError("invalid-from", f"malformed 'from' {sender!r}") from None
        if from_jid.domain not in self.settings.peer_domains:
            raise RemoteProtocolError(
                "invalid-from", f"{from_jid.domain} is not served by this peer"
            )
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
            raise RemoteProtocolError(
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
            raise RemoteProtocolError("bad-format", f"{el.local}: {exc}") from None
        return AckRequested()

    def _peer_closed(self) -> None:
        if self.state is State.OPEN:
            self._emit(PeerClosing())
        super()._peer_closed()

    def _report_peer_error(self, condition: str, text: str | None) -> None:
        self._emit(StreamErrorReceived(condition, text))


# How much of a connection's start is kept to read a peer's stream header and stream error.
_OPENING_BYTES = 8192


# With acks, these stream errors become stanza errors (the stanza is counted and dropped).
_POISON = {
    "invalid-from": "forbidden",
    "improper-addressing": "jid-malformed",
}


def _domain_of(jid: str) -> str | None:
    """Best-effort normalized domain of a possibly malformed JID."""
    rest = jid.split("/", 1)[0]
    domain = rest.split("@", 1)[-1]
    try:
        return normalize_domain(domain)
    except JIDError:
        return None
