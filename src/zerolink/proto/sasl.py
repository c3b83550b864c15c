"""Server side of SASL client authentication (RFC 6120 §6), sans-I/O.

Mechanisms: SCRAM-SHA-256 (RFC 7677), SCRAM-SHA-1 (RFC 5802) and PLAIN (RFC 4616, only over
TLS). Passwords are never stored: each account keeps, per hash, the SCRAM salted keys
(`ScramCredentials`), made by `derive_credentials`. PLAIN is verified by deriving the
SCRAM-SHA-256 StoredKey from the offered password with the stored salt and iteration count.

`SASLServer.step` takes the client's payload already base64-decoded and returns a
`Challenge` or a `Success`, or raises `SASLFailure` whose `condition` is the RFC 6120 §6.5
element to send in ``<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>``. The XML and
base64 of ``<auth>``, ``<challenge>``, ``<response>`` and ``<success>`` belong to the caller;
`decode_payload` and `encode_payload` do the RFC 6120 base64 rules (``=`` for zero-length
data, strict RFC 4648 §4 alphabet).

Security properties:

* proofs and keys are compared in constant time (`hmac.compare_digest`);
* an unknown user (or an account without credentials for the requested hash) gets a normal
  looking SCRAM exchange: a salt that is an HMAC of a server secret and the username (so it
  is the same on every attempt) and the configured iteration count, then ``not-authorized``
  with exactly the same text as a wrong password. Pass a persistent `secret` (and the
  deployment's usual `fake_iterations`) to `SASLServer`: with the default per-process secret
  the fake salt changes on restart, which a patient attacker could notice;
* usernames are prepared with PRECIS UsernameCaseMapped (RFC 8265 §3.3) and must be valid
  JID localparts (RFC 7622 §3.3.1); passwords with PRECIS OpaqueString (RFC 8265 §4.2, the
  successor of SASLprep). A SASLprep client and this server agree on every password that the
  two profiles prepare alike (all of ASCII, and almost all text in NFC).

No channel binding: the ``-PLUS`` variants are not offered, so a client that sends the gs2
flag ``p=`` fails, and ``y`` (client supports binding, thinks the server does not) is
accepted. When ``-PLUS`` is added, ``y`` must be refused whenever ``-PLUS`` was offered
(RFC 5802 §6, downgrade detection).

No clock, no I/O: the nonce comes from `nonce_factory` (default `secrets.token_urlsafe`),
the credentials from the `CredentialLookup` the caller passes. Exceptions raised by the
lookup propagate unchanged (the caller may answer ``temporary-auth-failure``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from precis_i18n import get_profile

from zerolink.errors import XMPPError

__all__ = [
    "DEFAULT_ITERATIONS",
    "MECHANISMS",
    "SASL_CONDITIONS",
    "SASL_NS",
    "Challenge",
    "CredentialLookup",
    "Mechanism",
    "Result",
    "SASLFailure",
    "SASLServer",
    "ScramCredentials",
    "Success",
    "decode_payload",
    "derive_credentials",
    "encode_payload",
    "offered_mechanisms",
]

SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"

# RFC 6120 §6.5
SASL_CONDITIONS = frozenset(
    {
        "aborted",
        "account-disabled",
        "credentials-expired",
        "encryption-required",
        "incorrect-encoding",
        "invalid-authzid",
        "invalid-mechanism",
        "malformed-request",
        "mechanism-too-weak",
        "not-authorized",
        "temporary-auth-failure",
    }
)

DEFAULT_ITERATIONS = 4096  # RFC 7677 §4: at least 4096
SALT_BYTES = 16
# Largest client message accepted: an escaped 1023-octet localpart, a full JID as authzid
# (escaped, up to 3 x 3071 octets) and a nonce fit with room to spare.
MAX_MESSAGE_BYTES = 16 * 1024
MAX_LOCALPART_OCTETS = 1023  # RFC 7622 §3.3

_DIGEST_SIZE = {"sha1": 20, "sha256": 32}
_USERNAME = get_profile("UsernameCaseMapped")
_OPAQUE = get_profile("OpaqueString")
_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")  # RFC 7622 §3.3.1

# RFC 5802 §7: printable = %x21-2B / %x2D-7E (printable ASCII except ",")
_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_ESCAPE = re.compile(r"=(2C|3D)", re.IGNORECASE)  # ABNF literals are case-insensitive
_EXTENSION = re.compile(r"[A-Za-z]=.+", re.DOTALL)
# Attribute names with a meaning in RFC 5802; none of them may appear as an extension.
_RESERVED_ATTRS = frozenset("acemnprsvi")

_PROCESS_SECRET = secrets.token_bytes(32)


# --- records and results ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """The SCRAM verifier of one account for one hash (RFC 5802 §3); no password."""

    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``<challenge>`` with `data` (empty bytes: an empty challenge)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    """Send ``<success>`` with `data` as additional data (None: no additional data).

    `username` is the PRECIS-normalized localpart that authenticated. `authzid` is what the
    client asked to act as, unchecked: the caller accepts it only if it is the user's own
    bare JID (otherwise ``invalid-authzid``).
    """

    data: bytes | None
    username: str
    authzid: str | None


Result: TypeAlias = Challenge | Success


class SASLFailure(XMPPError):
    """Authentication failed; send ``<failure>`` with `condition` (RFC 6120 §6.5) and `text`.

    Not a stream or stanza error: the stream goes on and the client may try again.
    `username` is the (prepared) username the client tried, when it got that far: for the log
    line of a failed login, never sent to the client.
    """

    username: str | None = None

    def __init__(self, condition: str, text: str | None = None) -> None:
        if condition not in SASL_CONDITIONS:
            raise ValueError(f"not an RFC 6120 SASL failure condition: {condition!r}")
        super().__init__(condition, text)


class CredentialLookup(Protocol):
    """Return the account's credentials for `mechanism_hash` ('sha1' or 'sha256'), or None.

    `username` is the PRECIS UsernameCaseMapped form of the localpart. Return None also for
    an account that must not log in; the caller learns nothing more than "not-authorized".
    """

    def __call__(self, username: str, mechanism_hash: str) -> ScramCredentials | None: ...


@dataclass(frozen=True, slots=True)
class Mechanism:
    """A mechanism this server implements: its hash ('sha1', 'sha256', None for PLAIN)."""

    name: str
    hash_name: str | None
    requires_tls: bool


# Preference order: the order `offered_mechanisms` lists them in.
MECHANISMS: dict[str, Mechanism] = {
    "SCRAM-SHA-256": Mechanism("SCRAM-SHA-256", "sha256", requires_tls=False),
    "SCRAM-SHA-1": Mechanism("SCRAM-SHA-1", "sha1", requires_tls=False),
    "PLAIN": Mechanism("PLAIN", None, requires_tls=True),
}


def offered_mechanisms(*, tls: bool) -> list[str]:
    """Mechanism names for ``<mechanisms/>``, best first; PLAIN only over TLS.

    No ``SCRAM-*-PLUS``: channel binding (RFC 5802 §6, RFC 9266 tls-exporter) is not
    implemented yet, so it is never offered.
    """
    return [m.name for m in MECHANISMS.values() if tls or not m.requires_tls]


# --- base64 of RFC 6120 §6.4 ------------------------------------------------------------


def decode_payload(text: str) -> bytes:
    """The data of an ``<auth>``/``<response>`` element: '' or '=' is empty.

    Anything but canonical RFC 4648 §4 base64 (other characters, whitespace, missing or
    extra padding, non-zero pad bits) raises `SASLFailure('incorrect-encoding')`.
    """
    if text in ("", "="):
        return b""
    try:
        raw = text.encode("ascii")
        data = base64.b64decode(raw, validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise SASLFailure("incorrect-encoding", "payload is not base64") from None
    if base64.b64encode(data) != raw:
        raise SASLFailure("incorrect-encoding", "payload is not canonical base64")
    return data


def encode_payload(data: bytes | None) -> str:
    """Text for a ``<challenge>``/``<success>``: None -> '' (no data), b'' -> '='."""
    if data is None:
        return ""
    if not data:
        return "="
    return base64.b64encode(data).decode("ascii")


# --- key derivation ---------------------------------------------------------------------


def _check_hash(hash_name: str) -> None:
    if hash_name not in _DIGEST_SIZE:
        raise ValueError(f"unsupported SCRAM hash {hash_name!r} (want 'sha1' or 'sha256')")


def _prepare_password(password: str) -> bytes:
    try:
        return _OPAQUE.enforce(password).encode("utf-8")
    except UnicodeError as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise ValueError(f"password rejected by PRECIS OpaqueString: {reason}") from None


def _scram_keys(prepared: bytes, hash_name: str, salt: bytes, iterations: int) -> ScramCredentials:
    # Hi() of RFC 5802 §2.2 is PBKDF2 with one block of the hash's size.
    salted = hashlib.pbkdf2_hmac(hash_name, prepared, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    return ScramCredentials(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.new(hash_name, client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", hash_name),
    )


def derive_credentials(
    password: str,
    hash_name: str,
    *,
    salt: bytes | None = None,
    iterations: int = DEFAULT_ITERATIONS,
) -> ScramCredentials:
    """SCRAM credentials of `password` for `hash_name` ('sha1' or 'sha256').

    The password is prepared with PRECIS OpaqueString (RFC 8265 §4.2); one it rejects (empty,
    control characters, ...) raises ValueError. `salt` defaults to 16 random bytes.
    """
    _check_hash(hash_name)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, not {iterations!r}")
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    elif not salt:
        raise ValueError("salt must not be empty")
    return _scram_keys(_prepare_password(password), hash_name, bytes(salt), iterations)


# --- helpers ----------------------------------------------------------------------------


def _malformed(text: str) -> SASLFailure:
    return SASLFailure("malformed-request", text)


# One text for every wrong-credentials outcome, so that it tells nothing about the account.
_BAD_CREDENTIALS = "authentication failed"


def _not_authorized() -> SASLFailure:
    return SASLFailure("not-authorized", _BAD_CREDENTIALS)


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("message is not UTF-8") from None


def _prepare_username(name: str) -> str:
    """PRECIS UsernameCaseMapped, then the JID localpart rules (RFC 7622 §3.3)."""
    try:
        out = _USERNAME.enforce(name)
    except UnicodeError:
        raise SASLFailure("not-authorized", "username is not a valid localpart") from None
    if _LOCAL_FORBIDDEN.intersection(out) or len(out.encode("utf-8")) > MAX_LOCALPART_OCTETS:
        raise SASLFailure("not-authorized", "username is not a valid localpart")
    return out


def _saslname(value: str, what: str) -> str:
    """Decode an RFC 5802 saslname: ',' and '=' travel as '=2C' and '=3D'."""
    if not value:
        raise _malformed(f"empty {what}")
    if "=" in _ESCAPE.sub("", value):
        raise _malformed(f"{what} has '=' not followed by 2C or 3D")
    return _ESCAPE.sub(lambda m: "," if m.group(1).upper() == "2C" else "=", value)


def _check_extensions(fields: list[str]) -> None:
    """RFC 5802 §7: unknown extensions are ignored; 'm' and known names are refused."""
    for f in fields:
        if f.startswith("m="):
            raise _malformed("mandatory extension (m=) not supported")
        if not _EXTENSION.fullmatch(f) or f[0] in _RESERVED_ATTRS:
            raise _malformed(f"unexpected attribute {f[:2]!r}")


def _b64_attr(value: str, what: str) -> bytes:
    """A non-empty base64 attribute value (c=, p=), canonical RFC 4648 §4."""
    try:
        raw = value.encode("ascii")
        out = base64.b64decode(raw, validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise _malformed(f"{what} is not base64") from None
    if not out or base64.b64encode(out) != raw:
        raise _malformed(f"{what} is not base64")
    return out


# --- the server -------------------------------------------------------------------------


class _State(enum.Enum):
    START = "start"
    WAIT_FINAL = "wait-final"  # SCRAM: server-first sent
    DONE = "done"


class SASLServer:
    """One SASL exchange, receiving side.

    Construct it when ``<auth mechanism=...>`` arrives (it raises `SASLFailure` with
    ``invalid-mechanism`` for a mechanism not implemented, ``encryption-required`` for PLAIN
    without TLS), then feed each decoded client payload to `step`. An ``<auth/>`` without
    initial response is ``step(b"")``: the answer is an empty `Challenge`, after which the
    client sends its first message (no mechanism here has a valid empty first message).

    After a `Success` or any exception the exchange is over and `step` raises
    `SASLFailure('malformed-request')`. `abort` ends it on the client's ``<abort/>``.

    `secret` keys the fake salts of unknown users; keep it stable across restarts (e.g. from
    the store) so that they stay the same. `fake_iterations` should be the iteration count
    real accounts use.
    """

    def __init__(
        self,
        mechanism: str,
        lookup: CredentialLookup,
        *,
        tls: bool,
        nonce_factory: Callable[[], str] | None = None,
        secret: bytes | None = None,
        fake_iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        mech = MECHANISMS.get(mechanism)
        if mech is None:
            raise SASLFailure("invalid-mechanism", "mechanism not supported")
        if mech.requires_tls and not tls:
            raise SASLFailure("encryption-required", f"{mechanism} requires TLS")
        if fake_iterations < 1:
            raise ValueError("fake_iterations must be positive")
        self.mechanism = mechanism
        self._mech = mech
        self._lookup = lookup
        self._nonce_factory = nonce_factory or _default_nonce
        self._secret = _PROCESS_SECRET if secret is None else bytes(secret)
        self._fake_iterations = fake_iterations
        self._state = _State.START
        self._asked_initial = False
        # SCRAM state between the two client messages
        self._hash = mech.hash_name or "sha256"
        self._gs2_header = b""
        self._first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._username = ""
        self._authzid: str | None = None
        self._creds: ScramCredentials | None = None
        self._known = False

    @property
    def finished(self) -> bool:
        return self._state is _State.DONE

    def abort(self) -> SASLFailure:
        """End the exchange on ``<abort/>``; returns the failure to send."""
        self._state = _State.DONE
        failure = SASLFailure("aborted")
        failure.username = self._username or None
        return failure

    def step(self, data: bytes) -> Result:
        """Process one base64-decoded client payload."""
        if self._state is _State.DONE:
            raise _malformed("the authentication exchange is over")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("step() takes bytes")
        data = bytes(data)
        try:
            if len(data) > MAX_MESSAGE_BYTES:
                raise _malformed("message too long")
            if self._state is _State.START:
                if not data and not self._asked_initial:
                    self._asked_initial = True
                    return Challenge(b"")
                if self._mech.hash_name is None:
                    result: Result = self._plain(data)
                else:
                    result = self._scram_first(data)
                    self._state = _State.WAIT_FINAL
                    return result
            else:
                result = self._scram_final(data)
        except BaseException as exc:
            self._state = _State.DONE
            self._creds = None
            if isinstance(exc, SASLFailure) and exc.username is None:
                exc.username = self._username or None
            raise
        self._state = _State.DONE
        self._creds = None
        return result

    # --- credentials --------------------------------------------------------------------

    def _fake(self, username: str, hash_name: str) -> ScramCredentials:
        """Deterministic stand-in credentials: same salt for the same name every time."""
        name = f"{hash_name}\x00{username}".encode()

        def derive(label: bytes, size: int) -> bytes:
            return hmac.digest(self._secret, b"zerolink-sasl-" + label + b"\x00" + name, "sha256")[
                :size
            ]

        size = _DIGEST_SIZE[hash_name]
        return ScramCredentials(
            salt=derive(b"salt", SALT_BYTES),
            iterations=self._fake_iterations,
            stored_key=derive(b"stored", size),
            server_key=derive(b"server", size),
        )

    def _credentials(self, username: str, hash_name: str) -> tuple[ScramCredentials, bool]:
        creds = self._lookup(username, hash_name)
        if creds is None:
            return self._fake(username, hash_name), False
        return creds, True

    # --- PLAIN (RFC 4616) ---------------------------------------------------------------

    def _plain(self, data: bytes) -> Success:
        parts = data.split(b"\x00")
        if len(parts) != 3:
            raise _malformed("PLAIN message is not authzid NUL authcid NUL passwd")
        authzid, authcid, passwd = (_utf8(p) for p in parts)
        if not authcid or not passwd:
            raise _malformed("empty authcid or password")
        username = _prepare_username(authcid)
        self._username = username
        creds, known = self._credentials(username, "sha256")
        try:
            prepared = _prepare_password(passwd)
            valid = True
        except ValueError:
            prepared, valid = passwd.encode("utf-8"), False  # still spend the same time
        candidate = _scram_keys(prepared, "sha256", creds.salt, creds.iterations)
        match = hmac.compare_digest(candidate.stored_key, creds.stored_key)
        if not (match and known and valid):
            raise _not_authorized()
        return Success(None, username, authzid or None)

    # --- SCRAM (RFC 5802, RFC 7677) -----------------------------------------------------

    def _scram_first(self, data: bytes) -> Challenge:
        text = _utf8(data)
        if "\x00" in text:
            raise _malformed("NUL in SCRAM message")
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise _malformed("no GS2 header")
        flag, authz, bare = parts
        if flag.startswith("p="):
            raise _malformed("channel binding requested, but no -PLUS mechanism is offered")
        if flag not in ("n", "y"):
            raise _malformed("bad GS2 channel binding flag")
        authzid = None
        if authz:
            if not authz.startswith("a="):
                raise _malformed("bad GS2 authzid")
            authzid = _saslname(authz[2:], "authzid")
        fields = bare.split(",")
        if fields[0].startswith("m="):
            raise _malformed("mandatory extension (m=) not supported")
        if len(fields) < 2 or not fields[0].startswith("n=") or not fields[1].startswith("r="):
            raise _malformed("client-first-message is not n=...,r=...")
        _check_extensions(fields[2:])
        raw_user = _saslname(fields[0][2:], "username")
        cnonce = fields[1][2:]
        if not _NONCE.fullmatch(cnonce):
            raise _malformed("bad client nonce")
        username = _prepare_username(raw_user)

        snonce = self._nonce_factory()
        if not isinstance(snonce, str) or not _NONCE.fullmatch(snonce):
            raise ValueError("nonce_factory must return printable ASCII without ','")
        creds, known = self._credentials(username, self._hash)
        nonce = cnonce + snonce
        salt = base64.b64encode(creds.salt).decode("ascii")
        server_first = f"r={nonce},s={salt},i={creds.iterations}"

        self._gs2_header = f"{flag},{authz},".encode()
        self._first_bare = bare
        self._server_first = server_first
        self._nonce = nonce
        self._username = username
        self._authzid = authzid
        self._creds = creds
        self._known = known
        return Challenge(server_first.encode("utf-8"))

    def _scram_final(self, data: bytes) -> Success:
        text = _utf8(data)
        if "\x00" in text:
            raise _malformed("NUL in SCRAM message")
        fields = text.split(",")
        if len(fields) < 3:
            raise _malformed("client-final-message is not c=...,r=...,p=...")
        c, r, *extensions, p = fields
        if not c.startswith("c=") or not r.startswith("r=") or not p.startswith("p="):
            raise _malformed("client-final-message is not c=...,r=...,p=...")
        _check_extensions(extensions)
        if _b64_attr(c[2:], "channel binding") != self._gs2_header:
            raise _malformed("channel binding does not match the GS2 header")
        if r[2:] != self._nonce:
            raise _malformed("nonce does not match")
        proof = _b64_attr(p[2:], "proof")

        creds = self._creds
        assert creds is not None
        h = self._hash
        without_proof = text[: len(text) - len(p) - 1]
        auth_message = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        client_signature = hmac.digest(creds.stored_key, auth_message, h)
        if len(proof) != len(client_signature):
            raise _not_authorized()
        client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
        match = hmac.compare_digest(hashlib.new(h, client_key).digest(), creds.stored_key)
        if not (match and self._known):
            raise _not_authorized()
        server_signature = hmac.digest(creds.server_key, auth_message, h)
        verifier = b"v=" + base64.b64encode(server_signature)
        return Success(verifier, self._username, self._authzid)


def _default_nonce() -> str:
    return secrets.token_urlsafe(18)
