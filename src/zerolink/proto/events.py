"""Events shared by the stream sessions (x2x, component, component_client, c2s)."""

from __future__ import annotations

from dataclasses import dataclass

from zerolink.errors import StanzaError
from zerolink.xml.element import Element


@dataclass(slots=True)
class StanzaIn:
    """A validated stanza from the other end (built per stanza: plain slots, not frozen)."""

    stanza: Element


@dataclass(frozen=True, slots=True)
class StanzaRejected:
    """A stanza that cannot be accepted; the caller answers it with `error`."""

    stanza: Element
    error: StanzaError


@dataclass(frozen=True, slots=True)
class StreamErrorSent:
    """We found a stream-level error; the error and our close are queued."""

    condition: str
    text: str | None


@dataclass(frozen=True, slots=True)
class StreamErrorReceived:
    """The other end sent a ``<stream:error>``."""

    condition: str
    text: str | None


@dataclass(frozen=True, slots=True)
class Closed:
    """The stream is over: flush what is left to send and close the transport."""

    reason: str
