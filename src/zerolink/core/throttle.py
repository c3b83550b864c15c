"""Password guessing made slow: failed logins cost the guesser time, not the server a core.

Failures are counted per source (address, IPv6 by /64) and per account over a sliding window
(`window` seconds). Up to `allowed` failures cost nothing (typos); each one beyond doubles the
delay before the answer to the next failure, from 1 s up to `MAX_DELAY`. The driver holds the
connection (no reading, no writing) for that delay, and the admission budget caps how many
connections one source holds, so one address gets at most ``per_address / delay`` guesses a
second.

Only failures are delayed: a correct password is answered at once, so the owner of an account
under attack from elsewhere still logs in (the issue's acceptance: "a correct login from an
unthrottled address keeps working during an attack on another"). A source that is being
throttled also gets its next attempts delayed before the password is even checked
(`wait_before`), so guessing from it costs no key derivations.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from zerolink.core.admission import source_of

#: Longest delay a failure costs, in seconds.
MAX_DELAY = 60.0
#: Most sources/accounts remembered (oldest forgotten first): bounded memory under a flood
#: of addresses or of invented user names.
MAX_TRACKED = 10000


@dataclass(slots=True)
class LoginThrottle:
    """Failure counts and the delays they cost (see the module docstring)."""

    allowed: int = 5
    window: float = 60.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def failed(self, address: str, account: str | None, now: float) -> float:
        """Record a failure; the seconds to hold its answer."""
        counts = [self._add(f"ip {source_of(address)}", now)]
        if account:
            counts.append(self._add(f"user {account}", now))
        return self._delay(max(counts))

    def wait_before(self, address: str, now: float) -> float:
        """Seconds to hold a new attempt from `address` before checking it (0: none)."""
        times = self._failures.get(f"ip {source_of(address)}")
        if not times:
            return 0.0
        self._expire(times, now)
        return self._delay(len(times))

    def failures(self, address: str, now: float) -> int:
        times = self._failures.get(f"ip {source_of(address)}")
        if not times:
            return 0
        self._expire(times, now)
        return len(times)

    def _delay(self, count: int) -> float:
        over = count - self.allowed
        if over <= 0:
            return 0.0
        return min(MAX_DELAY, 2.0 ** min(over - 1, 16))

    def _add(self, key: str, now: float) -> int:
        times = self._failures.pop(key, None)
        if times is None:
            times = deque()
            while len(self._failures) >= MAX_TRACKED:
                del self._failures[next(iter(self._failures))]
        self._failures[key] = times  # most recent last: the oldest are forgotten first
        self._expire(times, now)
        times.append(now)
        # Beyond what the longest delay needs, older failures change nothing.
        while len(times) > self.allowed + 8:
            times.popleft()
        return len(times)

    def _expire(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()
