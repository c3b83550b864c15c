"""A bounded FIFO of stanzas waiting for a route, each with the time it must leave by.

Stanzas wait as their serialized bytes (what will go on the wire), not as element trees: a
queued 200-byte stanza costs its bytes plus a small tuple, and the byte budget is exact. They
are parsed again only if they must be bounced (`zerolink.xml.parser.parse_stanza`).

Every stanza in one queue has the same timeout, so deadlines are in order and expiry only
ever looks at the head.
"""

from __future__ import annotations

from collections import deque


class StanzaQueue:
    """Serialized stanzas waiting for a link or an upstream connection.

    `limit` bounds the count, `max_bytes` the bytes, `timeout` the wait.
    """

    __slots__ = ("_items", "bytes", "limit", "max_bytes", "timeout")

    def __init__(self, limit: int, timeout: float, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.bytes = 0
        self._items: deque[tuple[float, bytes]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        """True while something waits (`zerolink.core.outbox.Outbox`)."""
        return bool(self._items)

    def push(self, data: bytes, now: float) -> bool:
        """Append; False when the queue is full in count or bytes (the caller bounces it)."""
        if len(self._items) >= self.limit or self.bytes + len(data) > self.max_bytes:
            return False
        self._items.append((now + self.timeout, data))
        self.bytes += len(data)
        return True

    def pop(self) -> bytes:
        """Remove and return the oldest stanza."""
        data = self._items.popleft()[1]
        self.bytes -= len(data)
        return data

    def expire(self, now: float) -> list[bytes]:
        """Remove and return the stanzas whose deadline has passed."""
        out: list[bytes] = []
        items = self._items
        while items and items[0][0] <= now:
            data = items.popleft()[1]
            self.bytes -= len(data)
            out.append(data)
        return out

    def next_deadline(self) -> float | None:
        return self._items[0][0] if self._items else None

    def clear(self) -> list[bytes]:
        out = [data for _, data in self._items]
        self._items.clear()
        self.bytes = 0
        return out

    def full_text(self, what: str) -> str:
        """The text of the resource-constraint bounce when `push` refused."""
        return (
            f"queue for {what} is full ({len(self._items)} stanzas, {self.bytes} bytes; "
            f"limits {self.limit} and {self.max_bytes})"
        )
