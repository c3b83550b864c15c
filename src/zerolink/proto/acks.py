"""Reliable delivery on an X2X link: a zerolink extension, agreed a priori (docs/protocol.md).

Counters belong to the link, not to a TCP connection: each side numbers the stanzas it sends
over the link's whole life and counts those it receives. On every new connection each side's
first element is ``<sync xmlns='urn:zerolink:x2x:acks:0' h='received' next='seq'/>``: how many
stanzas it has received, and the sequence number of the next stanza it will send. Then it
retransmits at once whatever the other has not acknowledged; the receiver drops what it already
counted. Acknowledgements are XEP-0198's ``<a h=''/>`` and ``<r/>`` (urn:xmpp:sm:3) without
``<enable/>``. Counters are carried modulo 2^32 on the wire, as in XEP-0198, and held as
unbounded integers here.
"""

from __future__ import annotations

from zerolink.counters import MOD, Inbound, unwrap
from zerolink.xml.element import Element

__all__ = [
    "ACK",
    "ACKS_NS",
    "MOD",
    "REQUEST",
    "SM_NS",
    "SYNC",
    "Inbound",
    "ack_element",
    "counter",
    "request_element",
    "sync_element",
    "unwrap",
]

ACKS_NS = "urn:zerolink:x2x:acks:0"
SM_NS = "urn:xmpp:sm:3"
SYNC = f"{{{ACKS_NS}}}sync"
ACK = f"{{{SM_NS}}}a"
REQUEST = f"{{{SM_NS}}}r"


def sync_element(received: int, next_seq: int, max_size: int | None = None) -> Element:
    """``max``: the largest stanza (bytes) this side accepts, so the sender can bounce a
    bigger one instead of resending it into a stream error on every connection."""
    attrs = {"h": str(received % MOD), "next": str(next_seq % MOD)}
    if max_size is not None:
        attrs["max"] = str(max_size)
    return Element(SYNC, attrs)


def ack_element(received: int) -> Element:
    return Element(ACK, {"h": str(received % MOD)})


def request_element() -> Element:
    return Element(REQUEST)


def counter(value: str | None) -> int:
    """A wire counter (0 ≤ n < 2^32); ValueError for anything else."""
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 10:
        raise ValueError(f"expected a counter 0..4294967295, got {value!r}")
    n = int(value)
    if n >= MOD:
        raise ValueError(f"counter {n} is not below 2^32")
    return n
