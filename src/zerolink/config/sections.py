"""Reading each table of the file into a *draft*, and building the dataclasses from drafts.

A draft is a dict keyed by field name, holding `BAD` for values that failed (their problem is
recorded) and the key path of every list entry, for the cross-checks to name. Keys whose
`Setting` has a generic kind are read by `read_fields`; the few with rules of their own
(kind "custom", or depending on another key) are read here by hand.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from pathlib import Path
from typing import Any

from zerolink.config.schema import (
    IDENTITY_MODES,
    ComponentConfig,
    ComponentListenerConfig,
    Config,
    Endpoint,
    HostConfig,
    IdentityConfig,
    PeerConfig,
    ServerConfig,
    UpstreamComponent,
    UpstreamConfig,
    setting_of,
    settings,
    toml_key,
    toml_keys,
)
from zerolink.config.values import (
    BAD,
    MISSING,
    Ctx,
    describe,
    did_you_mean,
    host_network,
    index_path,
    ip_version,
    is_ip,
    key_path,
    quoted_list,
    unspecified,
)
from zerolink.idn import IDNError, domain_to_ascii
from zerolink.pins import Pin, parse_pin

_PEER_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")

# What each identity mode checks, for the problem about another mode's key.
_IDENTITY_MODE_MEANING = {
    "address": "mode 'address' identifies the peer by its source address",
    "tls": "mode 'tls' identifies the peer by its certificate",
    "implicit": "mode 'implicit' accepts any connection on the listener",
}


def read_fields(
    ctx: Ctx, t: dict[str, Any], path: str, cls: type, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Every key of `cls` with a generic kind (not in `skip`) -> {field name: value}."""
    draft: dict[str, Any] = {}
    for name, s in settings(cls):
        if s.kind != "custom" and name not in skip:
            draft[name] = ctx.read(s, t, toml_key(name, s), path)
    return draft


def build(cls: type, draft: dict[str, Any], **values: Any) -> Any:
    """`cls` from a draft without problems; `values` are those the caller worked out."""
    kwargs: dict[str, Any] = {}
    for name, s in settings(cls):
        if name in values:
            kwargs[name] = values[name]
        elif s.kind == "domains":
            kwargs[name] = tuple(d for d, _ in draft[name])
        else:
            kwargs[name] = draft[name]
    return cls(**kwargs)


# --------------------------------------------------------------------------- tables


def read_server(ctx: Ctx, data: dict[str, Any], stem: str) -> dict[str, Any]:
    path = "server"
    # certificate and key stay `BAD` (unknown) unless the table is read.
    draft: dict[str, Any] = {"domains": BAD, "certificate": BAD, "key": BAD}
    if "server" not in data:
        ctx.add(path, "required table [server] is missing (it needs at least 'domains')")
        return draft
    t = ctx.table(data["server"], path, toml_keys(ServerConfig))
    if t is None:
        return draft
    name = ctx.string(t, "name", path, default=stem)
    if name is not BAD and any(not c.isprintable() for c in name):
        ctx.add(key_path(path, "name"), f"must not contain control characters, got {name!r}")
        name = BAD
    draft["name"] = name
    draft.update(read_fields(ctx, t, path, ServerConfig))
    data_dir = ctx.string(t, "data_dir", path, default=f"{stem}-data")
    if data_dir is not BAD:
        data_dir = ctx.base_dir / Path(os.path.expanduser(data_dir))
    draft["data_dir"] = data_dir
    _certificate_pair(
        ctx, t, path, draft, "or neither (each peer with tls = true then needs its own)"
    )
    return draft


