"""Certificates for mutual TLS: contents, CA signing, real TLS handshakes, files, `gen-cert`."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from zerolink.certgen import (
    ID_ON_XMPPADDR,
    CertGenError,
    default_stem,
    generate_ca,
    generate_cert,
    write_pair,
)
from zerolink.pins import cert_pin, parse_pin, pin_matches, spki_pin

try:
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
except ImportError:  # cryptography < 42
    PolicyBuilder = None


needs_openssl = pytest.mark.usefixtures("openssl_installed")  # fails, naming it, if missing


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def der(pem: bytes) -> bytes:
    return load(pem).public_bytes(serialization.Encoding.DER)


def ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


def utf8string(value: bytes) -> str:
    """Decode a DER UTF8String (tag 12), short or long length form."""
    assert value[0] == 0x0C
    length, pos = value[1], 2
    if length & 0x80:
        n = length & 0x7F
        length, pos = int.from_bytes(value[2 : 2 + n], "big"), 2 + n
    assert len(value) == pos + length, "trailing or missing bytes"
    return value[pos:].decode("utf-8")


def xmpp_addrs(cert: x509.Certificate) -> list[str]:
    san = ext(cert, x509.SubjectAlternativeName).value
    return [
        utf8string(o.value)
        for o in san.get_values_for_type(x509.OtherName)
        if o.type_id == ID_ON_XMPPADDR
    ]


def dns_names(cert: x509.Certificate) -> list[str]:
    return ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return generate_ca()


@pytest.fixture(scope="module")
def signed(ca) -> tuple[bytes, bytes]:
    return generate_cert(["air.example"], ca_cert_pem=ca[0], ca_key_pem=ca[1])


# --- contents -----------------------------------------------------------------------------


def test_ca_contents(ca):
    cert_pem, key_pem = ca
    cert = load(cert_pem)
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert b"ENCRYPTED" not in key_pem and key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=zerolink test CA"
    cert.verify_directly_issued_by(cert)
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 3650 <= days <= 3651


def test_ca_name_and_days():
    cert = load(generate_ca("Ops CA", days=30)[0])
    assert cert.subject.rfc4514_string() == "CN=Ops CA"
    assert (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days in (29, 30)
    with pytest.raises(CertGenError):
        generate_ca("")
    with pytest.raises(CertGenError):
        generate_ca("x" * 65)
    with pytest.raises(CertGenError, match="days"):
        generate_ca(days=0)


def test_leaf_contents_self_signed():
    cert_pem, key_pem = generate_cert(["air.example", "muc.air.example"])
    cert = load(cert_pem)
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.subject.rfc4514_string() == "CN=air.example"
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)

    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert dns_names(cert) == ["air.example", "muc.air.example"]
    assert xmpp_addrs(cert) == ["air.example", "muc.air.example"]
    others = san.value.get_values_for_type(x509.OtherName)
    assert {o.type_id.dotted_string for o in others} == {"1.3.6.1.5.5.7.8.5"}

    assert ext(cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    # No key identifiers on a self-signed leaf: bytes on the link, and nothing needs them.
    for cls in (x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier):
        with pytest.raises(x509.ExtensionNotFound):
            ext(cert, cls)
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert days == 825  # plus the few minutes of backdating


def test_idn_ip_case_trailing_dot_and_duplicates():
    cert = load(
        generate_cert(["Bücher.Example.", "xn--bcher-kva.example", "192.0.2.1", "[2001:db8::1]"])[0]
    )
    assert dns_names(cert) == ["xn--bcher-kva.example"]
    assert xmpp_addrs(cert) == ["bücher.example"]  # UTF8String, U-label form
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.1"),
        ipaddress.ip_address("2001:db8::1"),
    ]
    assert cert.subject.rfc4514_string() == "CN=xn--bcher-kva.example"


def test_long_names_use_the_long_der_length_form_and_an_empty_subject():
    domain = ".".join(["a" * 60] * 4)  # 243 characters: longer than a CN may be
    cert = load(generate_cert([domain])[0])
    assert xmpp_addrs(cert) == [domain]
    assert len(cert.subject) == 0
    assert ext(cert, x509.SubjectAlternativeName).critical


@needs_openssl
def test_openssl_reads_the_xmpp_addr(tmp_path: Path):
    path = tmp_path / "c.pem"
    path.write_bytes(generate_cert(["air.example"])[0])
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:air.example" in text
    assert "XmppAddr:" in text and "air.example" in text.split("XmppAddr:", 1)[1]


def test_validity_overrides_make_expired_certificates(ca):
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
    cert = load(generate_cert(["air.example"], not_before=start, not_after=end)[0])
    assert cert.not_valid_before_utc == start and cert.not_valid_after_utc == end
    assert cert.not_valid_after_utc < dt.datetime.now(dt.UTC)
    # naive datetimes are UTC; days count from an explicit not_before
    cert = load(generate_cert(["air.example"], not_before=dt.datetime(2020, 1, 1), days=10)[0])
    assert cert.not_valid_after_utc == dt.datetime(2020, 1, 11, tzinfo=dt.UTC)


# --- CA signing, verified -------------------------------------------------------------------


def test_signed_by_the_ca(ca, signed):
    ca_cert, leaf = load(ca[0]), load(signed[0])
    assert leaf.issuer == ca_cert.subject
    leaf.verify_directly_issued_by(ca_cert)
    aki = ext(leaf, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(ca_cert, x509.SubjectKeyIdentifier).value.digest
    other_ca = load(generate_ca()[0])
    with pytest.raises((ValueError, Exception)):
        leaf.verify_directly_issued_by(other_ca)


def test_policy_builder_verifies_server_and_client(ca, signed):
    ca_cert, leaf = load(ca[0]), load(signed[0])
    builder = PolicyBuilder().store(Store([ca_cert])).time(dt.datetime.now(dt.UTC))
    chain = builder.build_server_verifier(x509.DNSName("air.example")).verify(leaf, [])
    assert chain[-1] == ca_cert
    client = builder.build_client_verifier().verify(leaf, [])
    assert x509.DNSName("air.example") in client.subjects
    with pytest.raises(VerificationError):
        builder.build_server_verifier(x509.DNSName("ground.example")).verify(leaf, [])
    stranger = PolicyBuilder().store(Store([load(generate_ca()[0])]))
    with pytest.raises(VerificationError):
        stranger.build_server_verifier(x509.DNSName("air.example")).verify(leaf, [])


def test_policy_builder_refuses_expired(ca):
    leaf = load(
        generate_cert(
            ["air.example"],
            ca_cert_pem=ca[0],
            ca_key_pem=ca[1],
            not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10),
            not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
        )[0]
    )
    builder = PolicyBuilder().store(Store([load(ca[0])])).time(dt.datetime.now(dt.UTC))
    with pytest.raises(VerificationError, match=r"expired|validity|not valid"):
        builder.build_server_verifier(x509.DNSName("air.example")).verify(leaf, [])


@needs_openssl
@pytest.mark.parametrize("purpose", ["sslserver", "sslclient"])
def test_openssl_verify_strict(tmp_path: Path, ca, signed, purpose):
    (tmp_path / "ca.pem").write_bytes(ca[0])
    (tmp_path / "air.pem").write_bytes(signed[0])
    self_signed = tmp_path / "self.pem"
    self_signed.write_bytes(generate_cert(["ground.example"])[0])
    for cafile, leaf in ((tmp_path / "ca.pem", tmp_path / "air.pem"), (self_signed, self_signed)):
        res = subprocess.run(
            ["openssl", "verify", "-x509_strict", "-purpose", purpose, "-CAfile", cafile, leaf],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stdout + res.stderr


@needs_openssl
def test_openssl_refuses_expired(tmp_path: Path, ca):
    (tmp_path / "ca.pem").write_bytes(ca[0])
    (tmp_path / "old.pem").write_bytes(
        generate_cert(
            ["air.example"],
            ca_cert_pem=ca[0],
            ca_key_pem=ca[1],
            not_before=dt.datetime(2020, 1, 1),
            not_after=dt.datetime(2021, 1, 1),
        )[0]
    )
    res = subprocess.run(
        ["openssl", "verify", "-CAfile", tmp_path / "ca.pem", tmp_path / "old.pem"],
        capture_output=True,
        text=True,
    )
    assert res.returncode != 0
    assert "expired" in res.stdout + res.stderr


# --- real mutual-TLS handshakes with the standard library --------------------------------------


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, hostname: str) -> bytes:
    """Run a TLS handshake in memory; the client certificate (DER) the server saw."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for name, obj in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3: the server checks the client's certificate after the client is done.
            s.write(b"x")
            c_in.write(s_out.read())
            assert c.read(1) == b"x"
            return s.getpeercert(binary_form=True)
    raise AssertionError("handshake did not finish")


