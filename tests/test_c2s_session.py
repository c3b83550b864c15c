"""Transcript tests for the server side of RFC 6120 client streams, sans-I/O.

A `Client` parses what the session writes with a client-side `StreamParser`, so assertions
are on elements, not on byte strings. SCRAM is computed by slixmpp's client mechanism in the
happy path and by a small hashlib client (fixed nonces) where the transcript must be
deterministic.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
from collections.abc import Iterator

import pytest
from slixmpp.util.sasl.mechanisms import SCRAM

from zerolink.errors import STANZA_ERROR_NS, STREAM_ERROR_NS, STREAMS_NS
from zerolink.jid import JID
from zerolink.proto import c2s
from zerolink.proto.c2s import C2SSession
from zerolink.proto.sasl import SASL_NS, ScramCredentials, derive_credentials
from zerolink.xml.element import CLIENT_NS, SERVER_NS, Element
from zerolink.xml.parser import StanzaReceived, StreamClosed, StreamOpened, StreamParser

DOMAIN = "example.com"
PASSWORD = "r0m30myr0m30"
SALT = b"salt-of-juliet!!"
ITERATIONS = 4096
SNONCE = "3rfcNHYJY1ZVvWVs7j"
CNONCE = "fyko+d2lbbFgONRv9qkxdawL"

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION_NS = "urn:ietf:params:xml:ns:xmpp-session"
SM_NS = "urn:xmpp:sm:3"

CREDS: dict[tuple[str, str], ScramCredentials] = {
    ("juliet", h): derive_credentials(PASSWORD, h, salt=SALT, iterations=ITERATIONS)
    for h in ("sha1", "sha256")
}


def lookup(username: str, hash_name: str) -> ScramCredentials | None:
    return CREDS.get((username, hash_name))


def ids() -> Iterator[str]:
    return (f"s{i}" for i in itertools.count(1))


def new(**kw: object) -> C2SSession:
    counter = ids()
    args: dict[str, object] = {
        "domains": frozenset({DOMAIN}),
        "lookup": lookup,
        "stream_id_factory": lambda: next(counter),
        "tls_available": True,
        "nonce_factory": lambda: SNONCE,
    }
    args.update(kw)
    return C2SSession(**args)  # type: ignore[arg-type]


def header(to: str = DOMAIN, version: str | None = "1.0", ns: str = "jabber:client") -> bytes:
    v = f" version='{version}'" if version is not None else ""
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='{ns}' "
        f"xmlns:stream='http://etherx.jabber.org/streams' to='{to}'{v}>"
    ).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


STARTTLS = f"<starttls xmlns='{TLS_NS}'/>".encode()


def auth(mechanism: str, payload: bytes | None) -> bytes:
    text = "" if payload is None else (b64(payload) or "=")
    return f"<auth xmlns='{SASL_NS}' mechanism='{mechanism}'>{text}</auth>".encode()


def response(payload: bytes) -> bytes:
    return f"<response xmlns='{SASL_NS}'>{b64(payload)}</response>".encode()


def plain(user: str, password: str, authzid: str = "") -> bytes:
    return auth("PLAIN", f"{authzid}\0{user}\0{password}".encode())


def bind(resource: str | None = None, iq_id: str = "b1") -> bytes:
    inner = f"<resource>{resource}</resource>" if resource is not None else ""
    return (f"<iq type='set' id='{iq_id}'><bind xmlns='{BIND_NS}'>{inner}</bind></iq>").encode()


# -- an independent SCRAM client (RFC 5802) with a fixed nonce ----------------------------
def scram_first(user: str = "juliet") -> tuple[bytes, str]:
    bare = f"n={user},r={CNONCE}"
    return ("n,," + bare).encode(), bare


def server_first() -> str:
    return f"r={CNONCE}{SNONCE},s={b64(SALT)},i={ITERATIONS}"


def scram_final(
    bare: str, first: str, password: str = PASSWORD, hash_name: str = "sha256"
) -> tuple[bytes, bytes]:
    """(client-final-message, expected server-final-message)."""
    attrs = dict(kv.split("=", 1) for kv in first.split(","))
    salted = hashlib.pbkdf2_hmac(
        hash_name, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    without_proof = f"c={b64(b'n,,')},r={attrs['r']}"
    auth_message = f"{bare},{first},{without_proof}".encode()
    signature = hmac.digest(stored_key, auth_message, hash_name)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_key = hmac.digest(salted, b"Server Key", hash_name)
    verifier = b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, hash_name))
    return f"{without_proof},p={b64(proof)}".encode(), verifier


# -- the client side of the transcript ----------------------------------------------------
class Client:
    """Feeds a session and parses what it writes, restarting its parser like a client."""

    def __init__(self, session: C2SSession) -> None:
        self.s = session
        self.restart()

    def restart(self) -> None:
        self.parser = StreamParser(content_ns=CLIENT_NS)
        self.opened: dict[str, str] | None = None
        self.closed = False

    def send(self, data: bytes, now: float = 0.0) -> list[c2s.Event]:
        return self.s.receive_data(data, now)

    def read(self) -> list[Element]:
        out = []
        for ev in self.parser.feed(self.s.data_to_send()):
            if isinstance(ev, StreamOpened):
                self.opened = ev.attrs
            elif isinstance(ev, StanzaReceived):
                out.append(ev.element)
            elif isinstance(ev, StreamClosed):
                self.closed = True
        return out

    def one(self) -> Element:
        (el,) = self.read()
        return el


def features(client: Client) -> Element:
    (el,) = client.read()
    assert el.tag == f"{{{STREAMS_NS}}}features"
    return el


def mechanisms(feats: Element) -> list[str]:
    mechs = feats.find(f"{{{SASL_NS}}}mechanisms")
    return [] if mechs is None else [m.text for m in mechs.elements()]


def sasl_condition(el: Element) -> str:
    assert el.tag == f"{{{SASL_NS}}}failure", el.tag
    return next(c.local for c in el.elements() if c.local != "text")


def stream_error_of(els: list[Element]) -> str | None:
    for el in els:
        if el.tag == f"{{{STREAMS_NS}}}error":
            return next(c.local for c in el.elements() if c.namespace == STREAM_ERROR_NS)
    return None


def iq_error_of(el: Element) -> tuple[str, str]:
    err = el.find(f"{{{SERVER_NS}}}error")
    assert el.get("type") == "error" and err is not None
    cond = next(c.local for c in err.elements() if c.namespace == STANZA_ERROR_NS)
    return cond, err.get("type") or ""


def kinds(events: list[c2s.Event]) -> list[type]:
    return [type(e) for e in events]


def secure_session(**kw: object) -> Client:
    """A client past STARTTLS, looking at the SASL features."""
    c = Client(new(**kw))
    c.send(header())
    c.read()
    assert c.send(STARTTLS) == [c2s.StartTLS()]
    c.read()
    c.s.tls_established(0.0)
    c.restart()
    c.send(header())
    features(c)
    return c


def authenticated(**kw: object) -> Client:
    """A client past SASL (PLAIN over TLS) and the restart, looking at the bind features."""
    c = secure_session(**kw)
    assert c.send(plain("juliet", PASSWORD)) == [c2s.Authenticated("juliet", DOMAIN)]
    c.read()
    c.restart()
    c.send(header())
    features(c)
    return c


def bound(resource: str = "balcony", **kw: object) -> Client:
    c = authenticated(**kw)
    assert c.send(bind(resource)) == [c2s.BindRequest(resource)]
    c.s.bind_succeeded(JID.parse(f"juliet@{DOMAIN}/{resource}"))
    c.read()
    return c


# -- the happy path ------------------------------------------------------------------------
def test_full_session_starttls_scram_sha256_bind_message():
    c = Client(new())
    s = c.s
    assert s.timer() == 60.0

    # Stream header and the first features: STARTTLS only, required.
    assert c.send(header()) == []
    feats = features(c)
    assert c.opened is not None
    assert c.opened["from"] == DOMAIN and c.opened["id"] == "s1"
    assert c.opened["version"] == "1.0"
    assert c.opened["{http://www.w3.org/XML/1998/namespace}lang"] == "en"
    tls = feats.find(f"{{{TLS_NS}}}starttls")
    assert tls is not None and tls.find(f"{{{TLS_NS}}}required") is not None
    assert mechanisms(feats) == []

    # STARTTLS: <proceed/>, then the driver upgrades and the stream restarts.
    assert c.send(STARTTLS) == [c2s.StartTLS()]
    assert c.one().tag == f"{{{TLS_NS}}}proceed"
    assert s.state is c2s.State.WAIT_TLS
    s.tls_established(1.0)
    assert s.secure and s.state is c2s.State.WAIT_HEADER
    c.restart()
    assert c.send(header()) == []
    feats = features(c)
    assert c.opened is not None and c.opened["id"] == "s2"
    assert feats.find(f"{{{TLS_NS}}}starttls") is None
    assert mechanisms(feats) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]

    # SCRAM-SHA-256, with slixmpp's client.
    mech = SCRAM(
        "SCRAM-SHA-256",
        {"username": b"juliet", "password": PASSWORD.encode(), "authzid": b""},
        {"encrypted": True, "unencrypted_scram": False, "binding_proposed": False},
    )
    assert c.send(auth("SCRAM-SHA-256", mech.process(b""))) == []
    challenge = c.one()
    assert challenge.tag == f"{{{SASL_NS}}}challenge"
    final = mech.process(base64.b64decode(challenge.text))
    assert c.send(response(final)) == [c2s.Authenticated("juliet", DOMAIN)]
    success = c.one()
    assert success.tag == f"{{{SASL_NS}}}success"
    mech.process(base64.b64decode(success.text))  # verifies the server signature
    assert mech._mutual_auth
    assert s.authenticated_user == "juliet" and s.state is c2s.State.WAIT_HEADER

    # Restart: bind, session, roster versioning.
    c.restart()
    assert c.send(header()) == []
    feats = features(c)
    assert c.opened is not None and c.opened["id"] == "s3"
    assert feats.find(f"{{{BIND_NS}}}bind") is not None
    session = feats.find(f"{{{SESSION_NS}}}session")
    assert session is not None and session.find(f"{{{SESSION_NS}}}optional") is not None
    assert feats.find("{urn:xmpp:features:rosterver}ver") is not None
    assert feats.find("{urn:xmpp:features:pre-approval}sub") is not None
    assert mechanisms(feats) == []

    assert c.send(bind("balcony")) == [c2s.BindRequest("balcony")]
    assert c.read() == []  # the host answers
    with pytest.raises(RuntimeError):
        s.send_stanza(Element(f"{{{SERVER_NS}}}message"))
    s.bind_succeeded(JID.parse("juliet@example.com/balcony"))
    result = c.one()
    assert result.get("type") == "result" and result.get("id") == "b1"
    assert result.find(f"{{{BIND_NS}}}bind").find(f"{{{BIND_NS}}}jid").text == (
        "juliet@example.com/balcony"
    )
    assert s.jid == JID.parse("juliet@example.com/balcony") and s.state is c2s.State.BOUND
    assert s.timer() is None

    # RFC 3921 session iq: an empty result.
    assert c.send(f"<iq type='set' id='s1'><session xmlns='{SESSION_NS}'/></iq>".encode()) == []
    assert c.one() == Element(f"{{{SERVER_NS}}}iq", {"type": "result", "id": "s1"})

    # A message, stamped with the full JID.
    (ev,) = c.send(b"<message to='romeo@example.net' type='chat'><body>hi</body></message>")
    assert isinstance(ev, c2s.StanzaIn)
    assert ev.stanza.tag == f"{{{SERVER_NS}}}message"
    assert ev.stanza.get("from") == "juliet@example.com/balcony"
    assert ev.stanza.find(f"{{{SERVER_NS}}}body").text == "hi"

    # And one to the client, written in jabber:client without a namespace declaration.
    msg = Element(
        f"{{{SERVER_NS}}}message",
        {"from": "romeo@example.net/orchard", "to": "juliet@example.com/balcony"},
    )
    msg.subelement(f"{{{SERVER_NS}}}body", text="hello")
    s.send_stanza(msg)
    assert s.data_to_send() == (
        b"<message from='romeo@example.net/orchard' to='juliet@example.com/balcony'>"
        b"<body>hello</body></message>"
    )

    # The client closes; we answer.
    assert kinds(c.send(b"</stream:stream>")) == [c2s.Closed]
    assert s.data_to_send() == b"</stream:stream>"
    assert s.state is c2s.State.CLOSED


def test_scram_sha1_and_scram_without_tls_when_tls_is_optional():
    c = Client(new(tls_required=False))
    c.send(header())
    feats = features(c)
    tls = feats.find(f"{{{TLS_NS}}}starttls")
    assert tls is not None and tls.find(f"{{{TLS_NS}}}required") is None
    assert mechanisms(feats) == ["SCRAM-SHA-256", "SCRAM-SHA-1"]  # no PLAIN in the clear
    first, bare = scram_first()
    assert c.send(auth("SCRAM-SHA-1", first)) == []
    assert base64.b64decode(c.one().text).decode() == server_first()
    final, verifier = scram_final(bare, server_first(), hash_name="sha1")
    assert c.send(response(final)) == [c2s.Authenticated("juliet", DOMAIN)]
    assert base64.b64decode(c.one().text) == verifier
    assert not c.s.secure


# -- TLS -----------------------------------------------------------------------------------
def test_plain_is_not_offered_before_tls_and_refused_with_encryption_required():
    c = Client(new(tls_required=False))
    c.send(header())
    assert "PLAIN" not in mechanisms(features(c))
    assert c.send(plain("juliet", PASSWORD)) == [c2s.AuthFailed(None, "encryption-required")]
    assert sasl_condition(c.one()) == "encryption-required"
    assert c.s.state is c2s.State.NEGOTIATING  # the client may still STARTTLS
    assert c.send(STARTTLS) == [c2s.StartTLS()]


def test_auth_before_required_tls_is_encryption_required():
    c = Client(new())
    c.send(header())
    c.read()
    first, _ = scram_first()
    assert c.send(auth("SCRAM-SHA-256", first)) == [c2s.AuthFailed(None, "encryption-required")]
    assert sasl_condition(c.one()) == "encryption-required"
    assert c.s.authenticated_user is None


def test_stanza_before_required_tls_is_not_authorized():
    c = Client(new())
    c.send(header())
    c.read()
    events = c.send(b"<message to='romeo@example.net'><body>x</body></message>")
    assert events[0] == c2s.StreamErrorSent("not-authorized", "authenticate first")
    assert kinds(events) == [c2s.StreamErrorSent, c2s.Closed]
    assert stream_error_of(c.read()) == "not-authorized" and c.closed


def test_starttls_without_tls_is_failure_and_close():
    c = Client(new(tls_available=False, tls_required=False))
    c.send(header())
    feats = features(c)
    assert feats.find(f"{{{TLS_NS}}}starttls") is None
    assert mechanisms(feats) == ["SCRAM-SHA-256", "SCRAM-SHA-1"]
    assert kinds(c.send(STARTTLS)) == [c2s.Closed]
    assert c.one().tag == f"{{{TLS_NS}}}failure"
    assert c.closed and c.s.state is c2s.State.CLOSED


def test_starttls_twice_is_failure_and_close():
    c = secure_session()
    assert kinds(c.send(STARTTLS)) == [c2s.Closed]
    assert c.one().tag == f"{{{TLS_NS}}}failure"


def test_direct_tls_offers_sasl_with_plain_at_once():
    c = Client(new(direct_tls=True, tls_available=False))
    assert c.s.secure
    c.send(header())
    feats = features(c)
    assert feats.find(f"{{{TLS_NS}}}starttls") is None
    assert mechanisms(feats) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


def test_tls_required_without_any_tls_is_a_configuration_error():
    with pytest.raises(ValueError):
        new(tls_available=False)


def test_plaintext_after_starttls_is_discarded():
    # The STARTTLS command-injection attack: bytes sent in the clear after <starttls/>
    # must not be taken as if they had come over TLS.
    c = Client(new())
    c.send(header())
    c.read()
    assert c.send(STARTTLS + plain("juliet", PASSWORD)) == [c2s.StartTLS()]
    assert c.one().tag == f"{{{TLS_NS}}}proceed"
    assert c.send(b"<auth/>") == []
    assert c.s.data_to_send() == b""
    c.s.tls_established(0.0)
    c.restart()
    c.send(header())
    assert "PLAIN" in mechanisms(features(c))
    assert c.s.authenticated_user is None


def test_tls_established_only_after_starttls():
    s = new()
    with pytest.raises(RuntimeError):
        s.tls_established(0.0)


# -- SASL ----------------------------------------------------------------------------------
def test_wrong_password_is_not_authorized_and_the_client_may_retry():
    c = secure_session()
    # the failed attempt is reported with the username tried, for the log (fail2ban)
    assert c.send(plain("Juliet", "wrong")) == [c2s.AuthFailed("juliet", "not-authorized")]
    assert sasl_condition(c.one()) == "not-authorized"
    first, bare = scram_first()
    c.send(auth("SCRAM-SHA-256", first))
    c.read()
    final, _ = scram_final(bare, server_first(), password="also wrong")
    assert c.send(response(final)) == [c2s.AuthFailed("juliet", "not-authorized")]
    assert sasl_condition(c.one()) == "not-authorized"
    assert c.send(plain("juliet", PASSWORD)) == [c2s.Authenticated("juliet", DOMAIN)]


def test_unknown_user_gets_the_same_failure():
    c = secure_session()
    assert c.send(plain("nobody", PASSWORD)) == [c2s.AuthFailed("nobody", "not-authorized")]
    failure = c.one()
    assert sasl_condition(failure) == "not-authorized"
    c2 = secure_session()
    c2.send(plain("juliet", "wrong"))
    assert c2.one() == failure


def test_third_failure_is_policy_violation():
    c = secure_session()
    c.send(plain("juliet", "x1"))
    c.send(plain("juliet", "x2"))
    c.read()
    events = c.send(plain("juliet", "x3"))
    assert kinds(events) == [c2s.AuthFailed, c2s.StreamErrorSent, c2s.Closed]
    assert events[1].condition == "policy-violation"
    els = c.read()
    assert sasl_condition(els[0]) == "not-authorized"  # the failure comes first
    assert stream_error_of(els) == "policy-violation" and c.closed


def test_abort_is_aborted():
    c = secure_session()
    first, _ = scram_first()
    c.send(auth("SCRAM-SHA-256", first))
    assert c.one().tag == f"{{{SASL_NS}}}challenge"
    assert c.send(f"<abort xmlns='{SASL_NS}'/>".encode()) == [c2s.AuthFailed("juliet", "aborted")]
    assert sasl_condition(c.one()) == "aborted"
    assert c.send(plain("juliet", PASSWORD)) == [c2s.Authenticated("juliet", DOMAIN)]


def test_auth_without_initial_response_gets_an_empty_challenge():
    c = secure_session()
    assert c.send(auth("PLAIN", None)) == []
    challenge = c.one()
    assert challenge == Element(f"{{{SASL_NS}}}challenge")
    assert c.send(response(b"\0juliet\0" + PASSWORD.encode())) == [
        c2s.Authenticated("juliet", DOMAIN)
    ]
    success = c.one()
    assert success == Element(f"{{{SASL_NS}}}success")  # PLAIN: no additional data


def test_sasl_protocol_errors():
    c = secure_session()
    c.send(f"<response xmlns='{SASL_NS}'>abcd</response>".encode())
    assert sasl_condition(c.one()) == "malformed-request"
    c = secure_session()
    c.send(auth("DIGEST-MD5", b"x"))
    assert sasl_condition(c.one()) == "invalid-mechanism"
    c = secure_session()
    c.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>not base64!</auth>".encode())
    assert sasl_condition(c.one()) == "incorrect-encoding"


def test_authzid_must_be_the_bare_jid():
    c = secure_session()
    c.send(plain("juliet", PASSWORD, authzid="romeo@example.com"))
    assert sasl_condition(c.one()) == "invalid-authzid"
    assert c.s.authenticated_user is None
    events = c.send(plain("Juliet", PASSWORD, authzid="JULIET@Example.COM"))
    assert events == [c2s.Authenticated("juliet", DOMAIN)]


def test_lookup_failure_is_temporary_auth_failure():
    def broken(username: str, hash_name: str) -> ScramCredentials | None:
        raise OSError("database is locked")

    c = secure_session(lookup=broken)
    assert c.send(plain("juliet", PASSWORD)) == [c2s.AuthFailed(None, "temporary-auth-failure")]
    assert sasl_condition(c.one()) == "temporary-auth-failure"
    assert c.s.state is c2s.State.NEGOTIATING


def test_restart_after_sasl_must_name_the_same_domain():
    c = secure_session(domains=frozenset({DOMAIN, "other.example"}))
    c.send(plain("juliet", PASSWORD))
    c.read()
    c.restart()
    events = c.send(header(to="other.example"))
    assert events[0].condition == "not-authorized"
    els = c.read()
    assert c.opened is not None and c.opened["from"] == DOMAIN
    assert stream_error_of(els) == "not-authorized"


# -- stream header -------------------------------------------------------------------------
def test_unknown_host():
    c = Client(new())
    events = c.send(header(to="other.example"))
    assert kinds(events) == [c2s.StreamErrorSent, c2s.Closed]
    assert events[0].condition == "host-unknown"
    els = c.read()
    assert c.opened is not None and "from" not in c.opened  # we are not other.example
    assert stream_error_of(els) == "host-unknown" and c.closed


def test_missing_to_is_host_unknown():
    c = Client(new())
    data = header().replace(b" to='example.com'", b"")
    assert c.send(data)[0].condition == "host-unknown"


def test_to_is_normalized():
    c = Client(new())
    assert c.send(header(to="Example.COM.")) == []
    features(c)
    assert c.s.domain == DOMAIN


@pytest.mark.parametrize("version", [None, "0.9", "1", "x.y", ""])
def test_bad_version_is_unsupported_version(version: str | None):
    c = Client(new())
    events = c.send(header(version=version))
    assert events[0].condition == "unsupported-version"
    assert stream_error_of(c.read()) == "unsupported-version"


def test_later_version_is_answered_with_1_0():
    c = Client(new())
    assert c.send(header(version="1.5")) == []
    features(c)
    assert c.opened is not None and c.opened["version"] == "1.0"


def test_wrong_namespace_is_invalid_namespace():
    c = Client(new())
    events = c.send(header(ns="jabber:server"))
    assert events[0].condition == "invalid-namespace"
    els = c.read()
    assert c.opened is not None  # our header first, so that the client can read the error
    assert stream_error_of(els) == "invalid-namespace"


def test_header_from_is_echoed_as_to():
    c = Client(new())
    c.send(header().replace(b"to=", b"from='Juliet@example.com' to="))
    features(c)
    assert c.opened is not None and c.opened["to"] == "juliet@example.com"


# -- before bind ---------------------------------------------------------------------------
def test_stanza_before_auth_is_not_authorized():
    c = Client(new(tls_required=False))
    c.send(header())
    c.read()
    events = c.send(b"<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>")
    assert events[0].condition == "not-authorized"
    assert stream_error_of(c.read()) == "not-authorized"


def test_stanza_after_auth_before_bind_is_not_authorized():
    c = authenticated()
    events = c.send(b"<presence/>")
    assert events[0].condition == "not-authorized"


def test_bind_without_resource():
    c = authenticated()
    assert c.send(bind(None)) == [c2s.BindRequest(None)]
    c.s.bind_succeeded(JID.parse("juliet@example.com/4db06f06"))
    assert c.one().find(f"{{{BIND_NS}}}bind").find(f"{{{BIND_NS}}}jid").text == (
        "juliet@example.com/4db06f06"
    )
    c = authenticated()
    assert c.send(bind("")) == [c2s.BindRequest(None)]


def test_bind_resource_is_normalized():
    c = authenticated()
    assert c.send(bind("\u2126mega")) == [c2s.BindRequest("\u03a9mega")]  # OHM SIGN -> NFC


@pytest.mark.parametrize("resource", ["a" * 1024, "bad\u0085nel"])
def test_malformed_resource_is_bad_request(resource: str):
    c = authenticated()
    assert c.send(bind(resource)) == []
    reply = c.one()
    assert reply.get("id") == "b1"
    assert iq_error_of(reply) == ("bad-request", "modify")
    assert c.s.state is c2s.State.WAIT_BIND
    assert c.send(bind("ok")) == [c2s.BindRequest("ok")]


def test_bind_failed_then_retry():
    c = authenticated()
    c.send(bind("balcony"))
    c.s.bind_failed("conflict")
    assert iq_error_of(c.one()) == ("conflict", "cancel")
    assert c.send(bind("garden", iq_id="b2")) == [c2s.BindRequest("garden")]
    c.s.bind_failed("not-allowed", "no more resources", type="cancel")
    reply = c.one()
    assert reply.get("id") == "b2" and iq_error_of(reply) == ("not-allowed", "cancel")


def test_only_one_bind_per_stream():
    c = authenticated()
    c.send(bind("balcony"))
    # While the first is pending a second one waits for its answer, as if it came later.
    assert c.send(bind("garden", iq_id="b2")) == []
    assert c.read() == []
    c.s.bind_succeeded(JID.parse("juliet@example.com/balcony"))
    result, refused = c.read()
    assert result.get("id") == "b1" and result.get("type") == "result"
    assert refused.get("id") == "b2" and iq_error_of(refused) == ("not-allowed", "cancel")
    assert c.send(bind("garden", iq_id="b3")) == []
    reply = c.one()
    assert reply.get("id") == "b3" and iq_error_of(reply) == ("not-allowed", "cancel")


def test_bind_succeeded_checks_the_jid():
    c = authenticated()
    c.send(bind("balcony"))
    with pytest.raises(ValueError):
        c.s.bind_succeeded(JID.parse("romeo@example.com/balcony"))
    with pytest.raises(ValueError):
        c.s.bind_succeeded(JID.parse("juliet@example.com"))
    c2 = authenticated()
    with pytest.raises(RuntimeError):
        c2.s.bind_succeeded(JID.parse("juliet@example.com/balcony"))


def test_session_iq_gets_an_empty_result():
    c = bound()
    iq = f"<iq type='set' id='sess_1' to='example.com'><session xmlns='{SESSION_NS}'/></iq>"
    assert c.send(iq.encode()) == []
    assert c.one() == Element(
        f"{{{SERVER_NS}}}iq", {"type": "result", "id": "sess_1", "from": "example.com"}
    )


# -- stanzas -------------------------------------------------------------------------------
def test_from_bare_or_full_jid_is_accepted_and_stamped_full():
    c = bound()
    for frm in ("juliet@example.com", "juliet@example.com/balcony", "JULIET@example.com"):
        (ev,) = c.send(f"<presence from='{frm}'/>".encode())
        assert isinstance(ev, c2s.StanzaIn)
        assert ev.stanza.get("from") == "juliet@example.com/balcony"


@pytest.mark.parametrize(
    "frm", ["romeo@example.net", "juliet@example.com/garden", "example.com", "a@b@c"]
)
def test_from_spoofing_is_invalid_from(frm: str):
    c = bound()
    events = c.send(f"<message from='{frm}' to='romeo@example.net'/>".encode())
    assert kinds(events) == [c2s.StreamErrorSent, c2s.Closed]
    assert events[0].condition == "invalid-from"
    assert stream_error_of(c.read()) == "invalid-from" and c.closed


def test_missing_to_is_left_missing():
    c = bound()
    (ev,) = c.send(b"<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
    assert isinstance(ev, c2s.StanzaIn) and "to" not in ev.stanza.attrib


def test_malformed_to_is_rejected_and_the_stream_goes_on():
    c = bound()
    (ev,) = c.send(b"<message to='romeo@@example.net' id='m1'><body>x</body></message>")
    assert isinstance(ev, c2s.StanzaRejected)
    assert ev.error.condition == "jid-malformed"
    assert ev.stanza.get("from") == "juliet@example.com/balcony"  # so it can be answered
    assert c.s.state is c2s.State.BOUND
    (ev,) = c.send(b"<message to='romeo@example.net'/>")
    assert isinstance(ev, c2s.StanzaIn)


def test_sm_enable_is_answered_with_failed():
    c = bound()
    assert c.send(f"<enable xmlns='{SM_NS}' resume='true'/>".encode()) == []
    failed = c.one()
    assert failed.tag == f"{{{SM_NS}}}failed"
    assert failed.find(f"{{{STANZA_ERROR_NS}}}feature-not-implemented") is not None
    assert c.s.state is c2s.State.BOUND
    c = authenticated()  # resume comes before bind
    assert c.send(f"<resume xmlns='{SM_NS}' previd='x' h='0'/>".encode()) == []
    assert c.one().tag == f"{{{SM_NS}}}failed"


def test_other_elements_are_unsupported_stanza_type():
    c = bound()
    events = c.send(b"<foo/>")
    assert events[0].condition == "unsupported-stanza-type"
    c = bound()
    events = c.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>=</auth>".encode())
    assert events[0].condition == "unsupported-stanza-type"


def test_whitespace_keepalives_are_ignored():
    c = bound()
    assert c.send(b" \n ") == []
    (ev,) = c.send(b"\t<presence/>  ")
    assert isinstance(ev, c2s.StanzaIn)
    assert c.s.data_to_send() == b""


def test_stanzas_before_malformed_xml_are_delivered():
    c = bound()
    events = c.send(b"<message to='romeo@example.net'/><message><x></y>")
    assert isinstance(events[0], c2s.StanzaIn)
    assert events[1].condition == "not-well-formed"
    assert stream_error_of(c.read()) == "not-well-formed"


def test_send_stanza_needs_a_bound_stream():
    c = authenticated()
    with pytest.raises(RuntimeError):
        c.s.send_stanza(Element(f"{{{SERVER_NS}}}message"))


# -- timers, errors and closing ------------------------------------------------------------
def test_auth_timeout():
    s = new(now=100.0, auth_timeout=60.0)
    c = Client(s)
    c.send(header())
    c.read()
    assert s.timer() == 160.0
    assert s.handle_timer(159.0) == []
    events = s.handle_timer(160.0)
    assert kinds(events) == [c2s.StreamErrorSent, c2s.Closed]
    assert events[0].condition == c2s.AUTH_TIMEOUT_CONDITION == "policy-violation"
    assert stream_error_of(c.read()) == "policy-violation" and c.closed
    assert s.timer() is None


def test_auth_timeout_before_any_header_still_writes_a_header():
    c = Client(new())
    events = c.s.handle_timer(60.0)
    assert events[0].condition == "policy-violation"
    assert stream_error_of(c.read()) == "policy-violation"
    assert c.opened is not None


def test_auth_timeout_is_off_once_bound():
    c = bound()
    assert c.s.timer() is None
    assert c.s.handle_timer(1000.0) == []


def test_stream_error_from_the_host():
    c = bound()
    events = c.s.stream_error("conflict", "replaced by a new session", 5.0)
    assert events == [
        c2s.StreamErrorSent("conflict", "replaced by a new session"),
        c2s.Closed("stream error conflict: replaced by a new session"),
    ]
    assert stream_error_of(c.read()) == "conflict" and c.closed
    assert c.s.stream_error("system-shutdown") == []


def test_client_stream_error_closes():
    c = bound()
    err = f"<stream:error><system-shutdown xmlns='{STREAM_ERROR_NS}'/></stream:error>"
    (ev,) = c.send(err.encode())
    assert isinstance(ev, c2s.Closed) and "system-shutdown" in ev.reason
    c.read()
    assert c.closed


def test_close_by_client():
    c = bound()
    events = c.send(b"</stream:stream>")
    assert kinds(events) == [c2s.Closed]
    assert c.s.data_to_send() == b"</stream:stream>"
    assert c.s.state is c2s.State.CLOSED


def test_close_by_server_waits_for_the_client():
    c = bound()
    assert c.s.close(5.0) == []
    assert c.s.data_to_send() == b"</stream:stream>"
    assert c.s.state is c2s.State.CLOSING and c.s.timer() == 15.0
    # The client may still be sending (RFC 6120 §4.4): its stanzas are still reported.
    (ev,) = c.send(b"<message to='romeo@example.net'/>")
    assert isinstance(ev, c2s.StanzaIn)
    assert kinds(c.send(b"</stream:stream>")) == [c2s.Closed]
    assert c.s.data_to_send() == b""  # no second close
    assert c.s.state is c2s.State.CLOSED


def test_close_by_server_times_out():
    c = bound()
    c.s.close(5.0)
    assert c.s.handle_timer(14.0) == []
    assert kinds(c.s.handle_timer(15.0)) == [c2s.Closed]
    assert c.s.state is c2s.State.CLOSED


def test_close_before_anything_was_sent():
    s = new()
    assert kinds(s.close(0.0)) == [c2s.Closed]
    assert s.data_to_send() == b""


# -- transcripts split at every offset -------------------------------------------------------
def transcript() -> list[bytes]:
    """A whole client session; STARTTLS after the 2nd step, bind answered after the 7th."""
    first, bare = scram_first()
    final, _ = scram_final(bare, server_first())
    return [
        header(),
        STARTTLS,
        header(),
        auth("SCRAM-SHA-256", first),
        response(final),
        header(),
        b" " + bind("balcony"),
        f"<iq type='set' id='s1'><session xmlns='{SESSION_NS}'/></iq>".encode(),
        b"<message to='romeo@example.net' id='m1'><body>wherefore art thou</body></message>\n",
        b"<presence/></stream:stream>",
    ]


def run(reads: list[list[bytes]]) -> tuple[list[c2s.Event], bytes]:
    """Feed each step's reads in order, doing what the driver and host would in between."""
    s = new()
    events: list[c2s.Event] = []
    out = b""
    for step in reads:
        for data in step:
            events.extend(s.receive_data(data, 0.0))
        out += s.data_to_send()
        if s.state is c2s.State.WAIT_TLS:
            s.tls_established(0.0)
        if s.state is c2s.State.BIND_PENDING:
            events.extend(s.bind_succeeded(JID.parse("juliet@example.com/balcony")))
            out += s.data_to_send()
    return events, out


