"""Socket options for links whose peer may vanish without a FIN (satcom fades, UHF drops)."""

from __future__ import annotations

import logging
import socket

log = logging.getLogger("zerolink.net")


def tune(sock: socket.socket | None, *, user_timeout: float, keepalive_idle: float) -> None:
    """TCP_NODELAY (stanzas are small and latency-bound), TCP keepalive, TCP_USER_TIMEOUT.

    TCP_USER_TIMEOUT bounds how long written data may stay unacknowledged before the kernel
    drops the connection, so a dead link is noticed even while we are sending.
    """
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if keepalive_idle > 0 and hasattr(socket, "TCP_KEEPIDLE"):
            idle = max(1, int(keepalive_idle))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        if user_timeout > 0 and hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(user_timeout * 1000))
    except OSError as exc:  # pragma: no cover - depends on the platform
        log.warning("could not set TCP options: %s", exc)


def format_addr(addr: tuple | None) -> str:
    """'127.0.0.2:5269' or '[::1]:5269' from a socket address tuple."""
    if not addr:
        return "?"
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
