"""What the daemon sets up for itself once: its file descriptor limit.

Every connection is a file descriptor. The soft RLIMIT_NOFILE is often 1024 while the hard
limit is far higher: at start the soft limit is raised to the hard one, so that a flood of
stalled handshakes meets the pre-authentication budgets long before the descriptor limit.
If descriptors run out anyway, the listener pauses (zerolink.net.listener).
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("zerolink")


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
