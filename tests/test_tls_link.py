"""X2X over direct TLS with mutual authentication, and every way a peer is refused.

Certificates are made per test with `zerolink.certgen` (ECDSA P-256); daemons are real
`Server`s on loopback with slixmpp components, as in test_link_loopback.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from pathlib import Path

import pytest

from conftest import GROUND_IP, Side, start_bot, wait_for, write_config
from zerolink import certgen
from zerolink.pins import spki_pin

pytestmark = pytest.mark.asyncio


class PKI:
    """A CA with air and ground leaves, plus the bad certificates the tests present."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.ca_pem, self.ca_key = certgen.generate_ca("zerolink test CA")
        self.ca = self.write("ca", self.ca_pem, self.ca_key)[0]
        self.air = self.leaf("air", ["air.example"])
        self.ground = self.leaf("ground", ["ground.example"])

    def write(self, stem: str, cert: bytes, key: bytes) -> tuple[Path, Path]:
        return certgen.write_pair(self.out, stem, cert, key, force=True)

    def leaf(self, stem: str, domains: list[str], **kw) -> tuple[Path, Path]:
        cert, key = certgen.generate_cert(
            domains, ca_cert_pem=self.ca_pem, ca_key_pem=self.ca_key, **kw
        )
        return self.write(stem, cert, key)

    def pin(self, cert: Path) -> str:
        der = ssl.PEM_cert_to_DER_cert(cert.read_text())
        return str(spki_pin(der))


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return PKI(tmp_path / "certs")


def tls_peer(mine: tuple[Path, Path]) -> dict[str, object]:
    return {"tls": True, "certificate": str(mine[0]), "key": str(mine[1])}


def pki_identity(pki: PKI) -> str:
    return f'[peer.identity]\nmode = "tls"\nca = "{pki.ca}"\n'


def pin_identity(*pins: str) -> str:
    listed = ", ".join(f'"{p}"' for p in pins)
    return f'[peer.identity]\nmode = "tls"\npins = [{listed}]\n'


def link_of(server):
    return next(iter(server.links.values()))


def connections(server) -> list:
    link = link_of(server)
    return [c for c in (link.outbound, *link.inbound) if c is not None]


async def exchange(air: Side, ground: Side) -> None:
    abot, gbot = await start_bot(air), await start_bot(ground)
    try:
        abot.send_message(mto=f"ops@{ground.bot}", mfrom=f"pilot@{air.bot}", mbody="up")
        assert (await gbot.next_message())["body"] == "up"
        gbot.send_message(mto=f"pilot@{air.bot}", mfrom=f"ops@{ground.bot}", mbody="down")
        assert (await abot.next_message())["body"] == "down"
    finally:
        await abot.stop()
        await gbot.stop()


@pytest.mark.parametrize("trust", ["pki", "pins"])
async def test_pair_over_mutual_tls(tmp_path, daemons, sides, pki, trust, caplog):
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    if trust == "pki":
        a_ident = g_ident = pki_identity(pki)
    else:
        a_ident, g_ident = pin_identity(pki.pin(pki.ground[0])), pin_identity(pki.pin(pki.air[0]))
    a = await daemons(
        write_config(tmp_path, air, ground, peer_overrides=tls_peer(pki.air), identity=a_ident)
    )
    g = await daemons(
        write_config(tmp_path, ground, air, peer_overrides=tls_peer(pki.ground), identity=g_ident)
    )
    await wait_for(
        lambda: link_of(a).sender() is not None and link_of(g).sender() is not None, what="link up"
    )
    await exchange(air, ground)
    # one TCP connection, both ways, and it is TLS
    assert len(connections(a)) == 1 and len(connections(g)) == 1
    (conn,) = connections(a)
    assert conn.tls is not None and conn.tls.handshake_done
    assert conn.session.counters.stanzas_in >= 1 and conn.session.counters.stanzas_out >= 1
    assert "TLSv1.3" in caplog.text


