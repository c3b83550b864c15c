"""Abuse of the X2X TLS listener (issue 10, item 9): stalled handshakes from a stranger are
bounded per address and ended at `server.handshake_timeout`; a stranger's address that no peer
can have is closed before the handshake. In-process daemons, as in test_tls_link.py; the
attacker connects from 127.0.0.66.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from conftest import GROUND_IP, write_config
from test_abuse import closed_now, read_to_end, stranger
from test_tls_link import PKI, exchange, pki_identity, tls_peer

pytestmark = pytest.mark.asyncio


@pytest.fixture
def certs(tmp_path: Path) -> PKI:
    return PKI(tmp_path / "certs")


def server_keys(path: Path, lines: str) -> Path:
    path.write_text(path.read_text().replace("[server]\n", f"[server]\n{lines}\n", 1))
    return path


async def test_x2x_tls_listener_bounds_stalled_handshakes_and_the_peer_gets_through(
    tmp_path, daemons, sides, certs, caplog
):
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    limits = "handshake_timeout = 1\nmax_unauthenticated_per_address = 2"
    await daemons(
        server_keys(
            write_config(
                tmp_path,
                air,
                ground,
                peer_overrides=tls_peer(certs.air),
                identity=pki_identity(certs),
            ),
            limits,
        )
    )
    idle = [stranger(air.x2x_port, air.ip) for _ in range(20)]
    await daemons(
        write_config(
            tmp_path,
            ground,
            air,
            peer_overrides=tls_peer(certs.ground),
            identity=pki_identity(certs),
        )
    )
    await exchange(air, ground)  # the real peer, from its own address, during the flood
    held = [s for s in idle if not closed_now(s)]
    assert len(held) <= 2
    loop = asyncio.get_running_loop()
    ends = await asyncio.gather(*(loop.run_in_executor(None, read_to_end, s, 5) for s in held))
    assert all(end == b"" for end in ends)  # closed, not served
    assert "TLS handshake not done within 1 s" in caplog.text
    for s in idle:
        s.close()


async def test_x2x_tls_listener_closes_addresses_no_peer_can_have_before_tls(
    tmp_path, daemons, sides, certs, caplog
):
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    # Peers told by address (here ground's) on a TLS listener: a stranger's address is known to
    # be wrong before any handshake.
    await daemons(write_config(tmp_path, air, ground, peer_overrides=tls_peer(certs.air)))
    s = stranger(air.x2x_port, air.ip)
    s.sendall(b"\x16\x03\x01\x00\x05hello")  # the start of a ClientHello
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, read_to_end, s, 5) == b""
    assert "it matches no configured peer (closed before TLS)" in caplog.text
    assert GROUND_IP not in caplog.text.split("closed before TLS")[0].splitlines()[-1]
    s.close()
