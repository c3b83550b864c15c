"""Wiring: one `Server` per config file, with its router, links, components and listeners."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

from zerolink.config import Config, PeerConfig, warnings_for
from zerolink.core.router import Router
from zerolink.net.components import ComponentConnection, ComponentRoute
from zerolink.net.link import PeerLink
from zerolink.net.x2x_conn import X2XConnection

log = logging.getLogger("zerolink")


def identity_matches(cfg: PeerConfig, addr: tuple[Any, ...]) -> bool:
    """XEP-0361 §4.2: does a connection from `addr` belong to this peer?"""
    ident = cfg.identity
    if ident.mode == "implicit":
        return True
    if ident.mode != "address":
        return False
    try:
        ip = ipaddress.ip_address(addr[0].split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ident.port is not None and addr[1] != ident.port:
        return False
    return any(ip in net for net in ident.addresses)


class Server:
    """A running zerolink daemon."""

    def __init__(self, config: Config) -> None:
        self.config = config
        server = config.server
        self.router = Router(server.domains)
        self.components: dict[str, ComponentRoute] = {}
        self.links: dict[str, PeerLink] = {}
        self._servers: list[asyncio.Server] = []

    async def start(self, *, start_links: bool = True) -> None:
        """Open listeners and, unless told otherwise, start the links' dialers."""
        cfg = self.config
        for warning in warnings_for(cfg):
            log.warning("%s", warning)
        cfg.server.data_dir.mkdir(parents=True, exist_ok=True)
        for comp in cfg.components:
            route = ComponentRoute(comp.domain, comp.secret, self.router)
            self.components[comp.domain] = route
            self.router.add([comp.domain], route, local=True)
        for peer in cfg.peers:
            link = PeerLink(peer, cfg.server, self.router)
            self.links[peer.name] = link
            self.router.add(peer.domains, link, local=False)
        loop = asyncio.get_running_loop()
        try:
            if cfg.component_listener is not None and self.components:
                ep = cfg.component_listener.listen
                srv = await loop.create_server(
                    lambda: ComponentConnection(
                        self.components,
                        self.router,
                        cfg.server.max_stanza_size,
                        cfg.server.max_depth,
                    ),
                    ep.host,
                    ep.port,
                    reuse_address=True,
                )
                self._servers.append(srv)
                log.info("components: listening on %s", ep)
            by_endpoint: dict[tuple[str, int], list[PeerLink]] = {}
            for link in self.links.values():
                if link.cfg.direction != "outbound" and link.cfg.listen is not None:
                    key = (link.cfg.listen.host, link.cfg.listen.port)
                    by_endpoint.setdefault(key, []).append(link)
            for (host, port), links in by_endpoint.items():
                srv = await loop.create_server(
                    self._x2x_factory(links, f"{host}:{port}"), host, port, reuse_address=True
                )
                self._servers.append(srv)
                log.info(
                    "x2x: listening on %s:%s for %s",
                    host,
                    port,
                    ", ".join(link.name for link in links),
                )
        except OSError:
            await self.stop()
            raise
        log.info("%s: serving %s", cfg.server.name, ", ".join(cfg.server.domains))
        if start_links:
            self.start_links()

    def start_links(self) -> None:
        """Start dialing the peers (separate so that a caller can attach components first)."""
        for link in self.links.values():
            link.start()

    def _x2x_factory(self, links: Sequence[PeerLink], listen: str) -> Any:
        def identify(addr: tuple[Any, ...]) -> PeerLink | None:
            for link in links:
                if identity_matches(link.cfg, addr):
                    return link
            return None

        return lambda: X2XConnection(identify=identify, listen=listen)

    async def stop(self) -> None:
        """Stop accepting, close links with the close exchange, then components."""
        for srv in self._servers:
            srv.close()
        await asyncio.gather(*(link.stop() for link in self.links.values()))
        for route in self.components.values():
            if route.conn is not None:
                route.conn.begin_close()
        conns = [r.conn for r in self.components.values() if r.conn is not None]
        if conns:
            await asyncio.wait([asyncio.ensure_future(c.closed.wait()) for c in conns], timeout=2)
            for c in conns:
                if c.transport is not None:
                    c.transport.abort()
        for srv in self._servers:
            await srv.wait_closed()
        self._servers.clear()