def contexts(
    tmp_path: Path, trust: bytes, client_pair: tuple[bytes, bytes], server_pair: tuple[bytes, bytes]
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    (tmp_path / "trust.pem").write_bytes(trust)
    out = []
    for name, purpose, pair in (
        ("client", ssl.PROTOCOL_TLS_CLIENT, client_pair),
        ("server", ssl.PROTOCOL_TLS_SERVER, server_pair),
    ):
        (tmp_path / f"{name}.pem").write_bytes(pair[0])
        (tmp_path / f"{name}.key").write_bytes(pair[1])
        ctx = ssl.SSLContext(purpose)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default
        ctx.load_cert_chain(tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
        ctx.load_verify_locations(tmp_path / "trust.pem")
        out.append(ctx)
    return out[0], out[1]


def test_mutual_tls_with_the_ca(tmp_path: Path, ca, signed):
    ground = generate_cert(["ground.example"], ca_cert_pem=ca[0], ca_key_pem=ca[1])
    client, server = contexts(tmp_path, ca[0], client_pair=signed, server_pair=ground)
    seen = handshake(client, server, "ground.example")
    assert seen == der(signed[0])
    with pytest.raises(ssl.SSLCertVerificationError):
        client, server = contexts(tmp_path, ca[0], client_pair=signed, server_pair=ground)
        handshake(client, server, "other.example")


def test_mutual_tls_with_self_signed_certificates_and_pins(tmp_path: Path):
    air, ground = generate_cert(["air.example"]), generate_cert(["ground.example"])
    client, server = contexts(tmp_path, air[0] + ground[0], client_pair=air, server_pair=ground)
    seen = handshake(client, server, "ground.example")
    assert pin_matches([spki_pin(der(air[0]))], seen)
    assert not pin_matches([cert_pin(der(ground[0]))], seen)


def test_a_stranger_is_refused(tmp_path: Path, ca, signed):
    stranger = generate_cert(["air.example"])  # right name, not signed by the CA
    ground = generate_cert(["ground.example"], ca_cert_pem=ca[0], ca_key_pem=ca[1])
    client, server = contexts(tmp_path, ca[0], client_pair=stranger, server_pair=ground)
    with pytest.raises(ssl.SSLError):
        handshake(client, server, "ground.example")


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "domains, match",
    [
        ([], "at least one"),
        ([""], "empty"),
        (["."], "empty"),
        (["*.example"], "wildcard"),
        (["a..example"], "invalid domain"),
        (["a" * 64 + ".example"], "invalid domain"),
        (["-air.example"], "invalid domain"),
        (["air example"], "invalid domain"),
        (["air.example/x"], "invalid domain"),
        ([42], "string"),
    ],
)
def test_bad_domains(domains, match):
    with pytest.raises(CertGenError, match=match):
        generate_cert(domains)


def test_a_lone_string_is_one_domain():
    assert dns_names(load(generate_cert("air.example")[0])) == ["air.example"]


def test_bad_validity():
    with pytest.raises(CertGenError, match="days"):
        generate_cert(["air.example"], days=0)
    with pytest.raises(CertGenError, match="days too large"):
        generate_cert(["air.example"], days=10**7)
    with pytest.raises(CertGenError, match="days too large"):
        generate_ca(days=10**10)
    with pytest.raises(CertGenError, match="not_after"):
        generate_cert(
            ["air.example"], not_before=dt.datetime(2021, 1, 1), not_after=dt.datetime(2020, 1, 1)
        )


def test_bad_ca_material(ca, signed):
    with pytest.raises(CertGenError, match="both"):
        generate_cert(["air.example"], ca_cert_pem=ca[0])
    with pytest.raises(CertGenError, match="both"):
        generate_cert(["air.example"], ca_key_pem=ca[1])
    with pytest.raises(CertGenError, match="not a PEM certificate"):
        generate_cert(["air.example"], ca_cert_pem=b"junk", ca_key_pem=ca[1])
    with pytest.raises(CertGenError, match="not a PEM private key"):
        generate_cert(["air.example"], ca_cert_pem=ca[0], ca_key_pem=b"junk")
    with pytest.raises(CertGenError, match="does not belong"):
        generate_cert(["air.example"], ca_cert_pem=ca[0], ca_key_pem=generate_ca()[1])
    with pytest.raises(CertGenError, match="not a CA"):
        generate_cert(["ground.example"], ca_cert_pem=signed[0], ca_key_pem=signed[1])
    key = serialization.load_pem_private_key(ca[1], None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(CertGenError, match="encrypted"):
        generate_cert(["air.example"], ca_cert_pem=ca[0], ca_key_pem=encrypted)


def test_a_ca_without_key_cert_sign_is_refused():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "odd CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(CertGenError, match="keyCertSign"):
        generate_cert(
            ["air.example"],
            ca_cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            ca_key_pem=key_pem,
        )


# --- files ------------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_pair_modes_and_overwrite(tmp_path: Path, signed):
    out = tmp_path / "new" / "dir"
    cert_path, key_path = write_pair(out, "air", *signed)
    assert (cert_path, key_path) == (out / "air.pem", out / "air.key")
    assert cert_path.read_bytes() == signed[0] and key_path.read_bytes() == signed[1]
    assert mode(key_path) == 0o600
    assert mode(cert_path) & 0o022 == 0 and mode(cert_path) & 0o400

    with pytest.raises(FileExistsError, match=r"air\.pem"):
        write_pair(out, "air", b"new cert", b"new key")
    assert cert_path.read_bytes() == signed[0]

    key_path.chmod(0o644)
    write_pair(out, "air", b"new cert", b"new key", force=True)
    assert cert_path.read_bytes() == b"new cert" and key_path.read_bytes() == b"new key"
    assert mode(key_path) == 0o600


def test_write_pair_writes_nothing_when_one_file_exists(tmp_path: Path, signed):
    (tmp_path / "air.key").write_bytes(b"old key")
    with pytest.raises(FileExistsError, match=r"air\.key"):
        write_pair(tmp_path, "air", *signed)
    assert not (tmp_path / "air.pem").exists()
    assert (tmp_path / "air.key").read_bytes() == b"old key"


def test_write_pair_force_replaces_a_symlink_not_its_target(tmp_path: Path, signed):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep me")
    (tmp_path / "air.key").symlink_to(target)
    write_pair(tmp_path, "air", *signed, force=True)
    assert target.read_bytes() == b"keep me"
    assert not (tmp_path / "air.key").is_symlink()
    assert mode(tmp_path / "air.key") == 0o600


@pytest.mark.parametrize("stem", ["", ".", "..", "a/b", "../air", "a\0b"])
def test_write_pair_bad_stems(tmp_path: Path, stem):
    with pytest.raises(CertGenError, match="stem"):
        write_pair(tmp_path, stem, b"c", b"k")


def test_default_stem():
    assert default_stem("air.example") == "air"
    assert default_stem("Bücher.Example") == "bücher"
    assert default_stem("localhost") == "localhost"
    assert default_stem("192.0.2.1") == "192.0.2.1"
    assert default_stem("[2001:db8::1]") == "2001-db8--1"


# --- the command line -----------------------------------------------------------------------


def zerolink(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zerolink", "gen-cert", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def printed_pins(stdout: str) -> list:
    """Every pin the command printed, parsed back."""
    out = []
    for line in stdout.splitlines():
        word = line.split()[-1] if line.split() else ""
        if word.startswith(("sha256//", "cert-sha256:")):
            out.append(parse_pin(word))
    return out


def test_cli_self_signed(tmp_path: Path):
    res = zerolink("air.example", "muc.air.example", "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    cert_path, key_path = tmp_path / "out" / "air.pem", tmp_path / "out" / "air.key"
    assert str(cert_path) in res.stdout and str(key_path) in res.stdout
    assert mode(key_path) == 0o600
    cert = load(cert_path.read_bytes())
    assert dns_names(cert) == ["air.example", "muc.air.example"]
    assert xmpp_addrs(cert) == ["air.example", "muc.air.example"]
    cert.verify_directly_issued_by(cert)
    d = der(cert_path.read_bytes())
    assert printed_pins(res.stdout) == [spki_pin(d), cert_pin(d)]
    assert "sha256//" in res.stdout and "cert-sha256:" in res.stdout


def test_cli_ca_then_signed_leaf(tmp_path: Path):
    res = zerolink("--ca-only", "--out", tmp_path)
    assert res.returncode == 0, res.stderr
    ca_pem, ca_key = tmp_path / "ca.pem", tmp_path / "ca.key"
    assert mode(ca_key) == 0o600
    ca_cert = load(ca_pem.read_bytes())
    assert ext(ca_cert, x509.BasicConstraints).value.ca
    assert 3650 <= (ca_cert.not_valid_after_utc - ca_cert.not_valid_before_utc).days <= 3651
    assert printed_pins(res.stdout) == [cert_pin(der(ca_pem.read_bytes()))]

    res = zerolink(
        "ground.example",
        "--ca", ca_pem, "--ca-key", ca_key,
        "--out", tmp_path, "--name", "gs", "--days", "30",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    leaf = load((tmp_path / "gs.pem").read_bytes())
    leaf.verify_directly_issued_by(ca_cert)
    assert (leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)).days in (29, 30)
    assert mode(tmp_path / "gs.key") == 0o600
    d = der((tmp_path / "gs.pem").read_bytes())
    assert printed_pins(res.stdout) == [spki_pin(d), cert_pin(d)]

    res = zerolink("--ca-only", "--out", tmp_path, "--name", "root2")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "root2.pem").exists() and (tmp_path / "root2.key").exists()


def test_cli_force(tmp_path: Path):
    assert zerolink("air.example", "--out", tmp_path).returncode == 0
    first = (tmp_path / "air.pem").read_bytes()
    res = zerolink("air.example", "--out", tmp_path)
    assert res.returncode == 1
    assert "already exists" in res.stderr and "--force" in res.stderr
    assert "Traceback" not in res.stderr
    assert (tmp_path / "air.pem").read_bytes() == first
    assert zerolink("air.example", "--out", tmp_path, "--force").returncode == 0
    assert (tmp_path / "air.pem").read_bytes() != first


def test_cli_errors(tmp_path: Path):
    assert zerolink("--ca-only", "--out", tmp_path / "ca").returncode == 0
    ca_pem, ca_key = tmp_path / "ca" / "ca.pem", tmp_path / "ca" / "ca.key"
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    out = tmp_path / "out"
    cases = [
        (("--out", out), "at least one DOMAIN"),
        (("air.example", "--out", out, "--ca", ca_pem), "--ca-key"),
        (("air.example", "--out", out, "--ca-key", ca_key), "--ca"),
        (("air.example", "--out", out, "--ca", tmp_path / "nope.pem", "--ca-key", ca_key),
         "cannot read"),
        (("air.example", "--out", out, "--ca", ca_pem, "--ca-key", tmp_path), "cannot read"),
        (("air.example", "--out", out, "--ca", junk, "--ca-key", ca_key), "not a PEM certificate"),
        (("air.example", "--out", out, "--ca", ca_pem, "--ca-key", junk), "not a PEM private key"),
        (("air.example", "--out", out, "--ca", ca_key, "--ca-key", ca_pem), "not a PEM"),
        (("*.air.example", "--out", out), "wildcard"),
        (("air..example", "--out", out), "invalid domain"),
        (("air.example", "--out", out, "--days", "0"), "--days"),
        (("air.example", "--out", out, "--days", "99999999"), "days too large"),
        (("air.example", "--ca-only", "--out", out), "takes no DOMAIN"),
        (("--ca-only", "--ca", ca_pem, "--ca-key", ca_key, "--out", out), "--ca-only"),
        (("air.example", "--out", out, "--name", "a/b"), "stem"),
        (("air.example", "--out", junk), "cannot write"),
    ]  # fmt: skip
    for args, message in cases:
        res = zerolink(*args)
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        assert res.stderr.startswith("error: "), (args, res.stderr)
        assert message in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
        assert res.stdout == ""
    assert not out.exists()


def test_examples_tls_match_their_readme():
    """examples/tls: the CA signs air and ground, and the README lists their pins."""
    here = Path(__file__).resolve().parent.parent / "examples" / "tls"
    readme = (here / "README.md").read_text()
    assert "EXAMPLE-ONLY" in readme
    ca_cert = load((here / "ca.pem").read_bytes())
    for name in ("air", "ground"):
        pem = (here / f"{name}.pem").read_bytes()
        cert = load(pem)
        cert.verify_directly_issued_by(ca_cert)
        assert dns_names(cert) == [f"{name}.example"]
        assert xmpp_addrs(cert) == [f"{name}.example"]
        key = serialization.load_pem_private_key((here / f"{name}.key").read_bytes(), None)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()
        assert str(spki_pin(der(pem))) in readme
        assert str(cert_pin(der(pem))) in readme
        assert cert.not_valid_after_utc <= ca_cert.not_valid_after_utc


def test_pins_and_certgen_import_only_stdlib_cryptography_idna():
    """Layer 1: besides the standard library, only cryptography, idna, zerolink.errors and
    zerolink.idn (IDNA2008 on the idna package alone)."""
    import ast

    src = Path(__file__).resolve().parent.parent / "src" / "zerolink"
    for name in ("pins.py", "certgen.py"):
        tree = ast.parse((src / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                ok = top in sys.stdlib_module_names or top in ("cryptography", "idna")
                assert ok or mod in ("zerolink.errors", "zerolink.idn"), f"{name} imports {mod}"
