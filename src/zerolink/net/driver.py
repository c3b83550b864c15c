"""The asyncio shell around a sans-I/O session: feed bytes in, drain events, flush bytes out,
arm one timer (the shape of aioquic's asyncio protocol).

Writes are coalesced: stanzas sent in one turn of the event loop leave in one `write`, which on
a slow link also means fewer TCP segments and fewer header bytes.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import sys
import termios
from collections.abc import Callable
from typing import Any, Protocol

from zerolink.logs import FLOOD
from zerolink.net.redact import Redactor
from zerolink.net.sockets import format_addr
from zerolink.net.tlslayer import TLSFailed, TLSLayer

log = logging.getLogger("zerolink.net")


class Session(Protocol):
    def receive_data(self, data: bytes, now: float) -> list[Any]: ...
    def data_to_send(self) -> bytes: ...
    def timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> list[Any]: ...
    def close(self, now: float) -> Any: ...


class SessionDriver(asyncio.Protocol):
    """Base protocol: owns the transport, the flush and the timer for one session."""

    session: Session | None = None
    tls: TLSLayer | None = None
    # Elements whose content is a secret (SASL payloads, the component handshake): hidden in
    # the debug log of the bytes read and written (zerolink.net.redact).
    secret_elements: frozenset[bytes] = frozenset()

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.local = "?"
        self.paused = False
        self.closed = asyncio.Event()
        self._flush_pending = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._held: list[bytes] = []
        # Called before bytes of the session are written (`Router.before_output`).
        self.gate: Callable[[], None] | None = None
        self.lost_cleanly = False
        self._redact_in = Redactor(self.secret_elements)
        self._redact_out = Redactor(self.secret_elements)

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = format_addr(transport.get_extra_info("peername"))
        self.local = format_addr(transport.get_extra_info("sockname"))

    def data_received(self, data: bytes) -> None:
        tls = self.tls
        if tls is not None:
            try:
                data, handshake_done = tls.feed(data)
            except TLSFailed as exc:
                self.on_tls_failed(str(exc))
                self._write_raw(tls.output())
                if self.transport is not None:
                    self.transport.abort()
                return
            self._write_raw(tls.output())
            if handshake_done:
                self.on_tls_handshake()
                if self.transport is None or self.transport.is_closing():
                    return
                self.flush()
            if not data:
                return
        if self.session is None:
            # Plaintext before the session exists (the peer is still being identified, e.g.
            # reverse DNS after the TLS handshake): kept, and fed once the session is made.
            self._held.append(data)
            return
        self.feed_session(data)

    def feed_session(self, data: bytes) -> None:
        """Plaintext bytes into the session (also what was held before it existed)."""
        assert self.session is not None
        if self._held:
            data = b"".join([*self._held, data])
            self._held.clear()
        if not data:
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s <<< %r", self.peer, self._redact_in(data))
        events = self.session.receive_data(data, self.loop.time())
        if events:
            self.handle_events(events)
        self.flush()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = None
        self.closed.set()
        self.lost_cleanly = exc is None  # an orderly close (FIN), not a reset or an error
        self.on_lost(str(exc) if exc else "connection closed")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.on_writable()

    # -- for subclasses --------------------------------------------------------------------
    def handle_events(self, events: list[Any]) -> None:
        raise NotImplementedError

    def on_lost(self, reason: str) -> None:
        """The transport is gone."""

    def on_writable(self) -> None:
        """The transport's buffer drained below its low-water mark."""

    # -- output ----------------------------------------------------------------------------
    def schedule_flush(self) -> None:
        """Write what the session has at the end of this loop turn (coalesces bursts)."""
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        if self.session is None:
            return
        data = self.session.data_to_send()
        if data and self.gate is not None:
            self.gate()  # what was accepted before these bytes is durable before they leave
        if data and log.isEnabledFor(logging.DEBUG):
            log.debug("%s >>> %r", self.peer, self._redact_out(data))
        if self.tls is not None:
            self.tls.send(data)
            data = self.tls.output()
        self._write_raw(data)
        self._arm()

    def unflushed(self) -> int:
        """Bytes not yet acknowledged by the other end's TCP (ours, then the kernel's).

        The kernel's part matters: if this process dies while it has unread input, Linux
        answers with a reset and throws away its send queue.
        """
        if self.transport is None:
            return 0
        pending = self.transport.get_write_buffer_size() + int(self._flush_pending)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                pending += int.from_bytes(buf, sys.byteorder, signed=True)
            except OSError:
                pass
        return pending

    def _write_raw(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def start_tls(self, layer: TLSLayer) -> None:
        """From now on every byte goes through `layer` (direct TLS, or after STARTTLS)."""
        self.tls = layer
        if not layer.server_side:
            layer.start()
            self._write_raw(layer.output())

    def on_tls_handshake(self) -> None:
        """The TLS handshake completed: check the peer before any plaintext is read."""

    def on_tls_failed(self, reason: str) -> None:
        log.info("%s: TLS failed: %s", self.peer, reason, extra=FLOOD)

    def close_transport(self) -> None:
        """Flush what is pending, then close (after the kernel has the bytes)."""
        self.flush()
        if self.tls is not None and self.tls.handshake_done:
            self.tls.shutdown()
            self._write_raw(self.tls.output())
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def begin_close(self) -> None:
        """Start the session's close exchange (the session decides what to send)."""
        if self.session is None:
            if self.transport is not None:
                self.transport.abort()
            return
        events = self.session.close(self.loop.time())
        if events:
            self.handle_events(events)
        self.flush()

    # -- timer -----------------------------------------------------------------------------
    def _arm(self) -> None:
        """Keep one timer at the session's earliest deadline; later ones are re-armed lazily."""
        if self.session is None:
            return
        when = self.session.timer()
        if when is None or self.transport is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        events = self.session.handle_timer(self.loop.time())
        if events:
            self.handle_events(events)
        self.flush()