async def test_reconnect_resumes_the_tls_session(tmp_path, daemons, sides, pki, caplog):
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    a = await daemons(
        write_config(
            tmp_path,
            air,
            ground,
            identity=pki_identity(pki),
            peer_overrides={**tls_peer(pki.air), "direction": "outbound"},
        )
    )
    g = await daemons(
        write_config(
            tmp_path,
            ground,
            air,
            identity=pki_identity(pki),
            peer_overrides={**tls_peer(pki.ground), "direction": "inbound"},
        )
    )
    await wait_for(lambda: link_of(g).sender() is not None, what="link up")
    await exchange(air, ground)  # traffic both ways delivers the TLS 1.3 tickets
    first = connections(a)[0].tls
    assert not first.session_reused
    full_bytes = first.raw_in + first.raw_out
    # cut the connection: air dials again and resumes
    connections(g)[0].transport.abort()
    await wait_for(
        lambda: link_of(a).connections_made == 2 and link_of(a).sender() is not None,
        what="reconnected",
    )
    second = connections(a)[0].tls
    assert second.session_reused
    resumed_bytes = second.raw_in + second.raw_out
    # no certificates the second time
    assert resumed_bytes < full_bytes - 300, (full_bytes, resumed_bytes)
    await exchange(air, ground)
    assert "session resumed" in caplog.text


