"""XMPP addresses (JIDs) per RFC 7622.

A JID is ``[localpart@]domainpart[/resourcepart]``:

* localpart: PRECIS ``UsernameCaseMapped`` (RFC 8265), then none of ``"&'/:<>@``
  (RFC 7622 §3.3.1);
* domainpart: an IP literal (IPv4 dotted quad, or IPv6 in brackets) or a domain name
  prepared with IDNA2008 plus UTS #46 mapping (allowed by RFC 7622 §3.2), one trailing
  dot stripped first; the canonical form is U-labels, lowercase (``xn--bcher-kva.example``
  and ``Bücher.example`` both become ``bücher.example``);
* resourcepart: PRECIS ``OpaqueString`` (RFC 8264), case kept.

Every part is 1-1023 octets of UTF-8 after preparation; a domain name also obeys the DNS
limits on its ASCII (A-label) form: labels of at most 63 octets, at most 253 octets in all.

`JID.parse` returns the normalized form, so dataclass equality and hashing compare
normalized addresses. Parsing is memoized by input string (routing sees the same JIDs over
and over), and ASCII parts take fast paths that give the same results as the libraries.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

import idna
from precis_i18n import get_profile

from zerolink.errors import StanzaError, StreamError

__all__ = [
    "JID",
    "JIDError",
    "domain_of",
    "jid_domain",
    "normalize_domain",
    "parse_jid",
    "stanza_error_for",
    "stream_error_for",
]

MAX_PART_OCTETS = 1023  # RFC 7622 §3.2-3.4, after preparation
MAX_DNS_LABEL_OCTETS = 63  # RFC 1035 §2.3.4, A-label form
MAX_DNS_NAME_OCTETS = 253  # RFC 1035 §2.3.4 (255 on the wire), A-label form
# Longest normalized JID: three full parts and two separators. Anything much longer is
# rejected unread, which also bounds what the memo cache can hold.
MAX_JID_CHARS = 4 * 1024
CACHE_SIZE = 4096

_USERNAME = get_profile("UsernameCaseMapped")
_OPAQUE = get_profile("OpaqueString")

# ASCII that UsernameCaseMapped keeps (IdentifierClass ASCII7, case mapped afterwards)
# minus what RFC 7622 §3.3.1 forbids in a localpart.
_ASCII_LOCAL = re.compile(r"[!#-%(-.0-9;=?A-~]+")
_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")
# ASCII that OpaqueString keeps unchanged: printable ASCII and U+0020 SPACE.
_ASCII_RESOURCE = re.compile(r"[ -~]+")
# Lowercase NR-LDH labels that IDNA2008 accepts unchanged: no leading or trailing hyphen,
# no "--" in the 3rd and 4th positions (which also leaves every xn-- label to idna).
_LDH_LABEL = r"(?!..--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_LDH_DOMAIN = re.compile(rf"{_LDH_LABEL}(?:\.{_LDH_LABEL})*")


class JIDError(ValueError):
    """A malformed JID; `.text` says why."""

    text: str

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(frozen=True, slots=True)
class JID:
    """An RFC 7622 address, always in normalized form.

    Build one with `JID.parse`; the constructor also normalizes (and validates) its
    arguments, so ``JID("Juliet", "Example.com", None) == JID.parse("juliet@example.com")``.
    """

    local: str | None
    domain: str
    resource: str | None

    def __post_init__(self) -> None:
        local = None if self.local is None else _prep_local(self.local)
        domain = normalize_domain(self.domain)
        resource = None if self.resource is None else _prep_resource(self.resource)
        object.__setattr__(self, "local", local)
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "resource", resource)

    @classmethod
    def parse(cls, s: str) -> JID:
        """Parse and normalize `s`; raises `JIDError`."""
        return parse_jid(s)

    @property
    def bare(self) -> JID:
        """This address without its resourcepart."""
        if self.resource is None:
            return self
        return _make(self.local, self.domain, None)

    def is_bare(self) -> bool:
        return self.resource is None

    def __str__(self) -> str:
        s = self.domain if self.local is None else f"{self.local}@{self.domain}"
        return s if self.resource is None else f"{s}/{self.resource}"


def _make(local: str | None, domain: str, resource: str | None) -> JID:
    """A JID from parts already normalized (skips `JID.__post_init__`)."""
    jid = object.__new__(JID)
    object.__setattr__(jid, "local", local)
    object.__setattr__(jid, "domain", domain)
    object.__setattr__(jid, "resource", resource)
    return jid


# --- parts -----------------------------------------------------------------------------


def _check_octets(part: str, what: str) -> str:
    if len(part) > MAX_PART_OCTETS // 4 and len(part.encode("utf-8")) > MAX_PART_OCTETS:
        raise JIDError(f"{what} longer than {MAX_PART_OCTETS} octets")
    return part


def _precis_reason(exc: UnicodeError) -> str:
    return getattr(exc, "reason", None) or str(exc)


def _prep_local(s: str) -> str:
    """Localpart preparation and enforcement (RFC 7622 §3.3)."""
    if s.isascii() and _ASCII_LOCAL.fullmatch(s):
        return _check_octets(s.lower(), "localpart")
    if not s:
        raise JIDError("empty localpart")
    try:
        out = _USERNAME.enforce(s)
    except UnicodeError as exc:
        raise JIDError(f"invalid localpart: {_precis_reason(exc)}") from None
    bad = _LOCAL_FORBIDDEN.intersection(out)
    if bad:
        raise JIDError(f"localpart contains forbidden character(s) {''.join(sorted(bad))!r}")
    return _check_octets(out, "localpart")


def _prep_resource(s: str) -> str:
    """Resourcepart preparation and enforcement (RFC 7622 §3.4)."""
    if s.isascii() and _ASCII_RESOURCE.fullmatch(s):
        return _check_octets(s, "resourcepart")
    if not s:
        raise JIDError("empty resourcepart")
    try:
        out = _OPAQUE.enforce(s)
    except UnicodeError as exc:
        raise JIDError(f"invalid resourcepart: {_precis_reason(exc)}") from None
    return _check_octets(out, "resourcepart")


def _ip_literal(s: str) -> str:
    """``[IPv6]`` in canonical (compressed, lowercase) form."""
    if not s.endswith("]"):
        raise JIDError("unterminated IPv6 literal in domainpart")
    inner = s[1:-1]
    if "%" in inner:  # a zone index names a local interface, never a peer's address
        raise JIDError("IPv6 zone index not allowed in domainpart")
    try:
        return f"[{ipaddress.IPv6Address(inner).compressed}]"
    except ValueError:
        raise JIDError(f"invalid IPv6 literal in domainpart: {s!r}") from None


def _check_numeric(domain: str) -> str:
    """A name whose last label is all digits must be a valid IPv4 address.

    No top-level domain is numeric (RFC 3696 §2), so ``1.2.3.999`` or ``01.2.3.4`` is a
    botched address, not a host name.
    """
    last = domain.rpartition(".")[2]
    if not (last.isascii() and last.isdigit()):
        return domain
    try:
        return str(ipaddress.IPv4Address(domain))
    except ValueError:
        raise JIDError(f"invalid IPv4 address in domainpart: {domain!r}") from None


def _ascii_domain(s: str) -> str | None:
    """The fast path: canonical form of a plain LDH name, or None to defer to idna."""
    d = s.lower()
    if d.endswith("."):
        d = d[:-1]
    if len(d) <= MAX_DNS_NAME_OCTETS and _LDH_DOMAIN.fullmatch(d):
        return d
    return None


def _idna_domain(s: str) -> str:
    """IDNA2008 with UTS #46 mapping; returns U-labels, one trailing separator stripped."""
    stripped = s.endswith(".")
    if stripped:
        s = s[:-1]
    if not s:
        raise JIDError("empty domainpart")
    try:
        a = idna.encode(s, uts46=True)
        if a.endswith(b"."):  # a separator that UTS #46 mapped to "." (e.g. U+3002)
            if stripped:
                raise JIDError("empty label in domainpart")
            a = a[:-1]
        u = idna.decode(a)  # ASCII A-labels in, so no further mapping needed
    except (idna.IDNAError, UnicodeError) as exc:
        raise JIDError(f"invalid domainpart: {exc}") from None
    return _check_octets(u, "domainpart")


