"""Bytes on the link per typical modern chat message, plain and with each compression setting.

The message (~368 bytes plain): a 41-character body, a receipt request, a chat state, an
origin-id, a UUID id, full JIDs both ways. Each message leaves as its own burst (one flush), as
on a link where messages are seconds apart. Prints the first message, the mean of the 2nd-10th
(bodies varying), the share of plain, and how many such messages a 2400 bit/s link carries per
minute (mean size, 8 bits per byte).

    python bench/link_bytes.py
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from xmpp_corpus import chat_message

from zerolink.proto.compression import (
    CompressionSpec,
    Compressor,
    link_dictionary,
)

DOMAINS = ("air.example", "ground.example")
BITRATE = 2400
# Not the corpus's vocabulary: the bodies must not be what the dictionary was trained on.
_VOCABULARY_TEXT = (
    "meet me near gate four later tonight please bring maps fuel water spare radio check "
    "coordinates before departure landing delayed thirty minutes wind gusting heavy rain "
    "supplies arrived camp three need medical kit urgently crossing ridge now"
)
VOCABULARY = _VOCABULARY_TEXT.split()


def body(rng: random.Random, chars: int) -> str:
    text = ""
    while len(text) < chars:
        text += rng.choice(VOCABULARY) + " "
    return text[:chars]


def messages(n: int = 10, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    return [
        chat_message(
            rng,
            "alice@air.example/Conversations.x7G",
            "bob@ground.example/gajim.K3L",
            body(rng, 41),
        ).encode()
        for _ in range(n)
    ]


def measure(spec: CompressionSpec | None, msgs: list[bytes]) -> list[int]:
    if spec is None:
        return [len(m) for m in msgs]
    c = Compressor(spec)
    return [len(c.compress([m])) for m in msgs]


SETTINGS: list[tuple[str, CompressionSpec | None]] = [("plain", None)]
for codec in ("zstd", "zlib"):
    for scope in ("stream", "stanza"):
        for dic in ("builtin", "none"):
            SETTINGS.append(
                (
                    f"{codec} {scope} dict={dic}",
                    CompressionSpec(codec, scope, link_dictionary(codec, dic, DOMAINS), dic),
                )
            )


def main() -> None:
    msgs = messages()
    plain = measure(None, msgs)
    p_first, p_rest = plain[0], sum(plain[1:]) / 9
    print(f"{'setting':28} {'first':>6} {'%':>5} {'2nd-10th':>9} {'%':>5} {'msg/min':>8}")
    for name, spec in SETTINGS:
        sizes = measure(spec, msgs)
        first, rest = sizes[0], sum(sizes[1:]) / 9
        per_min = BITRATE / 8 * 60 / rest
        print(
            f"{name:28} {first:6d} {100 * first / p_first:5.1f} {rest:9.1f} "
            f"{100 * rest / p_rest:5.1f} {per_min:8.0f}"
        )


if __name__ == "__main__":
    main()
