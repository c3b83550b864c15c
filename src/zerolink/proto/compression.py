"""Link compression (zerolink extension, agreed a priori; wire format in docs/protocol.md).

Sans-I/O: bytes in, bytes out. Each direction of a link is one compressed stream from its
first byte: a 6-byte header (magic 0xFE, codec and scope, dictionary id), then

* scope "stream": one raw-deflate (zlib) or magicless zstd stream, flushed once per burst
  (Z_SYNC_FLUSH / zstd FLUSH_BLOCK), so a burst is readable when it arrives;
* scope "stanza": each write unit (a stanza, a keepalive) a complete stream of its own,
  compressed with the preset dictionary only, so one stanza's size says nothing about
  another's content (the CRIME concern).

The header carries the codec, scope and dictionary id so that a receiver configured otherwise
names the mismatch instead of parsing garbage. Decompressed output is handed out in bounded
chunks (`CHUNK`), so a small input cannot make the receiver hold a large output at once (the
stanza parser then enforces max_stanza_size on what the chunks carry).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources

from zerolink.errors import RemoteProtocolError

__all__ = [
    "CHUNK",
    "CODECS",
    "MAGIC",
    "CompressionSpec",
    "Compressor",
    "Decompressor",
    "builtin_dictionary",
    "domains_block",
    "header",
]

MAGIC = 0xFE  # never a byte of UTF-8 XML, nor a TLS record type
CODECS = {"zlib": 1, "zstd": 2}
SCOPES = {"stream": 0, "stanza": 1}
HEADER_SIZE = 6
CHUNK = 65536  # most decompressed bytes handed to the parser at once

# zlib: raw deflate, a 8 KiB window, memLevel 6: 64 KiB to compress, ~15 KiB to inflate.
ZLIB_WBITS = 13
ZLIB_MEMLEVEL = 6
ZLIB_LEVEL = 9
# zstd: window 2^14 (16 KiB); small hash and chain tables keep a compressor near 0.4 MiB.
ZSTD_LEVEL = 19
ZSTD_WINDOW_LOG = 14
ZSTD_HASH_LOG = 13
ZSTD_CHAIN_LOG = 14
ZSTD_SLICE = 32  # compressed bytes fed at once: with the 16 KiB window, <= 128 KiB out


def domains_block(domains: Iterable[str]) -> bytes:
    """The link's domains in canonical order (sorted, one per line), for a dictionary."""
    return "".join(f"{d}\n" for d in sorted(set(domains))).encode()


def builtin_dictionary(codec: str) -> bytes:
    """The dictionary shipped with zerolink for `codec` (without the link's domains)."""
    name = "xmpp-zlib.dict" if codec == "zlib" else "xmpp-zstd.dict"
    return resources.files("zerolink.proto").joinpath("dictionaries", name).read_bytes()


def dictionary_id(dictionary: bytes) -> int:
    """The id sent in the header: the first 4 bytes of SHA-256 of the dictionary (0: none)."""
    if not dictionary:
        return 0
    return int.from_bytes(hashlib.sha256(dictionary).digest()[:4], "big") or 1


@dataclass(frozen=True, slots=True)
class CompressionSpec:
    """What both sides of a link agreed: codec, scope and the exact dictionary bytes."""

    codec: str  # "zlib" | "zstd"
    scope: str = "stream"  # "stream" | "stanza"
    dictionary: bytes = b""
    dictionary_name: str = "none"  # for messages: "builtin", "none" or a path

    @property
    def dict_id(self) -> int:
        return dictionary_id(self.dictionary)


def header(spec: CompressionSpec) -> bytes:
    """The first bytes of a compressed direction."""
    fmt = (CODECS[spec.codec] << 4) | SCOPES[spec.scope]
    return bytes((MAGIC, fmt)) + spec.dict_id.to_bytes(4, "big")


def _describe(fmt: int, dict_id: int) -> str:
    codec = {v: k for k, v in CODECS.items()}.get(fmt >> 4, f"codec {fmt >> 4}")
    scope = {v: k for k, v in SCOPES.items()}.get(fmt & 15, f"scope {fmt & 15}")
    return f"{codec}, scope {scope}, dictionary id {dict_id:08x}"


def _zstd_params(zstd: object) -> object:
    return zstd.ZstdCompressionParameters.from_level(  # type: ignore[attr-defined]
        ZSTD_LEVEL,
        window_log=ZSTD_WINDOW_LOG,
        hash_log=ZSTD_HASH_LOG,
        chain_log=ZSTD_CHAIN_LOG,
        format=zstd.FORMAT_ZSTD1_MAGICLESS,  # type: ignore[attr-defined]
        write_checksum=0,
        write_dict_id=0,
        write_content_size=0,
    )


def _zstd_dict(zstd: object, dictionary: bytes) -> object | None:
    if not dictionary:
        return None
    kind = zstd.DICT_TYPE_AUTO  # type: ignore[attr-defined]
    return zstd.ZstdCompressionDict(dictionary, dict_type=kind)  # type: ignore[attr-defined]


