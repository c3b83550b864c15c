"""Configuration: a TOML file read into frozen dataclasses.

Every problem in the file is reported at once: `load_config` raises one `ConfigError` listing
each `ConfigProblem` with its key path (``peer[0].identity.addresses[1]``) and what was expected.
Parsing is split in two passes: each table is read into a *draft* (plain dicts, with `_BAD` for
values that failed), then the cross-checks run over whatever was valid, and only a file without
problems is turned into the dataclasses.

Nothing here logs; `warnings_for` returns the warnings for the application to log
(`log_warnings` does so on the ``zerolink.config`` logger).
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import math
import os
import re
import stat
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from zerolink.errors import ConfigError, ConfigProblem
from zerolink.idn import IDNError, domain_to_ascii
from zerolink.jid import normalize_domain
from zerolink.pins import Pin, parse_pin

__all__ = [
    "DEFAULT_C2S_PORT",
    "DEFAULT_C2S_TLS_PORT",
    "DEFAULT_COMPONENT_PORT",
    "DEFAULT_DNS_PORT",
    "DEFAULT_S2S_PORT",
    "ComponentConfig",
    "ComponentListenerConfig",
    "Config",
    "Endpoint",
    "HostConfig",
    "IdentityConfig",
    "PeerConfig",
    "ServerConfig",
    "UpstreamComponent",
    "UpstreamConfig",
    "load_config",
    "log_warnings",
    "parse_config",
    "parse_endpoint",
    "summary",
    "warnings_for",
]

logger = logging.getLogger("zerolink.config")

DEFAULT_S2S_PORT = 5269
DEFAULT_COMPONENT_PORT = 5347
DEFAULT_C2S_PORT = 5222  # RFC 6120 client-to-server, STARTTLS
DEFAULT_C2S_TLS_PORT = 5223  # XEP-0368 direct TLS
DEFAULT_DNS_PORT = 53
DEFAULT_DNS_TIMEOUT = 5.0

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A TCP endpoint: an IP literal (IPv6 without brackets) or a hostname, and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    name: str
    domains: tuple[str, ...]
    data_dir: Path
    log_level: str = "info"
    max_stanza_size: int = 262144
    max_depth: int = 64
    certificate: Path | None = None
    key: Path | None = None
    # X2X listeners: connections not identified yet (TLS handshake running), and how long
    # that handshake may take (zerolink.core.admission).
    handshake_timeout: float = 30.0
    max_unauthenticated: int = 64
    max_unauthenticated_per_address: int = 4


DEFAULT_SEND_BUFFER = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ComponentConfig:
    domain: str
    secret: str
    # Effective: the component's own max_send_buffer, or else the listener's.
    max_send_buffer: int = DEFAULT_SEND_BUFFER


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """How an incoming connection is recognised as a peer (XEP-0361 §4.2).

    ``address``: `addresses` and `port`, plus the optional reverse DNS check (`reverse_dns`,
    `dnssec`, `resolver`: None for the system resolver, `dns_timeout`). ``tls``: the peer's
    certificate, trusted through `ca` (PKI), `pins`, or either when both are set.
    ``implicit``: none of them.
    """

    mode: str
    addresses: tuple[IPNetwork, ...] = ()
    port: int | None = None
    ca: Path | None = None
    pins: tuple[Pin, ...] = ()
    reverse_dns: str | None = None
    dnssec: bool = False
    resolver: Endpoint | None = None
    dns_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class PeerConfig:
    name: str
    domains: tuple[str, ...]
    remote: Endpoint | None
    listen: Endpoint | None
    source: str | None
    identity: IdentityConfig
    direction: str = "both"
    connect: str = "always"
    idle_timeout: float = 300.0
    keepalive: float = 60.0
    stanza_timeout: float = 300.0
    queue_limit: int = 10000
    reconnect_min: float = 1.0
    reconnect_max: float = 120.0
    connect_timeout: float = 30.0
    close_timeout: float = 10.0
    tcp_user_timeout: float = 60.0
    initial_delay: float = 0.5
    tls: bool = False
    # Effective: the peer's own certificate and key, or else the server's default (both or
    # neither are None).
    certificate: Path | None = None
    key: Path | None = None
    # Reliable delivery (zerolink extension, docs/protocol.md): both sides set acks = true.
    acks: bool = False
    ack_every: int = 10
    ack_delay: float = 0.5
    ack_timeout: float = 60.0
    queue_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ComponentListenerConfig:
    listen: Endpoint
    max_send_buffer: int = DEFAULT_SEND_BUFFER
    # Before the XEP-0114 handshake (zerolink.core.admission).
    handshake_timeout: float = 10.0
    max_unauthenticated: int = 20
    max_unauthenticated_per_address: int = 4


@dataclass(frozen=True, slots=True)
class HostConfig:
    """The embedded host: RFC 6120 client connections for users of `domains`.

    `certificate` and `key` are both set or both None; None means the server generates a
    self-signed certificate into ``server.data_dir`` at first start.
    """

    domains: tuple[str, ...]
    listen: Endpoint
    direct_tls_listen: Endpoint | None = None
    tls_required: bool = True
    certificate: Path | None = None
    key: Path | None = None
    offline_limit: int = 1000
    auth_timeout: float = 60.0
    max_unauthenticated: int = 100
    max_unauthenticated_per_address: int = 8
    step_timeout: float = 20.0
    # Login throttling (zerolink.core.throttle).
    auth_failures: int = 5
    auth_window: float = 60.0
    max_sessions_per_user: int = 10
    # Bytes held for one client that it has not taken yet (zerolink.net.outbox).
    max_send_buffer: int = DEFAULT_SEND_BUFFER
    offline_bytes: int = 10 * 1024 * 1024
    # RFC 6121 §2.3.3's server-configured limits (zerolink.core.roster.RosterLimits).
    roster_max_items: int = 1000
    roster_max_groups: int = 8
    roster_max_name_chars: int = 256
    roster_max_group_chars: int = 64


@dataclass(frozen=True, slots=True)
class UpstreamComponent:
    """One component connection to the upstream, standing for a remote `domain` of a peer."""

    domain: str
    secret: str


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """Gateway mode: zerolink attaches to an existing XMPP server's XEP-0114 component port.

    `domains` are the upstream's own domains that zerolink fronts over its links (already
    defaulted: never empty); `components` the remote domains it connects as, one each.
    """

    address: Endpoint
    domains: tuple[str, ...]
    components: tuple[UpstreamComponent, ...]
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    connect_timeout: float = 10.0
    stanza_timeout: float = 300.0
    queue_limit: int = 10000
    queue_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None
    server: ServerConfig
    component_listener: ComponentListenerConfig | None
    components: tuple[ComponentConfig, ...]
    peers: tuple[PeerConfig, ...]
    host: HostConfig | None = None
    upstream: UpstreamConfig | None = None


# --------------------------------------------------------------------------- key sets

LOG_LEVELS = ("debug", "info", "warning", "error")
DIRECTIONS = ("both", "outbound", "inbound")
CONNECT_MODES = ("always", "on-demand")
IDENTITY_MODES = ("address", "implicit", "tls")

TOP_KEYS = ("server", "host", "upstream", "component_listener", "component", "peer")
SERVER_KEYS = (
    "name",
    "domains",
    "data_dir",
    "log_level",
    "max_stanza_size",
    "max_depth",
    "certificate",
    "key",
    "handshake_timeout",
    "max_unauthenticated",
    "max_unauthenticated_per_address",
)
HOST_KEYS = (
    "domains",
    "listen",
    "direct_tls_listen",
    "tls_required",
    "certificate",
    "key",
    "offline_limit",
    "auth_timeout",
    "max_unauthenticated",
    "max_unauthenticated_per_address",
    "step_timeout",
    "auth_failures",
    "auth_window",
    "max_sessions_per_user",
    "max_send_buffer",
    "offline_bytes",
    "roster_max_items",
    "roster_max_groups",
    "roster_max_name_chars",
    "roster_max_group_chars",
)
# Host and component keys in bytes or counts: key -> (default, minimum).
HOST_LIMITS: dict[str, tuple[int, int]] = {
    "max_send_buffer": (DEFAULT_SEND_BUFFER, 4096),
    "offline_bytes": (10 * 1024 * 1024, 0),
    "roster_max_items": (1000, 1),
    "roster_max_groups": (8, 0),
    "roster_max_name_chars": (256, 1),
    "roster_max_group_chars": (64, 1),
}
COMPONENT_LISTENER_KEYS = (
    "listen",
    "max_send_buffer",
    "handshake_timeout",
    "max_unauthenticated",
    "max_unauthenticated_per_address",
)
COMPONENT_KEYS = ("domain", "secret", "max_send_buffer")
# Upstream durations: key -> default (all strictly positive)
UPSTREAM_DURATIONS: dict[str, float] = {
    "reconnect_min": 1.0,
    "reconnect_max": 60.0,
    "connect_timeout": 10.0,
    "stanza_timeout": 300.0,
}
UPSTREAM_KEYS = (
    "address",
    "domains",
    *UPSTREAM_DURATIONS,
    "queue_limit",
    "queue_bytes",
    "component",
)
UPSTREAM_COMPONENT_KEYS = ("domain", "secret")
# The identity keys each mode uses; a key of one mode given with another is a problem.
IDENTITY_MODE_KEYS: dict[str, tuple[str, ...]] = {
    "address": ("addresses", "port", "reverse_dns", "dnssec", "resolver", "dns_timeout"),
    "tls": ("ca", "pins"),
    "implicit": (),
}
IDENTITY_KEYS = ("mode", *IDENTITY_MODE_KEYS["address"], *IDENTITY_MODE_KEYS["tls"])
# What each mode checks, for the problem about another mode's key.
_IDENTITY_MODE_MEANING = {
    "address": "mode 'address' identifies the peer by its source address",
    "tls": "mode 'tls' identifies the peer by its certificate",
    "implicit": "mode 'implicit' accepts any connection on the listener",
}
# Address-mode keys that only tune the reverse DNS check.
REVERSE_DNS_KEYS = ("dnssec", "resolver", "dns_timeout")

MIN_STANZA_SIZE = 1024
MIN_DEPTH = 8

# Peer durations: key -> (default, strictly positive?)
PEER_DURATIONS: dict[str, tuple[float, bool]] = {
    "idle_timeout": (300.0, True),
    "keepalive": (60.0, False),
    "stanza_timeout": (300.0, True),
    "reconnect_min": (1.0, True),
    "reconnect_max": (120.0, True),
    "connect_timeout": (30.0, True),
    "close_timeout": (10.0, True),
    "tcp_user_timeout": (60.0, False),
    "initial_delay": (0.5, False),
    "ack_delay": (0.5, True),
    "ack_timeout": (60.0, True),
}
PEER_KEYS = (
    "name",
    "domains",
    "remote",
    "listen",
    "source",
    "identity",
    "direction",
    "connect",
    "queue_limit",
    *PEER_DURATIONS,
    "tls",
    "certificate",
    "key",
    "acks",
    "ack_every",
    "queue_bytes",
)

_PEER_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION_RE = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")
_TOML_EOF_RE = re.compile(r"^(?P<msg>.*) \(at end of document\)$")
# A problem at one of these paths means some peer domain may be missing from the drafts.
_PEER_DOMAINS_PATH_RE = re.compile(r"peer(\[\d+\](\.domains(\[\d+\])?)?)?")


class _Bad:
    """Marks a value that failed validation (its problem is already recorded)."""

    def __repr__(self) -> str:
        return "<bad>"


_BAD: Any = _Bad()
_MISSING: Any = object()


# --------------------------------------------------------------------------- helpers


def _key(path: str, key: str) -> str:
    part = key if _BARE_KEY_RE.fullmatch(key) else '"' + key.replace('"', '\\"') + '"'
    return f"{path}.{part}" if path else part


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"


# Keys whose value is a secret: a problem with one names its type, never its value (the
# message goes to stderr, which is the service's log).
SECRET_KEYS = frozenset({"secret"})


def _kind(value: Any) -> str:
    """The type of a TOML value without the value: "integer", "an array"."""
    text = _describe(value)
    return text if text.startswith(("a ", "an ")) else text.split(" ", 1)[0]


def _describe(value: Any) -> str:
    """Name a TOML value for a message: "string 'x'", "integer 5", "a table"."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return f"date/time {value.isoformat()}"
    return type(value).__name__  # pragma: no cover - tomllib yields nothing else


