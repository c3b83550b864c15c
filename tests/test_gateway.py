"""Gateway end to end: real Prosody servers fronted by zerolink over an X2X link.

    pilot@air.example ── Prosody air (127.0.0.2) ── zerolink gateway air
                                                         │  XEP-0361
    ops@ground.example ─ Prosody ground (127.0.0.3) ─ zerolink gateway ground

Each gateway connects to its Prosody's component port as the other side's domain
([[upstream.component]]); clients are slixmpp ClientXMPPs logged in to Prosody without TLS.
The mixed pair replaces air by a zerolink with an embedded host ([host]).

Prosody is required: when it is missing these tests fail (they are never skipped); CI installs
the Debian package (.ci/run).
"""

from __future__ import annotations

import asyncio
import copy
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError

from conftest import AIR_IP, GROUND_IP, free_port, require_prosody, toml_value, wait_for
from prosody import Prosody
from zerolink.app import Server
from zerolink.config import load_config
from zerolink.users import add_user, hosted_jid

pytestmark = pytest.mark.asyncio

SECRET = "gw-secret"
TEST_TIMEOUT = 45.0  # seconds, per test: nothing here may hang


@pytest.fixture(autouse=True)
def _require_prosody() -> None:
    require_prosody()


# --------------------------------------------------------------------------- clients


class Client(ClientXMPP):
    """A slixmpp client that records what it receives.

    Without `cafile` it talks to Prosody in the clear (loopback only; SCRAM over plaintext);
    with it, STARTTLS against zerolink's embedded host trusting its self-signed certificate.
    """

    def __init__(self, jid: str, password: str, ip: str, port: int, cafile: Path | None = None):
        plugin_config = {} if cafile else {"feature_mechanisms": {"unencrypted_scram": True}}
        super().__init__(jid, password, plugin_config=plugin_config)
        self.address = (ip, port)
        if cafile is None:
            self.enable_starttls = False
            self.enable_direct_tls = False
            self.enable_plaintext = True
        else:
            self.ssl_context = ssl.create_default_context(cafile=str(cafile))
        self.messages: asyncio.Queue = asyncio.Queue()
        self.presences: asyncio.Queue = asyncio.Queue()
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.register_plugin("xep_0203")
        # Subscription requests are answered by the test, as a user would.
        self.auto_authorize = None
        self.auto_subscribe = False
        self.subscribe_requests: asyncio.Queue = asyncio.Queue()
        # Copies: slixmpp reuses and edits stanza objects after the handlers have run.
        self.add_event_handler("message", lambda m: self.messages.put_nowait(copy.copy(m)))
        self.add_event_handler("message_error", lambda m: self.messages.put_nowait(copy.copy(m)))
        self.add_event_handler("presence", lambda p: self.presences.put_nowait(copy.copy(p)))
        self.add_event_handler(
            "presence_subscribe", lambda p: self.subscribe_requests.put_nowait(copy.copy(p))
        )

    async def start(self, presence: bool = True) -> Client:
        self.connect(*self.address)
        await self.wait_until("session_start", timeout=10)
        await self.get_roster(timeout=5)
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

    async def message_with(self, body: str, timeout: float = 5.0):
        """The next message whose body is `body` (others are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                m = await self.messages.get()
                if m["body"] == body:
                    return m

    async def presence_from(
        self, jid: str, ptype: str = "available", timeout: float = 5.0, status: str | None = None
    ):
        """The next presence from `jid` (bare, or full when it has a resource) of that type."""
        shows = ("available", "chat", "away", "dnd", "xa", "")
        async with asyncio.timeout(timeout):
            while True:
                p = await self.presences.get()
                sender = p["from"].full if "/" in jid else p["from"].bare
                if (
                    sender == jid
                    and (p["type"] == ptype or (ptype == "available" and p["type"] in shows))
                    and (status is None or p["status"] == status)
                ):
                    return p

    def subscription(self, jid: str) -> str:
        return self.client_roster[jid]["subscription"]


# --------------------------------------------------------------------------- sites


@dataclass
class Site:
    """One side: a Prosody plus a zerolink gateway, or a zerolink with an embedded host."""

    name: str
    domain: str
    ip: str
    x2x_port: int
    prosody: Prosody | None = None
    c2s_port: int = 0  # embedded host only
    server: Server | None = None
    users: dict[str, str] = field(default_factory=dict)
    upstream_extra: str = ""  # more [upstream] keys
    extra_domains: list[str] = field(default_factory=list)  # more upstream domains (a MUC)
    secret: str = SECRET  # the secret this gateway presents to its Prosody

    @property
    def zl(self) -> Server:
        assert self.server is not None
        return self.server

    def client(self, local: str, resource: str = "r") -> Client:
        jid = f"{local}@{self.domain}"
        password = self.users[jid]
        if self.prosody is not None:
            return Client(f"{jid}/{resource}", password, self.ip, self.prosody.c2s_port)
        cafile = self.zl.config.server.data_dir / "tls" / "self-signed.pem"
        return Client(f"{jid}/{resource}", password, self.ip, self.c2s_port, cafile)

    def attachment(self):
        """The gateway's component connection to its Prosody (for the other domain)."""
        assert self.server is not None and self.server.upstream is not None
        (att,) = self.server.upstream.attachments.values()
        return att

    def link(self):
        (link,) = self.zl.links.values()
        return link


