"""Reconnect backoff with jitter, shared by peer links and upstream attachments.

One rule for both: a failed attempt waits the current delay (jittered down to half of it) and
doubles the delay up to the maximum; a connection that ends after it was of use resets the
delay to the minimum, one that was not (refused after connect, dropped without a byte) doubles
it first. The jitter keeps two daemons restarted together from redialing in lockstep.
"""

from __future__ import annotations

from collections.abc import Callable

#: A random source: ``uniform(a, b)`` (``random.uniform`` in the daemon, fixed in tests).
Uniform = Callable[[float, float], float]


class Backoff:
    """The delay before the next attempt to connect (see the module docstring)."""

    __slots__ = ("delay", "maximum", "minimum", "uniform")

    def __init__(self, minimum: float, maximum: float, uniform: Uniform) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.uniform = uniform
        self.delay = minimum

    def _jitter(self, delay: float) -> float:
        return min(delay, self.maximum) * self.uniform(0.5, 1.0)

    def failed(self) -> float:
        """An attempt failed: seconds to wait before the next; the delay doubles."""
        wait = self._jitter(self.delay)
        self.delay = min(self.delay * 2, self.maximum)
        return wait

    def ended(self, useful: bool) -> float:
        """A connection ended: seconds to wait before the next attempt.

        `useful`: it carried something (reconnect quickly, as after a restart of the other
        side); otherwise the other side refuses us and the delay doubles before the wait.
        """
        self.delay = self.minimum if useful else min(self.delay * 2, self.maximum)
        return self._jitter(self.delay)
