"""Listening sockets with an accept loop of our own, for when descriptors run out.

asyncio's own accept loop, on EMFILE, reports the failure, stops reading the socket and
schedules a retry a second later — and then goes on trying the rest of its batch, each attempt
reporting again and scheduling another retry (measured: 58,766 reports in 37 s with 200 waiting
connections and 64 descriptors; the issue saw 136,636 log lines in 15 s). Here a failed accept
for lack of descriptors or memory stops the batch, pauses this listener for `PAUSE` seconds
and writes one line (rate limited, zerolink.logs); connections wait in the kernel's backlog
meanwhile. Everything else about a connection is asyncio's (`connect_accepted_socket`).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Callable

from zerolink.logs import FLOOD

log = logging.getLogger("zerolink")

PAUSE = 1.0  # seconds without accepting after running out of descriptors
BACKLOG = 128
BATCH = 64  # connections accepted per readiness event, so other work gets its turn
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

Factory = Callable[[], asyncio.Protocol]


class Listener:
    """The sockets of one listen endpoint (one per address `host` resolves to)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, factory: Factory, socks: list[socket.socket]
    ) -> None:
        self._loop = loop
        self._factory = factory
        self.sockets = socks
        self._paused: set[socket.socket] = set()
        self._closed = False
        self._pending: set[asyncio.Task[None]] = set()
        for sock in socks:
            loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(BATCH):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._pause(sock, exc)
                else:
                    log.warning("accept failed on %s: %s", _name(sock), exc, extra=FLOOD)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError:
            conn.close()

    def _pause(self, sock: socket.socket, exc: OSError) -> None:
        log.warning(
            "cannot accept connections on %s: %s (out of file descriptors or memory); "
            "accepting paused for %g s",
            _name(sock),
            exc.strerror or exc,
            PAUSE,
            extra=FLOOD,
        )
        self._loop.remove_reader(sock.fileno())
        self._paused.add(sock)
        self._loop.call_later(PAUSE, self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        self._paused.discard(sock)
        if not self._closed:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            if sock not in self._paused:
                self._loop.remove_reader(sock.fileno())
            sock.close()

    async def wait_closed(self) -> None:
        """Connections being set up when the listener closed have been handed over."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def _name(sock: socket.socket) -> str:
    try:
        host, port = sock.getsockname()[:2]
    except OSError:
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def listen(factory: Factory, host: str, port: int) -> Listener:
    """Listen on `host`:`port` (every address it resolves to), as `loop.create_server` does."""
    loop = asyncio.get_running_loop()
    flags = socket.AI_PASSIVE
    try:
        ipaddress.ip_address(host)
    except ValueError:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)
    else:
        # An address literal: resolved at once rather than in the executor's thread, after
        # one turn of the loop, as `create_server` does (startup order stays what it was:
        # what was started before gets to run its first step).
        flags |= socket.AI_NUMERICHOST
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)
        await asyncio.sleep(0)
    socks: list[socket.socket] = []
    seen: set[tuple[object, ...]] = set()
    try:
        for family, type_, proto, _canon, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, type_, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return Listener(loop, factory, socks)
