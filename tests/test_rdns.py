"""Reverse DNS identity check (XEP-0361 §4.2 item 2, §5) against a loopback test DNS server."""

from __future__ import annotations

import asyncio
import socket
import time

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from conftest import wait_for
from dnsserver import DNSServer
from zerolink.net.rdns import RDNSResult, check_reverse_dns

DNS_IP = "127.0.0.53"
GROUND_IP = "127.0.0.3"
PTR_GROUND = "3.0.0.127.in-addr.arpa"
PTR_V6_LOOPBACK = "1." + "0." * 31 + "ip6.arpa"

ZONE = {
    (PTR_GROUND, "PTR"): ["ground.example."],
    ("ground.example", "A"): [GROUND_IP],
    # 127.0.0.4 claims to be ground.example, but ground.example does not point back.
    ("4.0.0.127.in-addr.arpa", "PTR"): ["ground.example."],
    # 127.0.0.5 is other.example.
    ("5.0.0.127.in-addr.arpa", "PTR"): ["other.example."],
    ("other.example", "A"): ["127.0.0.5"],
    # 127.0.0.6 has two names; one of them is ground2.example (IDN test below uses bücher).
    ("6.0.0.127.in-addr.arpa", "PTR"): ["www.example.", "Ground2.Example."],
    ("ground2.example", "A"): ["127.0.0.7", "127.0.0.6"],
    # An IDN peer: xn--bcher-kva.example is bücher.example.
    ("8.0.0.127.in-addr.arpa", "PTR"): ["xn--bcher-kva.example."],
    ("xn--bcher-kva.example", "A"): ["127.0.0.8"],
    # A PTR name with only an AAAA record.
    ("10.0.0.127.in-addr.arpa", "PTR"): ["v6only.example."],
    ("v6only.example", "AAAA"): ["::1"],
    # IPv6 loopback.
    (PTR_V6_LOOPBACK, "PTR"): ["ground.example."],
    ("ground.example", "AAAA"): ["::1"],
}