def read_host(ctx: Ctx, data: dict[str, Any]) -> Any:
    """The optional [host] table -> a draft; None when absent, `BAD` when not a table.

    ``domains`` is None when the key is absent (default: every server domain, resolved once the
    server's domains are known); otherwise [(domain, key path)] of the valid entries.
    """
    path = "host"
    if path not in data:
        return None
    t = ctx.table(data[path], path, toml_keys(HostConfig))
    if t is None:
        return BAD
    draft: dict[str, Any] = {"path": path, **read_fields(ctx, t, path, HostConfig)}
    # Both or neither: without both, the server generates its own self-signed pair.
    _certificate_pair(
        ctx, t, path, draft, "or neither for a self-signed certificate generated in data_dir"
    )
    return draft


def _certificate_pair(
    ctx: Ctx, t: dict[str, Any], path: str, draft: dict[str, Any], neither: str
) -> None:
    """Optional ``certificate`` and ``key`` files, both or neither, into the draft.

    Each is None when absent and `BAD` when invalid; with only one of them given, the missing
    one is the problem and both are `BAD`. `neither` ends that problem's message, saying
    what leaving out both means here.
    """
    for key in ("certificate", "key"):
        if key not in draft:
            draft[key] = ctx.existing_file(t, key, path)
    for have, missing in (("certificate", "key"), ("key", "certificate")):
        if have in t and missing not in t:
            ctx.add(
                key_path(path, missing),
                f"required key is missing ({have} is set; give both certificate and key, "
                f"{neither})",
            )
            draft["certificate"], draft["key"] = BAD, BAD
            return


def read_component_listener(ctx: Ctx, data: dict[str, Any]) -> Any:
    """The optional [component_listener] -> a draft; None when absent, `BAD` when not a table.

    Its ``max_send_buffer`` is every component's default, so a bad table yields its default.
    """
    path = "component_listener"
    if path not in data:
        return None
    t = ctx.table(data[path], path, toml_keys(ComponentListenerConfig))
    if t is None:
        return BAD
    return read_fields(ctx, t, path, ComponentListenerConfig)


def read_components(ctx: Ctx, data: dict[str, Any]) -> list[dict[str, Any]]:
    drafts: list[dict[str, Any]] = []
    if "component" not in data:
        return drafts
    for i, item in enumerate(ctx.array_of_tables(data["component"], "component")):
        path = index_path("component", i)
        t = ctx.table(item, path, toml_keys(ComponentConfig))
        if t is None:
            continue
        draft = {"path": path, "domain": _read_domain(ctx, t, path, ComponentConfig)}
        # max_send_buffer None: the listener's
        drafts.append({**draft, **read_fields(ctx, t, path, ComponentConfig)})
    return drafts


def _read_domain(ctx: Ctx, t: dict[str, Any], path: str, cls: type) -> Any:
    """A required single ``domain`` (no wildcard)."""
    p = key_path(path, "domain")
    if "domain" in t:
        return ctx.domain(t["domain"], p, wildcard=False)
    hint = setting_of(cls, "domain").hint
    ctx.add(p, "required key is missing" + (f" ({hint})" if hint else ""))
    return BAD


def read_upstream(ctx: Ctx, data: dict[str, Any]) -> Any:
    """The optional [upstream] table -> a draft; None when absent, `BAD` when not a table.

    ``domains`` is None when the key is absent (default: the server domains not hosted by
    [host], resolved in the cross-checks); otherwise [(domain, key path)] of the valid entries.
    ``components`` is [{"path", "domain", "secret"}], one per valid [[upstream.component]].
    """
    path = "upstream"
    if path not in data:
        return None
    t = ctx.table(data[path], path, toml_keys(UpstreamConfig))
    if t is None:
        return BAD
    draft: dict[str, Any] = {"path": path, **read_fields(ctx, t, path, UpstreamConfig)}
    draft["components"] = _read_upstream_components(ctx, t, path)
    return draft


