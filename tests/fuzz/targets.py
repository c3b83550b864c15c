"""Fuzz targets and their oracles: the XML parser and the four sans-I/O sessions.

`check(target, program)` runs a program twice, as split into reads and with every segment in
one read, and raises `Failure` when an oracle does not hold:

* nothing but the documented exceptions escapes: the parser raises only `ParseError` (with
  an RFC 6120 condition, and the same condition again on every later feed); a session never
  raises from `receive_data`, `handle_timer`, `close`, `data_to_send`, nor from the driver's
  calls that its events ask for (`tls_established`, `bind_succeeded`, `send_stanza` ...);
* every event is of the module's documented `Event` types; none follows `Closed`;
* what a session writes is well-formed for the other end: a peer-side `StreamParser`
  (restarted where the stream restarts) reads all of it without a stream error; nothing
  follows our ``</stream:stream>``; nothing at all is written once the session is CLOSED;
  a written ``<stream:error>`` is one the session reported (`StreamErrorSent`), and there
  is at most one; a CLOSED session has reported `Closed` (drivers close the transport on it);
* the parser's stanzas survive serialize -> parse unchanged, and with ``track_ends`` each
  stanza ends at a '>' at the offset reported;
* the same bytes split differently give the same events and the same error condition;
* no input grows state shared by all parsers (the per-namespace name caches).

A session's stanzas are sent back to it (`send_stanza`) as a router would forward them, so the
serializer sees fuzzed content too.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import itertools
import traceback
import typing
from collections import Counter
from collections.abc import Callable
from typing import Any

from zerolink.domains import DomainSet
from zerolink.errors import STREAM_CONDITIONS, StanzaError
from zerolink.jid import JID
from zerolink.proto import acks, c2s, component, component_client, x2x
from zerolink.proto.events import STREAM_ERROR_TAG, stream_error_of
from zerolink.proto.sasl import SASL_NS, ScramCredentials, derive_credentials
from zerolink.stanza import MESSAGE, error_reply
from zerolink.xml import parser as xml_parser
from zerolink.xml.element import (
    CLIENT_NS,
    COMPONENT_NS,
    CONTENT_NAMESPACES,
    SERVER_NS,
    Element,
)
from zerolink.xml.parser import (
    X2X_HEADER,
    HeaderReceived,
    ParseError,
    StanzaReceived,
    StreamClosed,
    StreamOpened,
    StreamParser,
    Whitespace,
)
from zerolink.xml.serializer import STREAM_CLOSE, serialize

from .program import Program, load


class Failure(Exception):
    """An oracle does not hold. `kind` is short and stable (failures are grouped by it)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


#: Known bugs in code this harness does not own, reported and not fixed yet: name -> what.
#: While one is listed, the oracle it would fail looks away and counts a hit (`KNOWN_HITS`);
#: ``strict`` (``--strict``) fails it like any other. Remove an entry with its fix.
KNOWN: dict[str, str] = {}
KNOWN_HITS: Counter[str] = Counter()
_strict = False


def known(name: str) -> bool:
    """True (and a hit counted) when the known issue `name` is listed and we are not strict."""
    if _strict or name not in KNOWN:
        return False
    KNOWN_HITS[name] += 1
    return True


class Known(Exception):
    """A failure explained by an entry of `KNOWN` (split dependences: the whole input)."""

    def __init__(self, name: str, failure: Failure) -> None:
        super().__init__(f"{name}: {failure}")
        self.name = name
        self.failure = failure


# -- canonical forms (for comparing runs) ------------------------------------------------------
def canon(el: Element) -> tuple:
    """An element as nested tuples; adjacent text merged, empty text dropped."""
    children: list[Any] = []
    for c in el.children:
        if isinstance(c, str):
            if not c:
                continue
            if children and isinstance(children[-1], str):
                children[-1] += c
            else:
                children.append(c)
        else:
            children.append(canon(c))
    return (el.tag, tuple(sorted(el.attrib.items())), tuple(children))


