"""Secrets out of the raw-bytes debug log.

`--log-level debug` logs every byte a session reads and writes. Some of them are secrets: the
SASL payloads (PLAIN carries the password in base64, SCRAM messages let an offline guesser
test passwords) and the XEP-0114 handshake digest (whoever replays it within the same stream
id is the component). `Redactor` replaces the text content of such elements with
``[redacted]`` before the bytes reach the log, one instance per direction of a connection,
so an element split across reads (two TCP segments, two TLS records) is hidden all the same.

It scans tags, not XML: after the open tag of a secret element everything up to its next
``</`` is hidden (also CDATA or a comment, should a client send one), whatever the chunking.
"""

from __future__ import annotations

import re

# Elements whose text is a secret, by local name (any prefix, any namespace).
SASL_SECRETS = frozenset({b"auth", b"response", b"challenge", b"success"})
COMPONENT_SECRETS = frozenset({b"handshake"})

MARK = b"[redacted]"
_TAG_NAME = re.compile(rb"<([A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")
_MAX_TAG = 4096  # a longer "tag" is no open tag of ours; stop keeping it


class Redactor:
    """Bytes of one direction in, the same bytes with secret element content hidden out."""

    def __init__(self, names: frozenset[bytes]) -> None:
        self.names = names
        self._tag: bytearray | None = None  # an open tag seen so far ("<auth mech...")
        self._inside = False  # in the content of a secret element
        self._lt = False  # inside, and the previous chunk ended in "<"

    def __call__(self, data: bytes) -> bytes:
        if not self.names:
            return data
        out = bytearray()
        i, n = 0, len(data)
        while i < n:
            if self._inside:
                i = self._skip_secret(data, i, out)
            elif self._tag is not None:
                j = data.find(b">", i)
                end = n if j < 0 else j + 1
                out += data[i:end]
                if len(self._tag) < _MAX_TAG:
                    self._tag += data[i:end]
                i = end
                if j >= 0:
                    self._inside = self._opens_secret(bytes(self._tag))
                    self._tag = None
            else:
                j = data.find(b"<", i)
                if j < 0:
                    out += data[i:]
                    break
                out += data[i:j]
                self._tag = bytearray()
                i = j
        return bytes(out)

    def _skip_secret(self, data: bytes, i: int, out: bytearray) -> int:
        """Hide content up to the closing tag's ``</``; return where the scan goes on."""
        n = len(data)
        if self._lt:
            self._lt = False
            if data[i : i + 1] == b"/":
                self._inside = False
                out += b"<"
                return i
        j = data.find(b"</", i)
        if j < 0:
            if data.endswith(b"<"):
                self._lt = True
            if not out.endswith(MARK):
                out += MARK
            return n
        if not out.endswith(MARK) and j > i:
            out += MARK
        self._inside = False
        return j

    def _opens_secret(self, tag: bytes) -> bool:
        if tag.endswith(b"/>"):
            return False
        m = _TAG_NAME.match(tag)
        return m is not None and m.group(2) in self.names
