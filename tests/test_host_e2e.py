"""Embedded host end to end: slixmpp clients on air and ground, chatting across the X2X link."""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import re
import ssl
from pathlib import Path

import pytest
from slixmpp import ClientXMPP

from conftest import AIR_IP, GROUND_IP, Side, free_port, start_bot, wait_for, write_config
from zerolink.app import Server
from zerolink.config import load_config
from zerolink.proto.component import handshake_digest
from zerolink.users import add_user, hosted_jid

pytestmark = pytest.mark.asyncio


def host_block(side: Side) -> str:
    return f'[host]\nlisten = "{side.ip}:{side.c2s_port}"\n'


@pytest.fixture
def hosted(sides: tuple[Side, Side]) -> tuple[Side, Side]:
    air, ground = sides
    air.c2s_port, ground.c2s_port = free_port(AIR_IP), free_port(GROUND_IP)
    air.extra, ground.extra = host_block(air), host_block(ground)
    return air, ground


class Client(ClientXMPP):
    """A slixmpp client that trusts the server's generated certificate and records stanzas."""

    def __init__(
        self, jid: str, password: str, side: Side, server: Server, mech: str | None = None
    ) -> None:
        super().__init__(jid, password, sasl_mech=mech)
        self.side = side
        self.messages: asyncio.Queue = asyncio.Queue()
        self.presences: asyncio.Queue = asyncio.Queue()
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.register_plugin("xep_0203")
        ctx = ssl.create_default_context(
            cafile=str(server.config.server.data_dir / "tls" / "self-signed.pem")
        )
        self.ssl_context = ctx
        self.add_event_handler("message", lambda m: self.messages.put_nowait(copy.copy(m)))
        self.add_event_handler("message_error", lambda m: self.messages.put_nowait(copy.copy(m)))
        self.add_event_handler("presence", lambda p: self.presences.put_nowait(copy.copy(p)))
        self.auth_failed = asyncio.Event()
        self.add_event_handler("failed_all_auth", lambda _: self.auth_failed.set())

    async def start(self, presence: bool = True) -> Client:
        self.connect(self.side.ip, self.side.c2s_port)
        await self.wait_until("session_start", timeout=10)
        await self.get_roster()
        if presence:
            self.send_presence()
        return self

    async def stop(self) -> None:
        if self.is_connected():
            self.disconnect(wait=1)
            try:
                await self.wait_until("disconnected", 5)
            except TimeoutError:
                self.abort()

    async def next_message(self, timeout: float = 5.0):
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def presence_from(self, jid: str, ptype: str = "available", timeout: float = 5.0):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            p = await asyncio.wait_for(self.presences.get(), max(0.01, deadline - loop.time()))
            if p["from"].bare == jid and (
                p["type"] == ptype
                or (
                    ptype == "available"
                    and p["type"] in ("available", "chat", "away", "dnd", "xa", "")
                )
            ):
                return p


async def start_pair(tmp_path: Path, air: Side, ground: Side) -> tuple[Server, Server]:
    a = Server(load_config(write_config(tmp_path, air, ground)))
    g = Server(load_config(write_config(tmp_path, ground, air)))
    await a.start()
    await g.start()
    await wait_for(lambda: next(iter(a.links.values())).sender() is not None, what="link up")
    return a, g


def make_user(server: Server, jid: str, password: str) -> None:
    add_user(server.accounts, hosted_jid(server.config, jid), password)


@pytest.fixture
async def pair(tmp_path, hosted):
    air, ground = hosted
    a, g = await start_pair(tmp_path, air, ground)
    make_user(a, "pilot@air.example", "pilot-pw")
    make_user(g, "ops@ground.example", "ops-pw")
    yield a, g, air, ground
    await a.stop()
    await g.stop()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
async def test_login_with_scram(pair, mech):
    a, _, air, _ = pair
    c = await Client("pilot@air.example/cockpit", "pilot-pw", air, a, mech).start()
    try:
        assert c.boundjid.full == "pilot@air.example/cockpit"
        info = await c.plugin["xep_0030"].get_info(jid="air.example", timeout=5)
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
    finally:
        await c.stop()


