"""The configuration's schema: frozen dataclasses whose field metadata states each key once.

A field's `Setting` holds its TOML key, its kind (what the reader checks), its default as the
file sees it, its bounds and a one-line documentation string. The readers, the key lists in
"unknown key" problems, the builders and the reference in docs/configuration.md are all derived
from it (`settings`, `toml_keys`).
"""

# setting() returns dataclasses.field(), which ruff cannot see through:
# ruff: noqa: RUF009

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zerolink.pins import Pin

DEFAULT_S2S_PORT = 5269
DEFAULT_COMPONENT_PORT = 5347
DEFAULT_C2S_PORT = 5222  # RFC 6120 client-to-server, STARTTLS
DEFAULT_C2S_TLS_PORT = 5223  # XEP-0368 direct TLS
DEFAULT_DNS_PORT = 53
DEFAULT_DNS_TIMEOUT = 5.0
DEFAULT_SEND_BUFFER = 4 * 1024 * 1024

MIN_STANZA_SIZE = 1024
MIN_DEPTH = 8
MIN_SEND_BUFFER = 4096

LOG_LEVELS = ("debug", "info", "warning", "error")
DIRECTIONS = ("both", "outbound", "inbound")
CONNECT_MODES = ("always", "on-demand")
IDENTITY_MODES = ("address", "implicit", "tls")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


# A key without which the table is a problem.
REQUIRED: Any = _Marker("REQUIRED")
# A default the section reader works out (from the file name, another key, another table);
# `Setting.default_doc` says what it is.
COMPUTED: Any = _Marker("COMPUTED")


