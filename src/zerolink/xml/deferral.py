"""Turn off expat's "reparse deferral" on every Python/expat combination.

expat 2.6 (and distributions that backported it, e.g. Debian 12's libexpat 2.5.0-1+deb12u5)
defers parsing a token that did not complete on the previous call until the amount of buffered
input has doubled. For a stream that is wrong: a stanza whose first read held only part of its
first tag is not reported when the rest arrives, but only when more bytes come (on a quiet link,
the next keepalive a minute later). Python 3.12.3+/3.11.9+ expose
``xmlparser.SetReparseDeferralEnabled``; older Pythons linked against a patched system libexpat
(Debian 12's own ``/usr/bin/python3``, 3.11.2) do not, although the library exports
``XML_SetReparseDeferralEnabled``. There the C function is called through ctypes on the
parser's ``XML_Parser`` handle, which CPython keeps as the first field after the object header.

The ctypes path is taken only when a probe shows that deferral is active, the Python API is
missing, and the loaded libexpat reports the same version as pyexpat (so the handle belongs to
that library); a second probe then checks that it worked. `STATUS` says which path is in use.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Any
from xml.parsers import expat

__all__ = ["STATUS", "disable"]


def _defers(disabler: Callable[[Any], None] | None) -> bool:
    """True when a parser (after `disabler`) holds back a tag completed by a second, short read."""
    p = expat.ParserCreate("UTF-8")
    if disabler is not None:
        disabler(p)
    seen: list[str] = []
    p.StartElementHandler = lambda name, attrs: seen.append(name)
    p.Parse(b"<r>", False)
    # One tag longer than what completes it: the second read does not double the buffer.
    p.Parse(b"<tag a='" + b"x" * 64, False)
    p.Parse(b"'/>", False)
    return "tag" not in seen


def _python_api(p: Any) -> None:
    p.SetReparseDeferralEnabled(False)


def _ctypes_setter() -> Callable[[Any], None] | None:
    """XML_SetReparseDeferralEnabled from the libexpat pyexpat uses, or None."""
    candidates: list[Any] = []
    with contextlib.suppress(OSError):
        candidates.append(ctypes.CDLL(None))
    name = ctypes.util.find_library("expat")
    if name:
        with contextlib.suppress(OSError):
            candidates.append(ctypes.CDLL(name))
    for lib in candidates:
        try:
            setter = lib.XML_SetReparseDeferralEnabled
            version = lib.XML_ExpatVersion
        except AttributeError:
            continue
        version.restype = ctypes.c_char_p
        version.argtypes = []
        if (version() or b"").decode("ascii", "replace") != expat.EXPAT_VERSION:
            continue  # another copy of expat than the one pyexpat is built on
        setter.restype = ctypes.c_ubyte
        setter.argtypes = [ctypes.c_void_p, ctypes.c_ubyte]
        offset = object.__basicsize__  # the XML_Parser handle follows PyObject_HEAD

        def disable(p: Any, _setter: Any = setter, _offset: int = offset) -> None:
            handle = ctypes.c_void_p.from_address(id(p) + _offset).value
            if handle:
                _setter(handle, 0)

        return disable
    return None


def _choose() -> tuple[str, Callable[[Any], None] | None]:
    if hasattr(expat.ParserCreate(), "SetReparseDeferralEnabled"):
        return "python-api", _python_api
    if not _defers(None):
        return "no-deferral", None
    setter = _ctypes_setter()
    if setter is not None and not _defers(setter):
        return "ctypes", setter
    return "deferring", None


#: "python-api", "no-deferral" (this expat never defers), "ctypes", or "deferring" (could not
#: be turned off: complete stanzas may wait for more input; the daemon warns at start).
STATUS, _disable = _choose()


def disable(p: Any) -> None:
    """Make the pyexpat parser `p` parse every complete token at once."""
    if _disable is not None:
        _disable(p)
