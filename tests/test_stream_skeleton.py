"""In-memory tests of the stream skeleton the four sessions share (zerolink.proto.stream).

One test per rule, named by it: the close exchange and its deadline (RFC 6120 §4.4, with a
fake clock: time is only ever an argument), our stream errors (§4.9), the split of errors by
who is at fault (a `RemoteProtocolError` becomes our stream error at one boundary, a
`LocalProtocolError` is our misuse and reaches the caller), and the exact hand-over of the
bytes after the element that restarts a stream, by the parser's offsets.
"""

from __future__ import annotations

import base64
import enum
import itertools
import pathlib
from collections.abc import Callable
from typing import Any

import pytest

from zerolink.domains import DomainSet
from zerolink.errors import STREAMS_NS, LocalProtocolError, RemoteProtocolError, StreamError
from zerolink.jid import JID
from zerolink.proto import c2s, component, component_client, x2x
from zerolink.proto.events import Closed, StreamErrorSent
from zerolink.proto.sasl import SASL_NS, derive_credentials
from zerolink.proto.stream import StreamSkeleton
from zerolink.xml.element import CLIENT_NS, SERVER_NS, Element
from zerolink.xml.parser import (
    X2X_HEADER,
    HeaderReceived,
    StanzaReceived,
    StreamClosed,
    StreamParser,
)
from zerolink.xml.serializer import STREAM_CLOSE

CLOSE_TIMEOUT = 10.0


# -- a toy session: the skeleton alone ----------------------------------------------------------
class ToyState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Toy(StreamSkeleton[ToyState, Any]):
    """Reads implied-header X2X bytes; `step` runs instead when given (to raise from)."""

    kind = "toy"

    def __init__(self, step: Callable[[], None] | None = None) -> None:
        super().__init__(
            ToyState.OPEN,
            closing=ToyState.CLOSING,
            closed=ToyState.CLOSED,
            close_timeout=CLOSE_TIMEOUT,
        )
        self.step = step
        self.parser = StreamParser(implied_header=X2X_HEADER)

    def _can_send(self) -> bool:
        return self.state is ToyState.OPEN

    def send(self, data: bytes) -> None:
        self._require_send()
        self._write(data)

    def _receive(self, data: bytes, now: float) -> None:
        if self.step is not None:
            self.step()
        parsed, error = self._parse(self.parser, data)
        for ev in parsed:
            if isinstance(ev, StanzaReceived):
                self._emit(ev.element.local)
            elif isinstance(ev, StreamClosed):
                self._peer_closed()
                return
        if error is not None:
            raise error


def test_4_4_close_exchange_waits_close_timeout_then_closes():
    t = Toy()
    assert t.timer() is None
    assert t.close(5.0) == []
    assert t.data_to_send() == STREAM_CLOSE
    assert t.state is ToyState.CLOSING and t.timer() == 5.0 + CLOSE_TIMEOUT
    assert t.handle_timer(5.0 + CLOSE_TIMEOUT - 0.001) == []
    assert t.state is ToyState.CLOSING
    (ev,) = t.handle_timer(5.0 + CLOSE_TIMEOUT)
    assert isinstance(ev, Closed) and "did not answer our stream close in time" in ev.reason
    assert t.state is ToyState.CLOSED and t.timer() is None
    assert t.handle_timer(100.0) == [] and t.data_to_send() == b""


def test_4_4_close_twice_writes_one_close():
    t = Toy()
    t.close(0.0)
    assert t.close(1.0) == []
    assert t.data_to_send() == STREAM_CLOSE
    assert t.timer() == CLOSE_TIMEOUT  # the first close's deadline stands


def test_4_4_peer_close_is_answered_with_ours():
    t = Toy()
    (ev,) = t.receive_data(b"</stream:stream>", 0.0)
    assert isinstance(ev, Closed)
    assert t.data_to_send() == STREAM_CLOSE and t.state is ToyState.CLOSED


