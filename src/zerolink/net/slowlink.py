"""A user-space emulation of a slow, high-latency link: a TCP relay with delay and bit rate.

The kernel here has no netem, and the demo must run without root, so the emulation is a relay:
it accepts on one address, connects to the target (binding the source address that the
target's identity check expects), and forwards each direction after a one-way delay of
rtt/2, paced at `rate` bits per second. It models the link, not TCP over it: the relay's own
sockets are on loopback, so the TCP handshake to the relay is instant, and the first stanza
pays one one-way delay instead of the 1.5 round trips a real link costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

log = logging.getLogger("zerolink.slowlink")


@dataclass
class LinkStats:
    bytes_up: int = 0
    bytes_down: int = 0
    connections: int = 0
    chunks: list[tuple[float, str, int]] = field(default_factory=list)  # (time, direction, n)


class SlowLink:
    """Relay `listen` -> `target` with `rtt` seconds round trip and `rate` bit/s each way."""

    def __init__(
        self,
        listen: tuple[str, int],
        target: tuple[str, int],
        *,
        rtt: float,
        rate: float | None,
        source: str | None = None,
    ) -> None:
        self.listen = listen
        self.target = target
        self.delay = rtt / 2
        self.rate = rate
        self.source = source
        self.stats = LinkStats()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self.listen, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            t_reader, t_writer = await asyncio.open_connection(
                *self.target, local_addr=(self.source, 0) if self.source else None
            )
        except OSError as exc:
            log.info("slow link: cannot reach %s:%s: %s", *self.target, exc)
            writer.close()
            return
        self.stats.connections += 1
        for src, dst, name in ((reader, t_writer, "up"), (t_reader, writer, "down")):
            task = asyncio.create_task(self._pipe(src, dst, name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, name: str) -> None:
        """Forward one direction: each chunk leaves when the line is free, arrives `delay` later."""
        loop = asyncio.get_running_loop()
        line_free = loop.time()
        in_flight: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                at, data = await in_flight.get()
                if not data:
                    break
                await asyncio.sleep(max(0.0, at - loop.time()))
                dst.write(data)
                await dst.drain()
            await asyncio.sleep(max(0.0, at - loop.time()))
            with contextlib.suppress(OSError):
                dst.close()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                data = await src.read(512)
                now = loop.time()
                if not data:
                    in_flight.put_nowait((now + self.delay, b""))
                    break
                start = max(now, line_free)
                line_free = start + (len(data) * 8 / self.rate if self.rate else 0.0)
                in_flight.put_nowait((line_free + self.delay, data))
                if name == "up":
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                self.stats.chunks.append((now, name, len(data)))
            await sender
        except OSError:
            pass  # either end reset: the relay just ends, as the real link would
        finally:
            if not sender.done():
                sender.cancel()
            with contextlib.suppress(OSError):
                dst.close()