class Compressor:
    """Our direction: `compress(units)` turns one burst of write units into wire bytes."""

    def __init__(self, spec: CompressionSpec) -> None:
        self.spec = spec
        self._started = False
        self._stream: object | None = None
        if spec.codec == "zstd":
            import zstandard as zstd

            self._zstd = zstd
            self._cctx = zstd.ZstdCompressor(
                dict_data=_zstd_dict(zstd, spec.dictionary), compression_params=_zstd_params(zstd)
            )
            if spec.scope == "stream":
                self._stream = self._cctx.compressobj()
        elif spec.scope == "stream":
            self._stream = self._zlib()

    def _zlib(self) -> object:
        kw = {"zdict": self.spec.dictionary} if self.spec.dictionary else {}
        return zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, -ZLIB_WBITS, ZLIB_MEMLEVEL, **kw)

    def compress(self, units: list[bytes]) -> bytes:
        """One burst: the header first on the first call, then the units, flushed."""
        if not units:
            return b""
        out: list[bytes] = []
        if not self._started:
            self._started = True
            out.append(header(self.spec))
        stream = self._stream
        if stream is not None:  # one stream, one flush per burst
            data = b"".join(units)
            if self.spec.codec == "zstd":
                flush = self._zstd.COMPRESSOBJ_FLUSH_BLOCK
            else:
                flush = zlib.Z_SYNC_FLUSH
            out.append(stream.compress(data))  # type: ignore[attr-defined]
            out.append(stream.flush(flush))  # type: ignore[attr-defined]
        elif self.spec.codec == "zstd":
            out.extend(self._cctx.compress(u) for u in units)
        else:
            for u in units:
                c = self._zlib()
                out.append(c.compress(u))  # type: ignore[attr-defined]
                out.append(c.flush(zlib.Z_FINISH))  # type: ignore[attr-defined]
        return b"".join(out)


def _bad(text: str) -> RemoteProtocolError:
    return RemoteProtocolError("bad-format", text)


class Decompressor:
    """The peer's direction: `feed(data)` yields plaintext in chunks of at most `CHUNK`.

    Raises `RemoteProtocolError` (``bad-format``) for a missing or different header (named:
    which side compresses, which dictionary) and for corrupt compressed data.
    """

    def __init__(self, spec: CompressionSpec) -> None:
        self.spec = spec
        self._head = b""
        self._ready = False
        self._obj: object | None = None
        if spec.codec == "zstd":
            import zstandard as zstd

            self._dctx = zstd.ZstdDecompressor(
                dict_data=_zstd_dict(zstd, spec.dictionary),
                max_window_size=1 << ZSTD_WINDOW_LOG,
                format=zstd.FORMAT_ZSTD1_MAGICLESS,
            )
            self._zerror: type[Exception] = zstd.ZstdError
        self._obj = self._new()

    def _new(self) -> object:
        if self.spec.codec == "zstd":
            return self._dctx.decompressobj()
        kw = {"zdict": self.spec.dictionary} if self.spec.dictionary else {}
        return zlib.decompressobj(-ZLIB_WBITS, **kw)

    def _check_header(self, data: bytes) -> bytes:
        """Collect and check the 6 header bytes; return what follows them."""
        if not self._head and data[0] != MAGIC:
            raise _bad(
                "the peer sends uncompressed data where compression "
                f"({self.spec.codec}) is configured: is compression set on one side only?"
            )
        need = HEADER_SIZE - len(self._head)
        self._head += data[:need]
        rest = data[need:]
        if len(self._head) < HEADER_SIZE:
            return b""
        theirs = (self._head[1], int.from_bytes(self._head[2:6], "big"))
        mine = header(self.spec)
        ours = (mine[1], self.spec.dict_id)
        if theirs != ours:
            raise _bad(
                f"compression mismatch: the peer sends {_describe(*theirs)}; "
                f"this side expects {_describe(*ours)} (dictionary {self.spec.dictionary_name})"
                ": are compression, compression_scope and compression_dictionary (and, with "
                "the builtin dictionary, the link's domains) the same on both sides?"
            )
        self._ready = True
        return rest

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not self._ready:
            data = self._check_header(data) if data else b""
        if not data:
            return
        if self.spec.codec == "zstd":
            yield from self._feed_zstd(data)
        else:
            yield from self._feed_zlib(data)

    def _feed_zlib(self, data: bytes) -> Iterator[bytes]:
        stanza = self.spec.scope == "stanza"
        while data:
            d = self._obj
            try:
                out = d.decompress(data, CHUNK)  # type: ignore[attr-defined]
            except zlib.error as exc:
                raise _bad(f"corrupt zlib data from the peer: {exc}") from None
            if d.eof:  # type: ignore[attr-defined]
                if not stanza:
                    raise _bad("the peer's zlib stream ended (it must not, with scope stream)")
                data = d.unused_data  # type: ignore[attr-defined]
                self._obj = self._new()
            else:
                data = d.unconsumed_tail  # type: ignore[attr-defined]
            if out:
                yield out

    def _feed_zstd(self, data: bytes) -> Iterator[bytes]:
        stanza = self.spec.scope == "stanza"
        pending: list[bytes] = []
        size = 0
        for i in range(0, len(data), ZSTD_SLICE):
            piece = data[i : i + ZSTD_SLICE]
            while piece:
                d = self._obj
                try:
                    out = d.decompress(piece)  # type: ignore[attr-defined]
                except self._zerror as exc:
                    raise _bad(f"corrupt zstd data from the peer: {exc}") from None
                piece = b""
                if d.eof:  # type: ignore[attr-defined]
                    if not stanza:
                        raise _bad("the peer's zstd frame ended (it must not, with scope stream)")
                    piece = d.unused_data  # type: ignore[attr-defined]
                    self._obj = self._new()
                if out:
                    pending.append(out)
                    size += len(out)
                    if size >= CHUNK:
                        yield b"".join(pending)
                        pending.clear()
                        size = 0
        if pending:
            yield b"".join(pending)


def link_dictionary(codec: str, choice: str, domains: Iterable[str], file: bytes = b"") -> bytes:
    """The dictionary of a link: "builtin" (zerolink's for the codec, then the link's domains in
    canonical order, nearest the data where they help most), "none", or a file's bytes."""
    if choice == "none":
        return b""
    if choice == "builtin":
        return builtin_dictionary(codec) + domains_block(domains)
    return file