def _canon_value(v: Any) -> Any:
    if isinstance(v, Element):
        return canon(v)
    if isinstance(v, StanzaError):
        return ("StanzaError", v.condition, v.type, v.text)
    if isinstance(v, dict):
        return tuple(sorted(v.items()))
    return v


#: Event fields left out of the comparison: our own error texts and close reasons say which
#: error was seen first (e.g. "text between stanzas" or "mismatched tag"), and that may depend
#: on where a read ends; the condition may not.
_FREE_TEXT = {"StreamErrorSent": ("text",), "Failed": ("text",), "Closed": ("reason",)}


def limit_class(condition: str, text: str | None) -> str:
    """For a policy-violation: "size" when it is the stanza size limit (the class of error
    whose condition may depend on read boundaries, see `KNOWN`), else ""."""
    return "size" if condition == "policy-violation" and "too large" in (text or "") else ""


def norm(ev: Any) -> tuple:
    """(event type name, field values...) with elements in canonical form."""
    name = type(ev).__name__
    if dataclasses.is_dataclass(ev):
        skip = _FREE_TEXT.get(name, ())
        values = tuple(
            _canon_value(getattr(ev, f.name)) for f in dataclasses.fields(ev) if f.name not in skip
        )
        if name in ("StreamErrorSent", "Failed"):
            values += (limit_class(ev.condition, ev.text),)
    else:
        values = ()
    return (name, *values)


_ERROR_EVENTS = ("StreamErrorSent", "StreamErrorReceived", "Failed", "error")


def _conditions(events: list[tuple]) -> list[str]:
    return [str(ev[1]) for ev in events if ev[0] in _ERROR_EVENTS]


def _event_types(module: Any) -> tuple[type, ...]:
    return typing.get_args(module.Event)


# -- the peer's side: reading what a session writes ----------------------------------------
_BIG = 1 << 30
_X2X_OUR_HEADER = b"<?xml version='1.0'?><stream:stream"


class OutputReader:
    """Parses a session's output as the other end would, and checks it (see module doc)."""

    def __init__(
        self,
        content_ns: str,
        *,
        implied: bool = False,
        restart_after: frozenset[str] = frozenset(),
        header_switch: bool = False,
    ) -> None:
        self.content_ns = content_ns
        self.implied = implied
        self.restart_after = restart_after
        self.header_switch = header_switch  # x2x: our stream header answering the peer's
        self.closed = False
        self.errors: list[str] = []
        self.stanzas: list[tuple] = []
        self.headers: list[dict[str, str]] = []
        self.log: list[bytes] = []
        self.parser = self._new(implied)

    def _new(self, implied: bool) -> StreamParser:
        return StreamParser(
            content_ns=self.content_ns,
            max_stanza_size=_BIG,
            max_depth=100000,
            implied_header=X2X_HEADER if implied else None,
            track_ends=bool(self.restart_after),
        )

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.log.append(data)
        if self.closed:
            raise Failure("output-after-stream-close", f"{data[:300]!r}")
        if self.header_switch and self.implied:
            at = data.find(_X2X_OUR_HEADER)
            if at >= 0:
                self._feed(data[:at])
                self.implied = False
                self.parser = self._new(False)
                data = data[at:]
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        if not data:
            return
        error: ParseError | None = None
        try:
            events = self.parser.feed(data)
        except ParseError as exc:
            # What completed before the error counts: a restart may come first (a new
            # stream's XML declaration is not well-formed in the old stream).
            events, error = exc.events, exc
        for ev in events:
            if isinstance(ev, StreamOpened):
                self.headers.append(ev.attrs)
            elif isinstance(ev, StanzaReceived):
                el = ev.element
                if el.tag == STREAM_ERROR_TAG:
                    self.errors.append(stream_error_of(el)[0])
                    if len(self.errors) > 1:
                        raise Failure("output-two-stream-errors", f"{self.errors}")
                elif el.tag in self.restart_after:
                    after = self.parser.received - ev.end
                    self.parser = self._new(False)
                    self._feed(data[len(data) - after :] if after else b"")
                    return
                else:
                    self.stanzas.append(canon(el))
            elif isinstance(ev, StreamClosed):
                self.closed = True
                if not data.endswith(STREAM_CLOSE):
                    raise Failure("output-after-stream-close", f"{data[-300:]!r}")
            elif isinstance(ev, HeaderReceived):
                raise Failure("output-unexpected-header", f"{b''.join(self.log)[-600:]!r}")
        if error is not None:
            raise Failure(
                "output-not-well-formed",
                f"{error.condition}: {error.text}; output: {b''.join(self.log)[-600:]!r}",
            )