async def raw_tls_client(
    ip: str, port: int, *, cert: tuple[Path, Path] | None, source: str = GROUND_IP
) -> bytes:
    """Connect as the peer would, with `cert` (or none); return what the daemon sent."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(cert[0], cert[1])
    try:
        reader, writer = await asyncio.open_connection(ip, port, ssl=ctx, local_addr=(source, 0))
    except (ssl.SSLError, ConnectionError):
        return b""
    try:
        writer.write(
            b"<message from='ops@bot.ground.example' to='bot.air.example'>"
            b"<body>sneaked in</body></message>"
        )
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    except (ssl.SSLError, ConnectionError):
        return b""
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong CA", "unknown CA"),
        ("expired", "expired"),
        ("other domain", "wrong name"),
        ("no certificate", "no certificate"),
        ("self-signed", "self-signed certificate not trusted (not issued by ca.pem)"),
    ],
)
async def test_bad_certificates_are_rejected_before_any_stanza(
    tmp_path, daemons, sides, pki, caplog, case, expected
):
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    await daemons(
        write_config(
            tmp_path,
            air,
            ground,
            identity=pki_identity(pki),
            peer_overrides={**tls_peer(pki.air), "direction": "inbound"},
        )
    )
    abot = await start_bot(air)
    try:
        if case == "wrong CA":
            other = PKI(tmp_path / "other")
            cert = other.ground
        elif case == "expired":
            now = dt.datetime.now(dt.UTC)
            cert = pki.leaf(
                "old",
                ["ground.example"],
                not_before=now - dt.timedelta(days=30),
                not_after=now - dt.timedelta(days=1),
            )
        elif case == "other domain":
            cert = pki.leaf("elsewhere", ["elsewhere.example"])
        elif case == "self-signed":
            cert = pki.write("self", *certgen.generate_cert(["ground.example"]))
        else:
            cert = None
        data = await raw_tls_client(air.ip, air.x2x_port, cert=cert)
        assert b"<message" not in data
        assert await abot.no_message()
        assert "rejected connection from 127.0.0.3" in caplog.text
        assert expected in caplog.text
        assert "missing required extension" not in caplog.text
    finally:
        await abot.stop()


async def test_wrong_pin_is_rejected(tmp_path, daemons, sides, pki, caplog):
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    await daemons(
        write_config(
            tmp_path,
            air,
            ground,
            identity=pin_identity(pki.pin(pki.ca)),  # not ground's key
            peer_overrides={**tls_peer(pki.air), "direction": "inbound"},
        )
    )
    abot = await start_bot(air)
    try:
        await raw_tls_client(air.ip, air.x2x_port, cert=pki.ground)
        assert await abot.no_message()
        assert "pin mismatch" in caplog.text
        assert pki.pin(pki.ground[0]) in caplog.text  # the log says which key was presented
    finally:
        await abot.stop()


async def test_plaintext_to_a_tls_listener_is_rejected(tmp_path, daemons, sides, pki, caplog):
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    await daemons(
        write_config(
            tmp_path,
            air,
            ground,
            identity=pki_identity(pki),
            peer_overrides={**tls_peer(pki.air), "direction": "inbound"},
        )
    )
    abot = await start_bot(air)
    try:
        reader, writer = await asyncio.open_connection(
            air.ip, air.x2x_port, local_addr=(GROUND_IP, 0)
        )
        writer.write(
            b"<message from='ops@bot.ground.example' to='bot.air.example'>"
            b"<body>plain</body></message>"
        )
        await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert await abot.no_message()
        assert "not TLS" in caplog.text
    finally:
        await abot.stop()


async def test_tls_to_a_plaintext_listener_is_rejected(tmp_path, daemons, sides, pki, caplog):
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    await daemons(write_config(tmp_path, air, ground, peer_overrides={"direction": "inbound"}))
    abot = await start_bot(air)
    try:
        await raw_tls_client(air.ip, air.x2x_port, cert=pki.ground)
        assert await abot.no_message()
        assert "TLS handshake on a plaintext X2X link" in caplog.text
    finally:
        await abot.stop()


async def test_invalid_from_over_a_valid_tls_link(tmp_path, daemons, sides, pki):
    air, ground = sides
    await daemons(
        write_config(
            tmp_path,
            air,
            ground,
            identity=pki_identity(pki),
            peer_overrides={**tls_peer(pki.air), "direction": "inbound"},
        )
    )
    abot = await start_bot(air)
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(pki.ca)
        ctx.load_cert_chain(*pki.ground)
        reader, writer = await asyncio.open_connection(
            air.ip,
            air.x2x_port,
            ssl=ctx,
            server_hostname="air.example",
            local_addr=(GROUND_IP, 0),
        )
        writer.write(
            b"<message from='ops@bot.ground.example' to='bot.air.example'>"
            b"<body>ok</body></message>"
            b"<message from='spy@evil.example' to='bot.air.example'>"
            b"<body>bad</body></message>"
        )
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert b"<stream:error><invalid-from " in data
        assert (await abot.next_message())["body"] == "ok"
        assert await abot.no_message()
    finally:
        await abot.stop()


async def test_non_ascii_peer_domain_with_a_dns_name_only_certificate(
    tmp_path, daemons, sides, pki
):
    """A peer `faß.example` whose CA-issued certificate names only dNSName xn--fa-hia.example
    (IDNA2008, as a public CA issues it) is accepted, and our SNI names it the same way."""
    from test_identity import dns_name_only

    air, ground = sides
    ground.domain = "faß.example"
    cert, key = certgen.generate_cert(
        [ground.domain], ca_cert_pem=pki.ca_pem, ca_key_pem=pki.ca_key
    )
    ground_pair = pki.write("faß", dns_name_only(cert, pki.ca_pem, pki.ca_key), key)
    a = await daemons(
        write_config(
            tmp_path,
            air,
            ground,
            identity=pki_identity(pki),
            peer_overrides={**tls_peer(pki.air), "direction": "outbound"},
        )
    )
    g = await daemons(
        write_config(
            tmp_path,
            ground,
            air,
            identity=pki_identity(pki),
            peer_overrides={**tls_peer(ground_pair), "direction": "inbound"},
        )
    )
    await wait_for(
        lambda: link_of(a).sender() is not None and link_of(g).sender() is not None, what="link up"
    )
    (inbound,) = connections(g)
    assert inbound.tls.conn.get_servername() == b"xn--fa-hia.example"
    await exchange(air, ground)
