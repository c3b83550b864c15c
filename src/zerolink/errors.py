"""Errors named by their RFC 6120 condition, and split by who is at fault (as h11 does).

Two families: a `StreamError` ends the stream (RFC 6120 §4.9), a `StanzaError` is answered
with an error stanza and the stream goes on (RFC 6120 §8.3). Who is at fault decides where an
error goes:

* `RemoteProtocolError` (a `StreamError`): what the other end sent breaks the protocol (the
  parser's `ParseError` is one). Raised inside a session and translated at one boundary
  (`zerolink.proto.stream.StreamSkeleton`) into our stream error on the wire and events; it
  never reaches the session's caller.
* `LocalProtocolError`: we used a session wrongly (a stanza sent after the close, a bind
  answered that nobody asked for). A bug of ours: raised to the caller, nothing is written.

`ConfigError` collects every problem in a configuration file at once.
"""

from __future__ import annotations

from dataclasses import dataclass

STREAMS_NS = "http://etherx.jabber.org/streams"
STREAM_ERROR_NS = "urn:ietf:params:xml:ns:xmpp-streams"
STANZA_ERROR_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"

# RFC 6120 §4.9.3
STREAM_CONDITIONS = frozenset(
    {
        "bad-format",
        "bad-namespace-prefix",
        "conflict",
        "connection-timeout",
        "host-gone",
        "host-unknown",
        "improper-addressing",
        "internal-server-error",
        "invalid-from",
        "invalid-namespace",
        "invalid-xml",
        "not-authorized",
        "not-well-formed",
        "policy-violation",
        "remote-connection-failed",
        "reset",
        "resource-constraint",
        "restricted-xml",
        "see-other-host",
        "system-shutdown",
        "undefined-condition",
        "unsupported-encoding",
        "unsupported-feature",
        "unsupported-stanza-type",
        "unsupported-version",
    }
)

# RFC 6120 §8.3.3, with the error type each condition takes by default.
STANZA_CONDITIONS: dict[str, str] = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}


class StorageError(Exception):
    """Persistence failed (a full disk, a locked or unusable database).

    Defined here so that the sans-I/O host can answer a stanza whose write failed without
    importing the store; `zerolink.store.StoreError` is one.
    """


class XMPPError(Exception):
    """Base of the protocol errors; `condition` is the RFC 6120 element name."""

    condition: str
    text: str | None

    def __init__(self, condition: str, text: str | None = None) -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text


class StreamError(XMPPError):
    """A condition that ends the stream (RFC 6120 §4.9.3)."""

    def __init__(self, condition: str, text: str | None = None) -> None:
        if condition not in STREAM_CONDITIONS:
            raise ValueError(f"not an RFC 6120 stream error condition: {condition!r}")
        super().__init__(condition, text)


class RemoteProtocolError(StreamError):
    """The other end broke the protocol: the session answers with this stream error."""


class LocalProtocolError(RuntimeError):
    """We called a session in a way its state does not allow: a bug on our side.

    A `RuntimeError`, which is what these misuses raised before the split.
    """


class StanzaError(XMPPError):
    """A condition answered with an error stanza (RFC 6120 §8.3.3)."""

    type: str

    def __init__(self, condition: str, text: str | None = None, type: str | None = None) -> None:
        if condition not in STANZA_CONDITIONS:
            raise ValueError(f"not an RFC 6120 stanza error condition: {condition!r}")
        super().__init__(condition, text)
        self.type = type or STANZA_CONDITIONS[condition]


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration file: where (dotted key path) and what was expected."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """Every problem found in a configuration file, reported together."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")
