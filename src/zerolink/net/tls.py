"""TLS contexts and the self-signed certificate made at first start.

ECDSA P-256 keys by default: the certificate is a few hundred bytes smaller than an RSA one,
which matters when every handshake crosses a 2400 bit/s link.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from zerolink import certgen

log = logging.getLogger("zerolink.tls")


def ensure_certificate(
    data_dir: Path, domains: list[str], cert: Path | None, key: Path | None
) -> tuple[Path, Path]:
    """The configured certificate and key, or a self-signed pair in `data_dir` (made once)."""
    if cert is not None and key is not None:
        return cert, key
    cert = data_dir / "tls" / "self-signed.pem"
    key = data_dir / "tls" / "self-signed.key"
    if not (cert.exists() and key.exists()):
        certgen.write_pair(cert.parent, "self-signed", *certgen.generate_cert(domains), force=True)
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