def _read_upstream_components(
    ctx: Ctx, t: dict[str, Any], upstream_path: str
) -> list[dict[str, Any]]:
    path = key_path(upstream_path, "component")
    if "component" not in t or t["component"] == []:
        ctx.add(
            path,
            "at least one [[upstream.component]] is required: one per remote domain (served by "
            "a peer) that zerolink connects to the upstream as",
        )
        return []
    drafts = []
    for i, item in enumerate(ctx.array_of_tables(t["component"], path)):
        item_path = index_path(path, i)
        ct = ctx.table(item, item_path, toml_keys(UpstreamComponent))
        if ct is None:
            continue
        draft = {"path": item_path, "domain": _read_domain(ctx, ct, item_path, UpstreamComponent)}
        drafts.append({**draft, **read_fields(ctx, ct, item_path, UpstreamComponent)})
    return drafts


# --------------------------------------------------------------------------- peers


def read_peers(ctx: Ctx, data: dict[str, Any]) -> list[dict[str, Any]]:
    drafts: list[dict[str, Any]] = []
    if "peer" not in data:
        return drafts
    for i, item in enumerate(ctx.array_of_tables(data["peer"], "peer")):
        path = index_path("peer", i)
        t = ctx.table(item, path, toml_keys(PeerConfig))
        if t is None:
            continue
        d: dict[str, Any] = {"path": path}
        name = ctx.string(t, "name", path)
        if name is not BAD and not _PEER_NAME_RE.fullmatch(name):
            ctx.add(
                key_path(path, "name"),
                f"expected letters, digits, '_', '.' or '-' only, got {name!r}",
            )
            name = BAD
        d["name"] = name
        d.update(read_fields(ctx, t, path, PeerConfig, skip=("certificate", "key")))
        _require_endpoints(ctx, path, d)
        d["source"] = _read_source(ctx, t, path, d["remote"], d["listen"])
        d["identity"] = _read_identity(ctx, t, path, d["remote"])
        _read_peer_tls(ctx, t, path, d)
        d["compression_dictionary"] = _read_dictionary(ctx, t, path)
        drafts.append(d)
    return drafts


def _read_dictionary(ctx: Ctx, t: dict[str, Any], path: str) -> Any:
    """``compression_dictionary``: "builtin", "none", or an existing file (its bytes are the
    dictionary, the same file on both sides)."""
    value = t.get("compression_dictionary", "builtin")
    if value in ("builtin", "none"):
        return value
    return ctx.existing_file(t, "compression_dictionary", path)


def _require_endpoints(ctx: Ctx, path: str, d: dict[str, Any]) -> None:
    """``remote`` is needed when we may dial, ``listen`` when the peer may connect to us."""
    direction = d["direction"]
    if d["remote"] is None and direction in ("both", "outbound"):
        ctx.add(
            key_path(path, "remote"),
            f"required key is missing (direction is '{direction}', so we dial this "
            "peer); set direction = 'inbound' if it always connects to us",
        )
        d["remote"] = BAD
    if d["listen"] is None and direction in ("both", "inbound"):
        ctx.add(
            key_path(path, "listen"),
            f"required key is missing (direction is '{direction}', so this peer may "
            "connect to us); set direction = 'outbound' if we always dial it",
        )
        d["listen"] = BAD


def _read_peer_tls(ctx: Ctx, t: dict[str, Any], path: str, d: dict[str, Any]) -> None:
    """Our own ``certificate``/``key`` for this link (the server's are resolved in the
    cross-checks); ``identity.mode = "tls"`` needs ``tls = true``."""
    d["certificate"], d["key"] = None, None
    if d["tls"] is not False:
        del d["certificate"], d["key"]
        _certificate_pair(ctx, t, path, d, "or neither to use those of [server]")
        return
    for key in ("certificate", "key"):
        if key in t:
            ctx.add(
                key_path(path, key),
                "only used with tls = true (this link is plain TCP; set tls = true to encrypt it)",
            )
    if d["identity"]["mode"] == "tls":
        given = "tls = false" if "tls" in t else "tls is not set (default false)"
        ctx.add(
            key_path(path, "tls"),
            f"identity mode 'tls' needs tls = true: the peer's certificate is checked in "
            f"the TLS handshake; {given}",
        )


