"""Log lines are lines: control characters from the network are escaped (zerolink.logs)."""

from __future__ import annotations

import io
import logging

import pytest

from zerolink.logs import EscapingFormatter, escape_controls, make_handler

FORGED = "2026-01-01 00:00:00,000 WARNING zerolink.link: link ground: up"


@pytest.fixture
def captured():
    """A logger below "zerolink" writing through the command's handler into a buffer."""
    out = io.StringIO()
    handler = make_handler(out)
    logger = logging.getLogger("zerolink.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)
    logger.propagate = True


@pytest.mark.parametrize("sep", ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u2028"])
def test_a_jid_cannot_start_a_log_line(captured, sep: str):
    logger, out = captured
    jid = f"ops@ground.example{sep}{FORGED}"
    logger.info("bounced message from %s to %s: %s", jid, "a@b", "jid-malformed")
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # one line
    for c in text[:-1]:
        assert c.isprintable(), repr(c)
    assert FORGED in text  # still readable, on the same line


def test_escapes_are_readable():
    assert escape_controls("a\nb\rc\td\x1be\x00f\u2028g") == "a\\nb\\rc\\td\\x1be\\x00f\\u2028g"
    assert escape_controls("pilot@air.example ✈ faß") == "pilot@air.example ✈ faß"


def test_tracebacks_keep_their_lines(captured):
    logger, out = captured
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logger.exception("failed for %s", "x\ny")
    first, *rest = out.getvalue().splitlines()
    assert first.endswith("failed for x\\ny")
    assert rest[0] == "Traceback (most recent call last):"


def test_the_format_is_the_commands():
    record = logging.LogRecord("zerolink.link", logging.INFO, __file__, 1, "up %s", ("x",), None)
    line = EscapingFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert line == "INFO zerolink.link: up x"