def zerolink_toml(me: Site, other: Site) -> str:
    peer = {
        "name": other.name,
        "domains": [other.domain, *other.extra_domains],
        "remote": f"{other.ip}:{other.x2x_port}",
        "listen": f"{me.ip}:{me.x2x_port}",
        "direction": "both",
        "connect": "always",
        "reconnect_min": 0.05,
        "reconnect_max": 0.5,
        "initial_delay": 0,
        "close_timeout": 2,
        "connect_timeout": 2,
    }
    text = f"""
[server]
name = "{me.name}"
domains = {toml_value([me.domain, *me.extra_domains])}
log_level = "debug"
"""
    if me.prosody is not None:
        text += f"""
[upstream]
address = "{me.ip}:{me.prosody.component_port}"
reconnect_min = 0.05
reconnect_max = 0.3
connect_timeout = 2
{me.upstream_extra}
"""
        for domain in (other.domain, *other.extra_domains):
            text += f'\n[[upstream.component]]\ndomain = "{domain}"\nsecret = "{me.secret}"\n'
    else:
        text += f"""
[host]
listen = "{me.ip}:{me.c2s_port}"
"""
    text += "\n[[peer]]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in peer.items())
    text += f'\n[peer.identity]\nmode = "address"\naddresses = ["{other.ip}"]\n'
    return text


async def start_zerolink(tmp: Path, me: Site, other: Site) -> Server:
    path = tmp / f"{me.name}.toml"
    path.write_text(zerolink_toml(me, other))
    server = Server(load_config(path))
    await server.start()
    me.server = server
    return server


def prosody_site(tmp: Path, name: str, domain: str, ip: str, other_domain: str) -> Site:
    p = Prosody(tmp / f"prosody-{name}", domain, ip, components={other_domain: SECRET})
    return Site(name, domain, ip, free_port(ip), prosody=p)


async def add_prosody_user(site: Site, local: str, password: str) -> None:
    assert site.prosody is not None
    jid = await site.prosody.register(local, password)
    site.users[jid] = password


async def wait_gateway_up(*sites: Site) -> None:
    for site in sites:
        if site.prosody is not None:
            await wait_for(lambda s=site: s.attachment().up, 10, f"{site.name} component up")
        await wait_for(lambda s=site: s.link().sender() is not None, 10, f"{site.name} link up")


@dataclass
class Pair:
    air: Site
    ground: Site
    clients: list[Client] = field(default_factory=list)

    async def login(self, site: Site, local: str, resource: str = "r", **kw) -> Client:
        c = await site.client(local, resource).start(**kw)
        self.clients.append(c)
        return c


async def teardown(pair: Pair) -> None:
    for c in pair.clients:
        await c.stop()
    for site in (pair.air, pair.ground):
        if site.server is not None:
            await site.server.stop()
    for site in (pair.air, pair.ground):
        if site.prosody is not None:
            await site.prosody.stop()


def dump_logs(pair: Pair) -> None:
    """Setup failed: the end of each Prosody's log goes to the captured output."""
    for site in (pair.air, pair.ground):
        if site.prosody is not None:
            print(f"----- prosody {site.domain} log tail -----\n{site.prosody.log_tail(60)}")


