"""The bound client sessions of the local host and their RFC 6121 state.

`ClientSession` is what the host needs of a client connection (`zerolink.net.c2s_conn`
implements it); `Resources` finds a session by connection, full JID or user. Its own module so
that the roster and presence logic can both name these without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from zerolink.jid import JID
from zerolink.xml.element import Element

__all__ = ["ClientSession", "Resource", "Resources"]


class ClientSession(Protocol):
    """A client connection, as the asyncio code implements it."""

    jid: JID | None  # full JID once bound

    def send(self, stanza: Element) -> None: ...

    def send_stored(self, stanzas: list[Element], done: Callable[[], None]) -> None:
        """Send stanzas that stay in the offline store until `done` is called: once the client
        has them all (its TCP acknowledged them), never if the connection ends first. They
        are not given back to the host when they are not delivered (they are still stored)."""
        ...

    def kick(self, condition: str, text: str | None = None) -> None:
        """Send a stream error and close (e.g. 'conflict' when a new session takes the JID)."""
        ...


@dataclass(eq=False)
class Resource:
    """One bound session and its RFC 6121 state."""

    session: ClientSession
    jid: JID  # full
    available: bool = False  # has sent available presence (and not unavailable since)
    presence: Element | None = None  # last available broadcast presence, 'from' = jid, no 'to'
    priority: int = 0
    interested: bool = False  # has requested the roster (RFC 6121 §2.1.6)
    versioning: bool = False  # ... with 'ver' (RFC 6121 §2.6): its pushes carry 'ver'
    directed: dict[str, None] = field(default_factory=dict)  # JIDs sent directed presence

    @property
    def bare(self) -> str:
        return str(self.jid.bare)


class Resources:
    """The bound sessions, by session and by user."""

    def __init__(self) -> None:
        self._by_user: dict[str, dict[str, Resource]] = {}
        self._by_session: dict[int, Resource] = {}

    def add(self, res: Resource) -> None:
        assert res.jid.resource is not None
        self._by_user.setdefault(res.bare, {})[res.jid.resource] = res
        self._by_session[id(res.session)] = res

    def remove(self, res: Resource) -> None:
        self._by_session.pop(id(res.session), None)
        mine = self._by_user.get(res.bare)
        if mine is not None and mine.get(res.jid.resource or "") is res:
            del mine[res.jid.resource or ""]
            if not mine:
                del self._by_user[res.bare]

    def of(self, session: ClientSession) -> Resource | None:
        return self._by_session.get(id(session))

    def get(self, jid: JID | None) -> Resource | None:
        """The resource bound to the full JID `jid`."""
        if jid is None or jid.resource is None:
            return None
        return self._by_user.get(str(jid.bare), {}).get(jid.resource)

    def connected(self, user: str) -> list[Resource]:
        return list(self._by_user.get(user, {}).values())

    def users(self) -> list[str]:
        """The bare JIDs with at least one bound session."""
        return list(self._by_user)

    def available(self, user: str) -> list[Resource]:
        return [r for r in self._by_user.get(user, {}).values() if r.available]

    def interested(self, user: str) -> list[Resource]:
        return [r for r in self._by_user.get(user, {}).values() if r.interested]
