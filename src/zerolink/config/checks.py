"""The cross-checks: rules between keys and tables, run over the drafts of every table.

They see whatever was valid (`BAD` marks the rest, whose problem is already recorded), so one
run reports every problem: domains claimed twice, listeners that clash, peers that cannot be
told apart, an upstream that would dial ourselves.
"""

from __future__ import annotations

import re
from typing import Any

from zerolink.config.schema import Endpoint
from zerolink.config.values import (
    BAD,
    Ctx,
    endpoints_clash,
    ip_version,
    key_path,
    loopback,
    unspecified,
    wildcard_covers,
)

# A problem at one of these paths means some peer domain may be missing from the drafts.
_PEER_DOMAINS_PATH_RE = re.compile(r"peer(\[\d+\](\.domains(\[\d+\])?)?)?")


def cross_check(
    ctx: Ctx,
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

    if server["domains"] is not BAD:
        for d, where in server["domains"]:
            claim(d, where, "the server")
            local.append((d, where))
    for c in components:
        if c["domain"] is not BAD:
            claim(c["domain"], key_path(c["path"], "domain"), f"component '{c['domain']}'")
            local.append((c["domain"], key_path(c["path"], "domain")))
    for peer in peers:
        if peer["domains"] is BAD:
            continue
        owner = f"peer '{peer['name']}'" if peer["name"] is not BAD else "a peer"
        for d, where in peer["domains"]:
            claim(d, where, owner)
            # A peer's wildcard must not cover one of our own domains: the peer could then
            # send stanzas from our domains and we would route our own traffic to it.
            for ld, lwhere in local:
                if wildcard_covers(d, ld):
                    ctx.add(where, f"wildcard '{d}' covers our own domain '{ld}' ({lwhere})")

    # Hosted domains are server domains (so the claims above already keep them from components
    # and peers); each listed once.
    if isinstance(host, dict) and host["domains"] not in (None, BAD):
        ours = [d for d, _ in server["domains"]] if server["domains"] is not BAD else []
        listed: dict[str, str] = {}
        for d, where in host["domains"]:
            if d in listed:
                ctx.add(where, f"domain '{d}' is already listed at {listed[d]}")
                continue
            listed[d] = where
            if ours and d not in ours:
                ctx.add(where, _not_a_server_domain(d, ours, claims, "a hosted domain"))

    # One stanza of the largest size fits in a client's output budget, with room for another.
    size = server.get("max_stanza_size", BAD)
    budget = host["max_send_buffer"] if isinstance(host, dict) else BAD
    if size is not BAD and budget is not BAD and budget < 2 * size:
        ctx.add(
            "host.max_send_buffer",
            f"must be at least twice server.max_stanza_size ({2 * size}), got {budget}",
        )

    # Peer names are unique.
    names: dict[str, str] = {}
    for peer in peers:
        name = peer["name"]
        if name is BAD:
            continue
        where = key_path(peer["path"], "name")
        if name in names:
            ctx.add(where, f"peer name '{name}' is already used by {names[name]}")
        else:
            names[name] = peer["path"]

    for peer in peers:
        # on-demand links are opened by us, so we must be allowed to dial.
        if peer["direction"] == "inbound" and peer["connect"] == "on-demand":
            ctx.add(
                key_path(peer["path"], "connect"),
                "on-demand needs a peer we may dial (direction is 'inbound'); "
                "use connect = 'always' or another direction",
            )
        lo, hi = peer["reconnect_min"], peer["reconnect_max"]
        if lo is not BAD and hi is not BAD and lo > hi:
            ctx.add(
                key_path(peer["path"], "reconnect_min"),
                f"must be <= reconnect_max ({hi:g}), got {lo:g}",
            )
        _resolve_peer_certificate(ctx, peer, server)

    _check_listeners(ctx, host, listener, components, peers)
    if isinstance(upstream, dict):
        _check_upstream(ctx, upstream, server, host, listener, peers, claims)
        _check_upstream_components(ctx, upstream, server, components, peers, peers_known)


def _resolve_peer_certificate(ctx: Ctx, peer: dict[str, Any], server: dict[str, Any]) -> None:
    """Make the peer's certificate and key the effective ones: its own, else the server's.

    A TLS link needs one pair or the other; `BAD` (a problem already reported) stays unknown.
    """
    if peer["certificate"] is None and peer["key"] is None:
        peer["certificate"], peer["key"] = server["certificate"], server["key"]
    if peer["tls"] is True and peer["certificate"] is None and peer["key"] is None:
        ctx.add(
            key_path(peer["path"], "certificate"),
            "tls = true needs our certificate and key (here or in [server])",
        )


def _not_a_server_domain(domain: str, ours: list[str], claims: dict[str, str], what: str) -> str:
    owner = claims.get(domain)
    if owner is None:
        owner = next((o for d, o in claims.items() if wildcard_covers(d, domain)), None)
    where = f"; it belongs to {owner}" if owner is not None else ""
    return (
        f"'{domain}' is not one of server.domains ({', '.join(ours)}){where}; "
        f"{what} must be one of this server's own domains"
    )


def _check_upstream(
    ctx: Ctx,
    up: dict[str, Any],
    server: dict[str, Any],
    host: Any,
    listener: Any,
    peers: list[dict[str, Any]],
    claims: dict[str, str],
) -> None:
    """Resolve ``up["resolved_domains"]`` (the fronted domains) and check the upstream table."""
    path = up["path"]
    ours: list[tuple[str, str]] | None = None if server["domains"] is BAD else server["domains"]

    # What [host] serves itself: domain -> where it says so; None when that is unknown.
    hosted: dict[str, str] | None = {}
    hosted_by = "host.domains"
    if host is BAD or (isinstance(host, dict) and host["domains"] is BAD):
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
                    key_path(path, "domains"),
                    f"nothing left to front: every server domain "
                    f"({', '.join(d for d, _ in ours)}) is hosted by [host] ({hosted_by}); add "
                    "the upstream server's domains to server.domains and leave them out of "
                    "host.domains",
                )
    elif up["domains"] is not BAD:
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
    if lo is not BAD and hi is not BAD and lo > hi:
        ctx.add(key_path(path, "reconnect_min"), f"must be <= reconnect_max ({hi:g}), got {lo:g}")

    # The upstream is another server: dialing one of our own listeners would loop back to us.
    address = up["address"]
    if isinstance(address, Endpoint):
        ours_listening: list[tuple[str, Any]] = [("component_listener.listen", listener)]
        if isinstance(host, dict):
            for key in ("listen", "direct_tls_listen"):
                ours_listening.append((key_path(host["path"], key), host[key]))
        for peer in peers:
            ours_listening.append((key_path(peer["path"], "listen"), peer["listen"]))
        for where, ep in ours_listening:
            if isinstance(ep, Endpoint) and _dials_into(address, ep):
                ctx.add(
                    key_path(path, "address"),
                    f"{address} is our own listener {where} ({ep}); address must be the "
                    "upstream server's component port",
                )
                break


