"""One XEP-0361 connection: drives an `X2XSession` and reports to its `PeerLink`.

Backpressure (`zerolink.net.flow`): a stanza from the peer routed to a congested route (a
component that does not read fast enough) pauses reading this connection until it drains, so
the peer's TCP waits instead of this daemon buffering without limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zerolink.net.driver import SessionDriver
from zerolink.net.flow import Inflow
from zerolink.net.sockets import tune
from zerolink.proto import x2x
from zerolink.xml.element import Element

if TYPE_CHECKING:
    from zerolink.net.link import PeerLink

log = logging.getLogger("zerolink.link")


class X2XConnection(SessionDriver):
    """A TCP connection carrying an implied XEP-0361 stream.

    Outbound connections know their link from the start. Inbound ones are handed a
    `identify` callback that picks the link from the source address before a single byte is
    read; a connection that matches no peer is closed unread.
    """

    def __init__(
        self,
        *,
        link: PeerLink | None = None,
        identify: Callable[[tuple[Any, ...]], PeerLink | None] | None = None,
        listen: str = "",
    ) -> None:
        super().__init__()
        self.link = link
        self.outbound = link is not None
        self._identify = identify
        self._listen = listen
        self.up = False
        self.last_stanza = self.loop.time()
        self.inflow = Inflow(self)

    @property
    def is_open(self) -> bool:
        return self.up and self.session.state is x2x.State.OPEN

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if self.link is None:
            assert self._identify is not None
            self.link = self._identify(transport.get_extra_info("peername"))
            if self.link is None:
                log.warning(
                    "rejected connection from %s on %s: it matches no configured peer",
                    self.peer,
                    self._listen,
                )
                transport.abort()
                return
        cfg = self.link.cfg
        tune(
            transport.get_extra_info("socket"),
            user_timeout=cfg.tcp_user_timeout,
            keepalive_idle=cfg.keepalive or 60.0,
        )
        self.session = x2x.X2XSession(self.link.settings, now=self.loop.time())
        self.up = True
        self.link.attach(self)

    def send(self, stanza: Element) -> None:
        self.session.send_stanza(stanza, self.loop.time())
        self.last_stanza = self.loop.time()
        self.schedule_flush()

    def handle_events(self, events: list[Any]) -> None:
        link = self.link
        assert link is not None
        inflow = self.inflow
        if inflow.held is not None:  # paused: keep the order, handle them when it resumes
            inflow.hold(events, 0)
            return
        for i, ev in enumerate(events):
            if type(ev) is x2x.StanzaIn:
                self.last_stanza = self.loop.time()
                if inflow.check(link.received(ev.stanza)):
                    inflow.hold(events, i + 1)
                    return
            elif isinstance(ev, x2x.StanzaRejected):
                link.router.bounce(ev.stanza, ev.error)
            elif isinstance(ev, x2x.StreamErrorSent):
                log.warning(
                    "link %s: stream error sent to %s: %s%s",
                    link.name,
                    self.peer,
                    ev.condition,
                    f" ({ev.text})" if ev.text else "",
                )
            elif isinstance(ev, x2x.StreamErrorReceived):
                log.warning(
                    "link %s: stream error from %s: %s%s",
                    link.name,
                    self.peer,
                    ev.condition,
                    f" ({ev.text})" if ev.text else "",
                )
            elif isinstance(ev, x2x.PeerClosing):
                log.info("link %s: %s closed its stream", link.name, self.peer)
            elif isinstance(ev, x2x.Closed):
                self.up = False
                link.detach(self, ev.reason)
                self.close_transport()

    def on_lost(self, reason: str) -> None:
        self.inflow.close()
        if self.up and self.link is not None:
            self.up = False
            self.link.detach(self, f"TCP connection lost ({reason})")

    def on_writable(self) -> None:
        if self.link is not None:
            self.link.pump()