def test_reference_transcript():
    events, out = run([[step] for step in transcript()])
    _, verifier = scram_final(scram_first()[1], server_first())
    assert kinds(events) == [
        c2s.StartTLS,
        c2s.Authenticated,
        c2s.BindRequest,
        c2s.StanzaIn,
        c2s.StanzaIn,
        c2s.Closed,
    ]
    assert out.count(b"<stream:stream ") == 3
    assert b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.b64encode(verifier) in out
    assert out.endswith(b"</stream:stream>")
    assert b"error" not in out


def test_split_reads_at_every_offset():
    steps = transcript()
    reference = run([[step] for step in steps])
    for i, step in enumerate(steps):
        for cut in range(1, len(step)):
            reads = [[s] for s in steps]
            reads[i] = [step[:cut], step[cut:]]
            assert run(reads) == reference, (i, cut)


def test_one_byte_at_a_time():
    steps = transcript()
    reference = run([[step] for step in steps])
    reads = [[step[j : j + 1] for j in range(len(step))] for step in steps]
    assert run(reads) == reference


def test_pipelined_client_after_tls():
    # With a known server nonce a client could send everything from the post-TLS header to
    # the bind request in one write; the restart after <success/> must not lose a byte.
    steps = transcript()
    reference = run([[step] for step in steps])
    reads = [[steps[0]], [steps[1]], [b"".join(steps[2:7])], *([s] for s in steps[7:])]
    assert run(reads) == reference


