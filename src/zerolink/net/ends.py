"""What an X2X connection needs of the link it serves and of the listener that took it.

Narrow protocols, so that `zerolink.net.x2x_conn` and `zerolink.net.acceptor` do not import
`zerolink.net.link` (which creates connections) only to name its class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from OpenSSL import SSL

    from zerolink.config import PeerConfig
    from zerolink.core.carrier import Carrier
    from zerolink.core.router import Route
    from zerolink.errors import StanzaError
    from zerolink.net.tlslayer import TLSLayer
    from zerolink.proto.x2x import X2XSettings
    from zerolink.xml.element import Element


class Peer(Protocol):
    """A configured peer, as identity checks see it."""

    @property
    def name(self) -> str: ...

    @property
    def cfg(self) -> PeerConfig: ...


class LinkEnd(Peer, Protocol):
    """The link a connection carries stanzas for (`zerolink.net.link.PeerLink`)."""

    @property
    def settings(self) -> X2XSettings: ...

    @property
    def before_output(self) -> Callable[[], None] | None:
        """To call before a connection writes (commits what must be durable first)."""
        ...

    def client_tls(self) -> TLSLayer: ...

    def remember_tls_session(self, layer: TLSLayer) -> None: ...

    def dial_failed(self, reason: str) -> None: ...

    def attach(self, conn: Carrier) -> None: ...

    def detach(self, conn: Carrier, reason: str) -> None: ...

    def received(self, stanza: Element, conn: Carrier) -> Route | None: ...

    def rejected(self, stanza: Element, error: StanzaError, conn: Carrier) -> None: ...

    def on_sync(self, conn: Carrier, h: int, next_seq: int, peer_max: int | None) -> None: ...

    def on_ack(self, h: int) -> None: ...

    def ack_requested(self, conn: Carrier) -> None: ...

    def pump(self) -> None: ...


class Listener(Protocol):
    """The listen endpoint an inbound connection arrived on (`zerolink.net.acceptor`)."""

    @property
    def listen(self) -> str: ...

    @property
    def tls(self) -> SSL.Context | None: ...

    def by_address(self, addr: tuple[Any, ...]) -> LinkEnd | None: ...

    def by_certificate(
        self, addr: tuple[Any, ...], chain: list[bytes]
    ) -> tuple[LinkEnd | None, list[str]]: ...