def _quoted_list(choices: Iterable[str]) -> str:
    return ", ".join(f"'{c}'" for c in choices)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_network(host: str) -> IPNetwork:
    """A single IP literal as a /32 or /128 network (any IPv6 zone dropped)."""
    return ipaddress.ip_network(host.split("%", 1)[0])


class _Ctx:
    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(path, message))

    # -- tables

    def table(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        """Check `value` is a table and report its unknown keys; None if not a table."""
        if not isinstance(value, dict):
            self.add(path, f"expected a table, got {_describe(value)}")
            return None
        for key in value:
            if key not in allowed:
                self.add(
                    _key(path, key),
                    f"unknown key; expected one of: {', '.join(allowed)}"
                    + _did_you_mean(key, allowed),
                )
        return value

    def array_of_tables(self, value: Any, path: str) -> list[Any]:
        if isinstance(value, dict):
            self.add(
                path,
                f"expected an array of tables ([[{path}]]), got a single table ([{path}])",
            )
            return []
        if not isinstance(value, list):
            self.add(path, f"expected an array of tables ([[{path}]]), got {_describe(value)}")
            return []
        return value

    # -- scalars

    def string(self, table: dict[str, Any], key: str, path: str, *, default: Any = _MISSING) -> Any:
        p = _key(path, key)
        if key not in table:
            if default is _MISSING:
                self.add(p, "required key is missing")
                return _BAD
            return default
        value = table[key]
        if not isinstance(value, str):
            shown = _describe(value) if key not in SECRET_KEYS else _kind(value)
            self.add(p, f"expected a string, got {shown}")
            return _BAD
        if not value.strip():
            self.add(p, "must not be empty")
            return _BAD
        return value

    def choice(
        self, table: dict[str, Any], key: str, path: str, choices: tuple[str, ...], default: str
    ) -> Any:
        p = _key(path, key)
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, str) and value.lower() in choices:
            return value.lower()
        got = _describe(value)
        hint = _did_you_mean(value.lower(), choices) if isinstance(value, str) else ""
        self.add(p, f"expected one of {_quoted_list(choices)}, got {got}{hint}")
        return _BAD

    def integer(
        self, table: dict[str, Any], key: str, path: str, default: int, *, minimum: int
    ) -> Any:
        p = _key(path, key)
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(p, f"expected an integer, got {_describe(value)}")
            return _BAD
        if value < minimum:
            self.add(p, f"must be >= {minimum}, got {value}")
            return _BAD
        return value

    def boolean(self, table: dict[str, Any], key: str, path: str, default: bool) -> Any:
        p = _key(path, key)
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, bool):
            self.add(p, f"expected true or false, got {_describe(value)}")
            return _BAD
        return value

    def duration(
        self, table: dict[str, Any], key: str, path: str, default: float, *, positive: bool
    ) -> Any:
        p = _key(path, key)
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(p, f"expected a number of seconds, got {_describe(value)}")
            return _BAD
        if not math.isfinite(value):
            self.add(p, f"expected a finite number of seconds, got {value}")
            return _BAD
        if positive and value <= 0:
            self.add(p, f"must be > 0 seconds, got {value}")
            return _BAD
        if value < 0:
            self.add(p, f"must be >= 0 seconds, got {value}")
            return _BAD
        return float(value)

    def port(self, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, f"expected a port number (1-65535), got {_describe(value)}")
            return _BAD
        if not 1 <= value <= 65535:
            self.add(path, f"expected a port number (1-65535), got {value}")
            return _BAD
        return value

    def endpoint(self, table: dict[str, Any], key: str, path: str, default_port: int) -> Any:
        """An optional endpoint string; None when absent, `_BAD` when invalid."""
        p = _key(path, key)
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, str):
            self.add(p, f"expected 'host:port' or '[IPv6]:port', got {_describe(value)}")
            return _BAD
        try:
            return parse_endpoint(value, default_port)
        except ValueError as e:
            self.add(p, str(e))
            return _BAD

    def domain(self, value: Any, path: str, *, wildcard: bool) -> Any:
        if not isinstance(value, str):
            self.add(path, f"expected a domain name, got {_describe(value)}")
            return _BAD
        text = value
        prefix = ""
        if "*" in text:
            if not wildcard:
                self.add(path, f"wildcards are only allowed in peer domains, got {value!r}")
                return _BAD
            if not text.startswith("*.") or "*" in text[2:]:
                self.add(
                    path,
                    f"a wildcard must be '*.' followed by a domain (e.g. '*.example.org'), "
                    f"got {value!r}",
                )
                return _BAD
            prefix, text = "*.", text[2:]
        try:
            return prefix + _normalize_domain(text)
        except ValueError as e:
            self.add(path, f"invalid domain name {value!r}: {e}")
            return _BAD

    def domain_list(self, table: dict[str, Any], key: str, path: str, *, wildcard: bool) -> Any:
        """A required, non-empty array of domains -> [(domain, key path)] of the valid ones.

        Invalid entries are reported and left out; the cross-checks still see the rest.
        """
        p = _key(path, key)
        if key not in table:
            self.add(p, "required key is missing (an array of at least one domain)")
            return _BAD
        value = table[key]
        if not isinstance(value, list):
            self.add(p, f"expected an array of domain names, got {_describe(value)}")
            return _BAD
        if not value:
            self.add(p, "at least one domain is required")
            return _BAD
        out = []
        for i, item in enumerate(value):
            d = self.domain(item, _index(p, i), wildcard=wildcard)
            if d is not _BAD:
                out.append((d, _index(p, i)))
        return out


# --------------------------------------------------------------------------- domains


def _normalize_domain(text: str) -> str:
    """Normalize a domain as JIDs do (RFC 7622 domainpart); ValueError if invalid."""
    return normalize_domain(text)


def _wildcard_covers(pattern: str, domain: str) -> bool:
    """``*.x`` covers every subdomain of x (at any depth), not x itself."""
    return pattern.startswith("*.") and domain.endswith(pattern[1:])


# --------------------------------------------------------------------------- endpoints


