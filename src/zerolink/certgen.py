"""ECDSA P-256 certificates for mutual TLS on X2X links, and a small test CA to sign them.

XEP-0361 §4.6 leaves the trust model to the operators: a CA bundle with the peer's domain in
its certificate, or a pinned certificate. This module makes both kinds of material:

* `generate_ca`: a CA certificate (basicConstraints CA:TRUE, pathlen 0) that can sign leaves;
* `generate_cert`: a leaf naming its domains twice in the subjectAltName, as a dNSName
  (A-label) and as an id-on-xmppAddr otherName (RFC 6120 §13.7.1.4), with both serverAuth and
  clientAuth in the extendedKeyUsage (each side of a mutual-TLS link is client and server);
  self-signed for pinning, or signed by a CA;
* `write_pair`: the PEM files, the key readable by its owner only.

ECDSA P-256 because its certificates are a few hundred bytes smaller than RSA ones, which
matters when every handshake crosses a 2400 bit/s link. Only `cryptography`, `zerolink.idn` and
the standard library are imported (layer 1).
"""

from __future__ import annotations

import datetime as dt
import errno
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from zerolink.idn import IDNError, domain_to_ascii, domain_to_unicode

__all__ = [
    "ID_ON_XMPPADDR",
    "CertGenError",
    "default_stem",
    "generate_ca",
    "generate_cert",
    "write_pair",
    "xmpp_addr",
]

# RFC 6120 §13.7.1.4: id-on-xmppAddr, an otherName whose value is a UTF8String.
ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")
# A few minutes of slack for peers whose clocks run behind ours.
BACKDATE = dt.timedelta(minutes=5)
MAX_CN = 64  # RFC 5280 ub-common-name


class CertGenError(ValueError):
    """Bad input to the generator: a domain, a validity period, CA material, a file name."""


@dataclass(frozen=True, slots=True)
class _Name:
    """One name for the subjectAltName: a domain (A-label and U-label form) or an IP."""

    ascii: str
    unicode: str
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None


def _name(domain: str) -> _Name:
    if not isinstance(domain, str):
        raise CertGenError(f"a domain is a string, not {type(domain).__name__}")
    text = domain.strip()
    literal = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        ip = ipaddress.ip_address(literal)
    except ValueError:
        pass
    else:
        return _Name(str(ip), str(ip), ip)
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise CertGenError(f"invalid domain {domain!r}: empty")
    if "*" in text:
        raise CertGenError(
            f"invalid domain {domain!r}: wildcards are not supported (an XmppAddr cannot hold one)"
        )
    try:
        a_label = domain_to_ascii(text)
        u_label = domain_to_unicode(a_label)
    except IDNError as exc:
        raise CertGenError(f"invalid domain {domain!r}: {exc}") from None
    return _Name(a_label, u_label)


def _names(domains: list[str]) -> list[_Name]:
    if isinstance(domains, str):  # a lone string would be read as a list of characters
        domains = [domains]
    out: list[_Name] = []
    for d in domains:
        n = _name(d)
        if n not in out:
            out.append(n)
    if not out:
        raise CertGenError("at least one domain is needed")
    return out


def default_stem(domain: str) -> str:
    """File name stem for a certificate of `domain`: its first label (``air`` for air.example)."""
    n = _name(domain)
    if n.ip is not None:
        return n.unicode.replace(":", "-")
    return n.unicode.split(".", 1)[0]


