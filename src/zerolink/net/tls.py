"""TLS contexts and the self-signed certificate made at first start.

ECDSA P-256 keys by default: the certificate is a few hundred bytes smaller than an RSA one,
which matters when every handshake crosses a 2400 bit/s link.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger("zerolink.tls")


def generate_self_signed(
    domains: list[str], cert_path: Path, key_path: Path, *, days: int = 3650
) -> None:
    """Write an ECDSA P-256 key and a self-signed certificate naming `domains` (SAN dNSName)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = []
    for d in domains:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(d)))
        except ValueError:
            sans.append(x509.DNSName(d.encode("idna").decode("ascii")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_certificate(
    data_dir: Path, domains: list[str], cert: Path | None, key: Path | None
) -> tuple[Path, Path]:
    """The configured certificate and key, or a self-signed pair in `data_dir` (made once)."""
    if cert is not None and key is not None:
        return cert, key
    cert = data_dir / "tls" / "self-signed.pem"
    key = data_dir / "tls" / "self-signed.key"
    if not (cert.exists() and key.exists()):
        generate_self_signed(domains, cert, key)
        log.warning(
            "no certificate configured: generated a self-signed ECDSA P-256 certificate for %s "
            "in %s (clients will ask you to trust it)",
            ", ".join(domains),
            cert,
        )
    return cert, key


def load_secret(path: Path) -> bytes:
    """A random secret kept in the data folder, made on first use (stable across restarts)."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    path.write_bytes(secret)
    path.chmod(0o600)
    return secret
