"""XEP-0114 component session, connecting side, sans-I/O.

The gateway attaches to an upstream server (Prosody, ejabberd) as a component for each remote
domain reachable over its links. Everything the upstream sends is passed on unchanged; nothing is
answered here. Component libraries often answer presence probes and subscription requests
themselves (with ``unsubscribed``), which downgrades the upstream's rosters: this session never
does, the other side of the link answers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from zerolink.proto.component import handshake_digest
from zerolink.proto.events import STREAM_ERROR_TAG, Closed, StanzaIn, stream_error_of
from zerolink.stanza import STANZA_TAGS
from zerolink.xml.element import COMPONENT_NS, SERVER_NS, Element
from zerolink.xml.parser import ParseError, StanzaReceived, StreamClosed, StreamOpened, StreamParser
from zerolink.xml.serializer import STREAM_CLOSE, serialize, stream_error, stream_header

HANDSHAKE = f"{{{SERVER_NS}}}handshake"


class State(enum.Enum):
    WAIT_HEADER = "wait-header"
    WAIT_HANDSHAKE = "wait-handshake"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Connected:
    """The upstream accepted our handshake: stanzas may flow."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The upstream refused us or broke the stream; `condition` is its stream error, if any."""

    condition: str
    text: str | None


Event = Connected | StanzaIn | Failed | Closed


class ComponentClient:
    """One connection to the upstream's component port as `domain`."""

    def __init__(
        self,
        domain: str,
        secret: str,
        *,
        max_stanza_size: int = 262144,
        max_depth: int = 64,
        close_timeout: float = 10.0,
    ) -> None:
        self.domain = domain
        self._secret = secret
        self.state = State.WAIT_HEADER
        self._no_id = False
        self._close_timeout = close_timeout
        self._close_deadline: float | None = None
        self._parser = StreamParser(
            content_ns=COMPONENT_NS, max_stanza_size=max_stanza_size, max_depth=max_depth
        )
        # The component speaks first (XEP-0114 §3).
        self._out: list[bytes] = [
            stream_header({"to": domain}, default_ns=COMPONENT_NS, xml_declaration=False)
        ]

    def data_to_send(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data

    def send_stanza(self, stanza: Element) -> None:
        if self.state is not State.OPEN:
            raise RuntimeError(f"component stream is {self.state.value}")
        self._out.append(serialize(stanza, content_ns=COMPONENT_NS))

    def send_serialized(self, data: bytes) -> None:
        """A stanza serialized in ``jabber:server`` (from a queue): the same bytes in
        ``jabber:component:accept``, where the stanza's namespace is the default one too."""
        if self.state is not State.OPEN:
            raise RuntimeError(f"component stream is {self.state.value}")
        self._out.append(data)

    def close(self, now: float) -> list[Event]:
        if self.state in (State.WAIT_HANDSHAKE, State.OPEN):
            self._out.append(STREAM_CLOSE)
            self.state = State.CLOSING
            self._close_deadline = now + self._close_timeout
        elif self.state is State.WAIT_HEADER:
            self.state = State.CLOSED
            return [Closed("closed before the upstream answered")]
        return []

    def timer(self) -> float | None:
        return self._close_deadline if self.state is State.CLOSING else None

    def handle_timer(self, now: float) -> list[Event]:
        if self.state is State.CLOSING and self._close_deadline and now >= self._close_deadline:
            self.state = State.CLOSED
            return [Closed("upstream did not answer our stream close in time")]
        return []

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        if self.state is State.CLOSED:
            return []
        error: ParseError | None = None
        try:
            parsed = self._parser.feed(data)
        except ParseError as exc:
            parsed, error = exc.events, exc
        events: list[Event] = []
        for ev in parsed:
            if isinstance(ev, StreamOpened):
                stream_id = ev.attrs.get("id")
                self.state = State.WAIT_HANDSHAKE
                if not stream_id:
                    # Prosody refuses an unknown component with an empty id and a stream
                    # error right after: wait for that error, it says what is wrong.
                    self._no_id = True
                    continue
                self._out.append(
                    b"<handshake>"
                    + handshake_digest(stream_id, self._secret).encode("ascii")
                    + b"</handshake>"
                )
            elif isinstance(ev, StanzaReceived):
                el = ev.element
                if el.tag == STREAM_ERROR_TAG:
                    return events + self._peer_error(el)
                if self._no_id:
                    return events + self._fail("invalid-xml", "upstream stream header has no id")
                if self.state is State.WAIT_HANDSHAKE and el.tag == HANDSHAKE:
                    self.state = State.OPEN
                    events.append(Connected())
                elif el.tag in STANZA_TAGS and self.state in (State.OPEN, State.CLOSING):
                    events.append(StanzaIn(el))
            elif isinstance(ev, StreamClosed):
                if self._no_id:
                    return events + self._fail("invalid-xml", "upstream stream header has no id")
                if self.state is not State.CLOSING:
                    self._out.append(STREAM_CLOSE)
                self.state = State.CLOSED
                events.append(Closed("upstream closed the stream"))
                return events
        if error is not None:
            events += self._fail(error.condition, error.text)
        return events

    def _peer_error(self, el: Element) -> list[Event]:
        condition, text = stream_error_of(el)
        self.state = State.CLOSED
        return [Failed(condition, text), Closed(f"upstream stream error {condition}")]

    def _fail(self, condition: str, text: str | None) -> list[Event]:
        if self.state not in (State.CLOSING, State.CLOSED):  # nothing after our close
            self._out.append(stream_error(condition, text))
            self._out.append(STREAM_CLOSE)
        self.state = State.CLOSED
        return [Failed(condition, text), Closed(f"{condition}: {text or ''}")]