def test_pipelined_plain_with_prefixed_elements():
    c = secure_session()
    payload = b64(b"\0juliet\0" + PASSWORD.encode())
    data = (
        f"<sasl:auth xmlns:sasl='{SASL_NS}' mechanism='PLAIN'>{payload}</sasl:auth>".encode()
        + header()
        + bind("balcony")
    )
    assert c.send(data) == [c2s.Authenticated("juliet", DOMAIN), c2s.BindRequest("balcony")]
    out = c.s.data_to_send()
    assert out.startswith(f"<success xmlns='{SASL_NS}'/><?xml version='1.0'?>".encode())
    assert out.endswith(b"</stream:features>")


def test_elements_before_authentication_are_small():
    c = secure_session()
    big = b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + b"A" * 40000
    events = c.send(big + b"</auth>")
    assert events[0].condition == "policy-violation"
    c = bound()
    body = "x" * 40000
    (ev,) = c.send(f"<message to='romeo@example.net'><body>{body}</body></message>".encode())
    assert isinstance(ev, c2s.StanzaIn)


# -- regressions: what real clients send ---------------------------------------------------
def features_after_success(c: Client) -> Element:
    """The features of the restarted stream, from output that starts with <success/>."""
    out = c.s.data_to_send()
    success = f"<success xmlns='{SASL_NS}'/>".encode()
    assert out.startswith(success)
    c.restart()
    (feats,) = [
        ev.element for ev in c.parser.feed(out[len(success) :]) if isinstance(ev, StanzaReceived)
    ]
    return feats