def test_4_4_peer_close_after_ours_ends_the_exchange_without_a_second_close():
    t = Toy()
    t.close(0.0)
    t.data_to_send()
    (ev,) = t.receive_data(b"</stream:stream>", 1.0)
    assert isinstance(ev, Closed)
    assert t.data_to_send() == b"" and t.state is ToyState.CLOSED and t.timer() is None


def test_4_9_stream_error_is_written_then_our_close_and_the_stream_is_over():
    t = Toy()
    events = t.stream_error("system-shutdown", "bye")
    assert events[0] == StreamErrorSent("system-shutdown", "bye")
    assert isinstance(events[1], Closed) and "system-shutdown" in events[1].reason
    out = t.data_to_send()
    assert out.startswith(b"<stream:error><system-shutdown ")
    assert out.endswith(b"</stream:error>" + STREAM_CLOSE)
    assert t.state is ToyState.CLOSED


def test_4_9_stream_error_on_a_stream_already_over_writes_and_reports_nothing():
    t = Toy()
    t.stream_error("conflict")
    t.data_to_send()
    assert t.stream_error("conflict") == []
    assert t.receive_data(b"<message/>", 0.0) == []
    assert t.data_to_send() == b""


def test_4_4_nothing_follows_our_close_not_even_a_stream_error():
    t = Toy()
    t.close(0.0)
    t.data_to_send()
    events = t.stream_error("system-shutdown")
    assert [type(e) for e in events] == [StreamErrorSent, Closed]
    assert t.data_to_send() == b""


def test_4_9_1_1_elements_before_a_parse_error_are_reported_then_the_error():
    t = Toy()
    events = t.receive_data(b"<message/><iq/><a></b>", 0.0)
    assert events[:2] == ["message", "iq"]
    assert events[2] == StreamErrorSent("not-well-formed", events[2].text)
    assert b"<not-well-formed " in t.data_to_send()


def test_remote_protocol_error_becomes_our_stream_error_at_the_boundary():
    def peer_breaks_it() -> None:
        raise RemoteProtocolError("unsupported-stanza-type", "no")

    t = Toy(peer_breaks_it)
    events = t.receive_data(b"<message/>", 0.0)
    assert events[0] == StreamErrorSent("unsupported-stanza-type", "no")
    assert b"<unsupported-stanza-type " in t.data_to_send()


@pytest.mark.parametrize("exc", [LocalProtocolError("our bug"), KeyError("our bug")])
def test_local_protocol_error_and_bugs_reach_the_caller_and_nothing_is_written(exc: Exception):
    def ours() -> None:
        raise exc

    t = Toy(ours)
    with pytest.raises(type(exc)):
        t.receive_data(b"<message/>", 0.0)
    assert t.data_to_send() == b"" and t.state is ToyState.OPEN


def test_local_protocol_error_is_a_runtime_error_and_not_a_stream_error():
    assert issubclass(LocalProtocolError, RuntimeError)
    assert not issubclass(LocalProtocolError, StreamError)
    assert issubclass(RemoteProtocolError, StreamError)


def test_local_protocol_error_send_after_close():
    t = Toy()
    t.close(0.0)
    t.data_to_send()
    with pytest.raises(LocalProtocolError, match="toy stream in state closing"):
        t.send(b"<message/>")
    assert t.data_to_send() == b""


def test_bytes_queued_counts_what_data_to_send_has_not_taken():
    t = Toy()
    t.send(b"<a/>")
    t.send(b"<bb/>")
    assert t.bytes_queued == 9
    assert t.data_to_send() == b"<a/><bb/>"
    assert t.bytes_queued == 0 and t.data_to_send() == b""


# -- the four sessions share it ----------------------------------------------------------------
AIR = DomainSet(["air.example"])
GROUND = DomainSet(["ground.example"])
COMPONENT_HEADER = (
    b"<stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='bot.air.example'>"
)
C2S_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"
)
UPSTREAM_HEADER = (
    b"<stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' id='s1'>"
)


def open_x2x() -> x2x.X2XSession:
    settings = x2x.X2XSettings(
        peer_domains=GROUND, is_local=AIR.__contains__, close_timeout=CLOSE_TIMEOUT
    )
    return x2x.X2XSession(settings, now=0.0)


