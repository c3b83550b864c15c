"""Socket options for links whose peer may vanish without a FIN (satcom fades, UHF drops)."""

from __future__ import annotations

import logging
import socket
import struct

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


_TCPI_RTT = 68  # offset of tcpi_rtt (microseconds, u32) in Linux's struct tcp_info


def tcp_rtt(sock: socket.socket | None) -> float | None:
    """The kernel's smoothed round-trip time of a TCP socket in seconds (Linux), or None."""
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return None
    if len(info) < _TCPI_RTT + 4:
        return None
    return struct.unpack_from("I", info, _TCPI_RTT)[0] / 1e6


def format_addr(addr: tuple | None) -> str:
    """'127.0.0.2:5269' or '[::1]:5269' from a socket address tuple."""
    if not addr:
        return "?"
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
