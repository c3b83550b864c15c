"""XML layer: Element, incremental restricted-XML parser (pyexpat), minimal-namespace serializer."""

from zerolink.xml.element import (
    CLIENT_NS,
    COMPONENT_NS,
    CONTENT_NAMESPACES,
    SERVER_NS,
    XML_NS,
    Element,
    split_name,
)
from zerolink.xml.parser import (
    X2X_HEADER,
    Event,
    HeaderReceived,
    ParseError,
    StanzaReceived,
    StreamClosed,
    StreamOpened,
    StreamParser,
    Whitespace,
)
from zerolink.xml.serializer import STREAM_CLOSE, serialize, stream_error, stream_header

__all__ = [
    "CLIENT_NS",
    "COMPONENT_NS",
    "CONTENT_NAMESPACES",
    "SERVER_NS",
    "STREAM_CLOSE",
    "X2X_HEADER",
    "XML_NS",
    "Element",
    "Event",
    "HeaderReceived",
    "ParseError",
    "StanzaReceived",
    "StreamClosed",
    "StreamOpened",
    "StreamParser",
    "Whitespace",
    "serialize",
    "split_name",
    "stream_error",
    "stream_header",
]
