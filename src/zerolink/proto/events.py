"""Events shared by the stream sessions (x2x, component, component_client, c2s), and the reading
of a received ``<stream:error>``."""

from __future__ import annotations

from dataclasses import dataclass

from zerolink.errors import STREAM_CONDITIONS, STREAM_ERROR_NS, STREAMS_NS, StanzaError
from zerolink.xml.element import Element

STREAM_ERROR_TAG = f"{{{STREAMS_NS}}}error"


def stream_error_of(el: Element) -> tuple[str, str | None]:
    """The condition and text of a received ``<stream:error>`` (RFC 6120 §4.9.2).

    The condition is ``undefined-condition`` when the element names none of RFC 6120's
    (whatever a peer sends goes to our logs: only known names do).
    """
    condition, text = "undefined-condition", None
    for child in el.elements():
        if child.namespace == STREAM_ERROR_NS:
            if child.local == "text":
                text = child.text
            elif child.local in STREAM_CONDITIONS:
                condition = child.local
    return condition, text


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