def _read_source(ctx: Ctx, t: dict[str, Any], path: str, remote: Any, listen: Any) -> Any:
    p = key_path(path, "source")
    remote_version = ip_version(remote.host) if isinstance(remote, Endpoint) else None
    if "source" not in t:
        # Default: dial from the address we listen on, so the peer sees the same address
        # whichever side opened the connection; only when that is a usable IP literal.
        if not isinstance(listen, Endpoint):
            return None
        host = listen.host
        version = ip_version(host)
        if version is None or unspecified(host):
            return None
        if remote_version is not None and remote_version != version:
            return None
        return host
    value = t["source"]
    if not isinstance(value, str):
        ctx.add(p, f"expected an IP address, got {describe(value)}")
        return BAD
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        ctx.add(p, f"expected an IP address (no port), got {value!r}")
        return BAD
    if remote_version is not None and addr.version != remote_version:
        ctx.add(
            p,
            f"source {value!r} is IPv{addr.version} but remote {remote} is IPv{remote_version}",
        )
        return BAD
    return str(addr)


# --------------------------------------------------------------------------- identity


def _mode_keys(mode: str) -> list[str]:
    """The identity keys that only `mode` uses."""
    return [toml_key(n, s) for n, s in settings(IdentityConfig) if s.mode == mode]


def _identity_defaults() -> dict[str, Any]:
    """The identity draft before reading: its defaults, mode and address keys unknown."""
    draft: dict[str, Any] = {}
    for f in dataclasses.fields(IdentityConfig):
        draft[f.name] = list(f.default) if isinstance(f.default, tuple) else f.default
    draft.update(mode=BAD, addresses=BAD, port=BAD)
    return draft


def _read_identity(ctx: Ctx, t: dict[str, Any], path: str, remote: Any) -> dict[str, Any]:
    """-> {"mode", "addresses": [(network, path)] | BAD, "port", "reverse_dns", "dnssec",
    "resolver", "dns_timeout", "ca", "pins": [Pin] | BAD, "path"}.

    Keys of the other modes are problems; with an invalid mode every key given is checked,
    to report everything at once.
    """
    p = key_path(path, "identity")
    raw = t.get("identity", {"mode": "address"})
    if isinstance(raw, str):
        raw = {"mode": raw}
        table: dict[str, Any] | None = raw
    elif isinstance(raw, dict):
        table = ctx.table(raw, p, toml_keys(IdentityConfig))
    else:
        ctx.add(
            p,
            f"expected a table or one of the strings {quoted_list(IDENTITY_MODES)}, "
            f"got {describe(raw)}",
        )
        table = None
    draft = {**_identity_defaults(), "path": p}
    if table is None:
        return draft

    mode = _read_mode(ctx, table, p)
    draft["mode"] = BAD if mode is MISSING else mode

    if mode is not MISSING:
        for owner in IDENTITY_MODES:
            if owner == mode:
                continue
            for key in _mode_keys(owner):
                if key in table:
                    ctx.add(
                        key_path(p, key),
                        f"only used with mode = '{owner}'; {_IDENTITY_MODE_MEANING[mode]}",
                    )
    if mode == "implicit":
        draft["addresses"], draft["port"] = [], None
        return draft
    if mode == "tls":
        draft["addresses"], draft["port"] = [], None
        _read_tls_identity(ctx, table, p, draft)
        return draft
    if mode is MISSING:
        _read_tls_identity(ctx, table, p, draft, required=False)

    # mode "address" (or unknown: still check what is there, to report everything at once)
    draft["port"] = ctx.port(table["port"], key_path(p, "port")) if "port" in table else None
    if "addresses" in table:
        draft["addresses"] = _read_addresses(ctx, table["addresses"], key_path(p, "addresses"))
    elif mode == "address":
        if remote is BAD:
            pass  # the remote's own problem is reported; do not pile on
        elif remote is not None and is_ip(remote.host):
            # Defaulted from the remote: name that key in any later problem about it.
            draft["addresses"] = [(host_network(remote.host), key_path(path, "remote"))]
        else:
            ctx.add(p, "identity.addresses is required when remote is not an IP address")
    _read_reverse_dns(ctx, table, p, draft)
    return draft


