"""Incremental, namespace-aware parser for XMPP streams (RFC 6120 §11 restricted XML).

Bytes go in as they arrive from the socket; complete top-level elements (stanzas) come out as
`Element` trees. The work is done by expat; Python only runs once per start tag, end tag and
text run, which is what keeps the parser at several MB/s.

Design notes:

* The stream's own content namespace (``jabber:client``, ``jabber:component:accept``, ...) is
  mapped to ``jabber:server`` at every depth, so routing code sees one namespace.
* Restricted XML: comments, processing instructions, DOCTYPE (hence entity declarations) raise
  ``restricted-xml``; references to undefined entities also raise ``restricted-xml`` (they are
  entity references other than the predefined five, which §11.1 forbids). Parameter-entity
  parsing is off and DOCTYPE is refused at its first token, so no entity is ever expanded.
* Malformed input, invalid UTF-8, an XML declaration in mid-stream and non-whitespace text
  between stanzas raise ``not-well-formed``; an unbound prefix raises
  ``bad-namespace-prefix``; an encoding declaration other than UTF-8 raises
  ``unsupported-encoding``.
* Whitespace between stanzas is a keepalive: it is dropped, and one `Whitespace` event is
  emitted per `feed` call that contained any, so a session can note liveness.
* Names: an element or namespaced attribute name longer than `MAX_NAME` characters (namespace
  URI included) raises ``policy-violation``; only short names enter the caches shared by all
  parsers, so no input can grow shared state.
* Limits: a stanza whose size exceeds ``max_stanza_size`` (counted over the bytes fed while it
  is open, or while a top-level token is still incomplete) raises ``policy-violation`` as soon
  as a chunk of at most ``max_stanza_size`` bytes pushes it over, so memory stays bounded.
  ``max_depth`` counts the stanza itself as depth 1.
* After a `StreamError` the parser is dead; every later `feed` raises the same condition.
  Stanzas completed earlier in the failing call are not lost: they ride on the exception as
  `ParseError.events` (RFC 6120 §4.9.1.1 processes stanzas received before the error).
* After `StreamClosed` or `HeaderReceived` the parser stops; later input is ignored.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, NoReturn
from xml.parsers import expat

from zerolink.errors import STREAMS_NS, RemoteProtocolError, StreamError
from zerolink.xml import deferral
from zerolink.xml.element import SERVER_NS, Element

__all__ = [
    "X2X_HEADER",
    "Event",
    "HeaderReceived",
    "ParseError",
    "StanzaReceived",
    "StreamClosed",
    "StreamOpened",
    "StreamParser",
    "Whitespace",
    "parse_stanza",
]

STREAM_TAG = "{" + STREAMS_NS + "}stream"

#: The implied stream header of an XEP-0361 (X2X) link.
X2X_HEADER = (
    b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>"
)


# -- events ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The stream header was parsed; attrs in Clark notation plus "xmlns" (default namespace)."""

    attrs: dict[str, str]