def parse_endpoint(text: str, default_port: int) -> Endpoint:
    """Parse "host:port", "host", "[v6]:port" or "[v6]"; ValueError with a readable message."""
    s = text.strip()
    if not s:
        raise ValueError("expected 'host:port' or '[IPv6]:port', got an empty string")
    port_text: str | None
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"missing ']' after the IPv6 address in {text!r}")
        host, rest = s[1:end], s[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected ':port' after ']' in {text!r}")
        port_text = rest[1:] if rest else None
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"expected an IPv6 address inside [...], got {host!r}") from None
        if addr.version != 6:
            raise ValueError(f"brackets are for IPv6 addresses only, got {host!r}")
        host = str(addr)
    else:
        if s.count(":") > 1:
            raise ValueError(f"IPv6 addresses need brackets, e.g. '[::1]:5269'; got {text!r}")
        host, sep, port_str = s.partition(":")
        port_text = port_str if sep else None
        if not host:
            raise ValueError(f"missing host in {text!r}")
        host = str(ipaddress.ip_address(host)) if _is_ip(host) else _normalize_hostname(host, text)
    if port_text is None:
        port = default_port
    else:
        if not port_text.isdigit():
            raise ValueError(f"expected a port number (1-65535) in {text!r}, got {port_text!r}")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"expected a port number (1-65535) in {text!r}, got {port}")
    return Endpoint(host, port)


def _normalize_hostname(host: str, text: str) -> str:
    if host.replace(".", "").isdigit():
        raise ValueError(f"not a valid IPv4 address: {host!r}")
    try:
        ascii_form = domain_to_ascii(host.rstrip(".") or host)
    except IDNError as e:
        raise ValueError(f"expected an IP address or host name in {text!r}: {e}") from None
    return ascii_form


def _unspecified(host: str) -> bool:
    return _is_ip(host) and ipaddress.ip_address(host).is_unspecified


def _ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def _endpoints_clash(a: Endpoint, b: Endpoint) -> bool:
    """Two listeners that cannot both be bound: same endpoint, or a wildcard covering the other."""
    if a.port != b.port:
        return False
    if a == b:
        return True
    va, vb = _ip_version(a.host), _ip_version(b.host)
    if va is None or vb is None or va != vb:
        return False
    return _unspecified(a.host) or _unspecified(b.host)


# --------------------------------------------------------------------------- sections


def _parse_server(ctx: _Ctx, data: dict[str, Any], base_dir: Path, stem: str) -> dict[str, Any]:
    path = "server"
    # certificate and key stay `_BAD` (unknown) unless the table is read.
    draft: dict[str, Any] = {"domains": _BAD, "certificate": _BAD, "key": _BAD}
    if "server" not in data:
        ctx.add(path, "required table [server] is missing (it needs at least 'domains')")
        return draft
    t = ctx.table(data["server"], path, SERVER_KEYS)
    if t is None:
        return draft
    name = ctx.string(t, "name", path, default=stem)
    if name is not _BAD and any(not c.isprintable() for c in name):
        ctx.add(_key(path, "name"), f"must not contain control characters, got {name!r}")
        name = _BAD
    draft["name"] = name
    draft["domains"] = ctx.domain_list(t, "domains", path, wildcard=False)
    data_dir = ctx.string(t, "data_dir", path, default=f"{stem}-data")
    if data_dir is not _BAD:
        data_dir = base_dir / Path(os.path.expanduser(data_dir))
    draft["data_dir"] = data_dir
    draft["log_level"] = ctx.choice(t, "log_level", path, LOG_LEVELS, "info")
    draft["max_stanza_size"] = ctx.integer(
        t, "max_stanza_size", path, 262144, minimum=MIN_STANZA_SIZE
    )
    draft["max_depth"] = ctx.integer(t, "max_depth", path, 64, minimum=MIN_DEPTH)
    draft["handshake_timeout"] = ctx.duration(t, "handshake_timeout", path, 30.0, positive=True)
    draft["max_unauthenticated"] = ctx.integer(t, "max_unauthenticated", path, 64, minimum=1)
    draft["max_unauthenticated_per_address"] = ctx.integer(
        t, "max_unauthenticated_per_address", path, 4, minimum=1
    )
    draft["certificate"], draft["key"] = _certificate_pair(
        ctx, t, path, base_dir, "or neither (each peer with tls = true then needs its own)"
    )
    return draft


def _parse_host(ctx: _Ctx, data: dict[str, Any], base_dir: Path) -> Any:
    """The optional [host] table -> a draft; None when absent, `_BAD` when not a table.

    ``domains`` is None when the key is absent (default: every server domain, resolved once the
    server's domains are known); otherwise [(domain, key path)] of the valid entries.
    """
    path = "host"
    if path not in data:
        return None
    t = ctx.table(data[path], path, HOST_KEYS)
    if t is None:
        return _BAD
    draft: dict[str, Any] = {"path": path, "domains": None}
    if "domains" in t:
        draft["domains"] = ctx.domain_list(t, "domains", path, wildcard=False)
    if "listen" in t:
        draft["listen"] = ctx.endpoint(t, "listen", path, DEFAULT_C2S_PORT)
    else:
        ctx.add(_key(path, "listen"), "required key is missing (e.g. listen = '127.0.0.1:5222')")
        draft["listen"] = _BAD
    draft["direct_tls_listen"] = ctx.endpoint(t, "direct_tls_listen", path, DEFAULT_C2S_TLS_PORT)
    draft["tls_required"] = ctx.boolean(t, "tls_required", path, True)
    # Both or neither: without both, the server generates its own self-signed pair.
    draft["certificate"], draft["key"] = _certificate_pair(
        ctx, t, path, base_dir, "or neither for a self-signed certificate generated in data_dir"
    )
    draft["offline_limit"] = ctx.integer(t, "offline_limit", path, 1000, minimum=0)
    draft["auth_timeout"] = ctx.duration(t, "auth_timeout", path, 60.0, positive=True)
    draft["max_unauthenticated"] = ctx.integer(t, "max_unauthenticated", path, 100, minimum=1)
    draft["max_unauthenticated_per_address"] = ctx.integer(
        t, "max_unauthenticated_per_address", path, 8, minimum=1
    )
    draft["step_timeout"] = ctx.duration(t, "step_timeout", path, 20.0, positive=True)
    draft["auth_failures"] = ctx.integer(t, "auth_failures", path, 5, minimum=0)
    draft["auth_window"] = ctx.duration(t, "auth_window", path, 60.0, positive=True)
    draft["max_sessions_per_user"] = ctx.integer(t, "max_sessions_per_user", path, 10, minimum=1)
    for key, (default, minimum) in HOST_LIMITS.items():
        draft[key] = ctx.integer(t, key, path, default, minimum=minimum)
    return draft


def _certificate_pair(
    ctx: _Ctx, t: dict[str, Any], path: str, base_dir: Path, neither: str
) -> tuple[Any, Any]:
    """Optional ``certificate`` and ``key`` files, both or neither -> (certificate, key).

    Each is None when absent and `_BAD` when invalid; with only one of them given, the missing
    one is the problem and both are `_BAD`. `neither` ends that problem's message, saying
    what leaving out both means here.
    """
    certificate = _existing_file(ctx, t, "certificate", path, base_dir)
    key = _existing_file(ctx, t, "key", path, base_dir)
    for have, missing in (("certificate", "key"), ("key", "certificate")):
        if have in t and missing not in t:
            ctx.add(
                _key(path, missing),
                f"required key is missing ({have} is set; give both certificate and key, "
                f"{neither})",
            )
            return _BAD, _BAD
    return certificate, key


def _existing_file(ctx: _Ctx, t: dict[str, Any], key: str, path: str, base_dir: Path) -> Any:
    """An optional path to an existing file, relative to the configuration file's folder."""
    value = ctx.string(t, key, path, default=None)
    if value is None or value is _BAD:
        return value
    p = _key(path, key)
    file = base_dir / Path(os.path.expanduser(value))
    try:
        st = file.stat()
    except (FileNotFoundError, NotADirectoryError):
        ctx.add(p, f"file not found: {file}")
        return _BAD
    except OSError as e:
        ctx.add(p, f"cannot access {file}: {e.strerror or e}")
        return _BAD
    if not stat.S_ISREG(st.st_mode):
        ctx.add(p, f"not a regular file: {file}")
        return _BAD
    return file