def show_log_paths(pair: Pair) -> None:
    """Printed at setup, so that a failing test's report says where Prosody's logs are."""
    for site in (pair.air, pair.ground):
        if site.prosody is not None:
            print(f"prosody {site.domain} log (debug): {site.prosody.log_path}")


@pytest.fixture
async def gateways(tmp_path: Path) -> AsyncIterator[Pair]:
    """Prosody + gateway on each side, X2X between the gateways; pilot and ops registered."""
    air = prosody_site(tmp_path, "air", "air.example", AIR_IP, "ground.example")
    ground = prosody_site(tmp_path, "ground", "ground.example", GROUND_IP, "air.example")
    pair = Pair(air, ground)
    try:
        await add_prosody_user(air, "pilot", "pilot-pw")
        await add_prosody_user(ground, "ops", "ops-pw")
        assert air.prosody and ground.prosody
        await asyncio.gather(air.prosody.start(), ground.prosody.start())
        await start_zerolink(tmp_path, air, ground)
        await start_zerolink(tmp_path, ground, air)
        await wait_gateway_up(air, ground)
        show_log_paths(pair)
        yield pair
    except BaseException:
        dump_logs(pair)
        raise
    finally:
        await teardown(pair)


@pytest.fixture
async def mixed(tmp_path: Path) -> AsyncIterator[Pair]:
    """zerolink with an embedded host on air; Prosody + gateway on ground."""
    air = Site("air", "air.example", AIR_IP, free_port(AIR_IP), c2s_port=free_port(AIR_IP))
    ground = prosody_site(tmp_path, "ground", "ground.example", GROUND_IP, "air.example")
    pair = Pair(air, ground)
    try:
        await add_prosody_user(ground, "ops", "ops-pw")
        assert ground.prosody
        await ground.prosody.start()
        await start_zerolink(tmp_path, air, ground)
        add_user(air.zl.accounts, hosted_jid(air.zl.config, "pilot@air.example"), "pilot-pw")
        air.users["pilot@air.example"] = "pilot-pw"
        await start_zerolink(tmp_path, ground, air)
        await wait_gateway_up(air, ground)
        show_log_paths(pair)
        yield pair
    except BaseException:
        dump_logs(pair)
        raise
    finally:
        await teardown(pair)


# --------------------------------------------------------------------------- shared steps


async def messages_both_ways(pair: Pair, pilot: Client, ops: Client) -> None:
    pilot.send_message(mto="ops@ground.example", mbody="bare to ground", mtype="chat")
    m = await ops.message_with("bare to ground")
    assert m["from"].full == str(pilot.boundjid)
    ops.send_message(mto=str(pilot.boundjid), mbody="full to air", mtype="chat")
    m = await pilot.message_with("full to air")
    assert m["from"].full == str(ops.boundjid)
    assert m["to"].full == str(pilot.boundjid)


async def subscribe_both(pilot: Client, ops: Client) -> None:
    """pilot asks ops; ops approves and asks back; pilot approves: both items at `both`."""
    pilot.send_presence(pto="ops@ground.example", ptype="subscribe")
    req = await asyncio.wait_for(ops.subscribe_requests.get(), 5)
    assert req["from"].bare == "pilot@air.example"
    ops.send_presence(pto="pilot@air.example", ptype="subscribed")
    ops.send_presence(pto="pilot@air.example", ptype="subscribe")
    req = await asyncio.wait_for(pilot.subscribe_requests.get(), 5)
    assert req["from"].bare == "ops@ground.example"
    pilot.send_presence(pto="ops@ground.example", ptype="subscribed")
    await wait_for(
        lambda: pilot.subscription("ops@ground.example") == "both",
        5,
        "pilot's roster item for ops at both",
    )
    await wait_for(
        lambda: ops.subscription("pilot@air.example") == "both",
        5,
        "ops's roster item for pilot at both",
    )


# --------------------------------------------------------------------------- gateway pair