END_BUG = "parser-empty-element-end"
IMPLIED_TRACK_BUG = "parser-implied-track-ends"
UTF16_BUG = "parser-utf16"


# -- the parser --------------------------------------------------------------------------------
_PARSER_EVENTS = typing.get_args(xml_parser.Event)


class ParserTarget:
    name = "parser"
    configs: tuple[dict[str, Any], ...] = (
        {"content_ns": CLIENT_NS, "track_ends": True},
        {"content_ns": SERVER_NS, "implied_header": X2X_HEADER},
        {"content_ns": COMPONENT_NS, "max_stanza_size": 256, "max_depth": 4},
        {"content_ns": CLIENT_NS, "max_stanza_size": 100, "track_ends": True},
        {
            "content_ns": SERVER_NS,
            "implied_header": X2X_HEADER,
            "max_stanza_size": 512,
            "max_depth": 8,
            "track_ends": True,
        },
    )

    def run(self, prog: Program) -> list[tuple]:
        cfg = self.configs[prog.config % len(self.configs)]
        if "implied_header" in cfg and cfg.get("track_ends") and known(IMPLIED_TRACK_BUG):
            cfg = {k: v for k, v in cfg.items() if k != "track_ends"}
        ns = cfg["content_ns"]
        p = StreamParser(**cfg)
        out: list[tuple] = []
        fed = bytearray()
        stopped = False
        last_end = 0
        for step in prog.steps:
            if step[0] != "data":
                continue
            for chunk in step[1]:
                error: ParseError | None = None
                try:
                    events = p.feed(chunk)
                except ParseError as exc:
                    error = exc
                    events = exc.events
                except Exception:
                    raise Failure("parser-raised", traceback.format_exc()) from None
                fed += chunk
                for i, ev in enumerate(events):
                    if not isinstance(ev, _PARSER_EVENTS):
                        raise Failure("parser-event-type", repr(ev))
                    if stopped:
                        raise Failure("parser-event-after-stop", repr(ev))
                    if isinstance(ev, StreamClosed | HeaderReceived):
                        stopped = True
                        if i != len(events) - 1 or error is not None:
                            raise Failure("parser-event-after-stop", repr(events[i:]))
                    if isinstance(ev, StanzaReceived):
                        last_end = self._check_stanza(ev, ns, cfg, fed, last_end)
                    if not isinstance(ev, Whitespace):
                        item = norm(ev)
                        if (
                            isinstance(ev, StanzaReceived)
                            and ev.end >= 0
                            and not ev.element.children
                            and END_BUG in KNOWN
                            and not _strict
                        ):
                            item = item[:-1]  # its end differs between splits (KNOWN)
                        out.append(item)
                if error is not None:
                    self._check_dead(p, error)
                    out.append(("error", error.condition, limit_class(error.condition, error.text)))
                    return out
                if not stopped and b"\x00" in chunk and not known(UTF16_BUG):
                    raise Failure("parser-accepted-nul", f"no error after {bytes(fed[-80:])!r}")
        return out

    @staticmethod
    def _check_dead(p: StreamParser, error: ParseError) -> None:
        if type(error) is not ParseError or error.condition not in STREAM_CONDITIONS:
            raise Failure("parser-error-type", f"{type(error).__name__} {error.condition}")
        try:
            p.feed(b"<x/>")
        except ParseError as again:
            if again.condition != error.condition or again.events:
                raise Failure(
                    "parser-dead-changed", f"{error.condition} then {again.condition}"
                ) from None
        else:
            raise Failure("parser-dead-revived", error.condition)

    @staticmethod
    def _check_stanza(
        ev: StanzaReceived, ns: str, cfg: dict[str, Any], fed: bytearray, last_end: int
    ) -> int:
        if ev.size < 0 or ev.size > cfg.get("max_stanza_size", 262144):
            raise Failure("parser-stanza-size", f"size {ev.size}")
        if cfg.get("track_ends") and not (not ev.element.children and known(END_BUG)):
            end = ev.end
            if not (last_end < end <= len(fed)) or fed[end - 1] != 0x3E:
                raise Failure(
                    "parser-stanza-end",
                    f"end {end} after {last_end}, near {bytes(fed[max(0, end - 40) : end + 5])!r}",
                )
            last_end = end
        try:
            data = serialize(ev.element, content_ns=ns)
        except Exception:
            raise Failure("serialize-raised", traceback.format_exc()) from None
        header = b"<stream:stream xmlns='%s' xmlns:stream='http://etherx.jabber.org/streams'>"
        again = StreamParser(content_ns=ns, max_stanza_size=_BIG, max_depth=100000)
        try:
            evs = [e for e in again.feed(header % ns.encode() + data)]
            evs = [e for e in evs if not isinstance(e, Whitespace | StreamOpened)]
        except ParseError as exc:
            raise Failure("roundtrip-not-well-formed", f"{exc}: {data[:400]!r}") from None
        if len(evs) != 1 or not isinstance(evs[0], StanzaReceived):
            raise Failure("roundtrip-events", f"{evs!r} from {data[:400]!r}")
        if canon(evs[0].element) != canon(ev.element):
            raise Failure(
                "roundtrip-changed",
                f"{canon(ev.element)!r}\n -> {data[:400]!r}\n -> {canon(evs[0].element)!r}",
            )
        return last_end


