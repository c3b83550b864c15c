"""Two zerolink daemons over real loopback TCP, with slixmpp components at both ends."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from pathlib import Path

import pytest

from conftest import Bot, Side, error_condition, start_bot, wait_for, write_config

pytestmark = pytest.mark.asyncio


def connections(server) -> list:
    link = next(iter(server.links.values()))
    return [c for c in (link.outbound, *link.inbound) if c is not None]


def link_of(server):
    return next(iter(server.links.values()))


async def up_pair(
    tmp_path: Path,
    daemons,
    air: Side,
    ground: Side,
    air_peer: dict[str, object] | None = None,
    ground_peer: dict[str, object] | None = None,
):
    a = await daemons(write_config(tmp_path, air, ground, peer_overrides=air_peer))
    g = await daemons(write_config(tmp_path, ground, air, peer_overrides=ground_peer))
    await wait_for(
        lambda: link_of(a).sender() is not None and link_of(g).sender() is not None, what="link up"
    )
    return a, g


async def test_messages_presence_and_iq_both_ways_over_one_connection(tmp_path, daemons, sides):
    air, ground = sides
    a, g = await up_pair(tmp_path, daemons, air, ground)
    abot, gbot = await start_bot(air), await start_bot(ground)
    try:
        # message air -> ground, to a bare and a full JID
        abot.send_message(mto=f"ops@{ground.bot}", mfrom=f"pilot@{air.bot}", mbody="hello ground")
        msg = await gbot.next_message()
        assert msg["body"] == "hello ground"
        assert msg["from"].full == f"pilot@{air.bot}"
        gbot.send_message(
            mto=f"pilot@{air.bot}/cockpit", mfrom=f"ops@{ground.bot}/desk", mbody="hello air ✈"
        )
        msg = await abot.next_message()
        assert msg["body"] == "hello air ✈"
        assert msg["to"].full == f"pilot@{air.bot}/cockpit"

        # presence both ways
        abot.send_presence(
            pto=f"ops@{ground.bot}", pfrom=f"pilot@{air.bot}/cockpit", pstatus="airborne"
        )
        pres = await asyncio.wait_for(gbot.presences.get(), 5)
        assert pres["status"] == "airborne"
        gbot.send_presence(pto=f"pilot@{air.bot}", pfrom=f"ops@{ground.bot}/desk")
        pres = await asyncio.wait_for(abot.presences.get(), 5)
        assert pres["from"].full == f"ops@{ground.bot}/desk"

        # iq both ways: XEP-0199 ping answered by the other side's slixmpp
        rtt = await abot.plugin["xep_0199"].ping(jid=ground.bot, ifrom=air.bot, timeout=5)
        assert rtt is not None
        info = await gbot.plugin["xep_0030"].get_info(jid=air.bot, ifrom=ground.bot, timeout=5)
        assert info["type"] == "result"

        # exactly one TCP connection, and it carried both directions
        conns_a, conns_g = connections(a), connections(g)
        assert len(conns_a) == 1 and len(conns_g) == 1
        (ca,), (cg,) = conns_a, conns_g
        assert ca.outbound != cg.outbound  # one side opened it, the other accepted it
        assert ca.session.counters.stanzas_out >= 3 and ca.session.counters.stanzas_in >= 3
        assert link_of(a).connections_made == 1 and link_of(g).connections_made == 1
    finally:
        await abot.stop()
        await gbot.stop()


async def test_two_peer_domains_share_one_connection(tmp_path, daemons, sides):
    air, ground = sides
    ground.extra = '[[component]]\ndomain = "muc.ground.example"\nsecret = "bot-secret"\n'
    a, g = await up_pair(tmp_path, daemons, air, ground)
    abot, gbot = await start_bot(air), await start_bot(ground)

    muc = await Bot("muc.ground.example", ground.comp_port, ground.ip).start()
    try:
        for i in range(5):
            abot.send_message(mto=f"ops@{ground.bot}", mfrom=f"pilot@{air.bot}", mbody=f"b{i}")
            abot.send_message(
                mto="room@muc.ground.example", mfrom=f"pilot@{air.bot}", mbody=f"m{i}"
            )
        assert [(await gbot.next_message())["body"] for _ in range(5)] == [
            f"b{i}" for i in range(5)
        ]
        assert [(await muc.next_message())["body"] for _ in range(5)] == [f"m{i}" for i in range(5)]
        # and back from both domains
        muc.send_message(mto=f"pilot@{air.bot}", mfrom="room@muc.ground.example/nick", mbody="r")
        gbot.send_message(mto=f"pilot@{air.bot}", mfrom=f"ops@{ground.bot}", mbody="g")
        got = {(await abot.next_message())["body"] for _ in range(2)}
        assert got == {"r", "g"}
        assert len(connections(a)) == 1 and len(connections(g)) == 1
        assert link_of(a).connections_made == 1
    finally:
        for b in (abot, gbot, muc):
            await b.stop()


async def test_simultaneous_open_uses_each_connection_one_way(tmp_path, daemons, sides, caplog):
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    from zerolink.app import Server
    from zerolink.config import load_config

    a = Server(load_config(write_config(tmp_path, air, ground)))
    g = Server(load_config(write_config(tmp_path, ground, air)))
    await a.start(start_links=False)
    await g.start(start_links=False)
    try:
        abot, gbot = await start_bot(air), await start_bot(ground)
        # Both dial in the same loop turn: neither has seen the other's connection yet.
        a.start_links()
        g.start_links()
        await wait_for(
            lambda: len(connections(a)) == 2 and len(connections(g)) == 2, what="two connections"
        )
        assert caplog.text.count("simultaneous open: both sides dialed at once") == 2
        assert "second connection" not in caplog.text
        n = 50
        for i in range(n):
            abot.send_message(mto=f"ops@{ground.bot}", mfrom=f"pilot@{air.bot}", mbody=f"u{i}")
            gbot.send_message(mto=f"pilot@{air.bot}", mfrom=f"ops@{ground.bot}", mbody=f"d{i}")
        assert [(await gbot.next_message())["body"] for _ in range(n)] == [
            f"u{i}" for i in range(n)
        ]
        assert [(await abot.next_message())["body"] for _ in range(n)] == [
            f"d{i}" for i in range(n)
        ]
        la, lg = link_of(a), link_of(g)
        # Each side sent only on the connection it opened; each connection carried one way.
        assert la.outbound.session.counters.stanzas_out == n
        assert la.outbound.session.counters.stanzas_in == 0
        assert la.inbound[0].session.counters.stanzas_out == 0
        assert la.inbound[0].session.counters.stanzas_in == n
        assert lg.outbound.session.counters.stanzas_out == n
        assert lg.inbound[0].session.counters.stanzas_out == 0
        await abot.stop()
        await gbot.stop()
    finally:
        await a.stop()
        await g.stop()


async def test_a_later_second_connection_is_not_called_simultaneous(
    tmp_path, daemons, sides, caplog
):
    """The peer dials although our connection has been up a while (it restarted, or a
    middlebox dropped ours): the log says so instead of "simultaneous open"."""
    from zerolink.net import link as linkmod

    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    held: list[asyncio.StreamWriter] = []
    # ground's X2X port: accepts air's connection and says nothing (a peer that has lost it)
    listener = await asyncio.start_server(lambda _r, w: held.append(w), ground.ip, ground.x2x_port)
    try:
        a = await daemons(write_config(tmp_path, air, ground))
        link = link_of(a)
        await wait_for(lambda: link.outbound is not None, what="air's connection up")
        loop = asyncio.get_running_loop()
        # let the window of a simultaneous open pass (loopback RTTs are microseconds)
        await asyncio.sleep(
            link.outbound.opened_at + linkmod.SIMULTANEOUS_WINDOW + 0.05 - loop.time()
        )
        _, writer = await asyncio.open_connection(air.ip, air.x2x_port, local_addr=(ground.ip, 0))
        await wait_for(lambda: len(link.inbound) == 1, what="ground's connection up")
        assert "simultaneous open" not in caplog.text
        assert "second connection: the peer dialed" in caplog.text
        assert "after our connection was made, so it does not see ours" in caplog.text
        writer.close()
    finally:
        for w in held:
            w.close()
        listener.close()


async def test_second_connection_wording():
    from zerolink.net.link import SIMULTANEOUS_WINDOW, second_connection_note

    assert "simultaneous open" in second_connection_note(0.01, 0.00005)
    # on a 3 s round-trip link, crossing dials come seconds apart and are still simultaneous
    assert "simultaneous open" in second_connection_note(5.0, 3.0)
    later = second_connection_note(SIMULTANEOUS_WINDOW + 12.3, 0.00005)
    assert "second connection: the peer dialed 12.8s after our connection" in later
    assert "simultaneous" not in later
    assert "simultaneous open" not in second_connection_note(30.0, None)


async def test_peer_restart_queues_then_delivers(tmp_path, daemons, sides):
    from zerolink.app import Server
    from zerolink.config import load_config

    air, ground = sides
    # Air only accepts, ground only dials: the restarted ground's component attaches before
    # its link is up. (If air dialed too, it could reach the restarted ground before the
    # component is back, and ground would rightly bounce the queue as service-unavailable.)
    a, g = await up_pair(
        tmp_path,
        daemons,
        air,
        ground,
        air_peer={"direction": "inbound"},
        ground_peer={"direction": "outbound"},
    )
    abot = await start_bot(air)
    await g.stop()
    await wait_for(lambda: link_of(a).sender() is None, what="link down")
    for i in range(10):
        abot.send_message(mto=f"ops@{ground.bot}", mfrom=f"pilot@{air.bot}", mbody=f"q{i}")
    await wait_for(lambda: len(link_of(a).queue) == 10, what="10 queued")
    g2 = Server(load_config(tmp_path / "ground.toml"))
    await g2.start(start_links=False)
    gbot = await start_bot(ground)
    g2.start_links()
    try:
        assert [(await gbot.next_message())["body"] for _ in range(10)] == [
            f"q{i}" for i in range(10)
        ]
        assert len(link_of(a).queue) == 0
        # Nothing bounced: a bounce of any q would cross the link before this marker.
        gbot.send_message(mto=f"pilot@{air.bot}", mfrom=f"ops@{ground.bot}", mbody="marker")
        assert (await abot.next_message())["body"] == "marker"
    finally:
        await abot.stop()
        await gbot.stop()
        await g2.stop()


async def test_on_demand_dials_when_needed_and_closes_when_idle(tmp_path, daemons, sides):
    air, ground = sides
    a = await daemons(
        write_config(
            tmp_path, air, ground, peer_overrides={"connect": "on-demand", "idle_timeout": 0.5}
        )
    )
    g = await daemons(write_config(tmp_path, ground, air, peer_overrides={"direction": "inbound"}))
    abot, gbot = await start_bot(air), await start_bot(ground)
    try:
        # With initial_delay = 0 a dialing link connects within a loop turn or two; two
        # component handshakes later, an on-demand link that nothing waits for has not.
        assert link_of(a).connections_made == 0 and link_of(g).connections_made == 0
        assert connections(a) == [] and connections(g) == []
        abot.send_message(mto=f"ops@{ground.bot}", mfrom=f"pilot@{air.bot}", mbody="wake up")
        assert (await gbot.next_message())["body"] == "wake up"
        gbot.send_message(mto=f"pilot@{air.bot}", mfrom=f"ops@{ground.bot}", mbody="awake")
        assert (await abot.next_message())["body"] == "awake"
        assert link_of(a).connections_made == 1
        # idle: the opener (air) closes, with the close exchange
        await wait_for(
            lambda: connections(a) == [] and connections(g) == [], timeout=3, what="idle close"
        )
        abot.send_message(mto=f"ops@{ground.bot}", mfrom=f"pilot@{air.bot}", mbody="again")
        assert (await gbot.next_message())["body"] == "again"
        assert link_of(a).connections_made == 2
    finally:
        await abot.stop()
        await gbot.stop()


async def test_bounce_after_stanza_timeout_and_when_queue_full(tmp_path, daemons, sides):
    from zerolink.xml.element import Element

    air, ground = sides
    a = await daemons(
        write_config(
            tmp_path, air, ground, peer_overrides={"stanza_timeout": 0.5, "queue_limit": 4}
        )
    )
    abot = await start_bot(air)  # ground never starts
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(3):
            abot.send_message(
                mto=f"ops@{ground.bot}", mfrom=f"pilot@{air.bot}", mbody=f"x{i}", mtype="chat"
            )
        # The component is paused at high water (2 of 4) instead of being bounced for a full
        # queue: every stanza waits its stanza_timeout in the queue, then bounces. The third
        # is only read once the first two have timed out, so it bounces a timeout later.
        timeouts, times = [], []
        for _ in range(3):
            timeouts.append(await abot.next_message())
            times.append(loop.time() - t0)
        assert times[0] >= 0.45 and times[2] >= 0.95
        assert [error_condition(m) for m in timeouts] == ["remote-server-timeout"] * 3
        assert all(m["from"].full == f"ops@{ground.bot}" for m in timeouts)

        # A sender that does not take part in backpressure (here the link's deliver called
        # directly, as for a bounce) still meets the queue's limit: the fifth bounces at once.
        t1 = loop.time()
        for i in range(5):
            link_of(a).deliver(
                Element(
                    "{jabber:server}message",
                    {"from": f"pilot@{air.bot}", "to": f"ops@{ground.bot}", "id": f"d{i}"},
                )
            )
        first = await abot.next_message()
        assert first["type"] == "error" and first["id"] == "d4"
        assert error_condition(first) == "resource-constraint"
        assert loop.time() - t1 < 0.4
    finally:
        await abot.stop()


async def test_unknown_domain_bounces_remote_server_not_found(tmp_path, daemons, sides):
    air, ground = sides
    await daemons(write_config(tmp_path, air, ground))
    abot = await start_bot(air)
    try:
        abot.send_message(mto="x@nowhere.example", mfrom=f"pilot@{air.bot}", mbody="?")
        err = await abot.next_message()
        assert err["type"] == "error"
        assert error_condition(err) == "remote-server-not-found"
    finally:
        await abot.stop()


async def test_connection_from_other_address_is_rejected_unread(tmp_path, daemons, sides, caplog):
    air, ground = sides
    caplog.set_level(logging.INFO, logger="zerolink")
    await daemons(write_config(tmp_path, air, ground))
    abot = await start_bot(air)
    try:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.bind(("127.0.0.9", 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, (air.ip, air.x2x_port))
        with contextlib.suppress(OSError):  # already reset: fine
            await loop.sock_sendall(
                sock,
                f"<message from='ops@{ground.bot}' to='{air.bot}'><body>spoof</body>"
                "</message>".encode(),
            )
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 1024), 3)
        except ConnectionResetError:
            data = b""
        sock.close()
        assert data == b""  # closed without a byte
        assert await abot.no_message()
        assert "rejected connection from 127.0.0.9" in caplog.text
    finally:
        await abot.stop()


async def test_spoofed_from_on_an_identified_connection_gets_invalid_from(tmp_path, daemons, sides):
    air, ground = sides
    # Air only accepts (so the test's socket from ground's address is the peer connection).
    a = await daemons(write_config(tmp_path, air, ground, peer_overrides={"direction": "inbound"}))
    abot = await start_bot(air)
    try:
        reader, writer = await asyncio.open_connection(
            air.ip, air.x2x_port, local_addr=(ground.ip, 0)
        )
        writer.write(
            f"<message from='ops@{ground.bot}' to='{air.bot}'><body>ok</body></message>"
            f"<message from='ops@evil.example' to='{air.bot}'><body>bad</body></message>".encode()
        )
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)  # until EOF: the daemon closes
        writer.close()
        assert b"<stream:error><invalid-from xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in data
        assert data.endswith(b"</stream:stream>")
        assert (await abot.next_message())["body"] == "ok"
        assert await abot.no_message()
        assert connections(a) == []
    finally:
        await abot.stop()


async def test_first_bytes_on_a_new_connection_are_the_first_stanza(tmp_path, daemons, sides):
    air, ground = sides
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def fake_ground(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.put_nowait(await reader.read(4096))
        writer.close()

    srv = await asyncio.start_server(fake_ground, ground.ip, ground.x2x_port)
    try:
        await daemons(write_config(tmp_path, air, ground, peer_overrides={"connect": "on-demand"}))
        abot = await start_bot(air)
        abot.send_message(mto=f"ops@{ground.bot}", mfrom=f"pilot@{air.bot}", mbody="first")
        data = await asyncio.wait_for(received.get(), 5)
        # No XML declaration, no stream header: the stanza is the very first byte.
        assert data.startswith(b"<message ")
        assert data.endswith(b"<body>first</body></message>")
        assert b"<stream" not in data and b"<?xml" not in data
        await abot.stop()
    finally:
        srv.close()
        await srv.wait_closed()


async def test_a_peer_that_accepts_and_drops_is_not_hammered(tmp_path, daemons, sides):
    """Connections closed without a byte back off like failed dials (doubling delays)."""
    air, ground = sides
    accepted: list[float] = []

    async def rude_ground(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(asyncio.get_running_loop().time())
        writer.transport.abort()

    srv = await asyncio.start_server(rude_ground, ground.ip, ground.x2x_port)
    try:
        await daemons(
            write_config(
                tmp_path, air, ground, peer_overrides={"reconnect_min": 0.05, "reconnect_max": 5}
            )
        )
        # Five accepts, however long they take: a loop without backoff makes them ~0.05 s
        # apart (0.2 s in all); doubling from 0.05 s gives 0.1, 0.2, 0.4, 0.8 s (x 0.5..1).
        await wait_for(lambda: len(accepted) >= 5, timeout=5, what="five dials")
        gaps = [b - a for a, b in itertools.pairwise(accepted[:5])]
        assert gaps[0] < gaps[-1] / 2, gaps
        assert sum(gaps) >= 0.7, gaps
    finally:
        srv.close()
        await srv.wait_closed()


async def test_4_4_a_misaddressed_stanza_is_bounced_and_the_link_stays_up(tmp_path, daemons, sides):
    # nowhere.ground.example is routed to the link by air (*.ground.example) but ground does
    # not serve it: ground answers with a stanza error; the connection carries on.
    air, ground = sides
    a, g = await up_pair(tmp_path, daemons, air, ground)
    abot, gbot = await start_bot(air), await start_bot(ground)
    try:
        (conn,) = connections(a)
        abot.send_message(mto="room@nowhere.ground.example", mfrom=f"pilot@{air.bot}", mbody="x")
        abot.send_message(mto=f"ops@{ground.bot}", mfrom=f"pilot@{air.bot}", mbody="after")
        bounce = await abot.next_message()
        assert bounce["type"] == "error"
        assert error_condition(bounce) == "remote-server-not-found"
        assert (await gbot.next_message())["body"] == "after"
        assert connections(a) == [conn] and link_of(a).connections_made == 1
        (gconn,) = connections(g)
        assert gconn.session.counters.stanzas_rejected == 1
    finally:
        await abot.stop()
        await gbot.stop()


async def test_a_fin_after_our_stream_close_is_no_connection_lost(tmp_path, daemons, sides, caplog):
    """Some servers answer our </stream:stream> with a bare FIN (no close of their own)."""
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    got_close = asyncio.Event()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        while b"</stream:stream>" not in data:
            chunk = await reader.read(4096)
            if not chunk:
                break
            data += chunk
        got_close.set()
        writer.close()  # FIN, nothing else

    listener = await asyncio.start_server(peer, ground.ip, ground.x2x_port)
    try:
        a = await daemons(write_config(tmp_path, air, ground))
        link = link_of(a)
        await wait_for(lambda: link.outbound is not None, what="air's connection up")
        conn = link.outbound
        conn.begin_close()
        await asyncio.wait_for(got_close.wait(), 5)
        await wait_for(lambda: link.outbound is not conn, what="air's connection down")
        down = [r.getMessage() for r in caplog.records if ": down (" in r.getMessage()]
        assert len(down) == 1
        assert "closed: the peer closed the connection after our stream close" in down[0]
        assert "connection lost" not in down[0]
    finally:
        listener.close()


async def test_a_standard_s2s_servers_own_stream_error_is_logged(tmp_path, daemons, sides, caplog):
    """Metre and other RFC 6120 servers answer with a header and a <stream:error>: the log
    shows their error as well as our policy-violation."""
    caplog.set_level(logging.INFO, logger="zerolink")
    air, ground = sides
    await daemons(write_config(tmp_path, air, ground, peer_overrides={"direction": "inbound"}))
    reader, writer = await asyncio.open_connection(air.ip, air.x2x_port, local_addr=(ground.ip, 0))
    writer.write(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
        b"xmlns:stream='http://etherx.jabber.org/streams' from='ground.example' "
        b"to='air.example' version='1.0'><stream:error>"
        b"<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>No such domain air.example</text>"
        b"</stream:error></stream:stream>"
    )
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert b"<policy-violation " in reply
    await wait_for(lambda: "stream error sent to" in caplog.text, what="our error logged")
    assert "stream error from 127.0.0.3:" in caplog.text
    assert ": host-unknown (No such domain air.example)" in caplog.text
