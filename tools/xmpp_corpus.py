"""Generate a corpus of realistic XMPP server-to-server traffic, and train the zstd dictionary.

The corpus is what a modern client population puts on an X2X link: chat messages with a
receipt request, chat state and origin-id (UUID ids, full JIDs), receipts, chat states alone,
presence with entity capabilities, iq (ping, disco, vCard), MUC groupchat; id styles of several
clients. Deterministic (seeded), so the dictionary can be rebuilt byte for byte:

    python tools/xmpp_corpus.py --train src/zerolink/proto/dictionaries/xmpp-zstd.dict

(`--dump DIR` writes the samples instead, one file each.)
"""

from __future__ import annotations

import argparse
import random
import string
import uuid
from pathlib import Path

_WORDS_TEXT = (
    "ok see you tomorrow at the station thanks for the update battery level is fine "
    "weather looks good signal lost again we are moving north position report attached "
    "can you call me back when you land roger that copy all good night hello where are you"
)
WORDS = _WORDS_TEXT.split()
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
DOMAINS = ["example.org", "example.net", "air.example", "ground.example", "chat.example.com"]
RESOURCES = ["Conversations.x7Gq", "gajim.K3LM2Z", "Dino.f1e2d3", "Monal-iOS.abcd", "mobile"]
CAPS = [
    ("http://conversations.im", "D7QWcMm0nfgOdyq4pMqFZzXIRMc="),
    ("https://gajim.org", "mZ3qGm6kM3z0pCk6Bq3b+5e2n8A="),
    ("https://dino.im", "N2Q6XzWm3G8uWf7mH7b3Hq2XH0s="),
    ("http://monal-im.org", "Tq2wGf1xQ1H9h4jH3cX8u0Qp6mY="),
]


def body(rng: random.Random, chars: int | None = None) -> str:
    """A chat body; `chars` gives its exact length."""
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 14)))
    if chars is not None:
        while len(text) < chars:
            text += " " + rng.choice(WORDS)
        text = text[:chars]
    return text


def jid(rng: random.Random, domain: str | None = None, full: bool = True) -> str:
    j = f"{rng.choice(USERS)}@{domain or rng.choice(DOMAINS)}"
    return f"{j}/{rng.choice(RESOURCES)}" if full else j


def an_id(rng: random.Random) -> str:
    style = rng.random()
    if style < 0.6:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if style < 0.8:
        return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(12))
    if style < 0.9:
        return f"purple{rng.getrandbits(32):08x}"
    return f"{rng.randint(1, 99999)}:msg"


def chat_message(
    rng: random.Random, frm: str, to: str, text: str, msg_id: str | None = None
) -> str:
    """The typical modern chat message (receipt request, chat state, origin-id)."""
    msg_id = msg_id or str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return (
        f"<message from='{frm}' to='{to}' type='chat' id='{msg_id}'>"
        f"<body>{text}</body>"
        "<request xmlns='urn:xmpp:receipts'/>"
        "<active xmlns='http://jabber.org/protocol/chatstates'/>"
        f"<origin-id xmlns='urn:xmpp:sid:0' id='{msg_id}'/>"
        "</message>"
    )


def sample(rng: random.Random) -> str:
    frm, to = jid(rng), jid(rng)
    kind = rng.random()
    if kind < 0.4:
        return chat_message(rng, frm, to, body(rng), an_id(rng))
    if kind < 0.5:
        return (
            f"<message from='{frm}' to='{to}' id='{an_id(rng)}'>"
            f"<received xmlns='urn:xmpp:receipts' id='{an_id(rng)}'/></message>"
        )
    if kind < 0.6:
        state = rng.choice(["composing", "paused", "active", "inactive", "gone"])
        return (
            f"<message from='{frm}' to='{to}' type='chat' id='{an_id(rng)}'>"
            f"<{state} xmlns='http://jabber.org/protocol/chatstates'/>"
            "<no-store xmlns='urn:xmpp:hints'/></message>"
        )
    if kind < 0.75:
        node, ver = rng.choice(CAPS)
        show = rng.choice(["", "<show>away</show>", "<show>dnd</show>", "<show>xa</show>"])
        return (
            f"<presence from='{frm}' to='{jid(rng, full=False)}'>{show}"
            f"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{node}' ver='{ver}'/>"
            "</presence>"
        )
    if kind < 0.85:
        q = rng.choice(
            [
                "<ping xmlns='urn:xmpp:ping'/>",
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
                "<query xmlns='http://jabber.org/protocol/disco#items'/>",
                "<vCard xmlns='vcard-temp'/>",
                "<time xmlns='urn:xmpp:time'/>",
            ]
        )
        return f"<iq from='{frm}' to='{to}' type='get' id='{an_id(rng)}'>{q}</iq>"
    if kind < 0.9:
        return f"<iq from='{frm}' to='{to}' type='result' id='{an_id(rng)}'/>"
    room = f"{rng.choice(['ops', 'crew', 'team'])}@conference.{rng.choice(DOMAINS)}"
    return (
        f"<message from='{room}/{rng.choice(USERS)}' to='{frm}' type='groupchat' "
        f"id='{an_id(rng)}'><body>{body(rng)}</body>"
        f"<stanza-id xmlns='urn:xmpp:sid:0' id='{an_id(rng)}' by='{room}'/>"
        f"<origin-id xmlns='urn:xmpp:sid:0' id='{an_id(rng)}'/></message>"
    )


def corpus(n: int = 4000, seed: int = 361) -> list[bytes]:
    rng = random.Random(seed)
    return [sample(rng).encode() for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, help="write a trained zstd dictionary here")
    ap.add_argument("--size", type=int, default=4096, help="dictionary size in bytes")
    ap.add_argument("--dump", type=Path, help="write the samples into this folder")
    args = ap.parse_args()
    samples = corpus()
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(samples):
            (args.dump / f"{i:05d}.xml").write_bytes(s)
    if args.train:
        import zstandard

        d = zstandard.train_dictionary(args.size, samples, level=19, threads=1, steps=64)
        args.train.write_bytes(d.as_bytes())
        print(f"{args.train}: {len(d.as_bytes())} bytes, zstd dict id {d.dict_id()}")


if __name__ == "__main__":
    main()