def _prep_domain(s: str) -> str:
    if not s:
        raise JIDError("empty domainpart")
    if s[0] == "[":
        return _ip_literal(s)
    if s.isascii():
        d = _ascii_domain(s)
        if d is not None:
            return _check_numeric(d)
    return _check_numeric(_idna_domain(s))


@lru_cache(maxsize=CACHE_SIZE)
def _domain_or_reason(s: str) -> str | JIDError:
    try:
        return _prep_domain(s)
    except JIDError as exc:
        exc.__traceback__ = None
        return exc


def normalize_domain(s: str) -> str:
    """Canonical form of a domainpart (U-labels, lowercase; IP literals canonical).

    Raises `JIDError`. Memoized like `parse_jid`.
    """
    if len(s) > MAX_JID_CHARS:
        raise _too_long()
    r = _domain_or_reason(s)
    if isinstance(r, str):
        return r
    raise JIDError(r.text)


# --- whole JIDs ------------------------------------------------------------------------


def _too_long() -> JIDError:
    # Checked before the memo, so an oversized string never becomes a cache key.
    return JIDError(f"longer than {MAX_JID_CHARS} characters")


def _parse(s: str) -> JID:
    # RFC 7622 §3.1-3.2: the resourcepart starts after the first '/', and the localpart
    # ends at the first '@' before that.
    rest, slash, res = s.partition("/")
    local, at, dom = rest.partition("@")
    if not at:
        local, dom = None, rest
    domain = normalize_domain(dom)
    if local is not None:
        if not local:
            raise JIDError("empty localpart")
        local = _prep_local(local)
    resource = None
    if slash:
        if not res:
            raise JIDError("empty resourcepart")
        resource = _prep_resource(res)
    return _make(local, domain, resource)