async def test_wrong_password_is_not_authorized(pair):
    a, _, air, _ = pair
    c = Client("pilot@air.example/x", "wrong", air, a, "SCRAM-SHA-256")
    failures: list[str] = []
    c.add_event_handler("failed_auth", lambda f: failures.append(f["condition"]))
    c.connect(air.ip, air.c2s_port)
    await asyncio.wait_for(c.auth_failed.wait(), 10)
    assert failures and failures[0] == "not-authorized"
    c.abort()


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256"])
async def test_a_failed_login_is_one_warning_with_address_and_jid(pair, mech, caplog):
    """What fail2ban-style tools read: address and JID, never the password."""
    caplog.set_level(logging.DEBUG, logger="zerolink")
    a, _, air, _ = pair
    guess = "Wrong-Pass-Guess-77"
    c = Client("Pilot@air.example/x", guess, air, a, mech)
    c.connect(air.ip, air.c2s_port)
    await asyncio.wait_for(c.auth_failed.wait(), 10)
    c.abort()
    lines = [r for r in caplog.records if "authentication failed for" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert re.fullmatch(
        r"client 127\.0\.0\.\d+:\d+: authentication failed for pilot@air\.example: "
        r"not-authorized \(from 127\.0\.0\.\d+\)",
        lines[0].getMessage(),
    ), lines[0].getMessage()
    assert guess not in caplog.text
    for form in base64_forms(guess.encode()):
        assert form.decode() not in caplog.text


async def test_plain_is_refused_before_tls(pair):
    _, _, air, _ = pair
    reader, writer = await asyncio.open_connection(air.ip, air.c2s_port)
    writer.write(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='air.example' "
        b"version='1.0'>"
    )
    features = b""
    while b"</stream:features>" not in features:
        features += await asyncio.wait_for(reader.read(4096), 5)
    assert b"<starttls" in features and b"<required/>" in features
    assert b"PLAIN" not in features
    # base64 of "\0pilot\0pilot-pw"
    writer.write(
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
        b"AHBpbG90AHBpbG90LXB3</auth>"
    )
    reply = await asyncio.wait_for(reader.read(4096), 5)
    assert b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><encryption-required" in reply
    writer.close()


async def test_subscription_presence_and_chat_across_the_link(pair):
    a, g, air, ground = pair
    pilot = await Client("pilot@air.example/cockpit", "pilot-pw", air, a).start()
    ops = await Client("ops@ground.example/desk", "ops-pw", ground, g).start()
    try:
        asked = asyncio.get_running_loop().create_future()
        ops.add_event_handler("presence_subscribe", lambda p: asked.done() or asked.set_result(p))
        ops.auto_authorize = None  # answer by hand below, as a user would
        pilot.send_presence(pto="ops@ground.example", ptype="subscribe")
        await asyncio.wait_for(asked, 5)
        ops.send_presence(pto="pilot@air.example", ptype="subscribed")
        ops.send_presence(pto="pilot@air.example", ptype="subscribe")
        await wait_for(
            lambda: pilot.client_roster["ops@ground.example"]["subscription"] == "both" or False,
            timeout=5,
            what="pilot's roster item at both",
        )
        await wait_for(
            lambda: ops.client_roster["pilot@air.example"]["subscription"] == "both",
            timeout=5,
            what="ops's roster item at both",
        )
        # each sees the other's presence
        pilot.send_presence(pstatus="cruising")
        p = await ops.presence_from("pilot@air.example")
        assert p["from"].full == "pilot@air.example/cockpit"

        # chat both ways, bare and full
        pilot.send_message(mto="ops@ground.example", mbody="bare to ground", mtype="chat")
        assert (await ops.next_message())["body"] == "bare to ground"
        ops.send_message(mto="pilot@air.example/cockpit", mbody="full to air", mtype="chat")
        m = await pilot.next_message()
        assert m["body"] == "full to air" and m["from"].full == "ops@ground.example/desk"

        # presence unavailable when a client disconnects
        await pilot.stop()
        p = await ops.presence_from("pilot@air.example", "unavailable")
        assert p["from"].full == "pilot@air.example/cockpit"
    finally:
        await pilot.stop()
        await ops.stop()


async def test_offline_message_delivered_at_next_login_with_delay(pair):
    a, g, air, ground = pair
    ops = await Client("ops@ground.example/desk", "ops-pw", ground, g).start()
    try:
        ops.send_message(mto="pilot@air.example", mbody="while you were away", mtype="chat")
        await wait_for(
            lambda: a.host is not None and a.host.offline.count("pilot@air.example") == 1,
            what="stored offline",
        )
        pilot = await Client("pilot@air.example/cockpit", "pilot-pw", air, a).start()
        m = await pilot.next_message()
        assert m["body"] == "while you were away"
        assert m["delay"]["stamp"] is not None
        assert m["delay"]["from"].full == "air.example"
        await pilot.stop()
    finally:
        await ops.stop()


async def test_iq_to_bare_jid_with_unknown_namespace_is_service_unavailable(pair):
    a, g, air, ground = pair
    ops = await Client("ops@ground.example/desk", "ops-pw", ground, g).start()
    pilot = await Client("pilot@air.example/cockpit", "pilot-pw", air, a).start()
    try:
        iq = ops.make_iq_get(queryxmlns="urn:example:unknown", ito="pilot@air.example")
        from slixmpp.exceptions import IqError

        with pytest.raises(IqError) as info:
            await iq.send(timeout=5)
        assert info.value.condition == "service-unavailable"
        # and the ping across the link to the other server
        await ops.plugin["xep_0199"].ping(jid="air.example", timeout=5)
    finally:
        await pilot.stop()
        await ops.stop()


async def test_roster_survives_restart_of_both_daemons(tmp_path, hosted):
    air, ground = hosted
    a, g = await start_pair(tmp_path, air, ground)
    make_user(a, "pilot@air.example", "pilot-pw")
    make_user(g, "ops@ground.example", "ops-pw")
    pilot = await Client("pilot@air.example/cockpit", "pilot-pw", air, a).start()
    ops = await Client("ops@ground.example/desk", "ops-pw", ground, g).start()
    pilot.send_presence(pto="ops@ground.example", ptype="subscribe")
    # slixmpp approves and subscribes back on its own: both ways, as both rosters say (each
    # roster push follows the server's stored change)
    await wait_for(
        lambda: (
            pilot.client_roster["ops@ground.example"]["subscription"] == "both"
            and ops.client_roster["pilot@air.example"]["subscription"] == "both"
        ),
        timeout=5,
        what="subscribed both ways",
    )
    before = pilot.client_roster["ops@ground.example"]["subscription"]
    await pilot.stop()
    await ops.stop()
    await a.stop()
    await g.stop()
    a, g = await start_pair(tmp_path, air, ground)
    try:
        pilot = await Client("pilot@air.example/cockpit", "pilot-pw", air, a).start()
        assert pilot.client_roster["ops@ground.example"]["subscription"] == before
        await pilot.stop()
    finally:
        await a.stop()
        await g.stop()


async def test_shutdown_with_a_client_online_tells_its_contacts(tmp_path, hosted):
    """Clients end before the links close and the store does: their unavailable presence
    still crosses the link (it used to hit a closed link, and a closed database)."""
    air, ground = hosted
    a, g = await start_pair(tmp_path, air, ground)
    make_user(a, "pilot@air.example", "pilot-pw")
    make_user(g, "ops@ground.example", "ops-pw")
    pilot = await Client("pilot@air.example/cockpit", "pilot-pw", air, a).start()
    ops = await Client("ops@ground.example/desk", "ops-pw", ground, g).start()
    stopped = False
    try:
        ops.send_presence(pto="pilot@air.example", ptype="subscribe")  # pilot approves
        await ops.presence_from("pilot@air.example")
        await a.stop()  # pilot is still online
        stopped = True
        p = await ops.presence_from("pilot@air.example", "unavailable")
        assert p["from"].full == "pilot@air.example/cockpit"
    finally:
        await pilot.stop()
        await ops.stop()
        if not stopped:
            await a.stop()
        await g.stop()


async def test_direct_tls_listener_xep_0368(tmp_path, hosted):
    air, ground = hosted
    tls_port = free_port(AIR_IP)
    air.extra = host_block(air) + f'direct_tls_listen = "{air.ip}:{tls_port}"\n'
    a, g = await start_pair(tmp_path, air, ground)
    make_user(a, "pilot@air.example", "pilot-pw")
    try:
        ctx = ssl.create_default_context(
            cafile=str(a.config.server.data_dir / "tls" / "self-signed.pem")
        )
        reader, writer = await asyncio.open_connection(
            air.ip, tls_port, ssl=ctx, server_hostname="air.example"
        )
        writer.write(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            b"xmlns:stream='http://etherx.jabber.org/streams' to='air.example' "
            b"version='1.0'>"
        )
        features = b""
        while b"</stream:features>" not in features:
            features += await asyncio.wait_for(reader.read(4096), 5)
        # already encrypted: no STARTTLS, and PLAIN is offered
        assert b"starttls" not in features
        assert b"<mechanism>PLAIN</mechanism>" in features
        writer.write(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
            b"AHBpbG90AHBpbG90LXB3</auth>"
        )
        reply = await asyncio.wait_for(reader.read(4096), 5)
        assert b"<success" in reply
        writer.close()
    finally:
        await a.stop()
        await g.stop()


async def test_go_xmpp_style_client_newline_restart_and_pipelined_bind(tmp_path, hosted):
    # go-sendxmpp writes "\n" after </auth> and restarts with an XML declaration; then a
    # client may pipeline bind, a message and a ping in one write (RFC 6120 allows it).
    air, ground = hosted
    tls_port = free_port(AIR_IP)
    air.extra = host_block(air) + f'direct_tls_listen = "{air.ip}:{tls_port}"\n'
    a, g = await start_pair(tmp_path, air, ground)
    make_user(a, "pilot@air.example", "pilot-pw")
    header = (
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='air.example' version='1.0'>\n"
    )
    try:
        ctx = ssl.create_default_context(
            cafile=str(a.config.server.data_dir / "tls" / "self-signed.pem")
        )
        reader, writer = await asyncio.open_connection(
            air.ip, tls_port, ssl=ctx, server_hostname="air.example"
        )

        async def read_until(marker: bytes) -> bytes:
            got = b""
            while marker not in got:
                chunk = await asyncio.wait_for(reader.read(4096), 5)
                assert chunk, f"connection closed before {marker!r}: {got!r}"
                got += chunk
            return got

        writer.write(header)
        await read_until(b"</stream:features>")
        writer.write(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
            b"AHBpbG90AHBpbG90LXB3</auth>\n"
        )
        assert b"<success" in await read_until(b"<success")
        writer.write(header)
        assert b"<bind" in await read_until(b"</stream:features>")
        writer.write(
            b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            b"<resource>go</resource></bind></iq>"
            b"<message to='ops@ground.example' id='m1'><body>hi</body></message>"
            b"<iq type='get' id='p1' to='air.example'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        replies = await read_until(b"id='p1'")
        assert b"<jid>pilot@air.example/go</jid>" in replies
        assert b"error" not in replies
        writer.close()
    finally:
        await a.stop()
        await g.stop()


def base64_forms(secret: bytes) -> list[bytes]:
    """Pieces of base64 that every encoding of a text containing `secret` includes, at each of
    the three alignments the secret can have in it (PLAIN encodes "\\0user\\0password")."""
    forms = []
    for k in range(3):
        enc = base64.b64encode(bytes(3 - k) + secret)
        forms.append(enc[4:-4])  # drop the groups shared with the prefix or the padding
    return forms


async def test_debug_log_holds_no_password_nor_handshake(pair, caplog):
    """`--log-level debug` logs the raw bytes: SASL payloads and the component handshake are
    redacted, whatever the mechanism."""
    caplog.set_level(logging.DEBUG, logger="zerolink")
    a, _, air, _ = pair
    password = "Correct-Horse-Battery-Staple-42"
    make_user(a, "copilot@air.example", password)
    for mech in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-1"):
        c = await Client(f"copilot@air.example/{mech}", password, air, a, mech).start()
        await c.stop()
    bot = await start_bot(air)
    await bot.stop()
    text = caplog.text
    assert password not in text
    for form in base64_forms(password.encode()):
        assert form.decode() not in text
    # every SASL element and handshake shows no payload
    for m in re.finditer(
        r"<((?:\w+:)?(?:auth|response|challenge|success|handshake))\b[^>]*(?<!/)>"
        r"([^<]*)<",
        text,
    ):
        assert m.group(2) == "[redacted]", m.group(0)
    stream_ids = set(re.findall(r"<stream:stream [^>]*\bid='([^']+)'", text))
    assert stream_ids
    for sid in stream_ids:
        assert handshake_digest(sid, "bot-secret") not in text
    assert "bot-secret" not in text
    for mech in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-1"):  # the log still shows the flow
        assert re.search(rf"mechanism=[\"']{mech}[\"']>\[redacted\]</auth>", text), mech
