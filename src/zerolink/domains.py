"""Sets of domain names with exact entries and ``*.suffix`` wildcards (XEP-0361 §4.4).

A peer serves a list such as ``["ground.example", "*.ground.example"]``; every stanza's
``from`` is checked against it, so matching is a dict lookup per label, not a scan.
"""

from __future__ import annotations

from collections.abc import Iterable


class DomainSet:
    """Exact domains plus wildcard suffixes; entries must already be normalized."""

    __slots__ = ("_exact", "_suffixes", "patterns")

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns: tuple[str, ...] = tuple(patterns)
        self._exact: set[str] = set()
        self._suffixes: set[str] = set()
        for p in self.patterns:
            if p.startswith("*."):
                self._suffixes.add(p[2:])
            else:
                self._exact.add(p)

    def __contains__(self, domain: object) -> bool:
        return isinstance(domain, str) and self.match(domain) is not None

    def match(self, domain: str) -> str | None:
        """The pattern that covers `domain` (exact first, then the longest suffix), or None.

        "*.x" matches any domain strictly below x, at any depth.
        """
        if domain in self._exact:
            return domain
        if not self._suffixes:
            return None
        rest = domain
        while True:
            _, dot, rest = rest.partition(".")
            if not dot:
                return None
            if rest in self._suffixes:
                return "*." + rest

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __repr__(self) -> str:
        return f"DomainSet({list(self.patterns)!r})"