# -- sessions ------------------------------------------------------------------------------
class SessionTarget:
    """Common driver loop; subclasses make the session and react to its events."""

    name = ""
    module: Any = None
    configs: tuple[dict[str, Any], ...] = ({},)

    def __init__(self) -> None:
        self.event_types = _event_types(self.module)

    # hooks
    def new(self, cfg: dict[str, Any]) -> Any:
        raise NotImplementedError

    def reader(self, cfg: dict[str, Any]) -> OutputReader:
        raise NotImplementedError

    def sendable(self, s: Any) -> bool:
        return s.state is self.module.State.OPEN

    def send(self, run: Run, el: Element) -> None:
        run.s.send_stanza(el)

    def echo(self, run: Run, el: Element) -> None:
        """Send a delivered stanza back as the router would (from a queue, serialized)."""
        self.send(run, el)

    def own_stanza(self, run: Run) -> Element | None:
        return None

    def react(self, run: Run, ev: Any) -> None:
        """The driver's answer to one event (beyond echoing stanzas)."""

    def kick(self, run: Run) -> list[Any]:
        return run.s.close(run.now) or []

    def normalize(self, events: list[tuple]) -> list[tuple]:
        return events

    def run(self, prog: Program) -> list[tuple]:
        cfg = self.configs[prog.config % len(self.configs)]
        run = Run(self, cfg)
        run.flush()
        for step in prog.steps:
            kind = step[0]
            if kind == "data":
                run.skip = False
                for chunk in step[1]:
                    if run.skip:
                        break
                    # Once CLOSED, one more read shows input is ignored; the rest costs time.
                    run.skip = run.dead
                    run.step("receive_data", run.s.receive_data, chunk, run.now)
            elif kind == "time":
                run.now += step[1]
                when = run.call("timer", run.s.timer)
                if when is not None and not isinstance(when, float | int):
                    raise Failure("timer-type", repr(when))
                run.step("handle_timer", run.s.handle_timer, run.now)
            elif kind == "close":
                run.step("close", run.s.close, run.now)
            elif kind == "kick":
                run.step("kick", self.kick, run)
            elif kind == "send":
                el = self.own_stanza(run)
                if el is not None and self.sendable(run.s):
                    run.step("send_stanza", self.send, run, el)
        return [*self.normalize(run.events), ("state", run.s.state.value)]