@pytest.mark.parametrize("together", [True, False], ids=["one-read", "separate-reads"])
def test_whitespace_after_auth_is_not_part_of_the_restarted_stream(together: bool):
    # go-sendxmpp (go-xmpp) writes a newline after </auth>, then restarts with an XML
    # declaration: the newline belongs to the old stream, not before the new one's <?xml.
    c = secure_session()
    if together:
        events = c.send(plain("juliet", PASSWORD) + b"\n" + header())
    else:
        events = c.send(plain("juliet", PASSWORD) + b"\n")
        assert c.send(b"\r\n ") == []
        events += c.send(header())
    assert events == [c2s.Authenticated("juliet", DOMAIN)]
    assert features_after_success(c).find(f"{{{BIND_NS}}}bind") is not None


def test_whitespace_before_the_header_after_starttls():
    c = Client(new())
    c.send(header())
    c.read()
    c.send(STARTTLS)
    c.read()
    c.s.tls_established(0.0)
    c.restart()
    assert c.send(b"\n") == []
    assert c.send(header()) == []
    assert mechanisms(features(c)) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


def test_restart_after_an_empty_auth_element_with_a_quoted_gt():
    # The element that completes SASL may be an empty-element tag whose attribute holds '>'.
    c = secure_session()
    c.send(auth("PLAIN", None).replace(b">", b" x='a>b'>", 1))
    assert c.one().tag == f"{{{SASL_NS}}}challenge"
    step = response(b"\0juliet\0" + PASSWORD.encode()) + b" " + header()
    assert c.send(step) == [c2s.Authenticated("juliet", DOMAIN)]
    assert features_after_success(c).find(f"{{{BIND_NS}}}bind") is not None


