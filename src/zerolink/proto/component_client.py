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

from zerolink.errors import RemoteProtocolError
from zerolink.proto.component import handshake_digest
from zerolink.proto.events import STREAM_ERROR_TAG, Closed, StanzaIn
from zerolink.proto.stream import StreamSkeleton
from zerolink.stanza import STANZA_TAGS
from zerolink.xml.element import COMPONENT_NS, SERVER_NS, Element
from zerolink.xml.parser import StanzaReceived, StreamClosed, StreamOpened, StreamParser
from zerolink.xml.serializer import serialize, stream_header

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


class ComponentClient(StreamSkeleton[State, Event]):
    """One connection to the upstream's component port as `domain`."""

    peer_name = "upstream"
    kind = "component"

    def __init__(
        self,
        domain: str,
        secret: str,
        *,
        max_stanza_size: int = 262144,
        max_depth: int = 64,
        close_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            State.WAIT_HEADER,
            closing=State.CLOSING,
            closed=State.CLOSED,
            close_timeout=close_timeout,
        )
        self.domain = domain
        self._secret = secret
        self._no_id = False
        self._parser = StreamParser(
            content_ns=COMPONENT_NS, max_stanza_size=max_stanza_size, max_depth=max_depth
        )
        # The component speaks first (XEP-0114 §3).
        self._write(stream_header({"to": domain}, default_ns=COMPONENT_NS, xml_declaration=False))

    def _can_send(self) -> bool:
        return self.state is State.OPEN

    def send_stanza(self, stanza: Element) -> None:
        self._require_send()
        self._write(serialize(stanza, content_ns=COMPONENT_NS))

    def send_serialized(self, data: bytes) -> None:
        """A stanza serialized in ``jabber:server`` (from a queue): the same bytes in
        ``jabber:component:accept``, where the stanza's namespace is the default one too."""
        if self.state is not State.OPEN:
            self._require_send()
        self._out.append(data)

    def _close_at_once(self) -> str | None:
        if self.state is State.WAIT_HEADER:
            return "closed before the upstream answered"
        return None

    def _receive(self, data: bytes, now: float) -> None:
        parsed, error = self._parse(self._parser, data)
        for ev in parsed:
            if isinstance(ev, StreamOpened):
                stream_id = ev.attrs.get("id")
                self.state = State.WAIT_HANDSHAKE
                if not stream_id:
                    # Prosody refuses an unknown component with an empty id and a stream
                    # error right after: wait for that error, it says what is wrong.
                    self._no_id = True
                    continue
                self._write(
                    b"<handshake>"
                    + handshake_digest(stream_id, self._secret).encode("ascii")
                    + b"</handshake>"
                )
            elif isinstance(ev, StanzaReceived):
                el = ev.element
                if el.tag == STREAM_ERROR_TAG:
                    # Not answered with our close (the upstream ends the stream itself).
                    self._peer_stream_error(el, answer=False)
                    return
                if self._no_id:
                    raise RemoteProtocolError("invalid-xml", "upstream stream header has no id")
                if self.state is State.WAIT_HANDSHAKE and el.tag == HANDSHAKE:
                    self.state = State.OPEN
                    self._emit(Connected())
                elif el.tag in STANZA_TAGS and self.state in (State.OPEN, State.CLOSING):
                    self._emit(StanzaIn(el))
            elif isinstance(ev, StreamClosed):
                if self._no_id:
                    raise RemoteProtocolError("invalid-xml", "upstream stream header has no id")
                self._peer_closed()
                return
        if error is not None:
            raise error

    def _report_peer_error(self, condition: str, text: str | None) -> None:
        self._emit(Failed(condition, text))

    def _failed(self, condition: str, text: str | None) -> None:
        self._emit(Failed(condition, text))
        self._emit(Closed(f"stream error {condition}: {text or ''}".rstrip(": ")))