async def check(server: DNSServer, address: str, name: str, **kw: object) -> RDNSResult:
    kw.setdefault("timeout", 1.0)
    return await check_reverse_dns(address, name, resolver=server.address, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def dns_server():
    async with DNSServer(ZONE, host=DNS_IP) as server:
        yield server


@pytest.fixture
async def validating():
    """Emulates a validating resolver in front of signed zones (AD on every answer)."""
    async with DNSServer(ZONE, host=DNS_IP, ad=True) as server:
        yield server


# --- plain FCrDNS ---------------------------------------------------------------------------


async def test_match(dns_server: DNSServer) -> None:
    r = await check(dns_server, GROUND_IP, "ground.example")
    assert r.ok, r.reason
    assert r.reason == "PTR of 127.0.0.3 is ground.example, which resolves back to 127.0.0.3"


async def test_name_comparison_ignores_case_and_trailing_dot(dns_server: DNSServer) -> None:
    r = await check(dns_server, GROUND_IP, "Ground.EXAMPLE.")
    assert r.ok, r.reason


async def test_ptr_mismatch_names_both(dns_server: DNSServer) -> None:
    r = await check(dns_server, "127.0.0.5", "ground.example")
    assert not r.ok
    assert r.reason == "PTR of 127.0.0.5 is other.example, expected ground.example"


async def test_missing_ptr_nxdomain(dns_server: DNSServer) -> None:
    r = await check(dns_server, "127.0.0.9", "ground.example")
    assert not r.ok
    assert r.reason.startswith("no PTR record for 127.0.0.9")
    assert "NXDOMAIN" in r.reason


async def test_ptr_without_forward_confirmation(dns_server: DNSServer) -> None:
    r = await check(dns_server, "127.0.0.4", "ground.example")
    assert not r.ok
    assert r.reason == "ground.example does not resolve back to 127.0.0.4 (got 127.0.0.3)"


async def test_forward_name_has_no_a_record(dns_server: DNSServer) -> None:
    r = await check(dns_server, "127.0.0.10", "v6only.example")
    assert not r.ok
    assert r.reason == "v6only.example does not resolve back to 127.0.0.10 (no A record)"


async def test_any_of_several_ptr_records_is_enough(dns_server: DNSServer) -> None:
    r = await check(dns_server, "127.0.0.6", "ground2.example")
    assert r.ok, r.reason
    r = await check(dns_server, "127.0.0.6", "nope.example")
    assert not r.ok
    # Both names are listed (in answer order; DNS name compression may change their case).
    assert r.reason.startswith("PTR of 127.0.0.6 is ")
    assert r.reason.endswith(", expected nope.example")
    assert "www.example" in r.reason.lower() and "ground2.example" in r.reason.lower()


async def test_idn_expected_name_compared_as_a_labels(dns_server: DNSServer) -> None:
    r = await check(dns_server, "127.0.0.8", "bücher.example")
    assert r.ok, r.reason
    assert "xn--bcher-kva.example" in r.reason
    r = await check(dns_server, "127.0.0.8", "XN--BCHER-KVA.example")
    assert r.ok, r.reason


async def test_ipv4_mapped_address_is_checked_as_ipv4(dns_server: DNSServer) -> None:
    r = await check(dns_server, "::ffff:127.0.0.3", "ground.example")
    assert r.ok, r.reason


async def test_ipv6_loopback_with_aaaa(dns_server: DNSServer) -> None:
    r = await check(dns_server, "::1", "ground.example")
    assert r.ok, r.reason
    assert r.reason == "PTR of ::1 is ground.example, which resolves back to ::1"
    qtypes = [q.question[0].rdtype for q in dns_server.queries]
    assert qtypes[-2:] == [dns.rdatatype.PTR, dns.rdatatype.AAAA]


async def test_resolver_servfail(dns_server: DNSServer) -> None:
    async with DNSServer(ZONE, host=DNS_IP, rcodes={PTR_GROUND: dns.rcode.SERVFAIL}) as server:
        r = await check(server, GROUND_IP, "ground.example")
    assert not r.ok
    assert "SERVFAIL" in r.reason
    assert "PTR query for 127.0.0.3" in r.reason


async def test_bad_arguments_do_not_raise() -> None:
    r = await check_reverse_dns("not-an-ip", "ground.example", resolver=(DNS_IP, 53))
    assert not r.ok and "not an IP address" in r.reason
    r = await check_reverse_dns(GROUND_IP, "", resolver=(DNS_IP, 53))
    assert not r.ok and "invalid expected name" in r.reason
    r = await check_reverse_dns(GROUND_IP, "ground.example", resolver=("nowhere", 53))
    assert not r.ok and "cannot set up the resolver" in r.reason


# --- DNSSEC (AD flag from a validating resolver) ---------------------------------------------


async def test_dnssec_with_ad_ok(validating: DNSServer) -> None:
    r = await check(validating, GROUND_IP, "ground.example", dnssec=True)
    assert r.ok, r.reason
    assert r.reason.endswith("(DNSSEC validated)")
    # Both queries asked for DNSSEC: DO bit (EDNS0, 1232) and AD bit.
    assert len(validating.queries) == 2
    for q in validating.queries:
        assert q.flags & dns.flags.AD
        assert q.ednsflags & dns.flags.DO
        assert q.payload == 1232


async def test_dnssec_without_ad_not_ok(dns_server: DNSServer) -> None:
    r = await check(dns_server, GROUND_IP, "ground.example", dnssec=True)
    assert not r.ok
    assert "PTR query for 127.0.0.3" in r.reason
    assert "not DNSSEC-validated (AD flag not set" in r.reason


async def test_dnssec_requires_ad_on_forward_answer_too() -> None:
    async with DNSServer(ZONE, host=DNS_IP, ad=[PTR_GROUND]) as server:
        r = await check(server, GROUND_IP, "ground.example", dnssec=True)
    assert not r.ok
    assert "A query for ground.example" in r.reason
    assert "not DNSSEC-validated" in r.reason


async def test_without_dnssec_no_do_bit_and_ad_not_required(validating: DNSServer) -> None:
    r = await check(validating, GROUND_IP, "ground.example")
    assert r.ok, r.reason
    assert "DNSSEC" not in r.reason
    for q in validating.queries:
        assert not q.ednsflags & dns.flags.DO


# --- resolver not answering --------------------------------------------------------------


def _unused_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def test_resolver_port_closed_fails_quickly() -> None:
    port = _unused_udp_port(DNS_IP)
    start = time.monotonic()
    r = await check_reverse_dns(GROUND_IP, "ground.example", resolver=(DNS_IP, port), timeout=0.5)
    elapsed = time.monotonic() - start
    assert not r.ok
    assert r.reason.startswith(f"resolver {DNS_IP}:{port} did not answer")
    assert elapsed < 1.0


async def test_resolver_silent_times_out() -> None:
    async with DNSServer(ZONE, host=DNS_IP, silent=True) as server:
        start = time.monotonic()
        r = await check(server, GROUND_IP, "ground.example", timeout=0.5)
        elapsed = time.monotonic() - start
    assert not r.ok
    assert "did not answer: timeout after 0.5 s" in r.reason
    assert 0.4 < elapsed < 1.0


async def test_cancellation_propagates() -> None:
    async with DNSServer(ZONE, host=DNS_IP, silent=True) as server:
        task = asyncio.create_task(check(server, GROUND_IP, "ground.example", timeout=5.0))
        await wait_for(lambda: server.queries, what="the query sent")  # now waiting for it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_large_answer_falls_back_to_tcp() -> None:
    many = [f"127.0.1.{i}" for i in range(1, 60)] + [GROUND_IP]  # > 512 bytes over UDP
    zone = {**ZONE, ("ground.example", "A"): many}
    async with DNSServer(zone, host=DNS_IP) as server:
        r = await check(server, GROUND_IP, "ground.example")
    assert r.ok, r.reason
    assert len(server.queries) == 3  # PTR over UDP, A over UDP (truncated), A over TCP


# --- the test server itself ------------------------------------------------------------------


async def test_dns_server_answers_over_tcp(validating: DNSServer) -> None:
    import dns.asyncquery
    import dns.message

    q = dns.message.make_query(PTR_GROUND, "PTR", want_dnssec=True)
    resp = await dns.asyncquery.tcp(q, DNS_IP, port=validating.port, timeout=1.0)
    assert resp.rcode() == dns.rcode.NOERROR
    assert resp.flags & dns.flags.AD
    assert [rr.target.to_text() for rr in resp.answer[0]] == ["ground.example."]