def open_component() -> component.ComponentSession:
    s = component.ComponentSession({"bot.air.example": "k"}, "abc", close_timeout=CLOSE_TIMEOUT)
    s.receive_data(COMPONENT_HEADER, 0.0)
    digest = component.handshake_digest("abc", "k").encode()
    s.receive_data(b"<handshake>" + digest + b"</handshake>", 0.0)
    return s


def open_component_client() -> component_client.ComponentClient:
    s = component_client.ComponentClient("ground.example", "k", close_timeout=CLOSE_TIMEOUT)
    s.receive_data(UPSTREAM_HEADER + b"<handshake/>", 0.0)
    return s


def open_c2s() -> c2s.C2SSession:
    ids = itertools.count(1)
    s = c2s.C2SSession(
        domains=frozenset({"example.com"}),
        lookup=lambda user, h: derive_credentials("pw", h, salt=b"s" * 16, iterations=4096),
        stream_id_factory=lambda: f"s{next(ids)}",
        tls_available=False,
        direct_tls=True,
        close_timeout=CLOSE_TIMEOUT,
    )
    s.receive_data(C2S_HEADER, 0.0)
    s.receive_data(plain_auth(), 0.0)
    s.receive_data(C2S_HEADER, 0.0)
    s.receive_data(BIND, 0.0)
    s.bind_succeeded(JID("juliet", "example.com", "r"))
    return s


def plain_auth(extra: str = "") -> bytes:
    payload = base64.b64encode(b"\0juliet\0pw").decode()
    return f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'{extra}>{payload}</auth>".encode()


BIND = (
    b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    b"<resource>r</resource></bind></iq>"
)

SESSIONS: dict[str, Callable[[], Any]] = {
    "x2x": open_x2x,
    "component": open_component,
    "component_client": open_component_client,
    "c2s": open_c2s,
}
OPEN_STATE = {"x2x": "open", "component": "open", "component_client": "open", "c2s": "bound"}


def stanza() -> Element:
    return Element(f"{{{SERVER_NS}}}message", {"from": "a@ground.example", "to": "b@air.example"})


def send(name: str, s: Any) -> None:
    if name == "x2x":
        s.send_stanza(stanza(), 0.0)
    else:
        s.send_stanza(stanza())


@pytest.mark.parametrize("name", SESSIONS)
def test_4_4_every_session_closes_at_its_deadline_on_the_fake_clock(name: str):
    s = SESSIONS[name]()
    assert s.state.value == OPEN_STATE[name]
    s.data_to_send()
    assert s.close(3.0) == []
    assert s.data_to_send() == STREAM_CLOSE
    assert s.timer() == 3.0 + CLOSE_TIMEOUT
    assert s.handle_timer(3.0 + CLOSE_TIMEOUT / 2) == []
    (ev,) = s.handle_timer(3.0 + CLOSE_TIMEOUT)
    assert type(ev).__name__ == "Closed" and s.state.value == "closed"
    assert s.timer() is None and s.data_to_send() == b""


@pytest.mark.parametrize("name", SESSIONS)
def test_local_protocol_error_on_every_session_send_after_close(name: str):
    s = SESSIONS[name]()
    s.close(0.0)
    s.data_to_send()
    with pytest.raises(LocalProtocolError):
        send(name, s)
    assert s.data_to_send() == b""


@pytest.mark.parametrize("name", SESSIONS)
def test_4_9_every_session_writes_our_stream_error_once_then_nothing(name: str):
    s = SESSIONS[name]()
    s.data_to_send()
    events = s.stream_error("policy-violation", "enough")
    assert type(events[-1]).__name__ == "Closed"
    out = s.data_to_send()
    assert out.count(b"<stream:error>") == 1 and out.endswith(STREAM_CLOSE)
    assert s.stream_error("policy-violation") == []
    assert s.receive_data(b"<message/>", 1.0) == [] and s.data_to_send() == b""


