"""Tests for zerolink.config: TOML -> frozen dataclasses, every problem at once."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import textwrap
from pathlib import Path

import pytest

from zerolink.config import (
    DEFAULT_COMPONENT_PORT,
    ComponentConfig,
    Config,
    Endpoint,
    HostConfig,
    IdentityConfig,
    PeerConfig,
    UpstreamComponent,
    UpstreamConfig,
    load_config,
    log_warnings,
    parse_config,
    parse_endpoint,
    summary,
    warnings_for,
)
from zerolink.errors import ConfigError, ConfigProblem
from zerolink.pins import Pin, parse_pin

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

MINIMAL = """
[server]
domains = ["air.example"]
"""

PEER = """
[server]
domains = ["air.example"]

[[peer]]
name = "ground"
domains = ["ground.example"]
remote = "127.0.0.3"
listen = "127.0.0.2"
"""


def write(tmp_path: Path, text: str, name: str = "test.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, name: str = "test.toml") -> Config:
    return load_config(write(tmp_path, text, name))


def problems(tmp_path: Path, text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value.problems


def problem_at(tmp_path: Path, text: str, path: str) -> str:
    """The message of the one problem at `path` (fails if there is not exactly one)."""
    found = [p for p in problems(tmp_path, text) if p.path == path]
    assert len(found) == 1, f"expected one problem at {path!r}, got {found!r}"
    return found[0].message


def parse(data: dict, tmp_path: Path) -> Config:
    return parse_config(data, base_dir=tmp_path)


def parse_problems(data: dict, tmp_path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse(data, tmp_path)
    return {p.path: p.message for p in info.value.problems}


def problem_at_data(tmp_path: Path, data: dict, path: str) -> str:
    """Like `problem_at`, for a dict: the one problem at `path`."""
    with pytest.raises(ConfigError) as info:
        parse(data, tmp_path)
    found = [p for p in info.value.problems if p.path == path]
    assert len(found) == 1, f"expected one problem at {path!r}, got {info.value.problems!r}"
    return found[0].message


def peer(**overrides: object) -> dict:
    base: dict = {
        "name": "ground",
        "domains": ["ground.example"],
        "remote": "127.0.0.3",
        "listen": "127.0.0.2",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def config_with(*peers: dict, **extra: object) -> dict:
    data: dict = {"server": {"domains": ["air.example"]}, "peer": list(peers)}
    data.update(extra)
    return data


# --------------------------------------------------------------------------- examples


def test_air_example() -> None:
    cfg = load_config(EXAMPLES / "air.toml")
    assert cfg.path == (EXAMPLES / "air.toml").absolute()
    assert cfg.server.name == "air"
    assert cfg.server.domains == ("air.example",)
    assert cfg.server.data_dir == EXAMPLES / "air-data"
    assert cfg.server.log_level == "info"
    assert cfg.component_listener is not None
    assert cfg.component_listener.listen == Endpoint("127.0.0.2", 5347)
    assert cfg.components == (ComponentConfig("bot.air.example", "bot-secret"),)
    (p,) = cfg.peers
    assert p.name == "ground"
    assert p.domains == ("ground.example", "*.ground.example")
    assert p.remote == Endpoint("127.0.0.3", 5269)
    assert p.listen == Endpoint("127.0.0.2", 5269)
    assert p.source == "127.0.0.2"
    assert p.identity == IdentityConfig("address", (ipaddress.ip_network("127.0.0.3/32"),), None)
    assert (p.direction, p.connect) == ("both", "always")
    assert cfg.host == HostConfig(domains=("air.example",), listen=Endpoint("127.0.0.2", 5222))
    assert warnings_for(cfg) == []


def test_ground_example_mirrors_air() -> None:
    cfg = load_config(EXAMPLES / "ground.toml")
    assert cfg.server.name == "ground"
    assert cfg.server.domains == ("ground.example",)
    assert cfg.server.data_dir == EXAMPLES / "ground-data"
    assert cfg.component_listener is not None
    assert cfg.component_listener.listen == Endpoint("127.0.0.3", 5347)
    assert cfg.components == (ComponentConfig("bot.ground.example", "bot-secret"),)
    (p,) = cfg.peers
    assert p.name == "air"
    assert p.domains == ("air.example", "*.air.example")
    assert p.remote == Endpoint("127.0.0.2", 5269)
    assert p.listen == Endpoint("127.0.0.3", 5269)
    assert p.source == "127.0.0.3"
    assert p.identity.mode == "address"
    assert p.identity.addresses == (ipaddress.ip_network("127.0.0.2/32"),)
    assert (p.direction, p.connect) == ("both", "always")
    assert cfg.host == HostConfig(domains=("ground.example",), listen=Endpoint("127.0.0.3", 5222))


def test_examples_identify_each_other() -> None:
    air = load_config(EXAMPLES / "air.toml").peers[0]
    ground = load_config(EXAMPLES / "ground.toml").peers[0]
    # Each side dials from an address the other side accepts.
    assert ipaddress.ip_address(air.source) in ground.identity.addresses[0]
    assert ipaddress.ip_address(ground.source) in air.identity.addresses[0]
    assert air.remote == ground.listen and ground.remote == air.listen


def test_dataclasses_are_frozen_with_slots() -> None:
    cfg = load_config(EXAMPLES / "air.toml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.name = "x"  # type: ignore[misc]
    assert not hasattr(cfg.peers[0], "__dict__")
    assert cfg.host is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.host.tls_required = False  # type: ignore[misc]
    assert not hasattr(cfg.host, "__dict__")


# --------------------------------------------------------------------------- defaults


def test_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, MINIMAL, "mybox.toml")
    assert cfg.server.name == "mybox"
    assert cfg.server.data_dir == tmp_path / "mybox-data"
    assert cfg.server.log_level == "info"
    assert cfg.server.max_stanza_size == 262144
    assert cfg.server.max_depth == 64
    assert cfg.component_listener is None
    assert cfg.components == ()
    assert cfg.peers == ()
    assert cfg.host is None
    assert cfg.upstream is None


def test_peer_defaults(tmp_path: Path) -> None:
    (p,) = load(tmp_path, PEER).peers
    assert p.remote == Endpoint("127.0.0.3", 5269)
    assert p.listen == Endpoint("127.0.0.2", 5269)
    assert p.source == "127.0.0.2"
    # identity omitted: address mode, accepting the remote's address
    assert p.identity == IdentityConfig("address", (ipaddress.ip_network("127.0.0.3/32"),))
    for f in dataclasses.fields(PeerConfig):
        if f.default is not dataclasses.MISSING:
            assert getattr(p, f.name) == f.default, f.name


def test_parse_config_defaults_without_file(tmp_path: Path) -> None:
    cfg = parse({"server": {"domains": ["air.example"]}}, tmp_path)
    assert cfg.path is None
    assert cfg.server.name == "zerolink"
    assert cfg.server.data_dir == tmp_path / "zerolink-data"


def test_relative_data_dir_resolves_against_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    write(sub, '[server]\ndomains = ["a.example"]\ndata_dir = "state/x"\n', "z.toml")
    monkeypatch.chdir(tmp_path)
    cfg = load_config("etc/z.toml")
    assert cfg.server.data_dir == tmp_path / "etc" / "state" / "x"
    assert cfg.server.data_dir.is_absolute()


def test_absolute_data_dir_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    cfg = load(tmp_path, f'[server]\ndomains = ["a.example"]\ndata_dir = "{target}"\n')
    assert cfg.server.data_dir == target


def test_values_are_normalized(tmp_path: Path) -> None:
    cfg = parse(
        config_with(
            peer(
                domains=["Ground.Example", "*.GROUND.example"],
                remote="[::1]",
                listen="[::1]:5270",
                identity={"mode": "Address", "port": 5269},
                direction="Outbound",
            ),
            server={"domains": ["AIR.example"], "log_level": "DEBUG"},
        ),
        tmp_path,
    )
    p = cfg.peers[0]
    assert cfg.server.domains == ("air.example",)
    assert cfg.server.log_level == "debug"
    assert p.domains == ("ground.example", "*.ground.example")
    assert p.remote == Endpoint("::1", 5269)
    assert p.identity == IdentityConfig("address", (ipaddress.ip_network("::1/128"),), 5269)
    assert p.direction == "outbound"


def test_full_peer(tmp_path: Path) -> None:
    cfg = parse(
        config_with(
            peer(
                source="127.0.0.9",
                connect="on-demand",
                idle_timeout=30,
                keepalive=0,
                stanza_timeout=600.5,
                queue_limit=5,
                reconnect_min=2,
                reconnect_max=2,
                connect_timeout=5,
                close_timeout=1,
                tcp_user_timeout=0,
                initial_delay=0,
                identity={"mode": "address", "addresses": ["10.0.0.0/8", "fd00::1"]},
            )
        ),
        tmp_path,
    )
    p = cfg.peers[0]
    assert p.source == "127.0.0.9"
    assert p.connect == "on-demand"
    assert p.idle_timeout == 30.0 and isinstance(p.idle_timeout, float)
    assert p.keepalive == 0.0
    assert p.stanza_timeout == 600.5
    assert p.queue_limit == 5
    assert (p.reconnect_min, p.reconnect_max) == (2.0, 2.0)
    assert p.tcp_user_timeout == 0.0
    assert p.identity.addresses == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::1/128"),
    )


def test_direction_only_needs_its_endpoint(tmp_path: Path) -> None:
    cfg = parse(
        config_with(
            peer(name="out", domains=["out.example"], listen=None, direction="outbound"),
            peer(
                name="in",
                domains=["in.example"],
                remote=None,
                direction="inbound",
                identity={"mode": "address", "addresses": ["10.1.2.3"]},
            ),
        ),
        tmp_path,
    )
    out, inb = cfg.peers
    assert out.listen is None and out.source is None
    assert inb.remote is None and inb.listen == Endpoint("127.0.0.2", 5269)


def test_source_default_skips_wildcard_and_other_family(tmp_path: Path) -> None:
    cfg = parse(
        config_with(
            peer(name="a", domains=["a.example"], listen="0.0.0.0:5269"),
            peer(name="b", domains=["b.example"], listen="[::1]:5270"),
        ),
        tmp_path,
    )
    assert [p.source for p in cfg.peers] == [None, None]


def test_identity_as_string(tmp_path: Path) -> None:
    cfg = parse(config_with(peer(identity="implicit")), tmp_path)
    assert cfg.peers[0].identity == IdentityConfig("implicit")
    cfg = parse(config_with(peer(identity="address")), tmp_path)
    assert cfg.peers[0].identity.addresses == (ipaddress.ip_network("127.0.0.3/32"),)


def test_wildcard_beside_exact_is_fine(tmp_path: Path) -> None:
    cfg = parse(config_with(peer(domains=["x.example", "*.x.example"])), tmp_path)
    assert cfg.peers[0].domains == ("x.example", "*.x.example")


# --------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("text", "expected", "shown"),
    [
        ("127.0.0.2:5269", Endpoint("127.0.0.2", 5269), "127.0.0.2:5269"),
        ("127.0.0.2", Endpoint("127.0.0.2", 4000), "127.0.0.2:4000"),
        ("[::1]:5269", Endpoint("::1", 5269), "[::1]:5269"),
        ("[::1]", Endpoint("::1", 4000), "[::1]:4000"),
        ("[2001:DB8:0::1]:1", Endpoint("2001:db8::1", 1), "[2001:db8::1]:1"),
        ("Ground.Example:65535", Endpoint("ground.example", 65535), "ground.example:65535"),
        ("localhost", Endpoint("localhost", 4000), "localhost:4000"),
    ],
)
def test_parse_endpoint(text: str, expected: Endpoint, shown: str) -> None:
    ep = parse_endpoint(text, 4000)
    assert ep == expected
    assert str(ep) == shown


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("127.0.0.1:0", "port number"),
        ("127.0.0.1:65536", "port number"),
        ("127.0.0.1:", "port number"),
        ("127.0.0.1:http", "port number"),
        ("::1:5269", "brackets"),
        ("[::1", "']'"),
        ("[127.0.0.1]:5", "IPv6"),
        ("[::1]5269", "':port'"),
        (":5269", "missing host"),
        ("", "empty"),
        ("bad_host:5", "host name"),
        ("300.1.1.1:5", "IPv4"),
    ],
)
def test_parse_endpoint_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_endpoint(text, 5269)
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- problems


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.source == str(missing)
    assert [p.message for p in info.value.problems] == ["configuration file not found"]
    assert "nope.toml" in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path)


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\ndomains = ["a.example"]\nlog_level = verbose\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (p,) = info.value.problems
    assert p.path == ""
    assert "line 3, column 13" in p.message
    assert "TOML syntax error" in p.message


def test_toml_error_at_end_of_file(tmp_path: Path) -> None:
    (p,) = problems(tmp_path, '[server]\ndomains = ["a.example",\n')
    assert "end of file" in p.message and "line" in p.message


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b'[server]\nname = "\xff"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


def test_missing_server(tmp_path: Path) -> None:
    found = parse_problems({}, tmp_path)
    assert list(found) == ["server"]
    assert "[server]" in found["server"]


@pytest.mark.parametrize(
    ("server", "path", "fragment"),
    [
        ({}, "server.domains", "required"),
        ({"domains": []}, "server.domains", "at least one"),
        ({"domains": "a.example"}, "server.domains", "expected an array of domain names"),
        ({"domains": ["a.example", 7]}, "server.domains[1]", "got integer 7"),
        ({"domains": ["*.a.example"]}, "server.domains[0]", "only allowed in peer domains"),
        ({"domains": ["bad_label.example"]}, "server.domains[0]", "invalid domain name"),
        ({"domains": ["a" * 64 + ".example"]}, "server.domains[0]", "invalid domain name"),
        ({"domains": ["a.example"], "log_level": "loud"}, "server.log_level", "'debug'"),
        ({"domains": ["a.example"], "log_level": 3}, "server.log_level", "integer 3"),
        ({"domains": ["a.example"], "max_stanza_size": 1023}, "server.max_stanza_size", ">="),
        ({"domains": ["a.example"], "max_stanza_size": 2.5}, "server.max_stanza_size", "integer"),
        ({"domains": ["a.example"], "max_depth": 0}, "server.max_depth", ">="),
        ({"domains": ["a.example"], "data_dir": ""}, "server.data_dir", "empty"),
        ({"domains": ["a.example"], "name": 5}, "server.name", "expected a string"),
        ({"domains": ["a.example"], "name": "a\tb"}, "server.name", "control"),
    ],
)
def test_server_problems(tmp_path: Path, server: dict, path: str, fragment: str) -> None:
    found = parse_problems({"server": server}, tmp_path)
    assert path in found, found
    assert fragment in found[path]


@pytest.mark.parametrize(
    ("overrides", "path", "fragment"),
    [
        ({"name": None}, "peer[0].name", "required"),
        ({"name": "a b"}, "peer[0].name", "letters, digits"),
        ({"domains": None}, "peer[0].domains", "required"),
        ({"domains": ["*"]}, "peer[0].domains[0]", "wildcard"),
        ({"domains": ["a.*.example"]}, "peer[0].domains[0]", "wildcard"),
        ({"remote": None}, "peer[0].remote", "direction is 'both'"),
        ({"listen": None}, "peer[0].listen", "direction is 'both'"),
        ({"remote": 5269}, "peer[0].remote", "got integer 5269"),
        ({"remote": "127.0.0.3:0"}, "peer[0].remote", "port number"),
        ({"listen": "[::1]:99999"}, "peer[0].listen", "port number"),
        ({"source": "127.0.0.1:5"}, "peer[0].source", "IP address"),
        ({"source": "::1"}, "peer[0].source", "IPv6"),
        ({"direction": "up"}, "peer[0].direction", "'both', 'outbound', 'inbound'"),
        ({"connect": "on_demand"}, "peer[0].connect", "did you mean 'on-demand'?"),
        ({"keepalive": "x"}, "peer[0].keepalive", "expected a number of seconds, got string 'x'"),
        ({"keepalive": -1}, "peer[0].keepalive", ">= 0"),
        ({"keepalive": True}, "peer[0].keepalive", "got boolean true"),
        ({"stanza_timeout": 0}, "peer[0].stanza_timeout", "> 0"),
        ({"connect_timeout": float("inf")}, "peer[0].connect_timeout", "finite"),
        ({"close_timeout": float("nan")}, "peer[0].close_timeout", "finite"),
        ({"reconnect_min": 0}, "peer[0].reconnect_min", "> 0"),
        ({"queue_limit": 1.0}, "peer[0].queue_limit", "expected an integer"),
        ({"queue_limit": True}, "peer[0].queue_limit", "boolean"),
        ({"queue_limit": -1}, "peer[0].queue_limit", ">= 0"),
        ({"reconnect_min": 10, "reconnect_max": 5}, "peer[0].reconnect_min", "reconnect_max"),
        (
            {"direction": "inbound", "remote": None, "connect": "on-demand"},
            "peer[0].connect",
            "on-demand needs a peer we may dial",
        ),
        ({"identity": 3}, "peer[0].identity", "expected a table"),
        ({"identity": "cert"}, "peer[0].identity.mode", "'address', 'implicit'"),
        ({"identity": "tls", "tls": True}, "peer[0].identity", "needs ca"),
        ({"identity": {}}, "peer[0].identity.mode", "required"),
        ({"identity": {"mode": "address", "port": 0}}, "peer[0].identity.port", "1-65535"),
        ({"identity": {"mode": "address", "port": "x"}}, "peer[0].identity.port", "string"),
        (
            {"identity": {"mode": "address", "addresses": []}},
            "peer[0].identity.addresses",
            "at least one",
        ),
        (
            {"identity": {"mode": "address", "addresses": "10.0.0.1"}},
            "peer[0].identity.addresses",
            "expected an array",
        ),
        (
            {"identity": {"mode": "address", "addresses": ["10.0.0.1/8"]}},
            "peer[0].identity.addresses[0]",
            "did you mean '10.0.0.0/8'?",
        ),
        (
            {"identity": {"mode": "implicit", "addresses": ["10.0.0.1"]}},
            "peer[0].identity.addresses",
            "only used with mode = 'address'",
        ),
        (
            {"remote": "ground.example"},
            "peer[0].identity",
            "identity.addresses is required when remote is not an IP address",
        ),
        (
            {"remote": None, "direction": "inbound"},
            "peer[0].identity",
            "identity.addresses is required when remote is not an IP address",
        ),
    ],
)
def test_peer_problems(tmp_path: Path, overrides: dict, path: str, fragment: str) -> None:
    data = config_with(peer(**overrides))
    for key in ("name", "domains", "remote", "listen"):
        if key in overrides and overrides[key] is None:
            data["peer"][0].pop(key, None)
    found = parse_problems(data, tmp_path)
    assert path in found, found
    assert fragment in found[path]


def test_address_problem_has_index_path(tmp_path: Path) -> None:
    msg = problem_at(
        tmp_path,
        PEER + '[peer.identity]\nmode = "address"\naddresses = ["127.0.0.3", "foo"]\n',
        "peer[0].identity.addresses[1]",
    )
    assert msg == "expected an IP address or CIDR network, got 'foo'"


def test_component_problems(tmp_path: Path) -> None:
    found = parse_problems(
        {
            "server": {"domains": ["air.example"]},
            "component_listener": {"listen": "127.0.0.2:0"},
            "component": [{"domain": "bot.air.example"}, {"secret": "s"}, "x"],
        },
        tmp_path,
    )
    assert "port number" in found["component_listener.listen"]
    assert "required" in found["component[0].secret"]
    assert "required" in found["component[1].domain"]
    assert "expected a table" in found["component[2]"]


def test_a_secret_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    """Config problems go to stderr, the service's log: a secret's value never appears."""
    found = parse_problems(
        {
            "server": {"domains": ["air.example"]},
            "component_listener": {"listen": "127.0.0.2:5347"},
            "component": [{"domain": "bot.air.example", "secret": 987654321}],
            "upstream": {
                "address": "127.0.0.1:5347",
                "component": [{"domain": "ground.example", "secret": 24681357.5}],
            },
        },
        tmp_path,
    )
    assert found["component[0].secret"] == "expected a string, got integer"
    shown = "\n".join(found.values())
    assert "987654321" not in shown and "24681357" not in shown


def test_components_need_listener(tmp_path: Path) -> None:
    found = parse_problems(
        {"server": {"domains": ["a.example"]}, "component": [{"domain": "b.a", "secret": "s"}]},
        tmp_path,
    )
    assert "component_listener" in found


def test_component_listener_needs_listen(tmp_path: Path) -> None:
    found = parse_problems(
        {"server": {"domains": ["a.example"]}, "component_listener": {}}, tmp_path
    )
    assert "required" in found["component_listener.listen"]


def test_send_buffer_follows_max_stanza_size(tmp_path: Path) -> None:
    data = host_config({"listen": "127.0.0.2", "max_send_buffer": 65536})
    data["server"]["max_stanza_size"] = 32768
    cfg = parse(data, tmp_path)
    assert cfg.host is not None and cfg.host.max_send_buffer == 65536
    data["server"]["max_stanza_size"] = 32769
    msg = problem_at_data(tmp_path, data, "host.max_send_buffer")
    assert msg == "must be at least twice server.max_stanza_size (65538), got 65536"


def test_component_send_buffer_from_listener_or_own(tmp_path: Path) -> None:
    cfg = parse(
        {
            "server": {"domains": ["a.example"]},
            "component_listener": {"listen": "127.0.0.1", "max_send_buffer": 100000},
            "component": [
                {"domain": "bot.a.example", "secret": "s"},
                {"domain": "gw.a.example", "secret": "s", "max_send_buffer": 8192},
            ],
        },
        tmp_path,
    )
    assert cfg.component_listener is not None
    assert cfg.component_listener.max_send_buffer == 100000
    assert [c.max_send_buffer for c in cfg.components] == [100000, 8192]
    cfg = parse(
        {
            "server": {"domains": ["a.example"]},
            "component_listener": {"listen": "127.0.0.1"},
            "component": [{"domain": "bot.a.example", "secret": "s"}],
        },
        tmp_path,
    )
    assert cfg.components[0].max_send_buffer == 4 * 1024 * 1024
    found = parse_problems(
        {
            "server": {"domains": ["a.example"]},
            "component_listener": {"listen": "127.0.0.1", "max_send_buffer": 10},
            "component": [{"domain": "b.a.example", "secret": "s", "max_send_buffer": "x"}],
        },
        tmp_path,
    )
    assert found["component_listener.max_send_buffer"] == "must be >= 4096, got 10"
    assert found["component[0].max_send_buffer"] == "expected an integer, got string 'x'"


def test_component_listener_default_port(tmp_path: Path) -> None:
    cfg = parse(
        {"server": {"domains": ["a.example"]}, "component_listener": {"listen": "127.0.0.1"}},
        tmp_path,
    )
    assert cfg.component_listener is not None
    assert cfg.component_listener.listen == Endpoint("127.0.0.1", 5347)


def test_single_table_instead_of_array(tmp_path: Path) -> None:
    msg = problem_at(tmp_path, MINIMAL + '[peer]\nname = "x"\n', "peer")
    assert "[[peer]]" in msg


# --------------------------------------------------------------------------- unknown keys


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    msg = problem_at(tmp_path, PEER + 'remot = "127.0.0.3"\n', "peer[0].remot")
    assert msg.startswith("unknown key; expected one of: name, domains, remote,")
    assert "did you mean 'remote'?" in msg


def test_unknown_keys_everywhere(tmp_path: Path) -> None:
    text = """
        servr = {}
        [server]
        domains = ["a.example"]
        log_lvl = "info"
        [[peer]]
        name = "g"
        domains = ["g.example"]
        remote = "127.0.0.3"
        listen = "127.0.0.2"
        [peer.identity]
        mode = "address"
        adresses = ["127.0.0.3"]
        zzz = 1
    """
    found = {p.path: p.message for p in problems(tmp_path, text)}
    assert "did you mean 'server'?" in found["servr"]
    assert "did you mean 'log_level'?" in found["server.log_lvl"]
    assert "did you mean 'addresses'?" in found["peer[0].identity.adresses"]
    assert "did you mean" not in found["peer[0].identity.zzz"]
    assert "expected one of: mode, addresses, port" in found["peer[0].identity.zzz"]


def test_unknown_key_needing_quotes(tmp_path: Path) -> None:
    found = {p.path for p in problems(tmp_path, MINIMAL + '"a b" = 1\n')}
    assert 'server."a b"' in found


# --------------------------------------------------------------------------- cross-checks


def test_domain_claimed_twice(tmp_path: Path) -> None:
    found = parse_problems(
        {
            "server": {"domains": ["air.example", "bot.air.example"]},
            "component_listener": {"listen": "127.0.0.2:5347"},
            "component": [{"domain": "bot.air.example", "secret": "s"}],
            "peer": [
                peer(domains=["ground.example", "*.ground.example"]),
                peer(
                    name="other",
                    domains=["*.ground.example", "air.example"],
                    remote="127.0.0.4",
                    listen="127.0.0.2:5270",
                ),
            ],
        },
        tmp_path,
    )
    assert "server (server.domains[1])" in found["component[0].domain"]
    assert "peer 'ground' (peer[0].domains[1])" in found["peer[1].domains[0]"]
    assert "server (server.domains[0])" in found["peer[1].domains[1]"]


def test_same_domain_twice_in_one_peer(tmp_path: Path) -> None:
    found = parse_problems(config_with(peer(domains=["g.example", "G.example"])), tmp_path)
    assert "peer[0].domains[0]" in found["peer[0].domains[1]"]


def test_peer_wildcard_must_not_cover_our_domains(tmp_path: Path) -> None:
    found = parse_problems(config_with(peer(domains=["*.example"])), tmp_path)
    assert "covers our own domain 'air.example'" in found["peer[0].domains[0]"]


def test_peer_names_unique(tmp_path: Path) -> None:
    found = parse_problems(
        config_with(peer(), peer(domains=["x.example"], listen="127.0.0.2:5270")), tmp_path
    )
    assert "already used by peer[0]" in found["peer[1].name"]


def test_shared_listener_with_distinct_addresses_is_fine(tmp_path: Path) -> None:
    cfg = parse(
        config_with(
            peer(name="a", domains=["a.example"], remote="10.0.0.1"),
            peer(name="b", domains=["b.example"], remote="10.0.0.2"),
            peer(
                name="c",
                domains=["c.example"],
                remote="10.0.0.5",
                identity={"mode": "address", "addresses": ["10.0.0.5"], "port": 6000},
            ),
            peer(
                name="d",
                domains=["d.example"],
                remote="10.0.0.5",
                identity={"mode": "address", "addresses": ["10.0.0.5"], "port": 6001},
            ),
            peer(
                name="e",
                domains=["e.example"],
                remote="[fd00::1]",
                listen="127.0.0.2",
                source=None,
                identity={"mode": "address", "addresses": ["fd00::/64", "10.0.1.0/24"]},
            ),
        ),
        tmp_path,
    )
    assert len({p.listen for p in cfg.peers}) == 1


def test_shared_listener_overlapping_addresses(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse(
            config_with(
                peer(name="a", domains=["a.example"], remote="10.0.0.1"),
                peer(
                    name="b",
                    domains=["b.example"],
                    remote="10.0.0.2",
                    identity={"mode": "address", "addresses": ["10.0.0.2", "10.0.0.0/24"]},
                ),
                peer(
                    name="c",
                    domains=["c.example"],
                    remote="10.0.0.1",
                    identity={"mode": "address", "addresses": ["10.0.0.1"], "port": 6000},
                ),
            ),
            tmp_path,
        )
    found: dict[str, list[str]] = {}
    for p in info.value.problems:
        found.setdefault(p.path, []).append(p.message)
    assert set(found) == {"peer[1].identity.addresses[1]", "peer[2].identity.addresses[0]"}
    (msg,) = found["peer[1].identity.addresses[1]"]
    # a's address defaults to its remote, so the problem points there
    assert "10.0.0.0/24 overlaps 10.0.0.1/32 (peer[0].remote)" in msg
    assert "127.0.0.2:5269" in msg
    # c requires a source port, a accepts any port: still indistinguishable; c overlaps b too
    first, second = found["peer[2].identity.addresses[0]"]
    assert "(peer[0].remote)" in first
    assert "(peer[1].identity.addresses[1])" in second


def test_shared_listener_implicit_must_be_alone(tmp_path: Path) -> None:
    found = parse_problems(
        config_with(
            peer(name="a", domains=["a.example"], identity="implicit"),
            peer(name="b", domains=["b.example"], remote="10.0.0.2"),
        ),
        tmp_path,
    )
    assert "shared with 'b' (peer[1])" in found["peer[0].identity"]
    # implicit on its own listener is allowed (with a warning)
    cfg = parse(
        config_with(
            peer(name="a", domains=["a.example"], identity="implicit"),
            peer(name="b", domains=["b.example"], remote="10.0.0.2", listen="127.0.0.2:5270"),
        ),
        tmp_path,
    )
    assert cfg.peers[0].identity.mode == "implicit"


def test_two_implicit_on_one_listener(tmp_path: Path) -> None:
    found = parse_problems(
        config_with(
            peer(name="a", domains=["a.example"], identity="implicit"),
            peer(name="b", domains=["b.example"], identity="implicit"),
        ),
        tmp_path,
    )
    assert "peer[0].identity" in found and "peer[1].identity" in found


def test_component_listener_must_not_be_a_peer_listener(tmp_path: Path) -> None:
    found = parse_problems(
        config_with(peer(), component_listener={"listen": "127.0.0.2:5269"}), tmp_path
    )
    assert "peer[0]" in found["component_listener.listen"]
    found = parse_problems(
        config_with(peer(), component_listener={"listen": "0.0.0.0:5269"}), tmp_path
    )
    assert "component_listener.listen" in found


def test_wildcard_listener_overlap(tmp_path: Path) -> None:
    found = parse_problems(
        config_with(
            peer(name="a", domains=["a.example"], listen="127.0.0.2:5269"),
            peer(name="b", domains=["b.example"], remote="10.0.0.2", listen="0.0.0.0:5269"),
        ),
        tmp_path,
    )
    assert "overlaps 127.0.0.2:5269" in found["peer[1].listen"]


def test_many_problems_reported_at_once(tmp_path: Path) -> None:
    text = """
        [server]
        domains = ["air.example", "*.bad"]
        log_level = "chatty"
        max_stanza_size = 10

        [[component]]
        domain = "air.example"
        secret = ""

        [[peer]]
        name = "ground"
        domains = ["ground.example"]
        remote = "127.0.0.3:99999"
        listen = "127.0.0.2:5269"
        keepalive = "x"
        reconnect_min = 10
        reconnect_max = 5
        direction = "sideways"
        conect = "always"
        [peer.identity]
        mode = "address"
        addresses = ["127.0.0.3", "foo"]

        [[peer]]
        name = "ground"
        domains = ["ground.example"]
        listen = "127.0.0.2:5269"
        direction = "inbound"
        connect = "on-demand"
        identity = "implicit"
    """
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    found = {p.path for p in info.value.problems}
    expected = {
        "server.domains[1]",
        "server.log_level",
        "server.max_stanza_size",
        "component[0].secret",
        "component[0].domain",
        "component_listener",
        "peer[0].remote",
        "peer[0].keepalive",
        "peer[0].reconnect_min",
        "peer[0].direction",
        "peer[0].conect",
        "peer[0].identity.addresses[1]",
        "peer[1].name",
        "peer[1].domains[0]",
        "peer[1].connect",
        "peer[1].identity",
    }
    assert expected <= found, expected - found
    text_of_error = str(info.value)
    assert f"{len(info.value.problems)} problem(s)" in text_of_error
    assert "peer[0].identity.addresses[1]: expected an IP address" in text_of_error


# --------------------------------------------------------------------------- host


def host_config(host: dict | None = None, **extra: object) -> dict:
    """Two server domains, a component and a peer, and a [host] (by default: listen only)."""
    data: dict = {
        "server": {"domains": ["air.example", "chat.example"]},
        "host": {"listen": "127.0.0.2:5222"} if host is None else host,
        "component_listener": {"listen": "127.0.0.2:5347"},
        "component": [{"domain": "bot.air.example", "secret": "s"}],
        "peer": [peer(domains=["ground.example", "*.ground.example"])],
    }
    data.update(extra)
    return data


def test_host_defaults(tmp_path: Path) -> None:
    cfg = parse(host_config({"listen": "127.0.0.2"}), tmp_path)
    h = cfg.host
    assert h is not None
    # domains omitted: every server domain, in order; the default port is 5222
    assert h.domains == ("air.example", "chat.example")
    assert h.listen == Endpoint("127.0.0.2", 5222)
    for f in dataclasses.fields(HostConfig):
        if f.default is not dataclasses.MISSING:
            assert getattr(h, f.name) == f.default, f.name
    assert (h.direct_tls_listen, h.certificate, h.key) == (None, None, None)
    assert h.tls_required is True


def test_host_full(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "air.pem").write_text("cert")
    (certs / "air.key").write_text("key")
    cfg = load(
        tmp_path,
        """
        [server]
        domains = ["air.example", "chat.example"]

        [host]
        domains = ["Chat.Example"]
        listen = "[::1]:5000"
        direct_tls_listen = "[::1]"
        tls_required = false
        certificate = "certs/air.pem"
        key = "certs/air.key"
        offline_limit = 0
        auth_timeout = 5
        max_unauthenticated = 1
        max_sessions_per_user = 1
        max_send_buffer = 1048576
        offline_bytes = 0
        roster_max_items = 50
        roster_max_groups = 0
        roster_max_name_chars = 20
        roster_max_group_chars = 10
        """,
    )
    assert cfg.host == HostConfig(
        domains=("chat.example",),
        listen=Endpoint("::1", 5000),
        direct_tls_listen=Endpoint("::1", 5223),
        tls_required=False,
        certificate=certs / "air.pem",
        key=certs / "air.key",
        offline_limit=0,
        auth_timeout=5.0,
        max_unauthenticated=1,
        max_sessions_per_user=1,
        max_send_buffer=1048576,
        offline_bytes=0,
        roster_max_items=50,
        roster_max_groups=0,
        roster_max_name_chars=20,
        roster_max_group_chars=10,
    )
    assert isinstance(cfg.host.auth_timeout, float)
    assert cfg.host.certificate is not None and cfg.host.certificate.is_absolute()


def test_host_certificate_resolves_against_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    (sub / "c.pem").write_text("cert")
    (sub / "c.key").write_text("key")
    write(
        sub,
        '[server]\ndomains = ["a.example"]\n'
        '[host]\nlisten = "127.0.0.1"\ncertificate = "c.pem"\nkey = "c.key"\n',
        "z.toml",
    )
    monkeypatch.chdir(tmp_path)
    cfg = load_config("etc/z.toml")
    assert cfg.host is not None
    assert (cfg.host.certificate, cfg.host.key) == (sub / "c.pem", sub / "c.key")


@pytest.mark.parametrize(
    ("host", "path", "fragment"),
    [
        ({}, "host.listen", "required key is missing"),
        ({"listen": 5222}, "host.listen", "got integer 5222"),
        ({"listen": "127.0.0.2:0"}, "host.listen", "port number"),
        ({"listen": "::1:5222"}, "host.listen", "brackets"),
        ({"direct_tls_listen": "127.0.0.2:70000"}, "host.direct_tls_listen", "port number"),
        ({"direct_tls_listen": ["127.0.0.2"]}, "host.direct_tls_listen", "got an array"),
        ({"domains": []}, "host.domains", "at least one"),
        ({"domains": "air.example"}, "host.domains", "expected an array of domain names"),
        ({"domains": ["air.example", 7]}, "host.domains[1]", "got integer 7"),
        ({"domains": ["*.air.example"]}, "host.domains[0]", "only allowed in peer domains"),
        ({"domains": ["bad_label.example"]}, "host.domains[0]", "invalid domain name"),
        ({"tls_required": "yes"}, "host.tls_required", "expected true or false, got string"),
        ({"tls_required": 1}, "host.tls_required", "got integer 1"),
        ({"certificate": ""}, "host.certificate", "must not be empty"),
        ({"certificate": 5, "key": "k"}, "host.certificate", "expected a string"),
        ({"offline_limit": -1}, "host.offline_limit", ">= 0"),
        ({"offline_limit": 1.5}, "host.offline_limit", "expected an integer"),
        ({"offline_limit": True}, "host.offline_limit", "boolean"),
        ({"auth_timeout": 0}, "host.auth_timeout", "> 0"),
        ({"auth_timeout": -1}, "host.auth_timeout", "> 0"),
        ({"auth_timeout": "60"}, "host.auth_timeout", "expected a number of seconds"),
        ({"auth_timeout": float("inf")}, "host.auth_timeout", "finite"),
        ({"max_unauthenticated": 0}, "host.max_unauthenticated", ">= 1"),
        ({"max_sessions_per_user": 0}, "host.max_sessions_per_user", ">= 1"),
        ({"max_sessions_per_user": "10"}, "host.max_sessions_per_user", "expected an integer"),
        ({"max_send_buffer": 4095}, "host.max_send_buffer", ">= 4096"),
        ({"max_send_buffer": "4 MiB"}, "host.max_send_buffer", "expected an integer"),
        ({"max_send_buffer": 524287}, "host.max_send_buffer", "twice server.max_stanza_size"),
        ({"offline_bytes": -1}, "host.offline_bytes", ">= 0"),
        ({"roster_max_items": 0}, "host.roster_max_items", ">= 1"),
        ({"roster_max_groups": -1}, "host.roster_max_groups", ">= 0"),
        ({"roster_max_name_chars": 0}, "host.roster_max_name_chars", ">= 1"),
        ({"roster_max_group_chars": 1.5}, "host.roster_max_group_chars", "expected an integer"),
        ({"tls_requird": True}, "host.tls_requird", "did you mean 'tls_required'?"),
        ({"port": 5222}, "host.port", "unknown key; expected one of: domains, listen,"),
    ],
)
def test_host_problems(tmp_path: Path, host: dict, path: str, fragment: str) -> None:
    table = {"listen": "127.0.0.2:5222", **host}
    if not host:
        del table["listen"]
    msg = problem_at_data(tmp_path, host_config(table), path)
    assert fragment in msg, msg


def test_host_must_be_a_single_table(tmp_path: Path) -> None:
    msg = problem_at(tmp_path, MINIMAL + '[[host]]\nlisten = "127.0.0.2"\n', "host")
    assert msg == "expected a table, got an array"
    msg = problem_at(tmp_path, 'host = "127.0.0.2"\n' + MINIMAL, "host")
    assert msg == "expected a table, got string '127.0.0.2'"


def test_unknown_top_level_key_suggests_host(tmp_path: Path) -> None:
    msg = problem_at(tmp_path, "hots = {}\n" + MINIMAL, "hots")
    assert "did you mean 'host'?" in msg


def test_host_certificate_without_key(tmp_path: Path) -> None:
    (tmp_path / "air.pem").write_text("cert")
    msg = problem_at_data(
        tmp_path,
        host_config({"listen": "127.0.0.2", "certificate": str(tmp_path / "air.pem")}),
        "host.key",
    )
    assert msg.startswith("required key is missing (certificate is set;")
    assert "self-signed" in msg


def test_host_key_without_certificate(tmp_path: Path) -> None:
    (tmp_path / "air.key").write_text("key")
    msg = problem_at(
        tmp_path,
        MINIMAL + '[host]\nlisten = "127.0.0.2"\nkey = "air.key"\n',
        "host.certificate",
    )
    assert msg.startswith("required key is missing (key is set;")


def test_host_missing_certificate_and_key_files(tmp_path: Path) -> None:
    text = (
        MINIMAL + '[host]\nlisten = "127.0.0.2"\ncertificate = "certs/air.pem"\nkey = "nope.key"\n'
    )
    found = {p.path: p.message for p in problems(tmp_path, text)}
    assert set(found) == {"host.certificate", "host.key"}
    assert found["host.certificate"] == f"file not found: {tmp_path / 'certs' / 'air.pem'}"
    assert found["host.key"] == f"file not found: {tmp_path / 'nope.key'}"


def test_host_certificate_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "air.key").write_text("key")
    msg = problem_at(
        tmp_path,
        MINIMAL + '[host]\nlisten = "127.0.0.2"\ncertificate = "certs"\nkey = "air.key"\n',
        "host.certificate",
    )
    assert msg == f"not a regular file: {tmp_path / 'certs'}"


def test_host_certificate_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "air.key").write_text("key")
    msg = problem_at(
        tmp_path,
        MINIMAL + '[host]\nlisten = "127.0.0.2"\ncertificate = "air.key/x.pem"\nkey = "air.key"\n',
        "host.certificate",
    )
    assert msg.startswith("file not found:")


def test_host_domain_not_a_server_domain(tmp_path: Path) -> None:
    data = host_config(
        {"listen": "127.0.0.2", "domains": ["air.example", "other.example"]}, peer=[]
    )
    msg = problem_at_data(tmp_path, data, "host.domains[1]")
    assert msg == (
        "'other.example' is not one of server.domains (air.example, chat.example); "
        "a hosted domain must be one of this server's own domains"
    )


@pytest.mark.parametrize(
    ("domain", "owner"),
    [
        ("bot.air.example", "component 'bot.air.example' (component[0].domain)"),
        ("ground.example", "peer 'ground' (peer[0].domains[0])"),
        ("muc.ground.example", "peer 'ground' (peer[0].domains[1])"),
    ],
)
def test_host_domain_of_a_component_or_peer(tmp_path: Path, domain: str, owner: str) -> None:
    data = host_config({"listen": "127.0.0.2", "domains": [domain]})
    with pytest.raises(ConfigError) as info:
        parse(data, tmp_path)
    # Only the host entry is wrong; the rest of the file is fine.
    ((path, msg),) = [(p.path, p.message) for p in info.value.problems]
    assert path == "host.domains[0]"
    expected = "is not one of server.domains (air.example, chat.example); it belongs to "
    assert f"{expected}{owner};" in msg


def test_host_domain_listed_twice(tmp_path: Path) -> None:
    data = host_config({"listen": "127.0.0.2", "domains": ["air.example", "AIR.example"]})
    msg = problem_at_data(tmp_path, data, "host.domains[1]")
    assert msg == "domain 'air.example' is already listed at host.domains[0]"


def test_claims_still_hold_with_a_host(tmp_path: Path) -> None:
    # The hosted domain is a server domain: a component or a peer claiming it is still a problem
    # (at the component/peer, not at the host), and a peer wildcard may not cover it.
    data = host_config(
        {"listen": "127.0.0.2", "domains": ["air.example"]},
        component=[{"domain": "air.example", "secret": "s"}],
        peer=[
            peer(domains=["chat.example"]),
            peer(name="x", domains=["*.example"], remote="10.0.0.9", listen="127.0.0.2:5270"),
        ],
    )
    found = parse_problems(data, tmp_path)
    assert set(found) == {"component[0].domain", "peer[0].domains[0]", "peer[1].domains[0]"}
    assert "already claimed by the server (server.domains[0])" in found["component[0].domain"]
    assert "already claimed by the server (server.domains[1])" in found["peer[0].domains[0]"]
    assert "covers our own domain 'air.example'" in found["peer[1].domains[0]"]


def test_host_domains_skip_check_when_server_domains_bad(tmp_path: Path) -> None:
    data = host_config({"listen": "127.0.0.2", "domains": ["air.example"]})
    data["server"] = {"domains": "air.example"}
    found = parse_problems(data, tmp_path)
    assert "server.domains" in found
    assert not any(path.startswith("host") for path in found)


@pytest.mark.parametrize(
    ("host", "path", "fragment"),
    [
        # the peer listens on 127.0.0.2:5269, the component listener is 127.0.0.2:5347
        (
            {"listen": "127.0.0.2:5269"},
            "host.listen",
            "127.0.0.2:5269 is also peer[0].listen; the client listener needs its own",
        ),
        (
            {"listen": "0.0.0.0:5269"},
            "host.listen",
            "0.0.0.0:5269 overlaps 127.0.0.2:5269 (peer[0].listen): a wildcard address",
        ),
        (
            {"listen": "127.0.0.2:5347"},
            "host.listen",
            "127.0.0.2:5347 is also component_listener.listen;",
        ),
        (
            {"listen": "127.0.0.2", "direct_tls_listen": "0.0.0.0:5347"},
            "host.direct_tls_listen",
            "0.0.0.0:5347 overlaps 127.0.0.2:5347 (component_listener.listen)",
        ),
        (
            {"listen": "127.0.0.2:5222", "direct_tls_listen": "127.0.0.2:5222"},
            "host.direct_tls_listen",
            "127.0.0.2:5222 is also host.listen;",
        ),
        (
            {"listen": "0.0.0.0:5222", "direct_tls_listen": "127.0.0.2:5222"},
            "host.direct_tls_listen",
            "127.0.0.2:5222 overlaps 0.0.0.0:5222 (host.listen)",
        ),
        (
            {"listen": "[::]:5222", "direct_tls_listen": "[::1]:5222"},
            "host.direct_tls_listen",
            "[::1]:5222 overlaps [::]:5222 (host.listen)",
        ),
    ],
)
def test_host_listener_collisions(tmp_path: Path, host: dict, path: str, fragment: str) -> None:
    msg = problem_at_data(tmp_path, host_config(host), path)
    assert fragment in msg, msg


def test_host_listener_separate_sockets_are_fine(tmp_path: Path) -> None:
    # Other port, other address, other family, or same port on another address: all fine.
    for listen, direct in [
        ("127.0.0.2:5222", "127.0.0.2:5223"),
        ("127.0.0.9:5269", "127.0.0.9:5347"),
        ("[::]:5269", "[::]:5347"),
        ("0.0.0.0:5222", "[::]:5222"),
    ]:
        cfg = parse(host_config({"listen": listen, "direct_tls_listen": direct}), tmp_path)
        assert cfg.host is not None


def test_host_listener_shared_by_peers_is_one_problem(tmp_path: Path) -> None:
    data = host_config(
        {"listen": "127.0.0.2:5269"},
        peer=[
            peer(name="a", domains=["a.example"], remote="10.0.0.1"),
            peer(name="b", domains=["b.example"], remote="10.0.0.2"),
        ],
    )
    msg = problem_at_data(tmp_path, data, "host.listen")
    assert msg.startswith("127.0.0.2:5269 is also peer[0].listen, peer[1].listen;")


def test_host_problems_reported_with_the_rest(tmp_path: Path) -> None:
    text = """
        [server]
        domains = ["air.example"]
        log_level = "chatty"

        [host]
        domains = ["ground.example"]
        listen = "127.0.0.2:5269"
        direct_tls_listen = "127.0.0.2:5269"
        tls_required = "yes"
        certificate = "missing.pem"
        auth_timeout = 0
        max_sesions_per_user = 3

        [[peer]]
        name = "ground"
        domains = ["ground.example"]
        remote = "127.0.0.3"
        listen = "127.0.0.2"
    """
    found = {p.path for p in problems(tmp_path, text)}
    assert found == {
        "server.log_level",
        "host.domains[0]",
        "host.listen",
        "host.direct_tls_listen",
        "host.tls_required",
        "host.certificate",
        "host.key",
        "host.auth_timeout",
        "host.max_sesions_per_user",
    }


# --------------------------------------------------------------------------- upstream

GATEWAY = """
# air fronts Prosody, which hosts air.example and listens for components on 127.0.0.1:5347.
[server]
name = "air"
domains = ["air.example"]

