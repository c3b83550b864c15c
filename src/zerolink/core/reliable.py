"""The outbound log of a link with reliable delivery: stanzas kept until acknowledged.

Each stanza gets the link's next sequence number when it is accepted. A cursor marks what has
been sent on the current connection; an acknowledgement removes everything below it; a new
connection rewinds the cursor to the oldest unacknowledged stanza. Stanzas leave only from the
head (acknowledged, or past their deadline), so sequence numbers stay contiguous from the head.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from zerolink.xml.element import Element


@dataclass(slots=True)
class Entry:
    seq: int
    deadline: float
    stanza: Element
    size: int


class ReliableLog:
    """Bounded by count and bytes; `timeout` seconds before an unacknowledged stanza bounces."""

    def __init__(self, limit: int, max_bytes: int, timeout: float, next_seq: int = 0) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.next_seq = next_seq
        self.bytes = 0
        self._entries: deque[Entry] = deque()
        self._sent = 0  # entries before this index were sent on the current connection

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        """True while something is waiting to be sent (acknowledgements aside)."""
        return self._sent < len(self._entries)

    @property
    def first_seq(self) -> int:
        """Sequence number of the oldest unacknowledged stanza (or the next one)."""
        return self._entries[0].seq if self._entries else self.next_seq

    @property
    def unacked(self) -> int:
        return self._sent

    def push(self, stanza: Element, now: float, size: int) -> Entry | None:
        """Accept a stanza; None when the log is full (the caller bounces it)."""
        if len(self._entries) >= self.limit or self.bytes + size > self.max_bytes:
            return None
        entry = Entry(self.next_seq, now + self.timeout, stanza, size)
        self.next_seq += 1
        self._entries.append(entry)
        self.bytes += size
        return entry

    def restore(self, entry: Entry) -> None:
        """Re-add an entry loaded from storage (in order)."""
        self._entries.append(entry)
        self.bytes += entry.size
        self.next_seq = max(self.next_seq, entry.seq + 1)

    def peek(self) -> Entry:
        """The entry `pop()` would return (``bool(self)`` must be true)."""
        return self._entries[self._sent]

    def drop_from(self, seq: int) -> list[Entry]:
        """Remove the unsent entries numbered `seq` and later (they could not be stored),
        and number the next stanza `seq` again."""
        out: list[Entry] = []
        entries = self._entries
        while entries and entries[-1].seq >= seq and len(entries) > self._sent:
            entry = entries.pop()
            self.bytes -= entry.size
            out.append(entry)
        out.reverse()
        if not entries or entries[-1].seq < seq:
            self.next_seq = seq
        return out

    def pop(self) -> Entry:
        """The next entry to send on this connection (it stays until acknowledged)."""
        entry = self._entries[self._sent]
        self._sent += 1
        return entry

    def discard_popped(self, entry: Entry) -> None:
        """Remove the entry `pop()` just returned (it will never be sent)."""
        assert self._entries[self._sent - 1] is entry
        del self._entries[self._sent - 1]
        self._sent -= 1
        self.bytes -= entry.size

    def rewind(self) -> int:
        """A new connection: everything unacknowledged goes again; returns the first seq."""
        self._sent = 0
        return self.first_seq

    def ack(self, h: int) -> list[Entry]:
        """The peer has received every stanza below `h`: forget them."""
        return self._pop_head(lambda e: e.seq < h)

    def renumber(self, shift: int) -> None:
        """Move every sequence number up by `shift` (this side's numbering was lost)."""
        for entry in self._entries:
            entry.seq += shift
        self.next_seq += shift
        self._sent = 0

    def expire(self, now: float) -> list[Entry]:
        """Remove and return the head entries whose deadline passed (sent or not)."""
        return self._pop_head(lambda e: e.deadline <= now)

    def _pop_head(self, leaves: Callable[[Entry], bool]) -> list[Entry]:
        """Remove entries from the head while `leaves` says so (only the head ever leaves)."""
        out: list[Entry] = []
        entries = self._entries
        while entries and leaves(entries[0]):
            entry = entries.popleft()
            self.bytes -= entry.size
            if self._sent:
                self._sent -= 1
            out.append(entry)
        return out

    def next_deadline(self) -> float | None:
        return self._entries[0].deadline if self._entries else None
