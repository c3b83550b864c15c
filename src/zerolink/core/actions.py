"""What the link's sans-I/O logic asks its driver to do (`zerolink.net.link` carries it out).

`LinkPolicy` and `ReliableDelivery` return lists of these, in the order they must be done.
"""

from __future__ import annotations

from dataclasses import dataclass

from zerolink.core.carrier import Carrier
from zerolink.errors import StanzaError
from zerolink.xml.element import Element


@dataclass(slots=True, frozen=True)
class Dial:
    """Open a connection to the peer (report `dial_failed` or `dial_ended` afterwards)."""


@dataclass(slots=True, frozen=True)
class SendOn:
    """Send a stanza on this connection."""

    conn: Carrier
    stanza: Element


@dataclass(slots=True, frozen=True)
class SendSync:
    """Send ``<sync/>`` on this connection: what we received, where our numbering resumes,
    the largest stanza we accept (reliable delivery; not a stanza, not counted)."""

    conn: Carrier
    received: int
    next_seq: int
    max_size: int


@dataclass(slots=True, frozen=True)
class SendAck:
    """Send ``<a h=''/>``: we have received (and keep on disk) this many stanzas."""

    conn: Carrier
    received: int


@dataclass(slots=True, frozen=True)
class RequestAck:
    """Send ``<r/>``: the peer has been quiet while stanzas wait for its acknowledgement."""

    conn: Carrier


@dataclass(slots=True, frozen=True)
class Close:
    """Close this connection with the close exchange (the opener is done with it)."""

    conn: Carrier


@dataclass(slots=True, frozen=True)
class Abort:
    """Drop this connection at once (it is dead: no acknowledgement came)."""

    conn: Carrier


@dataclass(slots=True, frozen=True)
class Bounce:
    """Return this stanza to its sender with this error."""

    stanza: Element
    error: StanzaError


@dataclass(slots=True, frozen=True)
class Commit:
    """Records were added to the link log: commit them at the end of this loop turn."""


@dataclass(slots=True, frozen=True)
class Wake:
    """A stanza waits and no connection can take it: dial if allowed, start its deadline."""


@dataclass(slots=True, frozen=True)
class Released:
    """Acknowledgements freed room in the log: feeders held back may read again."""


Action = (
    Dial
    | SendOn
    | SendSync
    | SendAck
    | RequestAck
    | Close
    | Abort
    | Bounce
    | Commit
    | Wake
    | Released
)

#: Shared instances of the actions without fields.
COMMIT = Commit()
WAKE = Wake()
RELEASED = Released()
DIAL = Dial()