def test_bind_message_and_ping_pipelined_in_one_write():
    c = authenticated()
    ping = f"<iq type='get' id='p1' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>"
    msg = "<message to='romeo@example.net' id='m1'><body>hi</body></message>"
    events = c.send(bind("balcony") + msg.encode() + ping.encode())
    assert events == [c2s.BindRequest("balcony")]
    later = c.s.bind_succeeded(JID.parse(f"juliet@{DOMAIN}/balcony"))
    assert kinds(later) == [c2s.StanzaIn, c2s.StanzaIn]
    assert [e.stanza.get("id") for e in later] == ["m1", "p1"]  # type: ignore[union-attr]
    assert all(e.stanza.get("from") == f"juliet@{DOMAIN}/balcony" for e in later)  # type: ignore[union-attr]
    (result,) = c.read()
    assert result.get("id") == "b1" and result.get("type") == "result"
    assert c.s.state is c2s.State.BOUND


def test_pipelined_stanzas_after_a_failed_bind_are_refused_in_order():
    c = authenticated()
    msg = b"<message to='romeo@example.net' id='m1'><body>hi</body></message>"
    assert c.send(bind("balcony") + msg) == [c2s.BindRequest("balcony")]
    later = c.s.bind_failed("conflict")
    assert kinds(later) == [c2s.StreamErrorSent, c2s.Closed]
    out = c.read()
    assert iq_error_of(out[0]) == ("conflict", "cancel")
    assert stream_error_of(out) == "not-authorized"