@dataclass(frozen=True, slots=True)
class Setting:
    """One TOML key: how it is read, its default in the file, and what it is for.

    `kind` names the reader: "string", "choice", "integer", "boolean", "duration",
    "endpoint", "domains" (an array of domains), "file" (an existing file), or "custom" (read
    by its section's own code; `type_doc` then names its type).
    """

    kind: str
    doc: str
    default: Any = None
    key: str | None = None
    minimum: int = 0
    positive: bool = False  # durations: > 0 rather than >= 0
    choices: tuple[str, ...] = ()
    port: int = 0  # endpoints: the default port
    wildcard: bool = False  # domains: wildcards allowed
    hint: str = ""  # what a "required key is missing" problem adds in parentheses
    unit: str = ""  # integers: "bytes", "characters"
    mode: str = ""  # identity keys: the mode that uses the key
    needs: str = ""  # identity keys: the key without which this one is a problem
    type_doc: str = ""
    default_doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def setting(kind: str, doc: str, *, dataclass_default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A dataclass field described by a `Setting`.

    The dataclass default is the file's default when that is a plain value; a required or
    computed key has none unless `dataclass_default` gives one.
    """
    s = Setting(kind, doc, **kw)
    default = dataclass_default
    if default is dataclasses.MISSING and s.default not in (REQUIRED, COMPUTED):
        default = s.default
    return field(default=default, metadata={"setting": s})


def settings(cls: type) -> list[tuple[str, Setting]]:
    """(field name, setting) of every field of `cls` read from the file, in key order."""
    out = []
    for f in dataclasses.fields(cls):
        s = f.metadata.get("setting")
        if s is not None:
            out.append((f.name, s))
    return out


def toml_key(name: str, s: Setting) -> str:
    return s.key or name


def toml_keys(cls: type) -> tuple[str, ...]:
    """The keys a table of `cls` allows, in the order problems list them."""
    return tuple(toml_key(name, s) for name, s in settings(cls))


def setting_of(cls: type, name: str) -> Setting:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata["setting"]
    raise KeyError(name)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A TCP endpoint: an IP literal (IPv6 without brackets) or a hostname, and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


# --------------------------------------------------------------------------- tables

_KEY_DOC = "the private key of certificate (PEM, no passphrase); requires certificate"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """[server]: this server's name, its own domains and its data folder."""

    name: str = setting(
        "custom",
        "a label for this server in logs and in check-config",
        default=COMPUTED,
        type_doc="string",
        default_doc="the file name without its extension",
    )
    domains: tuple[str, ...] = setting(
        "domains",
        "the domains this server is responsible for",
        default=REQUIRED,
    )
    data_dir: Path = setting(
        "custom",
        "where the server keeps its state (SQLite databases, generated certificate)",
        default=COMPUTED,
        type_doc="path",
        default_doc="`<file name>-data` beside the configuration file",
    )
    log_level: str = setting("choice", "how much is logged", default="info", choices=LOG_LEVELS)
    max_stanza_size: int = setting(
        "integer",
        "the largest stanza accepted from any stream, in bytes of XML",
        default=262144,
        minimum=MIN_STANZA_SIZE,
        unit="bytes",
    )
    max_depth: int = setting(
        "integer",
        "the deepest element nesting accepted (the stanza itself is depth 1)",
        default=64,
        minimum=MIN_DEPTH,
    )
    certificate: Path | None = setting(
        "file", "our default TLS certificate chain (PEM) for links; requires key"
    )
    key: Path | None = setting("file", _KEY_DOC)
    # X2X listeners: connections not identified yet (TLS handshake running), and how long
    # that handshake may take (zerolink.core.admission).
    handshake_timeout: float = setting(
        "duration",
        "how long an incoming TLS link connection may take for its handshake",
        default=30.0,
        positive=True,
    )
    max_unauthenticated: int = setting(
        "integer",
        "the most incoming connections per TLS peer listener with the handshake unfinished",
        default=64,
        minimum=1,
    )
    max_unauthenticated_per_address: int = setting(
        "integer",
        "the same, per source address (IPv6: per /64)",
        default=4,
        minimum=1,
    )


@dataclass(frozen=True, slots=True)
class HostConfig:
    """The embedded host: RFC 6120 client connections for users of `domains`.

    `certificate` and `key` are both set or both None; None means the server generates a
    self-signed certificate into ``server.data_dir`` at first start.
    """

    domains: tuple[str, ...] = setting(
        "domains",
        "the domains whose users zerolink serves itself",
        default=COMPUTED,
        default_doc="every domain of `server.domains`",
    )
    listen: Endpoint = setting(
        "endpoint",
        "where clients connect (STARTTLS)",
        default=REQUIRED,
        port=DEFAULT_C2S_PORT,
        hint="e.g. listen = '127.0.0.1:5222'",
    )
    direct_tls_listen: Endpoint | None = setting(
        "endpoint", "where clients connect with TLS at once (XEP-0368)", port=DEFAULT_C2S_TLS_PORT
    )
    tls_required: bool = setting(
        "boolean", "clients must complete STARTTLS before authenticating", default=True
    )
    certificate: Path | None = setting(
        "file", "the client listeners' TLS certificate chain (PEM); requires key"
    )
    key: Path | None = setting("file", _KEY_DOC)
    offline_limit: int = setting(
        "integer", "the most messages stored for one offline user", default=1000, minimum=0
    )
    auth_timeout: float = setting(
        "duration",
        "how long a client connection may stay open without authenticating",
        default=60.0,
        positive=True,
    )
    max_unauthenticated: int = setting(
        "integer",
        "the most client connections open at once before authenticating",
        default=100,
        minimum=1,
    )
    max_unauthenticated_per_address: int = setting(
        "integer",
        "the same, per source address (IPv6: per /64)",
        default=8,
        minimum=1,
    )
    step_timeout: float = setting(
        "duration",
        "how long each step of a client's stream negotiation may take",
        default=20.0,
        positive=True,
    )
    # Login throttling (zerolink.core.throttle).
    auth_failures: int = setting(
        "integer",
        "failed logins per address and per account within auth_window before they cost time",
        default=5,
        minimum=0,
    )
    auth_window: float = setting(
        "duration",
        "how far back failed logins count for auth_failures",
        default=60.0,
        positive=True,
    )
    max_sessions_per_user: int = setting(
        "integer", "the most clients (resources) one user may have online", default=10, minimum=1
    )
    # Bytes held for one client that it has not taken yet (zerolink.net.outbox).
    max_send_buffer: int = setting(
        "integer",
        "the most bytes held for one client that it has not taken yet",
        default=DEFAULT_SEND_BUFFER,
        minimum=MIN_SEND_BUFFER,
        unit="bytes",
    )
    offline_bytes: int = setting(
        "integer",
        "the most bytes of stored messages for one offline user",
        default=10 * 1024 * 1024,
        minimum=0,
        unit="bytes",
    )
    # RFC 6121 §2.3.3's server-configured limits (zerolink.core.roster.RosterLimits).
    roster_max_items: int = setting(
        "integer", "the most contacts in one user's roster", default=1000, minimum=1
    )
    roster_max_groups: int = setting(
        "integer", "the most groups of one roster item", default=8, minimum=0
    )
    roster_max_name_chars: int = setting(
        "integer",
        "the longest name of a roster item",
        default=256,
        minimum=1,
        unit="characters",
    )
    roster_max_group_chars: int = setting(
        "integer", "the longest group name", default=64, minimum=1, unit="characters"
    )


@dataclass(frozen=True, slots=True)
class ComponentListenerConfig:
    """[component_listener]: the socket XEP-0114 components connect to."""

    listen: Endpoint = setting(
        "endpoint",
        "where XEP-0114 components connect",
        default=REQUIRED,
        port=DEFAULT_COMPONENT_PORT,
        hint="e.g. listen = '127.0.0.1:5347'",
    )
    max_send_buffer: int = setting(
        "integer",
        "the most bytes held for one component that it has not read",
        default=DEFAULT_SEND_BUFFER,
        minimum=MIN_SEND_BUFFER,
        unit="bytes",
    )
    # Before the XEP-0114 handshake (zerolink.core.admission).
    handshake_timeout: float = setting(
        "duration",
        "how long a connection may take to send its stream header and a correct handshake",
        default=10.0,
        positive=True,
    )
    max_unauthenticated: int = setting(
        "integer",
        "the most connections that have not completed their handshake",
        default=20,
        minimum=1,
    )
    max_unauthenticated_per_address: int = setting(
        "integer",
        "the same, per source address (IPv6: per /64)",
        default=4,
        minimum=1,
    )


@dataclass(frozen=True, slots=True)
class ComponentConfig:
    """One [[component]]."""

    domain: str = setting(
        "custom",
        "the domain the component serves",
        default=REQUIRED,
        type_doc="domain, no wildcard",
    )
    secret: str = setting("string", "the shared secret of the XEP-0114 handshake", default=REQUIRED)
    # Effective: the component's own max_send_buffer, or else the listener's.
    max_send_buffer: int = setting(
        "integer",
        "this component's own output budget",
        default=COMPUTED,
        dataclass_default=DEFAULT_SEND_BUFFER,
        minimum=MIN_SEND_BUFFER,
        unit="bytes",
        default_doc="`component_listener.max_send_buffer`",
    )


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """How an incoming connection is recognised as a peer (XEP-0361 §4.2).

    ``address``: `addresses` and `port`, plus the optional reverse DNS check (`reverse_dns`,
    `dnssec`, `resolver`: None for the system resolver, `dns_timeout`). ``tls``: the peer's
    certificate, trusted through `ca` (PKI), `pins`, or either when both are set.
    ``implicit``: none of them.
    """

    mode: str = setting(
        "custom",
        "how the peer is recognised: by address, by TLS certificate, or implicitly",
        default=REQUIRED,
        choices=IDENTITY_MODES,
        default_doc='`"address"` when `identity` is omitted',
    )
    addresses: tuple[IPNetwork, ...] = setting(
        "custom",
        "the source addresses or networks the peer connects from",
        default=COMPUTED,
        dataclass_default=(),
        mode="address",
        type_doc="array of IP addresses or CIDR networks, at least one",
        default_doc="the `remote` address, when it is an IP literal",
    )
    port: int | None = setting(
        "custom",
        "the source port the peer must connect from",
        mode="address",
        type_doc="integer 1..65535",
    )
    reverse_dns: str | None = setting(
        "custom",
        "the name the source address must have in reverse DNS",
        mode="address",
        type_doc="host name (no IP address, no wildcard)",
    )
    dnssec: bool = setting(
        "boolean",
        "both reverse DNS lookups must be DNSSEC-validated",
        default=False,
        mode="address",
        needs="reverse_dns",
    )
    resolver: Endpoint | None = setting(
        "endpoint",
        "the DNS resolver to ask instead of the system's",
        mode="address",
        needs="reverse_dns",
        port=DEFAULT_DNS_PORT,
    )
    dns_timeout: float = setting(
        "duration",
        "how long the reverse DNS check may take in all",
        default=DEFAULT_DNS_TIMEOUT,
        positive=True,
        mode="address",
        needs="reverse_dns",
    )
    ca: Path | None = setting(
        "file", "a bundle of CA certificates the peer's chain must validate to", mode="tls"
    )
    pins: tuple[Pin, ...] = setting(
        "custom",
        "certificate or public-key pins the peer's certificate may match",
        dataclass_default=(),
        mode="tls",
        type_doc="array of pin strings, at least one",
    )


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """One [[peer]]: an XEP-0361 link to another server."""

    name: str = setting(
        "custom",
        "names the link in logs and in check-config",
        default=REQUIRED,
        type_doc="string of `A-Z a-z 0-9 _ . -`",
    )
    domains: tuple[str, ...] = setting(
        "domains",
        "the domains the peer serves",
        default=REQUIRED,
        wildcard=True,
    )
    remote: Endpoint | None = setting(
        "endpoint",
        "where we dial the peer",
        default=COMPUTED,
        port=DEFAULT_S2S_PORT,
        default_doc='required unless `direction = "inbound"`',
    )
    listen: Endpoint | None = setting(
        "endpoint",
        "where we accept this peer's connections",
        default=COMPUTED,
        port=DEFAULT_S2S_PORT,
        default_doc='required unless `direction = "outbound"`',
    )
    source: str | None = setting(
        "custom",
        "the local address we dial from",
        default=COMPUTED,
        type_doc="IP address (no port)",
        default_doc="the `listen` address",
    )
    identity: IdentityConfig = setting(
        "custom",
        "how an incoming connection is recognised as this peer",
        default=COMPUTED,
        type_doc="table or mode",
        default_doc='`mode = "address"`',
    )
    direction: str = setting(
        "choice", "who may open the connection", default="both", choices=DIRECTIONS
    )
    connect: str = setting(
        "choice",
        "keep the link up always, or dial when there is a stanza to send",
        default="always",
        choices=CONNECT_MODES,
    )
    queue_limit: int = setting(
        "integer", "stanzas queued while the link is down", default=10000, minimum=0
    )
    idle_timeout: float = setting(
        "duration",
        "on-demand: close after this long without stanzas",
        default=300.0,
        positive=True,
    )
    keepalive: float = setting(
        "duration", "send a whitespace byte after this long of silence; 0 disables", default=60.0
    )
    stanza_timeout: float = setting(
        "duration", "how long a stanza may wait for the link", default=300.0, positive=True
    )
    reconnect_min: float = setting(
        "duration", "first delay before reconnecting after a failure", default=1.0, positive=True
    )
    reconnect_max: float = setting(
        "duration", "the reconnect delay never exceeds this", default=120.0, positive=True
    )
    connect_timeout: float = setting("duration", "TCP connect timeout", default=30.0, positive=True)
    close_timeout: float = setting(
        "duration",
        "how long to wait for the peer's `</stream:stream>` before closing TCP",
        default=10.0,
        positive=True,
    )
    tcp_user_timeout: float = setting(
        "duration", "TCP_USER_TIMEOUT; 0 keeps the OS default", default=60.0
    )
    initial_delay: float = setting(
        "duration", "the most random delay before the first dial", default=0.5
    )
    ack_delay: float = setting(
        "duration",
        "acknowledge at most this long after a stanza from the peer arrived",
        default=0.5,
        positive=True,
    )
    ack_timeout: float = setting(
        "duration",
        "the sender's watchdog: no acknowledgement this long closes the connection",
        default=60.0,
        positive=True,
    )
    tls: bool = setting("boolean", "run the link over TLS from the first byte", default=False)
    # Effective: the peer's own certificate and key, or else the server's default (both or
    # neither are None).
    certificate: Path | None = setting(
        "file",
        "our TLS certificate chain (PEM) for this link only; requires key",
        default=COMPUTED,
        dataclass_default=None,
        default_doc="`server.certificate`",
    )
    key: Path | None = setting(
        "file", _KEY_DOC, default=COMPUTED, dataclass_default=None, default_doc="`server.key`"
    )
    # Reliable delivery (zerolink extension, docs/protocol.md): both sides set acks = true.
    acks: bool = setting("boolean", "reliable delivery on this link", default=False)
    # Link compression (zerolink extension, docs/protocol.md): both sides set the same three.
    compression: str = setting(
        "choice",
        "compress each direction of the link (inside TLS when TLS is on)",
        default="none",
        choices=("none", "zlib", "zstd"),
    )
    compression_dictionary: str | Path = setting(
        "custom",
        "the preset dictionary: zerolink's with the link's domains, none, or a file's bytes",
        default="builtin",
        type_doc='"builtin", "none" or a file path',
    )
    compression_scope: str = setting(
        "choice",
        "one compressed stream per direction, or each stanza compressed alone",
        default="stream",
        choices=("stream", "stanza"),
    )
    ack_every: int = setting(
        "integer", "acknowledge the peer's stanzas after this many new ones", default=10, minimum=1
    )
    queue_bytes: int = setting(
        "integer",
        "bytes of stanzas queued (or, with acks, waiting for an acknowledgement)",
        default=64 * 1024 * 1024,
        minimum=1024,
        unit="bytes",
    )


@dataclass(frozen=True, slots=True)
class UpstreamComponent:
    """One component connection to the upstream, standing for a remote `domain` of a peer."""

    domain: str = setting(
        "custom",
        "a remote domain, served by a peer",
        default=REQUIRED,
        hint="a domain served by a peer",
        type_doc="domain, no wildcard",
    )
    secret: str = setting(
        "string", "the upstream's component secret for this domain", default=REQUIRED
    )


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """Gateway mode: zerolink attaches to an existing XMPP server's XEP-0114 component port.

    `domains` are the upstream's own domains that zerolink fronts over its links (already
    defaulted: never empty); `components` the remote domains it connects as, one each.
    """

    address: Endpoint = setting(
        "endpoint",
        "the upstream server's component port",
        default=REQUIRED,
        port=DEFAULT_COMPONENT_PORT,
        hint="the upstream server's component port, e.g. address = '127.0.0.1:5347'",
    )
    domains: tuple[str, ...] = setting(
        "domains",
        "the upstream's own domains that zerolink fronts",
        default=COMPUTED,
        default_doc="every domain of `server.domains` that `[host]` does not host",
    )
    reconnect_min: float = setting(
        "duration", "first delay before reconnecting to the upstream", default=1.0, positive=True
    )
    reconnect_max: float = setting(
        "duration", "the reconnect delay never exceeds this", default=60.0, positive=True
    )
    connect_timeout: float = setting(
        "duration", "how long a TCP connect to the upstream may take", default=10.0, positive=True
    )
    stanza_timeout: float = setting(
        "duration",
        "how long a stanza for the upstream waits while its connection is down",
        default=300.0,
        positive=True,
    )
    queue_limit: int = setting(
        "integer",
        "the most stanzas held for the upstream while its connection is down",
        default=10000,
        minimum=1,
    )
    queue_bytes: int = setting(
        "integer",
        "the most bytes of stanzas held for one component connection while it is down",
        default=64 * 1024 * 1024,
        minimum=1024,
        unit="bytes",
    )
    components: tuple[UpstreamComponent, ...] = field(
        kw_only=True,
        metadata={
            "setting": Setting(
                "custom",
                "one component connection per remote domain",
                default=REQUIRED,
                key="component",
                type_doc="array of tables [[upstream.component]], at least one",
            )
        },
    )


@dataclass(frozen=True, slots=True)
class Config:
    """The whole file: one field per top-level table."""

    path: Path | None
    server: ServerConfig = setting("custom", "this server", default=REQUIRED, type_doc="table")
    host: HostConfig | None = setting(
        "custom", "the embedded host for users of our domains", type_doc="table"
    )
    upstream: UpstreamConfig | None = setting(
        "custom", "gateway mode: the XMPP server zerolink fronts", type_doc="table"
    )
    component_listener: ComponentListenerConfig | None = setting(
        "custom", "the socket XEP-0114 components connect to", type_doc="table"
    )
    components: tuple[ComponentConfig, ...] = setting(
        "custom",
        "one external component",
        key="component",
        dataclass_default=(),
        type_doc="array of tables",
    )
    peers: tuple[PeerConfig, ...] = setting(
        "custom", "one XEP-0361 link", key="peer", dataclass_default=(), type_doc="array of tables"
    )


# Each table's TOML name -> its dataclass, for the readers and the documentation check.
TABLES: dict[str, type] = {
    "server": ServerConfig,
    "host": HostConfig,
    "upstream": UpstreamConfig,
    "upstream.component": UpstreamComponent,
    "component_listener": ComponentListenerConfig,
    "component": ComponentConfig,
    "peer": PeerConfig,
    "peer.identity": IdentityConfig,
}
