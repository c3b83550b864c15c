"""Link counters of reliable delivery, held as unbounded integers, carried modulo 2^32.

Shared by the wire format (`zerolink.proto.acks`) and the delivery logic
(`zerolink.core.delivery`), which do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Counters travel modulo this on the wire (XEP-0198).
MOD = 1 << 32


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
