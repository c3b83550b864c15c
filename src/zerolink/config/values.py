"""Reading single values: the problem collector, key paths, and each kind of value.

`Ctx` collects every `ConfigProblem`; its readers return the value, or `BAD` once the
problem is recorded, so that a section reads on and the cross-checks see what was valid.
`Ctx.read` reads any key by its `Setting` (zerolink.config.schema).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import stat
from collections.abc import Iterable
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from zerolink.config.schema import COMPUTED, Endpoint, IPNetwork, Setting
from zerolink.errors import ConfigProblem
from zerolink.idn import IDNError, domain_to_ascii
from zerolink.jid import normalize_domain

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


class _Bad:
    """Marks a value that failed validation (its problem is already recorded)."""

    def __repr__(self) -> str:
        return "<bad>"


BAD: Any = _Bad()
MISSING: Any = object()


# --------------------------------------------------------------------------- helpers


def key_path(path: str, key: str) -> str:
    part = key if _BARE_KEY_RE.fullmatch(key) else '"' + key.replace('"', '\\"') + '"'
    return f"{path}.{part}" if path else part


def index_path(path: str, i: int) -> str:
    return f"{path}[{i}]"


# Keys whose value is a secret: a problem with one names its type, never its value (the
# message goes to stderr, which is the service's log).
SECRET_KEYS = frozenset({"secret"})


def _kind(value: Any) -> str:
    """The type of a TOML value without the value: "integer", "an array"."""
    text = describe(value)
    return text if text.startswith(("a ", "an ")) else text.split(" ", 1)[0]


def describe(value: Any) -> str:
    """Name a TOML value for a message: "string 'x'", "integer 5", "a table"."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return f"date/time {value.isoformat()}"
    return type(value).__name__  # pragma: no cover - tomllib yields nothing else


def quoted_list(choices: Iterable[str]) -> str:
    return ", ".join(f"'{c}'" for c in choices)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_network(host: str) -> IPNetwork:
    """A single IP literal as a /32 or /128 network (any IPv6 zone dropped)."""
    return ipaddress.ip_network(host.split("%", 1)[0])