@lru_cache(maxsize=CACHE_SIZE)
def _jid_or_reason(s: str) -> JID | JIDError:
    # Failures are memoized too (as the exception, re-raised fresh each time) so a peer
    # repeating a bad address does not cost a full PRECIS/IDNA pass per stanza.
    try:
        return _parse(s)
    except JIDError as exc:
        exc.__traceback__ = None
        return exc


def parse_jid(s: str) -> JID:
    """Parse and normalize `s` (memoized); raises `JIDError`."""
    if len(s) > MAX_JID_CHARS:
        raise _too_long()
    r = _jid_or_reason(s)
    if isinstance(r, JID):
        return r
    raise JIDError(r.text)


@lru_cache(maxsize=CACHE_SIZE)
def canonical_jid(s: str) -> str:
    """`s` in normalized form (``X@GROUND.EXAMPLE.`` -> ``x@ground.example``); memoized, so a
    stanza's addresses can be rewritten at ingress for one dict lookup. Raises `JIDError`."""
    return str(parse_jid(s))


def jid_domain(s: str) -> str:
    """Normalized domainpart of the JID string `s`; raises `JIDError`.

    The whole JID is validated (a bad localpart or resourcepart is still jid-malformed),
    through the same memo as `parse_jid`, so a hit costs one dict lookup.
    """
    if len(s) > MAX_JID_CHARS:
        raise _too_long()
    r = _jid_or_reason(s)
    if isinstance(r, JID):
        return r.domain
    raise JIDError(r.text)


def domain_of(s: str) -> str:
    """The domainpart of the JID string `s`, even of a malformed one (never raises).

    For deciding whose a stanza is (a peer's domains, ours) when its address may be what was
    wrong with it: the normalized domain when `s` is valid, else the text between the last
    ``@`` and the first ``/``, lowercased. `jid_domain` is the strict form.
    """
    try:
        return jid_domain(s)
    except JIDError:
        return s.split("/", 1)[0].rpartition("@")[2].lower()


def clear_caches() -> None:
    """Forget memoized results (for tests and benchmarks)."""
    _jid_or_reason.cache_clear()
    _domain_or_reason.cache_clear()
    canonical_jid.cache_clear()


# --- protocol errors -------------------------------------------------------------------


def stanza_error_for(exc: JIDError) -> StanzaError:
    """``<jid-malformed/>`` (RFC 6120 §8.3.3.8): for a bad address in a stanza a client
    sent (its 'to', or a JID it asked for, e.g. in resource binding); the stream goes on.
    """
    return StanzaError("jid-malformed", exc.text)


def stream_error_for(exc: JIDError) -> StreamError:
    """``<improper-addressing/>`` (RFC 6120 §4.9.3.7): for a malformed 'to' or 'from' on a
    stanza received over a server-to-server stream; the stream is closed. (A well-formed
    'from' that the peer is not authorized for is ``<invalid-from/>`` instead, §4.9.3.10.)
    """
    return StreamError("improper-addressing", exc.text)
