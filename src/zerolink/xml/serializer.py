"""Serialize `Element`s as they appear inside an XMPP stream, with minimal namespace declarations.

Stanzas are held in ``jabber:server``; on the wire they are written in the stream's content
namespace, which is the default namespace there, so a plain stanza carries no ``xmlns`` at all
(bytes matter on constrained links). A child in another namespace redeclares the default
namespace once; its descendants in that namespace inherit it. Prefixes are only generated for
namespaced attributes other than ``xml:lang`` (rare). Attribute values use single quotes.

Escaping: text escapes ``& < >`` and ``\\r``; attribute values escape ``& < ' "`` and
``\\t \\n \\r`` (as character references, so whitespace survives attribute normalisation).
Characters XML 1.0 cannot represent (C0 controls other than tab/newline/CR, lone surrogates,
U+FFFE/U+FFFF) raise `ValueError`. The check runs once over the finished output: an ASCII
stanza (the usual case) is encoded and its C0 controls are counted with one
``bytes.translate`` (several times faster than a regex scan); anything else gets the regex,
which catches them all.
"""

from __future__ import annotations

import re

from zerolink.errors import STREAM_CONDITIONS, STREAM_ERROR_NS, STREAMS_NS
from zerolink.xml.element import SERVER_NS, XML_NS, Element, split_name

__all__ = ["STREAM_CLOSE", "serialize", "stream_error", "stream_header"]

STREAM_CLOSE = b"</stream:stream>"

_XMLNS_NS = "http://www.w3.org/2000/xmlns/"
_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]").search
# C0 controls XML 1.0 forbids (all but tab, newline, carriage return), for bytes.translate.
_C0_INVALID = bytes(c for c in range(32) if c not in (9, 10, 13))
_TEXT_ESC = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESC = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        "'": "&apos;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)
_ATTR_SPECIAL = re.compile("[&<'\"\t\n\r]").search

_CACHE_LIMIT = 4096
_SPLIT: dict[str, tuple[str, str]] = {}


def _split(tag: str) -> tuple[str, str]:
    r = split_name(tag)
    if len(_SPLIT) >= _CACHE_LIMIT:
        _SPLIT.clear()
    _SPLIT[tag] = r
    return r


def _attr(v: str) -> str:
    return v.translate(_ATTR_ESC) if _ATTR_SPECIAL(v) else v


def _check(s: str) -> str:
    m = _INVALID(s)
    if m is not None:
        raise ValueError(f"character {m.group()!r} cannot be represented in XML 1.0")
    return s


def _qualified_attrs(attrib: dict[str, str]) -> str:
    """Attributes when some are namespaced: xml:lang as is, others under generated prefixes."""
    out = ""
    prefixes: dict[str, str] = {}
    for k, v in attrib.items():
        if "{" in k:
            ns, local = split_name(k)
            if ns == XML_NS:
                k = "xml:" + local
            elif ns == _XMLNS_NS:
                raise ValueError(f"namespace declarations are not attributes: {k!r}")
            elif ns:
                prefix = prefixes.get(ns)
                if prefix is None:
                    prefix = prefixes[ns] = f"ns{len(prefixes)}"
                    out += " xmlns:" + prefix + "='" + _attr(ns) + "'"
                k = prefix + ":" + local
            else:
                k = local
        out += " " + k + "='" + _attr(v) + "'"
    return out


def _write(el: Element, content_ns: str, default: str, out: list[str]) -> None:
    ns, local = _SPLIT.get(el.tag) or _split(el.tag)
    if ns == SERVER_NS:
        ns = content_ns
    head = "<" + local
    if ns != default:
        head += " xmlns='" + _attr(ns) + "'"  # also xmlns='' for an element in no namespace
        default = ns
    attrib = el.attrib
    if attrib:
        for k in attrib:
            if "{" in k:
                head += _qualified_attrs(attrib)
                break
        else:
            for k, v in attrib.items():
                if _ATTR_SPECIAL(v):
                    v = v.translate(_ATTR_ESC)
                head += " " + k + "='" + v + "'"
    children = el.children
    if not children:
        out.append(head + "/>")
        return
    out.append(head + ">")
    for c in children:
        if type(c) is str:
            if "&" in c or "<" in c or ">" in c or "\r" in c:
                c = c.translate(_TEXT_ESC)
            out.append(c)
        else:
            _write(c, content_ns, default, out)  # type: ignore[arg-type]
    out.append("</" + local + ">")


def serialize(el: Element, *, content_ns: str = SERVER_NS, default_ns: str | None = None) -> bytes:
    """UTF-8 bytes for el written inside a stream whose content namespace is content_ns.

    default_ns is the default namespace in force where el is written (content_ns if None).
    """
    out: list[str] = []
    _write(el, content_ns, content_ns if default_ns is None else default_ns, out)
    s = "".join(out)
    if s.isascii():
        data = s.encode("ascii")
        if len(data.translate(None, _C0_INVALID)) == len(data):
            return data
    return _check(s).encode()


def stream_header(attrs: dict[str, str], *, default_ns: str, xml_declaration: bool = True) -> bytes:
    """The opening ``<stream:stream ...>`` tag (left open), declaring default_ns and ``stream:``.

    attrs are in Clark notation (``{XML_NS}lang`` or ``xml:lang``); "xmlns" keys are ignored
    since the declarations are written from default_ns.
    """
    rest = {k: v for k, v in attrs.items() if k != "xmlns" and not k.startswith("xmlns:")}
    if "xml:lang" in rest:
        rest["{" + XML_NS + "}lang"] = rest.pop("xml:lang")
    head = "<?xml version='1.0'?>" if xml_declaration else ""
    head += (
        "<stream:stream xmlns='"
        + _attr(default_ns)
        + "' xmlns:stream='"
        + STREAMS_NS
        + "'"
        + _qualified_attrs(rest)
        + ">"
    )
    return _check(head).encode()


def stream_error(condition: str, text: str | None = None) -> bytes:
    """A complete ``<stream:error>`` element (RFC 6120 §4.9) for the given condition."""
    if condition not in STREAM_CONDITIONS:
        raise ValueError(f"not an RFC 6120 stream error condition: {condition!r}")
    out = "<stream:error><" + condition + " xmlns='" + STREAM_ERROR_NS + "'/>"
    if text:
        out += "<text xmlns='" + STREAM_ERROR_NS + "'>" + text.translate(_TEXT_ESC) + "</text>"
    return _check(out + "</stream:error>").encode()
