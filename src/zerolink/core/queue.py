"""A bounded FIFO of stanzas waiting for a route, each with the time it must leave by.

Every stanza in one queue has the same timeout, so deadlines are in order and expiry only
ever looks at the head.
"""

from __future__ import annotations

from collections import deque

from zerolink.xml.element import Element


class StanzaQueue:
    """Stanzas waiting for a link; `limit` bounds the count, `timeout` the wait."""

    __slots__ = ("_items", "limit", "timeout")

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        self._items: deque[tuple[float, Element]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def push(self, stanza: Element, now: float) -> bool:
        """Append; False when the queue is full (the caller bounces the stanza)."""
        if len(self._items) >= self.limit:
            return False
        self._items.append((now + self.timeout, stanza))
        return True

    def pop(self) -> tuple[float, Element]:
        """Remove and return (deadline, stanza) of the oldest entry."""
        return self._items.popleft()

    def expire(self, now: float) -> list[Element]:
        """Remove and return the stanzas whose deadline has passed."""
        out: list[Element] = []
        items = self._items
        while items and items[0][0] <= now:
            out.append(items.popleft()[1])
        return out

    def next_deadline(self) -> float | None:
        return self._items[0][0] if self._items else None

    def clear(self) -> list[Element]:
        out = [s for _, s in self._items]
        self._items.clear()
        return out
