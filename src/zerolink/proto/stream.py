"""The skeleton the four stream sessions share (x2x, c2s, component, component_client).

Each session is a state machine of its own (negotiation differs), but what surrounds it is the
same RFC 6120 stream and is written once here:

* the output buffer (`data_to_send`, `bytes_queued`) and the event queue that every public
  call empties and returns;
* the close exchange (§4.4): our ``</stream:stream>``, then `close_timeout` seconds for the
  other end's, with the deadline exposed through `timer()` (time comes in as `now`);
* the other end's ``</stream:stream>`` (answered with ours) and its ``<stream:error>``;
* writing a stream error of ours (§4.9: our header first if the other end has none yet, the
  error, our close) and the one boundary where errors are translated by who is at fault:
  a `RemoteProtocolError` raised while handling input (the parser's included) becomes our
  stream error and events; a `LocalProtocolError` (our own misuse) goes to the caller.

A session subclasses `StreamSkeleton`, names its CLOSING and CLOSED states, implements
`_receive`, and overrides the few hooks where it differs (its header, its events).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from zerolink.errors import LocalProtocolError, RemoteProtocolError, StreamError
from zerolink.proto.events import Closed, StreamErrorSent, stream_error_of
from zerolink.xml.element import Element
from zerolink.xml.parser import Event as ParseEvent
from zerolink.xml.parser import ParseError, StreamParser
from zerolink.xml.serializer import STREAM_CLOSE, stream_error

__all__ = ["StreamSkeleton"]

StateT = TypeVar("StateT", bound=enum.Enum)
EventT = TypeVar("EventT")


class StreamSkeleton(Generic[StateT, EventT]):
    """Output buffer, event queue, close exchange and stream errors of one stream."""

    #: The other end in close reasons ("client did not answer our stream close in time").
    peer_name = "peer"
    #: The stream in LocalProtocolError messages ("cannot send on a c2s stream ...").
    kind = "XMPP"

    def __init__(
        self, state: StateT, *, closing: StateT, closed: StateT, close_timeout: float
    ) -> None:
        self.state = state
        self.close_timeout = close_timeout
        self._closing = closing
        self._closed = closed
        self._close_deadline: float | None = None
        self._out: list[bytes] = []
        self._events: list[Any] = []

    # -- output --------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Bytes to write to the transport, in order; empties the buffer."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    @property
    def bytes_queued(self) -> int:
        """Bytes written by the session and not yet taken by `data_to_send`."""
        return sum(map(len, self._out))

    def _write(self, data: bytes) -> None:
        self._out.append(data)

    def _require_send(self, what: str = "send") -> None:
        """Raise `LocalProtocolError` unless stanzas may be sent now."""
        if not self._can_send():
            raise LocalProtocolError(
                f"cannot {what} on a {self.kind} stream in state {self.state.value}"
            )

    # -- events --------------------------------------------------------------------------
    def _emit(self, event: Any) -> None:
        self._events.append(event)

    def _take_events(self) -> list[EventT]:
        events = self._events
        if not events:
            return []
        self._events = []
        return events

    def _run(self, step: Callable[..., None], *args: Any) -> list[EventT]:
        """The boundary: run `step`, turn the other end's protocol errors into our stream error
        and return the events. Anything else (a `LocalProtocolError`, a bug) propagates."""
        try:
            step(*args)
        except RemoteProtocolError as exc:
            self._fail(exc)
        return self._take_events()

    # -- input ---------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> list[EventT]:
        """Feed bytes from the other end; returns what happened."""
        if self.state is self._closed or not data:
            return []
        return self._run(self._receive, data, now)

    def _receive(self, data: bytes, now: float) -> None:
        """Handle one read; emit events; raise `RemoteProtocolError` for what is wrong."""
        raise NotImplementedError

    @staticmethod
    def _parse(parser: StreamParser, data: bytes) -> tuple[list[ParseEvent], ParseError | None]:
        """The parser's events and its error, if any: elements completed before the error
        are still handled (RFC 6120 §4.9.1.1), then the caller raises the error."""
        try:
            return parser.feed(data), None
        except ParseError as exc:
            return exc.events, exc

    def _peer_closed(self) -> None:
        """The other end sent ``</stream:stream>``: answered with ours, the stream is over."""
        if self.state is not self._closing:
            self._write(STREAM_CLOSE)
        self.state = self._closed
        self._emit(Closed(f"stream closed by {self.peer_name}"))

    def _peer_stream_error(self, el: Element, *, answer: bool = True) -> None:
        """The other end sent a ``<stream:error>``: reported, the stream is over. `answer`:
        our ``</stream:stream>`` goes out in reply."""
        condition, text = stream_error_of(el)
        self._report_peer_error(condition, text)
        if answer and self.state is not self._closing:
            self._write(STREAM_CLOSE)
        self.state = self._closed
        detail = f": {text}" if text else ""
        self._emit(Closed(f"{self.peer_name} sent stream error {condition}{detail}"))

    # -- close exchange and time ---------------------------------------------------------
    def close(self, now: float) -> list[EventT]:
        """Start the close exchange: our ``</stream:stream>``, then wait for the other end's
        (RFC 6120 §4.4) until `close_timeout` has passed."""
        if self.state is self._closing or self.state is self._closed:
            return []
        reason = self._close_at_once()
        if reason is not None:
            self.state = self._closed
            return [Closed(reason)]  # type: ignore[list-item]
        self._ensure_header()
        self._write(STREAM_CLOSE)
        self.state = self._closing
        self._close_deadline = now + self.close_timeout
        return []

    def timer(self) -> float | None:
        """When `handle_timer` should next be called, or None."""
        if self.state is self._closing:
            return self._close_deadline
        if self.state is self._closed:
            return None
        return self._next_timer()

    def handle_timer(self, now: float) -> list[EventT]:
        if self.state is self._closing:
            if self._close_deadline is not None and now >= self._close_deadline:
                self.state = self._closed
                reason = f"{self.peer_name} did not answer our stream close in time"
                return [Closed(reason)]  # type: ignore[list-item]
            return []
        if self.state is self._closed:
            return []
        self._on_timer(now)
        return self._take_events()

    # -- stream errors of ours -----------------------------------------------------------
    def stream_error(
        self, condition: str, text: str | None = None, now: float = 0.0
    ) -> list[EventT]:
        """End the stream with a stream error of ours (``conflict``, ``system-shutdown`` ...).
        On a stream already over, nothing is written or reported."""
        self._fail(StreamError(condition, text))
        return self._take_events()

    def _fail(self, exc: StreamError) -> None:
        """The one place our stream error is written: our header if the other end has none
        yet, the error, our close (nothing after a close of ours); then the stream is over."""
        if self.state is self._closed:
            return
        if self._can_write_xml():
            self._ensure_header()
            self._write(stream_error(exc.condition, exc.text))
            self._write(STREAM_CLOSE)
        self.state = self._closed
        self._failed(exc.condition, exc.text)

    # -- hooks ---------------------------------------------------------------------------
    def _can_send(self) -> bool:
        """True when stanzas may be sent (the session's open state)."""
        raise NotImplementedError

    def _can_write_xml(self) -> bool:
        """False once nothing more may be written (after our close)."""
        return self.state is not self._closing

    def _ensure_header(self) -> None:
        """Write our stream header if the other end has not had one on this stream."""

    def _close_at_once(self) -> str | None:
        """A reason to close without the exchange (nothing of ours is open), or None."""
        return None

    def _next_timer(self) -> float | None:
        """The session's own deadline while the stream is open (keepalive, negotiation)."""
        return None

    def _on_timer(self, now: float) -> None:
        """The session's own timer work while the stream is open."""

    def _report_peer_error(self, condition: str, text: str | None) -> None:
        """Emit the session's event for a ``<stream:error>`` of the other end's, if any."""

    def _failed(self, condition: str, text: str | None) -> None:
        """Emit the events of a stream error of ours."""
        self._emit(StreamErrorSent(condition, text))
        self._emit(Closed(f"stream error {condition}: {text or ''}".rstrip(": ")))