def _read_mode(ctx: Ctx, table: dict[str, Any], p: str) -> Any:
    """The identity mode in lowercase, or `MISSING` (its problem recorded)."""
    mode_path = key_path(p, "mode")
    mode = table.get("mode", MISSING)
    if mode is MISSING:
        ctx.add(
            mode_path, f"required key is missing; expected one of {quoted_list(IDENTITY_MODES)}"
        )
        return MISSING
    if isinstance(mode, str) and mode.lower() in IDENTITY_MODES:
        return mode.lower()
    hint = did_you_mean(mode.lower(), IDENTITY_MODES) if isinstance(mode, str) else ""
    ctx.add(
        mode_path,
        f"expected one of {quoted_list(IDENTITY_MODES)}, got {describe(mode)}{hint}",
    )
    return MISSING


def _read_addresses(ctx: Ctx, value: Any, addrs_path: str) -> Any:
    if not isinstance(value, list):
        ctx.add(
            addrs_path,
            f"expected an array of IP addresses or CIDR networks, got {describe(value)}",
        )
        return BAD
    if not value:
        ctx.add(addrs_path, "at least one IP address or CIDR network is required")
        return BAD
    out = []
    for i, item in enumerate(value):
        net = _read_network(ctx, item, index_path(addrs_path, i))
        if net is not BAD:
            out.append((net, index_path(addrs_path, i)))
    return out


def _read_reverse_dns(ctx: Ctx, table: dict[str, Any], p: str, draft: dict[str, Any]) -> None:
    """The address mode's optional reverse DNS check: reverse_dns and the keys tuning it."""
    tuning = [(n, s) for n, s in settings(IdentityConfig) if s.needs == "reverse_dns"]
    if "reverse_dns" not in table:
        for name, s in tuning:
            if toml_key(name, s) in table:
                ctx.add(
                    key_path(p, toml_key(name, s)),
                    "only used with reverse_dns; without it there is no reverse DNS check "
                    "(e.g. reverse_dns = 'ground.example')",
                )
        return
    draft["reverse_dns"] = _read_dns_name(ctx, table["reverse_dns"], key_path(p, "reverse_dns"))
    for name, s in tuning:
        draft[name] = ctx.read(s, table, toml_key(name, s), p)
    resolver = draft["resolver"]
    if isinstance(resolver, Endpoint):
        if not is_ip(resolver.host):
            ctx.add(
                key_path(p, "resolver"),
                f"expected an IP address (a resolver cannot be found by name), "
                f"got host name {resolver.host!r}",
            )
            draft["resolver"] = BAD
        elif unspecified(resolver.host):
            ctx.add(
                key_path(p, "resolver"),
                f"expected the resolver's address, got the wildcard address {resolver.host}",
            )
            draft["resolver"] = BAD


def _read_dns_name(ctx: Ctx, value: Any, path: str) -> Any:
    """A host name as DNS names it: lowercase ASCII (IDNA A-labels), no trailing dot."""
    if not isinstance(value, str):
        ctx.add(path, f"expected a host name, got {describe(value)}")
        return BAD
    text = value.strip()
    if not text:
        ctx.add(path, "must not be empty")
        return BAD
    if is_ip(text):
        ctx.add(
            path,
            f"expected the host name the address's PTR record names, got the IP address "
            f"{text!r} (list addresses in identity.addresses)",
        )
        return BAD
    if "*" in text:
        ctx.add(path, f"expected a host name without wildcards, got {value!r}")
        return BAD
    if text.rstrip(".").rpartition(".")[2].isdigit():
        ctx.add(path, f"expected a host name, got {value!r} (its last label is numeric)")
        return BAD
    try:
        return domain_to_ascii(text.rstrip("."))
    except IDNError as e:
        ctx.add(path, f"invalid host name {value!r}: {e}")
        return BAD


