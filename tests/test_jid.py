"""RFC 7622 addresses: zerolink.jid."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from zerolink import jid as jidmod
from zerolink.errors import StanzaError, StreamError
from zerolink.jid import (
    JID,
    JIDError,
    jid_domain,
    normalize_domain,
    parse_jid,
    stanza_error_for,
    stream_error_for,
)

# RFC 7622 §3.5, with the normalized (local, domain, resource) each must give.
RFC_VALID = [
    ("juliet@example.com", ("juliet", "example.com", None)),
    ("juliet@example.com/foo", ("juliet", "example.com", "foo")),
    ("juliet@example.com/foo bar", ("juliet", "example.com", "foo bar")),
    ("juliet@example.com/foo@bar", ("juliet", "example.com", "foo@bar")),
    ("foo\\20bar@example.com", ("foo\\20bar", "example.com", None)),
    ("fussball@example.com", ("fussball", "example.com", None)),
    ("fußball@example.com", ("fußball", "example.com", None)),
    ("π@example.com", ("π", "example.com", None)),
    ("Σ@example.com/foo", ("σ", "example.com", "foo")),
    ("σ@example.com/foo", ("σ", "example.com", "foo")),
    ("ς@example.com/foo", ("ς", "example.com", "foo")),
    ("king@example.com/♚", ("king", "example.com", "♚")),
    ("example.com", (None, "example.com", None)),
    ("example.com/foobar", (None, "example.com", "foobar")),
    ("a.example.com/b@example.net", (None, "a.example.com", "b@example.net")),
]

# RFC 7622 §3.6, then the obvious ones.
INVALID = [
    '"juliet"@example.com',
    "foo bar@example.com",
    "henry\u2163@example.com",  # ROMAN NUMERAL FOUR: compatibility character
    "♚@example.com",
    "juliet@",
    "/foobar",
    "",
    "@example.com",
    "@",
    "a@",
    "a@/r",
    "a@example.com/",
    "example.com/",
    "/",
    *(f"a{c}b@example.com" for c in "\"&'<>:"),
    "a＠b@example.com",  # FULLWIDTH COMMERCIAL AT becomes '@' under width mapping
    "a\uff0fb@example.com",  # FULLWIDTH SOLIDUS becomes '/' likewise
    "juliet@exa\uff0fmple.com",
    "a\tb@example.com",
    "juliet@example.com/a\tb",
    "juliet@exa mple.com",
    "juliet@exa_mple.com",
    "juliet@-example.com",
    "juliet@example-.com",
    "juliet@ab--cd.com",
    "juliet@xn--.com",
    "juliet@xn--a.com",  # not valid Punycode content
    "juliet@example..com",
    "juliet@.example.com",
    "juliet@example.com..",
    "juliet@.",
    "a@b@example.com",  # second '@' lands in the domainpart
    "[::1",
    "[1.2.3.4]",
    "[fe80::1%eth0]",
    "::1",
    "256.1.1.1",
    "01.2.3.4",
    "1.2.3",
    "example.123",
]


def parts(j: JID) -> tuple[str | None, str, str | None]:
    return (j.local, j.domain, j.resource)


@pytest.mark.parametrize(("text", "expected"), RFC_VALID)
def test_rfc7622_valid(text: str, expected: tuple[str | None, str, str | None]) -> None:
    j = JID.parse(text)
    assert parts(j) == expected
    assert parse_jid(text) == j
    assert jid_domain(text) == expected[1]


@pytest.mark.parametrize("text", INVALID)
def test_invalid(text: str) -> None:
    with pytest.raises(JIDError) as info:
        parse_jid(text)
    assert info.value.text
    assert isinstance(info.value, ValueError)
    with pytest.raises(JIDError):
        jid_domain(text)


def test_first_slash_then_first_at() -> None:
    assert parts(parse_jid("a@b/c@d/e")) == ("a", "b", "c@d/e")
    assert parts(parse_jid("b/c@d")) == (None, "b", "c@d")


def test_case_mapping() -> None:
    j = parse_jid("JuLiEt@EXAMPLE.Com/BalCony")
    assert parts(j) == ("juliet", "example.com", "BalCony")
    assert j == parse_jid("juliet@example.com/BalCony")
    assert j != parse_jid("juliet@example.com/balcony")
    assert parse_jid("ＪＵＬＩＥＴ@example.com").local == "juliet"  # width mapping


def test_unicode_domain() -> None:
    assert normalize_domain("Ümlaut.example") == "ümlaut.example"
    assert normalize_domain("xn--mlaut-jva.example") == "ümlaut.example"
    assert normalize_domain("XN--MLAUT-JVA.EXAMPLE") == "ümlaut.example"
    assert normalize_domain("ＥＸＡＭＰＬＥ．com") == "example.com"
    assert normalize_domain("例子.测试") == "例子.测试"
    assert parse_jid("juliet@Bücher.example") == parse_jid("juliet@xn--bcher-kva.example")


def test_ip_literals() -> None:
    assert normalize_domain("192.0.2.1") == "192.0.2.1"
    assert normalize_domain("[::1]") == "[::1]"
    assert normalize_domain("[2001:DB8:0:0::1]") == "[2001:db8::1]"
    j = parse_jid("juliet@[2001:db8::1]/r")
    assert parts(j) == ("juliet", "[2001:db8::1]", "r")
    assert str(j) == "juliet@[2001:db8::1]/r"
    assert parts(parse_jid("juliet@192.0.2.1/r")) == ("juliet", "192.0.2.1", "r")


def test_trailing_dot() -> None:
    assert normalize_domain("example.com.") == "example.com"
    assert normalize_domain("Bücher.example.") == "bücher.example"
    assert normalize_domain("example.com\u3002") == "example.com"  # IDEOGRAPHIC FULL STOP
    assert normalize_domain("192.0.2.1.") == "192.0.2.1"
    assert parse_jid("juliet@example.com./r") == parse_jid("juliet@example.com/r")
    for bad in (".", "example.com..", "example.com.\u3002"):
        with pytest.raises(JIDError):
            normalize_domain(bad)


def test_length_limits() -> None:
    assert parse_jid("a" * 1023 + "@example.com").local == "a" * 1023
    assert parse_jid("é" * 511 + "@example.com")  # 1022 octets
    assert parse_jid("example.com/" + "r" * 1023).resource == "r" * 1023
    assert parse_jid("example.com/" + "é" * 511)
    for bad in (
        "a" * 1024 + "@example.com",
        "é" * 512 + "@example.com",
        "example.com/" + "r" * 1024,
        "example.com/" + "é" * 512,
        "example.com/" + "r" * 5000,  # beyond MAX_JID_CHARS: rejected unread
    ):
        with pytest.raises(JIDError, match="longer than"):
            parse_jid(bad)

    label = "a" * 63
    assert normalize_domain(label + ".com") == label + ".com"
    with pytest.raises(JIDError):
        normalize_domain("a" * 64 + ".com")
    name = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 octets
    assert normalize_domain(name) == name
    assert normalize_domain(name + ".") == name
    with pytest.raises(JIDError):
        normalize_domain(name + "b")
    with pytest.raises(JIDError):
        normalize_domain("ü" * 60 + ".example")  # A-label over 63 octets


def test_bare_and_str() -> None:
    j = parse_jid("Juliet@Example.com/Balcony")
    assert str(j) == "juliet@example.com/Balcony"
    assert not j.is_bare()
    b = j.bare
    assert b.is_bare()
    assert str(b) == "juliet@example.com"
    assert b == parse_jid("juliet@example.com")
    assert b.bare is b
    assert str(parse_jid("Example.com")) == "example.com"
    assert str(parse_jid("example.com/r/s")) == "example.com/r/s"


def test_equality_hash_and_constructor() -> None:
    a = parse_jid("JULIET@example.com/r")
    b = parse_jid("juliet@EXAMPLE.COM./r")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, a.bare}) == 2
    built = JID("Juliet", "Example.COM", "r")
    assert built == a
    assert hash(built) == hash(a)
    assert JID(None, "example.com", None) == parse_jid("example.com")
    with pytest.raises(JIDError):
        JID("", "example.com", None)
    with pytest.raises(JIDError):
        JID("a b", "example.com", None)
    with pytest.raises(JIDError):
        JID(None, "exa mple.com", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.local = "romeo"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(a)) == a
    assert dataclasses.replace(a, resource=None) == a.bare


def test_memoized() -> None:
    assert parse_jid("romeo@example.net/orchard") is parse_jid("romeo@example.net/orchard")
    errors = []
    for _ in range(2):
        with pytest.raises(JIDError) as info:
            parse_jid("romeo@exa mple.net")
        errors.append(info.value)
    assert errors[0] is not errors[1]
    assert errors[0].text == errors[1].text
    jidmod.clear_caches()
    assert jid_domain("romeo@EXAMPLE.net/orchard") == "example.net"


def test_jid_domain_validates_whole_jid() -> None:
    assert jid_domain("Romeo@Example.NET/Orchard") == "example.net"
    with pytest.raises(JIDError):
        jid_domain("ro meo@example.net")
    with pytest.raises(JIDError):
        jid_domain("romeo@example.net/")


def test_protocol_errors() -> None:
    exc = JIDError("empty localpart")
    se = stanza_error_for(exc)
    assert isinstance(se, StanzaError)
    assert (se.condition, se.type, se.text) == ("jid-malformed", "modify", "empty localpart")
    st_err = stream_error_for(exc)
    assert isinstance(st_err, StreamError)
    assert (st_err.condition, st_err.text) == ("improper-addressing", "empty localpart")


# --- properties ------------------------------------------------------------------------

_local_chars = st.sampled_from("abcxyzABCXYZ0189.-_+!#$%=?~üÜßπΣσςжЖ")
_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True) | st.text(
    st.sampled_from("abcüöéжπ例子"), min_size=1, max_size=8
)
_resource_chars = st.characters(
    codec="utf-8", categories=("L", "M", "N", "P", "S", "Zs"), exclude_characters="\u3000"
)


@st.composite
def jid_strings(draw: st.DrawFn) -> str:
    domain = ".".join(draw(st.lists(_label, min_size=1, max_size=3)))
    if draw(st.booleans()):
        domain = domain.upper()
    s = domain
    if draw(st.booleans()):
        s = draw(st.text(_local_chars, min_size=1, max_size=12)) + "@" + s
    if draw(st.booleans()):
        s = s + "/" + draw(st.text(_resource_chars, min_size=1, max_size=12))
    return s


@settings(max_examples=60, deadline=None)
@given(jid_strings())
def test_round_trip(text: str) -> None:
    try:
        j = parse_jid(text)
    except JIDError:
        assume(False)
        raise
    again = parse_jid(str(j))
    assert again == j
    assert str(again) == str(j)
    assert hash(again) == hash(j)
    assert jid_domain(text) == j.domain == normalize_domain(j.domain)


@settings(max_examples=100, deadline=None)
@given(st.text(st.sampled_from("abzAZ09-.x_n"), max_size=20))
def test_ascii_domain_fast_path_agrees_with_idna(text: str) -> None:
    fast = jidmod._ascii_domain(text)
    if fast is not None:
        assert jidmod._idna_domain(text) == fast


@settings(max_examples=100, deadline=None)
@given(st.text(st.characters(min_codepoint=0, max_codepoint=127), min_size=1, max_size=12))
def test_ascii_local_and_resource_fast_paths_agree_with_precis(text: str) -> None:
    if jidmod._ASCII_LOCAL.fullmatch(text):
        assert jidmod._USERNAME.enforce(text) == text.lower()
        assert not jidmod._LOCAL_FORBIDDEN.intersection(text)
    if jidmod._ASCII_RESOURCE.fullmatch(text):
        assert jidmod._OPAQUE.enforce(text) == text
