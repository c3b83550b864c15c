"""TLS over memory buffers (pyOpenSSL), driven by the connection driver like any session.

Why not asyncio's own TLS: a zero-handshake link wants two things it cannot give. A reconnect
must resume the previous TLS session (no certificates on the wire a second time), which needs a
saved session handed to the new connection; and the peer's identity is checked by zerolink
itself (CA chain of *that* peer, its domain names, or pinned keys) with a clear reason in the
log, which needs a certificate request that does not let OpenSSL reject a self-signed pinned
certificate on its own. With memory BIOs both fit the sans-I/O shape: bytes in, bytes out.
"""

from __future__ import annotations

import contextlib
import ipaddress

from OpenSSL import SSL
from OpenSSL._util import lib as _lib

from zerolink.idn import IDNError, domain_to_ascii

# TLS 1.2 minimum, 1.3 preferred (XEP-0361 §4.6 leaves the version to the a-priori agreement).
_MIN_VERSION = SSL.TLS1_2_VERSION


class TLSFailed(Exception):
    """The TLS layer cannot go on; `str()` says why, for the log."""


def _accept_any(conn: SSL.Connection, cert: object, errno: int, depth: int, ok: int) -> bool:
    """Let every chain through the handshake: the link checks identity itself afterwards."""
    return True


# Key exchange groups for X2X links. OpenSSL's default now starts with the post-quantum hybrid
# X25519MLKEM768, whose key shares add about 1.2 KB to the ClientHello and 1.1 KB to the
# ServerHello: some 8 seconds at 2400 bit/s on every full handshake. Classical groups keep a
# link's handshake near 1 KB each way; see docs/security.md for the trade-off.
LINK_GROUPS = b"X25519:P-256"


def make_context(
    cert: str,
    key: str,
    *,
    server_side: bool,
    request_cert: bool = True,
    groups: bytes | None = LINK_GROUPS,
) -> SSL.Context:
    """A context that presents our certificate and (for links) always asks for the peer's.

    Client connections of the embedded host do not get a certificate request
    (`request_cert=False`): users authenticate with SASL. `groups=None` keeps OpenSSL's
    default key exchange groups.
    """
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(_MIN_VERSION)
    if groups is not None and not _lib.SSL_CTX_set1_curves_list(ctx._context, groups):
        raise ValueError(f"OpenSSL does not support the key exchange groups {groups!r}")
    ctx.use_certificate_chain_file(cert)
    ctx.use_privatekey_file(key)
    ctx.check_privatekey()
    if request_cert or not server_side:
        ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
    if server_side:
        ctx.set_session_id(b"zerolink-x2x")
        # Stateful TLS 1.3 tickets: the ticket is a short id into the server's session cache
        # instead of the whole session (with the client's certificate) encrypted, so a
        # resuming ClientHello stays small. The cost: resumption does not survive a restart.
        ctx.set_options(SSL.OP_NO_TICKET)
    else:
        # Keep sessions so that a reconnect can resume (TLS 1.3 tickets or 1.2 session ids).
        ctx.set_session_cache_mode(SSL.SESS_CACHE_CLIENT)
    return ctx


class TLSLayer:
    """One TLS connection over memory buffers."""

    def __init__(
        self,
        ctx: SSL.Context,
        *,
        server_side: bool,
        session: SSL.Session | None = None,
        server_name: str | None = None,
    ) -> None:
        self.server_side = server_side
        self.conn = SSL.Connection(ctx, None)
        if server_side:
            self.conn.set_accept_state()
        else:
            self.conn.set_connect_state()
            if session is not None:
                self.conn.set_session(session)
            sni = _sni(server_name) if server_name else None
            if sni:
                self.conn.set_tlsext_host_name(sni)
        self.handshake_done = False
        self.closed = False
        self.raw_in = 0
        self.raw_out = 0
        self._plain_out: list[bytes] = []

    # -- handshake -------------------------------------------------------------------------
    def start(self) -> None:
        """Client side: produce the ClientHello."""
        self._handshake()

    def _handshake(self) -> bool:
        if self.handshake_done:
            return False
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            return False
        except SSL.Error as exc:
            raise TLSFailed(_describe(exc)) from None
        self.handshake_done = True
        return True

    @property
    def session_reused(self) -> bool:
        return bool(_lib.SSL_session_reused(self.conn._ssl))

    def session(self) -> SSL.Session | None:
        try:
            return self.conn.get_session()
        except SSL.Error:
            return None

    def peer_certificates(self) -> list[bytes]:
        """DER of the peer's leaf certificate, then any intermediates it sent."""
        from cryptography.hazmat.primitives.serialization import Encoding

        leaf = self.conn.get_peer_certificate(as_cryptography=True)
        if leaf is None:
            return []
        out = [leaf.public_bytes(Encoding.DER)]
        chain = self.conn.get_peer_cert_chain(as_cryptography=True) or []
        for c in chain:
            der = c.public_bytes(Encoding.DER)
            if der not in out:
                out.append(der)
        return out

    # -- data ------------------------------------------------------------------------------
    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Encrypted bytes in; (plaintext, handshake completed by this call) out."""
        self.raw_in += len(data)
        self.conn.bio_write(data)
        just_done = self._handshake()
        chunks: list[bytes] = []
        if self.handshake_done:
            if just_done:
                self._write_pending()
            while True:
                try:
                    chunk = self.conn.recv(65536)
                except SSL.WantReadError:
                    break
                except SSL.ZeroReturnError:
                    self.closed = True
                    break
                except SSL.Error as exc:
                    raise TLSFailed(_describe(exc)) from None
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks), just_done

    def send(self, data: bytes) -> None:
        """Plaintext to encrypt; held until the handshake is done."""
        if not data:
            return
        self._plain_out.append(data)
        if self.handshake_done:
            self._write_pending()

    def _write_pending(self) -> None:
        data = b"".join(self._plain_out)
        self._plain_out.clear()
        view = memoryview(data)
        while view:
            n = self.conn.send(view[:16384])
            view = view[n:]

    def output(self) -> bytes:
        """Encrypted bytes to put on the wire."""
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self.conn.bio_read(65536)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        self.raw_out += len(data)
        return data

    def shutdown(self) -> None:
        """Queue a close_notify."""
        with contextlib.suppress(SSL.Error):
            self.conn.shutdown()


def _sni(name: str) -> bytes | None:
    """The SNI for a peer domain: its IDNA2008 A-label form, as its certificate names it.

    None for an IP literal (RFC 6066 §3 allows host names only) or a name that is none.
    """
    try:
        ipaddress.ip_address(name.strip("[]"))
        return None
    except ValueError:
        pass
    try:
        return domain_to_ascii(name).encode("ascii")
    except IDNError:
        return None


def _describe(exc: SSL.Error) -> str:
    """OpenSSL's error list as one readable line, with the usual causes spelled out."""
    parts = []
    for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(item, tuple) and len(item) >= 3:
            parts.append(str(item[2]))
    text = "; ".join(parts) or str(exc) or exc.__class__.__name__
    low = text.lower()
    if "wrong version number" in low or "http request" in low or "unknown protocol" in low:
        return f"not TLS: the peer sent plaintext to a TLS port ({text})"
    if "peer did not return a certificate" in low:
        return "no certificate: the peer presented no client certificate"
    return text
