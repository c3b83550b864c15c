"""The ASCII form of internationalized domain names: IDNA2008 with UTS #46 mapping.

One conversion for every name that leaves zerolink as ASCII: certificate names and SNI, DNS
queries, host names in the configuration. It is the IDNA that `zerolink.jid` prepares
domainparts with. The standard library's ``"idna"`` codec is IDNA2003, which turns
``faß.example`` into ``fass.example`` where IDNA2008 gives ``xn--fa-hia.example``: a peer's
certificate for its own domain would not match, and the SNI would name another domain.
Depends on the ``idna`` package only, so that every layer (certgen too) can use it.
"""

from __future__ import annotations

import idna

__all__ = ["IDNError", "domain_to_ascii", "domain_to_unicode"]


class IDNError(ValueError):
    """Not a valid domain name; `str()` is the IDNA library's reason."""


def domain_to_ascii(name: str) -> str:
    """`name` (U-labels or A-labels, any case) as lowercase A-labels.

    One trailing dot is stripped; a leading ``*.`` (a wildcard label, as in certificates and
    `[peer] domains`) is kept. Raises `IDNError`.
    """
    if name.startswith("*."):
        return "*." + domain_to_ascii(name[2:])
    text = name[:-1] if name.endswith(".") else name
    if not text:
        raise IDNError("empty domain name")
    try:
        return idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise IDNError(str(exc) or f"invalid domain name {name!r}") from None


def domain_to_unicode(name: str) -> str:
    """`name` as lowercase U-labels (for people and for id-on-xmppAddr). Raises `IDNError`."""
    try:
        return idna.decode(domain_to_ascii(name))
    except (idna.IDNAError, UnicodeError) as exc:
        raise IDNError(str(exc) or f"invalid domain name {name!r}") from None
