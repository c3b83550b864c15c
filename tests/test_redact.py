"""The debug log's redaction of secrets, in memory: every chunking of the bytes hides them."""

from __future__ import annotations

import base64

import pytest

from zerolink.net.redact import COMPONENT_SECRETS, MARK, SASL_SECRETS, Redactor

PLAIN = base64.b64encode(b"\0pilot\0correct horse battery").decode()
C2S_IN = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' to='air.example' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{PLAIN}</auth>\n"
    "<sasl:response xmlns:sasl='urn:ietf:params:xml:ns:xmpp-sasl'>"
    "Yz1iaXdzLHI9c2VjcmV0</sasl:response>"
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'/>"
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X'><![CDATA[c2VjcmV0]]></auth>"
    "<message to='a@b'><body>hello &lt;auth&gt; world</body></message>"
).encode()
C2S_SHOWN = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' to='air.example' "
    b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>[redacted]</auth>\n"
    b"<sasl:response xmlns:sasl='urn:ietf:params:xml:ns:xmpp-sasl'>[redacted]</sasl:response>"
    b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'/>"
    b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X'>[redacted]</auth>"
    b"<message to='a@b'><body>hello &lt;auth&gt; world</body></message>"
)
SECRETS = (PLAIN.encode(), b"Yz1iaXdzLHI9c2VjcmV0", b"c2VjcmV0")


def run(red: Redactor, chunks: list[bytes]) -> bytes:
    return b"".join(red(c) for c in chunks)


def test_sasl_payloads_are_hidden():
    assert run(Redactor(SASL_SECRETS), [C2S_IN]) == C2S_SHOWN


@pytest.mark.parametrize("cut", range(1, len(C2S_IN)))
def test_every_split_into_two_reads_hides_them(cut: int):
    out = run(Redactor(SASL_SECRETS), [C2S_IN[:cut], C2S_IN[cut:]])
    for secret in SECRETS:
        assert secret not in out
    # apart from where the mark falls, the rest of the bytes are shown as they are
    assert out.replace(MARK, b"") == C2S_SHOWN.replace(MARK, b"")


def test_one_byte_at_a_time():
    out = run(Redactor(SASL_SECRETS), [C2S_IN[i : i + 1] for i in range(len(C2S_IN))])
    for secret in SECRETS:
        assert secret[1:] not in out  # not even the tail: each byte was hidden on its own
    assert out.replace(MARK, b"") == C2S_SHOWN.replace(MARK, b"")


def test_server_side_challenge_and_success():
    data = (
        b"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1zZXJ2ZXItbm9uY2U=</challenge>"
        b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj1zaWduYXR1cmU=</success>"
        b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
    )
    assert run(Redactor(SASL_SECRETS), [data]) == (
        b"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>[redacted]</challenge>"
        b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>[redacted]</success>"
        b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
    )


def test_component_handshake_digest_is_hidden():
    digest = b"aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
    red = Redactor(COMPONENT_SECRETS)
    out = run(red, [b"<handshake>", digest[:7], digest[7:], b"</handshake>", b"<handshake/>"])
    # each read is one log line, with its own mark
    assert out == b"<handshake>[redacted][redacted]</handshake><handshake/>"


def test_without_secret_elements_bytes_pass_unchanged():
    assert run(Redactor(frozenset()), [C2S_IN]) == C2S_IN
