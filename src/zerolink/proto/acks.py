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

from dataclasses import dataclass

from zerolink.xml.element import Element

ACKS_NS = "urn:zerolink:x2x:acks:0"
SM_NS = "urn:xmpp:sm:3"
SYNC = f"{{{ACKS_NS}}}sync"
ACK = f"{{{SM_NS}}}a"
REQUEST = f"{{{SM_NS}}}r"
MOD = 1 << 32


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


def unwrap(wire: int, near: int) -> int:
    """The full counter ≡ `wire` (mod 2^32) closest to `near` (XEP-0198 §5 wrap-around)."""
    base = near - (near % MOD) + wire
    if base - near > MOD // 2:
        base -= MOD
    elif near - base > MOD // 2:
        base += MOD
    return base


@dataclass(slots=True)
class Inbound:
    """What one side has received from the other over the link's life.

    Each connection carries the peer's numbered stream from the `next` its ``<sync/>``
    announced, so the sequence number of every arriving stanza is known: below the count it
    is a duplicate, at the count it is new, above it the peer gave the ones between up
    (they timed out and bounced on its side). A sync on a connection the peer does not send
    on (simultaneous open) changes nothing for the stanzas on the other one.
    """

    count: int = 0  # stanzas received and handled (counted, even when rejected)

    def position(self, next_wire: int) -> int:
        """The full sequence number a connection's first stanza will have."""
        return unwrap(next_wire, self.count)

    def arrived(self, seq: int) -> tuple[bool, int]:
        """The stanza numbered `seq` arrived: (new?, how many were given up before it)."""
        if seq < self.count:
            return False, 0
        gap = seq - self.count
        self.count = seq + 1
        return True, gap