[[peer]]
name = "ground"
domains = ["ground.example", "*.ground.example"]
remote = "127.0.0.3"
listen = "127.0.0.2"

[upstream]
address = "127.0.0.1:5347"
domains = ["Air.Example"]
reconnect_min = 2
reconnect_max = 30.5
connect_timeout = 5
stanza_timeout = 600
queue_limit = 500

[[upstream.component]]
domain = "ground.example"
secret = "gw-secret"

[[upstream.component]]
domain = "Conference.Ground.Example"
secret = "conf-secret"
"""


def upstream_config(upstream: dict | None = None, **extra: object) -> dict:
    """Gateway mode: air.example fronted, peer ground (with a wildcard), two components."""
    data: dict = {
        "server": {"domains": ["air.example"]},
        "peer": [peer(domains=["ground.example", "*.ground.example"])],
        "upstream": {
            "address": "127.0.0.1",
            "component": [
                {"domain": "ground.example", "secret": "gw-secret"},
                {"domain": "conference.ground.example", "secret": "conf-secret"},
            ],
        },
    }
    if upstream is not None:
        data["upstream"].update(upstream)
        data["upstream"] = {k: v for k, v in data["upstream"].items() if v is not None}
    data.update(extra)
    return data


def test_gateway_config(tmp_path: Path) -> None:
    cfg = load(tmp_path, GATEWAY)
    assert cfg.upstream == UpstreamConfig(
        address=Endpoint("127.0.0.1", 5347),
        domains=("air.example",),
        components=(
            UpstreamComponent("ground.example", "gw-secret"),
            UpstreamComponent("conference.ground.example", "conf-secret"),
        ),
        reconnect_min=2.0,
        reconnect_max=30.5,
        connect_timeout=5.0,
        stanza_timeout=600.0,
        queue_limit=500,
    )
    assert isinstance(cfg.upstream.reconnect_min, float)
    assert cfg.host is None and cfg.components == ()
    assert warnings_for(cfg) == []


def test_upstream_is_frozen_with_slots(tmp_path: Path) -> None:
    up = load(tmp_path, GATEWAY).upstream
    assert up is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        up.queue_limit = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        up.components[0].secret = "x"  # type: ignore[misc]
    assert not hasattr(up, "__dict__") and not hasattr(up.components[0], "__dict__")


def test_upstream_defaults(tmp_path: Path) -> None:
    cfg = parse(upstream_config(server={"domains": ["air.example", "chat.example"]}), tmp_path)
    up = cfg.upstream
    assert up is not None
    # the default port is the XEP-0114 component port; without [host], every server domain
    assert (
        up.address == Endpoint("127.0.0.1", DEFAULT_COMPONENT_PORT) == Endpoint("127.0.0.1", 5347)
    )
    assert up.domains == ("air.example", "chat.example")
    for f in dataclasses.fields(UpstreamConfig):
        if f.default is not dataclasses.MISSING:
            assert getattr(up, f.name) == f.default, f.name
    assert (up.reconnect_min, up.reconnect_max, up.connect_timeout) == (1.0, 60.0, 10.0)
    assert (up.stanza_timeout, up.queue_limit) == (300.0, 10000)


def test_upstream_domains_default_leaves_out_hosted(tmp_path: Path) -> None:
    # zerolink hosts chat.example's users itself and fronts the upstream's air.example.
    data = upstream_config(
        server={"domains": ["air.example", "chat.example", "muc.air.example"]},
        host={"listen": "127.0.0.2:5222", "domains": ["chat.example"]},
    )
    cfg = parse(data, tmp_path)
    assert cfg.host is not None and cfg.host.domains == ("chat.example",)
    assert cfg.upstream is not None
    assert cfg.upstream.domains == ("air.example", "muc.air.example")


def test_upstream_domains_explicit_subset(tmp_path: Path) -> None:
    data = upstream_config(
        {"domains": ["muc.air.example"]},
        server={"domains": ["air.example", "muc.air.example"]},
    )
    cfg = parse(data, tmp_path)
    assert cfg.upstream is not None and cfg.upstream.domains == ("muc.air.example",)


def test_upstream_beside_local_components_and_host(tmp_path: Path) -> None:
    data = upstream_config(
        server={"domains": ["air.example", "chat.example"]},
        host={"listen": "127.0.0.2:5222", "domains": ["chat.example"]},
        component_listener={"listen": "127.0.0.2:5347"},
        component=[{"domain": "bot.chat.example", "secret": "bot-secret"}],
    )
    cfg = parse(data, tmp_path)
    assert cfg.components == (ComponentConfig("bot.chat.example", "bot-secret"),)
    assert cfg.upstream is not None and cfg.upstream.domains == ("air.example",)


@pytest.mark.parametrize(
    ("upstream", "path", "fragment"),
    [
        ({"address": None}, "upstream.address", "required key is missing"),
        ({"address": 5347}, "upstream.address", "got integer 5347"),
        ({"address": "127.0.0.1:0"}, "upstream.address", "port number"),
        ({"address": "::1:5347"}, "upstream.address", "brackets"),
        ({"domains": []}, "upstream.domains", "at least one domain is required"),
        ({"domains": "air.example"}, "upstream.domains", "expected an array of domain names"),
        ({"domains": [7]}, "upstream.domains[0]", "got integer 7"),
        ({"domains": ["*.air.example"]}, "upstream.domains[0]", "only allowed in peer domains"),
        (
            {"domains": ["air.example", "AIR.example"]},
            "upstream.domains[1]",
            "domain 'air.example' is already listed at upstream.domains[0]",
        ),
        (
            {"domains": ["sky.example"]},
            "upstream.domains[0]",
            "'sky.example' is not one of server.domains (air.example); "
            "a fronted domain must be one of this server's own domains",
        ),
        (
            {"domains": ["muc.ground.example"]},
            "upstream.domains[0]",
            "it belongs to peer 'ground' (peer[0].domains[1]); a fronted domain",
        ),
        ({"reconnect_min": 0}, "upstream.reconnect_min", "> 0"),
        ({"reconnect_max": -1}, "upstream.reconnect_max", "> 0"),
        (
            {"reconnect_min": 10, "reconnect_max": 5},
            "upstream.reconnect_min",
            "must be <= reconnect_max (5), got 10",
        ),
        ({"reconnect_min": 61}, "upstream.reconnect_min", "must be <= reconnect_max (60)"),
        ({"connect_timeout": 0}, "upstream.connect_timeout", "> 0"),
        ({"connect_timeout": "10"}, "upstream.connect_timeout", "expected a number of seconds"),
        ({"stanza_timeout": 0}, "upstream.stanza_timeout", "> 0"),
        ({"stanza_timeout": float("inf")}, "upstream.stanza_timeout", "finite"),
        ({"queue_limit": 0}, "upstream.queue_limit", "must be >= 1, got 0"),
        ({"queue_limit": 1.5}, "upstream.queue_limit", "expected an integer"),
        ({"queue_limit": True}, "upstream.queue_limit", "boolean"),
        ({"adress": "x"}, "upstream.adress", "did you mean 'address'?"),
        ({"components": []}, "upstream.components", "did you mean 'component'?"),
        (
            {"secret": "s"},
            "upstream.secret",
            "unknown key; expected one of: address, domains, reconnect_min, reconnect_max, "
            "connect_timeout, stanza_timeout, queue_limit, queue_bytes, component",
        ),
        ({"component": None}, "upstream.component", "at least one [[upstream.component]]"),
        ({"component": []}, "upstream.component", "at least one [[upstream.component]]"),
        (
            {"component": {"domain": "ground.example", "secret": "s"}},
            "upstream.component",
            "expected an array of tables ([[upstream.component]]), got a single table",
        ),
        ({"component": ["x"]}, "upstream.component[0]", "expected a table, got string 'x'"),
        ({"component": [{"secret": "s"}]}, "upstream.component[0].domain", "required"),
        (
            {"component": [{"domain": "ground.example"}]},
            "upstream.component[0].secret",
            "required key is missing",
        ),
        (
            {"component": [{"domain": "ground.example", "secret": ""}]},
            "upstream.component[0].secret",
            "must not be empty",
        ),
        (
            {"component": [{"domain": "ground.example", "secret": 5}]},
            "upstream.component[0].secret",
            "expected a string, got integer",  # a secret: its value is never shown
        ),
        (
            {"component": [{"domain": "*.ground.example", "secret": "s"}]},
            "upstream.component[0].domain",
            "only allowed in peer domains",
        ),
        (
            {"component": [{"domain": "bad_label.ground.example", "secret": "s"}]},
            "upstream.component[0].domain",
            "invalid domain name",
        ),
        (
            {"component": [{"domain": "ground.example", "secret": "s", "secrt": "t"}]},
            "upstream.component[0].secrt",
            "unknown key; expected one of: domain, secret; did you mean 'secret'?",
        ),
    ],
)
def test_upstream_problems(tmp_path: Path, upstream: dict, path: str, fragment: str) -> None:
    data = upstream_config(upstream)
    for key, value in upstream.items():
        if value is None:
            data["upstream"].pop(key, None)
    msg = problem_at_data(tmp_path, data, path)
    assert fragment in msg, msg


def test_upstream_must_be_a_single_table(tmp_path: Path) -> None:
    msg = problem_at(tmp_path, MINIMAL + '[[upstream]]\naddress = "127.0.0.1"\n', "upstream")
    assert msg == "expected a table, got an array"
    msg = problem_at(tmp_path, 'upstream = "127.0.0.1"\n' + MINIMAL, "upstream")
    assert msg == "expected a table, got string '127.0.0.1'"


def test_unknown_top_level_key_suggests_upstream(tmp_path: Path) -> None:
    msg = problem_at(tmp_path, "upstraem = {}\n" + MINIMAL, "upstraem")
    assert "did you mean 'upstream'?" in msg


def test_upstream_nothing_left_to_front(tmp_path: Path) -> None:
    # [host] without domains hosts every server domain: the upstream would front none.
    msg = problem_at_data(
        tmp_path, upstream_config(host={"listen": "127.0.0.2:5222"}), "upstream.domains"
    )
    assert msg == (
        "nothing left to front: every server domain (air.example) is hosted by [host] "
        "(host.domains is not set, so it hosts every server domain); add the upstream server's "
        "domains to server.domains and leave them out of host.domains"
    )
    # The same when host.domains lists them all.
    data = upstream_config(
        server={"domains": ["air.example", "chat.example"]},
        host={"listen": "127.0.0.2:5222", "domains": ["chat.example", "air.example"]},
    )
    msg = problem_at_data(tmp_path, data, "upstream.domains")
    assert msg.startswith(
        "nothing left to front: every server domain (air.example, chat.example) is hosted by "
        "[host] (host.domains);"
    )


def test_upstream_domain_hosted_by_host(tmp_path: Path) -> None:
    data = upstream_config(
        {"domains": ["air.example", "chat.example"]},
        server={"domains": ["air.example", "chat.example"]},
        host={"listen": "127.0.0.2:5222", "domains": ["chat.example"]},
    )
    msg = problem_at_data(tmp_path, data, "upstream.domains[1]")
    assert msg == (
        "'chat.example' is hosted by [host] (host.domains[0]); a domain is either hosted by "
        "zerolink or fronted for the upstream, not both"
    )
    # host.domains omitted: every server domain is hosted.
    data = upstream_config({"domains": ["air.example"]}, host={"listen": "127.0.0.2:5222"})
    msg = problem_at_data(tmp_path, data, "upstream.domains[0]")
    assert "'air.example' is hosted by [host] (host.domains is not set," in msg


def test_upstream_domains_skip_checks_when_server_or_host_bad(tmp_path: Path) -> None:
    data = upstream_config({"domains": ["air.example"]}, server={"domains": "air.example"})
    found = parse_problems(data, tmp_path)
    assert "server.domains" in found
    assert not any(path.startswith("upstream") for path in found), found
    data = upstream_config(host={"listen": "127.0.0.2:5222", "domains": []})
    found = parse_problems(data, tmp_path)
    assert set(found) == {"host.domains"}


@pytest.mark.parametrize(
    ("domain", "fragment"),
    [
        (
            "air.example",
            "'air.example' is one of our own domains (server.domains[0]); an upstream component "
            "stands for a remote domain, reachable over a [[peer]] link",
        ),
        (
            "bot.air.example",
            "'bot.air.example' is the domain of a local component (component[0].domain); "
            "an upstream component stands for a remote domain",
        ),
        (
            "sky.example",
            "'sky.example' is not served by any peer (peer domains: ground.example, "
            "*.ground.example); an upstream component stands for a remote domain",
        ),
        # *.ground.example covers subdomains only, ground.example is listed itself
        ("ground.example.net", "is not served by any peer"),
    ],
)
def test_upstream_component_domain_problems(tmp_path: Path, domain: str, fragment: str) -> None:
    data = upstream_config(
        {
            "component": [
                {"domain": "ground.example", "secret": "s"},
                {"domain": domain, "secret": "s"},
            ]
        },
        component_listener={"listen": "127.0.0.2:5347"},
        component=[{"domain": "bot.air.example", "secret": "bot-secret"}],
    )
    with pytest.raises(ConfigError) as info:
        parse(data, tmp_path)
    ((path, msg),) = [(p.path, p.message) for p in info.value.problems]
    assert path == "upstream.component[1].domain"
    assert fragment in msg, msg


def test_upstream_component_served_by_wildcard_or_exact(tmp_path: Path) -> None:
    data = upstream_config(
        {
            "component": [
                {"domain": "a.b.ground.example", "secret": "s"},
                {"domain": "sky.example", "secret": "s"},
            ]
        },
        peer=[
            peer(domains=["ground.example", "*.ground.example"]),
            peer(name="sky", domains=["sky.example"], remote="10.0.0.9", listen="127.0.0.2:5270"),
        ],
    )
    cfg = parse(data, tmp_path)
    assert cfg.upstream is not None
    assert [c.domain for c in cfg.upstream.components] == ["a.b.ground.example", "sky.example"]


def test_upstream_component_without_peers(tmp_path: Path) -> None:
    msg = problem_at_data(tmp_path, upstream_config(peer=[]), "upstream.component[0].domain")
    assert msg.startswith("'ground.example' is not served by any peer (there are no peers);")


def test_upstream_component_listed_twice(tmp_path: Path) -> None:
    data = upstream_config(
        {
            "component": [
                {"domain": "ground.example", "secret": "a"},
                {"domain": "Ground.Example", "secret": "b"},
            ]
        }
    )
    msg = problem_at_data(tmp_path, data, "upstream.component[1].domain")
    assert msg == "domain 'ground.example' is already listed at upstream.component[0].domain"


def test_upstream_component_not_served_skipped_when_peer_domains_bad(tmp_path: Path) -> None:
    # The peer's domains could not be read: do not pile "not served by any peer" on top.
    for bad in (["ground example"], "ground.example", []):
        found = parse_problems(upstream_config(peer=[peer(domains=bad)]), tmp_path)
        assert not any(path.startswith("upstream") for path in found), found
    found = parse_problems(upstream_config(peer=[peer(), "x"]), tmp_path)
    assert set(found) == {"peer[1]"}
    # A claim problem leaves the peer's domains known: the check still runs.
    data = upstream_config(
        {"component": [{"domain": "sky.example", "secret": "s"}]},
        peer=[peer(), peer(name="x", remote="10.0.0.9", listen="127.0.0.2:5270")],
    )
    found = parse_problems(data, tmp_path)
    assert set(found) == {"peer[1].domains[0]", "upstream.component[0].domain"}


@pytest.mark.parametrize(
    ("address", "owner"),
    [
        ("127.0.0.2:5347", "component_listener.listen (127.0.0.2:5347)"),
        ("127.0.0.2:5269", "peer[0].listen (127.0.0.2:5269)"),
        ("127.0.0.2:5222", "host.listen (127.0.0.2:5222)"),
        ("127.0.0.1:5223", "host.direct_tls_listen (0.0.0.0:5223)"),
    ],
)
def test_upstream_address_must_not_be_our_listener(
    tmp_path: Path, address: str, owner: str
) -> None:
    data = upstream_config(
        {"address": address},
        server={"domains": ["air.example", "chat.example"]},
        host={
            "listen": "127.0.0.2:5222",
            "direct_tls_listen": "0.0.0.0:5223",
            "domains": ["chat.example"],
        },
        component_listener={"listen": "127.0.0.2:5347"},
    )
    msg = problem_at_data(tmp_path, data, "upstream.address")
    assert msg == (
        f"{address} is our own listener {owner}; address must be the upstream server's "
        "component port"
    )


@pytest.mark.parametrize(
    ("address", "listen"),
    [
        ("10.0.0.7:5347", "0.0.0.0:5347"),  # another host, on a wildcard listener's port
        ("[::1]:5347", "0.0.0.0:5347"),  # another family
        ("127.0.0.1:5347", "127.0.0.2:5347"),  # another loopback address
        ("127.0.0.2:5348", "127.0.0.2:5347"),  # another port
    ],
)
def test_upstream_address_beside_our_listeners_is_fine(
    tmp_path: Path, address: str, listen: str
) -> None:
    data = upstream_config({"address": address}, component_listener={"listen": listen})
    assert parse(data, tmp_path).upstream is not None


def test_upstream_address_loopback_on_our_wildcard_listener(tmp_path: Path) -> None:
    data = upstream_config({"address": "[::1]:5347"}, component_listener={"listen": "[::]:5347"})
    msg = problem_at_data(tmp_path, data, "upstream.address")
    assert msg.startswith("[::1]:5347 is our own listener component_listener.listen ([::]:5347);")


def test_upstream_problems_reported_with_the_rest(tmp_path: Path) -> None:
    text = """
        [server]
        domains = ["air.example"]
        log_level = "chatty"

        [[peer]]
        name = "ground"
        domains = ["ground.example"]
        remote = "127.0.0.3"
        listen = "127.0.0.2"

        [upstream]
        address = "127.0.0.1:99999"
        domains = ["ground.example"]
        reconnect_min = 120
        queue_limit = 0
        stanza_timout = 60

        [[upstream.component]]
        domain = "muc.ground.example"
        secret = ""

        [[upstream.component]]
        domain = "air.example"
        secret = "s"
    """
    found = {p.path for p in problems(tmp_path, text)}
    assert found == {
        "server.log_level",
        "upstream.address",
        "upstream.domains[0]",
        "upstream.reconnect_min",
        "upstream.queue_limit",
        "upstream.stanza_timout",
        "upstream.component[0].secret",
        "upstream.component[0].domain",
        "upstream.component[1].domain",
    }


# --------------------------------------------------------------------------- tls and identity

SPKI_PIN = "sha256//" + "A" * 43 + "="
CERT_PIN = ":".join(["AB"] * 32)


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    """Stand-in PEM files beside the configuration: parsing only checks that they exist."""
    for name in ("our.pem", "our.key", "link.pem", "link.key", "ca.pem"):
        (tmp_path / name).write_text(f"not really PEM: {name}\n")
    return tmp_path


def tls_peer(**overrides: object) -> dict:
    """A peer with tls = true and mode 'tls' trusting ca.pem (see the `pem` fixture)."""
    base: dict = {"tls": True, "identity": {"mode": "tls", "ca": "ca.pem"}}
    base.update(overrides)
    return peer(**base)


def with_server_cert(*peers: dict, **server: object) -> dict:
    """config_with, with [server] certificate = our.pem and key = our.key."""
    srv: dict = {"domains": ["air.example"], "certificate": "our.pem", "key": "our.key"}
    srv.update(server)
    return config_with(*peers, server=srv)


def test_tls_defaults(tmp_path: Path) -> None:
    cfg = parse(config_with(peer()), tmp_path)
    assert (cfg.server.certificate, cfg.server.key) == (None, None)
    p = cfg.peers[0]
    assert (p.tls, p.certificate, p.key) == (False, None, None)
    assert p.identity == IdentityConfig("address", (ipaddress.ip_network("127.0.0.3/32"),))
    i = p.identity
    assert (i.ca, i.pins, i.reverse_dns, i.dnssec, i.resolver, i.dns_timeout) == (
        None,
        (),
        None,
        False,
        None,
        5.0,
    )


def test_server_certificate_resolves_against_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    (etc / "tls").mkdir(parents=True)
    (etc / "tls" / "air.pem").write_text("x")
    (etc / "tls" / "air.key").write_text("x")
    write(
        etc,
        """
        [server]
        domains = ["air.example"]
        certificate = "tls/air.pem"
        key = "tls/air.key"
        """,
        "air.toml",
    )
    monkeypatch.chdir(tmp_path)
    cfg = load_config("etc/air.toml")
    assert cfg.server.certificate == etc / "tls" / "air.pem"
    assert cfg.server.key == etc / "tls" / "air.key"
    assert cfg.server.certificate.is_absolute()


@pytest.mark.parametrize(
    ("server", "path", "fragment"),
    [
        ({"certificate": "our.pem"}, "server.key", "required key is missing (certificate is set"),
        ({"key": "our.key"}, "server.certificate", "required key is missing (key is set"),
        ({"certificate": "nope.pem", "key": "our.key"}, "server.certificate", "file not found"),
        ({"certificate": "our.pem", "key": "."}, "server.key", "not a regular file"),
        ({"certificate": 1, "key": "our.key"}, "server.certificate", "got integer 1"),
        ({"certificate": "", "key": "our.key"}, "server.certificate", "must not be empty"),
    ],
)
def test_server_certificate_problems(pem: Path, server: dict, path: str, fragment: str) -> None:
    data = {"server": {"domains": ["air.example"], **server}}
    assert fragment in problem_at_data(pem, data, path)


def test_server_certificate_alone_is_fine(pem: Path) -> None:
    # A default for TLS links; no peer needs to use it.
    cfg = parse(with_server_cert(peer()), pem)
    assert cfg.server.certificate == pem / "our.pem"
    assert cfg.server.key == pem / "our.key"
    # a plain link still carries the default (it is just not used)
    assert cfg.peers[0].tls is False
    assert cfg.peers[0].certificate == pem / "our.pem"


def test_peer_tls_uses_server_certificate_by_default(pem: Path) -> None:
    cfg = parse(with_server_cert(tls_peer()), pem)
    p = cfg.peers[0]
    assert p.tls is True
    assert (p.certificate, p.key) == (pem / "our.pem", pem / "our.key")


def test_peer_certificate_overrides_server(pem: Path) -> None:
    own = {"certificate": "link.pem", "key": "link.key"}
    for data in (with_server_cert(tls_peer(**own)), config_with(tls_peer(**own))):
        p = parse(data, pem).peers[0]
        assert (p.certificate, p.key) == (pem / "link.pem", pem / "link.key")


def test_tls_needs_a_certificate(pem: Path) -> None:
    msg = problem_at_data(pem, config_with(tls_peer()), "peer[0].certificate")
    assert msg == "tls = true needs our certificate and key (here or in [server])"
    # also with identity modes other than tls
    for mode in ("address", "implicit"):
        data = config_with(peer(tls=True, identity=mode))
        assert "needs our certificate and key" in problem_at_data(pem, data, "peer[0].certificate")


def test_tls_needs_a_certificate_not_piled_on(pem: Path) -> None:
    # The server's pair is broken: that is the problem, not the peer's missing pair.
    found = parse_problems(with_server_cert(tls_peer(), certificate="nope.pem"), pem)
    assert set(found) == {"server.certificate"}
    found = parse_problems(with_server_cert(tls_peer(), key=None), pem)
    assert set(found) == {"server.key"}
    # The peer's own pair is broken.
    found = parse_problems(config_with(tls_peer(certificate="link.pem")), pem)
    assert set(found) == {"peer[0].key"}
    # [server] itself is missing.
    found = parse_problems({"peer": [tls_peer()]}, pem)
    assert "peer[0].certificate" not in found


@pytest.mark.parametrize(
    ("overrides", "path", "fragment"),
    [
        ({"tls": "yes"}, "peer[0].tls", "expected true or false, got string 'yes'"),
        ({"tls": 1}, "peer[0].tls", "got integer 1"),
        ({"certificate": "link.pem"}, "peer[0].key", "or neither to use those of [server]"),
        ({"key": "link.key"}, "peer[0].certificate", "required key is missing (key is set"),
        ({"certificate": "gone.pem", "key": "link.key"}, "peer[0].certificate", "file not found"),
        ({"certificate": "link.pem", "key": []}, "peer[0].key", "expected a string, got an array"),
    ],
)
def test_peer_tls_problems(pem: Path, overrides: dict, path: str, fragment: str) -> None:
    data = with_server_cert(tls_peer(**overrides))
    assert fragment in problem_at_data(pem, data, path)


def test_peer_certificate_needs_tls(pem: Path) -> None:
    found = parse_problems(
        with_server_cert(peer(certificate="link.pem", key="link.key", tls=False)), pem
    )
    assert set(found) == {"peer[0].certificate", "peer[0].key"}
    assert "only used with tls = true" in found["peer[0].certificate"]
    # tls omitted is tls = false; one key alone is still one problem, not two
    found = parse_problems(config_with(peer(key="link.key")), pem)
    assert set(found) == {"peer[0].key"}


def test_tls_identity_with_ca_and_pins(pem: Path) -> None:
    cfg = parse(
        with_server_cert(
            tls_peer(identity={"mode": "TLS", "ca": "ca.pem", "pins": [SPKI_PIN, CERT_PIN]})
        ),
        pem,
    )
    ident = cfg.peers[0].identity
    assert ident.mode == "tls"
    assert ident.ca == pem / "ca.pem"
    assert ident.pins == (parse_pin(SPKI_PIN), parse_pin(CERT_PIN))
    assert all(isinstance(pin, Pin) for pin in ident.pins)
    assert [pin.kind for pin in ident.pins] == ["spki", "cert"]
    # nothing of the address mode
    assert (ident.addresses, ident.port, ident.reverse_dns) == ((), None, None)


def test_tls_identity_ca_or_pins_alone(pem: Path) -> None:
    ca_only = parse(with_server_cert(tls_peer()), pem).peers[0].identity
    assert (ca_only.ca, ca_only.pins) == (pem / "ca.pem", ())
    pins_only = parse(
        with_server_cert(tls_peer(identity={"mode": "tls", "pins": [CERT_PIN]})), pem
    ).peers[0]
    assert (pins_only.identity.ca, pins_only.identity.pins) == (None, (parse_pin(CERT_PIN),))


def test_tls_identity_ca_resolves_against_config_folder(pem: Path) -> None:
    (pem / "trust").mkdir()
    (pem / "trust" / "ground-ca.pem").write_text("x")
    text = f"""
        [server]
        domains = ["air.example"]
        certificate = "{pem / "our.pem"}"
        key = "our.key"

        [[peer]]
        name = "ground"
        domains = ["ground.example"]
        remote = "127.0.0.3"
        listen = "127.0.0.2"
        tls = true

        [peer.identity]
        mode = "tls"
        ca = "trust/ground-ca.pem"
        pins = ["{SPKI_PIN}"]
    """
    p = load(pem, text).peers[0]
    assert p.identity.ca == pem / "trust" / "ground-ca.pem"
    assert p.certificate == pem / "our.pem"  # absolute paths are kept
    assert p.key == pem / "our.key"


def test_tls_identity_needs_tls(pem: Path) -> None:
    data = with_server_cert(peer(identity={"mode": "tls", "ca": "ca.pem"}))
    msg = problem_at_data(pem, data, "peer[0].tls")
    assert "identity mode 'tls' needs tls = true" in msg
    assert "tls is not set (default false)" in msg
    data = with_server_cert(peer(tls=False, identity={"mode": "tls", "ca": "ca.pem"}))
    assert "; tls = false" in problem_at_data(pem, data, "peer[0].tls")
    # tls itself invalid: only that problem
    data = with_server_cert(peer(tls="on", identity={"mode": "tls", "ca": "ca.pem"}))
    assert set(parse_problems(data, pem)) == {"peer[0].tls"}


def test_tls_identity_needs_ca_or_pins(pem: Path) -> None:
    for identity in ("tls", {"mode": "tls"}):
        msg = problem_at_data(
            pem, with_server_cert(tls_peer(identity=identity)), "peer[0].identity"
        )
        assert "mode 'tls' needs ca" in msg and "or pins" in msg


def test_bad_pins_reported_with_parse_pin_message(pem: Path) -> None:
    bad = "sha1:" + ":".join(["AB"] * 20)
    data = with_server_cert(
        tls_peer(identity={"mode": "tls", "pins": [SPKI_PIN, bad, 7, "nonsense", SPKI_PIN]})
    )
    found = parse_problems(data, pem)
    assert set(found) == {
        "peer[0].identity.pins[1]",
        "peer[0].identity.pins[2]",
        "peer[0].identity.pins[3]",
        "peer[0].identity.pins[4]",
    }
    for i, text in ((1, bad), (3, "nonsense")):
        with pytest.raises(ValueError) as info:
            parse_pin(text)
        assert found[f"peer[0].identity.pins[{i}]"] == str(info.value)
    assert found["peer[0].identity.pins[2]"] == "expected a certificate pin string, got integer 7"
    assert "already listed at peer[0].identity.pins[0]" in found["peer[0].identity.pins[4]"]


@pytest.mark.parametrize(
    ("identity", "path", "fragment"),
    [
        ({"mode": "tls", "pins": SPKI_PIN}, "peer[0].identity.pins", "expected an array"),
        ({"mode": "tls", "pins": []}, "peer[0].identity.pins", "at least one pin"),
        ({"mode": "tls", "ca": "missing.pem"}, "peer[0].identity.ca", "file not found"),
        ({"mode": "tls", "ca": 5}, "peer[0].identity.ca", "expected a string"),
        ({"mode": "tls", "ca": "."}, "peer[0].identity.ca", "not a regular file"),
    ],
)
def test_tls_identity_problems(pem: Path, identity: dict, path: str, fragment: str) -> None:
    data = with_server_cert(tls_peer(identity=identity))
    assert fragment in problem_at_data(pem, data, path)


@pytest.mark.parametrize(
    ("identity", "key", "fragment"),
    [
        (
            {"mode": "implicit", "ca": "ca.pem"},
            "ca",
            "only used with mode = 'tls'; mode 'implicit' accepts any connection",
        ),
        (
            {"mode": "address", "pins": [SPKI_PIN]},
            "pins",
            "only used with mode = 'tls'; mode 'address' identifies the peer by its source",
        ),
        (
            {"mode": "tls", "ca": "ca.pem", "addresses": ["127.0.0.3"]},
            "addresses",
            "only used with mode = 'address'; mode 'tls' identifies the peer by its certificate",
        ),
        ({"mode": "tls", "ca": "ca.pem", "port": 5269}, "port", "only used with mode = 'address'"),
        (
            {"mode": "tls", "ca": "ca.pem", "reverse_dns": "ground.example"},
            "reverse_dns",
            "only used with mode = 'address'",
        ),
        ({"mode": "tls", "ca": "ca.pem", "dnssec": True}, "dnssec", "mode = 'address'"),
        ({"mode": "implicit", "resolver": "127.0.0.53"}, "resolver", "mode = 'address'"),
        ({"mode": "implicit", "dns_timeout": 2}, "dns_timeout", "mode = 'address'"),
        ({"mode": "implicit", "port": 1}, "port", "mode 'implicit' accepts any connection"),
    ],
)
def test_keys_of_another_identity_mode(pem: Path, identity: dict, key: str, fragment: str) -> None:
    data = with_server_cert(tls_peer(identity=identity))
    found = parse_problems(data, pem)
    assert set(found) == {f"peer[0].identity.{key}"}, found
    assert fragment in found[f"peer[0].identity.{key}"]


def test_unknown_identity_mode_still_checks_every_key(pem: Path) -> None:
    data = with_server_cert(
        tls_peer(identity={"mode": "cert", "ca": "missing.pem", "pins": ["x"], "port": 0})
    )
    found = parse_problems(data, pem)
    assert "'address', 'implicit', 'tls'" in found["peer[0].identity.mode"]
    assert {
        "peer[0].identity.ca",
        "peer[0].identity.pins[0]",
        "peer[0].identity.port",
    } <= set(found)


def test_unknown_identity_key_lists_every_key(tmp_path: Path) -> None:
    found = parse_problems(config_with(peer(identity={"mode": "address", "pin": []})), tmp_path)
    msg = found["peer[0].identity.pin"]
    assert msg.startswith(
        "unknown key; expected one of: mode, addresses, port, reverse_dns, dnssec, resolver, "
        "dns_timeout, ca, pins"
    )
    assert "did you mean 'pins'?" in msg


def test_reverse_dns(tmp_path: Path) -> None:
    cfg = parse(
        config_with(
            peer(
                identity={
                    "mode": "address",
                    "reverse_dns": "Ground.Example.",
                    "dnssec": True,
                    "resolver": "127.0.0.53",
                    "dns_timeout": 2,
                }
            ),
            peer(
                name="b",
                domains=["bücher.example"],
                remote="10.0.0.2",
                identity={
                    "mode": "address",
                    "reverse_dns": "Bücher.example",
                    "resolver": "[2001:db8::53]:5353",
                },
            ),
        ),
        tmp_path,
    )
    a, b = (p.identity for p in cfg.peers)
    # the address check stays: addresses still default to the remote
    assert a.addresses == (ipaddress.ip_network("127.0.0.3/32"),)
    assert a.reverse_dns == "ground.example"
    assert a.dnssec is True
    assert a.resolver == Endpoint("127.0.0.53", 53)
    assert a.dns_timeout == 2.0 and isinstance(a.dns_timeout, float)
    # DNS names are kept in ASCII (IDNA A-labels), as PTR records hold them
    assert b.reverse_dns == "xn--bcher-kva.example"
    assert (b.dnssec, b.resolver, b.dns_timeout) == (False, Endpoint("2001:db8::53", 5353), 5.0)


@pytest.mark.parametrize(
    ("identity", "path", "fragment"),
    [
        ({"reverse_dns": 5}, "reverse_dns", "expected a host name, got integer 5"),
        ({"reverse_dns": " "}, "reverse_dns", "must not be empty"),
        ({"reverse_dns": "10.0.0.3"}, "reverse_dns", "got the IP address '10.0.0.3'"),
        ({"reverse_dns": "::1"}, "reverse_dns", "got the IP address"),
        ({"reverse_dns": "*.ground.example"}, "reverse_dns", "without wildcards"),
        ({"reverse_dns": "bad_label.example"}, "reverse_dns", "invalid host name"),
        ({"reverse_dns": "."}, "reverse_dns", "invalid host name '.'"),
        ({"reverse_dns": "1.2.3"}, "reverse_dns", "last label is numeric"),
        ({"reverse_dns": "a" * 64 + ".example"}, "reverse_dns", "invalid host name"),
        ({"reverse_dns": "g.example", "dnssec": "yes"}, "dnssec", "expected true or false"),
        ({"reverse_dns": "g.example", "resolver": 53}, "resolver", "got integer 53"),
        ({"reverse_dns": "g.example", "resolver": "dns.example"}, "resolver", "IP address"),
        ({"reverse_dns": "g.example", "resolver": "0.0.0.0"}, "resolver", "wildcard address"),
        ({"reverse_dns": "g.example", "resolver": "[::]:53"}, "resolver", "wildcard address"),
        ({"reverse_dns": "g.example", "resolver": "::1"}, "resolver", "need brackets"),
        ({"reverse_dns": "g.example", "resolver": "127.0.0.1:0"}, "resolver", "port number"),
        ({"reverse_dns": "g.example", "dns_timeout": 0}, "dns_timeout", "> 0"),
        ({"reverse_dns": "g.example", "dns_timeout": -1}, "dns_timeout", "> 0"),
        ({"reverse_dns": "g.example", "dns_timeout": "5"}, "dns_timeout", "got string '5'"),
        ({"dnssec": True}, "dnssec", "only used with reverse_dns"),
        ({"dnssec": False}, "dnssec", "only used with reverse_dns"),
        ({"resolver": "127.0.0.53"}, "resolver", "only used with reverse_dns"),
        ({"dns_timeout": 3}, "dns_timeout", "only used with reverse_dns"),
    ],
)
def test_reverse_dns_problems(tmp_path: Path, identity: dict, path: str, fragment: str) -> None:
    data = config_with(peer(identity={"mode": "address", **identity}))
    found = parse_problems(data, tmp_path)
    assert set(found) == {f"peer[0].identity.{path}"}, found
    assert fragment in found[f"peer[0].identity.{path}"]


def test_tls_with_address_or_implicit_identity(pem: Path) -> None:
    cfg = parse(
        with_server_cert(
            peer(name="a", domains=["a.example"], tls=True, identity="address"),
            peer(
                name="b",
                domains=["b.example"],
                listen="127.0.0.2:5270",
                tls=True,
                identity="implicit",
            ),
        ),
        pem,
    )
    a, b = cfg.peers
    assert (a.tls, a.identity.mode, b.tls, b.identity.mode) == (True, "address", True, "implicit")
    warnings = warnings_for(cfg)
    only_address = [w for w in warnings if "identified only by its address" in w]
    assert len(only_address) == 2
    assert "peer 'a': tls = true with identity mode 'address'" in only_address[0]
    assert "the link is encrypted but the peer is identified only by its address" in warnings[0]
    # b also gets the implicit warning
    assert any("'b'" in w and "NOT RECOMMENDED" in w for w in warnings)


def test_no_tls_warning_with_tls_identity(pem: Path) -> None:
    assert warnings_for(parse(with_server_cert(tls_peer()), pem)) == []


# -- shared listeners


def test_shared_listener_must_agree_on_tls(pem: Path) -> None:
    data = with_server_cert(
        peer(name="a", domains=["a.example"], remote="10.0.0.1"),
        tls_peer(name="b", domains=["b.example"], remote="10.0.0.2"),
        peer(name="c", domains=["c.example"], remote="10.0.0.3", tls=False),
        tls_peer(name="d", domains=["d.example"], remote="10.0.0.4", listen="127.0.0.2:5270"),
    )
    found = parse_problems(data, pem)
    assert set(found) == {"peer[1].tls"}
    msg = found["peer[1].tls"]
    assert (
        "tls = true, but 127.0.0.2:5269 is shared with 'a' (peer[0]), which has tls = false" in msg
    )
    assert "all use TLS or all not" in msg


def test_shared_listener_tls_compared_only_where_known(pem: Path) -> None:
    # An invalid tls is its own problem; the others are compared with the first valid one.
    found = parse_problems(
        with_server_cert(
            peer(name="a", domains=["a.example"], remote="10.0.0.1", tls="yes"),
            peer(name="b", domains=["b.example"], remote="10.0.0.2", tls=1),
        ),
        pem,
    )
    assert set(found) == {"peer[0].tls", "peer[1].tls"}
    assert "expected true or false" in found["peer[1].tls"]
    found = parse_problems(
        with_server_cert(
            peer(name="a", domains=["a.example"], remote="10.0.0.1", tls="yes"),
            tls_peer(name="b", domains=["b.example"], remote="10.0.0.2"),
            peer(name="c", domains=["c.example"], remote="10.0.0.3"),
        ),
        pem,
    )
    assert set(found) == {"peer[0].tls", "peer[2].tls"}
    assert "shared with 'b' (peer[1]), which has tls = true" in found["peer[2].tls"]


def test_shared_tls_listener_with_tls_identities(pem: Path) -> None:
    # Two tls peers dialing from the same address: told apart by their certificates.
    cfg = parse(
        with_server_cert(
            tls_peer(name="a", domains=["a.example"], remote="10.0.0.1"),
            tls_peer(
                name="b",
                domains=["b.example"],
                remote="10.0.0.1",
                identity={"mode": "tls", "pins": [SPKI_PIN]},
            ),
            # an address peer on the TLS listener is told apart by its address
            peer(name="c", domains=["c.example"], remote="10.0.0.3", tls=True),
        ),
        pem,
    )
    assert {p.listen for p in cfg.peers} == {Endpoint("127.0.0.2", 5269)}
    assert all(p.tls for p in cfg.peers)


def test_shared_tls_listener_still_rejects_implicit(pem: Path) -> None:
    found = parse_problems(
        with_server_cert(
            tls_peer(name="a", domains=["a.example"]),
            peer(name="b", domains=["b.example"], tls=True, identity="implicit"),
        ),
        pem,
    )
    assert set(found) == {"peer[1].identity"}
    assert "mode 'implicit' accepts every connection on 127.0.0.2:5269" in found["peer[1].identity"]
    assert "shared with 'a' (peer[0])" in found["peer[1].identity"]


def test_shared_tls_listener_overlapping_addresses_still_checked(pem: Path) -> None:
    found = parse_problems(
        with_server_cert(
            peer(name="a", domains=["a.example"], remote="10.0.0.1", tls=True),
            peer(name="b", domains=["b.example"], remote="10.0.0.1", tls=True),
        ),
        pem,
    )
    assert set(found) == {"peer[1].remote"}


def test_shared_tls_listener_needs_one_certificate(pem: Path) -> None:
    own = {"certificate": "link.pem", "key": "link.key"}
    found = parse_problems(
        with_server_cert(
            tls_peer(name="a", domains=["a.example"], remote="10.0.0.1"),
            tls_peer(name="b", domains=["b.example"], remote="10.0.0.2", **own),
        ),
        pem,
    )
    assert set(found) == {"peer[1].certificate"}
    msg = found["peer[1].certificate"]
    assert f"{pem / 'link.pem'} differs from {pem / 'our.pem'}" in msg
    assert "'a' (peer[0])" in msg and "127.0.0.2:5269" in msg
    # the same certificate with another key
    found = parse_problems(
        with_server_cert(
            tls_peer(name="a", domains=["a.example"], remote="10.0.0.1"),
            tls_peer(
                name="b",
                domains=["b.example"],
                remote="10.0.0.2",
                certificate="our.pem",
                key="link.key",
            ),
        ),
        pem,
    )
    assert set(found) == {"peer[1].key"}
    # the same pair given explicitly is fine, and so are separate listeners
    parse(
        with_server_cert(
            tls_peer(name="a", domains=["a.example"], remote="10.0.0.1"),
            tls_peer(
                name="b",
                domains=["b.example"],
                remote="10.0.0.2",
                certificate="our.pem",
                key="our.key",
            ),
            tls_peer(
                name="c", domains=["c.example"], remote="10.0.0.3", listen="127.0.0.2:5270", **own
            ),
        ),
        pem,
    )


# -- reporting


def test_summary_tls(pem: Path) -> None:
    cfg = parse(
        with_server_cert(
            tls_peer(
                name="a",
                domains=["a.example"],
                remote="10.0.0.1",
                identity={"mode": "tls", "ca": "ca.pem", "pins": [SPKI_PIN, CERT_PIN]},
            ),
            tls_peer(
                name="b",
                domains=["b.example"],
                remote="10.0.0.2",
                identity={"mode": "tls", "pins": [CERT_PIN]},
            ),
            tls_peer(name="c", domains=["c.example"], remote="10.0.0.3"),
            peer(
                name="d",
                domains=["d.example"],
                remote="10.0.0.4",
                listen="127.0.0.2:5270",
                identity={"mode": "address", "reverse_dns": "d.example", "dnssec": True},
            ),
            peer(
                name="e",
                domains=["e.example"],
                remote="10.0.0.5",
                listen="127.0.0.2:5270",
                identity={
                    "mode": "address",
                    "reverse_dns": "e.example",
                    "resolver": "127.0.0.53",
                },
            ),
            peer(
                name="f",
                domains=["f.example"],
                remote="10.0.0.6",
                listen="127.0.0.2:5271",
                identity={"mode": "address", "reverse_dns": "f.example"},
            ),
        ),
        pem,
    )
    lines = summary(cfg).splitlines()
    assert f"  link certificate: {pem / 'our.pem'} (key {pem / 'our.key'})" in lines
    tls_on = f"  tls: on, certificate {pem / 'our.pem'} (key {pem / 'our.key'})"

    def block(name: str) -> list[str]:
        i = lines.index(f"peer '{name}'")
        return lines[i + 5 : i + 7]

    assert block("a") == [tls_on, f"  identity: tls (CA {pem / 'ca.pem'} or 2 pins)"]
    assert block("b") == [tls_on, "  identity: tls (1 pin)"]
    assert block("c") == [tls_on, f"  identity: tls (CA {pem / 'ca.pem'})"]
    assert block("d") == [
        "  tls: off",
        "  identity: address 10.0.0.4 (any source port) + reverse DNS d.example (DNSSEC)",
    ]
    assert block("e") == [
        "  tls: off",
        "  identity: address 10.0.0.5 (any source port) + reverse DNS e.example "
        "(resolver 127.0.0.53:53)",
    ]
    assert block("f")[1] == "  identity: address 10.0.0.6 (any source port) + reverse DNS f.example"


def test_summary_without_link_certificate(tmp_path: Path) -> None:
    lines = summary(parse(config_with(peer()), tmp_path)).splitlines()
    assert "  tls: off" in lines
    assert not any("link certificate" in line for line in lines)


def test_tls_problems_reported_with_the_rest(pem: Path) -> None:
    text = f"""
        [server]
        domains = ["air.example"]
        certificate = "our.pem"

        [[peer]]
        name = "ground"
        domains = ["ground.example"]
        remote = "127.0.0.3"
        listen = "127.0.0.2"
        tls = "true"
        [peer.identity]
        mode = "tls"
        ca = "nowhere.pem"
        pins = ["{SPKI_PIN}", "sha256//short"]

        [[peer]]
        name = "sea"
        domains = ["sea.example"]
        remote = "10.0.0.9"
        listen = "127.0.0.2:5270"
        certificate = "link.pem"
        [peer.identity]
        mode = "address"
        dnssec = true
        resolver = "resolver.example"
    """
    found = {p.path for p in problems(pem, text)}
    assert found == {
        "server.key",
        "peer[0].tls",
        "peer[0].identity.ca",
        "peer[0].identity.pins[1]",
        "peer[1].certificate",
        "peer[1].identity.dnssec",
        "peer[1].identity.resolver",
    }


# --------------------------------------------------------------------------- domains


def test_domains_are_normalized_like_jid_domainparts(tmp_path: Path) -> None:
    cfg = parse(
        config_with(
            peer(domains=["Ground.Example.", "*.Bücher.example", "xn--bcher-kva.example"]),
        ),
        tmp_path,
    )
    assert cfg.peers[0].domains == ("ground.example", "*.bücher.example", "bücher.example")


@pytest.mark.parametrize(
    "domain",
    ["", " a.example", "bad_label.example", "a" * 64 + ".example", ("a" * 60 + ".") * 5 + "x"],
)
def test_invalid_domains_are_rejected(tmp_path: Path, domain: str) -> None:
    found = parse_problems({"server": {"domains": [domain]}}, tmp_path)
    assert "invalid domain name" in found["server.domains[0]"]


# --------------------------------------------------------------------------- reporting


def test_summary(tmp_path: Path) -> None:
    text = summary(load_config(EXAMPLES / "air.toml"))
    lines = text.splitlines()
    assert all(line == line.rstrip() for line in lines)
    assert not text.endswith("\n")
    assert "server 'air'" in lines[0]
    assert "  domains: air.example" in lines
    assert any("air-data" in line for line in lines)
    assert "component listener: 127.0.0.2:5347" in lines
    assert "  component bot.air.example" in lines
    assert "peer 'ground'" in lines
    assert "  domains: ground.example, *.ground.example" in lines
    assert "  remote: 127.0.0.3:5269 (from 127.0.0.2)" in lines
    assert "  listen: 127.0.0.2:5269" in lines
    assert "  direction: both, connect: always" in lines
    assert "  identity: address 127.0.0.3 (any source port)" in lines
    assert "bot-secret" not in text
    # the host comes right after the server
    i = lines.index("host: air.example")
    assert lines[i : i + 7] == [
        "host: air.example",
        "  clients: 127.0.0.2:5222 (STARTTLS required)",
        "  direct TLS: none",
        f"  certificate: self-signed, generated at first start in {EXAMPLES / 'air-data'}",
        "  per user: 10 sessions, 1000 offline messages (10 MiB), 1000 roster items",
        "  unauthenticated: at most 100 connections, 60s each to authenticate",
        "  per client: at most 4 MiB of output it has not taken",
    ]
    assert lines.index("component listener: 127.0.0.2:5347") > i
    assert "upstream: none" in lines


def test_summary_upstream(tmp_path: Path) -> None:
    text = summary(load(tmp_path, GATEWAY))
    lines = text.splitlines()
    i = lines.index("upstream: 127.0.0.1:5347")
    assert lines[i : i + 6] == [
        "upstream: 127.0.0.1:5347",
        "  fronted domains: air.example",
        "  component ground.example",
        "  component conference.ground.example",
        "  reconnect 2-30.5s, connect timeout 5s",
        "  while down: at most 500 stanzas, 600s each",
    ]
    assert lines.index("component listener: none") < i < lines.index("peer 'ground'")
    assert "gw-secret" not in text and "conf-secret" not in text


def test_summary_host_with_certificate(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("cert")
    (tmp_path / "c.key").write_text("key")
    cfg = parse(
        {
            "server": {"domains": ["air.example", "chat.example"]},
            "host": {
                "listen": "127.0.0.2",
                "direct_tls_listen": "[::1]",
                "tls_required": False,
                "certificate": "c.pem",
                "key": "c.key",
                "auth_timeout": 2.5,
            },
        },
        tmp_path,
    )
    lines = summary(cfg).splitlines()
    assert "host: air.example, chat.example" in lines
    assert "  clients: 127.0.0.2:5222 (STARTTLS optional)" in lines
    assert "  direct TLS: [::1]:5223" in lines
    assert f"  certificate: {tmp_path / 'c.pem'} (key {tmp_path / 'c.key'})" in lines
    assert "  unauthenticated: at most 100 connections, 2.5s each to authenticate" in lines


def test_summary_other_shapes(tmp_path: Path) -> None:
    cfg = parse(
        config_with(
            peer(
                name="a",
                domains=["a.example"],
                identity="implicit",
                listen=None,
                direction="outbound",
                connect="on-demand",
                idle_timeout=45,
            ),
            peer(
                name="b",
                domains=["b.example"],
                remote=None,
                direction="inbound",
                identity={"mode": "address", "addresses": ["10.0.0.0/8"], "port": 5269},
            ),
        ),
        tmp_path,
    )
    text = summary(cfg)
    assert "component listener: none" in text
    assert "direction: outbound, connect: on-demand (idle timeout 45s)" in text
    assert "identity: implicit" in text
    assert "  remote: -" in text
    assert "identity: address 10.0.0.0/8 (source port 5269)" in text
    assert all(line == line.rstrip() for line in text.splitlines())
    assert "peers: none" in summary(parse({"server": {"domains": ["a.example"]}}, tmp_path))
    assert "host: none (no hosted users)" in text


def test_warnings_for_implicit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = parse(config_with(peer(identity="implicit")), tmp_path)
    (warning,) = warnings_for(cfg)
    assert "ground" in warning
    assert "NOT RECOMMENDED" in warning
    assert "127.0.0.2:5269" in warning
    with caplog.at_level(logging.WARNING, logger="zerolink.config"):
        assert log_warnings(cfg) == [warning]
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("zerolink.config", logging.WARNING, warning)
    ]


def test_no_warning_for_address_identity(tmp_path: Path) -> None:
    assert warnings_for(parse(config_with(peer()), tmp_path)) == []


def test_warning_for_optional_tls_off_loopback(tmp_path: Path) -> None:
    def warnings(listen: str, tls_required: bool) -> list[str]:
        data = {
            "server": {"domains": ["a.example"]},
            "host": {"listen": listen, "tls_required": tls_required},
        }
        return warnings_for(parse(data, tmp_path))

    (warning,) = warnings("10.0.0.1", False)
    assert "tls_required = false" in warning and "10.0.0.1:5222" in warning
    assert warnings("0.0.0.0", False) != []
    assert warnings("[::1]", False) == []
    assert warnings("127.0.0.2", False) == []
    assert warnings("10.0.0.1", True) == []
