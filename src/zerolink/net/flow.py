"""Backpressure: a congested receiver makes the sender's TCP wait instead of making us buffer
without limit or bounce stanzas.

Two small pieces:

- a `Valve` belongs to a route that can fill up (a `PeerLink`'s queue, a component's socket).
  The route says whether it is ``congested()``, lets senders wait with
  ``when_drained(callback)`` and opens the valve (`Valve.release`) when it has room again;
- an `Inflow` belongs to a connection that reads stanzas and routes them (a component, an X2X
  connection). After routing each stanza it asks `Inflow.check` about the route the stanza went
  to; if that route is congested, it pauses reading its own transport, keeps the events of the
  current read it has not handled yet (``held``) and waits on the route's valve. When every
  route it waits on has drained it handles the held events, then resumes reading.

End to end, for ``component A -> air -> X2X -> ground -> component B``::

    A --XEP-0114--> [air: ComponentConnection] -router-> [PeerLink ground: queue]
      --X2X TCP--> [ground: X2XConnection] -router-> [ComponentRoute B] --XEP-0114--> B

Toward a stalled peer (ground stops reading, e.g. its process is stopped):

1. air's X2X socket fills, then its asyncio transport buffer passes its high-water mark:
   ``pause_writing`` marks the connection paused, so `PeerLink.deliver` queues instead of
   writing (and `PeerLink.pump` stops moving the queue onto it);
2. the queue reaches high water (``queue_limit // 2``): the link is congested;
3. air's component connection routes a stanza to the congested link: it pauses reading A's
   socket; A's own TCP send buffer fills and A's writes wait. Nothing is bounced, and the
   queue stays below ``queue_limit`` (the room between high water and the limit absorbs
   senders that do not take part: bounces, local users);
4. ground reads again: ``resume_writing`` pumps the queue onto the connection; once the queue is
   at or below low water (``high // 2``) and the connection takes more, the link's valve
   opens and air reads from A again.

Toward a slow component (B stops reading):

1. ground's transport to B passes its high-water mark: ``pause_writing`` makes B's
   `ComponentRoute` congested;
2. ground's X2X connection routes a stanza to B: it pauses reading the X2X socket;
3. ground's kernel receive buffer fills, TCP flow control stops air's X2X writes, and the
   first chain above follows on air: A is slowed down to what B reads;
4. B reads, ground's transport drains (``resume_writing``), B's valve opens, ground reads the
   X2X socket again.

A paused connection is paused for every route it feeds: one slow component slows whatever else
shares the X2X connection with it (head-of-line blocking, as on any single TCP stream).

Memory at each hop stays bounded: a paused reader holds at most the stanzas of one read
(asyncio reads at most 256 KiB at a time), a link queue at most its limit, a transport its
high-water mark plus what one turn of the event loop wrote.

Time: backpressure depends on the queue's length, not on whether the link is up. Stanzas queued
while the link is down still bounce with ``remote-server-timeout`` after ``stanza_timeout``;
that drains the queue and lets the paused sender go on, so a component sending to a dead link
is slowed to one queue of stanzas per timeout (each bounced in turn) rather than having them
bounced for a full queue. Stanzas held by a paused reader are in no queue yet: their timeout
starts when they are routed.

No polling: a waiting reader is called once when the valve opens (with ``loop.call_soon``,
never from inside the route's own code), checks again and waits again if the route filled up in
the meantime. As with TCP itself, two parties that each stop reading until their own writes
drain can wait for each other forever; XMPP servers and components read and write
independently, so this does not arise in practice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zerolink.net.driver import SessionDriver

__all__ = ["Inflow", "Valve"]


class Valve:
    """The waiters of one route that can be congested; `release` wakes them all, once."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        # A dict as an ordered set: one registration per callback however often it waits.
        self._waiters: dict[Callable[[], None], None] = {}

    def __len__(self) -> int:
        return len(self._waiters)

    def wait(self, callback: Callable[[], None]) -> None:
        self._waiters[callback] = None

    def cancel(self, callback: Callable[[], None]) -> None:
        self._waiters.pop(callback, None)

    def release(self) -> None:
        """Schedule every waiter for the next loop turn (never re-entrantly) and forget them."""
        if not self._waiters:
            return
        waiters = list(self._waiters)
        self._waiters.clear()
        call_soon = asyncio.get_running_loop().call_soon
        for callback in waiters:
            call_soon(callback)


class Inflow:
    """The reading side of one connection: paused while a route it fed is congested.

    The driver's ``handle_events`` starts with ``if inflow.held is not None: inflow.hold(events,
    0); return`` (so that events keep their order), and after routing a stanza at index ``i``
    does ``if inflow.check(route): inflow.hold(events, i + 1); return``.
    """

    __slots__ = ("_blocked", "_driver", "held", "pauses")

    def __init__(self, driver: SessionDriver) -> None:
        self._driver = driver
        self._blocked: dict[Any, None] = {}  # congested routes we wait on
        self.held: list[Any] | None = None  # not None while paused: events not handled yet
        self.pauses = 0  # how often reading was paused (for tests and statistics)

    @property
    def paused(self) -> bool:
        return self.held is not None

    def check(self, route: Any) -> bool:
        """After a stanza went to `route`: if it is congested, pause reading and return True."""
        congested = getattr(route, "congested", None)
        if congested is None or not congested():
            return False
        if route not in self._blocked:
            self._blocked[route] = None
            route.when_drained(self._drained)
        if self.held is None:
            self.held = []
            self.pauses += 1
            transport = self._driver.transport
            if transport is not None:
                transport.pause_reading()
        return True

    def hold(self, events: list[Any], start: int) -> None:
        """Keep events[start:] until the routes drain (only while paused)."""
        assert self.held is not None
        if start < len(events):
            self.held.extend(events[start:] if start else events)

    def _drained(self) -> None:
        driver = self._driver
        if driver.transport is None:
            return  # the connection is gone (close() forgot the rest)
        blocked = self._blocked
        for route in list(blocked):
            if route.congested():
                route.when_drained(self._drained)  # filled up again before we ran
            else:
                del blocked[route]
        if blocked or self.held is None:
            return
        held, self.held = self.held, None
        if held:
            driver.handle_events(held)
            driver.flush()
        if self.held is None and driver.transport is not None:
            driver.transport.resume_reading()

    def close(self) -> None:
        """The connection is gone: stop waiting, drop what was held."""
        for route in self._blocked:
            cancel = getattr(route, "cancel_drained", None)
            if cancel is not None:
                cancel(self._drained)
        self._blocked.clear()
        self.held = None
