"""Reporting on a valid configuration: warnings for the log, and the check-config summary."""

from __future__ import annotations

import logging

from zerolink.config.schema import Config, IdentityConfig, IPNetwork, PeerConfig
from zerolink.config.values import loopback

logger = logging.getLogger("zerolink.config")


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
    if host is not None and not host.tls_required and not loopback(host.listen.host):
        out.append(
            f"host: tls_required = false lets clients on {host.listen} authenticate without "
            "TLS, over a non-loopback address; prefer tls_required = true"
        )
    return out


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