async def test_messages_both_ways(gateways: Pair) -> None:
    async with asyncio.timeout(TEST_TIMEOUT):
        pilot = await gateways.login(gateways.air, "pilot", "cockpit")
        ops = await gateways.login(gateways.ground, "ops", "desk")
        await messages_both_ways(gateways, pilot, ops)
        # a burst keeps its order across the link
        for i in range(20):
            ops.send_message(mto="pilot@air.example", mbody=f"n{i}", mtype="chat")
        got = [(await pilot.next_message())["body"] for _ in range(20)]
        assert got == [f"n{i}" for i in range(20)]


async def test_subscription_both_and_presence_after_relogin(gateways: Pair) -> None:
    async with asyncio.timeout(TEST_TIMEOUT):
        pilot = await gateways.login(gateways.air, "pilot", "cockpit")
        ops = await gateways.login(gateways.ground, "ops", "desk")
        await subscribe_both(pilot, ops)
        # Rosters as Prosody stored them, seen by fresh sessions: still both.
        await pilot.stop()
        await ops.presence_from("pilot@air.example/cockpit", "unavailable")

        # pilot logs in again: Prosody air probes ops across the link and ground answers the
        # probe with ops's current presence; ops sees pilot's initial presence.
        pilot = await gateways.login(gateways.air, "pilot", "cabin")
        assert pilot.subscription("ops@ground.example") == "both"
        await pilot.presence_from("ops@ground.example/desk")
        await ops.presence_from("pilot@air.example/cabin")

        # and the other way round: ops re-logs in and gets pilot's presence from a probe.
        await ops.stop()
        await pilot.presence_from("ops@ground.example/desk", "unavailable")
        ops = await gateways.login(gateways.ground, "ops", "console")
        assert ops.subscription("pilot@air.example") == "both"
        await ops.presence_from("pilot@air.example/cabin")
        await pilot.presence_from("ops@ground.example/console")

        # a presence change is broadcast across
        pilot.send_presence(pshow="away", pstatus="descending")
        p = await ops.presence_from("pilot@air.example/cabin", status="descending")
        assert p["show"] == "away"


async def test_disco_and_ping_to_the_other_server(gateways: Pair) -> None:
    async with asyncio.timeout(TEST_TIMEOUT):
        pilot = await gateways.login(gateways.air, "pilot", "cockpit")
        ops = await gateways.login(gateways.ground, "ops", "desk")
        info = await pilot.plugin["xep_0030"].get_info(jid="ground.example", timeout=5)
        assert info["from"].full == "ground.example"
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
        identities = {(i[0], i[1]) for i in info["disco_info"]["identities"]}
        assert ("server", "im") in identities
        info = await ops.plugin["xep_0030"].get_info(jid="air.example", timeout=5)
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
        await pilot.plugin["xep_0199"].ping(jid="ground.example", timeout=5)
        await ops.plugin["xep_0199"].ping(jid="air.example", timeout=5)


async def test_message_to_unknown_user_comes_back_as_error(gateways: Pair) -> None:
    async with asyncio.timeout(TEST_TIMEOUT):
        pilot = await gateways.login(gateways.air, "pilot", "cockpit")
        msg = pilot.make_message(mto="nobody@ground.example", mbody="anyone?", mtype="chat")
        msg["id"] = "q1"
        msg.send()
        m = await pilot.next_message()
        assert m["type"] == "error", m
        assert m["id"] == "q1"
        assert m["from"].bare == "nobody@ground.example"
        assert m["error"]["condition"] == "service-unavailable"
        # and an iq to an unknown user too
        with pytest.raises(IqError) as info:
            await pilot.plugin["xep_0030"].get_info(jid="nobody@ground.example", timeout=5)
        assert info.value.iq["error"]["condition"] in ("service-unavailable", "item-not-found")


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_prosody_restart_while_the_link_stays_up(gateways: Pair, how: str) -> None:
    async with asyncio.timeout(TEST_TIMEOUT):
        air, ground = gateways.air, gateways.ground
        assert air.prosody is not None
        pilot = await gateways.login(air, "pilot", "cockpit")
        ops = await gateways.login(ground, "ops", "desk")
        await messages_both_ways(gateways, pilot, ops)
        att = air.attachment()
        link_conn = air.link().sender()
        links_made = (air.link().connections_made, ground.link().connections_made)
        assert att.connections_made == 1

        await pilot.stop()
        if how == "sigkill":
            await air.prosody.kill()
        else:
            await air.prosody.stop()
        await wait_for(lambda: not att.up, 5, "air gateway sees its component connection lost")

        # sent to the side that is down: queued by the air gateway, not bounced
        ops.send_message(mto="pilot@air.example", mbody="while you were down", mtype="chat")
        await wait_for(lambda: len(att.queue) == 1, 5, "stanza queued for the upstream")
        assert await ops_has_no_error(ops)

        await air.prosody.start()
        await wait_for(lambda: att.up and att.connections_made == 2, 10, "component back")
        await wait_for(lambda: len(att.queue) == 0, 5, "queue flushed to Prosody")

        # Prosody stored it offline for pilot, who gets it at login
        pilot = await gateways.login(air, "pilot", "cockpit")
        m = await pilot.message_with("while you were down")
        assert m["from"].full == "ops@ground.example/desk"

        # and traffic after the restart flows both ways
        ops.send_message(mto="pilot@air.example/cockpit", mbody="after restart", mtype="chat")
        await pilot.message_with("after restart")
        pilot.send_message(mto="ops@ground.example", mbody="back up", mtype="chat")
        await ops.message_with("back up")

        # the X2X link itself never went down
        assert air.link().sender() is link_conn
        assert (air.link().connections_made, ground.link().connections_made) == links_made


