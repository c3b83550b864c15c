"""Who is on the other end of an X2X connection (XEP-0361 §4.2), decided before any XML is read.

- ``address``: the source address (and port) is in the peer's list; optionally its reverse DNS
  names the peer and resolves back (checked by `zerolink.net.rdns`).
- ``tls``: the certificate presented in the TLS handshake either matches one of the peer's
  pins (SHA-256 of the certificate or of its public key), or chains to the peer's CA bundle and
  names one of the peer's domains (SAN dNSName with RFC 6125 wildcards, or id-on-xmppAddr,
  RFC 6120 §13.7.1.4).
Each check returns None when it passes, or the reason it failed, for the log.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ObjectIdentifier

from zerolink.config import IdentityConfig, PeerConfig
from zerolink.idn import IDNError, domain_to_ascii
from zerolink.pins import pin_matches, spki_pin

XMPP_ADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")


def address_matches(ident: IdentityConfig, addr: tuple[Any, ...]) -> bool:
    """Source IP (and port, if configured) in the peer's list."""
    if ident.mode == "implicit":
        return True
    if ident.mode != "address":
        return False
    try:
        ip = ipaddress.ip_address(addr[0].split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ident.port is not None and addr[1] != ident.port:
        return False
    return any(ip in net for net in ident.addresses)


@functools.lru_cache(maxsize=32)
def _load_store(path: Path, mtime: float) -> x509.verification.Store:
    return x509.verification.Store(x509.load_pem_x509_certificates(path.read_bytes()))


def _store(path: Path) -> x509.verification.Store:
    return _load_store(path, path.stat().st_mtime)


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The identities a certificate claims: SAN dNSName and id-on-xmppAddr values."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == XMPP_ADDR:
            names.append(_decode_utf8_string(other.value).lower())
    return names


def _decode_utf8_string(der: bytes) -> str:
    """The value of a DER UTF8String (tag 12), as used by id-on-xmppAddr."""
    if len(der) < 2 or der[0] != 0x0C:
        return ""
    length, i = der[1], 2
    if length & 0x80:
        n = length & 0x7F
        length, i = int.from_bytes(der[2 : 2 + n], "big"), 2 + n
    return der[i : i + length].decode("utf-8", "replace")


def _ascii(name: str) -> str | None:
    """A name in A-label form for comparison (None if it is no valid domain name).

    Certificates carry dNSNames as A-labels and xmppAddrs as U-labels, the configuration
    holds U-labels: all meet in the A-label form of IDNA2008, as JIDs are prepared.
    """
    if name.isascii():
        return name.lower()
    try:
        return domain_to_ascii(name)
    except IDNError:
        return None


def _name_covers(name: str, domain: str) -> bool:
    """RFC 6125 §6.4.3: a wildcard only as the whole left-most label, matching one label."""
    if name.startswith("*."):
        head, _, rest = domain.partition(".")
        return bool(head) and rest == name[2:]
    return name == domain


def names_match(names: Iterable[str], patterns: Iterable[str]) -> bool:
    """Does any certificate name fall under the peer's domains (exact or ``*.suffix``)?"""
    ascii_patterns = [(p, a) for p in patterns if (a := _ascii(p)) is not None]
    for raw in names:
        name = _ascii(raw)
        if name is None:
            continue
        for pattern, domain in ascii_patterns:
            if pattern.startswith("*."):
                suffix = domain[1:]
                bare = name[2:] if name.startswith("*.") else name
                if bare.endswith(suffix):  # strictly below, as DomainSet matches
                    return True
            elif _name_covers(name, domain):
                return True
    return False


def check_certificate(cfg: PeerConfig, chain: list[bytes], *, server: bool) -> str | None:
    """Mutual TLS identity of `cfg`'s peer from the DER chain it presented (leaf first).

    `server` says the peer was the TLS server (we dialed it). Returns None when accepted,
    else the reason (no certificate, expired, pin mismatch, unknown CA, wrong name).
    """
    ident = cfg.identity
    if not chain:
        return "no certificate: the peer presented none"
    leaf = x509.load_der_x509_certificate(chain[0])
    now = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc < now:
        return f"certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if leaf.not_valid_before_utc > now:
        return f"certificate not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    reasons: list[str] = []
    if ident.pins:
        if pin_matches(ident.pins, chain[0]):
            return None
        reasons.append(f"pin mismatch (the certificate's SPKI pin is {spki_pin(chain[0])})")
    if ident.ca is not None:
        reason = _check_pki(cfg, leaf, chain[1:], server=server)
        if reason is None:
            return None
        reasons.append(reason)
    if reasons and _self_signed(leaf):
        # The chain builder's complaint (a missing authority key identifier) is beside the
        # point: no CA issued this certificate, and only a pin could have trusted it.
        why = []
        if ident.pins:
            why.append("no pin matches")
        if ident.ca is not None:
            why.append(f"not issued by {ident.ca.name}")
        return (
            f"self-signed certificate not trusted ({', '.join(why)}); "
            f"its SPKI pin is {spki_pin(chain[0])}"
        )
    return "; ".join(reasons) or "no trust configured (identity.ca or identity.pins)"


def _self_signed(cert: x509.Certificate) -> bool:
    """Issued by its own key (subject = issuer, and its signature verifies with its key)."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_pki(
    cfg: PeerConfig, leaf: x509.Certificate, rest: list[bytes], *, server: bool
) -> str | None:
    assert cfg.identity.ca is not None
    intermediates = [x509.load_der_x509_certificate(d) for d in rest]
    builder = x509.verification.PolicyBuilder().store(_store(cfg.identity.ca))
    try:
        # Chain and validity; the names are checked below against the peer's domains.
        builder.build_client_verifier().verify(leaf, intermediates)
    except x509.verification.VerificationError as exc:
        # A certificate with only serverAuth (public CAs are dropping clientAuth) is fine in
        # either direction: chain and name are what identify the peer.
        if not _server_chain_ok(builder, leaf, intermediates, cfg.domains):
            return f"unknown CA: not issued by {cfg.identity.ca.name} ({exc})"
    names = certificate_names(leaf)
    if not names_match(names, cfg.domains):
        shown = ", ".join(dict.fromkeys(names)) or "no dNSName or xmppAddr"
        return f"wrong name: the certificate names {shown}, none of {', '.join(cfg.domains)}"
    return None


def _server_chain_ok(
    builder: Any,
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    domains: Iterable[str],
) -> bool:
    """A peer's TLS-server certificate may carry only the serverAuth usage: check it as one."""
    for d in domains:
        if d.startswith("*."):
            continue
        try:
            name = x509.DNSName(domain_to_ascii(d))
            builder.build_server_verifier(name).verify(leaf, intermediates)
            return True
        except (x509.verification.VerificationError, ValueError):  # IDNError is one
            continue
    return False
