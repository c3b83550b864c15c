"""Mutations of seed programs: byte-level, XML-aware injections, structure, read splits.

Every random choice goes through one `random.Random`-like object: a seeded `random.Random`
in long runs, Hypothesis's `st.randoms()` in CI (so Hypothesis can shrink a failure).
Only `random()`, `randrange()` and `choice()` are used.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from .program import ACTIONS, Program, Step

STREAMS = b"http://etherx.jabber.org/streams"
_LONG = b"n" * 2000
_LONG_NS = b"urn:" + b"u" * 1100

#: XML constructs, XMPP elements and byte sequences that reach interesting code paths.
TOKENS: tuple[bytes, ...] = (
    # restricted XML (RFC 6120 §11.1) and XML declarations
    b"<!-- c -->",
    b"<!--",
    b"-->",
    b"<?pi x?>",
    b"<?xml version='1.0'?>",
    b"<?xml version='1.0' encoding='ISO-8859-1'?>",
    b"<?xml version='1.1' encoding='utf-8' standalone='yes'?>",
    b"<!DOCTYPE x [<!ENTITY e 'v'>]>",
    b"<!DOCTYPE stream:stream SYSTEM 'x.dtd'>",
    b"<!ENTITY x 'y'>",
    b"<![CDATA[a<b]]>",
    b"]]>",
    # references
    b"&e;",
    b"&amp;",
    b"&lt;",
    b"&quot;",
    b"&#0;",
    b"&#65;",
    b"&#x1F600;",
    b"&#xD800;",
    b"&#xFFFE;",
    b"&#;",
    b"&",
    # stream level
    b"</stream:stream>",
    b"<stream:stream xmlns='jabber:server' xmlns:stream='" + STREAMS + b"'>",
    b"<stream:stream xmlns='jabber:client' xmlns:stream='" + STREAMS + b"' to='air.example'"
    b" version='1.0'>",
    b"<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
    b"<stream:error/>",
    b"<stream:features/>",
    # reliable delivery (acks)
    b"<sync xmlns='urn:zerolink:x2x:acks:0' h='0' next='0'/>",
    b"<sync xmlns='urn:zerolink:x2x:acks:0' h='4294967295' next='x' max='1'/>",
    b"<a xmlns='urn:xmpp:sm:3' h='4294967296'/>",
    b"<a xmlns='urn:xmpp:sm:3' h='\xd9\xa3'/>",
    b"<r xmlns='urn:xmpp:sm:3'/>",
    b"<enable xmlns='urn:xmpp:sm:3'/>",
    b"<resume xmlns='urn:xmpp:sm:2' previd='x' h='1'/>",
    # negotiation
    b"<handshake>da39a3ee5e6b4b0d3255bfef95601890afd80709</handshake>",
    b"<handshake>\xc3\xa9\xe2\x82\xac</handshake>",
    b"<handshake/>",
    b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
    b"AGp1bGlldAByMG0zMG15cjBtMzA=</auth>",
    b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'/>",
    b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X'>=</auth>",
    b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>biwsbj1qdWxpZXQscj1h</response>",
    b"<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
    b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    b"<iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
    b"<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
    b"<message from='x@ground.example' to='y@air.example'><body>b</body></message>",
    b"<presence/>",
    b"<iq type='result'/>",
    # names, namespaces, attributes
    b" xmlns:x='urn:x'",
    b" x:y='1'",
    b" xml:lang='de-CH'",
    b" xmlns=''",
    b" xmlns:stream='urn:other'",
    b" xmlns:xml='urn:bad'",
    b" xmlns:p=''",
    b"<p:el/>",
    b"<x:el xmlns:x='jabber:client'/>",
    b" from='x@GROUND.EXAMPLE.'",
    b" to='\xe2\x80\x8b@air.example'",
    b" from='@ground.example'",
    b" to='air.example/\xf0\x9f\x98\x80'",
    b" id='a>b'",
    b' type="error"',
    b" a='1' a='2'",
    b"<" + _LONG + b"/>",
    b"<x " + _LONG + b"='v'/>",
    b"<x xmlns='" + _LONG_NS + b"'/>",
    b"<x xmlns:l='" + _LONG_NS + b"' l:a='1'/>",
    b"<x a='" + b"v" * 5000 + b"'/>",
    # bytes
    b"\xff",
    b"\xfe\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xef\xbf\xbe",
    b"\xe2\x82",
    b"\xf4\x90\x80\x80",
    b"\x00",
    b"\x1b",
    b"\x0c",
    b"\x16\x03\x01\x00\xa5\x01\x00",
    b"\xef\xbb\xbf",
    "é".encode(),
    "日本語".encode(),
    "😀".encode(),
    "\u2028".encode(),
    b"\r\n",
    b"\r",
    b"\t",
    b"   ",
    b"'",
    b'"',
    b">",
    b"<",
    b"/>",
    b"</",
    b"=",
    b":",
    b"}",
    b"{",
)

#: Replacements for attribute values and text: addresses, counters, handshakes.
VALUES: tuple[bytes, ...] = (
    b"",
    b" ",
    b"0",
    b"-1",
    b"4294967295",
    b"4294967296",
    b"00000000001",
    b"\xd9\xa3",  # ARABIC-INDIC DIGIT THREE: str.isdigit() is true
    b"\xc2\xb2",  # SUPERSCRIPT TWO: isdigit() true, int() fails
    b"ground.example",
    b"GROUND.EXAMPLE.",
    b"x@ground.example/r",
    b"air.example",
    b"bot.air.example",
    b"juliet@air.example/balcony",
    b"@",
    b"/",
    b"a@b@c",
    b"[::1]",
    b"\xe2\x80\x8b",
    "ǅ".encode(),
    "Ⅻ".encode(),
    "ｆｏｏ".encode(),
    "é".encode() * 40,
    b"x" * 1100,
    b"&amp;&lt;&#10;",
    b"=",
    b"AGp1bGlldAByMG0zMG15cjBtMzA",
    b"biws",
    b"da39a3ee5e6b4b0d3255bfef95601890afd80709",
    b"DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",
    b"1.0",
    b"2.0",
    b"0.9",
    b"1.\xd9\xa3",
)

INTERESTING_BYTES = b"\x00\x09\x0a\x0d <>&'\"/=:?!-[]\x7f\x80\xbf\xc0\xc3\xe2\xed\xef\xf0\xf4\xff"


def _pos(rng: random.Random, data: bytes, boundary: bool) -> int:
    """A position in data; with `boundary`, at a tag boundary (before '<' or after '>')."""
    if boundary and data:
        marks = [i for i, c in enumerate(data) if c == 0x3C] + [
            i + 1 for i, c in enumerate(data) if c == 0x3E
        ]
        if marks:
            return rng.choice(marks)
    return rng.randrange(len(data) + 1)


def _range(rng: random.Random, data: bytes, limit: int = 64) -> tuple[int, int]:
    if not data:
        return 0, 0
    start = rng.randrange(len(data))
    return start, min(len(data), start + 1 + rng.randrange(limit))


def _nest(rng: random.Random) -> bytes:
    depth = rng.choice((3, 8, 63, 64, 65, 200))
    name = rng.choice((b"a", b"x:a", b"body"))
    decl = b" xmlns:x='urn:x'" if name.startswith(b"x:") else b""
    return (
        b"<"
        + name
        + decl
        + b">"
        + (b"<" + name + b">") * (depth - 1)
        + (b"</" + name + b">") * depth
    )


def mutate_bytes(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """One byte-level or XML-aware change to `data`."""
    op = rng.randrange(15)
    n = len(data)
    if op == 0 and n:  # flip a bit
        i = rng.randrange(n)
        return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]
    if op == 1 and n:  # set an interesting byte
        i = rng.randrange(n)
        return data[:i] + bytes([rng.choice(INTERESTING_BYTES)]) + data[i + 1 :]
    if op == 2:  # insert random bytes
        i = rng.randrange(n + 1)
        junk = bytes(rng.randrange(256) for _ in range(1 + rng.randrange(8)))
        return data[:i] + junk + data[i:]
    if op == 3 and n:  # delete a range
        a, b = _range(rng, data)
        return data[:a] + data[b:]
    if op == 4 and n:  # duplicate a range
        a, b = _range(rng, data, 256)
        return data[:b] + data[a:b] * (1 + rng.randrange(3)) + data[b:]
    if op == 5 and n:  # move a range
        a, b = _range(rng, data, 128)
        rest = data[:a] + data[b:]
        i = rng.randrange(len(rest) + 1)
        return rest[:i] + data[a:b] + rest[i:]
    if op in (6, 7):  # insert a token, at a tag boundary more often than not
        i = _pos(rng, data, rng.random() < 0.7)
        return data[:i] + rng.choice(TOKENS) + data[i:]
    if op == 8 and pool:  # splice: our head, another seed's tail (or a piece of it)
        other = rng.choice(pool)
        i = _pos(rng, data, True)
        j = _pos(rng, other, True)
        if rng.random() < 0.5:
            return data[:i] + other[j:]
        a, b = _range(rng, other, 512)
        return data[:i] + other[a:b] + data[i:]
    if op == 9:  # deep nesting at a tag boundary
        i = _pos(rng, data, True)
        return data[:i] + _nest(rng) + data[i:]
    if op == 10:  # replace an attribute value
        quotes = [i for i, c in enumerate(data) if c in (0x22, 0x27)]
        if len(quotes) >= 2:
            k = rng.randrange(len(quotes) - 1)
            a, b = quotes[k], quotes[k + 1]
            if data[a] == data[b]:
                return data[: a + 1] + rng.choice(VALUES) + data[b:]
    if op == 11:  # replace a text node (between '>' and '<')
        ends = [i for i, c in enumerate(data) if c == 0x3E]
        if ends:
            a = rng.choice(ends) + 1
            b = data.find(b"<", a)
            if b > 0:
                return data[:a] + rng.choice(VALUES) + data[b:]
    if op == 12:  # rename an element
        starts = [i for i, c in enumerate(data) if c == 0x3C]
        if starts:
            a = rng.choice(starts) + 1
            if data[a : a + 1] == b"/":
                a += 1
            b = a
            while b < n and data[b] not in b" \t\r\n/>":
                b += 1
            name = rng.choice(
                (
                    b"x",
                    b"stream:x",
                    b"stream:stream",
                    b"y:message",
                    b"message",
                    b"iq",
                    b"presence",
                    "méssage".encode(),
                    _LONG,
                    b"1x",
                    b"",
                )
            )
            return data[:a] + name + data[b:]
    if op == 13 and n:  # truncate
        return data[: rng.randrange(n)]
    if op == 14 and n:  # the rest in UTF-16 (LE or BE, perhaps with a BOM): UTF-8 only
        i = _pos(rng, data, True)
        text = data[i:].decode("utf-8", "replace")
        enc = rng.choice(("utf-16-le", "utf-16-be", "utf-16"))
        return data[:i] + text.encode(enc)
    # the chosen operation did not apply: insert a token anywhere
    i = rng.randrange(n + 1)
    return data[:i] + rng.choice(TOKENS) + data[i:]


def _data_steps(steps: list[Step]) -> list[int]:
    return [i for i, s in enumerate(steps) if s[0] == "data"]


def mutate_structure(rng: random.Random, steps: list[Step], pool: Sequence[Program]) -> None:
    """One change to the sequence of segments and actions, in place."""
    op = rng.randrange(6)
    datas = _data_steps(steps)
    if op == 0 and len(steps) > 1:  # drop a step
        del steps[rng.randrange(len(steps))]
    elif op == 1 and steps:  # duplicate a step
        i = rng.randrange(len(steps))
        steps.insert(i, steps[i])
    elif op == 2:  # insert an action
        action: Step = (
            ("time", rng.choice((1.0, 9.0, 11.0, 30.0, 61.0, 3600.0)))
            if rng.random() < 0.5
            else (rng.choice(ACTIONS),)
        )
        steps.insert(rng.randrange(len(steps) + 1), action)
    elif op == 3 and len(datas) >= 2:  # merge two data segments
        k = rng.randrange(len(datas) - 1)
        a, b = datas[k], datas[k + 1]
        merged = ("data", [b"".join(steps[a][1]) + b"".join(steps[b][1])])
        steps[a] = merged
        del steps[b]
    elif op == 4 and datas:  # split a segment in two (a peer waiting for an answer)
        i = rng.choice(datas)
        data = b"".join(steps[i][1])
        j = _pos(rng, data, True)
        steps[i : i + 1] = [s for s in (("data", [data[:j]]), ("data", [data[j:]])) if s[1][0]]
    elif op == 5 and pool:  # take a step from another seed
        other = rng.choice(pool).steps
        if other:
            steps.insert(rng.randrange(len(steps) + 1), rng.choice(other))


def split_reads(rng: random.Random, data: bytes) -> list[bytes]:
    """Split one segment into reads: whole, random cuts, small fixed sizes or byte by byte."""
    n = len(data)
    mode = rng.randrange(8)
    if n <= 1 or mode == 0:
        return [data]
    if mode == 1 and n <= 4096:
        return [data[i : i + 1] for i in range(n)]
    if mode == 2:
        size = rng.choice((2, 3, 5, 7, 16, 61))
        return [data[i : i + size] for i in range(0, n, size)]
    cuts = sorted({rng.randrange(1, n) for _ in range(1 + rng.randrange(min(n - 1, 12)))})
    bounds = [0, *cuts, n]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def mutate(rng: random.Random, seed: Program, pool: Sequence[Program], n_configs: int) -> Program:
    """A mutated copy of `seed` (reads re-split at random); `pool` gives splice material."""
    steps = [("data", [b"".join(s[1])]) if s[0] == "data" else s for s in seed.steps]
    chunks = [b"".join(s[1]) for p in pool for s in p.steps if s[0] == "data"]
    config = seed.config
    rounds = 1 + min(int(rng.random() ** 2 * 8), 7)  # mostly few changes, sometimes many
    for _ in range(rounds):
        r = rng.random()
        if r < 0.8:
            datas = _data_steps(steps)
            if not datas:
                steps.append(("data", [rng.choice(TOKENS)]))
                continue
            # Later segments more often: the negotiation before them then stays intact more
            # often, so more inputs reach authenticated states.
            i = datas[min(len(datas) - 1, int(len(datas) * rng.random() ** 0.5))]
            steps[i] = ("data", [mutate_bytes(rng, steps[i][1][0], chunks)])
        elif r < 0.97:
            mutate_structure(rng, steps, pool)
        else:
            config = rng.randrange(n_configs)
    out: list[Step] = []
    for s in steps:
        if s[0] == "data":
            if s[1][0]:
                out.append(("data", split_reads(rng, s[1][0])))
        else:
            out.append(s)
    return Program(config, out)
