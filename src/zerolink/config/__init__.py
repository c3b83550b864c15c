"""Configuration: a TOML file read into frozen dataclasses.

Every problem in the file is reported at once: `load_config` raises one `ConfigError` listing
each `ConfigProblem` with its key path (``peer[0].identity.addresses[1]``) and what was expected.
Parsing is split in two passes: each table is read into a *draft* (plain dicts, with `BAD` for
values that failed), then the cross-checks run over whatever was valid, and only a file without
problems is turned into the dataclasses.

The package: `schema` (the dataclasses; each key, default, type and doc string stated once in
field metadata), `values` (reading one value), `sections` (reading each table and building the
dataclasses, from the schema), `checks` (the cross-checks), `report` (warnings and summary),
`reference` (the key reference in docs/configuration.md, generated from the schema).

Nothing here logs; `warnings_for` returns the warnings for the application to log
(`log_warnings` does so on the ``zerolink.config`` logger).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from zerolink.config.checks import cross_check
from zerolink.config.report import log_warnings, logger, summary, warnings_for
from zerolink.config.schema import (
    DEFAULT_C2S_PORT,
    DEFAULT_C2S_TLS_PORT,
    DEFAULT_COMPONENT_PORT,
    DEFAULT_DNS_PORT,
    DEFAULT_DNS_TIMEOUT,
    DEFAULT_S2S_PORT,
    DEFAULT_SEND_BUFFER,
    ComponentConfig,
    ComponentListenerConfig,
    Config,
    Endpoint,
    HostConfig,
    IdentityConfig,
    PeerConfig,
    ServerConfig,
    UpstreamComponent,
    UpstreamConfig,
    toml_keys,
)
from zerolink.config.sections import (
    build_config,
    read_component_listener,
    read_components,
    read_host,
    read_peers,
    read_server,
    read_upstream,
)
from zerolink.config.values import Ctx, parse_endpoint
from zerolink.errors import ConfigError, ConfigProblem

__all__ = [
    "DEFAULT_C2S_PORT",
    "DEFAULT_C2S_TLS_PORT",
    "DEFAULT_COMPONENT_PORT",
    "DEFAULT_DNS_PORT",
    "DEFAULT_DNS_TIMEOUT",
    "DEFAULT_S2S_PORT",
    "DEFAULT_SEND_BUFFER",
    "ComponentConfig",
    "ComponentListenerConfig",
    "Config",
    "Endpoint",
    "HostConfig",
    "IdentityConfig",
    "PeerConfig",
    "ServerConfig",
    "UpstreamComponent",
    "UpstreamConfig",
    "load_config",
    "log_warnings",
    "logger",
    "parse_config",
    "parse_endpoint",
    "summary",
    "warnings_for",
]

_TOML_POSITION_RE = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")
_TOML_EOF_RE = re.compile(r"^(?P<msg>.*) \(at end of document\)$")


def parse_config(
    data: dict[str, Any],
    *,
    base_dir: Path,
    source: str = "<config>",
    path: Path | None = None,
) -> Config:
    """Validate a parsed TOML document; raises `ConfigError` listing every problem.

    `base_dir` resolves relative paths; `path` (the file, if any) names the defaults:
    server.name is its stem and data_dir is "<stem>-data" ("zerolink" without a file).
    """
    ctx = Ctx(Path(base_dir))
    stem = path.stem if path is not None else "zerolink"
    if not isinstance(data, dict):  # pragma: no cover - tomllib always yields a dict
        raise ConfigError(source, [ConfigProblem("", "expected a TOML table at the top level")])
    ctx.table(data, "", toml_keys(Config))
    server = read_server(ctx, data, stem)
    host = read_host(ctx, data)
    listener = read_component_listener(ctx, data)
    components = read_components(ctx, data)
    peers = read_peers(ctx, data)
    upstream = read_upstream(ctx, data)
    listen = listener["listen"] if isinstance(listener, dict) else listener
    cross_check(ctx, server, host, listen, components, peers, upstream)
    if ctx.problems:
        raise ConfigError(source, ctx.problems)
    return build_config(path, server, host, listener, components, peers, upstream)


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML configuration file; raises `ConfigError` listing every problem.

    Relative paths inside the file resolve against the file's folder.
    """
    source = str(path)
    file = Path(path).expanduser().absolute()
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, [ConfigProblem("", "configuration file not found")]) from None
    except IsADirectoryError:
        raise ConfigError(
            source, [ConfigProblem("", "is a directory, not a configuration file")]
        ) from None
    except OSError as e:
        raise ConfigError(
            source, [ConfigProblem("", f"cannot read configuration file: {e.strerror or e}")]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            source, [ConfigProblem("", f"not valid UTF-8 (byte offset {e.start})")]
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, [ConfigProblem("", _toml_error_message(e, text))]) from None
    return parse_config(data, base_dir=file.parent, source=source, path=file)


def _toml_error_message(error: tomllib.TOMLDecodeError, text: str) -> str:
    msg = str(error)
    m = _TOML_POSITION_RE.match(msg)
    if m:
        return f"TOML syntax error at line {m['line']}, column {m['col']}: {m['msg']}"
    m = _TOML_EOF_RE.match(msg)
    if m:
        lines = text.splitlines() or [""]
        return (
            f"TOML syntax error at end of file (line {len(lines)}, column "
            f"{len(lines[-1]) + 1}): {m['msg']}"
        )
    return f"TOML syntax error: {msg}"  # pragma: no cover - tomllib always gives a position
