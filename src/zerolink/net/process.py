"""What the daemon sets up for itself once: file descriptors, and what asyncio reports.

Every connection is a file descriptor. The soft RLIMIT_NOFILE is often 1024 while the hard
limit is far higher: at start the soft limit is raised to the hard one, so that a flood of
stalled handshakes meets the pre-authentication budgets long before the descriptor limit.
If descriptors run out anyway, asyncio stops accepting on that listener for a second and
reports it; the report becomes one log line (rate limited like any other, zerolink.logs)
instead of a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from zerolink.logs import FLOOD

log = logging.getLogger("zerolink")

_ACCEPT_FAILED = "socket.accept() out of system resource"


def raise_fd_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit; (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
            return soft, soft
    return soft, max(soft, target)


def exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's reports, with the known resource exhaustion as one line and no traceback."""
    if context.get("message") == _ACCEPT_FAILED:
        exc = context.get("exception")
        log.warning(
            "cannot accept connections: %s (out of file descriptors or memory); "
            "accepting paused for 1 s",
            getattr(exc, "strerror", None) or exc,
            extra=FLOOD,
        )
        return
    loop.default_exception_handler(context)


def install(loop: asyncio.AbstractEventLoop) -> None:
    loop.set_exception_handler(exception_handler)
