"""Free TCP ports for the daemons a test starts, never the same one twice in a test run.

The kernel picks a port for bind(0) at random, so two picks in a row can return the same
port: a config with x2x, component and client listeners on one address would then clash
(`zerolink` rightly refuses it), and a test would fail one run in a few hundred.
"""

from __future__ import annotations

import socket

_handed_out: set[tuple[str, int]] = set()


def free_port(host: str) -> int:
    """A TCP port free on `host` right now, not handed out before by this process."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if (host, port) not in _handed_out:
            _handed_out.add((host, port))
            return port
    raise RuntimeError(f"no new free port on {host} after 1000 tries")