def test_4_9_our_header_goes_before_an_error_when_the_peer_has_none_yet():
    s = component.ComponentSession({"bot.air.example": "k"}, "abc")
    s.stream_error("system-shutdown")
    out = s.data_to_send()
    assert out.startswith(b"<?xml version='1.0'?><stream:stream ")
    assert b"id='abc'" in out and out.endswith(STREAM_CLOSE)


def test_local_protocol_error_bind_answer_with_none_pending():
    s = open_c2s()
    s.data_to_send()
    with pytest.raises(LocalProtocolError, match="no bind request pending"):
        s.bind_succeeded(JID("juliet", "example.com", "r"))
    with pytest.raises(LocalProtocolError, match="no bind request pending"):
        s.bind_failed("conflict")
    assert s.data_to_send() == b""


def test_local_protocol_error_tls_established_without_starttls():
    s = open_c2s()
    with pytest.raises(LocalProtocolError, match="tls_established"):
        s.tls_established(0.0)


# -- hand-over by the parser's offsets -----------------------------------------------------
def test_6_4_6_bytes_after_sasl_success_go_to_the_new_stream_exactly():
    """A '>' in a quoted attribute of the element completing SASL, an empty element after,
    every split of the reads: the restarted stream gets exactly what followed."""
    ids = itertools.count(1)

    def new() -> c2s.C2SSession:
        return c2s.C2SSession(
            domains=frozenset({"example.com"}),
            lookup=lambda user, h: derive_credentials("pw", h, salt=b"s" * 16, iterations=4096),
            stream_id_factory=lambda: f"s{next(ids)}",
            tls_available=False,
            direct_tls=True,
        )

    data = plain_auth(" x='a>b/>'") + b"\n" + C2S_HEADER + BIND
    expected = [c2s.Authenticated("juliet", "example.com"), c2s.BindRequest("r")]
    for cut in range(len(data) + 1):
        s = new()
        s.receive_data(C2S_HEADER, 0.0)
        events = s.receive_data(data[:cut], 0.0) + s.receive_data(data[cut:], 0.0)
        assert events == expected, cut


@pytest.mark.parametrize(
    ("lead", "decl"),
    [
        (b"", b""),
        (b"", b"<?xml version='1.0'?>"),  # a declaration is a header only at the start
        (b"<message from='x@ground.example' to='y@air.example'/>", b""),
    ],
)
def test_header_received_says_where_the_peer_header_began(lead: bytes, decl: bytes):
    header = decl + b"<stream:stream xmlns='jabber:server' xmlns:stream='" + STREAMS_NS.encode()
    data = b"  " + lead + header + b"'>"
    for cut in range(len(data) + 1):
        p = StreamParser(implied_header=X2X_HEADER)
        events = p.feed(data[:cut]) + p.feed(data[cut:])
        (ev,) = [e for e in events if isinstance(e, HeaderReceived)]
        assert ev.start == 2 + len(lead), cut


def test_a_stream_header_may_declare_one_of_the_namespaces_a_parser_also_accepts():
    p = StreamParser(content_ns=SERVER_NS, also_ns={CLIENT_NS})
    events = p.feed(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='" + STREAMS_NS.encode() + b"'>"
        b"<message><body>x</body></message>"
    )
    (el,) = [e.element for e in events if isinstance(e, StanzaReceived)]
    assert el.tag == f"{{{SERVER_NS}}}message"  # mapped as the stream's own namespace


def test_no_regex_rescan_of_raw_bytes_in_the_sessions_or_their_drivers():
    """Where an element ended is the parser's to say (StanzaReceived.end, HeaderReceived.start):
    no session or driver module imports re to look for tags in the bytes again."""
    src = pathlib.Path(x2x.__file__).parent
    modules = [src / f"{m}.py" for m in ("stream", "x2x", "c2s", "component", "component_client")]
    net = src.parent / "net"
    modules += [net / f"{m}.py" for m in ("x2x_conn", "c2s_conn", "components", "upstream")]
    modules += [net / f"{m}.py" for m in ("driver", "tlslayer")]
    for path in modules:
        text = path.read_text()
        assert "import re\n" not in text and "from re import" not in text, path.name
