"""The log's format, and why a peer cannot write lines into it.

Log messages carry text from the network: JIDs, a peer's stream error text, attribute values.
XML lets all of them hold control characters (``&#10;`` is a newline once decoded), so a
client could end a log line and forge the next one (``... WARNING zerolink.link: ...``),
fooling whoever reads the log and tools such as fail2ban. `EscapingFormatter` escapes control
characters in every formatted message, whichever logger and argument they come from; a
traceback keeps its lines.
"""

from __future__ import annotations

import logging
import re
from typing import IO

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

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


def make_handler(stream: IO[str]) -> logging.Handler:
    """The handler of the `zerolink` command: `FORMAT`, escaped, to `stream`."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter(FORMAT))
    return handler
