"""Server-side SASL (RFC 6120 §6): SCRAM-SHA-1/-256 and PLAIN, driven in memory."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerolink.proto import sasl
from zerolink.proto.sasl import (
    MECHANISMS,
    Challenge,
    SASLFailure,
    SASLServer,
    ScramCredentials,
    Success,
    decode_payload,
    derive_credentials,
    encode_payload,
    offered_mechanisms,
)

HASH_OF = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}


class Store:
    """An in-memory credential store; records every lookup."""

    def __init__(self) -> None:
        self.creds: dict[tuple[str, str], ScramCredentials] = {}
        self.calls: list[tuple[str, str]] = []

    def add(self, username: str, password: str, *, iterations: int = 4096) -> None:
        for h in ("sha1", "sha256"):
            self.creds[username, h] = derive_credentials(password, h, iterations=iterations)

    def __call__(self, username: str, mechanism_hash: str) -> ScramCredentials | None:
        self.calls.append((username, mechanism_hash))
        return self.creds.get((username, mechanism_hash))


@pytest.fixture
def store() -> Store:
    s = Store()
    s.add("juliet", "r0m30myr0m30")
    return s


def fixed(nonce: str):
    return lambda: nonce


def failure(exc: pytest.ExceptionInfo[SASLFailure]) -> str:
    return exc.value.condition


# --- an independent SCRAM client (RFC 5802 §3) -------------------------------------------


def escape(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    def __init__(
        self,
        hash_name: str,
        username: str,
        password: str,
        *,
        authzid: str | None = None,
        flag: str = "n",
        cnonce: str | None = None,
    ) -> None:
        self.h = hash_name
        self.password = password
        self.gs2 = f"{flag},{'a=' + escape(authzid) if authzid else ''},"
        self.cnonce = cnonce or secrets.token_urlsafe(12)
        self.first_bare = f"n={escape(username)},r={self.cnonce}"

    def first(self) -> bytes:
        return (self.gs2 + self.first_bare).encode()

    def final(self, server_first: bytes, *, extra: str = "") -> bytes:
        attrs = dict(a.split("=", 1) for a in server_first.decode().split(","))
        assert attrs["r"].startswith(self.cnonce)
        salt = base64.b64decode(attrs["s"])
        salted = hashlib.pbkdf2_hmac(self.h, self.password.encode(), salt, int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", self.h).digest()
        stored_key = hashlib.new(self.h, client_key).digest()
        cbind = base64.b64encode(self.gs2.encode()).decode()
        without_proof = f"c={cbind},r={attrs['r']}{extra}"
        auth = f"{self.first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.new(stored_key, auth, self.h).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", self.h).digest()
        self.expected_v = b"v=" + base64.b64encode(hmac.new(server_key, auth, self.h).digest())
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def scram_login(server: SASLServer, client: ScramClient) -> Success:
    challenge = server.step(client.first())
    assert isinstance(challenge, Challenge)
    result = server.step(client.final(challenge.data))
    assert isinstance(result, Success)
    assert result.data == client.expected_v
    assert server.finished
    return result


# --- RFC test vectors ---------------------------------------------------------------------


def test_rfc5802_example_scram_sha1():
    creds = derive_credentials(
        "pencil", "sha1", salt=base64.b64decode("QSXCR+Q6sek8bf92"), iterations=4096
    )
    calls = []

    def lookup(username: str, h: str) -> ScramCredentials | None:
        calls.append((username, h))
        return creds if (username, h) == ("user", "sha1") else None

    server = SASLServer("SCRAM-SHA-1", lookup, tls=False, nonce_factory=fixed("3rfcNHYJY1ZVvWVs7j"))
    first = server.step(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")
    assert first == Challenge(
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
    )
    final = server.step(
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    )
    assert final == Success(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=", "user", None)
    assert calls == [("user", "sha1")]


def test_rfc7677_example_scram_sha256():
    creds = derive_credentials(
        "pencil", "sha256", salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), iterations=4096
    )

    def lookup(username: str, h: str) -> ScramCredentials | None:
        return creds if (username, h) == ("user", "sha256") else None

    server = SASLServer(
        "SCRAM-SHA-256", lookup, tls=False, nonce_factory=fixed("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    )
    first = server.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert first == Challenge(
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    final = server.step(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert final == Success(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", "user", None)


# --- SCRAM with the independent client -----------------------------------------------------


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
@pytest.mark.parametrize("flag", ["n", "y"])
def test_scram_full_exchange(store: Store, mech: str, flag: str):
    server = SASLServer(mech, store, tls=False)
    result = scram_login(server, ScramClient(HASH_OF[mech], "juliet", "r0m30myr0m30", flag=flag))
    assert result.username == "juliet"
    assert result.authzid is None
    assert store.calls == [("juliet", HASH_OF[mech])]


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_custom_salt_and_iterations(mech: str):
    s = Store()
    s.add("romeo", "wherefore", iterations=5000)
    server = SASLServer(mech, s, tls=True)
    challenge = server.step(ScramClient(HASH_OF[mech], "romeo", "x", cnonce="abc").first())
    assert challenge.data.endswith(b",i=5000")
    server = SASLServer(mech, s, tls=True)
    scram_login(server, ScramClient(HASH_OF[mech], "romeo", "wherefore"))


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_wrong_password(store: Store, mech: str):
    server = SASLServer(mech, store, tls=False)
    client = ScramClient(HASH_OF[mech], "juliet", "wrong")
    challenge = server.step(client.first())
    with pytest.raises(SASLFailure) as exc:
        server.step(client.final(challenge.data))
    assert failure(exc) == "not-authorized"
    assert server.finished


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_unknown_user_looks_like_a_wrong_password(store: Store, mech: str):
    secret = b"k" * 32
    texts = []
    for user, password in [("juliet", "wrong"), ("nobody", "r0m30myr0m30")]:
        server = SASLServer(mech, store, tls=False, secret=secret)
        client = ScramClient(HASH_OF[mech], user, password)
        challenge = server.step(client.first())
        m = re.fullmatch(rb"r=([!-+\--~]+),s=([A-Za-z0-9+/]+=*),i=4096", challenge.data)
        assert m is not None
        assert m.group(1).startswith(client.cnonce.encode())
        assert len(base64.b64decode(m.group(2))) == 16
        with pytest.raises(SASLFailure) as exc:
            server.step(client.final(challenge.data))
        assert failure(exc) == "not-authorized"
        texts.append(exc.value.text)
    assert texts[0] == texts[1]


def salt_of(challenge: Challenge) -> bytes:
    return dict(a.split(b"=", 1) for a in challenge.data.split(b","))[b"s"]


def test_unknown_user_gets_a_stable_salt(store: Store):
    def first(user: str, secret: bytes, mech: str = "SCRAM-SHA-256") -> bytes:
        server = SASLServer(mech, store, tls=False, secret=secret)
        return salt_of(server.step(ScramClient(HASH_OF[mech], user, "x").first()))

    a, b = b"a" * 32, b"b" * 32
    assert first("nobody", a) == first("nobody", a)  # same on every attempt ("restart" too)
    assert first("nobody", a) != first("someone", a)
    assert first("nobody", a) != first("nobody", b)
    assert first("nobody", a) != first("nobody", a, "SCRAM-SHA-1")
    assert first("NoBody", a) == first("nobody", a)  # normalized before the HMAC


def test_unknown_user_fake_iterations(store: Store):
    server = SASLServer("SCRAM-SHA-1", store, tls=False, fake_iterations=10000)
    assert server.step(b"n,,n=ghost,r=abc").data.endswith(b",i=10000")


def test_account_without_the_requested_hash_fails_like_unknown():
    s = Store()
    s.creds["juliet", "sha256"] = derive_credentials("pw", "sha256")
    server = SASLServer("SCRAM-SHA-1", s, tls=False)
    client = ScramClient("sha1", "juliet", "pw")
    challenge = server.step(client.first())
    with pytest.raises(SASLFailure) as exc:
        server.step(client.final(challenge.data))
    assert failure(exc) == "not-authorized"


def test_scram_nonce_mismatch(store: Store):
    for bad_nonce in ["cnonce", "cnonceSNONCEx", "xcnonceSNONCE", "cnonceSNONC"]:
        server = SASLServer("SCRAM-SHA-256", store, tls=False, nonce_factory=fixed("SNONCE"))
        client = ScramClient("sha256", "juliet", "r0m30myr0m30", cnonce="cnonce")
        challenge = server.step(client.first())
        final = client.final(challenge.data).replace(b"r=cnonceSNONCE", b"r=" + bad_nonce.encode())
        with pytest.raises(SASLFailure) as exc:
            server.step(final)
        assert failure(exc) == "malformed-request"


def test_scram_channel_binding_flag_p_is_refused(store: Store):
    for mech in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
        server = SASLServer(mech, store, tls=True)
        with pytest.raises(SASLFailure) as exc:
            server.step(b"p=tls-exporter,,n=juliet,r=abc")
        assert failure(exc) == "malformed-request"
        assert "PLUS" in exc.value.text


def test_scram_channel_binding_must_match_gs2_header(store: Store):
    for sent, cbind in [("n", "y,,"), ("y", "n,,"), ("n", "n,a=juliet@example.com,")]:
        server = SASLServer("SCRAM-SHA-256", store, tls=False)
        client = ScramClient("sha256", "juliet", "r0m30myr0m30", flag=sent)
        challenge = server.step(client.first())
        client.gs2 = cbind  # the client lies about its header in c=
        with pytest.raises(SASLFailure) as exc:
            server.step(client.final(challenge.data))
        assert failure(exc) == "malformed-request"


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_authzid_passthrough(store: Store, mech: str):
    server = SASLServer(mech, store, tls=False)
    client = ScramClient(HASH_OF[mech], "juliet", "r0m30myr0m30", authzid="juliet@example.com")
    assert client.first().startswith(b"n,a=juliet@example.com,n=juliet,")
    result = scram_login(server, client)
    assert (result.username, result.authzid) == ("juliet", "juliet@example.com")


def test_scram_escaped_authzid(store: Store):
    server = SASLServer("SCRAM-SHA-256", store, tls=False)
    client = ScramClient("sha256", "juliet", "r0m30myr0m30", authzid="we,ird=jid")
    assert b"a=we=2Cird=3Djid," in client.first()
    assert scram_login(server, client).authzid == "we,ird=jid"


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_escaped_username(mech: str):
    s = Store()
    s.add("a,b=c", "secret")
    server = SASLServer(mech, s, tls=False)
    client = ScramClient(HASH_OF[mech], "a,b=c", "secret")
    assert b"n=a=2Cb=3Dc," in client.first()
    assert scram_login(server, client).username == "a,b=c"
    assert s.calls == [("a,b=c", HASH_OF[mech])]


def test_scram_lowercase_escapes_and_case_mapping():
    s = Store()
    s.add("a,b=c", "secret")
    server = SASLServer("SCRAM-SHA-256", s, tls=False)
    client = ScramClient("sha256", "x", "secret")
    client.first_bare = f"n=A=2cB=3dC,r={client.cnonce}"
    assert scram_login(server, client).username == "a,b=c"


def test_scram_username_normalized_with_precis():
    s = Store()
    s.add("juliet", "pw")
    server = SASLServer("SCRAM-SHA-1", s, tls=False)
    assert scram_login(server, ScramClient("sha1", "JULIET", "pw")).username == "juliet"
    s.add("ñandú", "pw")
    server = SASLServer("SCRAM-SHA-1", s, tls=False)
    # decomposed input (NFD) is composed and case-mapped
    assert scram_login(server, ScramClient("sha1", "N\u0303andu\u0301", "pw")).username == "ñandú"


@pytest.mark.parametrize("user", ["juliet@example.com", "a b", "a/b", "x\u200by", "a" * 1024])
def test_scram_invalid_localpart_is_refused(store: Store, user: str):
    server = SASLServer("SCRAM-SHA-256", store, tls=False)
    with pytest.raises(SASLFailure) as exc:
        server.step(ScramClient("sha256", user, "pw").first())
    assert failure(exc) == "not-authorized"
    assert store.calls == []


def test_scram_extensions_are_ignored_but_signed(store: Store):
    server = SASLServer("SCRAM-SHA-256", store, tls=False)
    client = ScramClient("sha256", "juliet", "r0m30myr0m30")
    client.first_bare += ",x=first-ext"
    challenge = server.step(client.first())
    result = server.step(client.final(challenge.data, extra=",y=final=ext"))
    assert result == Success(client.expected_v, "juliet", None)


@pytest.mark.parametrize(
    "message",
    [
        b"",  # second empty message (the first asks for the initial response)
        b"n,,",
        b"garbage",
        b"n,,n=juliet",
        b"n,,r=abc,n=juliet",
        b"n,,n=juliet,r=",
        b"n,,n=,r=abc",
        b"n,,n=jul=iet,r=abc",
        b"n,,n=jul=2Xiet,r=abc",
        b"n,,n=juliet,r=ab,c",
        b"n,,n=juliet,r=a\x7fb",
        b"n,,n=juliet,r=abc,n=juliet",
        b"n,,n=juliet,r=abc,x=",
        b"n,,n=juliet,r=abc,xx=1",
        b"n,,m=ext,n=juliet,r=abc",
        b"n,,n=juliet,r=abc,m=ext",
        b"x,,n=juliet,r=abc",
        b"n,b=juliet,n=juliet,r=abc",
        b"n,a=,n=juliet,r=abc",
        b"n,,n=ju\x00liet,r=abc",
        b"n,,n=\xff\xfe,r=abc",
        b"n,,n=juliet,r=abc" + b"x" * 20000,
    ],
)
def test_scram_malformed_client_first(store: Store, message: bytes):
    server = SASLServer("SCRAM-SHA-256", store, tls=False)
    if message == b"":
        assert server.step(b"") == Challenge(b"")
    with pytest.raises(SASLFailure) as exc:
        server.step(message)
    assert failure(exc) == "malformed-request"
    assert store.calls == []
    with pytest.raises(SASLFailure):
        server.step(b"n,,n=juliet,r=abc")  # over after a failure


@pytest.mark.parametrize(
    "make_final",
    [
        lambda good: good.replace(b",p=", b",x=1,p=", 1).split(b",p=")[0],  # no proof
        lambda good: good.split(b",", 1)[1],  # no c=
        lambda good: b",".join(reversed(good.split(b","))),  # order swapped
        lambda good: good[: good.index(b",p=")] + b",p=not base64!",
        lambda good: good[: good.index(b",p=")] + b",p=",
        lambda good: good[: good.index(b",p=")] + b",p=AAAA=",
        lambda good: good.replace(b"c=biws", b"c=bi ws"),
        lambda good: good.replace(b"c=biws", b"c="),
        lambda good: good.replace(b"c=biws", b"c=biws,m=1"),
        lambda good: good.replace(b"c=biws", b"c=biws,r=x"),
        lambda good: good + b"\xff",
        lambda good: good.replace(b"c=biws", b"c=bi\x00ws"),
    ],
)
def test_scram_malformed_client_final(store: Store, make_final):
    server = SASLServer("SCRAM-SHA-1", store, tls=False)
    client = ScramClient("sha1", "juliet", "r0m30myr0m30")
    good = client.final(server.step(client.first()).data)
    with pytest.raises(SASLFailure) as exc:
        server.step(make_final(good))
    assert failure(exc) == "malformed-request"


def test_scram_short_proof_is_not_authorized(store: Store):
    server = SASLServer("SCRAM-SHA-256", store, tls=False)
    client = ScramClient("sha256", "juliet", "r0m30myr0m30")
    good = client.final(server.step(client.first()).data)
    with pytest.raises(SASLFailure) as exc:
        server.step(good[: good.index(b",p=")] + b",p=" + base64.b64encode(b"x" * 20))
    assert failure(exc) == "not-authorized"


def test_no_initial_response_gets_an_empty_challenge(store: Store):
    server = SASLServer("SCRAM-SHA-256", store, tls=False)
    assert server.step(b"") == Challenge(b"")
    scram_login(server, ScramClient("sha256", "juliet", "r0m30myr0m30"))


def test_step_after_success_raises(store: Store):
    server = SASLServer("SCRAM-SHA-256", store, tls=False)
    scram_login(server, ScramClient("sha256", "juliet", "r0m30myr0m30"))
    with pytest.raises(SASLFailure) as exc:
        server.step(b"")
    assert failure(exc) == "malformed-request"


def test_abort(store: Store):
    server = SASLServer("SCRAM-SHA-256", store, tls=False)
    server.step(b"n,,n=juliet,r=abc")
    assert server.abort().condition == "aborted"
    assert server.finished
    with pytest.raises(SASLFailure):
        server.step(b"c=biws,r=abc,p=AAAA")


def test_default_nonce_is_random_and_long(store: Store):
    nonces = set()
    for _ in range(2):
        server = SASLServer("SCRAM-SHA-256", store, tls=False)
        data = server.step(b"n,,n=juliet,r=abc").data.decode()
        nonce = data.split(",")[0][2:]
        assert nonce.startswith("abc") and len(nonce) >= 3 + 24
        nonces.add(nonce)
    assert len(nonces) == 2


def test_bad_nonce_factory_is_a_programming_error(store: Store):
    server = SASLServer("SCRAM-SHA-256", store, tls=False, nonce_factory=fixed("a,b"))
    with pytest.raises(ValueError):
        server.step(b"n,,n=juliet,r=abc")


@settings(max_examples=300, deadline=None)
@given(first=st.binary(max_size=200), final=st.binary(max_size=200))
def test_arbitrary_input_only_raises_sasl_failure(first: bytes, final: bytes):
    s = Store()
    s.creds["juliet", "sha256"] = derive_credentials("pw", "sha256", salt=b"s" * 16)
    server = SASLServer("SCRAM-SHA-256", s, tls=False)
    try:
        server.step(first)
        server.step(final)
    except SASLFailure as exc:
        assert exc.condition in sasl.SASL_CONDITIONS


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_scram_text_only_raises_sasl_failure(text: str):
    s = Store()
    for data in (f"n,,n={text},r=abc", f"n,,n=x,r=abc,{text}", text):
        server = SASLServer("SCRAM-SHA-1", s, tls=False)
        with contextlib.suppress(SASLFailure):
            server.step(data.encode("utf-8", "surrogatepass"))


# --- PLAIN ------------------------------------------------------------------------------------


def test_plain_needs_tls(store: Store):
    with pytest.raises(SASLFailure) as exc:
        SASLServer("PLAIN", store, tls=False)
    assert failure(exc) == "encryption-required"


def test_plain_over_tls(store: Store):
    server = SASLServer("PLAIN", store, tls=True)
    assert server.step(b"\x00juliet\x00r0m30myr0m30") == Success(None, "juliet", None)
    assert store.calls == [("juliet", "sha256")]
    server = SASLServer("PLAIN", store, tls=True)
    result = server.step(b"juliet@example.com\x00Juliet\x00r0m30myr0m30")
    assert result == Success(None, "juliet", "juliet@example.com")


def test_plain_without_initial_response(store: Store):
    server = SASLServer("PLAIN", store, tls=True)
    assert server.step(b"") == Challenge(b"")
    assert server.step(b"\x00juliet\x00r0m30myr0m30").username == "juliet"


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("juliet", "wrong"),
        ("juliet", "R0M30MYR0M30"),
        ("nobody", "r0m30myr0m30"),
        ("juliet", "\x07"),
    ],
)
def test_plain_wrong_credentials(store: Store, user: str, password: str):
    server = SASLServer("PLAIN", store, tls=True)
    with pytest.raises(SASLFailure) as exc:
        server.step(f"\x00{user}\x00{password}".encode())
    assert failure(exc) == "not-authorized"
    assert exc.value.text == sasl._BAD_CREDENTIALS
    assert server.finished


def test_plain_password_prepared_with_opaquestring():
    s = Store()
    s.add("juliet", "two\u00a0words")  # NO-BREAK SPACE maps to SPACE
    assert SASLServer("PLAIN", s, tls=True).step(b"\x00juliet\x00two words").username == "juliet"
    s.add("romeo", "e\u0301")  # NFC
    assert SASLServer("PLAIN", s, tls=True).step("\x00romeo\x00é".encode()).username == "romeo"


def test_plain_only_sha1_credentials_is_not_enough():
    s = Store()
    s.creds["juliet", "sha1"] = derive_credentials("pw", "sha1")
    with pytest.raises(SASLFailure) as exc:
        SASLServer("PLAIN", s, tls=True).step(b"\x00juliet\x00pw")
    assert failure(exc) == "not-authorized"


@pytest.mark.parametrize(
    "message",
    [
        b"julietr0m30myr0m30",
        b"juliet\x00r0m30myr0m30",
        b"\x00\x00juliet\x00r0m30myr0m30",
        b"\x00juliet\x00r0m30\x00myr0m30",
        b"\x00\x00r0m30myr0m30",
        b"\x00juliet\x00",
        b"\x00juli\xffet\x00r0m30myr0m30",
        b"\xc0\x80\x00juliet\x00r0m30myr0m30",
    ],
)
def test_plain_malformed(store: Store, message: bytes):
    server = SASLServer("PLAIN", store, tls=True)
    with pytest.raises(SASLFailure) as exc:
        server.step(message)
    assert failure(exc) == "malformed-request"
    assert store.calls == []


def test_plain_invalid_username(store: Store):
    with pytest.raises(SASLFailure) as exc:
        SASLServer("PLAIN", store, tls=True).step(b"\x00juliet@example.com\x00pw")
    assert failure(exc) == "not-authorized"


# --- mechanisms, failures, payload and derivation helpers ---------------------------------


def test_offered_mechanisms():
    assert offered_mechanisms(tls=False) == ["SCRAM-SHA-256", "SCRAM-SHA-1"]
    assert offered_mechanisms(tls=True) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
    assert set(MECHANISMS) == {"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}
    assert not any(m.endswith("-PLUS") for m in offered_mechanisms(tls=True))


@pytest.mark.parametrize("name", ["DIGEST-MD5", "SCRAM-SHA-1-PLUS", "scram-sha-1", "", "X"])
def test_unknown_mechanism(store: Store, name: str):
    with pytest.raises(SASLFailure) as exc:
        SASLServer(name, store, tls=True)
    assert failure(exc) == "invalid-mechanism"


def test_sasl_failure_conditions():
    assert len(sasl.SASL_CONDITIONS) == 11
    f = SASLFailure("temporary-auth-failure", "try later")
    assert (f.condition, f.text) == ("temporary-auth-failure", "try later")
    with pytest.raises(ValueError):
        SASLFailure("bad-request")


@pytest.mark.parametrize(
    ("text", "data"),
    [("", b""), ("=", b""), ("AA==", b"\x00"), ("Zm9vYmFy", b"foobar"), ("biws", b"n,,")],
)
def test_decode_payload(text: str, data: bytes):
    assert decode_payload(text) == data


@pytest.mark.parametrize("text", ["AA", "AA=", "AB==", "Zm9v\nYmFy", " Zm9v", "Zm9v!", "é", "=="])
def test_decode_payload_rejects(text: str):
    with pytest.raises(SASLFailure) as exc:
        decode_payload(text)
    assert failure(exc) == "incorrect-encoding"


def test_encode_payload():
    assert encode_payload(None) == ""
    assert encode_payload(b"") == "="
    assert encode_payload(b"v=rmF9") == "dj1ybUY5"
    for data in (b"", b"x", b"n,,n=user,r=abc"):
        assert decode_payload(encode_payload(data)) == data


def test_derive_credentials():
    a = derive_credentials("pencil", "sha256")
    b = derive_credentials("pencil", "sha256")
    assert len(a.salt) == 16 and a.salt != b.salt
    assert a.iterations == 4096
    assert len(a.stored_key) == len(a.server_key) == 32
    assert len(derive_credentials("pencil", "sha1").stored_key) == 20
    assert "stored_key" not in repr(a) and a.stored_key.hex() not in repr(a)
    c = derive_credentials("pencil", "sha256", salt=a.salt)
    assert c == a
    for bad in (
        lambda: derive_credentials("pencil", "md5"),
        lambda: derive_credentials("", "sha1"),
        lambda: derive_credentials("bell\x07", "sha1"),
        lambda: derive_credentials("pencil", "sha1", iterations=0),
        lambda: derive_credentials("pencil", "sha1", salt=b""),
    ):
        with pytest.raises(ValueError):
            bad()


# --- slixmpp's client mechanisms against this server ----------------------------------------


def slixmpp_mechanism(name: str, username: str, password: str, *, tls: bool, authzid: str = ""):
    from slixmpp.util.sasl import client as sasl_client
    from slixmpp.util.sasl import mechanisms  # noqa: F401  (registers the mechanisms)

    def credentials(required, optional):
        return {"username": username, "password": password, "authzid": authzid}

    def security(wanted):
        return {
            "encrypted": tls,
            "encrypted_plain": True,
            "unencrypted_plain": False,
            "unencrypted_scram": True,
            "binding_proposed": False,
            "tls_version": "TLSv1.3" if tls else None,
        }

    mech = sasl_client.choose([name], credentials, security)
    assert mech.name == name
    return mech


def drive(mech, server: SASLServer) -> Success:
    """Run slixmpp's mechanism against the server, through the base64 helpers both ways."""
    response = mech.process()
    while True:
        result = server.step(decode_payload(base64.b64encode(response).decode() or "="))
        payload = decode_payload(encode_payload(result.data)) if result.data else b""
        if isinstance(result, Success):
            if payload:
                mech.process(payload)  # checks v= (raises SASLMutualAuthFailed if wrong)
            return result
        response = mech.process(payload)


