"""A tiny DNS server for tests, written with dnspython: UDP and TCP on a loopback address.

It answers from a dict zone ``{(name, rdtype): [rdata text, ...]}``, for example::

    zone = {
        ("3.0.0.127.in-addr.arpa", "PTR"): ["ground.example."],
        ("ground.example", "A"): ["127.0.0.3"],
    }
    async with DNSServer(zone, ad=True) as dns_server:
        await check_reverse_dns("127.0.0.3", "ground.example", resolver=dns_server.address)

Names are absolute (a trailing dot is optional) and case-insensitive; rdata text is parsed
relative to the root, so ``"ground.example"`` and ``"ground.example."`` are the same target.
A name that has some records but not the asked type gets an empty NOERROR answer (NODATA);
an unknown name gets NXDOMAIN; a ``CNAME`` entry is followed (within the zone) for other types.

**The AD flag is an emulation, not DNSSEC.** The zone is not signed and nothing is validated.
``ad=True`` makes the server behave like a *validating recursive resolver* in front of a
signed zone: it sets the AD (Authentic Data) bit in its responses, which is exactly and only
what a stub client such as zerolink relies on. As a real validator does (RFC 6840 §5.7,
RFC 4035 §3.2.3), AD is set only when the query asked for it with the DO bit or the AD bit.
``ad`` may also be a collection of names: then only answers for those query names carry AD
(e.g. a signed reverse zone with an unsigned forward zone).

Other knobs: ``rcodes`` forces a response code per query name (e.g. SERVFAIL), ``silent``
drops every query (a resolver that never answers, for timeouts). Every parsed query is kept in
``queries`` so tests can check the flags the client sent; an exception while answering (a bug
in this helper) is answered with SERVFAIL and kept in ``errors``.

Start and stop it with ``async with``; ``port=0`` (the default) binds a free port, and
``address`` is then the ``(host, port)`` actually bound (UDP and TCP share the port number).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Self

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Zone = Mapping[tuple[str, str | int], Iterable[str]]

TTL = 60
_MAX_CNAME_CHAIN = 8


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text, origin=dns.name.root)


class DNSServer:
    """An authoritative-style DNS server on loopback for tests (see the module docstring)."""

    def __init__(
        self,
        zone: Zone,
        *,
        host: str = "127.0.0.53",
        port: int = 0,
        ad: bool | Collection[str] = False,
        rcodes: Mapping[str, dns.rcode.Rcode | int] | None = None,
        silent: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.silent = silent
        self.queries: list[dns.message.Message] = []
        self.errors: list[Exception] = []
        self._records: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], dns.rrset.RRset] = {}
        for (owner, rdtype), texts in zone.items():
            name = _name(owner)
            rtype = dns.rdatatype.RdataType.make(rdtype)
            rrset = dns.rrset.RRset(name, dns.rdataclass.IN, rtype)
            for text in texts:
                rrset.add(
                    dns.rdata.from_text(
                        dns.rdataclass.IN, rtype, text, origin=dns.name.root, relativize=False
                    ),
                    TTL,
                )
            self._records[(name, rtype)] = rrset
        self._names = {name for name, _ in self._records}
        self._ad_all = ad is True
        self._ad_names = set() if isinstance(ad, bool) else {_name(n) for n in ad}
        self._rcodes = {_name(n): dns.rcode.Rcode.make(rc) for n, rc in (rcodes or {}).items()}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` to give a resolver; valid once started."""
        return (self.host, self.port)

    # --- answering ----------------------------------------------------------------------

    def _wants_ad(self, qname: dns.name.Name) -> bool:
        return self._ad_all or qname in self._ad_names

    def respond(self, query: dns.message.Message) -> dns.message.Message:
        """The response to one query (public so tests can call it without sockets)."""
        response = dns.message.make_response(query, recursion_available=True)
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        q = query.question[0]
        if q.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        if query.ednsflags & dns.flags.DO and response.edns >= 0:
            response.ednsflags |= dns.flags.DO
        forced = self._rcodes.get(q.name)
        if forced is not None:
            response.set_rcode(forced)
            return response

        name = q.name
        for _ in range(_MAX_CNAME_CHAIN):
            rrset = self._records.get((name, q.rdtype))
            if rrset is not None:
                response.answer.append(rrset)
                break
            cname = self._records.get((name, dns.rdatatype.CNAME))
            if cname is None:
                if name not in self._names:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                break
            response.answer.append(cname)
            name = next(iter(cname)).target  # type: ignore[attr-defined]

        asked_for_ad = bool(query.flags & dns.flags.AD or query.ednsflags & dns.flags.DO)
        if asked_for_ad and self._wants_ad(q.name):
            response.flags |= dns.flags.AD
        return response

    def _handle(self, wire: bytes, max_size: int | None) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        self.queries.append(query)
        if self.silent:
            return None
        try:
            response = self.respond(query)
        except Exception as exc:  # a bug in this helper: keep it visible, answer SERVFAIL
            self.errors.append(exc)
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
        if max_size is None:
            return response.to_wire()
        limit = max(512, query.payload) if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=min(limit, max_size))
        except dns.exception.TooBig:
            response.answer.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()

    # --- transports ---------------------------------------------------------------------

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = self._handle(await reader.readexactly(length), None)
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        server = self

        class _UDP(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                reply = server._handle(data, 65535)
                if reply is not None:
                    self.transport.sendto(reply, addr)

        # UDP on port 0 picks a free port; TCP must then get the same number. Retry on the
        # rare collision instead of failing the test.
        for _attempt in range(20):
            udp, _ = await loop.create_datagram_endpoint(_UDP, local_addr=(self.host, self.port))
            port = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(self._tcp_client, self.host, port)
            except OSError:
                udp.close()
                if self.port:
                    raise
                continue
            self._udp, self._tcp, self.port = udp, tcp, port
            return
        raise OSError(f"no port free for both UDP and TCP on {self.host}")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