def _dials_into(address: Endpoint, listener: Endpoint) -> bool:
    """Dialing `address` certainly reaches our `listener`: the same endpoint, or a loopback
    address on the port of a wildcard listener of the same family."""
    if address == listener:
        return True
    if address.port != listener.port or not loopback(address.host):
        return False
    return unspecified(listener.host) and ip_version(address.host) == ip_version(listener.host)


def _check_upstream_components(
    ctx: Ctx,
    up: dict[str, Any],
    server: dict[str, Any],
    components: list[dict[str, Any]],
    peers: list[dict[str, Any]],
    peers_known: bool,
) -> None:
    """Each upstream component is a remote domain: served by a peer, not ours, listed once."""
    ours: dict[str, str] = {}
    if server["domains"] is not BAD:
        for d, where in server["domains"]:
            ours.setdefault(d, where)
    local: dict[str, str] = {}
    for c in components:
        if c["domain"] is not BAD:
            local.setdefault(c["domain"], key_path(c["path"], "domain"))
    remote = [d for p in peers if p["domains"] is not BAD for d, _ in p["domains"]]
    why = "an upstream component stands for a remote domain, reachable over a [[peer]] link"
    listed: dict[str, str] = {}
    for c in up["components"]:
        d = c["domain"]
        if d is BAD:
            continue
        where = key_path(c["path"], "domain")
        if d in listed:
            ctx.add(where, f"domain '{d}' is already listed at {listed[d]}")
            continue
        listed[d] = where
        if d in ours:
            ctx.add(where, f"'{d}' is one of our own domains ({ours[d]}); {why}")
        elif d in local:
            ctx.add(where, f"'{d}' is the domain of a local component ({local[d]}); {why}")
        elif peers_known and not any(r == d or wildcard_covers(r, d) for r in remote):
            served = f"peer domains: {', '.join(remote)}" if remote else "there are no peers"
            ctx.add(where, f"'{d}' is not served by any peer ({served}); {why}")


