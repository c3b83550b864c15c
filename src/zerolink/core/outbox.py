"""The one interface of a link's waiting stanzas, whichever queue holds them.

A link without acks keeps serialized stanzas in a `zerolink.core.queue.StanzaQueue`; one with
acks keeps numbered entries in a `zerolink.core.reliable.ReliableLog` until acknowledged. The
link's backpressure, dialing and expiry only need what is stated here.
"""

from __future__ import annotations

from typing import Protocol


class Outbox(Protocol):
    """Stanzas waiting for a link, bounded in count and bytes, each with a deadline."""

    bytes: int
    max_bytes: int

    def __len__(self) -> int:
        """Stanzas held (for the log: sent or not, until acknowledged)."""
        ...

    def __bool__(self) -> bool:
        """True while something waits to be sent."""
        ...

    def next_deadline(self) -> float | None:
        """When the oldest stanza must have left (None: nothing held)."""
        ...