@dataclass(slots=True)  # not frozen: built once per stanza, frozen costs ~3x
class StanzaReceived:
    """A complete top-level element; size is the bytes it occupied (end tag excluded).

    With ``track_ends`` on, `end` is the offset just past the element in the bytes given to
    `StreamParser.feed` (counted from the parser's first byte), else -1: a session that
    restarts the stream after this element hands what follows to the next parser exactly.
    """

    element: Element
    size: int
    end: int = -1


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The peer sent ``</stream:stream>``."""


@dataclass(frozen=True, slots=True)
class Whitespace:
    """The feed() call contained whitespace between stanzas (a keepalive)."""


@dataclass(frozen=True, slots=True)
class HeaderReceived:
    """In implied-header mode the peer sent a stream header (or an XML declaration) anyway.

    attrs are those of the ``<stream:stream>`` start tag (plus "xmlns"), or empty when only an
    XML declaration was seen. Parsing stops here; the session decides what to do.

    `start` is the offset in the bytes given to `StreamParser.feed` where that header (or its
    XML declaration) begins: a session that wants to read what the peer sent after it (its own
    ``<stream:error>``) parses from there, with no scan of the raw bytes for a header.
    """

    attrs: dict[str, str] = field(default_factory=dict)
    start: int = field(default=-1, compare=False)


Event = StreamOpened | StanzaReceived | StreamClosed | Whitespace | HeaderReceived

_WHITESPACE = Whitespace()
_CLOSED = StreamClosed()


class ParseError(RemoteProtocolError):
    """The `StreamError` raised by `StreamParser.feed`: what the peer sent is not acceptable.

    ``events`` holds what the failing call completed before the error (to be processed before
    the stream is closed); a dead parser re-raises the condition with no events.
    """

    def __init__(
        self, condition: str, text: str | None = None, events: list[Any] | None = None
    ) -> None:
        super().__init__(condition, text)
        self.events: list[Event] = events or []


class _Stop(Exception):
    """Raised from a handler to end parsing without an error (stream closed / header seen)."""


# -- name conversion ---------------------------------------------------------------------------
_SEP = "}"
_CACHE_LIMIT = 4096
#: Longest element or namespaced attribute name, namespace URI included ("uri}local"), in
#: characters. XMPP's names are short; a longer one is a `policy-violation`.
MAX_NAME = 1024
# Only names up to this length are cached: the caches are shared by every parser, and no input
# (before authentication or after) may grow shared state by more than
# _CACHE_LIMIT * _CACHED_NAME characters per cache.
_CACHED_NAME = 128
# expat name -> Clark name, one cache per content namespace, shared by all parsers.
_TAG_CACHES: dict[str, dict[str, str]] = {}
_ATTR_CACHE: dict[str, str] = {}


def _name_too_long(name: str) -> NoReturn:
    raise StreamError(
        "policy-violation", f"name of {len(name)} characters (limit {MAX_NAME}): {name[:40]}..."
    )


_ERRORS = expat.errors
_UNBOUND_PREFIX = _ERRORS.codes[_ERRORS.XML_ERROR_UNBOUND_PREFIX]
_UNDECLARING_PREFIX = _ERRORS.codes[_ERRORS.XML_ERROR_UNDECLARING_PREFIX]
_UNDEFINED_ENTITY = _ERRORS.codes[_ERRORS.XML_ERROR_UNDEFINED_ENTITY]
_MISPLACED_XML_PI = _ERRORS.codes[_ERRORS.XML_ERROR_MISPLACED_XML_PI]
_XML_WS = " \t\r\n"


def _tag_namer(content_ns: str) -> tuple[dict[str, str], Any]:
    """(cache, convert) turning ``ns}local`` into ``{ns}local`` with content_ns -> SERVER_NS."""
    cache = _TAG_CACHES.setdefault(content_ns, {})

    def convert(name: str) -> str:
        if len(name) > MAX_NAME:
            _name_too_long(name)
        ns, sep, local = name.rpartition(_SEP)  # local names never contain '}'
        if not sep:
            tag = name
        else:
            if ns == content_ns:
                ns = SERVER_NS
            tag = "{" + ns + "}" + local
        if len(name) <= _CACHED_NAME:
            if len(cache) >= _CACHE_LIMIT:  # bounded: a peer may send endless distinct names
                cache.clear()
            cache[name] = tag
        return tag

    return cache, convert


def _attr_name(name: str) -> str:
    tag = _ATTR_CACHE.get(name)
    if tag is None:
        if len(name) > MAX_NAME:
            _name_too_long(name)
        ns, _, local = name.rpartition(_SEP)
        tag = "{" + ns + "}" + local
        if len(name) <= _CACHED_NAME:
            if len(_ATTR_CACHE) >= _CACHE_LIMIT:
                _ATTR_CACHE.clear()
            _ATTR_CACHE[name] = tag
    return tag


def _fix_attrs(attrs: dict[str, str]) -> dict[str, str]:
    return {(_attr_name(k) if _SEP in k else k): v for k, v in attrs.items()}


def _restricted(what: str) -> NoReturn:
    raise StreamError("restricted-xml", f"{what} not allowed in XMPP")


def _reject_doctype(*_: object) -> NoReturn:
    _restricted("DOCTYPE")


def _reject_entity(*_: object) -> NoReturn:
    _restricted("entity declaration")


def _reject_comment(*_: object) -> NoReturn:
    _restricted("comment")


def _reject_pi(*_: object) -> NoReturn:
    _restricted("processing instruction")


def _check_xml_decl(version: str | None, encoding: str | None, standalone: int) -> None:
    if encoding is not None and encoding.upper() not in ("UTF-8", "UTF8"):
        raise StreamError("unsupported-encoding", f"encoding {encoding!r}; only UTF-8 is allowed")


def _error_from_expat(e: expat.ExpatError) -> StreamError:
    code = e.code
    if code in (_UNBOUND_PREFIX, _UNDECLARING_PREFIX):
        return StreamError("bad-namespace-prefix", str(e))
    if code == _UNDEFINED_ENTITY:
        return StreamError("restricted-xml", str(e))
    return StreamError("not-well-formed", str(e))


# -- the parser --------------------------------------------------------------------------------
class StreamParser:
    """Incremental XMPP stream parser: bytes in, `Event`s out (see the module docstring)."""

    def __init__(
        self,
        *,
        content_ns: str = SERVER_NS,
        max_stanza_size: int = 262144,
        max_depth: int = 64,
        implied_header: bytes | None = None,
        track_ends: bool = False,
        also_ns: Collection[str] = (),
    ) -> None:
        self.content_ns = content_ns
        # Other content namespaces the stream header may declare instead (mapped the same
        # way): for reading a peer's stream whose namespace is not known in advance.
        self._also_ns = also_ns
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self._implied = implied_header is not None
        self._header_seen = False
        self._stopped = False
        self._error: StreamError | None = None
        # First (up to 5) non-whitespace bytes after priming, to recognise "<?xml" there.
        self._lead = b""
        self._lead_done = not self._implied
        self._fed = 0  # bytes given to expat (the implied header included)
        #: Bytes given to `feed` so far (leading whitespace of the stream included).
        self.received = 0
        self._started = self._implied  # a non-whitespace byte was seen (or implied header)
        self._base = 0  # expat offset + _base = offset in the bytes given to feed
        # track_ends: input since the start of the current top-level token (expat offsets).
        self._track = track_ends
        self._window = b""
        self._window_at = 0
        self._parser = self._build()
        if implied_header is not None:
            try:  # not through _feed: the header is not input, no limit applies to it
                self._fed += len(implied_header)
                self._parser.Parse(implied_header, False)
            except (StreamError, expat.ExpatError) as e:
                raise ValueError(f"bad implied header {implied_header!r}: {e}") from None
            if not self._header_seen or any(type(e) is not Whitespace for e in self._events):
                raise ValueError(f"implied header {implied_header!r} is not a bare stream header")
            self._events.clear()
            self._reset_ws()
            self._base = -self._fed
            self._window_at = self._fed

    @property
    def header_seen(self) -> bool:
        """True once the stream header was parsed (immediately, in implied-header mode)."""
        return self._header_seen

    # The handlers are closures over local state: cell access is cheaper than attribute access
    # on self, and they run once per tag.
    def _build(self) -> Any:
        p = expat.ParserCreate("UTF-8", _SEP)
        p.buffer_text = True
        p.buffer_size = 65536
        p.ordered_attributes = False
        p.specified_attributes = True
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        deferral.disable(p)  # expat >= 2.6 would hold a completed token until more input

        content_ns = self.content_ns
        max_depth = self.max_depth
        max_size = self.max_stanza_size
        implied = self._implied
        track = self._track
        also_ns = self._also_ns
        cache, convert = _tag_namer(content_ns)
        cached = cache.get
        new = Element.__new__
        stack: list[Element] = []  # open elements of the current stanza
        events: list[Any] = []
        self._events = events
        self._stack = stack
        in_root = False
        stanza_start = 0
        default_decl: str | None = None
        saw_ws = False

        def start(name: str, attrs: dict[str, str]) -> None:
            nonlocal in_root, stanza_start, default_decl, cached, convert
            tag = cached(name) or convert(name)
            for k in attrs:
                if _SEP in k:
                    attrs = _fix_attrs(attrs)
                    break
            if stack:
                el = new(Element)
                el.tag = tag
                el.attrib = attrs
                el.children = []
                stack[-1].children.append(el)
                stack.append(el)
                if len(stack) > max_depth:
                    raise StreamError("policy-violation", f"nesting deeper than {max_depth}")
                if default_decl is not None:
                    default_decl = None
                return
            if in_root:
                decl, default_decl = default_decl, None
                if implied and tag == STREAM_TAG:
                    if decl is not None:
                        attrs["xmlns"] = decl
                    events.append(HeaderReceived(attrs, p.CurrentByteIndex + self._base))
                    raise _Stop
                el = new(Element)
                el.tag = tag
                el.attrib = attrs
                el.children = []
                stanza_start = p.CurrentByteIndex
                stack.append(el)
                return
            # the stream header
            decl, default_decl = default_decl, None
            if tag != STREAM_TAG:
                raise StreamError("invalid-namespace", f"stream root is {tag}, not {STREAM_TAG}")
            if decl != content_ns:
                if decl is None or decl not in also_ns:
                    raise StreamError(
                        "invalid-namespace",
                        f"stream default namespace is {decl!r}, expected {content_ns!r}",
                    )
                # The root's own name is in the streams namespace: the same in every namer.
                self.content_ns = decl
                names, convert = _tag_namer(decl)
                cached = names.get
            in_root = True
            self._header_seen = True
            if not implied:
                attrs["xmlns"] = decl
                events.append(StreamOpened(attrs))

        def end(name: str) -> None:
            if len(stack) > 1:
                stack.pop()
                return
            if stack:
                el = stack.pop()
                size = p.CurrentByteIndex - stanza_start
                if size > max_size:
                    raise StreamError(
                        "policy-violation", f"stanza too large ({size} bytes, limit {max_size})"
                    )
                if track:
                    end = self._end_of_element(stanza_start, p.CurrentByteIndex)
                    events.append(StanzaReceived(el, size, end))
                else:
                    events.append(StanzaReceived(el, size))
                return
            events.append(_CLOSED)
            raise _Stop

        def text(data: str) -> None:
            nonlocal saw_ws
            if stack:
                children = stack[-1].children
                if children and type(children[-1]) is str:
                    children[-1] += data  # expat splits text at feed boundaries; rejoin
                else:
                    children.append(data)
            elif data.strip(_XML_WS):
                raise StreamError("not-well-formed", "text between stanzas")
            elif not saw_ws:
                saw_ws = True
                events.append(_WHITESPACE)

        def ns_decl(prefix: str | None, uri: str | None) -> None:
            nonlocal default_decl
            if prefix is None:
                default_decl = uri or ""

        def reset_ws() -> None:
            nonlocal saw_ws
            saw_ws = False

        def stanza_begin() -> int:
            return stanza_start

        def stanza_used() -> int:
            """Bytes held by the open stanza, or by a top-level token not yet complete."""
            if stack:
                return self._fed - stanza_start
            return self._fed - p.CurrentByteIndex

        self._reset_ws = reset_ws
        self._stanza_used = stanza_used
        self._stanza_start = stanza_begin
        p.StartElementHandler = start
        p.EndElementHandler = end
        p.CharacterDataHandler = text
        p.StartNamespaceDeclHandler = ns_decl
        p.XmlDeclHandler = _check_xml_decl
        p.StartDoctypeDeclHandler = _reject_doctype
        p.EntityDeclHandler = _reject_entity
        p.UnparsedEntityDeclHandler = _reject_entity
        p.CommentHandler = _reject_comment
        p.ProcessingInstructionHandler = _reject_pi
        return p

    def _end_of_element(self, start: int, at: int) -> int:
        """Offset (in fed bytes) just past the top-level element that began at `start` and
        whose end event expat reported at `at` (expat offsets).

        expat reports an end tag's event where ``</name>`` begins, and an empty-element tag's
        where it ends: which one it was is told by the start tag itself (``/>``), found by
        scanning it with its quoted attribute values ('>' may occur in them).
        """
        buf, base = self._window, self._window_at
        quote = 0
        j = start - base
        for j in range(start - base, len(buf)):
            c = buf[j]
            if quote:
                if c == quote:
                    quote = 0
            elif c in (0x22, 0x27):
                quote = c
            elif c == 0x3E:
                break
        # <name .../> ends with its start tag; an end tag </name> holds no other '>'.
        empty = buf[j - 1] == 0x2F
        end = j + 1 if empty else buf.index(b">", at - base) + 1
        return base + end + self._base

    def _trim_window(self) -> None:
        """Keep only the input from the start of the top-level token still open, if any."""
        buf = self._window
        if self._stack:
            keep = self._stanza_start() - self._window_at
        else:  # between elements only whitespace and one incomplete tag: it starts at '<'
            keep = buf.rfind(b"<")
            if keep < 0:
                keep = len(buf)
        if keep > 0:
            self._window = buf[keep:]
            self._window_at += keep

    def _feed(self, data: bytes) -> None:
        """Give data to expat in chunks of at most max_stanza_size; check the limit after each."""
        if self._track:
            self._window += data
            try:
                self._feed_chunks(data)
            finally:
                self._trim_window()
        else:
            self._feed_chunks(data)

    def _feed_chunks(self, data: bytes) -> None:
        """Never feed an open stanza past the limit: the byte that would exceed it is the
        error, whatever follows and however the input is split into reads."""
        parse = self._parser.Parse
        limit = self.max_stanza_size
        n = len(data)
        room = limit - self._stanza_used()
        if n <= room:
            self._fed += n
            parse(data, False)
            return
        view = memoryview(data)
        pos = 0
        while pos < n:
            room = limit - self._stanza_used()
            if room <= 0:
                self._too_large()
            take = min(room, n - pos)
            self._fed += take
            parse(view[pos : pos + take], False)
            pos += take

    def _too_large(self) -> NoReturn:
        raise StreamError(
            "policy-violation",
            f"stanza too large ({self._stanza_used()} bytes, limit {self.max_stanza_size})",
        )

    def feed(self, data: bytes) -> list[Event]:
        """Parse more bytes; return the events they completed. Raises `ParseError`."""
        if self._error is not None:
            err = self._error
            raise ParseError(err.condition, err.text)
        if self._stopped or not data:
            return []
        self.received += len(data)
        if not self._started:
            # Whitespace before a (re)started stream's first token belongs to the stream
            # before it (e.g. a newline after </auth>): an XML declaration may still follow.
            stripped = data.lstrip(b" \t\r\n")
            skipped = len(data) - len(stripped)
            if skipped:
                self._base += skipped
                data = stripped
                if not data:
                    return []
            self._started = True
        if not self._lead_done:
            lead = (self._lead + data).lstrip(b" \t\r\n")[:5]
            self._lead = lead
            self._lead_done = len(lead) == 5
        events = self._events
        nul = data.find(b"\0")
        try:
            if nul < 0:
                self._feed(data)
            else:
                # XML has no U+0000, and UTF-8 has no NUL byte in any other character: this is
                # another encoding (expat would take UTF-16 despite being told UTF-8).
                if nul:
                    self._feed(data[:nul])
                raise StreamError("not-well-formed", "NUL byte: the stream must be UTF-8")
        except _Stop:
            self._stopped = True
        except StreamError as e:
            self._die(e)
        except expat.ExpatError as e:
            if e.code == _MISPLACED_XML_PI and self._implied and self._lead.startswith(b"<?xml"):
                self._stopped = True
                events.append(HeaderReceived({}, self._parser.ErrorByteIndex + self._base))
            else:
                # Text expat had buffered before the error comes first (as it would have if
                # the input had been split just before the error): it may be an error itself.
                try:
                    self._parser.buffer_text = False
                except StreamError as earlier:
                    self._die(earlier)
                except _Stop:
                    pass
                self._die(_error_from_expat(e))
        self._reset_ws()
        if not events:
            return []
        out = events.copy()
        events.clear()
        return out

    def _die(self, e: StreamError) -> NoReturn:
        self._error = e
        events = self._events.copy()
        self._events.clear()
        self._stack.clear()
        raise ParseError(e.condition, e.text, events) from None


def parse_stanza(data: bytes) -> Element:
    """One stanza kept as serialized bytes (in ``jabber:server``, as on an X2X link) back as an
    `Element`: for queued or stored stanzas that must be bounced or delivered again."""
    parser = StreamParser(implied_header=X2X_HEADER, max_stanza_size=max(len(data), 1) + 1)
    events = [e for e in parser.feed(data) if isinstance(e, StanzaReceived)]
    if len(events) != 1:
        raise ValueError(f"not one stanza: {data[:60]!r}")
    return events[0].element