def test_bind_answer_after_the_client_closed_is_ignored():
    c = authenticated()
    events = c.send(bind("balcony") + b"</stream:stream>")
    assert kinds(events) == [c2s.BindRequest, c2s.Closed]
    assert c.s.bind_succeeded(JID.parse(f"juliet@{DOMAIN}/balcony")) == []


def test_to_goes_on_normalized():
    c = bound()
    (ev,) = c.send(b"<message to='Romeo@Example.NET./orchard'><body>x</body></message>")
    assert isinstance(ev, c2s.StanzaIn) and ev.stanza.get("to") == "romeo@example.net/orchard"


def test_failed_sasl_attempts_name_the_username_when_known():
    """AuthFailed carries what the log may say: the prepared username, never the password."""
    cases = [
        (auth("DIGEST-MD5", b"x"), c2s.AuthFailed(None, "invalid-mechanism")),
        (plain("ju liet", PASSWORD), c2s.AuthFailed(None, "not-authorized")),  # not a localpart
        (
            plain("juliet", PASSWORD, authzid="romeo@example.com"),
            # the password was right: not a guess, and the session reports no username for it
            c2s.AuthFailed(None, "invalid-authzid"),
        ),
        (
            f"<response xmlns='{SASL_NS}'>abcd</response>".encode(),
            c2s.AuthFailed(None, "malformed-request"),
        ),
    ]
    for data, expected in cases:
        c = secure_session()
        events = c.send(data)
        assert events == [expected]
        assert PASSWORD not in repr(events)
    # SCRAM: the username of the client-first message
    c = secure_session()
    first, bare = scram_first("JULIET")
    c.send(auth("SCRAM-SHA-1", first))
    c.read()
    final, _ = scram_final(bare, server_first(), password="wrong", hash_name="sha1")
    assert c.send(response(final)) == [c2s.AuthFailed("juliet", "not-authorized")]


