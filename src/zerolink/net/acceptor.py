"""One X2X listener shared by several peers: which peer is this connection? (XEP-0361 §4.2)

On a plain listener the source address decides, before a byte is read. On a TLS listener the
certificate presented in the handshake decides for ``tls`` peers, the address for the others;
either way before a byte of XML is parsed.

Strangers are bounded before that (zerolink.core.admission): a connection from an address no
peer of this listener can have is closed before its TLS handshake; the others are counted
against the listener's pre-identification budget (`server.max_unauthenticated`, per address
`server.max_unauthenticated_per_address`) and given `server.handshake_timeout` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL

from zerolink.core.admission import Admission
from zerolink.net.identity import address_matches, check_certificate

if TYPE_CHECKING:
    from zerolink.net.ends import LinkEnd as PeerLink


class Acceptor:
    """The peers that may connect on one listen endpoint."""

    def __init__(
        self,
        listen: str,
        links: Sequence[PeerLink],
        tls: SSL.Context | None,
        *,
        max_unauthenticated: int = 64,
        max_unauthenticated_per_address: int = 4,
        handshake_timeout: float = 30.0,
    ) -> None:
        self.listen = listen
        self.links = list(links)
        self.tls = tls
        self.admission: Admission[Any] = Admission(
            max_unauthenticated, max_unauthenticated_per_address
        )
        self.handshake_timeout = handshake_timeout

    def could_be_peer(self, addr: tuple[Any, ...]) -> bool:
        """Whether a connection from `addr` may turn out to be a peer: tls peers are told by
        their certificate (any address), the others by their address."""
        return any(
            link.cfg.identity.mode == "tls" or address_matches(link.cfg.identity, addr)
            for link in self.links
        )

    def by_address(self, addr: tuple[Any, ...]) -> PeerLink | None:
        for link in self.links:
            if link.cfg.identity.mode != "tls" and address_matches(link.cfg.identity, addr):
                return link
        return None

    def by_certificate(
        self, addr: tuple[Any, ...], chain: list[bytes]
    ) -> tuple[PeerLink | None, list[str]]:
        """The peer whose identity the certificate (or, for non-tls peers, address) proves."""
        reasons: list[str] = []
        for link in self.links:
            if link.cfg.identity.mode == "tls":
                reason = check_certificate(link.cfg, chain, server=False)
                if reason is None:
                    return link, []
                reasons.append(f"not {link.name}: {reason}")
        link = self.by_address(addr)
        return link, ([] if link is not None else reasons)
