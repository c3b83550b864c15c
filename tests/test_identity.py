"""Identity checks of X2X peers and the TLS layer, in memory (no sockets).

Certificates come from `zerolink.certgen`; a CA-issued certificate that names its domain
only as a dNSName (what a public CA issues: no id-on-xmppAddr) is built here from one.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from zerolink import certgen
from zerolink.config import load_config
from zerolink.net.identity import check_certificate, names_match
from zerolink.net.tlslayer import TLSLayer, make_context

IDN = "faß.example"
IDN_ASCII = "xn--fa-hia.example"  # IDNA2008; IDNA2003 would say fass.example


def dns_name_only(cert_pem: bytes, ca_cert_pem: bytes, ca_key_pem: bytes) -> bytes:
    """`cert_pem` re-issued by the CA with a subjectAltName of its dNSNames only."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in san.get_values_for_type(x509.DNSName)]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(ca.subject)
        .public_key(cert.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
        .add_extension(dns, critical=False)
    )
    for ext in cert.extensions:
        if not isinstance(ext.value, x509.SubjectAlternativeName):
            builder = builder.add_extension(ext.value, ext.critical)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def test_a_labels_and_u_labels_match_by_idna2008():
    assert names_match([IDN_ASCII], [IDN])
    assert names_match([IDN], [IDN])  # an xmppAddr holds U-labels
    assert names_match([f"*.{IDN_ASCII}"], [f"x.{IDN}"])
    assert names_match([f"muc.{IDN_ASCII}"], [f"*.{IDN}"])
    assert not names_match(["fass.example"], [IDN])  # the IDNA2003 form is another domain


def test_ca_issued_dns_name_only_certificate_of_an_idn_peer(tmp_path: Path):
    ca_pem, ca_key = certgen.generate_ca()
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca_pem)
    mine = certgen.write_pair(tmp_path, "air", *certgen.generate_cert(["air.example"]))
    leaf, _ = certgen.generate_cert([IDN], ca_cert_pem=ca_pem, ca_key_pem=ca_key)
    only_dns = dns_name_only(leaf, ca_pem, ca_key)
    names = x509.load_pem_x509_certificate(only_dns).extensions
    assert names.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == [IDN_ASCII]
    config = tmp_path / "air.toml"
    config.write_text(
        f"""
[server]
domains = ["air.example"]

[[peer]]
name = "ground"
domains = ["{IDN}"]
remote = "127.0.0.3:5999"
direction = "outbound"
tls = true
certificate = "{mine[0]}"
key = "{mine[1]}"

[peer.identity]
mode = "tls"
ca = "{ca_path}"
"""
    )
    (peer,) = load_config(config).peers
    for server in (False, True):
        assert check_certificate(peer, [der(only_dns)], server=server) is None
    # the certificate of another domain is still refused by name
    other, _ = certgen.generate_cert(["fass.example"], ca_cert_pem=ca_pem, ca_key_pem=ca_key)
    reason = check_certificate(peer, [der(dns_name_only(other, ca_pem, ca_key))], server=False)
    assert reason is not None and reason.startswith("wrong name")


def transfer(a: TLSLayer, b: TLSLayer) -> None:
    """Move bytes between two TLS layers until neither has anything to say."""
    for _ in range(20):
        out_a, out_b = a.output(), b.output()
        if not out_a and not out_b:
            return
        if out_a:
            b.feed(out_a)
        if out_b:
            a.feed(out_b)


def test_sni_is_the_idna2008_a_label(tmp_path: Path):
    cert, key = certgen.write_pair(tmp_path, "p", *certgen.generate_cert([IDN]))
    server = TLSLayer(make_context(str(cert), str(key), server_side=True), server_side=True)
    client = TLSLayer(
        make_context(str(cert), str(key), server_side=False), server_side=False, server_name=IDN
    )
    client.start()
    transfer(client, server)
    assert client.handshake_done and server.handshake_done
    assert server.conn.get_servername() == IDN_ASCII.encode()


def test_no_sni_for_an_ip_literal(tmp_path: Path):
    cert, key = certgen.write_pair(tmp_path, "p", *certgen.generate_cert(["[::1]"]))
    server = TLSLayer(make_context(str(cert), str(key), server_side=True), server_side=True)
    client = TLSLayer(
        make_context(str(cert), str(key), server_side=False), server_side=False, server_name="[::1]"
    )
    client.start()
    transfer(client, server)
    assert server.handshake_done and server.conn.get_servername() is None


def peer_config(tmp_path: Path, identity: str):
    """A peer `ground.example` with the given [peer.identity] lines (mode = "tls")."""
    pair = certgen.generate_cert(["air.example"])
    mine = certgen.write_pair(tmp_path, "air", *pair, force=True)
    config = tmp_path / "air.toml"
    config.write_text(
        f"""
[server]
domains = ["air.example"]

[[peer]]
name = "ground"
domains = ["ground.example"]
remote = "127.0.0.3:5999"
direction = "outbound"
tls = true
certificate = "{mine[0]}"
key = "{mine[1]}"

[peer.identity]
mode = "tls"
{identity}
"""
    )
    (peer,) = load_config(config).peers
    return peer


def test_a_self_signed_certificate_is_refused_for_what_it_is(tmp_path: Path):
    """Not for the missing authority key identifier that the chain builder trips over."""
    ca_pem, _ = certgen.generate_ca()
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    self_signed, _ = certgen.generate_cert(["ground.example"])
    from zerolink.pins import spki_pin

    pin = str(spki_pin(der(self_signed)))
    other_pin = 'pins = ["sha256//' + "A" * 43 + '="]'
    ca = f'ca = "{tmp_path / "ca.pem"}"'
    for identity, why in (
        (ca, "not issued by ca.pem"),
        (other_pin, "no pin matches"),
        (f"{ca}\n{other_pin}", "no pin matches, not issued by ca.pem"),
    ):
        peer = peer_config(tmp_path, identity)
        for server in (False, True):
            reason = check_certificate(peer, [der(self_signed)], server=server)
            assert reason == f"self-signed certificate not trusted ({why}); its SPKI pin is {pin}"
    # pinned, it is trusted
    peer = peer_config(tmp_path, f'pins = ["{pin}"]')
    assert check_certificate(peer, [der(self_signed)], server=False) is None