# -- found by the fuzzer: the outcome must not depend on how reads fall ------------------------
def test_stanzas_before_a_stream_error_in_the_bind_read_still_count():
    c = authenticated()
    events = c.send(bind("balcony") + b"<presence/><<")
    assert kinds(events) == [c2s.BindRequest, c2s.StreamErrorSent, c2s.Closed]
    later = c.s.bind_succeeded(JID.parse(f"juliet@{DOMAIN}/balcony"))
    assert kinds(later) == [c2s.StanzaIn]  # as when the bind came in a read of its own


def test_a_message_before_the_close_in_the_bind_read_is_not_lost():
    c = authenticated()
    msg = b"<message to='romeo@example.net' id='m1'><body>bye</body></message>"
    c.send(bind("balcony") + msg + b"</stream:stream>")
    (ev,) = c.s.bind_succeeded(JID.parse(f"juliet@{DOMAIN}/balcony"))
    assert isinstance(ev, c2s.StanzaIn) and ev.stanza.get("id") == "m1"


def test_a_retry_pipelined_after_a_failed_bind_is_handled():
    c = authenticated()
    msg = b"<message to='romeo@example.net' id='m1'><body>hi</body></message>"
    c.send(bind("balcony") + bind("garden", iq_id="b2") + msg)
    assert kinds(c.s.bind_failed("conflict")) == [c2s.BindRequest]  # the retry asks again
    (ev,) = c.s.bind_succeeded(JID.parse(f"juliet@{DOMAIN}/garden"))
    assert isinstance(ev, c2s.StanzaIn) and ev.stanza.get("id") == "m1"


def test_a_bind_without_an_id_then_an_error_in_the_same_read():
    c = authenticated()
    raw = b"<iq type='set'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq><<"
    assert kinds(c.send(raw)) == [c2s.BindRequest, c2s.StreamErrorSent, c2s.Closed]
    assert c.s.bind_succeeded(JID.parse(f"juliet@{DOMAIN}/x")) == []
