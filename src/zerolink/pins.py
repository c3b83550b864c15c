"""Certificate pins: XEP-0361 §4.6 "simply pinning a trusted certificate".

A pin is the SHA-256 of either the whole DER certificate (``cert``: changes with every new
certificate) or of its DER SubjectPublicKeyInfo (``spki``: survives re-issuing a certificate
for the same key, as HPKP pins do). `parse_pin` reads the forms people paste from the tools
they already have (see its docstring); `str(pin)` gives the canonical form, which
`parse_pin` reads back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

__all__ = ["Pin", "cert_pin", "parse_pin", "pin_matches", "spki_pin"]

KINDS = ("cert", "spki")
DIGEST_SIZE = 32  # SHA-256

ACCEPTED = (
    "accepted forms: 'sha256//BASE64' or 'pin-sha256=\"BASE64\"' or bare BASE64 of 32 bytes "
    "(SHA-256 of the SubjectPublicKeyInfo); 'sha256 Fingerprint=AB:CD:...' as "
    "`openssl x509 -noout -fingerprint -sha256` prints it, 32 colon-separated hex bytes, "
    "64 hex digits or 'cert-sha256:AB:CD:...' (SHA-256 of the DER certificate); "
    "'spki:' or 'cert:' before any of these forces the kind"
)

_HEX64 = re.compile(r"[0-9A-Fa-f]{64}")
_HEX_COLONS = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31}")
_BASE64_32 = re.compile(r"[A-Za-z0-9+/]{43}=")
# OpenSSL 3 prints "sha256 Fingerprint=", OpenSSL 1.1 "SHA256 Fingerprint=".
_FINGERPRINT = re.compile(r"([A-Za-z0-9-]+)\s+fingerprint\s*=\s*", re.IGNORECASE)
_HPKP = re.compile(r'pin-sha256\s*=\s*"?([^"]*)"?', re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Pin:
    """A SHA-256 pin of a certificate (``kind="cert"``) or of its public key (``"spki"``)."""

    kind: str
    digest: bytes

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"pin kind must be 'cert' or 'spki', not {self.kind!r}")
        if not isinstance(self.digest, bytes) or len(self.digest) != DIGEST_SIZE:
            raise ValueError(f"a pin digest is {DIGEST_SIZE} bytes (SHA-256)")

    def __str__(self) -> str:
        if self.kind == "spki":
            return "sha256//" + base64.b64encode(self.digest).decode("ascii")
        return "cert-sha256:" + self.digest.hex(":").upper()


def parse_pin(text: str) -> Pin:
    """Read a pin as people paste it. Raises `ValueError` naming the accepted forms.

    Public-key (``spki``) pins, SHA-256 of the DER SubjectPublicKeyInfo:

    * ``sha256//BASE64``, as curl's ``--pinnedpubkey`` and HPKP tooling write it;
    * ``pin-sha256="BASE64"``, the HPKP header directive (quotes optional);
    * bare ``BASE64`` of 32 bytes (44 characters, ending in ``=``), which is what
      ``openssl x509 -pubkey -noout -in c.pem | openssl pkey -pubin -outform der |
      openssl dgst -sha256 -binary | base64`` prints.

    Certificate (``cert``) pins, SHA-256 of the DER certificate:

    * ``sha256 Fingerprint=AB:CD:...`` (OpenSSL 3) or ``SHA256 Fingerprint=AB:CD:...``
      (OpenSSL 1.1), as ``openssl x509 -noout -fingerprint -sha256`` prints it;
    * 32 colon-separated hex bytes ``AB:cd:...`` (either case);
    * 64 hex digits;
    * ``cert-sha256:AB:CD:...``, the canonical form ``str(pin)`` gives.

    A ``spki:`` or ``cert:`` prefix before any of the digest forms above forces the kind,
    e.g. ``spki:AB:CD:...`` for a public-key hash written in hex. Keywords are
    case-insensitive; surrounding whitespace is ignored. Anything else is refused: only
    SHA-256 is accepted (a SHA-1 fingerprint is 20 bytes and says so in the error).
    """
    if not isinstance(text, str):
        raise ValueError(f"a pin is a string, not {type(text).__name__}")
    s = text.strip()
    forced: str | None = None
    low = s.lower()
    for kind in KINDS:
        if low.startswith(kind + ":"):
            forced, s = kind, s[len(kind) + 1 :].strip()
            break
    parsed = _parse_digest(s)
    if parsed is None:
        raise ValueError(f"not a SHA-256 pin: {text!r}; {ACCEPTED}")
    kind, digest = parsed
    if isinstance(digest, str):  # a reason the digest is unusable
        raise ValueError(f"not a SHA-256 pin: {text!r}: {digest}; {ACCEPTED}")
    return Pin(forced or kind, digest)


def _parse_digest(s: str) -> tuple[str, bytes | str] | None:
    """(kind the form implies, digest or why not), or None for an unknown form."""
    low = s.lower()
    if low.startswith("sha256//"):
        return "spki", _b64(s[len("sha256//") :])
    m = _HPKP.fullmatch(s)
    if m:
        return "spki", _b64(m.group(1))
    if low.startswith("cert-sha256:"):
        return "cert", _hex(s[len("cert-sha256:") :])
    m = _FINGERPRINT.match(s)
    if m:
        if m.group(1).lower() not in ("sha256", "sha2-256"):
            return "cert", f"a {m.group(1)} fingerprint; only SHA-256 is accepted (-sha256)"
        return "cert", _hex(s[m.end() :])
    if _BASE64_32.fullmatch(s):
        return "spki", _b64(s)
    if ":" in s or _looks_hex(s):
        return "cert", _hex(s)
    return None


def _looks_hex(s: str) -> bool:
    return bool(s) and all(c in "0123456789abcdefABCDEF" for c in s)


def _b64(s: str) -> bytes | str:
    s = s.strip()
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return "invalid base64"
    if len(raw) != DIGEST_SIZE:
        return f"the base64 decodes to {len(raw)} bytes, a SHA-256 digest is {DIGEST_SIZE}"
    if base64.b64encode(raw).decode("ascii") != s:
        return "non-canonical base64"
    return raw


def _hex(s: str) -> bytes | str:
    s = s.strip()
    if _HEX64.fullmatch(s) or _HEX_COLONS.fullmatch(s):
        return bytes.fromhex(s.replace(":", ""))
    octets = s.split(":") if ":" in s else None
    if octets and all(len(o) == 2 and _looks_hex(o) for o in octets):
        n = len(octets)
        hint = " (a SHA-1 fingerprint? use -sha256)" if n == 20 else ""
        return f"{n} hex bytes, a SHA-256 digest is {DIGEST_SIZE}{hint}"
    if _looks_hex(s):
        n = len(s)
        hint = " (a SHA-1 fingerprint? use -sha256)" if n == 40 else ""
        return f"{n} hex digits, a SHA-256 digest is {2 * DIGEST_SIZE}{hint}"
    return "invalid hex fingerprint"


def _load(der: bytes) -> x509.Certificate:
    if not isinstance(der, bytes | bytearray | memoryview):
        raise ValueError(f"a DER certificate is bytes, not {type(der).__name__}")
    if bytes(der[:11]) == b"-----BEGIN ":
        raise ValueError("PEM given where a DER certificate is expected")
    try:
        return x509.load_der_x509_certificate(bytes(der))
    except ValueError as exc:
        raise ValueError(f"not a DER certificate: {exc}") from None


def cert_pin(der: bytes) -> Pin:
    """The ``cert`` pin of a DER certificate (its SHA-256 fingerprint)."""
    _load(der)
    return Pin("cert", hashlib.sha256(bytes(der)).digest())


def spki_pin(der: bytes) -> Pin:
    """The ``spki`` pin of a DER certificate: SHA-256 of its SubjectPublicKeyInfo.

    Hashes the SubjectPublicKeyInfo exactly as encoded in the certificate (RFC 7469 §2.4),
    not a re-encoding of the parsed key.
    """
    cert = _load(der)
    return Pin("spki", hashlib.sha256(_spki_der(cert.tbs_certificate_bytes)).digest())


def pin_matches(pins: Iterable[Pin], der: bytes) -> bool:
    """True when the DER certificate matches any of `pins` (False if it is not a certificate).

    Digests are compared in constant time.
    """
    digests: dict[str, bytes] = {}
    for pin in pins:
        if pin.kind not in digests:
            try:
                digests[pin.kind] = (cert_pin if pin.kind == "cert" else spki_pin)(der).digest
            except ValueError:
                return False
        if hmac.compare_digest(digests[pin.kind], pin.digest):
            return True
    return False


# --- just enough DER to find the SubjectPublicKeyInfo in a TBSCertificate --------------


def _tlv(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of element) of the DER element at `pos`."""
    if pos + 2 > len(buf):
        raise ValueError("truncated DER")
    tag, first = buf[pos], buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if not 1 <= n <= 4 or pos + n > len(buf):
            raise ValueError("bad DER length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    end = pos + length
    if end > len(buf):
        raise ValueError("truncated DER")
    return tag, pos, end


def _spki_der(tbs: bytes) -> bytes:
    # TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
    #                               validity, subject, subjectPublicKeyInfo, ... }
    tag, pos, end = _tlv(tbs, 0)
    if tag != 0x30:
        raise ValueError("TBSCertificate is not a SEQUENCE")
    field = 0
    while pos < end:
        tag, _content, nxt = _tlv(tbs, pos)
        if field == 0 and tag == 0xA0:  # explicit version
            pos = nxt
            continue
        if field == 5:
            if tag != 0x30:
                raise ValueError("SubjectPublicKeyInfo is not a SEQUENCE")
            return tbs[pos:nxt]
        field, pos = field + 1, nxt
    raise ValueError("no SubjectPublicKeyInfo in the TBSCertificate")
