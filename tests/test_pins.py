"""Certificate pins (XEP-0361 §4.6): every accepted form, cross-checked against openssl."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from zerolink.certgen import generate_cert
from zerolink.pins import Pin, cert_pin, parse_pin, pin_matches, spki_pin

needs_openssl = pytest.mark.usefixtures("openssl_installed")  # fails, naming it, if missing


def der_of(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def air(tmp_path_factory) -> tuple[Path, bytes]:
    """(PEM file, DER bytes) of a generated certificate."""
    pem, _key = generate_cert(["air.example"])
    path = tmp_path_factory.mktemp("pins") / "air.pem"
    path.write_bytes(pem)
    return path, der_of(pem)


@pytest.fixture(scope="module")
def ground() -> bytes:
    return der_of(generate_cert(["ground.example"])[0])


def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, check=True, timeout=30
    ).stdout


# --- cross-checks with the openssl command line -------------------------------------------


@needs_openssl
def test_openssl_fingerprint_is_the_cert_pin(air):
    path, der = air
    line = openssl("x509", "-noout", "-fingerprint", "-sha256", "-in", str(path)).decode()
    assert line.lower().startswith("sha256 fingerprint=")
    pin = parse_pin(line)
    assert pin == cert_pin(der)
    assert pin.kind == "cert"
    assert pin.digest == hashlib.sha256(der).digest()
    # OpenSSL 1.1 wrote "SHA256 Fingerprint=": the same pin.
    _, _, hexpart = line.partition("=")
    assert parse_pin("SHA256 Fingerprint=" + hexpart) == pin
    assert parse_pin("sha256 Fingerprint=" + hexpart) == pin
    assert pin_matches([pin], der)


@needs_openssl
def test_openssl_spki_pipeline_is_the_spki_pin(air):
    """`openssl x509 -pubkey | openssl pkey -pubin -outform der | dgst -sha256 -binary | base64`."""
    path, der = air
    pubkey_pem = openssl("x509", "-pubkey", "-noout", "-in", str(path))
    spki_der = openssl("pkey", "-pubin", "-outform", "der", stdin=pubkey_pem)
    digest = openssl("dgst", "-sha256", "-binary", stdin=spki_der)
    printed = openssl("base64", stdin=digest).decode()
    assert len(printed.strip()) == 44
    pin = parse_pin(printed)
    assert pin == spki_pin(der)
    assert pin.kind == "spki"
    assert parse_pin("sha256//" + printed.strip()) == pin
    assert parse_pin(f'pin-sha256="{printed.strip()}"') == pin
    assert pin_matches([pin], der)


@needs_openssl
def test_spki_is_hashed_as_encoded_in_the_certificate(air):
    _, der = air
    cert = x509.load_der_x509_certificate(der)
    reencoded = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki_pin(der).digest == hashlib.sha256(reencoded).digest()
    assert reencoded in der  # the very bytes of the certificate


# --- every accepted form --------------------------------------------------------------------


def test_every_cert_form(air):
    _, der = air
    digest = hashlib.sha256(der).digest()
    colons = digest.hex(":")
    want = Pin("cert", digest)
    for text in (
        "sha256 Fingerprint=" + colons.upper(),
        "SHA256 Fingerprint=" + colons.upper(),
        "sha256 fingerprint = " + colons,
        colons.upper(),
        colons,
        colons[:30].upper() + colons[30:],  # mixed case
        digest.hex(),
        digest.hex().upper(),
        "cert-sha256:" + colons.upper(),
        "CERT-SHA256:" + colons,
        "cert:" + digest.hex(),
        "  " + colons + "\n",
    ):
        assert parse_pin(text) == want, text


def test_every_spki_form(air):
    _, der = air
    want = spki_pin(der)
    b64 = base64.b64encode(want.digest).decode()
    for text in (
        "sha256//" + b64,
        "SHA256//" + b64,
        f'pin-sha256="{b64}"',
        f"pin-sha256={b64}",
        f'Pin-SHA256 = "{b64}"',
        b64,
        b64 + "\n",
        "spki:" + b64,
        "spki:sha256//" + b64,
    ):
        assert parse_pin(text) == want, text


def test_a_prefix_forces_the_kind(air):
    _, der = air
    d = spki_pin(der).digest
    assert parse_pin("spki:" + d.hex(":").upper()) == Pin("spki", d)
    assert parse_pin("SPKI: " + d.hex()) == Pin("spki", d)
    assert parse_pin("spki:sha256 Fingerprint=" + d.hex(":")) == Pin("spki", d)
    b64 = base64.b64encode(d).decode()
    assert parse_pin("cert:" + b64) == Pin("cert", d)
    assert parse_pin("cert:sha256//" + b64) == Pin("cert", d)


def test_str_is_canonical_and_reads_back(air):
    _, der = air
    c, s = cert_pin(der), spki_pin(der)
    assert str(c).startswith("cert-sha256:")
    assert str(c) == "cert-sha256:" + ":".join(f"{b:02X}" for b in c.digest)
    assert str(s) == "sha256//" + base64.b64encode(s.digest).decode()
    assert parse_pin(str(c)) == c
    assert parse_pin(str(s)) == s
    assert hash(parse_pin(str(c))) == hash(c)


# --- matching ---------------------------------------------------------------------------------


def test_mismatches(air, ground):
    _, der = air
    assert not pin_matches([cert_pin(ground)], der)
    assert not pin_matches([spki_pin(ground)], der)
    assert not pin_matches([], der)
    assert not pin_matches([Pin("cert", spki_pin(der).digest)], der)  # right hash, wrong kind
    assert not pin_matches([Pin("spki", cert_pin(der).digest)], der)
    assert pin_matches([cert_pin(ground), spki_pin(der)], der)
    assert pin_matches(iter([spki_pin(ground), cert_pin(der)]), der)


def test_garbage_or_pem_never_matches(air):
    path, der = air
    pins = [cert_pin(der), spki_pin(der)]
    assert not pin_matches(pins, b"not a certificate")
    assert not pin_matches(pins, path.read_bytes())
    with pytest.raises(ValueError, match="PEM"):
        cert_pin(path.read_bytes())
    with pytest.raises(ValueError, match="not a DER certificate"):
        spki_pin(b"\x30\x03\x02\x01\x00")


def test_spki_pin_survives_reissue_cert_pin_does_not():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "air.example")])
    now = dt.datetime.now(dt.UTC)

    def issue(days: int) -> bytes:
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=days))
            .sign(key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.DER)

    old, new = issue(30), issue(365)
    assert pin_matches([spki_pin(old)], new)
    assert not pin_matches([cert_pin(old)], new)


# --- bad input --------------------------------------------------------------------------------

SHA1_HEX = hashlib.sha1(b"x").hexdigest()
DIGEST = hashlib.sha256(b"x").digest()
B64 = base64.b64encode(DIGEST).decode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "sha256//",
        "sha256//abc",
        "sha256//" + B64[:-1],  # padding missing
        "sha256//" + base64.b64encode(DIGEST + b"x").decode(),  # 33 bytes
        "sha384//" + base64.b64encode(DIGEST + DIGEST[:16]).decode(),
        "pin-sha256=",
        'pin-sha256="!!"',
        B64[:-1],  # bare, no padding
        B64[:42] + "B=",  # non-canonical: trailing bits set
        base64.b64encode(hashlib.sha384(b"x").digest()).decode(),
        SHA1_HEX,
        hashlib.sha1(b"x").digest().hex(":"),
        "SHA1 Fingerprint=" + hashlib.sha1(b"x").digest().hex(":"),
        "sha256 Fingerprint=" + hashlib.sha1(b"x").digest().hex(":"),
        DIGEST.hex()[:-1],
        DIGEST.hex() + "0",
        DIGEST.hex(":") + ":00",
        DIGEST.hex(":")[:-3],
        DIGEST.hex(" "),
        "zz" * 32,
        DIGEST.hex()[:-2] + "zz",
        "md5:" + DIGEST.hex(),
        "spki:",
        "cert:",
        "spki:cert:" + DIGEST.hex(),
        "cert-sha256:" + B64,
        "hello",
    ],
)
def test_bad_pins_are_refused_with_the_accepted_forms(text):
    with pytest.raises(ValueError) as info:
        parse_pin(text)
    message = str(info.value)
    assert "accepted forms" in message
    assert "sha256//BASE64" in message
    assert "Fingerprint" in message


def test_sha1_fingerprints_are_named():
    for text in (SHA1_HEX, "SHA1 Fingerprint=" + hashlib.sha1(b"x").digest().hex(":")):
        with pytest.raises(ValueError, match=r"SHA-?1"):
            parse_pin(text)


@pytest.mark.parametrize("value", [None, b"sha256//" + B64.encode(), 42])
def test_non_strings_are_refused(value):
    with pytest.raises(ValueError):
        parse_pin(value)


def test_pin_validates_itself():
    with pytest.raises(ValueError, match="kind"):
        Pin("sha1", DIGEST)
    with pytest.raises(ValueError, match="32 bytes"):
        Pin("cert", DIGEST[:20])
    with pytest.raises(ValueError, match="32 bytes"):
        Pin("spki", DIGEST.hex())  # type: ignore[arg-type]
