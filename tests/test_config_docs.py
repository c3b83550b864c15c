"""docs/configuration.md agrees with the configuration schema (zerolink.config.schema).

The hand-written sections document every key, no key that does not exist, and each key's
default and bound as the schema states them; the generated key reference is up to date
(``python -m zerolink.config.reference docs/configuration.md`` rewrites it).
"""

from __future__ import annotations

from pathlib import Path

from zerolink.config import reference
from zerolink.config.reference import Documented, bound_text, default_text, documented

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _name(table: str, key: str) -> str:
    return f"{table}.{key}" if table else key


def _disagreements(document: str) -> list[str]:
    """Every way `document` departs from the schema, one line each."""
    keys = reference.schema_keys()
    found = documented(document)
    out = []
    seen: dict[tuple[str, str], Documented] = {}
    for d in found:
        where = f"line {d.line}: {_name(d.table, d.key)}"
        s = keys.get((d.table, d.key))
        if s is None:
            out.append(f"{where}: documented, but there is no such key")
            continue
        if (d.table, d.key) in seen:
            out.append(f"{where}: documented twice (also line {seen[(d.table, d.key)].line})")
        seen[(d.table, d.key)] = d
        if d.default is not None and not d.default.startswith(default_text(s)):
            out.append(
                f"{where}: default {d.default!r}, expected it to start with {default_text(s)!r}"
            )
        if d.type is not None and bound_text(s) not in d.type:
            out.append(f"{where}: type {d.type!r} does not say {bound_text(s)!r}")
    for table, key in keys:
        if (table, key) not in seen:
            out.append(f"{_name(table, key)}: not documented")
        elif keys[(table, key)].kind != "custom" and seen[(table, key)].default is None:
            out.append(f"{_name(table, key)}: documented without its type and default")
    return out


def test_every_key_documented_with_its_default_and_bound() -> None:
    assert _disagreements(_text()) == []


def test_generated_key_reference_is_up_to_date() -> None:
    text = _text()
    assert reference.BEGIN in text and reference.END in text
    assert reference.update(text) == text, (
        "run: python -m zerolink.config.reference docs/configuration.md"
    )


def test_reference_lists_every_key_with_its_doc_string() -> None:
    generated = reference.reference()
    for (table, key), s in reference.schema_keys().items():
        if table:
            assert f"| `{key}` | {reference.type_text(s)} | {default_text(s)} | {s.doc} |" in (
                generated
            ), _name(table, key)


def test_check_notices_a_wrong_default() -> None:
    text = _text().replace("| integer >= 0 | `1000` |", "| integer >= 0 | `999` |", 1)
    assert any("host.offline_limit: default '`999`'" in p for p in _disagreements(text))


def test_check_notices_a_wrong_bound() -> None:
    text = _text().replace("| duration > 0 | `60` | `auth_timeout", "| duration | `60` | `x", 1)
    assert any("host.auth_timeout: type 'duration'" in p for p in _disagreements(text))


def test_check_notices_a_key_that_does_not_exist() -> None:
    text = _text().replace("### `max_depth`", "### `max_deep`", 1)
    problems = _disagreements(text)
    assert any("server.max_deep: documented, but there is no such key" in p for p in problems)
    assert "server.max_depth: not documented" in problems


def test_check_notices_an_undocumented_key() -> None:
    text = _text().replace(
        "| `keepalive` | duration >= 0 | `60` |", "| `keepalive_` | duration >= 0 | `60` |", 1
    )
    assert "peer.keepalive: not documented" in _disagreements(text)
