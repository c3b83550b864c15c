"""What the link's sans-I/O logic knows of one connection (the driver's object behind it).

`LinkPolicy` and `ReliableDelivery` read these facts and name connections in their actions;
they never call a connection. `zerolink.net.x2x_conn.X2XConnection` satisfies it.
"""

from __future__ import annotations

from typing import Protocol


class Carrier(Protocol):
    """One connection of a peer link, as the protocol logic sees it."""

    @property
    def outbound(self) -> bool:
        """We opened it (XEP-0361 §4.3: the opener sends on it and closes it)."""
        ...

    @property
    def peer(self) -> str:
        """The other end's address, for the log."""
        ...

    @property
    def is_open(self) -> bool:
        """Its stream is open: stanzas may be sent on it."""
        ...

    @property
    def paused(self) -> bool:
        """Its transport pushes back: send nothing more until it drains."""
        ...

    @property
    def reading_paused(self) -> bool:
        """Reading from it is paused for a slow local route (stanzas are waiting)."""
        ...

    @property
    def opened_at(self) -> float:
        """When its TCP connection was established."""
        ...

    @property
    def last_stanza(self) -> float:
        """When a stanza last went over it (either way)."""
        ...
