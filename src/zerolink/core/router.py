"""The router: one route per domain, no knowledge of transports.

A route is anything with ``deliver(stanza)``: a peer link, a component attachment, later the
local host or an upstream server. Stanzas no route takes are answered per RFC 6120 §10.4:
``service-unavailable`` for one of our own domains with nothing behind it, otherwise
``remote-server-not-found``. Error replies never produce further errors (RFC 6120 §8.3.1), so
a bounce cannot loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from zerolink.domains import DomainSet
from zerolink.errors import StanzaError
from zerolink.jid import JIDError, jid_domain
from zerolink.stanza import error_reply
from zerolink.xml.element import Element

log = logging.getLogger("zerolink.router")


class Route(Protocol):
    """Something that takes stanzas for a set of domains.

    A route that can fill up (a peer link's queue, a component's socket) also has
    ``congested() -> bool``, ``when_drained(callback)`` and ``cancel_drained(callback)``: the
    connections feeding it stop reading while it is congested (see `zerolink.net.flow`).
    """

    name: str

    def deliver(self, stanza: Element) -> None: ...


class Router:
    """Maps each domain to exactly one route."""

    def __init__(self, own_domains: Iterable[str]) -> None:
        self._own = set(own_domains)
        self._routes: dict[str, Route] = {}  # pattern (exact or *.suffix) -> route
        self._patterns = DomainSet()
        self._local_patterns: list[str] = list(self._own)
        self._local = DomainSet(self._local_patterns)
        self.bounced = 0
        #: Called by every connection before it writes (set by the daemon when links keep a
        #: durable log): output never overtakes the commit of what was accepted before it.
        self.before_output: Callable[[], None] | None = None

    def add(self, patterns: Iterable[str], route: Route, *, local: bool) -> None:
        """Register `route` for exact domains and ``*.suffix`` patterns.

        `local` routes (components, hosted domains) make their domains "ours": a peer may
        address stanzas to them.
        """
        for p in patterns:
            if p in self._routes:
                raise ValueError(f"domain {p} already has a route ({self._routes[p].name})")
            self._routes[p] = route
            if local:
                self._local_patterns.append(p)
        self._patterns = DomainSet(self._routes)
        self._local = DomainSet(self._local_patterns)

    def is_local(self, domain: str) -> bool:
        """True for domains this server answers for (its own and its local routes')."""
        return domain in self._local

    def route_for(self, domain: str) -> Route | None:
        pattern = self._patterns.match(domain)
        return self._routes[pattern] if pattern is not None else None

    def route(self, stanza: Element) -> Route | None:
        """Hand a stanza to the route for its `to` domain, or bounce it.

        Returns the route it was delivered to (None when it bounced), so that the caller can
        ask a route that may fill up whether it is congested (backpressure, see
        `zerolink.net.flow`).
        """
        to = stanza.attrib.get("to")
        if not to:
            self.bounce(stanza, StanzaError("jid-malformed", "stanza without 'to'"))
            return None
        try:
            domain = jid_domain(to)
        except JIDError as exc:
            self.bounce(stanza, StanzaError("jid-malformed", str(exc)))
            return None
        route = self.route_for(domain)
        if route is not None:
            route.deliver(stanza)
            return route
        if domain in self._own:
            self.bounce(stanza, StanzaError("service-unavailable"))
        else:
            self.bounce(stanza, StanzaError("remote-server-not-found", f"no route to {domain}"))
        return None

    def bounce(self, stanza: Element, error: StanzaError) -> None:
        """Send the error reply for `stanza` back to its sender (never for an error)."""
        reply = error_reply(stanza, error)
        if reply is None:
            log.debug("dropped %s (%s), no error reply for an error", stanza.tag, error.condition)
            return
        self.bounced += 1
        payload = next(stanza.elements(), None) if stanza.local == "iq" else None
        log.info(
            "bounced %s%s from %s to %s: %s%s",
            stanza.local,
            f" ({payload.namespace} {payload.local})" if payload is not None else "",
            stanza.attrib.get("from"),
            stanza.attrib.get("to"),
            error.condition,
            f" ({error.text})" if error.text else "",
        )
        if reply.attrib.get("to"):
            self.route(reply)