class Ctx:
    """The problems found so far, and the folder relative paths resolve against."""

    def __init__(self, base_dir: Path) -> None:
        self.problems: list[ConfigProblem] = []
        self.base_dir = base_dir

    def add(self, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(path, message))

    # -- tables

    def table(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        """Check `value` is a table and report its unknown keys; None if not a table."""
        if not isinstance(value, dict):
            self.add(path, f"expected a table, got {describe(value)}")
            return None
        for key in value:
            if key not in allowed:
                self.add(
                    key_path(path, key),
                    f"unknown key; expected one of: {', '.join(allowed)}"
                    + did_you_mean(key, allowed),
                )
        return value

    def array_of_tables(self, value: Any, path: str) -> list[Any]:
        if isinstance(value, dict):
            self.add(
                path,
                f"expected an array of tables ([[{path}]]), got a single table ([{path}])",
            )
            return []
        if not isinstance(value, list):
            self.add(path, f"expected an array of tables ([[{path}]]), got {describe(value)}")
            return []
        return value

    # -- by setting

    def read(self, s: Setting, table: dict[str, Any], key: str, path: str) -> Any:
        """Read `key` as its setting says: its default when absent (None when the section
        works the default out), a problem when it is required."""
        if s.kind == "domains":
            if key not in table and not s.required:
                return None
            return self.domain_list(table, key, path, wildcard=s.wildcard)
        if key not in table:
            if s.required:
                hint = f" ({s.hint})" if s.hint else ""
                self.add(key_path(path, key), "required key is missing" + hint)
                return BAD
            return None if s.default is COMPUTED else s.default
        if s.kind == "string":
            return self.string(table, key, path)
        if s.kind == "choice":
            return self.choice(table, key, path, s.choices, s.default)
        if s.kind == "integer":
            return self.integer(table, key, path, s.default, minimum=s.minimum)
        if s.kind == "boolean":
            return self.boolean(table, key, path, s.default)
        if s.kind == "duration":
            return self.duration(table, key, path, s.default, positive=s.positive)
        if s.kind == "endpoint":
            return self.endpoint(table, key, path, s.port)
        if s.kind == "file":
            return self.existing_file(table, key, path)
        raise ValueError(f"{key}: kind {s.kind!r} has no generic reader")  # pragma: no cover

    def existing_file(self, t: dict[str, Any], key: str, path: str) -> Any:
        """An optional path to an existing file, relative to the configuration file's folder."""
        value = self.string(t, key, path, default=None)
        if value is None or value is BAD:
            return value
        p = key_path(path, key)
        file = self.base_dir / Path(os.path.expanduser(value))
        try:
            st = file.stat()
        except (FileNotFoundError, NotADirectoryError):
            self.add(p, f"file not found: {file}")
            return BAD
        except OSError as e:
            self.add(p, f"cannot access {file}: {e.strerror or e}")
            return BAD
        if not stat.S_ISREG(st.st_mode):
            self.add(p, f"not a regular file: {file}")
            return BAD
        return file

    # -- scalars

    def string(self, table: dict[str, Any], key: str, path: str, *, default: Any = MISSING) -> Any:
        p = key_path(path, key)
        if key not in table:
            if default is MISSING:
                self.add(p, "required key is missing")
                return BAD
            return default
        value = table[key]
        if not isinstance(value, str):
            shown = describe(value) if key not in SECRET_KEYS else _kind(value)
            self.add(p, f"expected a string, got {shown}")
            return BAD
        if not value.strip():
            self.add(p, "must not be empty")
            return BAD
        return value

    def choice(
        self, table: dict[str, Any], key: str, path: str, choices: tuple[str, ...], default: str
    ) -> Any:
        p = key_path(path, key)
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, str) and value.lower() in choices:
            return value.lower()
        got = describe(value)
        hint = did_you_mean(value.lower(), choices) if isinstance(value, str) else ""
        self.add(p, f"expected one of {quoted_list(choices)}, got {got}{hint}")
        return BAD

    def integer(
        self, table: dict[str, Any], key: str, path: str, default: int, *, minimum: int
    ) -> Any:
        p = key_path(path, key)
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(p, f"expected an integer, got {describe(value)}")
            return BAD
        if value < minimum:
            self.add(p, f"must be >= {minimum}, got {value}")
            return BAD
        return value

    def boolean(self, table: dict[str, Any], key: str, path: str, default: bool) -> Any:
        p = key_path(path, key)
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, bool):
            self.add(p, f"expected true or false, got {describe(value)}")
            return BAD
        return value

    def duration(
        self, table: dict[str, Any], key: str, path: str, default: float, *, positive: bool
    ) -> Any:
        p = key_path(path, key)
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(p, f"expected a number of seconds, got {describe(value)}")
            return BAD
        if not math.isfinite(value):
            self.add(p, f"expected a finite number of seconds, got {value}")
            return BAD
        if positive and value <= 0:
            self.add(p, f"must be > 0 seconds, got {value}")
            return BAD
        if value < 0:
            self.add(p, f"must be >= 0 seconds, got {value}")
            return BAD
        return float(value)

    def port(self, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, f"expected a port number (1-65535), got {describe(value)}")
            return BAD
        if not 1 <= value <= 65535:
            self.add(path, f"expected a port number (1-65535), got {value}")
            return BAD
        return value

    def endpoint(self, table: dict[str, Any], key: str, path: str, default_port: int) -> Any:
        """An optional endpoint string; None when absent, `BAD` when invalid."""
        p = key_path(path, key)
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, str):
            self.add(p, f"expected 'host:port' or '[IPv6]:port', got {describe(value)}")
            return BAD
        try:
            return parse_endpoint(value, default_port)
        except ValueError as e:
            self.add(p, str(e))
            return BAD

    def domain(self, value: Any, path: str, *, wildcard: bool) -> Any:
        if not isinstance(value, str):
            self.add(path, f"expected a domain name, got {describe(value)}")
            return BAD
        text = value
        prefix = ""
        if "*" in text:
            if not wildcard:
                self.add(path, f"wildcards are only allowed in peer domains, got {value!r}")
                return BAD
            if not text.startswith("*.") or "*" in text[2:]:
                self.add(
                    path,
                    f"a wildcard must be '*.' followed by a domain (e.g. '*.example.org'), "
                    f"got {value!r}",
                )
                return BAD
            prefix, text = "*.", text[2:]
        try:
            return prefix + _normalize_domain(text)
        except ValueError as e:
            self.add(path, f"invalid domain name {value!r}: {e}")
            return BAD

    def domain_list(self, table: dict[str, Any], key: str, path: str, *, wildcard: bool) -> Any:
        """A required, non-empty array of domains -> [(domain, key path)] of the valid ones.

        Invalid entries are reported and left out; the cross-checks still see the rest.
        """
        p = key_path(path, key)
        if key not in table:
            self.add(p, "required key is missing (an array of at least one domain)")
            return BAD
        value = table[key]
        if not isinstance(value, list):
            self.add(p, f"expected an array of domain names, got {describe(value)}")
            return BAD
        if not value:
            self.add(p, "at least one domain is required")
            return BAD
        out = []
        for i, item in enumerate(value):
            d = self.domain(item, index_path(p, i), wildcard=wildcard)
            if d is not BAD:
                out.append((d, index_path(p, i)))
        return out


