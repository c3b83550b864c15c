"""Reverse DNS identity check for ``address`` peers (XEP-0361 §4.2 item 2, §5).

XEP-0361 §5: "Where source IP address is checked, this may be done directly by match of IP
address or by use of reverse DNS lookup to identify the connecting server. If reverse DNS
Lookup is used, it is RECOMMENDED to use DNS SEC to mitigate against DNS attacks."

`check_reverse_dns` does forward-confirmed reverse DNS (FCrDNS):

1. the PTR records of the source address (``3.0.0.127.in-addr.arpa`` / ``ip6.arpa``) must
   include the expected name. Names are compared in their A-label (IDNA) form,
   case-insensitively, ignoring a trailing dot. If the address has several PTR records it is
   enough that ONE of them is the expected name: an address may legitimately carry several
   names, and the others are simply not the peer we are checking;
2. the A (IPv4) or AAAA (IPv6) records of that name must contain the source address again.
   Step 2 matters: whoever controls the reverse zone of an address (for example the owner of
   a leased block) can put any name in a PTR; only the owner of the forward zone can make the
   name point back.

An IPv4-mapped IPv6 address (``::ffff:127.0.0.3``, from a dual-stack listener) is checked as
the IPv4 address; an IPv6 scope (``%eth0``) is ignored.

**DNSSEC** (``dnssec=True``). zerolink is a stub: it does not validate signatures itself.
It sets the DO bit (EDNS0, 1232-byte payload) and the AD bit on its queries and requires the
AD (Authentic Data) flag in BOTH responses, the PTR answer and the forward answer. AD is how a
*validating recursive resolver* says it has verified the chain of trust; an answer without
it (unsigned zone, insecure delegation, or a non-validating resolver) fails the check. This is
only as good as the path to that resolver: AD is a plain header bit that anyone on the path can
set, so the resolver must be trusted and reached over a secure path - run it on the same host
(``127.0.0.1`` / ``::1``, e.g. unbound or a local systemd-resolved with DNSSEC=yes), or on the
closed/IPsec-protected network. Both the reverse zone and the forward zone must be signed, with
a chain of trust from the resolver's trust anchor.

The check never raises: every failure (NXDOMAIN, no answer, SERVFAIL/REFUSED, timeout, an
unreachable resolver, a bad argument) is returned as ``RDNSResult(ok=False, reason=...)`` with
a sentence meant for the log. Nothing is cached here; the resolver is expected to cache.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename

from zerolink.idn import domain_to_ascii

__all__ = ["EDNS_PAYLOAD", "RDNSResult", "check_reverse_dns"]

#: EDNS0 UDP payload size announced with ``dnssec=True`` (the DNS Flag Day 2020 value).
EDNS_PAYLOAD = 1232

# Extra time the whole check may take beyond `timeout` before it is cut off regardless
# (dnspython enforces `timeout` per query; this is only a safety net for the caller).
_GRACE = 0.25

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class RDNSResult:
    """The outcome of a reverse DNS check; `reason` is a human-readable sentence for the log."""

    ok: bool
    reason: str


def _parse_address(address: str) -> IPAddress:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _expected_dns_name(name: str) -> dns.name.Name:
    """`name` (U-labels or A-labels, any case, optional trailing dot) as an absolute DNS name."""
    text = name[:-1] if name.endswith(".") else name
    if not text:
        raise ValueError("empty name")
    ascii_form = text if text.isascii() else domain_to_ascii(text)
    return dns.name.from_text(ascii_form, origin=dns.name.root)


def _show(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def _make_resolver(
    resolver: tuple[str, int] | None, dnssec: bool, timeout: float
) -> tuple[dns.asyncresolver.Resolver, str]:
    """A fresh resolver and its description for log reasons."""
    if resolver is None:
        res = dns.asyncresolver.Resolver()  # /etc/resolv.conf
        servers = ", ".join(str(ns) for ns in res.nameservers)
        desc = f"system resolver ({servers})"
    else:
        host, port = resolver
        ip = ipaddress.ip_address(host)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"bad resolver port {port!r}")
        res = dns.asyncresolver.Resolver(configure=False)
        res.nameservers = [dns.nameserver.Do53Nameserver(str(ip), port)]
        desc = f"resolver [{ip}]:{port}" if ip.version == 6 else f"resolver {ip}:{port}"
    res.timeout = timeout
    res.lifetime = timeout
    res.cache = None
    if dnssec:
        res.use_edns(0, dns.flags.DO, EDNS_PAYLOAD)
        res.flags = dns.flags.RD | dns.flags.AD
    return res, desc


class _Failed(Exception):
    """Internal: carries the reason of a failed step up to `check_reverse_dns`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Check:
    def __init__(
        self,
        ip: IPAddress,
        expected: dns.name.Name,
        res: dns.asyncresolver.Resolver,
        desc: str,
        dnssec: bool,
        timeout: float,
    ) -> None:
        self.ip = ip
        self.expected = expected
        self.res = res
        self.desc = desc
        self.dnssec = dnssec
        self.timeout = timeout
        self.deadline = asyncio.get_running_loop().time() + timeout

    def _timed_out(self, what: str) -> _Failed:
        return _Failed(f"{self.desc} did not answer: timeout after {self.timeout:g} s ({what})")

    async def _resolve(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, what: str
    ) -> dns.resolver.Answer:
        """Resolve or raise `_Failed`; NXDOMAIN and NoAnswer propagate for the caller to word."""
        remaining = self.deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise self._timed_out(what)
        try:
            answer = await self.res.resolve(qname, rdtype, lifetime=remaining, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            raise
        except dns.exception.Timeout:
            raise self._timed_out(what) from None
        except dns.resolver.NoNameservers as exc:
            raise _Failed(self._no_nameservers(exc, what)) from None
        except dns.exception.DNSException as exc:
            raise _Failed(f"{self.desc}: {what} failed: {exc}") from None
        if self.dnssec and not answer.response.flags & dns.flags.AD:
            raise _Failed(f"{what} answer is not DNSSEC-validated (AD flag not set by {self.desc})")
        return answer

    def _no_nameservers(self, exc: dns.resolver.NoNameservers, what: str) -> str:
        errors = exc.kwargs.get("errors") or []
        rcodes = [
            dns.rcode.to_text(err[4].rcode())
            for err in errors
            if len(err) > 4 and err[4] is not None
        ]
        if rcodes:
            return f"{self.desc} answered {'/'.join(dict.fromkeys(rcodes))} to the {what}"
        texts = [str(err[3]) for err in errors if len(err) > 3]
        detail = "; ".join(dict.fromkeys(texts)) or "no usable nameserver"
        return f"{self.desc} did not answer: {detail} ({what})"

    async def run(self) -> RDNSResult:
        ip, expected = self.ip, self.expected
        want = _show(expected)

        # 1. PTR of the address must include the expected name.
        ptr_name = dns.reversename.from_address(str(ip))
        what = f"PTR query for {ip}"
        try:
            answer = await self._resolve(ptr_name, dns.rdatatype.PTR, what)
        except dns.resolver.NXDOMAIN:
            return RDNSResult(False, f"no PTR record for {ip} ({_show(ptr_name)}: NXDOMAIN)")
        except dns.resolver.NoAnswer:
            return RDNSResult(False, f"no PTR record for {ip} (empty answer)")
        targets = [rr.target for rr in answer]
        if expected not in targets:
            got = ", ".join(_show(t) for t in targets)
            return RDNSResult(False, f"PTR of {ip} is {got}, expected {want}")

        # 2. Forward confirmation: the name's A/AAAA must contain the address.
        rdtype = dns.rdatatype.A if ip.version == 4 else dns.rdatatype.AAAA
        rdname = dns.rdatatype.to_text(rdtype)
        what = f"{rdname} query for {want}"
        try:
            fwd = await self._resolve(expected, rdtype, what)
        except dns.resolver.NXDOMAIN:
            return RDNSResult(False, f"{want} does not resolve back to {ip} (NXDOMAIN)")
        except dns.resolver.NoAnswer:
            return RDNSResult(False, f"{want} does not resolve back to {ip} (no {rdname} record)")
        addresses = [ipaddress.ip_address(rr.address) for rr in fwd]
        if ip not in addresses:
            got = ", ".join(str(a) for a in addresses)
            return RDNSResult(False, f"{want} does not resolve back to {ip} (got {got})")

        suffix = " (DNSSEC validated)" if self.dnssec else ""
        return RDNSResult(True, f"PTR of {ip} is {want}, which resolves back to {ip}{suffix}")


async def check_reverse_dns(
    address: str,
    expected_name: str,
    *,
    dnssec: bool = False,
    resolver: tuple[str, int] | None = None,
    timeout: float = 5.0,
) -> RDNSResult:
    """Forward-confirmed reverse DNS: is `address` named `expected_name`, both ways?

    `address` is the peer's source IP (text, as from ``getpeername()[0]``); `expected_name` the
    domain configured for the peer (U-labels or A-labels). `resolver` is ``(ip, port)`` of the
    recursive resolver to ask, or None for the system configuration (/etc/resolv.conf).
    `dnssec` requires the AD flag from a validating resolver on both answers (see the module
    docstring for what that does and does not prove). `timeout` bounds the whole check, both
    queries together. Never raises (cancellation excepted); see `RDNSResult.reason`.
    """
    try:
        ip = _parse_address(address)
    except (ValueError, AttributeError, TypeError):
        return RDNSResult(False, f"not an IP address: {address!r}")
    try:
        expected = _expected_dns_name(expected_name)
    except (ValueError, UnicodeError, AttributeError, TypeError, dns.exception.DNSException) as e:
        return RDNSResult(False, f"invalid expected name {expected_name!r}: {e}")
    try:
        res, desc = _make_resolver(resolver, dnssec, timeout)
    except (ValueError, TypeError, OSError, dns.exception.DNSException) as e:
        return RDNSResult(False, f"cannot set up the resolver {resolver!r}: {e}")

    try:
        async with asyncio.timeout(timeout + _GRACE):
            return await _Check(ip, expected, res, desc, dnssec, timeout).run()
    except _Failed as failed:
        return RDNSResult(False, failed.reason)
    except TimeoutError:
        return RDNSResult(False, f"{desc} did not answer: timeout after {timeout:g} s")
    except Exception as e:  # never raise into the acceptor
        return RDNSResult(False, f"reverse DNS check of {ip} failed: {type(e).__name__}: {e}")