async def ops_has_no_error(ops: Client, wait: float = 0.3) -> bool:
    """True when no error message arrives for `wait` seconds."""
    try:
        m = await asyncio.wait_for(ops.messages.get(), wait)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected message while the other side was down: {m}")


async def test_gateway_restart_and_upstream_stanza_timeout(gateways: Pair, tmp_path: Path) -> None:
    """zerolink air restarts while both Prosodys stay up; then Prosody air stays down longer
    than upstream.stanza_timeout and the queued message comes back as remote-server-timeout."""
    async with asyncio.timeout(TEST_TIMEOUT):
        air, ground = gateways.air, gateways.ground
        assert air.prosody is not None
        pilot = await gateways.login(air, "pilot", "cockpit")
        ops = await gateways.login(ground, "ops", "desk")

        await air.zl.stop()
        air.server = None
        # Prosody does not queue for a component that is not connected: it answers at once.
        msg = pilot.make_message(mto="ops@ground.example", mbody="anyone?", mtype="chat")
        msg["id"] = "gw-down"
        msg.send()
        m = await pilot.next_message()
        assert m["type"] == "error" and m["id"] == "gw-down", m
        assert m["error"]["condition"] == "remote-server-timeout"
        # the ground gateway queues for the link meanwhile
        ops.send_message(mto="pilot@air.example", mbody="gateway was down", mtype="chat")
        await wait_for(lambda: len(ground.link().queue) == 1, 5, "queued on the ground link")
        air.upstream_extra = "stanza_timeout = 0.5"
        await start_zerolink(tmp_path, air, ground)
        await wait_gateway_up(air, ground)
        await pilot.message_with("gateway was down")
        ops.send_message(mto="pilot@air.example", mbody="new gateway", mtype="chat")
        await pilot.message_with("new gateway")

        await pilot.stop()
        await air.prosody.stop()
        att = air.attachment()
        await wait_for(lambda: not att.up, 5, "component connection lost")
        msg = ops.make_message(mto="pilot@air.example", mbody="too late", mtype="chat")
        msg["id"] = "late1"
        msg.send()
        m = await ops.next_message(timeout=5)
        assert m["type"] == "error" and m["id"] == "late1", m
        assert m["error"]["condition"] == "remote-server-timeout"
        assert m["from"].bare == "pilot@air.example"
        await air.prosody.start()
        await wait_for(lambda: att.up, 10, "component back")
        pilot = await gateways.login(air, "pilot", "cockpit")
        # The expired message must not be delivered too: it would come before this marker,
        # which takes the same path (ground's link, air's upstream queue, Prosody air).
        ops.send_message(mto="pilot@air.example", mbody="marker", mtype="chat")
        m = await pilot.next_message(timeout=10)
        assert m["body"] == "marker", f"unexpected message before the marker: {m}"