# --------------------------------------------------------------------------- domains


def _normalize_domain(text: str) -> str:
    """Normalize a domain as JIDs do (RFC 7622 domainpart); ValueError if invalid."""
    return normalize_domain(text)


def wildcard_covers(pattern: str, domain: str) -> bool:
    """``*.x`` covers every subdomain of x (at any depth), not x itself."""
    return pattern.startswith("*.") and domain.endswith(pattern[1:])


# --------------------------------------------------------------------------- endpoints


def parse_endpoint(text: str, default_port: int) -> Endpoint:
    """Parse "host:port", "host", "[v6]:port" or "[v6]"; ValueError with a readable message."""
    s = text.strip()
    if not s:
        raise ValueError("expected 'host:port' or '[IPv6]:port', got an empty string")
    port_text: str | None
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"missing ']' after the IPv6 address in {text!r}")
        host, rest = s[1:end], s[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected ':port' after ']' in {text!r}")
        port_text = rest[1:] if rest else None
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"expected an IPv6 address inside [...], got {host!r}") from None
        if addr.version != 6:
            raise ValueError(f"brackets are for IPv6 addresses only, got {host!r}")
        host = str(addr)
    else:
        if s.count(":") > 1:
            raise ValueError(f"IPv6 addresses need brackets, e.g. '[::1]:5269'; got {text!r}")
        host, sep, port_str = s.partition(":")
        port_text = port_str if sep else None
        if not host:
            raise ValueError(f"missing host in {text!r}")
        host = str(ipaddress.ip_address(host)) if is_ip(host) else _normalize_hostname(host, text)
    if port_text is None:
        port = default_port
    else:
        if not port_text.isdigit():
            raise ValueError(f"expected a port number (1-65535) in {text!r}, got {port_text!r}")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"expected a port number (1-65535) in {text!r}, got {port}")
    return Endpoint(host, port)


def _normalize_hostname(host: str, text: str) -> str:
    if host.replace(".", "").isdigit():
        raise ValueError(f"not a valid IPv4 address: {host!r}")
    try:
        ascii_form = domain_to_ascii(host.rstrip(".") or host)
    except IDNError as e:
        raise ValueError(f"expected an IP address or host name in {text!r}: {e}") from None
    return ascii_form


def unspecified(host: str) -> bool:
    return is_ip(host) and ipaddress.ip_address(host).is_unspecified


def ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def endpoints_clash(a: Endpoint, b: Endpoint) -> bool:
    """Two listeners that cannot both be bound: same endpoint, or a wildcard covering the other."""
    if a.port != b.port:
        return False
    if a == b:
        return True
    va, vb = ip_version(a.host), ip_version(b.host)
    if va is None or vb is None or va != vb:
        return False
    return unspecified(a.host) or unspecified(b.host)


def loopback(host: str) -> bool:
    return is_ip(host) and ipaddress.ip_address(host).is_loopback
