"""Wiring: one `Server` per config file, with its router, links, components and listeners."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from zerolink.config import Config, warnings_for
from zerolink.core.host import LocalHost
from zerolink.core.router import Router
from zerolink.net.acceptor import Acceptor
from zerolink.net.c2s_conn import ClientListener
from zerolink.net.components import ComponentConnection, ComponentRoute
from zerolink.net.link import PeerLink
from zerolink.net.tls import ensure_certificate, load_secret
from zerolink.net.tlslayer import make_context
from zerolink.net.upstream import UpstreamRoute
from zerolink.net.x2x_conn import X2XConnection
from zerolink.proto.sasl import ScramCredentials
from zerolink.store import (
    AccountStore,
    Database,
    LinkLogStore,
    OfflineStore,
    RosterItem,
    RosterStore,
)
from zerolink.users import as_scram, open_database
from zerolink.xml import deferral

log = logging.getLogger("zerolink")


class Server:
    """A running zerolink daemon."""

    def __init__(self, config: Config) -> None:
        self.config = config
        server = config.server
        self.router = Router(server.domains)
        self.components: dict[str, ComponentRoute] = {}
        self.links: dict[str, PeerLink] = {}
        self._servers: list[asyncio.Server] = []
        self.host: LocalHost | None = None
        self.clients: ClientListener | None = None
        self.db: Database | None = None
        self.upstream: UpstreamRoute | None = None

    async def start(self, *, start_links: bool = True) -> None:
        """Open listeners and, unless told otherwise, start the links' dialers."""
        cfg = self.config
        for warning in warnings_for(cfg):
            log.warning("%s", warning)
        if deferral.STATUS == "deferring":
            log.warning(
                "this Python's expat defers parsing and it cannot be turned off: a stanza may"
                " wait for the next bytes to arrive; use Python >= 3.11.9 or another libexpat"
            )
        cfg.server.data_dir.mkdir(parents=True, exist_ok=True)
        for comp in cfg.components:
            route = ComponentRoute(comp.domain, comp.secret, self.router)
            self.components[comp.domain] = route
            self.router.add([comp.domain], route, local=True)
        linklog = None
        if any(peer.acks for peer in cfg.peers):
            if self.db is None:
                self.db = open_database(cfg)
            linklog = LinkLogStore(self.db)
        for peer in cfg.peers:
            link = PeerLink(peer, cfg.server, self.router, linklog)
            self.links[peer.name] = link
            self.router.add(peer.domains, link, local=False)
        loop = asyncio.get_running_loop()
        if cfg.host is not None:
            self._setup_host()
        if cfg.upstream is not None:
            self.upstream = UpstreamRoute(
                cfg.upstream,
                self.router,
                max_stanza_size=cfg.server.max_stanza_size,
                max_depth=cfg.server.max_depth,
            )
            self.router.add(cfg.upstream.domains, self.upstream, local=True)
        try:
            if self.clients is not None:
                await self._listen_clients()
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
        if self.upstream is not None:
            self.upstream.start()
        if start_links:
            self.start_links()

    def start_links(self) -> None:
        """Start dialing the peers (separate so that a caller can attach components first)."""
        for link in self.links.values():
            link.start()

    def _setup_host(self) -> None:
        """The embedded host: accounts, rosters and offline messages in SQLite."""
        cfg = self.config
        assert cfg.host is not None
        if self.db is None:
            self.db = open_database(cfg)
        self.accounts = accounts = AccountStore(self.db)
        self.host = LocalHost(
            cfg.host.domains,
            self.router,
            accounts,
            RosterStore(self.db),
            OfflineStore(self.db, limit_per_user=cfg.host.offline_limit),
            RosterItem,
            clock=time.time,
            max_sessions_per_user=cfg.host.max_sessions_per_user,
        )
        self.router.add(cfg.host.domains, self.host, local=True)

        def lookup(local: str, domain: str, hash_name: str) -> ScramCredentials | None:
            record = accounts.credentials(local, domain, hash_name)
            return as_scram(record) if record is not None else None

        cert, key = ensure_certificate(
            cfg.server.data_dir, list(cfg.host.domains), cfg.host.certificate, cfg.host.key
        )
        self.clients = ClientListener(
            cfg.host,
            self.host,
            self.router,
            lookup,
            make_context(str(cert), str(key), server_side=True, request_cert=False, groups=None),
            cfg.server.max_stanza_size,
            cfg.server.max_depth,
            sasl_secret=load_secret(cfg.server.data_dir / "sasl-secret"),
        )

    async def _listen_clients(self) -> None:
        assert self.clients is not None
        loop = asyncio.get_running_loop()
        host_cfg = self.clients.cfg
        ep = host_cfg.listen
        srv = await loop.create_server(
            self.clients.factory(direct_tls=False), ep.host, ep.port, reuse_address=True
        )
        self._servers.append(srv)
        log.info(
            "clients: listening on %s (STARTTLS%s)",
            ep,
            " required" if host_cfg.tls_required else "",
        )
        if host_cfg.direct_tls_listen is not None:
            ep = host_cfg.direct_tls_listen
            srv = await loop.create_server(
                self.clients.factory(direct_tls=True),
                ep.host,
                ep.port,
                reuse_address=True,
            )
            self._servers.append(srv)
            log.info("clients: listening on %s (direct TLS, XEP-0368)", ep)

    def _x2x_factory(self, links: Sequence[PeerLink], listen: str) -> Any:
        tls_links = [link for link in links if link.cfg.tls]
        ctx = None
        if tls_links:
            cfg = tls_links[0].cfg
            assert cfg.certificate is not None and cfg.key is not None
            ctx = make_context(str(cfg.certificate), str(cfg.key), server_side=True)
        acceptor = Acceptor(listen, links, ctx)
        return lambda: X2XConnection(acceptor=acceptor)

    async def stop(self) -> None:
        """Stop accepting, close links with the close exchange, then components."""
        for srv in self._servers:
            srv.close()
        await asyncio.gather(*(link.stop() for link in self.links.values()))
        if self.upstream is not None:
            await self.upstream.stop()
        for route in self.components.values():
            if route.conn is not None:
                route.conn.begin_close()
        conns = [r.conn for r in self.components.values() if r.conn is not None]
        if conns:
            await asyncio.wait([asyncio.ensure_future(c.closed.wait()) for c in conns], timeout=2)
            for c in conns:
                if c.transport is not None:
                    c.transport.abort()
        if self.clients is not None:
            for conn in list(self.clients.connections):
                conn.kick("system-shutdown")
        for srv in self._servers:
            await srv.wait_closed()
        self._servers.clear()
        if self.db is not None:
            self.db.close()
            self.db = None
