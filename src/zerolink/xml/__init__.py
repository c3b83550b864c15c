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

__all__ = [
    "CLIENT_NS",
    "COMPONENT_NS",
    "CONTENT_NAMESPACES",
    "SERVER_NS",
    "XML_NS",
    "Element",
    "split_name",
]