async def test_wrong_secret_is_logged_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with asyncio.timeout(TEST_TIMEOUT):
        air = prosody_site(tmp_path, "air", "air.example", AIR_IP, "ground.example")
        ground = Site("ground", "ground.example", GROUND_IP, free_port(GROUND_IP))
        air.secret = "not-the-secret"
        pair = Pair(air, ground)
        try:
            assert air.prosody is not None
            await air.prosody.start()
            caplog.set_level("INFO", logger="zerolink.upstream")
            await start_zerolink(tmp_path, air, ground)
            await wait_for(
                lambda: sum("not-authorized" in r.getMessage() for r in caplog.records) >= 2,
                10,
                "two refusals logged (it keeps retrying)",
            )
            assert not air.attachment().up
            assert "Component authentication failed for ground.example" in air.prosody.log_text()
        finally:
            await teardown(pair)


async def test_unknown_component_domain_is_reported_as_host_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with asyncio.timeout(TEST_TIMEOUT):
        air = prosody_site(tmp_path, "air", "air.example", AIR_IP, "ground.example")
        assert air.prosody is not None
        # Prosody knows no Component "ground.example": a typo in prosody.cfg.lua, say.
        air.prosody.components = {"grund.example": SECRET}
        air.prosody.write_config()
        ground = Site("ground", "ground.example", GROUND_IP, free_port(GROUND_IP))
        pair = Pair(air, ground)
        try:
            await air.prosody.start()
            caplog.set_level("INFO", logger="zerolink.upstream")
            await start_zerolink(tmp_path, air, ground)
            await wait_for(
                lambda: any("refused" in r.getMessage() for r in caplog.records),
                10,
                "a refusal logged",
            )
            refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
            assert "host-unknown" in refusals[0], refusals[0]
            assert "does not match any configured external components" in refusals[0]
        finally:
            await teardown(pair)


async def test_a_muc_service_of_the_other_side_routed_across(tmp_path: Path) -> None:
    """A MUC service on Prosody ground, joined from Prosody air: the three settings that
    docs/gateway.md lists ("A MUC service across the link")."""
    muc = "conference.ground.example"
    room = f"ops-room@{muc}"
    async with asyncio.timeout(TEST_TIMEOUT):
        air = prosody_site(tmp_path, "air", "air.example", AIR_IP, "ground.example")
        ground = prosody_site(tmp_path, "ground", "ground.example", GROUND_IP, "air.example")
        assert air.prosody is not None and ground.prosody is not None
        air.prosody.components[muc] = SECRET  # air's Prosody: one more external component
        air.prosody.write_config()
        ground.prosody.extra = f'Component "{muc}" "muc"\n\tmuc_room_locking = false\n'
        ground.prosody.write_config()
        ground.extra_domains = [muc]  # ground's server.domains, air's peer domains and upstream
        pair = Pair(air, ground)
        try:
            await add_prosody_user(air, "pilot", "pilot-pw")
            await add_prosody_user(ground, "ops", "ops-pw")
            await asyncio.gather(air.prosody.start(), ground.prosody.start())
            await start_zerolink(tmp_path, air, ground)
            await start_zerolink(tmp_path, ground, air)
            await wait_gateway_up(ground)
            await wait_for(lambda: air.link().sender() is not None, 10, "air link up")
            upstream = air.zl.upstream
            assert upstream is not None
            await wait_for(
                lambda: all(att.up for att in upstream.attachments.values()),
                10,
                "air's gateway attached as ground.example and as the MUC domain",
            )
            ops = await pair.login(ground, "ops", "desk")
            pilot = await pair.login(air, "pilot", "cockpit")
            for c in (ops, pilot):
                c.register_plugin("xep_0045")
            await ops.plugin["xep_0045"].join_muc_wait(room, "ops", maxstanzas=0, timeout=10)
            await pilot.plugin["xep_0045"].join_muc_wait(room, "pilot", maxstanzas=0, timeout=10)
            pilot.send_message(mto=room, mbody="hello room", mtype="groupchat")
            m = await ops.message_with("hello room")
            assert m["from"].full == f"{room}/pilot" and m["type"] == "groupchat"
            ops.send_message(mto=room, mbody="hello pilot", mtype="groupchat")
            m = await pilot.message_with("hello pilot")
            assert m["from"].full == f"{room}/ops"
        except BaseException:
            dump_logs(pair)
            raise
        finally:
            await teardown(pair)


# --------------------------------------------------------------------------- examples/gateway

