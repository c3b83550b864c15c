"""A minimal blocking XMPP client over direct TLS (XEP-0368) and SASL PLAIN, for floods.

slixmpp always reads what arrives; the attacks of issue 10 need a client that logs in and then
stops reading (its kernel buffers fill and the daemon's output backs up), and a sender that
writes as fast as the socket takes it. Blocking sockets, meant for threads
(`asyncio.to_thread`) next to a daemon that runs as a separate process.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import ssl
from pathlib import Path

HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
)


class RawClient:
    def __init__(
        self,
        ip: str,
        port: int,
        cafile: Path,
        jid: str,
        password: str,
        *,
        rcvbuf: int | None = None,
        timeout: float = 10.0,
        source: str | None = None,
    ) -> None:
        self.local, _, rest = jid.partition("@")
        self.domain, _, self.resource = rest.partition("/")
        self.password = password
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect: the window the daemon's kernel sees
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.timeout = timeout
        raw.settimeout(timeout)
        if source is not None:  # another loopback address: another "host" for the daemon
            raw.bind((source, 0))
        raw.connect((ip, port))
        ctx = ssl.create_default_context(cafile=str(cafile))
        self.sock = ctx.wrap_socket(raw, server_hostname=self.domain)
        self.buf = bytearray()
        self.jid = ""
        self.consumed: list[bytes] = []  # what read_until returned, in order

    def send(self, data: str | bytes) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def read_until(self, marker: bytes) -> bytes:
        """Read until `marker` has arrived; returns (and consumes) everything up to it."""
        start = 0
        while (i := self.buf.find(marker, start)) < 0:
            start = max(0, len(self.buf) - len(marker))  # search only what is new
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before {marker!r}: {self.buf[-300:]!r}")
            self.buf += chunk
        i += len(marker)
        out = bytes(self.buf[:i])
        del self.buf[:i]
        self.consumed.append(out)
        return out

    def drain(self) -> None:
        """Take in what has arrived, without waiting (a sender reading its bounces)."""
        self.sock.setblocking(False)
        try:
            while chunk := self.sock.recv(65536):
                self.buf += chunk
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        finally:
            self.sock.settimeout(self.timeout)
        if len(self.buf) > 65536:  # recorded, but not searched again by read_until
            self.consumed.append(bytes(self.buf[:-1024]))
            del self.buf[:-1024]

    def read_all(self) -> bytes:
        """Everything until the daemon closes the connection (or resets it)."""
        chunks = [bytes(self.buf)]
        self.buf.clear()
        try:
            while chunk := self.sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass
        return b"".join(chunks)

    def login(self, *, presence: bool = True) -> RawClient:
        """Authenticated, bound, and (by default) available: our own presence came back."""
        self.send(HEADER.format(domain=self.domain))
        self.read_until(b"</stream:features>")
        token = base64.b64encode(f"\0{self.local}\0{self.password}".encode()).decode()
        self.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        )
        reply = self.read_until(b"/>")
        if b"<success" not in reply:
            raise PermissionError(f"login refused: {reply!r}")
        self.send(HEADER.format(domain=self.domain))
        self.read_until(b"</stream:features>")
        res = f"<resource>{self.resource}</resource>" if self.resource else ""
        self.send(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"{res}</bind></iq>"
        )
        got = self.read_until(b"</iq>")
        m = re.search(rb"<jid>([^<]+)</jid>", got)
        if m is None:
            raise PermissionError(f"bind refused: {got!r}")
        self.jid = m.group(1).decode()
        if presence:
            self.send("<presence/>")
            self.read_until(f"from='{self.jid}'".encode())
            self.read_until(b">")
        return self

    def ping(self, ident: str = "ping1") -> None:
        """A round trip to the server (everything sent before it has been processed)."""
        self.send(f"<iq type='get' id='{ident}'><ping xmlns='urn:xmpp:ping'/></iq>")
        self.read_until(f"id='{ident}'".encode())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
