"""Wiring: one `Server` per config file, with its router, links, components and listeners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from zerolink.config import Config, warnings_for
from zerolink.core.admission import Admission
from zerolink.core.host import LocalHost
from zerolink.core.roster import RosterLimits
from zerolink.core.router import Router
from zerolink.net.acceptor import Acceptor
from zerolink.net.c2s_conn import ClientListener
from zerolink.net.commit import GroupCommit
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
    StoreError,
)
from zerolink.users import as_scram, open_database
from zerolink.xml import deferral

log = logging.getLogger("zerolink")

# How often the daemon looks whether another process (`zerolink user delete`) changed the
# database, in seconds: one `PRAGMA data_version` read, no query unless something changed.
ACCOUNT_POLL = 1.0


class StartupError(Exception):
    """The configuration is valid but the machine does not let it run: an unusable data
    folder, a certificate or key that cannot be read. The message starts with the key path."""


def _read(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StartupError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None


def _tls_context(cert: Path, key: Path, where: str, **kw: Any) -> SSL.Context:
    """`make_context`, with each file checked first so that the error names the bad one."""
    try:
        x509.load_pem_x509_certificates(_read(cert, f"{where}.certificate"))
    except ValueError:
        raise StartupError(f"{where}.certificate: {cert} is not a PEM certificate") from None
    try:
        serialization.load_pem_private_key(_read(key, f"{where}.key"), password=None)
    except (ValueError, TypeError):
        raise StartupError(f"{where}.key: {key} is not an unencrypted PEM private key") from None
    try:
        return make_context(str(cert), str(key), **kw)
    except SSL.Error as exc:
        raise StartupError(
            f"{where}.key: {key} does not go with the certificate {cert} ({exc})"
        ) from None


def check_files(cfg: Config) -> None:
    """Every certificate, key and CA file the configuration names can be read and used,
    checked before anything starts (a link's own context is only made when it first dials)."""
    server = cfg.server
    if cfg.host is not None and cfg.host.certificate is not None and cfg.host.key is not None:
        _tls_context(cfg.host.certificate, cfg.host.key, "host", server_side=True)
    for i, peer in enumerate(cfg.peers):
        if peer.tls and peer.certificate is not None and peer.key is not None:
            own = (peer.certificate, peer.key) != (server.certificate, server.key)
            _tls_context(
                peer.certificate, peer.key, f"peer[{i}]" if own else "server", server_side=False
            )
        ca = peer.identity.ca
        if ca is not None:
            try:
                x509.load_pem_x509_certificates(_read(ca, f"peer[{i}].identity.ca"))
            except ValueError:
                raise StartupError(
                    f"peer[{i}].identity.ca: {ca} holds no PEM certificate"
                ) from None


def _data_dir_error(path: Path, exc: OSError, what: str) -> StartupError:
    return StartupError(f"server.data_dir: cannot {what} {path}: {exc.strerror or exc}")


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
        self.commits: GroupCommit | None = None  # group commits of the link logs (acks)
        self._watcher: asyncio.Task[None] | None = None

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
        try:
            await self._start(cfg)
        except BaseException:
            await self.stop(quiet=True)
            raise
        log.info("%s: serving %s", cfg.server.name, ", ".join(cfg.server.domains))
        if self.upstream is not None:
            self.upstream.start()
        if self.host is not None and self.db is not None:
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch_accounts(self.db), name="watch-accounts"
            )
        if start_links:
            self.start_links()

    async def _start(self, cfg: Config) -> None:
        check_files(cfg)
        data_dir = cfg.server.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _data_dir_error(data_dir, exc, "create") from None
        if not data_dir.is_dir():
            raise StartupError(f"server.data_dir: {data_dir} is not a folder")
        for comp in cfg.components:
            route = ComponentRoute(
                comp.domain, comp.secret, self.router, max_send_buffer=comp.max_send_buffer
            )
            self.components[comp.domain] = route
            self.router.add([comp.domain], route, local=True)
        linklog = None
        if any(peer.acks for peer in cfg.peers):
            linklog = LinkLogStore(self._database())
            self.commits = GroupCommit(linklog)
            self.router.before_output = self.commits.before_output
        for peer in cfg.peers:
            link = PeerLink(peer, cfg.server, self.router, linklog, self.commits)
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
        if self.clients is not None:
            await self._listen_clients()
        if cfg.component_listener is not None and self.components:
            lcfg = cfg.component_listener
            ep = lcfg.listen
            admission: Admission[ComponentConnection] = Admission(
                lcfg.max_unauthenticated, lcfg.max_unauthenticated_per_address
            )
            srv = await loop.create_server(
                lambda: ComponentConnection(
                    self.components,
                    self.router,
                    cfg.server.max_stanza_size,
                    cfg.server.max_depth,
                    admission,
                    lcfg.handshake_timeout,
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

    def start_links(self) -> None:
        """Start dialing the peers (separate so that a caller can attach components first)."""
        for link in self.links.values():
            link.start()

    def _setup_host(self) -> None:
        """The embedded host: accounts, rosters and offline messages in SQLite."""
        cfg = self.config
        assert cfg.host is not None
        db = self._database()
        self.accounts = accounts = AccountStore(db)
        self.host = LocalHost(
            cfg.host.domains,
            self.router,
            accounts,
            RosterStore(db),
            OfflineStore(
                db, limit_per_user=cfg.host.offline_limit, bytes_per_user=cfg.host.offline_bytes
            ),
            RosterItem,
            clock=time.time,
            max_sessions_per_user=cfg.host.max_sessions_per_user,
            roster_limits=RosterLimits(
                max_items=cfg.host.roster_max_items,
                max_groups=cfg.host.roster_max_groups,
                max_name_chars=cfg.host.roster_max_name_chars,
                max_group_chars=cfg.host.roster_max_group_chars,
            ),
            # A batch of offline messages takes at most a quarter of a client's output budget.
            offline_batch_bytes=cfg.host.max_send_buffer // 4,
        )
        self.router.add(cfg.host.domains, self.host, local=True)

        def lookup(local: str, domain: str, hash_name: str) -> ScramCredentials | None:
            record = accounts.credentials(local, domain, hash_name)
            return as_scram(record) if record is not None else None

        data_dir = cfg.server.data_dir
        try:
            cert, key = ensure_certificate(
                data_dir, list(cfg.host.domains), cfg.host.certificate, cfg.host.key
            )
        except OSError as exc:
            raise _data_dir_error(
                data_dir / "tls", exc, "write a self-signed certificate in"
            ) from None
        ctx = _tls_context(cert, key, "host", server_side=True, request_cert=False, groups=None)
        try:
            secret = load_secret(data_dir / "sasl-secret")
        except OSError as exc:
            raise _data_dir_error(data_dir / "sasl-secret", exc, "read or write") from None
        self.clients = ClientListener(
            cfg.host,
            self.host,
            self.router,
            lookup,
            ctx,
            cfg.server.max_stanza_size,
            cfg.server.max_depth,
            sasl_secret=secret,
        )

    def _database(self) -> Database:
        """The database in the data folder, opened once; StartupError if it cannot be."""
        if self.db is None:
            try:
                self.db = open_database(self.config)
            except StoreError as exc:
                raise StartupError(f"server.data_dir: {exc}") from None
        return self.db

    async def _watch_accounts(self, db: Database) -> None:
        """End the sessions of accounts deleted by another process (`zerolink user delete`).

        SQLite's data_version changes when another connection commits; only then are the
        online users looked up, so an idle server reads one pragma per `ACCOUNT_POLL`.
        """
        assert self.host is not None
        seen = db.data_version
        while True:
            await asyncio.sleep(ACCOUNT_POLL)
            try:
                version = db.data_version
                if version != seen:
                    seen = version
                    self.host.end_deleted_sessions()
            except StoreError as exc:
                log.warning("cannot check for deleted accounts: %s", exc)

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
        server = self.config.server
        acceptor = Acceptor(
            listen,
            links,
            ctx,
            max_unauthenticated=server.max_unauthenticated,
            max_unauthenticated_per_address=server.max_unauthenticated_per_address,
            handshake_timeout=server.handshake_timeout,
        )
        return lambda: X2XConnection(acceptor=acceptor)

    async def stop(self, *, quiet: bool = False) -> None:
        """Shut down in dependency order, so that what must be written can be.

        Stop accepting; end the client sessions (their unavailable presence goes out to
        contacts, local and across the links, while those and the store are still up); close
        the links with the close exchange; then the upstream and the components; the store
        last, once every connection is gone.
        """
        for srv in self._servers:
            srv.close()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self.clients is not None:
            conns = list(self.clients.connections)
            for conn in conns:
                if self.host is not None:
                    self.host.unbind(conn)
                conn.kick("system-shutdown")
            await _closed(conns, timeout=2)
        await asyncio.gather(*(link.stop() for link in self.links.values()))
        if self.upstream is not None:
            await self.upstream.stop()
        conns = [r.conn for r in self.components.values() if r.conn is not None]
        for conn in conns:
            conn.begin_close()
        await _closed(conns, timeout=2)
        for srv in self._servers:
            await srv.wait_closed()
        self._servers.clear()
        await asyncio.sleep(0)  # connection_lost of aborted transports, before the store goes
        if self.db is not None:
            self.db.close()
            self.db = None
        if not quiet:
            log.info("%s: stopped", self.config.server.name)


async def _closed(conns: Sequence[Any], timeout: float) -> None:
    """Wait for connections to close; abort those still open after `timeout` seconds."""
    if not conns:
        return
    await asyncio.wait([asyncio.ensure_future(c.closed.wait()) for c in conns], timeout=timeout)
    for c in conns:
        if c.transport is not None:
            c.transport.abort()
