"""The log's format, and why a peer cannot write lines into it.

Log messages carry text from the network: JIDs, a peer's stream error text, attribute values.
XML lets all of them hold control characters (``&#10;`` is a newline once decoded), so a
client could end a log line and forge the next one (``... WARNING zerolink.link: ...``),
fooling whoever reads the log and tools such as fail2ban. `EscapingFormatter` escapes control
characters in every formatted message, whichever logger and argument they come from; a
traceback keeps its lines.

A flood (2,000 rejected connections) must not become 2,000 log lines: `RepeatFilter` lets the
first `RepeatFilter.burst` records of one message template through per minute, then counts the
rest and writes one line "... M more like this in the last minute" when the minute is over.
Only lines that strangers can cause at will are limited — those logged with ``extra=FLOOD``
(refused and rejected connections, failed logins, stalled handshakes); a link going up or down,
a login, a configuration problem are always written.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import IO

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: ``extra`` of a log call whose line anyone can repeat by connecting: rate limited.
FLOOD = {"zerolink_flood": True}

# C0 controls, DEL, C1 controls (NEL among them) and the Unicode line and paragraph
# separators: everything a terminal or a log reader may take as the end of a line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(m: re.Match[str]) -> str:
    c = m.group(0)
    named = _NAMED.get(c)
    if named is not None:
        return named
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def escape_controls(text: str) -> str:
    """`text` with control characters written as ``\\n``, ``\\x1b``, ``\\u2028``, ..."""
    return _CONTROL.sub(_escape_one, text) if _CONTROL.search(text) else text


class EscapingFormatter(logging.Formatter):
    """A `logging.Formatter` whose messages are always one line (see the module docstring)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


class RepeatFilter(logging.Filter):
    """Rate limit per message template (see the module docstring).

    Records are told apart by logger, level and unformatted message, so "refused client %s"
    is one kind however many addresses it names. Summaries are written when a later record
    passes the handler or `flush` is called (the daemon calls it every minute).
    """

    def __init__(
        self,
        handler: logging.Handler,
        burst: int = 5,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._handler = handler
        self.burst = burst
        self.window = window
        self._clock = clock
        # key -> [window start, passed, suppressed, a record of the kind]
        self._seen: dict[tuple[str, int, str], list] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "zerolink_summary", False) or not getattr(
            record, "zerolink_flood", False
        ):
            return True
        now = self._clock()
        self.flush(now)
        key = (record.name, record.levelno, str(record.msg))
        seen = self._seen.get(key)
        if seen is None:
            if len(self._seen) >= 1000:
                self.flush(now, everything=True)
            self._seen[key] = [now, 1, 0, record]
            return True
        if seen[1] < self.burst:
            seen[1] += 1
            return True
        seen[2] += 1
        return False

    def flush(self, now: float | None = None, *, everything: bool = False) -> None:
        """Write the summaries of the windows that are over (all of them with `everything`)."""
        if now is None:
            now = self._clock()
        for key, (start, _passed, suppressed, record) in list(self._seen.items()):
            if not everything and now - start < self.window:
                continue
            del self._seen[key]
            if suppressed:
                summary = logging.LogRecord(
                    record.name,
                    record.levelno,
                    record.pathname,
                    record.lineno,
                    "... %d more like %r in the last %d s",
                    (suppressed, str(record.msg), round(now - start)),
                    None,
                )
                summary.zerolink_summary = True
                self._handler.handle(summary)


def make_handler(stream: IO[str], *, rate_limit: bool = True) -> logging.Handler:
    """The handler of the `zerolink` command: `FORMAT`, escaped, rate limited, to `stream`."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter(FORMAT))
    if rate_limit:
        handler.addFilter(RepeatFilter(handler))
    return handler


def flush_repeats(*, everything: bool = False) -> None:
    """Write the pending summaries of every `RepeatFilter` on the root logger's handlers."""
    for handler in logging.getLogger().handlers:
        for f in handler.filters:
            if isinstance(f, RepeatFilter):
                f.flush(everything=everything)
