"""Reverse DNS identity at the daemon level (XEP-0361 §4.2 item 2, §5).

Air accepts ground's connections only (``direction = "inbound"``), so the connection checked is
the one ground dials from 127.0.0.3. Air's identity for ground is the address plus forward-
confirmed reverse DNS, asked of `tests/dnsserver.py` on loopback (whose AD flag emulates a
validating resolver). A connection that fails the check must be closed before a byte of it is
parsed, with the reason in air's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import dns.flags
import pytest

from conftest import GROUND_IP, Side, start_bot, wait_for, write_config
from dnsserver import DNSServer
from zerolink import certgen

pytestmark = pytest.mark.asyncio

PTR = "3.0.0.127.in-addr.arpa"
GOOD_ZONE = {
    (PTR, "PTR"): ["ground.example."],
    ("ground.example", "A"): [GROUND_IP],
}


def link_of(server):
    return next(iter(server.links.values()))


def rdns_identity(
    dns_server: DNSServer, *, dnssec: bool = False, addresses: str = GROUND_IP, timeout: float = 2
) -> str:
    host, port = dns_server.address
    return (
        "[peer.identity]\n"
        'mode = "address"\n'
        f'addresses = ["{addresses}"]\n'
        'reverse_dns = "ground.example"\n'
        f'resolver = "{host}:{port}"\n'
        f"dnssec = {'true' if dnssec else 'false'}\n"
        f"dns_timeout = {timeout}\n"
    )


async def start_air(tmp_path: Path, daemons, air: Side, ground: Side, identity: str):
    return await daemons(
        write_config(
            tmp_path, air, ground, peer_overrides={"direction": "inbound"}, identity=identity
        )
    )


@pytest.mark.parametrize("dnssec", [False, True], ids=["plain", "dnssec"])
async def test_forward_confirmed_ptr_lets_the_link_up(tmp_path, daemons, sides, caplog, dnssec):
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    async with DNSServer(GOOD_ZONE, ad=dnssec) as dns_server:
        a = await start_air(
            tmp_path, daemons, air, ground, rdns_identity(dns_server, dnssec=dnssec)
        )
        g = await daemons(write_config(tmp_path, ground, air))
        await wait_for(
            lambda: link_of(a).sender() is not None and link_of(g).sender() is not None,
            what="link up",
        )
        abot, gbot = await start_bot(air), await start_bot(ground)
        try:
            gbot.send_message(mto=f"pilot@{air.bot}", mfrom=f"ops@{ground.bot}", mbody="up")
            assert (await abot.next_message())["body"] == "up"
            abot.send_message(mto=f"ops@{ground.bot}", mfrom=f"pilot@{air.bot}", mbody="down")
            assert (await gbot.next_message())["body"] == "down"
        finally:
            await abot.stop()
            await gbot.stop()
        # the one connection is ground's, checked both ways in DNS
        assert link_of(a).outbound is None and len(link_of(a).inbound) == 1
        kinds = [
            (q.question[0].rdtype, bool(q.ednsflags & dns.flags.DO)) for q in dns_server.queries
        ]
        assert (dns.rdatatype.PTR, dnssec) in kinds and (dns.rdatatype.A, dnssec) in kinds
    expected = "PTR of 127.0.0.3 is ground.example, which resolves back to 127.0.0.3"
    assert expected + (" (DNSSEC validated)" if dnssec else "") in caplog.text
    assert "rejected connection" not in caplog.text


async def sneak_in(air: Side) -> bytes:
    """Dial air from ground's address and send a valid stanza at once; what comes back."""
    reader, writer = await asyncio.open_connection(air.ip, air.x2x_port, local_addr=(GROUND_IP, 0))
    try:
        writer.write(
            b"<message from='ops@bot.ground.example' to='pilot@bot.air.example'>"
            b"<body>sneaked in</body></message>"
        )
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionError:
        return b""  # aborted: reset instead of FIN
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