def xmpp_addr(value: str) -> x509.OtherName:
    """An id-on-xmppAddr otherName holding `value` as a DER UTF8String."""
    raw = value.encode("utf-8")
    return x509.OtherName(ID_ON_XMPPADDR, b"\x0c" + _der_length(len(raw)) + raw)


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _validity(
    days: int, not_before: dt.datetime | None, not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    start = now - BACKDATE if not_before is None else _utc(not_before)
    if not_after is None:
        if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
            raise CertGenError(f"days must be a positive whole number, not {days!r}")
        try:
            end = (now if not_before is None else start) + dt.timedelta(days=days)
        except OverflowError:
            raise CertGenError(f"days too large: {days} (the year 9999 is the end)") from None
    else:
        end = _utc(not_after)
    if end <= start:
        raise CertGenError("not_after must be later than not_before")
    return start, end


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _hash_for(key) -> hashes.HashAlgorithm | None:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def generate_ca(common_name: str = "zerolink test CA", days: int = 3650) -> tuple[bytes, bytes]:
    """A self-signed CA: (certificate PEM, unencrypted PKCS#8 key PEM), ECDSA P-256.

    basicConstraints CA:TRUE with pathlen 0 (it signs leaves only), keyUsage keyCertSign and
    cRLSign, subject and authority key identifiers.
    """
    if not isinstance(common_name, str) or not 1 <= len(common_name.strip()) <= MAX_CN:
        raise CertGenError(f"the CA common name must be 1 to {MAX_CN} characters")
    not_before, not_after = _validity(days, None, None)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _load_ca(cert_pem: bytes, key_pem: bytes) -> tuple[x509.Certificate, object]:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, TypeError) as exc:
        raise CertGenError(f"the CA certificate is not a PEM certificate: {exc}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise CertGenError(
            "the CA key is encrypted; decrypt it first (openssl pkey -in ca.key -out plain.key)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertGenError(f"the CA key is not a PEM private key: {exc}") from None
    if not isinstance(
        key,
        ec.EllipticCurvePrivateKey
        | rsa.RSAPrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise CertGenError(f"unsupported CA key type {type(key).__name__}")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise CertGenError("the CA key does not belong to the CA certificate")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise CertGenError("the CA certificate is not a CA (no basicConstraints CA:TRUE)")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not ku.key_cert_sign:
        raise CertGenError("the CA certificate may not sign certificates (no keyCertSign)")
    return cert, key


def generate_cert(
    domains: list[str],
    *,
    ca_cert_pem: bytes | None = None,
    ca_key_pem: bytes | None = None,
    days: int = 825,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> tuple[bytes, bytes]:
    """A leaf certificate for `domains`: (certificate PEM, unencrypted PKCS#8 key PEM).

    ECDSA P-256 key. subjectAltName: for each domain a dNSName (IDNA A-label) and an
    id-on-xmppAddr otherName (UTF8String, U-label form); an IP literal becomes an iPAddress
    entry instead. Subject CN is the first name that fits in one (64 characters). Extended
    key usage serverAuth and clientAuth, keyUsage digitalSignature, basicConstraints
    CA:FALSE. An authority key identifier when signed by a CA (strict verifiers require
    it); no subject key identifier (CA/Browser Forum baseline requirements: not recommended
    for leaves), nor an authority key identifier on a self-signed leaf (RFC 5280 §4.2.1.1
    allows leaving it out): every byte of a certificate crosses the link at each full
    handshake.

    Self-signed when no CA is given, else signed by the CA (issuer and authority key
    identifier taken from it); both or neither of `ca_cert_pem` and `ca_key_pem`. Valid from
    a few minutes ago for `days` days; `not_before` / `not_after` override that (naive
    datetimes are UTC), e.g. to make an expired certificate for a test.

    Raises `CertGenError` for a bad domain, validity or CA material.
    """
    names = _names(domains)
    not_before, not_after = _validity(days, not_before, not_after)
    if (ca_cert_pem is None) != (ca_key_pem is None):
        raise CertGenError("a CA needs both its certificate and its key")
    ca = None if ca_cert_pem is None else _load_ca(ca_cert_pem, ca_key_pem)
    key = _new_key()
    # The names live in the subjectAltName; the CN only helps people reading the certificate:
    # the first name that fits in one, else an empty subject and a critical subjectAltName.
    cn = next((n.ascii for n in names if len(n.ascii) <= MAX_CN), None)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    sans: list[x509.GeneralName] = []
    for n in names:
        if n.ip is not None:
            sans.append(x509.IPAddress(n.ip))
        else:
            sans += [x509.DNSName(n.ascii), xmpp_addr(n.unicode)]
    builder = x509.CertificateBuilder()
    if ca is None:
        issuer, signer = subject, key
    else:
        ca_cert, signer = ca
        issuer = ca_cert.subject
        try:
            ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
        builder = builder.add_extension(aki, critical=False)
    cert = (
        builder.subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=cn is None)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(signer, _hash_for(signer))
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def write_pair(
    out_dir: Path, stem: str, cert_pem: bytes, key_pem: bytes, *, force: bool = False
) -> tuple[Path, Path]:
    """Write ``STEM.pem`` and ``STEM.key`` in `out_dir` (made if missing); their paths.

    The key file is created with mode 0600 (never readable by others, not even briefly).
    Existing files are refused with `FileExistsError` before anything is written, unless
    `force`, which replaces them. A stem holding a path separator is refused with
    `CertGenError`.
    """
    if not stem or stem in (".", "..") or "/" in stem or os.sep in stem or "\0" in stem:
        raise CertGenError(f"invalid file name stem {stem!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(out_dir))
    cert_path, key_path = out_dir / f"{stem}.pem", out_dir / f"{stem}.key"
    if not force:
        existing = [str(p) for p in (cert_path, key_path) if p.exists() or p.is_symlink()]
        if existing:
            raise FileExistsError(f"already exists: {', '.join(existing)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(key_path, key_pem, private=True)
    _write(cert_path, cert_pem, private=False)
    return cert_path, key_path


def _write(path: Path, data: bytes, *, private: bool) -> None:
    # Replace rather than truncate: no old mode, owner or symlink target carries over.
    if path.is_symlink() or path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    try:
        if private:
            os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