def _check_listeners(
    ctx: Ctx,
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
            if endpoints_clash(listener, peer["listen"]):
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
            if other["listen"] != peer["listen"] and endpoints_clash(
                other["listen"], peer["listen"]
            ):
                ctx.add(
                    key_path(peer["path"], "listen"),
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
                    f"'{o['name']}' ({o['path']})" if o["name"] is not BAD else o["path"]
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
            and p["identity"]["addresses"] is not BAD
            and p["identity"]["port"] is not BAD
        ]
        for j, peer in enumerate(address_peers):
            for other in address_peers[:j]:
                _check_overlap(ctx, endpoint, other, peer)


def _check_shared_tls(ctx: Ctx, endpoint: Endpoint, group: list[dict[str, Any]]) -> None:
    """Peers sharing a listener agree on tls; on a TLS listener, they present one certificate.

    Problems are reported at the later peers, against the first one (in file order) whose
    setting is known.
    """

    def named(peer: dict[str, Any]) -> str:
        return f"'{peer['name']}' ({peer['path']})" if peer["name"] is not BAD else peer["path"]

    known = [p for p in group if p["tls"] is not BAD]
    if not known:
        return
    first = known[0]
    for peer in known[1:]:
        if peer["tls"] != first["tls"]:
            mine, theirs = str(peer["tls"]).lower(), str(first["tls"]).lower()
            ctx.add(
                key_path(peer["path"], "tls"),
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
        if p["tls"] is True and p["certificate"] not in (None, BAD) and p["key"] is not BAD
    ]
    for peer in pairs[1:]:
        for key in ("certificate", "key"):
            if peer[key] != pairs[0][key]:
                ctx.add(
                    key_path(peer["path"], key),
                    f"{peer[key]} differs from {pairs[0][key]}, the {key} of "
                    f"{named(pairs[0])} on the shared TLS listener {endpoint}; the listener "
                    "presents its certificate before it knows which peer is connecting, so "
                    "peers sharing it need the same certificate and key (give them their own "
                    "listen endpoints, or the same pair, e.g. [server]'s)",
                )
                break


def _check_host_listeners(
    ctx: Ctx, host: dict[str, Any], listener: Any, listening: list[dict[str, Any]]
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
        where = key_path(host["path"], key)
        for other_where, other in mine:
            if endpoints_clash(ep, other):
                ctx.add(where, clash(ep, other, other_where))
        mine.append((where, ep))
        if isinstance(listener, Endpoint) and endpoints_clash(ep, listener):
            ctx.add(where, clash(ep, listener, "component_listener.listen"))
        # One problem per peer listen endpoint, naming every peer on it.
        by_endpoint: dict[Endpoint, list[str]] = {}
        for peer in listening:
            if endpoints_clash(ep, peer["listen"]):
                by_endpoint.setdefault(peer["listen"], []).append(key_path(peer["path"], "listen"))
        for other, owners in by_endpoint.items():
            ctx.add(where, clash(ep, other, ", ".join(owners)))


def _check_overlap(
    ctx: Ctx, endpoint: Endpoint, first: dict[str, Any], second: dict[str, Any]
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
