"""zerolink.idn: the one IDNA conversion (IDNA2008 + UTS #46), agreeing with JID domainparts."""

from __future__ import annotations

from pathlib import Path

import pytest

import zerolink
from zerolink.idn import IDNError, domain_to_ascii, domain_to_unicode
from zerolink.jid import normalize_domain


@pytest.mark.parametrize(
    ("name", "ascii_form"),
    [
        # IDNA2008 keeps ß and ς (IDNA2003, the stdlib "idna" codec, maps them to ss and σ)
        ("faß.example", "xn--fa-hia.example"),
        ("Faß.Example.", "xn--fa-hia.example"),
        ("xn--fa-hia.example", "xn--fa-hia.example"),
        ("*.faß.example", "*.xn--fa-hia.example"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("Air.Example", "air.example"),
    ],
)
def test_domain_to_ascii_is_idna2008(name: str, ascii_form: str) -> None:
    assert domain_to_ascii(name) == ascii_form
    bare = name.removeprefix("*.")
    # the same domain as the JID domainpart, whichever form it is written in
    assert domain_to_unicode(bare) == normalize_domain(bare)
    assert normalize_domain(domain_to_ascii(bare)) == normalize_domain(bare)


@pytest.mark.parametrize("name", ["a..b", "-x.example", "[::1]", "", "."])
def test_what_is_no_domain_name_is_an_idn_error(name: str) -> None:
    with pytest.raises(IDNError):
        domain_to_ascii(name)


def test_no_other_idna_conversion_in_the_source() -> None:
    """One IDNA function: the stdlib's IDNA2003 codec disagrees with JIDs on ß, ς, ZWJ."""
    root = Path(zerolink.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert '.encode("idna")' not in text and ".encode('idna')" not in text, path
        if path.name not in ("idn.py", "jid.py"):  # jid prepares domainparts (U-labels)
            assert "idna.encode(" not in text, f"{path}: use zerolink.idn.domain_to_ascii"