def _parse_component_listener(ctx: _Ctx, data: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(listen endpoint, max_send_buffer, pre-handshake limits); None and defaults without
    the table."""
    path = "component_listener"
    limits: dict[str, Any] = {}
    if path not in data:
        return None, DEFAULT_SEND_BUFFER, limits
    t = ctx.table(data[path], path, COMPONENT_LISTENER_KEYS)
    if t is None:
        return _BAD, DEFAULT_SEND_BUFFER, limits
    budget = ctx.integer(t, "max_send_buffer", path, DEFAULT_SEND_BUFFER, minimum=4096)
    limits["handshake_timeout"] = ctx.duration(t, "handshake_timeout", path, 10.0, positive=True)
    limits["max_unauthenticated"] = ctx.integer(t, "max_unauthenticated", path, 20, minimum=1)
    limits["max_unauthenticated_per_address"] = ctx.integer(
        t, "max_unauthenticated_per_address", path, 4, minimum=1
    )
    if "listen" not in t:
        ctx.add(_key(path, "listen"), "required key is missing (e.g. listen = '127.0.0.1:5347')")
        return _BAD, budget, limits
    return ctx.endpoint(t, "listen", path, DEFAULT_COMPONENT_PORT), budget, limits


def _parse_components(ctx: _Ctx, data: dict[str, Any]) -> list[dict[str, Any]]:
    drafts = []
    if "component" not in data:
        return drafts
    for i, item in enumerate(ctx.array_of_tables(data["component"], "component")):
        path = _index("component", i)
        t = ctx.table(item, path, COMPONENT_KEYS)
        if t is None:
            continue
        p = _key(path, "domain")
        if "domain" in t:
            domain = ctx.domain(t["domain"], p, wildcard=False)
        else:
            ctx.add(p, "required key is missing")
            domain = _BAD
        drafts.append(
            {
                "path": path,
                "domain": domain,
                "secret": ctx.string(t, "secret", path),
                # None: the listener's
                "max_send_buffer": ctx.integer(t, "max_send_buffer", path, None, minimum=4096),
            }
        )
    return drafts


def _parse_upstream(ctx: _Ctx, data: dict[str, Any]) -> Any:
    """The optional [upstream] table -> a draft; None when absent, `_BAD` when not a table.

    ``domains`` is None when the key is absent (default: the server domains not hosted by
    [host], resolved in the cross-checks); otherwise [(domain, key path)] of the valid entries.
    ``components`` is [{"path", "domain", "secret"}], one per valid [[upstream.component]].
    """
    path = "upstream"
    if path not in data:
        return None
    t = ctx.table(data[path], path, UPSTREAM_KEYS)
    if t is None:
        return _BAD
    draft: dict[str, Any] = {"path": path, "domains": None}
    if "address" in t:
        draft["address"] = ctx.endpoint(t, "address", path, DEFAULT_COMPONENT_PORT)
    else:
        ctx.add(
            _key(path, "address"),
            "required key is missing (the upstream server's component port, "
            "e.g. address = '127.0.0.1:5347')",
        )
        draft["address"] = _BAD
    if "domains" in t:
        draft["domains"] = ctx.domain_list(t, "domains", path, wildcard=False)
    for key, default in UPSTREAM_DURATIONS.items():
        draft[key] = ctx.duration(t, key, path, default, positive=True)
    draft["queue_limit"] = ctx.integer(t, "queue_limit", path, 10000, minimum=1)
    draft["queue_bytes"] = ctx.integer(t, "queue_bytes", path, 64 * 1024 * 1024, minimum=1024)
    draft["components"] = _parse_upstream_components(ctx, t, path)
    return draft


def _parse_upstream_components(
    ctx: _Ctx, t: dict[str, Any], upstream_path: str
) -> list[dict[str, Any]]:
    path = _key(upstream_path, "component")
    if "component" not in t or t["component"] == []:
        ctx.add(
            path,
            "at least one [[upstream.component]] is required: one per remote domain (served by "
            "a peer) that zerolink connects to the upstream as",
        )
        return []
    drafts = []
    for i, item in enumerate(ctx.array_of_tables(t["component"], path)):
        item_path = _index(path, i)
        ct = ctx.table(item, item_path, UPSTREAM_COMPONENT_KEYS)
        if ct is None:
            continue
        p = _key(item_path, "domain")
        if "domain" in ct:
            domain = ctx.domain(ct["domain"], p, wildcard=False)
        else:
            ctx.add(p, "required key is missing (a domain served by a peer)")
            domain = _BAD
        drafts.append(
            {"path": item_path, "domain": domain, "secret": ctx.string(ct, "secret", item_path)}
        )
    return drafts


def _parse_identity(
    ctx: _Ctx, t: dict[str, Any], path: str, remote: Any, base_dir: Path
) -> dict[str, Any]:
    """-> {"mode", "addresses": [(network, path)] | _BAD, "port", "reverse_dns", "dnssec",
    "resolver", "dns_timeout", "ca", "pins": [Pin] | _BAD, "path"}.

    Keys of the other modes are problems; with an invalid mode every key given is checked,
    to report everything at once.
    """
    p = _key(path, "identity")
    raw = t.get("identity", {"mode": "address"})
    if isinstance(raw, str):
        raw = {"mode": raw}
        table: dict[str, Any] | None = raw
    elif isinstance(raw, dict):
        table = ctx.table(raw, p, IDENTITY_KEYS)
    else:
        ctx.add(
            p,
            f"expected a table or one of the strings {_quoted_list(IDENTITY_MODES)}, "
            f"got {_describe(raw)}",
        )
        table = None
    draft: dict[str, Any] = {
        "mode": _BAD,
        "addresses": _BAD,
        "port": _BAD,
        "reverse_dns": None,
        "dnssec": False,
        "resolver": None,
        "dns_timeout": DEFAULT_DNS_TIMEOUT,
        "ca": None,
        "pins": [],
        "path": p,
    }
    if table is None:
        return draft

    mode_path = _key(p, "mode")
    mode = table.get("mode", _MISSING)
    if mode is _MISSING:
        ctx.add(
            mode_path, f"required key is missing; expected one of {_quoted_list(IDENTITY_MODES)}"
        )
    elif isinstance(mode, str) and mode.lower() in IDENTITY_MODES:
        mode = mode.lower()
    else:
        hint = _did_you_mean(mode.lower(), IDENTITY_MODES) if isinstance(mode, str) else ""
        ctx.add(
            mode_path,
            f"expected one of {_quoted_list(IDENTITY_MODES)}, got {_describe(mode)}{hint}",
        )
        mode = _MISSING
    draft["mode"] = _BAD if mode is _MISSING else mode

    if mode is not _MISSING:
        for owner, keys in IDENTITY_MODE_KEYS.items():
            if owner == mode:
                continue
            for key in keys:
                if key in table:
                    ctx.add(
                        _key(p, key),
                        f"only used with mode = '{owner}'; {_IDENTITY_MODE_MEANING[mode]}",
                    )
    if mode == "implicit":
        draft["addresses"], draft["port"] = [], None
        return draft
    if mode == "tls":
        draft["addresses"], draft["port"] = [], None
        _parse_tls_identity(ctx, table, p, base_dir, draft)
        return draft
    if mode is _MISSING:
        _parse_tls_identity(ctx, table, p, base_dir, draft, required=False)

    # mode "address" (or unknown: still check what is there, to report everything at once)
    port: Any = None
    if "port" in table:
        port = ctx.port(table["port"], _key(p, "port"))
    draft["port"] = port

    addrs_path = _key(p, "addresses")
    if "addresses" in table:
        value = table["addresses"]
        if not isinstance(value, list):
            ctx.add(
                addrs_path,
                f"expected an array of IP addresses or CIDR networks, got {_describe(value)}",
            )
            draft["addresses"] = _BAD
        elif not value:
            ctx.add(addrs_path, "at least one IP address or CIDR network is required")
            draft["addresses"] = _BAD
        else:
            out = []
            for i, item in enumerate(value):
                net = _parse_network(ctx, item, _index(addrs_path, i))
                if net is not _BAD:
                    out.append((net, _index(addrs_path, i)))
            draft["addresses"] = out
    elif mode == "address":
        if remote is _BAD:
            pass  # the remote's own problem is reported; do not pile on
        elif remote is not None and _is_ip(remote.host):
            # Defaulted from the remote: name that key in any later problem about it.
            draft["addresses"] = [(_host_network(remote.host), _key(path, "remote"))]
        else:
            ctx.add(p, "identity.addresses is required when remote is not an IP address")
    _parse_reverse_dns(ctx, table, p, draft)
    return draft


def _parse_reverse_dns(ctx: _Ctx, table: dict[str, Any], p: str, draft: dict[str, Any]) -> None:
    """The address mode's optional reverse DNS check: reverse_dns and the keys tuning it."""
    if "reverse_dns" not in table:
        for key in REVERSE_DNS_KEYS:
            if key in table:
                ctx.add(
                    _key(p, key),
                    "only used with reverse_dns; without it there is no reverse DNS check "
                    "(e.g. reverse_dns = 'ground.example')",
                )
        return
    draft["reverse_dns"] = _parse_dns_name(ctx, table["reverse_dns"], _key(p, "reverse_dns"))
    draft["dnssec"] = ctx.boolean(table, "dnssec", p, False)
    resolver = ctx.endpoint(table, "resolver", p, DEFAULT_DNS_PORT)
    if isinstance(resolver, Endpoint):
        if not _is_ip(resolver.host):
            ctx.add(
                _key(p, "resolver"),
                f"expected an IP address (a resolver cannot be found by name), "
                f"got host name {resolver.host!r}",
            )
            resolver = _BAD
        elif _unspecified(resolver.host):
            ctx.add(
                _key(p, "resolver"),
                f"expected the resolver's address, got the wildcard address {resolver.host}",
            )
            resolver = _BAD
    draft["resolver"] = resolver
    draft["dns_timeout"] = ctx.duration(table, "dns_timeout", p, DEFAULT_DNS_TIMEOUT, positive=True)


def _parse_dns_name(ctx: _Ctx, value: Any, path: str) -> Any:
    """A host name as DNS names it: lowercase ASCII (IDNA A-labels), no trailing dot."""
    if not isinstance(value, str):
        ctx.add(path, f"expected a host name, got {_describe(value)}")
        return _BAD
    text = value.strip()
    if not text:
        ctx.add(path, "must not be empty")
        return _BAD
    if _is_ip(text):
        ctx.add(
            path,
            f"expected the host name the address's PTR record names, got the IP address "
            f"{text!r} (list addresses in identity.addresses)",
        )
        return _BAD
    if "*" in text:
        ctx.add(path, f"expected a host name without wildcards, got {value!r}")
        return _BAD
    if text.rstrip(".").rpartition(".")[2].isdigit():
        ctx.add(path, f"expected a host name, got {value!r} (its last label is numeric)")
        return _BAD
    try:
        return domain_to_ascii(text.rstrip("."))
    except IDNError as e:
        ctx.add(path, f"invalid host name {value!r}: {e}")
        return _BAD


def _parse_tls_identity(
    ctx: _Ctx,
    table: dict[str, Any],
    p: str,
    base_dir: Path,
    draft: dict[str, Any],
    *,
    required: bool = True,
) -> None:
    """The tls mode's trust anchors: ``ca`` (a CA bundle) and/or ``pins``."""
    draft["ca"] = _existing_file(ctx, table, "ca", p, base_dir)
    pins_path = _key(p, "pins")
    if "pins" in table:
        value = table["pins"]
        if not isinstance(value, list):
            ctx.add(pins_path, f"expected an array of certificate pins, got {_describe(value)}")
            draft["pins"] = _BAD
        elif not value:
            ctx.add(
                pins_path,
                "at least one pin is required (leave pins out to trust the ca bundle alone)",
            )
            draft["pins"] = _BAD
        else:
            pins: list[Pin] = []
            seen: dict[Pin, str] = {}
            for i, item in enumerate(value):
                where = _index(pins_path, i)
                if not isinstance(item, str):
                    ctx.add(where, f"expected a certificate pin string, got {_describe(item)}")
                    continue
                try:
                    pin = parse_pin(item)
                except ValueError as e:
                    ctx.add(where, str(e))
                    continue
                if pin in seen:
                    ctx.add(where, f"the same pin is already listed at {seen[pin]}")
                    continue
                seen[pin] = where
                pins.append(pin)
            draft["pins"] = pins
    elif required and "ca" not in table:
        ctx.add(
            p,
            "mode 'tls' needs ca (a CA bundle: the peer's chain must validate to it) or pins "
            "(the peer's certificate or key must match one), or both",
        )


def _parse_network(ctx: _Ctx, value: Any, path: str) -> Any:
    if not isinstance(value, str):
        ctx.add(path, f"expected an IP address or CIDR network, got {_describe(value)}")
        return _BAD
    text = value.strip()
    try:
        if "/" not in text:
            return _host_network(str(ipaddress.ip_address(text)))
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        ctx.add(path, f"expected an IP address or CIDR network, got {value!r}")
        return _BAD
    ctx.add(path, f"network {value!r} has host bits set; did you mean '{loose}'?")
    return _BAD


def _parse_peers(ctx: _Ctx, data: dict[str, Any], base_dir: Path) -> list[dict[str, Any]]:
    drafts: list[dict[str, Any]] = []
    if "peer" not in data:
        return drafts
    for i, item in enumerate(ctx.array_of_tables(data["peer"], "peer")):
        path = _index("peer", i)
        t = ctx.table(item, path, PEER_KEYS)
        if t is None:
            continue
        d: dict[str, Any] = {"path": path}
        name = ctx.string(t, "name", path)
        if name is not _BAD and not _PEER_NAME_RE.fullmatch(name):
            ctx.add(
                _key(path, "name"),
                f"expected letters, digits, '_', '.' or '-' only, got {name!r}",
            )
            name = _BAD
        d["name"] = name
        d["domains"] = ctx.domain_list(t, "domains", path, wildcard=True)
        d["direction"] = ctx.choice(t, "direction", path, DIRECTIONS, "both")
        d["connect"] = ctx.choice(t, "connect", path, CONNECT_MODES, "always")
        d["remote"] = ctx.endpoint(t, "remote", path, DEFAULT_S2S_PORT)
        d["listen"] = ctx.endpoint(t, "listen", path, DEFAULT_S2S_PORT)
        if d["remote"] is None and d["direction"] in ("both", "outbound"):
            ctx.add(
                _key(path, "remote"),
                f"required key is missing (direction is '{d['direction']}', so we dial this "
                "peer); set direction = 'inbound' if it always connects to us",
            )
            d["remote"] = _BAD
        if d["listen"] is None and d["direction"] in ("both", "inbound"):
            ctx.add(
                _key(path, "listen"),
                f"required key is missing (direction is '{d['direction']}', so this peer may "
                "connect to us); set direction = 'outbound' if we always dial it",
            )
            d["listen"] = _BAD
        d["source"] = _parse_source(ctx, t, path, d["remote"], d["listen"])
        d["identity"] = _parse_identity(ctx, t, path, d["remote"], base_dir)
        d["queue_limit"] = ctx.integer(t, "queue_limit", path, 10000, minimum=0)
        for key, (default, positive) in PEER_DURATIONS.items():
            d[key] = ctx.duration(t, key, path, default, positive=positive)
        _parse_peer_tls(ctx, t, path, base_dir, d)
        d["acks"] = ctx.boolean(t, "acks", path, False)
        d["ack_every"] = ctx.integer(t, "ack_every", path, 10, minimum=1)
        d["queue_bytes"] = ctx.integer(t, "queue_bytes", path, 64 * 1024 * 1024, minimum=1024)
        drafts.append(d)
    return drafts


def _parse_peer_tls(
    ctx: _Ctx, t: dict[str, Any], path: str, base_dir: Path, d: dict[str, Any]
) -> None:
    """``tls`` and our own ``certificate``/``key`` for this link (the server's are resolved
    in the cross-checks); ``identity.mode = "tls"`` needs ``tls = true``."""
    tls = d["tls"] = ctx.boolean(t, "tls", path, False)
    d["certificate"], d["key"] = None, None
    if tls is not False:
        d["certificate"], d["key"] = _certificate_pair(
            ctx, t, path, base_dir, "or neither to use those of [server]"
        )
    else:
        for key in ("certificate", "key"):
            if key in t:
                ctx.add(
                    _key(path, key),
                    "only used with tls = true (this link is plain TCP; set tls = true to "
                    "encrypt it)",
                )
        if d["identity"]["mode"] == "tls":
            given = "tls = false" if "tls" in t else "tls is not set (default false)"
            ctx.add(
                _key(path, "tls"),
                f"identity mode 'tls' needs tls = true: the peer's certificate is checked in "
                f"the TLS handshake; {given}",
            )


def _parse_source(ctx: _Ctx, t: dict[str, Any], path: str, remote: Any, listen: Any) -> Any:
    p = _key(path, "source")
    remote_version = _ip_version(remote.host) if isinstance(remote, Endpoint) else None
    if "source" not in t:
        # Default: dial from the address we listen on, so the peer sees the same address
        # whichever side opened the connection; only when that is a usable IP literal.
        if not isinstance(listen, Endpoint):
            return None
        host = listen.host
        version = _ip_version(host)
        if version is None or _unspecified(host):
            return None
        if remote_version is not None and remote_version != version:
            return None
        return host
    value = t["source"]
    if not isinstance(value, str):
        ctx.add(p, f"expected an IP address, got {_describe(value)}")
        return _BAD
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        ctx.add(p, f"expected an IP address (no port), got {value!r}")
        return _BAD
    if remote_version is not None and addr.version != remote_version:
        ctx.add(
            p,
            f"source {value!r} is IPv{addr.version} but remote {remote} is IPv{remote_version}",
        )
        return _BAD
    return str(addr)


# --------------------------------------------------------------------------- cross-checks


def _cross_check(
    ctx: _Ctx,
    server: dict[str, Any],
    host: Any,
    listener: Any,
    components: list[dict[str, Any]],
    peers: list[dict[str, Any]],
    upstream: Any = None,
) -> None:
    # Problems so far are the tables' own; a bad peer entry means some peer domain is unknown.
    peers_known = not any(_PEER_DOMAINS_PATH_RE.fullmatch(p.path) for p in ctx.problems)

    # Every domain (or wildcard) is claimed by exactly one place.
    claims: dict[str, str] = {}
    local: list[tuple[str, str]] = []  # our own domains: server and components

    def claim(domain: str, where: str, owner: str) -> None:
        if domain in claims:
            ctx.add(where, f"domain '{domain}' is already claimed by {claims[domain]}")
        else:
            claims[domain] = f"{owner} ({where})"

    if server["domains"] is not _BAD:
        for d, where in server["domains"]:
            claim(d, where, "the server")
            local.append((d, where))
    for c in components:
        if c["domain"] is not _BAD:
            claim(c["domain"], _key(c["path"], "domain"), f"component '{c['domain']}'")
            local.append((c["domain"], _key(c["path"], "domain")))
    for peer in peers:
        if peer["domains"] is _BAD:
            continue
        owner = f"peer '{peer['name']}'" if peer["name"] is not _BAD else "a peer"
        for d, where in peer["domains"]:
            claim(d, where, owner)
            # A peer's wildcard must not cover one of our own domains: the peer could then
            # send stanzas from our domains and we would route our own traffic to it.
            for ld, lwhere in local:
                if _wildcard_covers(d, ld):
                    ctx.add(where, f"wildcard '{d}' covers our own domain '{ld}' ({lwhere})")

    # Hosted domains are server domains (so the claims above already keep them from components
    # and peers); each listed once.
    if isinstance(host, dict) and host["domains"] not in (None, _BAD):
        ours = [d for d, _ in server["domains"]] if server["domains"] is not _BAD else []
        listed: dict[str, str] = {}
        for d, where in host["domains"]:
            if d in listed:
                ctx.add(where, f"domain '{d}' is already listed at {listed[d]}")
                continue
            listed[d] = where
            if ours and d not in ours:
                ctx.add(where, _not_a_server_domain(d, ours, claims, "a hosted domain"))

    # One stanza of the largest size fits in a client's output budget, with room for another.
    size = server.get("max_stanza_size", _BAD)
    budget = host["max_send_buffer"] if isinstance(host, dict) else _BAD
    if size is not _BAD and budget is not _BAD and budget < 2 * size:
        ctx.add(
            "host.max_send_buffer",
            f"must be at least twice server.max_stanza_size ({2 * size}), got {budget}",
        )

    # Peer names are unique.
    names: dict[str, str] = {}
    for peer in peers:
        name = peer["name"]
        if name is _BAD:
            continue
        where = _key(peer["path"], "name")
        if name in names:
            ctx.add(where, f"peer name '{name}' is already used by {names[name]}")
        else:
            names[name] = peer["path"]

    for peer in peers:
        # on-demand links are opened by us, so we must be allowed to dial.
        if peer["direction"] == "inbound" and peer["connect"] == "on-demand":
            ctx.add(
                _key(peer["path"], "connect"),
                "on-demand needs a peer we may dial (direction is 'inbound'); "
                "use connect = 'always' or another direction",
            )
        lo, hi = peer["reconnect_min"], peer["reconnect_max"]
        if lo is not _BAD and hi is not _BAD and lo > hi:
            ctx.add(
                _key(peer["path"], "reconnect_min"),
                f"must be <= reconnect_max ({hi:g}), got {lo:g}",
            )
        _resolve_peer_certificate(ctx, peer, server)

    _check_listeners(ctx, host, listener, components, peers)
    if isinstance(upstream, dict):
        _check_upstream(ctx, upstream, server, host, listener, peers, claims)
        _check_upstream_components(ctx, upstream, server, components, peers, peers_known)


def _resolve_peer_certificate(ctx: _Ctx, peer: dict[str, Any], server: dict[str, Any]) -> None:
    """Make the peer's certificate and key the effective ones: its own, else the server's.

    A TLS link needs one pair or the other; `_BAD` (a problem already reported) stays unknown.
    """
    if peer["certificate"] is None and peer["key"] is None:
        peer["certificate"], peer["key"] = server["certificate"], server["key"]
    if peer["tls"] is True and peer["certificate"] is None and peer["key"] is None:
        ctx.add(
            _key(peer["path"], "certificate"),
            "tls = true needs our certificate and key (here or in [server])",
        )


def _not_a_server_domain(domain: str, ours: list[str], claims: dict[str, str], what: str) -> str:
    owner = claims.get(domain)
    if owner is None:
        owner = next((o for d, o in claims.items() if _wildcard_covers(d, domain)), None)
    where = f"; it belongs to {owner}" if owner is not None else ""
    return (
        f"'{domain}' is not one of server.domains ({', '.join(ours)}){where}; "
        f"{what} must be one of this server's own domains"
    )


def _check_upstream(
    ctx: _Ctx,
    up: dict[str, Any],
    server: dict[str, Any],
    host: Any,
    listener: Any,
    peers: list[dict[str, Any]],
    claims: dict[str, str],
) -> None:
    """Resolve ``up["resolved_domains"]`` (the fronted domains) and check the upstream table."""
    path = up["path"]
    ours: list[tuple[str, str]] | None = None if server["domains"] is _BAD else server["domains"]

    # What [host] serves itself: domain -> where it says so; None when that is unknown.
    hosted: dict[str, str] | None = {}
    hosted_by = "host.domains"
    if host is _BAD or (isinstance(host, dict) and host["domains"] is _BAD):
        hosted = None
    elif isinstance(host, dict) and host["domains"] is None:
        hosted_by = "host.domains is not set, so it hosts every server domain"
        hosted = {d: hosted_by for d, _ in ours or []}
    elif isinstance(host, dict):
        for d, where in host["domains"]:
            hosted.setdefault(d, where)

    resolved: list[str] = []
    if up["domains"] is None:
        # Default: every server domain that [host] does not serve.
        if ours is not None and hosted is not None:
            resolved = [d for d, _ in ours if d not in hosted]
            if not resolved:
                ctx.add(
                    _key(path, "domains"),
                    f"nothing left to front: every server domain "
                    f"({', '.join(d for d, _ in ours)}) is hosted by [host] ({hosted_by}); add "
                    "the upstream server's domains to server.domains and leave them out of "
                    "host.domains",
                )
    elif up["domains"] is not _BAD:
        ours_names = [d for d, _ in ours] if ours is not None else []
        listed: dict[str, str] = {}
        for d, where in up["domains"]:
            if d in listed:
                ctx.add(where, f"domain '{d}' is already listed at {listed[d]}")
                continue
            listed[d] = where
            resolved.append(d)
            if ours is not None and d not in ours_names:
                ctx.add(where, _not_a_server_domain(d, ours_names, claims, "a fronted domain"))
            elif hosted is not None and d in hosted:
                ctx.add(
                    where,
                    f"'{d}' is hosted by [host] ({hosted[d]}); a domain is either hosted by "
                    "zerolink or fronted for the upstream, not both",
                )
    up["resolved_domains"] = tuple(resolved)

    lo, hi = up["reconnect_min"], up["reconnect_max"]
    if lo is not _BAD and hi is not _BAD and lo > hi:
        ctx.add(_key(path, "reconnect_min"), f"must be <= reconnect_max ({hi:g}), got {lo:g}")

    # The upstream is another server: dialing one of our own listeners would loop back to us.
    address = up["address"]
    if isinstance(address, Endpoint):
        ours_listening: list[tuple[str, Any]] = [("component_listener.listen", listener)]
        if isinstance(host, dict):
            for key in ("listen", "direct_tls_listen"):
                ours_listening.append((_key(host["path"], key), host[key]))
        for peer in peers:
            ours_listening.append((_key(peer["path"], "listen"), peer["listen"]))
        for where, ep in ours_listening:
            if isinstance(ep, Endpoint) and _dials_into(address, ep):
                ctx.add(
                    _key(path, "address"),
                    f"{address} is our own listener {where} ({ep}); address must be the "
                    "upstream server's component port",
                )
                break


def _dials_into(address: Endpoint, listener: Endpoint) -> bool:
    """Dialing `address` certainly reaches our `listener`: the same endpoint, or a loopback
    address on the port of a wildcard listener of the same family."""
    if address == listener:
        return True
    if address.port != listener.port or not _loopback(address.host):
        return False
    return _unspecified(listener.host) and _ip_version(address.host) == _ip_version(listener.host)


def _check_upstream_components(
    ctx: _Ctx,
    up: dict[str, Any],
    server: dict[str, Any],
    components: list[dict[str, Any]],
    peers: list[dict[str, Any]],
    peers_known: bool,
) -> None:
    """Each upstream component is a remote domain: served by a peer, not ours, listed once."""
    ours: dict[str, str] = {}
    if server["domains"] is not _BAD:
        for d, where in server["domains"]:
            ours.setdefault(d, where)
    local: dict[str, str] = {}
    for c in components:
        if c["domain"] is not _BAD:
            local.setdefault(c["domain"], _key(c["path"], "domain"))
    remote = [d for p in peers if p["domains"] is not _BAD for d, _ in p["domains"]]
    why = "an upstream component stands for a remote domain, reachable over a [[peer]] link"
    listed: dict[str, str] = {}
    for c in up["components"]:
        d = c["domain"]
        if d is _BAD:
            continue
        where = _key(c["path"], "domain")
        if d in listed:
            ctx.add(where, f"domain '{d}' is already listed at {listed[d]}")
            continue
        listed[d] = where
        if d in ours:
            ctx.add(where, f"'{d}' is one of our own domains ({ours[d]}); {why}")
        elif d in local:
            ctx.add(where, f"'{d}' is the domain of a local component ({local[d]}); {why}")
        elif peers_known and not any(r == d or _wildcard_covers(r, d) for r in remote):
            served = f"peer domains: {', '.join(remote)}" if remote else "there are no peers"
            ctx.add(where, f"'{d}' is not served by any peer ({served}); {why}")


def _check_listeners(
    ctx: _Ctx,
    host: Any,
    listener: Any,
    components: list[dict[str, Any]],
    peers: list[dict[str, Any]],
) -> None:
    if components and listener is None:
        ctx.add(
            "component_listener",
            "required table [component_listener] is missing; [[component]] entries need it",
        )

    listening = [p for p in peers if isinstance(p["listen"], Endpoint)]

    # The component listener must be a socket of its own.
    if isinstance(listener, Endpoint):
        for peer in listening:
            if _endpoints_clash(listener, peer["listen"]):
                ctx.add(
                    "component_listener.listen",
                    f"{listener} clashes with the listen endpoint {peer['listen']} of "
                    f"{peer['path']}; the component listener needs its own address or port",
                )

    # The host's client listeners: sockets of their own, apart from each other too.
    if isinstance(host, dict):
        _check_host_listeners(ctx, host, listener, listening)

    # Distinct peer listen endpoints that still cannot both be bound (wildcard + specific).
    seen: list[dict[str, Any]] = []
    for peer in listening:
        for other in seen:
            if other["listen"] != peer["listen"] and _endpoints_clash(
                other["listen"], peer["listen"]
            ):
                ctx.add(
                    _key(peer["path"], "listen"),
                    f"{peer['listen']} overlaps {other['listen']} ({other['path']}.listen): "
                    "a wildcard address covers every address on its port, so both cannot be "
                    "bound; give both peers the same listen endpoint or use different ports",
                )
                break
        seen.append(peer)

    # Peers sharing one listener must be told apart by their identity.
    groups: dict[Endpoint, list[dict[str, Any]]] = {}
    for peer in listening:
        groups.setdefault(peer["listen"], []).append(peer)
    for endpoint, group in groups.items():
        if len(group) < 2:
            continue
        _check_shared_tls(ctx, endpoint, group)
        for peer in group:
            if peer["identity"]["mode"] == "implicit":
                others = ", ".join(
                    f"'{o['name']}' ({o['path']})" if o["name"] is not _BAD else o["path"]
                    for o in group
                    if o is not peer
                )
                ctx.add(
                    peer["identity"]["path"],
                    f"mode 'implicit' accepts every connection on {endpoint}, which is shared "
                    f"with {others}; give this peer its own listen endpoint or use "
                    "mode = 'address' (or 'tls' on a TLS link)",
                )
        address_peers = [
            p
            for p in group
            if p["identity"]["mode"] == "address"
            and p["identity"]["addresses"] is not _BAD
            and p["identity"]["port"] is not _BAD
        ]
        for j, peer in enumerate(address_peers):
            for other in address_peers[:j]:
                _check_overlap(ctx, endpoint, other, peer)


def _check_shared_tls(ctx: _Ctx, endpoint: Endpoint, group: list[dict[str, Any]]) -> None:
    """Peers sharing a listener agree on tls; on a TLS listener, they present one certificate.

    Problems are reported at the later peers, against the first one (in file order) whose
    setting is known.
    """

    def named(peer: dict[str, Any]) -> str:
        return f"'{peer['name']}' ({peer['path']})" if peer["name"] is not _BAD else peer["path"]

    known = [p for p in group if p["tls"] is not _BAD]
    if not known:
        return
    first = known[0]
    for peer in known[1:]:
        if peer["tls"] != first["tls"]:
            mine, theirs = str(peer["tls"]).lower(), str(first["tls"]).lower()
            ctx.add(
                _key(peer["path"], "tls"),
                f"tls = {mine}, but {endpoint} is shared with {named(first)}, which has "
                f"tls = {theirs}; peers sharing a listen endpoint must all use TLS or all not "
                "(a TLS listener expects a handshake from the first byte)",
            )
    if first["tls"] is not True:
        return
    # The listener's certificate is sent before the connecting peer is known.
    pairs = [
        p
        for p in known
        if p["tls"] is True and p["certificate"] not in (None, _BAD) and p["key"] is not _BAD
    ]
    for peer in pairs[1:]:
        for key in ("certificate", "key"):
            if peer[key] != pairs[0][key]:
                ctx.add(
                    _key(peer["path"], key),
                    f"{peer[key]} differs from {pairs[0][key]}, the {key} of "
                    f"{named(pairs[0])} on the shared TLS listener {endpoint}; the listener "
                    "presents its certificate before it knows which peer is connecting, so "
                    "peers sharing it need the same certificate and key (give them their own "
                    "listen endpoints, or the same pair, e.g. [server]'s)",
                )
                break


def _check_host_listeners(
    ctx: _Ctx, host: dict[str, Any], listener: Any, listening: list[dict[str, Any]]
) -> None:
    def clash(ep: Endpoint, other: Endpoint, owners: str) -> str:
        if ep == other:
            return f"{ep} is also {owners}; the client listener needs its own address or port"
        return (
            f"{ep} overlaps {other} ({owners}): a wildcard address covers every address on its "
            "port, so both cannot be bound; give the client listener its own address or port"
        )

    mine: list[tuple[str, Endpoint]] = []
    for key in ("listen", "direct_tls_listen"):
        ep = host[key]
        if not isinstance(ep, Endpoint):
            continue
        where = _key(host["path"], key)
        for other_where, other in mine:
            if _endpoints_clash(ep, other):
                ctx.add(where, clash(ep, other, other_where))
        mine.append((where, ep))
        if isinstance(listener, Endpoint) and _endpoints_clash(ep, listener):
            ctx.add(where, clash(ep, listener, "component_listener.listen"))
        # One problem per peer listen endpoint, naming every peer on it.
        by_endpoint: dict[Endpoint, list[str]] = {}
        for peer in listening:
            if _endpoints_clash(ep, peer["listen"]):
                by_endpoint.setdefault(peer["listen"], []).append(_key(peer["path"], "listen"))
        for other, owners in by_endpoint.items():
            ctx.add(where, clash(ep, other, ", ".join(owners)))


def _check_overlap(
    ctx: _Ctx, endpoint: Endpoint, first: dict[str, Any], second: dict[str, Any]
) -> None:
    a, b = first["identity"], second["identity"]
    if a["port"] is not None and b["port"] is not None and a["port"] != b["port"]:
        return
    for net_b, where_b in b["addresses"]:
        for net_a, where_a in a["addresses"]:
            if net_a.version == net_b.version and net_a.overlaps(net_b):
                ctx.add(
                    where_b,
                    f"{net_b} overlaps {net_a} ({where_a}) on the shared listener {endpoint}; "
                    "a connection from there could not be told apart (use distinct addresses, "
                    "distinct identity ports, or separate listen endpoints)",
                )
                return


# --------------------------------------------------------------------------- entry points


def parse_config(
    data: dict[str, Any],
    *,
    base_dir: Path,
    source: str = "<config>",
    path: Path | None = None,
) -> Config:
    """Validate a parsed TOML document; raises `ConfigError` listing every problem.

    `base_dir` resolves relative paths; `path` (the file, if any) names the defaults:
    server.name is its stem and data_dir is "<stem>-data" ("zerolink" without a file).
    """
    ctx = _Ctx()
    stem = path.stem if path is not None else "zerolink"
    base_dir = Path(base_dir)
    if not isinstance(data, dict):  # pragma: no cover - tomllib always yields a dict
        raise ConfigError(source, [ConfigProblem("", "expected a TOML table at the top level")])
    ctx.table(data, "", TOP_KEYS)
    server = _parse_server(ctx, data, base_dir, stem)
    host = _parse_host(ctx, data, base_dir)
    listener, listener_budget, listener_limits = _parse_component_listener(ctx, data)
    components = _parse_components(ctx, data)
    peers = _parse_peers(ctx, data, base_dir)
    upstream = _parse_upstream(ctx, data)
    _cross_check(ctx, server, host, listener, components, peers, upstream)
    if ctx.problems:
        raise ConfigError(source, ctx.problems)

    return Config(
        path=path,
        server=ServerConfig(
            name=server["name"],
            domains=tuple(d for d, _ in server["domains"]),
            data_dir=server["data_dir"],
            log_level=server["log_level"],
            max_stanza_size=server["max_stanza_size"],
            max_depth=server["max_depth"],
            certificate=server["certificate"],
            key=server["key"],
            handshake_timeout=server["handshake_timeout"],
            max_unauthenticated=server["max_unauthenticated"],
            max_unauthenticated_per_address=server["max_unauthenticated_per_address"],
        ),
        component_listener=(
            ComponentListenerConfig(
                listen=listener, max_send_buffer=listener_budget, **listener_limits
            )
            if listener is not None
            else None
        ),
        components=tuple(
            ComponentConfig(
                c["domain"],
                c["secret"],
                c["max_send_buffer"] if c["max_send_buffer"] is not None else listener_budget,
            )
            for c in components
        ),
        peers=tuple(_build_peer(p) for p in peers),
        host=_build_host(host, server) if host is not None else None,
        upstream=_build_upstream(upstream) if upstream is not None else None,
    )


def _build_host(d: dict[str, Any], server: dict[str, Any]) -> HostConfig:
    domains = d["domains"] if d["domains"] is not None else server["domains"]
    return HostConfig(
        domains=tuple(x for x, _ in domains),
        listen=d["listen"],
        direct_tls_listen=d["direct_tls_listen"],
        tls_required=d["tls_required"],
        certificate=d["certificate"],
        key=d["key"],
        offline_limit=d["offline_limit"],
        auth_timeout=d["auth_timeout"],
        max_unauthenticated=d["max_unauthenticated"],
        max_unauthenticated_per_address=d["max_unauthenticated_per_address"],
        step_timeout=d["step_timeout"],
        auth_failures=d["auth_failures"],
        auth_window=d["auth_window"],
        max_sessions_per_user=d["max_sessions_per_user"],
        **{key: d[key] for key in HOST_LIMITS},
    )


def _build_upstream(d: dict[str, Any]) -> UpstreamConfig:
    return UpstreamConfig(
        address=d["address"],
        domains=d["resolved_domains"],
        components=tuple(UpstreamComponent(c["domain"], c["secret"]) for c in d["components"]),
        queue_limit=d["queue_limit"],
        queue_bytes=d["queue_bytes"],
        **{key: d[key] for key in UPSTREAM_DURATIONS},
    )


def _build_peer(d: dict[str, Any]) -> PeerConfig:
    ident = d["identity"]
    return PeerConfig(
        name=d["name"],
        domains=tuple(x for x, _ in d["domains"]),
        remote=d["remote"],
        listen=d["listen"],
        source=d["source"],
        identity=IdentityConfig(
            mode=ident["mode"],
            addresses=tuple(n for n, _ in ident["addresses"]),
            port=ident["port"],
            ca=ident["ca"],
            pins=tuple(ident["pins"]),
            reverse_dns=ident["reverse_dns"],
            dnssec=ident["dnssec"],
            resolver=ident["resolver"],
            dns_timeout=ident["dns_timeout"],
        ),
        direction=d["direction"],
        connect=d["connect"],
        queue_limit=d["queue_limit"],
        **{key: d[key] for key in PEER_DURATIONS},
        tls=d["tls"],
        certificate=d["certificate"],
        key=d["key"],
        acks=d["acks"],
        ack_every=d["ack_every"],
        queue_bytes=d["queue_bytes"],
    )


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML configuration file; raises `ConfigError` listing every problem.

    Relative paths inside the file resolve against the file's folder.
    """
    source = str(path)
    file = Path(path).expanduser().absolute()
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, [ConfigProblem("", "configuration file not found")]) from None
    except IsADirectoryError:
        raise ConfigError(
            source, [ConfigProblem("", "is a directory, not a configuration file")]
        ) from None
    except OSError as e:
        raise ConfigError(
            source, [ConfigProblem("", f"cannot read configuration file: {e.strerror or e}")]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            source, [ConfigProblem("", f"not valid UTF-8 (byte offset {e.start})")]
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, [ConfigProblem("", _toml_error_message(e, text))]) from None
    return parse_config(data, base_dir=file.parent, source=source, path=file)


def _toml_error_message(error: tomllib.TOMLDecodeError, text: str) -> str:
    msg = str(error)
    m = _TOML_POSITION_RE.match(msg)
    if m:
        return f"TOML syntax error at line {m['line']}, column {m['col']}: {m['msg']}"
    m = _TOML_EOF_RE.match(msg)
    if m:
        lines = text.splitlines() or [""]
        return (
            f"TOML syntax error at end of file (line {len(lines)}, column "
            f"{len(lines[-1]) + 1}): {m['msg']}"
        )
    return f"TOML syntax error: {msg}"  # pragma: no cover - tomllib always gives a position


# --------------------------------------------------------------------------- reporting


def warnings_for(cfg: Config) -> list[str]:
    """Warnings about a valid configuration, for the application to log."""
    out = []
    for peer in cfg.peers:
        if peer.identity.mode == "implicit":
            where = f" on {peer.listen}" if peer.listen is not None else ""
            out.append(
                f"peer '{peer.name}': identity mode 'implicit' accepts any connection{where} as "
                "this peer (XEP-0361 §4.2: NOT RECOMMENDED); prefer mode = 'address'"
            )
        if peer.tls and peer.identity.mode != "tls":
            out.append(
                f"peer '{peer.name}': tls = true with identity mode '{peer.identity.mode}': the "
                "link is encrypted but the peer is identified only by its address; prefer "
                "mode = 'tls' with ca or pins (XEP-0361 §5: mutual TLS)"
            )
    host = cfg.host
    if host is not None and not host.tls_required and not _loopback(host.listen.host):
        out.append(
            f"host: tls_required = false lets clients on {host.listen} authenticate without "
            "TLS, over a non-loopback address; prefer tls_required = true"
        )
    return out


def _loopback(host: str) -> bool:
    return _is_ip(host) and ipaddress.ip_address(host).is_loopback


def log_warnings(cfg: Config, log: logging.Logger | None = None) -> list[str]:
    """Log `warnings_for(cfg)` at WARNING on the ``zerolink.config`` logger; return them."""
    found = warnings_for(cfg)
    for text in found:
        (log or logger).warning("%s", text)
    return found


def _format_network(net: IPNetwork) -> str:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def _format_identity(ident: IdentityConfig) -> str:
    if ident.mode == "implicit":
        return "implicit (any connection on the listener; NOT RECOMMENDED)"
    if ident.mode == "address":
        addrs = ", ".join(_format_network(n) for n in ident.addresses)
        port = f"source port {ident.port}" if ident.port is not None else "any source port"
        text = f"address {addrs} ({port})"
        if ident.reverse_dns is not None:
            text += f" + reverse DNS {ident.reverse_dns}"
            details = ["DNSSEC"] if ident.dnssec else []
            if ident.resolver is not None:
                details.append(f"resolver {ident.resolver}")
            if details:
                text += f" ({', '.join(details)})"
        return text
    if ident.mode == "tls":
        anchors = []
        if ident.ca is not None:
            anchors.append(f"CA {ident.ca}")
        if ident.pins:
            n = len(ident.pins)
            anchors.append(f"{n} pin" if n == 1 else f"{n} pins")
        return f"tls ({' or '.join(anchors)})"
    return ident.mode  # pragma: no cover - future modes


def _format_tls(peer: PeerConfig) -> str:
    if not peer.tls:
        return "off"
    return f"on, certificate {peer.certificate} (key {peer.key})"


def _summary_host(cfg: Config) -> list[str]:
    h = cfg.host
    if h is None:
        return ["host: none (no hosted users)"]
    starttls = "STARTTLS required" if h.tls_required else "STARTTLS optional"
    if h.certificate is not None:
        cert = f"{h.certificate} (key {h.key})"
    else:
        cert = f"self-signed, generated at first start in {cfg.server.data_dir}"
    direct = str(h.direct_tls_listen) if h.direct_tls_listen is not None else "none"
    return [
        f"host: {', '.join(h.domains)}",
        f"  clients: {h.listen} ({starttls})",
        f"  direct TLS: {direct}",
        f"  certificate: {cert}",
        f"  per user: {h.max_sessions_per_user} sessions, {h.offline_limit} offline messages "
        f"({_size(h.offline_bytes)}), {h.roster_max_items} roster items",
        f"  unauthenticated: at most {h.max_unauthenticated} connections, "
        f"{h.auth_timeout:g}s each to authenticate",
        f"  per client: at most {_size(h.max_send_buffer)} of output it has not taken",
    ]


def _size(n: int) -> str:
    """Bytes for a person: '4 MiB', '512 KiB', '1000 bytes'."""
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


def _summary_upstream(cfg: Config) -> list[str]:
    u = cfg.upstream
    if u is None:
        return ["upstream: none"]
    return [
        f"upstream: {u.address}",
        f"  fronted domains: {', '.join(u.domains)}",
        *(f"  component {c.domain}" for c in u.components),
        f"  reconnect {u.reconnect_min:g}-{u.reconnect_max:g}s, connect timeout "
        f"{u.connect_timeout:g}s",
        f"  while down: at most {u.queue_limit} stanzas, {u.stanza_timeout:g}s each",
    ]


def summary(cfg: Config) -> str:
    """A short multi-line description for ``zerolink check-config`` (no secrets)."""
    s = cfg.server
    lines = [
        f"server '{s.name}'" + (f" ({cfg.path})" if cfg.path is not None else ""),
        f"  domains: {', '.join(s.domains)}",
        f"  data dir: {s.data_dir}",
        f"  log level: {s.log_level}",
    ]
    if s.certificate is not None:
        lines.append(f"  link certificate: {s.certificate} (key {s.key})")
    lines += _summary_host(cfg)
    if cfg.component_listener is not None:
        lines.append(f"component listener: {cfg.component_listener.listen}")
        if cfg.components:
            lines.extend(f"  component {c.domain}" for c in cfg.components)
        else:
            lines.append("  (no components)")
    else:
        lines.append("component listener: none")
    lines += _summary_upstream(cfg)
    if not cfg.peers:
        lines.append("peers: none")
    for p in cfg.peers:
        remote = str(p.remote) if p.remote is not None else "-"
        if p.remote is not None:
            remote += f" (from {p.source})" if p.source is not None else " (from any address)"
        lines += [
            f"peer '{p.name}'",
            f"  domains: {', '.join(p.domains)}",
            f"  remote: {remote}",
            f"  listen: {p.listen if p.listen is not None else '-'}",
            f"  direction: {p.direction}, connect: {p.connect}"
            + (f" (idle timeout {p.idle_timeout:g}s)" if p.connect == "on-demand" else ""),
            f"  tls: {_format_tls(p)}",
            f"  identity: {_format_identity(p.identity)}",
        ]
    return "\n".join(line.rstrip() for line in lines)