SMOKE = Path(__file__).resolve().parents[1] / "examples" / "gateway" / "smoke.py"


class LoginRelay:
    """A TCP relay to a Prosody's client port, standing for a slow network in front of it.

    It holds each new connection until `release` is set, and sets `bound` when the server's
    resource-binding result (`</jid>`) has passed through to the client.
    """

    def __init__(self, ip: str, target_port: int) -> None:
        self.ip, self.target_port = ip, target_port
        self.release = asyncio.Event()
        self.bound = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, self.ip, 0)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _accept(self, r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await self.release.wait()
            r2, w2 = await asyncio.open_connection(self.ip, self.target_port)
            await asyncio.gather(self._pipe(r1, w2, watch=False), self._pipe(r2, w1, watch=True))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            w1.transport.abort()

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, watch: bool) -> None:
        seen = b""
        try:
            while data := await r.read(65536):
                if watch and not self.bound.is_set():
                    seen = (seen + data)[-4096:]
                    if b"</jid>" in seen:
                        self.bound.set()
                w.write(data)
                await w.drain()
        finally:
            w.transport.abort()


async def test_example_smoke_script_when_ops_logs_in_first(gateways: Pair) -> None:
    """examples/gateway/smoke.py against the gateway pair, ops's session up before pilot's.

    Regression: it awaited pilot's session_start, then ops's; when ops's came first, the
    second wait missed it and hung until --timeout (about half the runs). Here pilot's
    connection is held until ops has bound its resource, so ops is always first.
    """
    async with asyncio.timeout(TEST_TIMEOUT):
        air, ground = gateways.air, gateways.ground
        assert air.prosody is not None and ground.prosody is not None
        air_relay = LoginRelay(air.ip, air.prosody.c2s_port)
        ground_relay = LoginRelay(ground.ip, ground.prosody.c2s_port)
        ground_relay.release.set()
        air_port, ground_port = await air_relay.start(), await ground_relay.start()
        try:
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, str(SMOKE), "--timeout", "15"),
                *("--air-port", str(air_port), "--ground-port", str(ground_port)),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            await asyncio.wait_for(ground_relay.bound.wait(), 15)
            air_relay.release.set()  # ops is logged in: now pilot may
            out = (await asyncio.wait_for(proc.communicate(), 25))[0].decode()
        finally:
            await air_relay.close()
            await ground_relay.close()
        assert proc.returncode == 0, out
        for line in ("both logged in", "roster items at 'both'", "ops got: 'hello ground'"):
            assert line in out, out
        assert "pilot got: 'hello air'" in out and out.rstrip().endswith("OK"), out


# --------------------------------------------------------------------------- mixed pair


async def test_mixed_embedded_host_and_prosody_gateway(mixed: Pair) -> None:
    async with asyncio.timeout(TEST_TIMEOUT):
        pilot = await mixed.login(mixed.air, "pilot", "cockpit")
        ops = await mixed.login(mixed.ground, "ops", "desk")
        await messages_both_ways(mixed, pilot, ops)
        await subscribe_both(pilot, ops)
        # presence both ways, and probes answered after a re-login on each side
        pilot.send_presence(pstatus="cruising")
        await ops.presence_from("pilot@air.example/cockpit", status="cruising")
        ops.send_presence(pstatus="on duty")
        await pilot.presence_from("ops@ground.example/desk", status="on duty")

        await pilot.stop()
        await ops.presence_from("pilot@air.example/cockpit", "unavailable")
        pilot = await mixed.login(mixed.air, "pilot", "cabin")
        assert pilot.subscription("ops@ground.example") == "both"
        # the embedded host probes ops across the link; Prosody ground answers
        await pilot.presence_from("ops@ground.example/desk", status="on duty")

        await ops.stop()
        await pilot.presence_from("ops@ground.example/desk", "unavailable")
        ops = await mixed.login(mixed.ground, "ops", "console")
        assert ops.subscription("pilot@air.example") == "both"
        # Prosody ground probes pilot across the link; the embedded host answers
        await ops.presence_from("pilot@air.example/cabin")
        await pilot.presence_from("ops@ground.example/console")

        await pilot.plugin["xep_0199"].ping(jid="ground.example", timeout=5)
        await ops.plugin["xep_0199"].ping(jid="air.example", timeout=5)