REJECTIONS = {
    "PTR mismatch": (
        {(PTR, "PTR"): ["elsewhere.example."], ("ground.example", "A"): [GROUND_IP]},
        {},
        "reverse DNS: PTR of 127.0.0.3 is elsewhere.example, expected ground.example",
    ),
    "no PTR": (
        {("ground.example", "A"): [GROUND_IP]},
        {},
        f"reverse DNS: no PTR record for 127.0.0.3 ({PTR}: NXDOMAIN)",
    ),
    "not forward-confirmed": (
        {(PTR, "PTR"): ["ground.example."], ("ground.example", "A"): ["127.0.0.9"]},
        {},
        "reverse DNS: ground.example does not resolve back to 127.0.0.3 (got 127.0.0.9)",
    ),
    "dnssec without AD": (
        GOOD_ZONE,
        {"dnssec": True},
        "reverse DNS: PTR query for 127.0.0.3 answer is not DNSSEC-validated (AD flag not set",
    ),
    "dnssec, forward zone unsigned": (
        GOOD_ZONE,
        {"dnssec": True, "ad": [PTR]},
        "reverse DNS: A query for ground.example answer is not DNSSEC-validated",
    ),
    "resolver silent": (
        GOOD_ZONE,
        {"silent": True, "timeout": 0.3},
        "did not answer: timeout after 0.3 s",
    ),
    "address not listed": (
        GOOD_ZONE,
        {"addresses": "127.0.0.4"},
        "rejected connection from 127.0.0.3:",  # DNS narrows the address check, never widens it
    ),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
async def test_failed_reverse_dns_is_rejected_before_any_stanza(
    tmp_path, daemons, sides, caplog, case
):
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    zone, opts, reason = REJECTIONS[case]
    server_opts = {"ad": opts.get("ad", False), "silent": opts.get("silent", False)}
    async with DNSServer(zone, **server_opts) as dns_server:
        ident = rdns_identity(
            dns_server,
            dnssec=opts.get("dnssec", False),
            addresses=opts.get("addresses", GROUND_IP),
            timeout=opts.get("timeout", 2),
        )
        a = await start_air(tmp_path, daemons, air, ground, ident)
        abot = await start_bot(air)
        try:
            data = await sneak_in(air)
            await wait_for(lambda: "rejected connection from 127.0.0.3" in caplog.text)
            assert data == b""  # not even a stream error: nothing was parsed
            assert await abot.no_message()
            assert link_of(a).sender() is None and link_of(a).connections_made == 0
        finally:
            await abot.stop()
    line = next(r.getMessage() for r in caplog.records if "rejected connection" in r.getMessage())
    assert line.startswith("rejected connection from 127.0.0.3:")
    assert f" on {air.ip}:{air.x2x_port}: " in line
    assert reason in line, line
    if case == "address not listed":
        assert line.endswith("it matches no configured peer")
        assert not dns_server.queries  # no DNS for an address that is not the peer's anyway
    else:
        assert dns_server.queries


async def test_ground_daemon_dialing_from_a_misnamed_address_never_gets_through(
    tmp_path, daemons, sides, caplog
):
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    zone = {(PTR, "PTR"): ["elsewhere.example."], ("ground.example", "A"): [GROUND_IP]}
    async with DNSServer(zone) as dns_server:
        a = await start_air(tmp_path, daemons, air, ground, rdns_identity(dns_server))
        await daemons(write_config(tmp_path, ground, air))
        abot, gbot = await start_bot(air), await start_bot(ground)
        try:
            gbot.send_message(mto=f"pilot@{air.bot}", mfrom=f"ops@{ground.bot}", mbody="hi")
            await wait_for(lambda: caplog.text.count("rejected connection from 127.0.0.3") >= 2)
            assert await abot.no_message()
            assert link_of(a).connections_made == 0
        finally:
            await abot.stop()
            await gbot.stop()
    # Without TLS the dialer cannot tell: on ground, each attempt is a connection that comes up
    # and drops at once (and what it sent on it is lost, as on any failed plain X2X connection).
    assert "link air: up (outbound" in caplog.text
    assert "link air: down (outbound" in caplog.text


async def test_tls_with_reverse_dns_keeps_the_first_stanzas(tmp_path, daemons, sides, caplog):
    """tls = true with mode = "address" + reverse_dns: identity by address and DNS, encrypted.

    Ground queues a message before its link exists, so it leaves right behind ground's TLS
    Finished, typically in the same TCP segment, while air is still asking DNS. Regression:
    that plaintext was once dropped because no session existed yet to feed it to.
    """
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    ca_pem, ca_key = certgen.generate_ca("rdns test CA")
    mine = {}
    for side in (air, ground):
        cert, key = certgen.generate_cert([side.domain], ca_cert_pem=ca_pem, ca_key_pem=ca_key)
        pem, pkey = certgen.write_pair(tmp_path / "certs", side.name, cert, key, force=True)
        mine[side.name] = {"tls": True, "certificate": str(pem), "key": str(pkey)}
    async with DNSServer(GOOD_ZONE) as dns_server:
        g = await daemons(
            write_config(
                tmp_path, ground, air, peer_overrides={**mine["ground"], "direction": "outbound"}
            )
        )
        gbot = await start_bot(ground)
        abot = None
        try:
            gbot.send_message(mto=f"pilot@{air.bot}", mfrom=f"ops@{ground.bot}", mbody="first")
            await wait_for(lambda: len(link_of(g).queue) == 1, what="queued on ground")
            a = await daemons(
                write_config(
                    tmp_path,
                    air,
                    ground,
                    identity=rdns_identity(dns_server),
                    peer_overrides={**mine["air"], "direction": "inbound"},
                )
            )
            abot = await start_bot(air)
            await wait_for(
                lambda: link_of(a).sender() is not None and link_of(g).sender() is not None,
                what="link up",
            )
            gbot.send_message(mto=f"pilot@{air.bot}", mfrom=f"ops@{ground.bot}", mbody="second")
            bodies = []
            while "second" not in bodies:
                bodies.append((await abot.next_message())["body"])
            assert bodies == ["first", "second"]
        finally:
            if abot is not None:
                await abot.stop()
            await gbot.stop()
    assert "reverse DNS of 127.0.0.3" in caplog.text