@pytest.mark.parametrize("name", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
@pytest.mark.parametrize("tls", [False, True])
def test_slixmpp_scram(store: Store, name: str, tls: bool):
    mech = slixmpp_mechanism(name, "juliet", "r0m30myr0m30", tls=tls)
    result = drive(mech, SASLServer(name, store, tls=tls))
    assert result.username == "juliet" and result.authzid is None
    assert mech._mutual_auth  # slixmpp verified our server signature


@pytest.mark.parametrize("name", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_slixmpp_scram_authzid_and_escapes(name: str):
    s = Store()
    s.add("a,b=c", "pässwörd")
    mech = slixmpp_mechanism(name, "a,b=c", "pässwörd", tls=True, authzid="a,b=c@example.com")
    result = drive(mech, SASLServer(name, s, tls=True))
    assert (result.username, result.authzid) == ("a,b=c", "a,b=c@example.com")


@pytest.mark.parametrize("name", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_slixmpp_scram_wrong_password(store: Store, name: str):
    mech = slixmpp_mechanism(name, "juliet", "nope", tls=True)
    with pytest.raises(SASLFailure) as exc:
        drive(mech, SASLServer(name, store, tls=True))
    assert failure(exc) == "not-authorized"


def test_slixmpp_plain(store: Store):
    mech = slixmpp_mechanism("PLAIN", "juliet", "r0m30myr0m30", tls=True)
    assert drive(mech, SASLServer("PLAIN", store, tls=True)) == Success(None, "juliet", None)
    mech = slixmpp_mechanism("PLAIN", "juliet", "nope", tls=True)
    with pytest.raises(SASLFailure) as exc:
        drive(mech, SASLServer("PLAIN", store, tls=True))
    assert failure(exc) == "not-authorized"
