"""What a client connection was given to send and its client has not acknowledged yet.

A client that does not read must not make this process buffer without limit (issue 10: 1,000 MB
sent to such a client took the daemon from 159 MB to 1,158 MB), and when its session is ended
for it, what it was sent and never got must not be lost. `Outbox` is the bookkeeping of one
client connection (no I/O; `zerolink.net.c2s_conn` drives it):

* Stanzas wait here, serialized, while the transport has bytes it could not hand to the
  kernel yet; the connection moves them on in chunks each time the transport has drained
  (its write buffer high-water mark is 0), so asyncio's own buffer holds at most one chunk.
* Each chunk written is a *flight*, ending at a byte offset of the connection's raw output
  (after TLS). The message and iq stanzas of a flight are kept, as bytes, until the client's
  TCP has acknowledged the whole flight: the offset written minus what the transport and the
  kernel's send queue (``TIOCOUTQ``) still hold. Those are the stanzas a reset would lose.
* `size` (waiting plus kept bytes) and the transport's buffer are what the connection holds
  for its client; past the budget (``host.max_send_buffer``) the session is ended, and
  `undelivered` gives back every kept stanza not acknowledged, oldest first, for the host to
  store offline or deliver elsewhere.
* A mark (`mark`) is a callback for when everything put before it has been acknowledged:
  offline messages are deleted from the store only then (`LocalHost` sends them in batches).

What the client's kernel has acknowledged counts as delivered: an application that never
reads it loses it, as with any TCP server without stream management (XEP-0198). What is given
back may still reach the client: a flight acknowledged in part is given back whole, and the
connection is closed rather than reset, so the kernel goes on sending its queue to a client
that reads after all. Such stanzas arrive twice (on the ended session, and again offline);
none is lost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["FLIGHT_BYTES", "Outbox"]

#: Bytes moved onto the transport at a time (one flight); the rest waits here.
FLIGHT_BYTES = 256 * 1024


@dataclass(slots=True)
class _Flight:
    end: int = 0  # raw output offset just past this flight's last byte
    kept: list[bytes] = field(default_factory=list)
    kept_bytes: int = 0
    marks: list[Callable[[], None]] = field(default_factory=list)


class Outbox:
    """Waiting stanzas and unacknowledged flights of one client connection."""

    def __init__(self) -> None:
        # (bytes, keep) of each stanza not written yet, or (b"", mark).
        self._queue: deque[tuple[bytes, bool | Callable[[], None]]] = deque()
        self._flights: deque[_Flight] = deque()
        self._next: _Flight | None = None  # taken, not yet launched
        self.queued_bytes = 0
        self.kept_bytes = 0

    @property
    def size(self) -> int:
        """Bytes held here: stanzas waiting, and copies kept of those in flight."""
        return self.queued_bytes + self.kept_bytes

    @property
    def waiting(self) -> bool:
        return bool(self._queue)

    @property
    def in_flight(self) -> bool:
        return bool(self._flights)

    def put(self, data: bytes, *, keep: bool) -> None:
        """A serialized stanza to send; `keep`: give it back if it is not delivered."""
        self._queue.append((data, keep))
        self.queued_bytes += len(data)

    def mark(self, callback: Callable[[], None]) -> None:
        """Call `callback` once everything put so far has been acknowledged (never if the
        connection ends first)."""
        self._queue.append((b"", callback))

    def take(self, limit: int = FLIGHT_BYTES) -> list[bytes]:
        """Stanzas to write now (at least one, about `limit` bytes); `launched` follows."""
        flight = self._next = _Flight()
        out: list[bytes] = []
        n = 0
        queue = self._queue
        while queue and (n < limit or not out):
            data, tag = queue.popleft()
            if not data:
                flight.marks.append(tag)  # type: ignore[arg-type]
                continue
            out.append(data)
            n += len(data)
            if tag is True:
                flight.kept.append(data)
                flight.kept_bytes += len(data)
        while queue and not queue[0][0]:  # marks right behind the last stanza taken
            flight.marks.append(queue.popleft()[1])  # type: ignore[arg-type]
        self.queued_bytes -= n
        self.kept_bytes += flight.kept_bytes
        return out

    def launched(self, end: int) -> None:
        """What `take` gave was written; the connection's raw output now ends at `end`."""
        flight, self._next = self._next, None
        if flight is None:
            return
        flight.end = end
        self._flights.append(flight)

    def acked(self, offset: int) -> list[Callable[[], None]]:
        """The client's TCP acknowledged the raw output up to `offset`: forget the flights
        that end there or before; their marks are returned, to be called."""
        marks: list[Callable[[], None]] = []
        flights = self._flights
        while flights and flights[0].end <= offset:
            flight = flights.popleft()
            self.kept_bytes -= flight.kept_bytes
            marks.extend(flight.marks)
        return marks

    def undelivered(self) -> list[bytes]:
        """The kept stanzas not acknowledged, then those never written, oldest first; the
        outbox is empty afterwards and its marks are dropped."""
        out: list[bytes] = []
        if self._next is not None:  # taken but never written
            self._flights.append(self._next)
            self._next = None
        for flight in self._flights:
            out.extend(flight.kept)
        out.extend(data for data, keep in self._queue if data and keep is True)
        self._flights.clear()
        self._queue.clear()
        self.queued_bytes = self.kept_bytes = 0
        return out