class Run:
    """One run of a program against a fresh session."""

    def __init__(self, target: SessionTarget, cfg: dict[str, Any]) -> None:
        self.t = target
        self.cfg = cfg
        self.now = 0.0
        self.s = target.new(cfg)
        self.out = target.reader(cfg)
        self.events: list[tuple] = []
        self.reported_errors: list[str] = []
        self.closed_event = False
        self.dead = False  # CLOSED at the end of an earlier step
        self.skip = False  # the rest of this segment is not read (c2s after <starttls/>)
        self.received = 0  # stanzas (x2x acks counter)

    def call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Failure:
            raise
        except Exception:
            raise Failure(f"{what}-raised", traceback.format_exc()) from None

    def step(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        result = self.call(what, fn, *args)
        self.handle(result or [])
        self.flush()

    def handle(self, events: list[Any]) -> None:
        if not isinstance(events, list):
            raise Failure("events-type", repr(events))
        for ev in events:
            if not isinstance(ev, self.t.event_types):
                raise Failure("event-type", repr(ev))
            if self.closed_event:
                raise Failure("event-after-closed", repr(ev))
            self.events.append(norm(ev))
            name = type(ev).__name__
            if name == "Closed":
                self.closed_event = True
            elif name in ("StreamErrorSent", "Failed"):  # Failed: the component client's
                self.reported_errors.append(ev.condition)
            elif name == "StanzaIn":
                self.received += 1
                if self.t.sendable(self.s):
                    self.call("send_serialized", self.t.echo, self, ev.stanza)
            elif name == "StanzaRejected":
                self.received += 1
                reply = error_reply(ev.stanza, ev.error)
                if reply is not None and self.t.sendable(self.s):
                    self.call("send_stanza", self.t.send, self, reply)
            self.t.react(self, ev)

    def flush(self) -> None:
        data = self.call("data_to_send", self.s.data_to_send)
        if not isinstance(data, bytes):
            raise Failure("output-type", repr(data))
        if data and self.dead:
            raise Failure("output-after-closed", f"{data[:300]!r}")
        self.out.feed(data)
        state = self.s.state
        if not isinstance(state, enum.Enum):
            raise Failure("state-type", repr(state))
        if state.value == "closed":
            if not self.closed_event:
                raise Failure("closed-without-event", repr(self.events[-5:]))
            self.dead = True
        elif self.dead:
            raise Failure("state-reopened", state.value)
        for cond in self.out.errors:
            if cond not in self.reported_errors:
                raise Failure("output-unreported-stream-error", f"{cond}; {self.events[-5:]}")


# -- x2x -------------------------------------------------------------------------------------
AIR = DomainSet(["air.example", "*.air.example"])
GROUND = DomainSet(["ground.example", "*.ground.example"])


class X2XTarget(SessionTarget):
    name = "x2x"
    module = x2x
    acks = False
    configs = ({}, {"max_stanza_size": 512, "max_depth": 8})

    def new(self, cfg: dict[str, Any]) -> x2x.X2XSession:
        settings = x2x.X2XSettings(
            peer_domains=GROUND, is_local=AIR.__contains__, acks=self.acks, **cfg
        )
        return x2x.X2XSession(settings, now=0.0)

    def reader(self, cfg: dict[str, Any]) -> OutputReader:
        return OutputReader(SERVER_NS, implied=True, header_switch=True)

    def send(self, run: Run, el: Element) -> None:
        run.s.send_stanza(el, run.now)

    def echo(self, run: Run, el: Element) -> None:
        run.s.send_serialized(serialize(el, content_ns=SERVER_NS), run.now)

    def own_stanza(self, run: Run) -> Element | None:
        el = Element(MESSAGE, {"from": "pilot@air.example", "to": "ops@ground.example"})
        el.subelement(f"{{{SERVER_NS}}}body", text="ours")
        return el

    def react(self, run: Run, ev: Any) -> None:
        if isinstance(ev, x2x.SyncIn):
            run.call("send_control", run.s.send_control, acks.sync_element(0, 0, 4096), run.now)
        elif isinstance(ev, x2x.AckRequested):
            el = acks.ack_element(run.received)
            run.call("send_control", run.s.send_control, el, run.now)

    def normalize(self, events: list[tuple]) -> list[tuple]:
        # Documented: a peer's stream error is reported with its header only when both come
        # in the same bytes (the session closes at the header; it cannot wait for more).
        out = []
        for i, ev in enumerate(events):
            nxt = events[i + 1] if i + 1 < len(events) else None
            if (
                ev[0] == "StreamErrorReceived"
                and nxt
                and nxt[:2]
                == (
                    "StreamErrorSent",
                    "policy-violation",
                )
            ):
                continue
            out.append(ev)
        return out


class X2XAcksTarget(X2XTarget):
    name = "x2x-acks"
    acks = True


# -- c2s -------------------------------------------------------------------------------------
C2S_DOMAIN = "air.example"
PASSWORD = "r0m30myr0m30"
SALT = b"salt-of-juliet!!"
ITERATIONS = 64  # few: fast runs; the server takes whatever the store has
SNONCE = "3rfcNHYJY1ZVvWVs7j"
SASL_SECRET = b"fuzz-secret"
CREDS: dict[tuple[str, str], ScramCredentials] = {
    ("juliet", h): derive_credentials(PASSWORD, h, salt=SALT, iterations=ITERATIONS)
    for h in ("sha1", "sha256")
}
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"


def lookup(username: str, hash_name: str) -> ScramCredentials | None:
    if username == "store-fails":
        raise OSError("the credential store is unavailable")
    return CREDS.get((username, hash_name))


class C2STarget(SessionTarget):
    name = "c2s"
    module = c2s
    configs = (
        {"tls_available": True, "tls_required": True},
        {"tls_available": True, "tls_required": False},
        {"tls_available": False, "direct_tls": True},
        {"tls_available": False, "tls_required": False, "max_stanza_size": 2048, "max_depth": 8},
        {"tls_available": True, "auth_timeout": 10.0, "max_stanza_size": 300},
    )

    def new(self, cfg: dict[str, Any]) -> c2s.C2SSession:
        ids = (f"s{i}" for i in itertools.count(1))
        return c2s.C2SSession(
            domains=frozenset({C2S_DOMAIN}),
            lookup=lookup,
            stream_id_factory=lambda: next(ids),
            nonce_factory=lambda: SNONCE,
            sasl_secret=SASL_SECRET,
            sasl_iterations=ITERATIONS,
            **cfg,
        )

    def reader(self, cfg: dict[str, Any]) -> OutputReader:
        return OutputReader(
            CLIENT_NS,
            restart_after=frozenset({f"{{{TLS_NS}}}proceed", f"{{{SASL_NS}}}success"}),
        )

    def sendable(self, s: Any) -> bool:
        return s.state is c2s.State.BOUND

    def own_stanza(self, run: Run) -> Element | None:
        jid = run.s.jid
        el = Element(MESSAGE, {"from": "romeo@air.example/r", "to": str(jid)})
        el.subelement(f"{{{SERVER_NS}}}body", text="ours")
        return el

    def echo(self, run: Run, el: Element) -> None:
        run.s.send_serialized(serialize(el, content_ns=CLIENT_NS))

    def kick(self, run: Run) -> list[Any]:
        return run.s.stream_error("conflict", "replaced by a new connection", run.now)

    def react(self, run: Run, ev: Any) -> None:
        s = run.s
        if isinstance(ev, c2s.StartTLS):
            # The client waits for <proceed/>, then the TLS handshake: nothing more of this
            # segment is read as plaintext.
            run.skip = True
            if s.state is not c2s.State.WAIT_TLS:
                raise Failure("starttls-state", s.state.value)
            run.call("tls_established", s.tls_established, run.now)
        elif isinstance(ev, c2s.BindRequest):
            if ev.resource == "conflict":
                more = run.call("bind_failed", s.bind_failed, "conflict", "resource in use")
            else:
                jid = JID(s.authenticated_user, s.domain, ev.resource or "gen1")
                more = run.call("bind_succeeded", s.bind_succeeded, jid)
            run.handle(more or [])


# -- components (XEP-0114) -------------------------------------------------------------------
COMPONENT_SECRETS = {"bot.air.example": "s3cret", "gw.air.example": "other"}
COMPONENT_STREAM_ID = "c1"


class ComponentTarget(SessionTarget):
    name = "component"
    module = component
    configs = ({}, {"max_stanza_size": 256, "max_depth": 6})

    def new(self, cfg: dict[str, Any]) -> component.ComponentSession:
        return component.ComponentSession(COMPONENT_SECRETS, COMPONENT_STREAM_ID, **cfg)

    def reader(self, cfg: dict[str, Any]) -> OutputReader:
        return OutputReader(COMPONENT_NS)

    def kick(self, run: Run) -> list[Any]:
        return run.s.stream_error("policy-violation", "over its output budget")

    def own_stanza(self, run: Run) -> Element | None:
        el = Element(MESSAGE, {"from": "pilot@air.example", "to": f"x@{run.s.domain}"})
        el.subelement(f"{{{SERVER_NS}}}body", text="ours")
        return el


class ComponentClientTarget(SessionTarget):
    name = "component-client"
    module = component_client
    configs = ({}, {"max_stanza_size": 256, "max_depth": 6})

    def new(self, cfg: dict[str, Any]) -> component_client.ComponentClient:
        return component_client.ComponentClient("ground.example", "gw-secret", **cfg)

    def reader(self, cfg: dict[str, Any]) -> OutputReader:
        return OutputReader(COMPONENT_NS)

    def echo(self, run: Run, el: Element) -> None:
        run.s.send_serialized(serialize(el, content_ns=SERVER_NS))

    def own_stanza(self, run: Run) -> Element | None:
        el = Element(MESSAGE, {"from": "ops@ground.example", "to": "pilot@air.example"})
        el.subelement(f"{{{SERVER_NS}}}body", text="ours")
        return el


TARGETS: dict[str, Any] = {
    t.name: t
    for t in (
        ParserTarget(),
        X2XTarget(),
        X2XAcksTarget(),
        C2STarget(),
        ComponentTarget(),
        ComponentClientTarget(),
    )
}


# -- the check ------------------------------------------------------------------------------
def _shared_state() -> None:
    """No input may add a name cache for a namespace of its choosing, nor overfill one."""
    caches = xml_parser._TAG_CACHES
    extra = [ns for ns in caches if ns not in CONTENT_NAMESPACES]
    for ns in extra:
        del caches[ns]
    if extra:
        raise Failure("shared-cache-growth", f"name caches added for {extra[:3]!r}")
    limit = xml_parser._CACHE_LIMIT
    if any(len(c) > limit for c in caches.values()) or len(xml_parser._ATTR_CACHE) > limit:
        raise Failure("shared-cache-size", "a name cache is over its limit")


_TEXT_RACE = frozenset({"not-well-formed", "restricted-xml", "bad-namespace-prefix"})


def _first_difference(a: list[Any], b: list[Any]) -> tuple[Any, Any]:
    for x, y in itertools.zip_longest(a, b):
        if x != y:
            return x, y
    return None, None


def _condition(ev: tuple | None) -> str | None:
    found = _conditions([ev]) if ev is not None else []
    return found[0] if found else None


def _known_split(target: str, split: list[tuple], whole: list[tuple], nul: bool) -> str | None:
    """The `KNOWN` entry that explains why the two runs differ, if one does: looked for in
    the first events that differ, then in the first errors that differ."""
    errors = [[ev for ev in run if ev[0] in _ERROR_EVENTS] for run in (split, whole)]
    for ex, ey in (_first_difference(split, whole), _first_difference(*errors)):
        if any(
            ev is not None and ev[0] in ("StreamErrorSent", "Failed", "error") and ev[-1] == "size"
            for ev in (ex, ey)
        ):
            return "parser-split-size-limit"
        x, y = _condition(ex), _condition(ey)
        if x != y and {x, y} <= _TEXT_RACE and "not-well-formed" in (x, y):
            return "parser-split-text-error"
    if target == "c2s":
        binds = [
            i
            for i, ev in enumerate(whole)
            if ev[0] == "BindRequest" and split[: i + 1] == whole[: i + 1]
        ]
        if binds:
            after = [ev[0] for ev in whole[binds[-1] + 1 :]]
            # held after the bind request, then dropped by an error or the close
            dropped = after in (["StreamErrorSent", "Closed", "state"], ["Closed", "state"])
            refused = sum(ev[0] == "BindRequest" for ev in split) > sum(
                ev[0] == "BindRequest" for ev in whole
            )  # a second bind iq refused while the first was pending
            if dropped or refused:
                return "c2s-pipelined-after-bind"
    if nul:
        return "parser-utf16"
    return None


def _known_crash(failure: Failure) -> str | None:
    if failure.kind.endswith("-raised") and "in _end_of_tag" in failure.detail:
        return "parser-empty-element-end"
    if failure.kind in ("bind_succeeded-raised", "bind_failed-raised") and (
        "no bind request pending (state closed)" in failure.detail
    ):
        return "c2s-bind-without-id"
    return None


def check(target: str, prog: Program, *, strict: bool = False) -> list[tuple]:
    """Run `prog` split as given and whole; raise `Failure` (or `Known`). Returns the events."""
    global _strict
    _strict = strict
    t = TARGETS[target]
    try:
        split = t.run(prog)
        _shared_state()
        whole = t.run(prog.whole())
    except Failure as failure:
        name = _known_crash(failure)
        if name is not None and known(name):
            raise Known(name, failure) from None
        raise
    if split != whole:
        conds = _conditions(split), _conditions(whole)
        if conds[0] != conds[1]:
            failure = Failure("split-condition", f"{conds[0]} split vs {conds[1]} whole")
        else:
            failure = Failure("split-events", _diff(split, whole))
        nul = any(b"\x00" in r for st in prog.steps if st[0] == "data" for r in st[1])
        name = _known_split(target, split, whole, nul)
        if name is not None and known(name):
            raise Known(name, failure)
        raise failure
    return split


def _diff(a: list[tuple], b: list[tuple]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"event {i}: {x!r:.300} split vs {y!r:.300} whole"
    return f"{len(a)} events split vs {len(b)} whole: {a[len(b) :]!r:.300} {b[len(a) :]!r:.300}"


def handshake(stream_id: str = COMPONENT_STREAM_ID, secret: str = "s3cret") -> str:
    return hashlib.sha1((stream_id + secret).encode()).hexdigest()


# -- seeds ------------------------------------------------------------------------------------
#: The parser also starts from every session's seeds, in the configuration that fits them.
_PARSER_CONFIG_OF = {"c2s": 0, "x2x": 1, "x2x-acks": 4, "component": 2, "component-client": 2}


def seeds(target: str) -> list[Program]:
    """The seed programs of `target` (for the parser, the sessions' seeds too)."""
    own = load(target)
    if target != "parser":
        return own
    for other, config in _PARSER_CONFIG_OF.items():
        own += [Program(config, p.steps, None, p.name) for p in load(other)]
    return own