def _read_tls_identity(
    ctx: Ctx, table: dict[str, Any], p: str, draft: dict[str, Any], *, required: bool = True
) -> None:
    """The tls mode's trust anchors: ``ca`` (a CA bundle) and/or ``pins``."""
    draft["ca"] = ctx.read(setting_of(IdentityConfig, "ca"), table, "ca", p)
    if "pins" in table:
        draft["pins"] = _read_pins(ctx, table["pins"], key_path(p, "pins"))
    elif required and "ca" not in table:
        ctx.add(
            p,
            "mode 'tls' needs ca (a CA bundle: the peer's chain must validate to it) or pins "
            "(the peer's certificate or key must match one), or both",
        )


def _read_pins(ctx: Ctx, value: Any, pins_path: str) -> Any:
    if not isinstance(value, list):
        ctx.add(pins_path, f"expected an array of certificate pins, got {describe(value)}")
        return BAD
    if not value:
        ctx.add(
            pins_path,
            "at least one pin is required (leave pins out to trust the ca bundle alone)",
        )
        return BAD
    pins: list[Pin] = []
    seen: dict[Pin, str] = {}
    for i, item in enumerate(value):
        where = index_path(pins_path, i)
        if not isinstance(item, str):
            ctx.add(where, f"expected a certificate pin string, got {describe(item)}")
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
    return pins


def _read_network(ctx: Ctx, value: Any, path: str) -> Any:
    if not isinstance(value, str):
        ctx.add(path, f"expected an IP address or CIDR network, got {describe(value)}")
        return BAD
    text = value.strip()
    try:
        if "/" not in text:
            return host_network(str(ipaddress.ip_address(text)))
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        ctx.add(path, f"expected an IP address or CIDR network, got {value!r}")
        return BAD
    ctx.add(path, f"network {value!r} has host bits set; did you mean '{loose}'?")
    return BAD


# --------------------------------------------------------------------------- building


def build_config(
    path: Path | None,
    server: dict[str, Any],
    host: Any,
    listener: Any,
    components: list[dict[str, Any]],
    peers: list[dict[str, Any]],
    upstream: Any,
) -> Config:
    """The dataclasses from drafts that passed every check."""
    budget = (
        listener["max_send_buffer"]
        if listener is not None
        else setting_of(ComponentListenerConfig, "max_send_buffer").default
    )
    return Config(
        path=path,
        server=build(ServerConfig, server),
        component_listener=(
            build(ComponentListenerConfig, listener) if listener is not None else None
        ),
        components=tuple(
            build(
                ComponentConfig,
                c,
                max_send_buffer=c["max_send_buffer"]
                if c["max_send_buffer"] is not None
                else budget,
            )
            for c in components
        ),
        peers=tuple(_build_peer(p) for p in peers),
        host=_build_host(host, server) if host is not None else None,
        upstream=_build_upstream(upstream) if upstream is not None else None,
    )


def _build_host(d: dict[str, Any], server: dict[str, Any]) -> HostConfig:
    domains = d["domains"] if d["domains"] is not None else server["domains"]
    return build(HostConfig, d, domains=tuple(x for x, _ in domains))


def _build_upstream(d: dict[str, Any]) -> UpstreamConfig:
    return build(
        UpstreamConfig,
        d,
        domains=d["resolved_domains"],
        components=tuple(build(UpstreamComponent, c) for c in d["components"]),
    )


def _build_peer(d: dict[str, Any]) -> PeerConfig:
    ident = d["identity"]
    identity = build(
        IdentityConfig,
        ident,
        addresses=tuple(n for n, _ in ident["addresses"]),
        pins=tuple(ident["pins"]),
    )
    return build(PeerConfig, d, identity=identity)
