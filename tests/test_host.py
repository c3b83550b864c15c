"""The local host (RFC 6121 IM and presence) in memory: fake stores, fake sessions, a real Router.

air.example is hosted here (juliet, romeo, nurse have accounts); ground.example is behind a
fake route standing for the X2X link, which records what would cross it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from zerolink import __version__
from zerolink.core.host import LocalHost, delay_stamp
from zerolink.core.roster import Inbound, RosterLimits, State, inbound, outbound
from zerolink.core.router import Router
from zerolink.errors import StanzaError
from zerolink.jid import JID
from zerolink.stanza import error_condition
from zerolink.xml.element import Element
from zerolink.xml.parser import StreamParser
from zerolink.xml.serializer import serialize

HEADER = b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>"
ROSTER = "jabber:iq:roster"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
J, R, N = "juliet@air.example", "romeo@air.example", "nurse@air.example"
M = "mercutio@ground.example"


def X(xml: str) -> Element:
    (ev,) = StreamParser(implied_header=HEADER).feed(xml.encode())
    return ev.element


def brief(el: Element) -> tuple[str, str | None, str | None, str | None]:
    return (el.local, el.get("type"), el.get("from"), el.get("to"))


# -- fakes ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    contact: str
    name: str | None = None
    subscription: str = "none"
    ask: bool = False
    approved: bool = False
    pending_in: bool = False
    groups: tuple[str, ...] = ()


class Accounts:
    def __init__(self, users: set[str]) -> None:
        self.users = users

    def exists(self, local: str, domain: str) -> bool:
        return f"{local}@{domain}" in self.users


class Rosters:
    """The store's semantics: versions, tombstones, pending stanzas dropped with pending_in."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self.rows: dict[str, dict[str, tuple[Item | None, int]]] = {}
        self.ver: dict[str, int] = {}
        self.stanzas: dict[tuple[str, str], bytes] = {}

    def _live(self, user: str) -> dict[str, Item]:
        return {c: i for c, (i, _) in self.rows.get(user, {}).items() if i is not None}

    def items(self, user: str) -> list[Item]:
        return sorted(self._live(user).values(), key=lambda i: i.contact)

    def count(self, user: str) -> int:
        return len(self._live(user))

    def get(self, user: str, contact: str) -> Item | None:
        return self._live(user).get(contact)

    def put(self, user: str, item: Item) -> int:
        assert user in self.accounts.users, "NoSuchAccount"
        if self.get(user, item.contact) == item:
            return self.version(user)
        v = self.ver[user] = self.version(user) + 1
        self.rows.setdefault(user, {})[item.contact] = (item, v)
        if not item.pending_in:
            self.stanzas.pop((user, item.contact), None)
        return v

    def remove(self, user: str, contact: str) -> int | None:
        if self.get(user, contact) is None:
            return None
        v = self.ver[user] = self.version(user) + 1
        self.rows[user][contact] = (None, v)
        self.stanzas.pop((user, contact), None)
        return v

    def version(self, user: str) -> int:
        return self.ver.get(user, 0)

    def changes_since(self, user: str, version: int) -> tuple[list[Item], list[str], int] | None:
        current = self.version(user)
        if not 0 <= version <= current:
            return None
        rows = sorted(self.rows.get(user, {}).items())
        changed = [i for _, (i, v) in rows if i is not None and v > version]
        removed = [c for c, (i, v) in rows if i is None and v > version] if version else []
        return changed, removed, current

    def pending_in(self, user: str) -> list[tuple[str, bytes | None]]:
        return [
            (i.contact, self.stanzas.get((user, i.contact)))
            for i in self.items(user)
            if i.pending_in
        ]

    def set_pending_stanza(self, user: str, contact: str, stanza: bytes | None) -> None:
        assert self.get(user, contact) is not None, "NoSuchRosterItem"
        if stanza is None:
            self.stanzas.pop((user, contact), None)
        else:
            self.stanzas[(user, contact)] = stanza


class Offline:
    """The store's semantics: a quota in messages and in bytes, batches read then removed."""

    def __init__(self, limit: int, max_bytes: int = 1 << 30) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.q: dict[str, list[tuple[bytes, float]]] = {}
        self.ids: dict[str, list[int]] = {}
        self._next = 0
        self.batches: list[int] = []  # the size of each batch read

    def push(self, user: str, stanza: bytes, stamp: float) -> bool:
        q = self.q.setdefault(user, [])
        if len(q) >= self.limit or sum(len(s) for s, _ in q) + len(stanza) > self.max_bytes:
            return False
        q.append((stanza, stamp))
        self._next += 1
        self.ids.setdefault(user, []).append(self._next)
        return True

    def batch(self, user: str, count: int, max_bytes: int) -> list[tuple[int, bytes, float]]:
        out: list[tuple[int, bytes, float]] = []
        size = 0
        for ident, (raw, stamp) in zip(self.ids.get(user, []), self.q.get(user, []), strict=True):
            size += len(raw)
            if len(out) == count or (out and size > max_bytes):
                break
            out.append((ident, raw, stamp))
        if out:
            self.batches.append(len(out))
        return out

    def remove_through(self, user: str, ident: int) -> None:
        ids = self.ids.get(user, [])
        n = sum(1 for i in ids if i <= ident)
        del ids[:n]
        del self.q.get(user, [])[:n]

    def count(self, user: str) -> int:
        return len(self.q.get(user, []))


@dataclass(eq=False)
class Session:
    jid: JID | None = None
    sent: list[Element] = field(default_factory=list)
    kicked: list[tuple[str, str | None]] = field(default_factory=list)
    # False: send_stored keeps its callback in `unacked` until the test calls `ack`.
    auto_ack: bool = True
    unacked: list[Callable[[], None]] = field(default_factory=list)

    def send(self, stanza: Element) -> None:
        self.sent.append(stanza)

    def send_stored(self, stanzas: list[Element], done: Callable[[], None]) -> None:
        self.sent.extend(stanzas)
        if self.auto_ack:
            done()
        else:
            self.unacked.append(done)

    def ack(self) -> None:
        """The client's TCP acknowledged everything sent so far."""
        done, self.unacked = self.unacked, []
        for callback in done:
            callback()

    def kick(self, condition: str, text: str | None = None) -> None:
        self.kicked.append((condition, text))

    def take(self) -> list[Element]:
        out, self.sent = self.sent, []
        return out


class Link:
    """The route to ground.example: what crosses the link."""

    name = "ground link"

    def __init__(self) -> None:
        self.got: list[Element] = []

    def deliver(self, stanza: Element) -> None:
        self.got.append(stanza)

    def take(self) -> list[Element]:
        out, self.got = self.got, []
        return out


class World:
    def __init__(
        self, offline_limit: int = 3, offline_bytes: int = 1 << 30, **host_kw: object
    ) -> None:
        self.now = 1_700_000_000.25
        self.accounts = Accounts({J, R, N})
        self.rosters = Rosters(self.accounts)
        self.offline = Offline(offline_limit, offline_bytes)
        self.router = Router(["air.example"])
        self.host = LocalHost(
            ["air.example"],
            self.router,
            self.accounts,
            self.rosters,
            self.offline,
            Item,
            clock=lambda: self.now,
            **host_kw,  # type: ignore[arg-type]
        )
        self.router.add(["air.example"], self.host, local=True)
        self.link = Link()
        self.router.add(["ground.example", "*.ground.example"], self.link, local=False)
        self.sessions: list[Session] = []

    def connect(
        self,
        user: str,
        resource: str = "r",
        *,
        roster: bool = True,
        presence: str | None = "<presence/>",
        auto_ack: bool = True,
    ) -> Session:
        s = Session(auto_ack=auto_ack)
        self.sessions.append(s)
        local, domain = user.split("@")
        self.host.bind(s, local, domain, resource)
        if roster:
            self.send(s, f"<iq type='get' id='get1'><query xmlns='{ROSTER}' ver=''/></iq>")
        if presence is not None:
            self.send(s, presence)
        self.quiet()
        return s

    def quiet(self) -> None:
        """Forget what every session and the link have received so far."""
        for s in self.sessions:
            s.sent.clear()
        self.link.take()

    def send(self, s: Session, xml: str) -> None:
        self.host.from_client(s, X(xml))

    def remote(self, xml: str) -> None:
        self.host.deliver(X(xml))

    def item(self, user: str, contact: str) -> Item | None:
        return self.rosters.get(user, contact)

    def put(self, user: str, contact: str, subscription: str, **kw: object) -> None:
        self.rosters.put(user, Item(contact, subscription=subscription, **kw))  # type: ignore[arg-type]


@pytest.fixture
def w() -> World:
    return World()


def pushes(s: Session) -> list[tuple[str | None, list[dict[str, str]]]]:
    """(ver, items' attributes) of the roster pushes a session received."""
    out = []
    for el in s.sent:
        if el.local == "iq" and el.get("type") == "set":
            q = el.find(f"{{{ROSTER}}}query")
            assert q is not None
            out.append((q.get("ver"), [dict(i.attrib) for i in q.elements()]))
    return out


def presences(els: list[Element]) -> list[tuple[str, str | None, str | None, str | None]]:
    return [brief(e) for e in els if e.local == "presence"]


# -- the Appendix A tables -----------------------------------------------------------------------
# fmt: off
NONE, NONE_OUT, NONE_IN = State(), State(ask=True), State(pending_in=True)
NONE_OUT_IN = State(ask=True, pending_in=True)
TO, TO_IN = State(to=True), State(to=True, pending_in=True)
FROM, FROM_OUT, BOTH = State(frm=True), State(frm=True, ask=True), State(to=True, frm=True)

A21_SUBSCRIBE = [  # RFC 6121 A.2.1: always routed
    (NONE, NONE_OUT), (NONE_OUT, NONE_OUT), (NONE_IN, NONE_OUT_IN), (NONE_OUT_IN, NONE_OUT_IN),
    (TO, TO), (TO_IN, TO_IN), (FROM, FROM_OUT), (FROM_OUT, FROM_OUT), (BOTH, BOTH),
]
A22_UNSUBSCRIBE = [
    (NONE, NONE), (NONE_OUT, NONE), (NONE_IN, NONE_IN), (NONE_OUT_IN, NONE_IN), (TO, NONE),
    (TO_IN, NONE_IN), (FROM, FROM), (FROM_OUT, FROM), (BOTH, FROM),
]
A23_SUBSCRIBED = [  # (old, routed, new); unrouted 'None'-ish states become pre-approvals
    (NONE, False, State(approved=True)), (NONE_OUT, False, State(ask=True, approved=True)),
    (NONE_IN, True, FROM), (NONE_OUT_IN, True, FROM_OUT),
    (TO, False, State(to=True, approved=True)), (TO_IN, True, BOTH),
    (FROM, False, FROM), (FROM_OUT, False, FROM_OUT), (BOTH, False, BOTH),
]
A24_UNSUBSCRIBED = [
    (NONE, False, NONE), (NONE_OUT, False, NONE_OUT), (NONE_IN, True, NONE),
    (NONE_OUT_IN, True, NONE_OUT), (TO, False, TO), (TO_IN, True, TO), (FROM, True, NONE),
    (FROM_OUT, True, NONE_OUT), (BOTH, True, TO),
]
A31_SUBSCRIBE = [
    (NONE, Inbound.DELIVER, NONE_IN), (NONE_OUT, Inbound.DELIVER, NONE_OUT_IN),
    (NONE_IN, Inbound.IGNORE, NONE_IN), (NONE_OUT_IN, Inbound.IGNORE, NONE_OUT_IN),
    (TO, Inbound.DELIVER, TO_IN), (TO_IN, Inbound.IGNORE, TO_IN),
    (FROM, Inbound.AUTO_REPLY, FROM), (FROM_OUT, Inbound.AUTO_REPLY, FROM_OUT),
    (BOTH, Inbound.AUTO_REPLY, BOTH),
    (State(approved=True), Inbound.AUTO_APPROVE, FROM),
    (State(to=True, approved=True), Inbound.AUTO_APPROVE, BOTH),
]
A32_UNSUBSCRIBE = [
    (NONE, False, NONE), (NONE_OUT, False, NONE_OUT), (NONE_IN, True, NONE),
    (NONE_OUT_IN, True, NONE_OUT), (TO, False, TO), (TO_IN, True, TO), (FROM, True, NONE),
    (FROM_OUT, True, NONE_OUT), (BOTH, True, TO),
]
A33_SUBSCRIBED = [
    (NONE, False, NONE), (NONE_OUT, True, TO), (NONE_IN, False, NONE_IN),
    (NONE_OUT_IN, True, TO_IN), (TO, False, TO), (TO_IN, False, TO_IN), (FROM, False, FROM),
    (FROM_OUT, True, BOTH), (BOTH, False, BOTH),
]
A34_UNSUBSCRIBED = [
    (NONE, False, NONE), (NONE_OUT, True, NONE), (NONE_IN, False, NONE_IN),
    (NONE_OUT_IN, True, NONE_IN), (TO, True, NONE), (TO_IN, True, NONE_IN), (FROM, False, FROM),
    (FROM_OUT, True, FROM), (BOTH, True, FROM),
    (State(to=True, approved=True), True, State(approved=True)),  # pre-approval survives
]
# fmt: on


@pytest.mark.parametrize(("old", "new"), A21_SUBSCRIBE)
def test_outbound_subscribe_table(old: State, new: State) -> None:
    assert outbound(old, "subscribe") == (True, new)


@pytest.mark.parametrize(("old", "new"), A22_UNSUBSCRIBE)
def test_outbound_unsubscribe_table(old: State, new: State) -> None:
    assert outbound(old, "unsubscribe") == (True, new)


@pytest.mark.parametrize(("old", "route", "new"), A23_SUBSCRIBED)
def test_outbound_subscribed_table(old: State, route: bool, new: State) -> None:
    assert outbound(old, "subscribed") == (route, new)


@pytest.mark.parametrize(("old", "route", "new"), A24_UNSUBSCRIBED)
def test_outbound_unsubscribed_table(old: State, route: bool, new: State) -> None:
    assert outbound(old, "unsubscribed") == (route, new)


def test_outbound_unsubscribed_cancels_pre_approval() -> None:
    assert outbound(State(ask=True, approved=True), "unsubscribed") == (False, NONE_OUT)


@pytest.mark.parametrize(("old", "action", "new"), A31_SUBSCRIBE)
def test_inbound_subscribe_table(old: State, action: Inbound, new: State) -> None:
    assert inbound(old, "subscribe") == (action, new)


@pytest.mark.parametrize(
    ("kind", "table"),
    [
        ("unsubscribe", A32_UNSUBSCRIBE),
        ("subscribed", A33_SUBSCRIBED),
        ("unsubscribed", A34_UNSUBSCRIBED),
    ],
)
def test_inbound_tables(kind: str, table: list[tuple[State, bool, State]]) -> None:
    for old, delivered, new in table:
        action = Inbound.DELIVER if delivered else Inbound.IGNORE
        assert inbound(old, kind) == (action, new), (kind, old)


# -- binding -------------------------------------------------------------------------------------
def test_bind_generates_a_resource(w: World) -> None:
    a, b = Session(), Session()
    ja = w.host.bind(a, "Juliet", "AIR.example", None)
    jb = w.host.bind(b, "juliet", "air.example", None)
    assert ja.local == "juliet" and ja.domain == "air.example" and ja.resource
    assert jb.resource and jb.resource != ja.resource
    assert a.jid == ja and b.jid == jb
    assert set(w.host.sessions_of(J)) == {a, b}


def test_bind_refuses_foreign_domain_and_bad_resource(w: World) -> None:
    with pytest.raises(ValueError):
        w.host.bind(Session(), "juliet", "ground.example", "r")
    with pytest.raises(StanzaError) as exc:
        w.host.bind(Session(), "juliet", "air.example", "\u0007")
    assert exc.value.condition == "bad-request"


def test_resource_conflict_kicks_the_old_session(w: World) -> None:
    w.put(J, M, "from")
    old = w.connect(J, "balcony")
    new = Session()
    assert w.host.bind(new, "juliet", "air.example", "balcony") == JID.parse(J + "/balcony")
    assert old.kicked == [("conflict", "replaced by a new session")]
    assert w.host.sessions_of(J) == [new]
    # the old session went unavailable for its contacts
    assert presences(w.link.take()) == [("presence", "unavailable", J + "/balcony", M)]
    # a late stanza from the replaced session is dropped, and unbind is idempotent
    w.send(old, f"<message to='{M}'><body>x</body></message>")
    w.host.unbind(old)
    assert w.link.take() == []
    assert w.host.sessions_of(J) == [new]


def test_sessions_per_account_are_limited(w: World) -> None:
    w.host.max_sessions_per_user = 2
    w.connect(J, "one")
    w.connect(J, "two")
    with pytest.raises(StanzaError) as exc:
        w.host.bind(Session(), "juliet", "air.example", "three")
    assert exc.value.condition == "resource-constraint"
    # taking over an existing resource is still allowed at the limit
    assert w.host.bind(Session(), "juliet", "air.example", "two") == JID.parse(J + "/two")


def test_sessions_of_a_deleted_account_are_ended(w: World) -> None:
    w.put(J, M, "from")
    a, b = w.connect(J, "a"), w.connect(J, "b")
    other = w.connect(R)
    assert w.host.end_deleted_sessions() == []  # nothing deleted: nothing happens
    w.accounts.users.discard(J)  # `zerolink user delete` in another process
    assert w.host.end_deleted_sessions() == [J]
    assert a.kicked == b.kicked == [("not-authorized", "account deleted")]
    assert w.host.sessions_of(J) == [] and w.host.sessions_of(R) == [other]
    assert other.kicked == []
    # unbound first: the contact saw each resource go unavailable
    assert sorted(presences(w.link.take())) == [
        ("presence", "unavailable", J + "/a", M),
        ("presence", "unavailable", J + "/b", M),
    ]
    assert w.host.end_deleted_sessions() == []


# -- roster --------------------------------------------------------------------------------------
def test_roster_get_set_push_remove_and_versions(w: World) -> None:
    a = w.connect(J, "a", roster=False, presence=None)
    b = w.connect(J, "b", roster=False, presence=None)
    c = w.connect(J, "c", roster=False, presence=None)  # never asks for the roster: no pushes
    w.send(a, f"<iq type='get' id='g1'><query xmlns='{ROSTER}' ver=''/></iq>")
    w.send(b, f"<iq type='get' id='g2'><query xmlns='{ROSTER}'/></iq>")
    (res,) = a.take()
    assert brief(res) == ("iq", "result", None, J + "/a") and res.get("id") == "g1"
    q = res.find(f"{{{ROSTER}}}query")
    assert q is not None and q.get("ver") == "0" and list(q.elements()) == []
    (res,) = b.take()
    q = res.find(f"{{{ROSTER}}}query")
    assert q is not None and q.get("ver") is None  # b does not use versioning

    w.send(
        a,
        f"<iq type='set' id='s1'><query xmlns='{ROSTER}'><item jid='Romeo@air.example' "
        "name='Romeo' subscription='both' ask='subscribe' approved='true'>"
        "<group>Friends</group><group>Verona</group></item></query></iq>",
    )
    # ask, approved and subscription other than remove are ignored (RFC 6121 §2.1.2)
    assert w.item(J, R) == Item(R, "Romeo", "none", groups=("Friends", "Verona"))
    want = {"jid": R, "name": "Romeo", "subscription": "none"}
    assert pushes(a) == [("1", [want])]
    assert pushes(b) == [(None, [want])]
    assert [brief(e) for e in a.sent if e.get("type") == "result"] == [
        ("iq", "result", None, J + "/a")
    ]
    assert c.take() == []
    a.take(), b.take()

    w.send(a, f"<iq type='set' id='s2'><query xmlns='{ROSTER}'><item jid='{N}'/></query></iq>")
    w.send(
        a,
        f"<iq type='set' id='s3'><query xmlns='{ROSTER}'><item jid='{R}' "
        "subscription='remove'/></query></iq>",
    )
    assert pushes(a) == [
        ("2", [{"jid": N, "subscription": "none"}]),
        ("3", [{"jid": R, "subscription": "remove"}]),
    ]
    assert w.item(J, R) is None
    a.take(), b.take()

    # the current version: an empty result, nothing else
    w.send(a, f"<iq type='get' id='g3'><query xmlns='{ROSTER}' ver='3'/></iq>")
    assert [(brief(e), list(e.elements())) for e in a.take()] == [
        (("iq", "result", None, J + "/a"), [])
    ]
    # an older version: empty result, then the changes as pushes; only the last one carries
    # the current version
    w.send(a, f"<iq type='get' id='g4'><query xmlns='{ROSTER}' ver='1'/></iq>")
    sent = a.take()
    assert brief(sent[0]) == ("iq", "result", None, J + "/a") and not list(sent[0].elements())
    a.sent = sent[1:]
    assert pushes(a) == [
        ("1", [{"jid": N, "subscription": "none"}]),
        ("3", [{"jid": R, "subscription": "remove"}]),
    ]
    a.take()
    # an unknown version: the whole roster
    w.send(a, f"<iq type='get' id='g5'><query xmlns='{ROSTER}' ver='99'/></iq>")
    (res,) = a.take()
    q = res.find(f"{{{ROSTER}}}query")
    assert q is not None and q.get("ver") == "3"
    assert [dict(i.attrib) for i in q.elements()] == [{"jid": N, "subscription": "none"}]


@pytest.mark.parametrize(
    ("query", "condition"),
    [
        (f"<item jid='{R}'/><item jid='{N}'/>", "bad-request"),
        ("", "bad-request"),
        (f"<item jid='{R}'><group>a</group><group>a</group></item>", "bad-request"),
        (f"<item jid='{R}'><group/></item>", "not-acceptable"),
        (f"<item jid='{R}/res'/>", "bad-request"),
        ("<item jid='@air.example'/>", "jid-malformed"),
        (f"<item jid='{J}'/>", "not-allowed"),
        (f"<item jid='{N}' subscription='remove'/>", "item-not-found"),
    ],
)
def test_roster_set_errors(w: World, query: str, condition: str) -> None:
    s = w.connect(J)
    w.send(s, f"<iq type='set' id='e'><query xmlns='{ROSTER}'>{query}</query></iq>")
    (err,) = s.take()
    assert brief(err) == ("iq", "error", None, J + "/r")
    assert err.get("id") == "e" and error_condition(err) == condition
    assert w.rosters.items(J) == []


def test_roster_of_another_user_is_forbidden(w: World) -> None:
    s = w.connect(R)
    w.send(
        s, f"<iq type='set' id='x' to='{J}'><query xmlns='{ROSTER}'><item jid='{N}'/></query></iq>"
    )
    w.remote(f"<iq type='get' id='y' from='{M}/a' to='{J}'><query xmlns='{ROSTER}'/></iq>")
    (err,) = s.take()
    assert brief(err) == ("iq", "error", J, R + "/r") and error_condition(err) == "forbidden"
    (err,) = w.link.take()
    assert brief(err) == ("iq", "error", J, M + "/a") and error_condition(err) == "forbidden"
    assert w.rosters.items(J) == []


def test_roster_through_own_bare_jid(w: World) -> None:
    w.put(J, R, "both")
    s = w.connect(J, roster=False)
    w.send(s, f"<iq type='get' id='x' to='{J}'><query xmlns='{ROSTER}'/></iq>")
    (res,) = s.take()
    assert brief(res) == ("iq", "result", J, J + "/r")
    q = res.find(f"{{{ROSTER}}}query")
    assert q is not None and [i.get("jid") for i in q.elements()] == [R]


# -- subscriptions -------------------------------------------------------------------------------
def test_local_handshake_ends_in_both(w: World) -> None:
    jul = w.connect(J, "balcony", presence="<presence><show>away</show></presence>")
    rom = w.connect(R, "garden")

    w.send(jul, f"<presence to='{R}/garden' type='subscribe'><status>hi</status></presence>")
    assert w.item(J, R) == Item(R, subscription="none", ask=True)
    assert pushes(jul) == [("1", [{"jid": R, "subscription": "none", "ask": "subscribe"}])]
    # delivered with bare JIDs both ways (§3.1.2, §3.1.3); the pending-in item is hidden
    (req,) = rom.take()
    assert brief(req) == ("presence", "subscribe", J, R)
    assert req.find("{jabber:server}status") is not None
    assert w.item(R, J) == Item(J, pending_in=True)
    jul.take()

    w.send(rom, f"<presence to='{J}' type='subscribed'/>")
    assert w.item(R, J) == Item(J, subscription="from")
    assert pushes(rom) == [("2", [{"jid": J, "subscription": "from"}])]
    # juliet: the approval, the push, and romeo's current presence (§3.1.5)
    assert presences(jul.sent) == [
        ("presence", "subscribed", R, J),
        ("presence", None, R + "/garden", J),
    ]
    assert pushes(jul) == [("2", [{"jid": R, "subscription": "to"}])]
    rom.take(), jul.take()

    w.send(rom, f"<presence to='{J}' type='subscribe'/>")
    assert presences(jul.take()) == [("presence", "subscribe", R, J)]
    w.send(jul, f"<presence to='{R}' type='subscribed'/>")
    assert w.item(J, R) == Item(R, subscription="both")
    assert w.item(R, J) == Item(J, subscription="both")
    got = rom.take()
    assert presences(got) == [
        ("presence", "subscribed", J, R),
        ("presence", None, J + "/balcony", R),
    ]
    assert pushes(Session(sent=got)) == [
        ("3", [{"jid": J, "subscription": "from", "ask": "subscribe"}]),
        ("4", [{"jid": J, "subscription": "both"}]),
    ]
    assert w.link.take() == []  # nothing left the server


def test_remote_handshake(w: World) -> None:
    jul = w.connect(J, "balcony")
    w.send(jul, f"<presence to='{M}' type='subscribe'/>")
    assert presences(w.link.take()) == [("presence", "subscribe", J, M)]
    assert w.item(J, M) == Item(M, ask=True)
    jul.take()

    w.remote(f"<presence from='{M}' to='{J}' type='subscribed'/>")
    assert w.item(J, M) == Item(M, subscription="to")
    assert presences(jul.sent) == [("presence", "subscribed", M, J)]
    assert pushes(jul) == [("2", [{"jid": M, "subscription": "to"}])]
    jul.take()
    w.remote(f"<presence from='{M}/lab' to='{J}'><show>dnd</show></presence>")
    assert presences(jul.take()) == [("presence", None, M + "/lab", J)]

    w.remote(f"<presence from='{M}' to='{J}/balcony' type='subscribe'/>")
    assert presences(jul.take()) == [("presence", "subscribe", M, J)]
    assert w.item(J, M) == Item(M, subscription="to", pending_in=True)
    w.send(jul, f"<presence to='{M}' type='subscribed'/>")
    assert presences(w.link.take()) == [
        ("presence", "subscribed", J, M),
        ("presence", None, J + "/balcony", M),
    ]
    assert w.item(J, M) == Item(M, subscription="both")
    # a repeated approval changes nothing and is not routed
    w.send(jul, f"<presence to='{M}' type='subscribed'/>")
    assert w.link.take() == []


def test_subscription_to_unknown_local_user_is_silent(w: World) -> None:
    w.remote(f"<presence from='{M}' to='ghost@air.example' type='subscribe'/>")
    w.remote(f"<presence from='{M}' to='ghost@air.example' type='probe'/>")
    w.remote(f"<presence from='{M}/x' to='ghost@air.example'/>")
    assert w.link.take() == []


def test_pre_approval(w: World) -> None:
    jul = w.connect(J, "balcony")
    w.send(jul, f"<presence to='{M}' type='subscribed'/>")
    assert w.link.take() == []  # not routed (§3.4)
    assert w.item(J, M) == Item(M, approved=True)
    assert pushes(jul) == [("1", [{"jid": M, "subscription": "none", "approved": "true"}])]
    jul.take()

    w.remote(f"<presence from='{M}' to='{J}' type='subscribe'/>")
    assert presences(w.link.take()) == [
        ("presence", "subscribed", J, M),
        ("presence", None, J + "/balcony", M),
    ]
    assert presences(jul.sent) == []  # auto-approved, not delivered
    assert pushes(jul) == [("2", [{"jid": M, "subscription": "from"}])]
    assert w.item(J, M) == Item(M, subscription="from")


def test_already_subscribed_request_is_auto_answered(w: World) -> None:
    w.put(J, M, "from")
    jul = w.connect(J, "balcony")
    w.remote(f"<presence from='{M}' to='{J}' type='subscribe'/>")
    assert presences(w.link.take()) == [
        ("presence", "subscribed", J, M),
        ("presence", None, J + "/balcony", M),
    ]
    assert jul.take() == []
    assert w.item(J, M) == Item(M, subscription="from")


def test_cancel_and_unsubscribe_between_local_users(w: World) -> None:
    w.put(J, R, "both")
    w.put(R, J, "both")
    jul = w.connect(J, "balcony")
    rom = w.connect(R, "garden")
    jul.take(), rom.take()

    # juliet cancels romeo's subscription to her (§3.2)
    w.send(jul, f"<presence to='{R}' type='unsubscribed'/>")
    assert w.item(J, R) == Item(R, subscription="to")
    assert w.item(R, J) == Item(J, subscription="from")
    assert presences(rom.sent) == [
        ("presence", "unsubscribed", J, R),
        ("presence", "unavailable", J + "/balcony", R),
    ]
    assert pushes(rom) == [("2", [{"jid": J, "subscription": "from"}])]
    assert pushes(jul) == [("2", [{"jid": R, "subscription": "to"}])]
    jul.take(), rom.take()

    # juliet unsubscribes from romeo (§3.3)
    w.send(jul, f"<presence to='{R}' type='unsubscribe'/>")
    assert w.item(J, R) == Item(R)
    assert w.item(R, J) == Item(J)
    assert presences(rom.sent) == [("presence", "unsubscribe", J, R)]
    assert presences(jul.sent) == [("presence", "unavailable", R + "/garden", J)]
    assert pushes(jul) == [("3", [{"jid": R, "subscription": "none"}])]
    assert pushes(rom) == [("3", [{"jid": J, "subscription": "none"}])]


def test_roster_remove_cancels_both_ways(w: World) -> None:
    w.put(J, M, "both")
    jul = w.connect(J, "balcony")
    w.send(
        jul,
        f"<iq type='set' id='rm'><query xmlns='{ROSTER}'><item jid='{M}' "
        "subscription='remove'/></query></iq>",
    )
    assert presences(w.link.take()) == [
        ("presence", "unsubscribe", J, M),
        ("presence", "unsubscribed", J, M),
        ("presence", "unavailable", J + "/balcony", M),
    ]
    assert w.item(J, M) is None
    assert pushes(jul) == [("2", [{"jid": M, "subscription": "remove"}])]


def test_pending_request_redelivered_until_answered(w: World) -> None:
    w.remote(
        f"<presence from='{M}/lab' to='{J}' type='subscribe'><status>let me in</status></presence>"
    )
    assert w.link.take() == []
    assert w.item(J, M) == Item(M, pending_in=True)

    for _ in range(2):  # every initial presence until the user answers
        s = w.connect(J, "balcony", presence=None)
        w.send(s, "<presence/>")
        reqs = [e for e in s.sent if e.get("type") == "subscribe"]
        assert [brief(e) for e in reqs] == [("presence", "subscribe", M, J)]
        assert reqs[0].find("{jabber:server}status").text == "let me in"  # type: ignore[union-attr]
        assert pushes(s) == []  # hidden: not in the roster the client sees
        w.send(s, f"<iq type='get' id='g'><query xmlns='{ROSTER}'/></iq>")
        q = s.sent[-1].find(f"{{{ROSTER}}}query")
        assert q is not None and list(q.elements()) == []
        w.host.unbind(s)

    s = w.connect(J, "balcony")
    w.send(s, f"<presence to='{M}' type='unsubscribed'/>")  # declined
    assert presences(w.link.take()) == [("presence", "unsubscribed", J, M)]
    assert w.item(J, M) is None  # nothing kept of a request the client never saw
    assert pushes(s) == []
    w.host.unbind(s)
    s = w.connect(J, "balcony", presence=None)
    w.send(s, "<presence/>")
    assert [e for e in s.sent if e.get("type") == "subscribe"] == []


def test_inbound_unsubscribed_without_pending_request_is_ignored(w: World) -> None:
    jul = w.connect(J)
    w.remote(f"<presence from='{M}' to='{J}' type='unsubscribed'/>")
    w.remote(f"<presence from='{M}' to='{J}' type='subscribed'/>")
    assert jul.take() == []
    assert w.item(J, M) is None


# -- presence ------------------------------------------------------------------------------------
def test_initial_presence_probes_and_broadcast(w: World) -> None:
    w.put(J, M, "both")
    w.put(J, R, "from")
    w.put(J, N, "to")
    w.put(R, J, "to")
    w.put(N, J, "from")
    rom = w.connect(R, "garden")
    nur = w.connect(N, "kitchen", presence="<presence><priority>3</priority></presence>")
    other = w.connect(J, "other")
    rom.take(), nur.take(), other.take()

    jul = w.connect(J, "balcony", presence=None)
    w.send(jul, "<presence><show>chat</show></presence>")
    # across the link: a probe from the bare JID, then the presence
    assert presences(w.link.take()) == [
        ("presence", "probe", J, M),
        ("presence", None, J + "/balcony", M),
    ]
    # the probe to nurse (subscription 'to') is answered with her presence, to the bare JID,
    # so it reaches both of juliet's resources
    got = presences(jul.sent)
    assert ("presence", None, N + "/kitchen", J) in got
    assert ("presence", None, J + "/balcony", J + "/balcony") in got  # its own, echoed
    assert ("presence", None, J + "/other", J + "/balcony") in got  # the other resource's
    assert presences(rom.take()) == [("presence", None, J + "/balcony", R)]
    assert presences(nur.take()) == []  # nurse is not subscribed to juliet
    assert ("presence", None, J + "/balcony", J + "/other") in presences(other.take())
    jul.take()

    # subsequent presence: broadcast, no probes
    w.send(jul, "<presence><show>away</show></presence>")
    assert presences(w.link.take()) == [("presence", None, J + "/balcony", M)]
    assert presences(rom.take()) == [("presence", None, J + "/balcony", R)]
    assert presences(jul.take()) == [("presence", None, J + "/balcony", J + "/balcony")]
    other.take()

    # unavailable
    w.send(jul, "<presence type='unavailable'><status>bye</status></presence>")
    assert presences(w.link.take()) == [("presence", "unavailable", J + "/balcony", M)]
    assert presences(rom.take()) == [("presence", "unavailable", J + "/balcony", R)]
    assert presences(jul.take()) == [("presence", "unavailable", J + "/balcony", J + "/balcony")]
    assert presences(other.take()) == [("presence", "unavailable", J + "/balcony", J + "/other")]
    w.host.unbind(jul)  # already unavailable: nothing more
    assert w.link.take() == []


def test_inbound_probe(w: World) -> None:
    w.put(J, M, "both")
    w.remote(f"<presence from='{M}' to='{J}' type='probe'/>")
    assert presences(w.link.take()) == [("presence", "unavailable", J, M)]

    w.connect(J, "a", presence="<presence><show>away</show></presence>")
    w.connect(J, "b", presence="<presence><priority>-1</priority></presence>")
    w.remote(f"<presence from='{M}' to='{J}/a' type='probe'/>")
    got = w.link.take()
    assert presences(got) == [
        ("presence", None, J + "/a", M),
        ("presence", None, J + "/b", M),
    ]
    assert got[0].find("{jabber:server}show").text == "away"  # type: ignore[union-attr]

    # not subscribed: 'unsubscribed' (§4.3.2)
    w.remote(f"<presence from='tybalt@ground.example/x' to='{J}' type='probe'/>")
    assert presences(w.link.take()) == [("presence", "unsubscribed", J, "tybalt@ground.example")]


def test_directed_presence_and_unavailable_on_unbind(w: World) -> None:
    w.put(J, M, "from")
    jul = w.connect(J, "balcony")
    w.send(jul, "<presence to='bot.ground.example/x'><show>chat</show></presence>")
    w.send(jul, f"<presence to='{M}/lab'/>")  # a subscriber: covered by the broadcast
    w.send(jul, "<presence to='room@ground.example'/>")
    w.send(jul, "<presence to='room@ground.example' type='unavailable'/>")
    assert presences(w.link.take()) == [
        ("presence", None, J + "/balcony", "bot.ground.example/x"),
        ("presence", None, J + "/balcony", M + "/lab"),
        ("presence", None, J + "/balcony", "room@ground.example"),
        ("presence", "unavailable", J + "/balcony", "room@ground.example"),
    ]
    w.host.unbind(jul)
    assert presences(w.link.take()) == [
        ("presence", "unavailable", J + "/balcony", M),
        ("presence", "unavailable", J + "/balcony", "bot.ground.example/x"),
    ]


def test_directed_presence_without_initial_presence(w: World) -> None:
    w.put(J, M, "from")
    jul = w.connect(J, "balcony", presence=None)
    w.send(jul, f"<presence to='{M}'/>")
    w.link.take()
    w.host.unbind(jul)
    assert presences(w.link.take()) == [("presence", "unavailable", J + "/balcony", M)]


def test_inbound_presence_to_bare_and_full(w: World) -> None:
    a = w.connect(J, "a")
    b = w.connect(J, "b")
    c = w.connect(J, "c", presence=None)  # connected, not available
    w.remote(f"<presence from='{M}/lab' to='{J}'/>")
    assert [len(s.take()) for s in (a, b, c)] == [1, 1, 0]
    w.remote(f"<presence from='{M}/lab' to='{J}/c' type='unavailable'/>")
    w.remote(f"<presence from='{M}/lab' to='{J}/gone'/>")
    assert [len(s.take()) for s in (a, b, c)] == [0, 0, 1]
    assert w.link.take() == []


def test_bad_priority_is_refused(w: World) -> None:
    jul = w.connect(J, presence=None)
    w.send(jul, "<presence><priority>200</priority></presence>")
    (err,) = jul.take()
    assert brief(err) == ("presence", "error", None, J + "/r")
    assert error_condition(err) == "bad-request"


# -- messages ------------------------------------------------------------------------------------
def msg(to: str, kind: str | None = None, body: str = "hi") -> str:
    t = f" type='{kind}'" if kind else ""
    return f"<message from='{M}/lab' to='{to}' id='m1'{t}><body>{body}</body></message>"


def test_message_to_bare_jid_follows_priorities(w: World) -> None:
    low = w.connect(J, "low", presence="<presence><priority>1</priority></presence>")
    high = w.connect(J, "high", presence="<presence><priority>5</priority></presence>")
    neg = w.connect(J, "neg", presence="<presence><priority>-1</priority></presence>")
    w.remote(msg(J, "chat"))
    w.remote(msg(J))
    assert [len(s.take()) for s in (low, high, neg)] == [0, 2, 0]
    w.send(low, "<presence><priority>5</priority></presence>")
    for s in (low, high, neg):
        s.take()
    w.remote(msg(J, "chat"))
    assert [len(s.take()) for s in (low, high, neg)] == [1, 1, 0]
    w.remote(msg(J, "headline"))
    assert [len(s.take()) for s in (low, high, neg)] == [1, 1, 0]
    w.remote(msg(J, "error"))
    assert [len(s.take()) for s in (low, high, neg)] == [0, 0, 0]
    w.remote(msg(J, "groupchat"))
    (err,) = w.link.take()
    assert brief(err) == ("message", "error", J, M + "/lab")
    assert error_condition(err) == "service-unavailable"


def test_message_to_full_jid(w: World) -> None:
    a = w.connect(J, "a", presence="<presence><priority>-5</priority></presence>")
    b = w.connect(J, "b")
    w.remote(msg(J + "/a", "chat"))
    assert [len(s.take()) for s in (a, b)] == [1, 0]  # negative priority, but addressed
    w.remote(msg(J + "/gone", "chat"))
    w.remote(msg(J + "/gone", "normal"))
    assert [len(s.take()) for s in (a, b)] == [0, 2]  # as if to the bare JID
    w.remote(msg(J + "/gone", "headline"))
    w.remote(msg(J + "/gone", "error"))
    assert [len(s.take()) for s in (a, b)] == [0, 0]
    assert w.link.take() == []
    w.remote(msg(J + "/gone", "groupchat"))
    (err,) = w.link.take()
    assert error_condition(err) == "service-unavailable"


def test_local_message_goes_through_the_router(w: World) -> None:
    jul = w.connect(J, "balcony")
    rom = w.connect(R, "garden")
    w.send(jul, f"<message to='{R}' type='chat'><body>wherefore</body></message>")
    (m,) = rom.take()
    assert brief(m) == ("message", "chat", J + "/balcony", R)
    w.send(jul, f"<message to='{M}'><body>hi</body></message>")
    (m,) = w.link.take()
    assert brief(m) == ("message", None, J + "/balcony", M)


def test_offline_storage_and_delivery(w: World) -> None:
    w.remote(msg(J, "chat", "one"))
    w.now += 1.5
    w.remote(msg(J, None, "two"))
    w.remote(
        f"<message from='{M}/lab' to='{J}' type='chat'>"
        "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
    )
    w.remote(msg(J, "headline"))
    assert w.offline.count(J) == 2
    assert w.link.take() == []

    s = w.connect(J, "balcony", presence=None)
    w.send(s, "<presence><priority>-1</priority></presence>")  # negative: not yet
    assert [e for e in s.sent if e.local == "message"] == []
    w.send(s, "<presence><priority>0</priority></presence>")
    got = [e for e in s.sent if e.local == "message"]
    assert [e.find("{jabber:server}body").text for e in got] == ["one", "two"]  # type: ignore[union-attr]
    stamps = [e.find("{urn:xmpp:delay}delay") for e in got]
    assert [d.attrib for d in stamps] == [  # type: ignore[union-attr]
        {"from": "air.example", "stamp": "2023-11-14T22:13:20.250Z"},
        {"from": "air.example", "stamp": "2023-11-14T22:13:21.750Z"},
    ]
    assert w.offline.count(J) == 0
    s.take()
    w.send(s, "<presence><show>away</show></presence>")
    assert [e for e in s.sent if e.local == "message"] == []


def test_offline_storage_full_and_unknown_user(w: World) -> None:
    for i in range(3):
        w.remote(msg(J, "chat", str(i)))
    assert w.link.take() == []
    w.remote(msg(J, "chat", "overflow"))
    (err,) = w.link.take()
    assert error_condition(err) == "service-unavailable" and err.get("id") == "m1"
    w.remote(msg("ghost@air.example", "chat"))
    (err,) = w.link.take()
    assert brief(err) == ("message", "error", "ghost@air.example", M + "/lab")
    assert error_condition(err) == "service-unavailable"
    w.remote(f"<message type='error' from='{M}' to='ghost@air.example'/>")
    assert w.link.take() == []  # never an error for an error


def test_delay_stamp() -> None:
    assert delay_stamp(0) == "1970-01-01T00:00:00.000Z"
    assert delay_stamp(1_700_000_000.999) == "2023-11-14T22:13:20.999Z"


def test_stored_message_round_trips(w: World) -> None:
    w.remote(
        f"<message from='{M}/lab' to='{J}' type='chat'><body>a &amp; b</body>"
        "<x xmlns='jabber:x:oob'><url>http://x/</url></x></message>"
    )
    ((raw, _),) = w.offline.q[J]
    assert raw.startswith(b"<message ") and b"xmlns='jabber:x:oob'" in raw
    s = w.connect(J, presence=None)
    w.send(s, "<presence/>")
    (m,) = [e for e in s.sent if e.local == "message"]
    assert brief(m) == ("message", "chat", M + "/lab", J)
    assert m.find("{jabber:server}body").text == "a & b"  # type: ignore[union-attr]
    assert [c.tag for c in m.elements()] == [
        "{jabber:server}body",
        "{jabber:x:oob}x",
        "{urn:xmpp:delay}delay",
    ]


# -- iq ------------------------------------------------------------------------------------------
def iq(to: str, payload: str, kind: str = "get", frm: str = M + "/lab") -> str:
    return f"<iq type='{kind}' id='q1' from='{frm}' to='{to}'>{payload}</iq>"


def test_iq_unknown_namespace_to_bare_jid(w: World) -> None:
    w.remote(iq(J, "<query xmlns='urn:example:nothing'/>"))
    w.remote(iq(J, "<ping xmlns='urn:xmpp:ping'/>"))
    w.remote(iq("ghost@air.example", "<ping xmlns='urn:xmpp:ping'/>"))
    w.remote(iq(J, "<query xmlns='urn:example:nothing'/>", kind="result"))
    errs = w.link.take()
    assert [error_condition(e) for e in errs] == ["service-unavailable"] * 3
    assert [e.get("from") for e in errs] == [J, J, "ghost@air.example"]


def test_server_disco_ping_version(w: World) -> None:
    w.remote(iq("air.example", f"<query xmlns='{DISCO_INFO}'/>"))
    (res,) = w.link.take()
    assert brief(res) == ("iq", "result", "air.example", M + "/lab") and res.get("id") == "q1"
    q = res.find(f"{{{DISCO_INFO}}}query")
    assert q is not None
    assert [i.attrib for i in q.findall(f"{{{DISCO_INFO}}}identity")] == [
        {"category": "server", "type": "im", "name": "zerolink"}
    ]
    features = {f.get("var") for f in q.findall(f"{{{DISCO_INFO}}}feature")}
    assert features == {
        DISCO_INFO,
        "http://jabber.org/protocol/disco#items",
        "urn:xmpp:ping",
        "jabber:iq:version",
        ROSTER,
        "msgoffline",
    }
    w.remote(iq("air.example", "<query xmlns='http://jabber.org/protocol/disco#items'/>"))
    (res,) = w.link.take()
    assert (
        res.get("type") == "result"
        and len(list(res.find("{http://jabber.org/protocol/disco#items}query").elements())) == 0
    )  # type: ignore[union-attr]
    w.remote(iq("air.example", "<ping xmlns='urn:xmpp:ping'/>"))
    (res,) = w.link.take()
    assert brief(res) == ("iq", "result", "air.example", M + "/lab") and not res.children
    w.remote(iq("air.example", "<query xmlns='jabber:iq:version'/>"))
    (res,) = w.link.take()
    q = res.find("{jabber:iq:version}query")
    assert q is not None
    assert [(c.local, c.text) for c in q.elements()] == [
        ("name", "zerolink"),
        ("version", __version__),
    ]
    w.remote(iq("air.example", "<query xmlns='jabber:iq:last'/>"))
    w.remote(iq("air.example", f"<query xmlns='{ROSTER}'/>"))  # not a user of ours
    w.remote(iq("air.example", f"<query xmlns='{DISCO_INFO}' node='x'/>"))
    w.remote(iq("air.example", "<a xmlns='x'/><b xmlns='x'/>"))
    assert [error_condition(e) for e in w.link.take()] == [
        "service-unavailable",
        "service-unavailable",
        "item-not-found",
        "bad-request",
    ]


def test_client_iq_without_to_is_for_the_server(w: World) -> None:
    s = w.connect(J)
    w.send(s, "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    (res,) = s.take()
    assert brief(res) == ("iq", "result", None, J + "/r") and res.get("id") == "p"
    w.send(s, "<iq type='get' id='u'><query xmlns='urn:example:nothing'/></iq>")
    (err,) = s.take()
    assert error_condition(err) == "service-unavailable"
    w.send(s, "<iq type='result' id='push1'/>")  # a roster push ack: nothing to do
    assert s.take() == []


def test_account_disco_only_for_subscribers(w: World) -> None:
    w.put(J, M, "from")
    w.remote(iq(J, f"<query xmlns='{DISCO_INFO}'/>"))
    (res,) = w.link.take()
    assert brief(res) == ("iq", "result", J, M + "/lab")
    q = res.find(f"{{{DISCO_INFO}}}query")
    assert q is not None
    assert [i.attrib for i in q.findall(f"{{{DISCO_INFO}}}identity")] == [
        {"category": "account", "type": "registered"}
    ]
    w.remote(iq(J, f"<query xmlns='{DISCO_INFO}'/>", frm="tybalt@ground.example/x"))
    (err,) = w.link.take()
    assert error_condition(err) == "service-unavailable"
    s = w.connect(J)
    w.send(s, f"<iq type='get' id='d' to='{J}'><query xmlns='{DISCO_INFO}'/></iq>")
    (res,) = s.take()
    assert brief(res) == ("iq", "result", J, J + "/r")


def test_iq_to_full_jid(w: World) -> None:
    s = w.connect(J, "balcony")
    w.remote(iq(J + "/balcony", "<query xmlns='urn:example:x'/>"))
    (got,) = s.take()
    assert brief(got) == ("iq", "get", M + "/lab", J + "/balcony")
    w.remote(iq(J + "/gone", "<query xmlns='urn:example:x'/>"))
    (err,) = w.link.take()
    assert error_condition(err) == "service-unavailable"
    w.remote(iq(J + "/gone", "", kind="result"))
    w.remote(iq(J + "/gone", "", kind="error"))
    assert w.link.take() == []


def test_malformed_to_from_client(w: World) -> None:
    s = w.connect(J)
    w.send(s, "<message to='a@b@c'><body>x</body></message>")
    (err,) = s.take()
    assert error_condition(err) == "jid-malformed"


def test_stream_features(w: World) -> None:
    assert [serialize(e) for e in w.host.stream_features()] == [
        b"<ver xmlns='urn:xmpp:features:rosterver'/>",
        b"<sub xmlns='urn:xmpp:features:pre-approval'/>",
    ]


def test_roster_from_version_zero_is_sent_whole(w: World) -> None:
    w.put(J, R, "both")
    w.put(J, N, "to")
    s = w.connect(J, roster=False, presence=None)
    w.send(s, f"<iq type='get' id='g'><query xmlns='{ROSTER}' ver='0'/></iq>")
    (res,) = s.take()
    q = res.find(f"{{{ROSTER}}}query")
    assert q is not None and q.get("ver") == "2"
    assert [i.get("jid") for i in q.elements()] == [N, R]


def test_pending_contact_shows_once_named_or_approved(w: World) -> None:
    s = w.connect(J)
    w.remote(f"<presence from='{M}' to='{J}' type='subscribe'/>")
    assert pushes(s) == []
    s.take()
    w.send(
        s,
        f"<iq type='set' id='n'><query xmlns='{ROSTER}'><item jid='{M}' name='Mercutio'/>"
        "</query></iq>",
    )
    assert pushes(s) == [("2", [{"jid": M, "name": "Mercutio", "subscription": "none"}])]
    assert w.item(J, M) == Item(M, "Mercutio", pending_in=True)  # the request is still there
    s.take()
    w.send(s, f"<presence to='{M}' type='subscribed'/>")
    assert pushes(s) == [("3", [{"jid": M, "name": "Mercutio", "subscription": "from"}])]
    assert presences(w.link.take())[0] == ("presence", "subscribed", J, M)


def test_client_probe_only_where_subscribed(w: World) -> None:
    w.put(J, M, "to")
    s = w.connect(J)
    w.link.take()
    w.send(s, "<presence to='tybalt@ground.example' type='probe'/>")
    w.send(s, f"<presence to='{M}/lab' type='probe'/>")
    assert presences(w.link.take()) == [("presence", "probe", J, M)]
    w.send(s, "<presence type='subscribe'/>")
    (err,) = s.take()
    assert brief(err) == ("presence", "error", None, J + "/r")
    assert error_condition(err) == "bad-request"


def test_inbound_unsubscribe_from_remote_subscriber(w: World) -> None:
    w.put(J, M, "both")
    s = w.connect(J, "balcony")
    w.remote(f"<presence from='{M}/lab' to='{J}' type='unsubscribe'/>")
    assert presences(s.sent) == [("presence", "unsubscribe", M, J)]
    assert pushes(s) == [("2", [{"jid": M, "subscription": "to"}])]
    assert presences(w.link.take()) == [("presence", "unavailable", J + "/balcony", M)]
    assert w.item(J, M) == Item(M, subscription="to")


def test_sessions_of(w: World) -> None:
    a = w.connect(J, "a", presence=None)
    assert w.host.sessions_of("Juliet@AIR.example") == [a]
    assert w.host.sessions_of(R) == []
    assert w.host.sessions_of("@bad") == []


def error_text(stanza: Element) -> str | None:
    err = stanza.find("{jabber:server}error")
    text = err.find("{urn:ietf:params:xml:ns:xmpp-stanzas}text") if err is not None else None
    return text.text if text is not None else None


def test_unsupported_iq_names_its_namespace(w: World, caplog: pytest.LogCaptureFixture) -> None:
    """service-unavailable for a feature we lack says which (in the reply and in the log)."""
    caplog.set_level(logging.INFO, logger="zerolink")
    w.put(J, M, "from")
    w.remote(iq("air.example", "<query xmlns='jabber:iq:last'/>"))
    w.remote(iq(J, "<query xmlns='urn:example:nothing'/>"))  # M may see J's account
    errs = w.link.take()
    assert [(error_condition(e), error_text(e)) for e in errs] == [
        ("service-unavailable", "jabber:iq:last is not supported"),
        ("service-unavailable", "urn:example:nothing is not supported"),
    ]
    assert (
        "bounced iq (jabber:iq:last query) from mercutio@ground.example/lab to air.example: "
        "service-unavailable (jabber:iq:last is not supported)"
    ) in caplog.text
    # who may not see an account gets what a missing account gets: nothing named
    w.remote(iq(J, "<query xmlns='urn:example:nothing'/>", frm="tybalt@ground.example/x"))
    w.remote(
        iq(
            "ghost@air.example",
            "<query xmlns='urn:example:nothing'/>",
            frm="tybalt@ground.example/x",
        )
    )
    hidden, missing = w.link.take()
    assert error_text(hidden) is None and error_text(missing) is None
    assert hidden.find("{jabber:server}error") == missing.find("{jabber:server}error")
    assert "bounced iq (urn:example:nothing query) from tybalt@ground.example/x" in caplog.text


# -- offline messages in batches, quotas (issue 10) -----------------------------------------------
def bodies(els: list[Element]) -> list[str]:
    return [e.find("{jabber:server}body").text for e in els if e.local == "message"]  # type: ignore[union-attr]


def test_offline_messages_go_out_in_batches_each_deleted_once_the_client_has_it() -> None:
    w = World(offline_limit=1000, offline_batch=100, offline_batch_bytes=1 << 20)
    for i in range(250):
        w.remote(msg(J, "chat", str(i)))
    s = w.connect(J, presence=None, auto_ack=False)
    w.send(s, "<presence/>")
    assert bodies(s.take()) == [str(i) for i in range(100)]  # one batch, not all at once
    assert w.offline.count(J) == 250  # nothing deleted before the client has it
    s.ack()
    assert w.offline.count(J) == 150
    assert bodies(s.take()) == [str(i) for i in range(100, 200)]
    s.ack()
    assert bodies(s.take()) == [str(i) for i in range(200, 250)]
    s.ack()
    assert w.offline.count(J) == 0 and w.offline.batches == [100, 100, 50]


def test_an_offline_batch_is_bounded_in_bytes_too() -> None:
    w = World(offline_limit=1000, offline_batch=100, offline_batch_bytes=1000)
    for i in range(10):
        w.remote(msg(J, "chat", f"{i}" + "x" * 300))
    s = w.connect(J, presence=None)
    w.send(s, "<presence/>")
    assert len(bodies(s.sent)) == 10
    # about 370 bytes each: two fit in 1,000 bytes
    assert w.offline.batches == [2, 2, 2, 2, 2] and w.offline.count(J) == 0


def test_a_client_that_drops_mid_way_gets_the_rest_at_its_next_login() -> None:
    w = World(offline_limit=1000, offline_batch=100)
    for i in range(150):
        w.remote(msg(J, "chat", str(i)))
    s = w.connect(J, presence=None, auto_ack=False)
    w.send(s, "<presence/>")
    assert len(bodies(s.take())) == 100
    w.host.unbind(s)  # gone before its TCP acknowledged the batch
    assert w.offline.count(J) == 150
    s.ack()  # a late acknowledgement (seen as the connection closed) deletes, sends no more
    assert w.offline.count(J) == 50 and s.take() == []
    s2 = w.connect(J, presence=None, auto_ack=False)
    w.send(s2, "<presence/>")
    assert bodies(s2.take()) == [str(i) for i in range(100, 150)]
    s2.ack()
    assert w.offline.count(J) == 0


def test_offline_delivery_moves_to_another_resource_when_its_session_ends() -> None:
    w = World(offline_limit=1000, offline_batch=100)
    for i in range(150):
        w.remote(msg(J, "chat", str(i)))
    first = w.connect(J, "a", presence=None, auto_ack=False)
    w.send(first, "<presence/>")
    assert len(bodies(first.take())) == 100
    second = w.connect(J, "b", presence=None, auto_ack=False)
    w.send(second, "<presence/>")  # the first one is receiving them: one delivery at a time
    assert bodies(second.take()) == []
    w.host.unbind(first)  # never acknowledged: the other resource gets them all
    assert bodies(second.take()) == [str(i) for i in range(100)]
    second.ack()
    assert bodies(second.take()) == [str(i) for i in range(100, 150)]


def test_offline_quota_in_bytes_bounces_with_service_unavailable() -> None:
    w = World(offline_limit=1000, offline_bytes=1000)
    w.remote(msg(J, "chat", "x" * 600))
    assert w.link.take() == [] and w.offline.count(J) == 1
    w.remote(msg(J, "chat", "y" * 600))  # 1,200 bytes would be stored
    (err,) = w.link.take()
    assert brief(err) == ("message", "error", J, M + "/lab")
    assert (
        error_condition(err) == "service-unavailable" and error_text(err) == "offline storage full"
    )
    assert w.offline.count(J) == 1


# -- what a session never delivered (issue 10) ----------------------------------------------------
def test_undelivered_messages_to_the_bare_jid_follow_rfc_6121_again(w: World) -> None:
    dead = w.connect(J, "dead", presence="<presence><priority>5</priority></presence>")
    other = w.connect(J, "other", presence="<presence><priority>1</priority></presence>")
    w.remote(msg(J, "chat", "to the bare JID"))
    (m,) = dead.take()  # the highest priority got it; its client never did
    w.host.unbind(dead)
    w.quiet()
    w.host.undelivered(JID("juliet", "air.example", "dead"), [m])
    assert bodies(other.take()) == ["to the bare JID"]  # the remaining resource
    w.host.unbind(other)
    w.host.undelivered(JID("juliet", "air.example", "other"), [X(msg(J, "normal", "again"))])
    assert w.offline.count(J) == 1  # nobody left: offline


def test_undelivered_messages_to_the_full_jid_go_offline_even_with_others_online(w: World) -> None:
    dead = w.connect(J, "dead")
    other = w.connect(J, "other")
    w.host.unbind(dead)
    w.quiet()
    full = JID("juliet", "air.example", "dead")
    w.host.undelivered(full, [X(msg(J + "/dead", "chat", "for the dead one"))])
    assert other.take() == [] and w.offline.count(J) == 1
    w.host.unbind(other)
    s = w.connect(J, "later", presence=None)
    w.send(s, "<presence/>")
    assert bodies(s.sent) == ["for the dead one"]


def test_undelivered_to_a_full_jid_taken_over_goes_to_the_new_session(w: World) -> None:
    old = w.connect(J, "balcony")
    new = w.connect(J, "balcony")  # resource conflict: the new one wins
    assert old.kicked == [("conflict", "replaced by a new session")]
    w.quiet()
    w.host.undelivered(JID("juliet", "air.example", "balcony"), [X(msg(J + "/balcony", "chat"))])
    assert bodies(new.take()) == ["hi"] and w.offline.count(J) == 0


def test_undelivered_iq_bounces_headline_presence_error_are_dropped(w: World) -> None:
    dead = w.connect(J, "dead")
    w.host.unbind(dead)
    w.quiet()
    w.host.undelivered(
        JID("juliet", "air.example", "dead"),
        [
            X(iq(J + "/dead", "<ping xmlns='urn:xmpp:ping'/>")),
            X(iq(J + "/dead", "<ping xmlns='urn:xmpp:ping'/>", kind="result")),
            X(msg(J + "/dead", "headline")),
            X(f"<message from='{M}' to='{J}/dead' type='error'/>"),
            X(f"<presence from='{M}/lab' to='{J}/dead'/>"),
            X(f"<message from='{M}/lab' to='{J}/dead' type='groupchat' id='g'/>"),
        ],
    )
    errs = w.link.take()
    assert [(e.local, e.get("id"), error_condition(e)) for e in errs] == [
        ("iq", "q1", "service-unavailable"),
        ("message", "g", "service-unavailable"),
    ]
    assert w.offline.count(J) == 0


def test_undelivered_messages_of_a_deleted_account_bounce(w: World) -> None:
    dead = w.connect(J, "dead")
    w.accounts.users.discard(J)
    w.host.unbind(dead)
    w.quiet()
    w.host.undelivered(JID("juliet", "air.example", "dead"), [X(msg(J, "chat"))])
    (err,) = w.link.take()
    assert error_condition(err) == "service-unavailable" and w.offline.count(J) == 0


# -- roster limits (issue 10) ---------------------------------------------------------------------
SMALL = RosterLimits(max_items=3, max_groups=2, max_name_chars=10, max_group_chars=5)


@pytest.mark.parametrize(
    ("item", "text"),
    [
        (f"<item jid='{R}' name='{'n' * 11}'/>", "name longer than 10 characters"),
        (f"<item jid='{R}'><group>abcdef</group></item>", "group name longer than 5 characters"),
        (
            f"<item jid='{R}'><group>a</group><group>b</group><group>c</group></item>",
            "more than 2 groups",
        ),
    ],
)
def test_roster_set_beyond_the_item_limits_is_not_acceptable(item: str, text: str) -> None:
    w = World(roster_limits=SMALL)
    s = w.connect(J)
    w.send(s, f"<iq type='set' id='e'><query xmlns='{ROSTER}'>{item}</query></iq>")
    (err,) = s.take()
    assert error_condition(err) == "not-acceptable" and error_text(err) == text
    assert w.rosters.items(J) == []


def test_the_limits_themselves_are_accepted() -> None:
    w = World(roster_limits=SMALL)
    s = w.connect(J)
    item = f"<item jid='{R}' name='{'n' * 10}'><group>abcde</group><group>b</group></item>"
    w.send(s, f"<iq type='set' id='ok'><query xmlns='{ROSTER}'>{item}</query></iq>")
    assert [e.get("type") for e in s.take()] == ["set", "result"]  # push, result


def test_a_full_roster_refuses_new_contacts_from_anyone_with_resource_constraint() -> None:
    w = World(roster_limits=SMALL)
    s = w.connect(J)
    for i in range(3):
        item = f"<item jid='c{i}@x.example'/>"
        w.send(s, f"<iq type='set' id='s{i}'><query xmlns='{ROSTER}'>{item}</query></iq>")
    s.take()
    # by a roster set
    w.send(s, f"<iq type='set' id='s3'><query xmlns='{ROSTER}'><item jid='{R}'/></query></iq>")
    (err,) = s.take()
    assert error_condition(err) == "resource-constraint"
    assert error_text(err) == "the roster is full (3 items)"
    # by subscribing to a new contact
    w.send(s, f"<presence to='{M}' type='subscribe'/>")
    (err,) = s.take()
    assert brief(err) == ("presence", "error", M, J + "/r")
    assert error_condition(err) == "resource-constraint"
    assert w.link.take() == []  # not routed: nothing is recorded of it
    # by a stranger's request: the requester is told
    w.remote(f"<presence from='{M}/lab' to='{J}' type='subscribe'/>")
    (err,) = w.link.take()
    assert brief(err) == ("presence", "error", J, M + "/lab")
    assert error_condition(err) == "resource-constraint"
    assert len(w.rosters.items(J)) == 3
    # an existing contact can still be changed
    item = "<item jid='c0@x.example' name='c'/>"
    w.send(s, f"<iq type='set' id='u'><query xmlns='{ROSTER}'>{item}</query></iq>")
    assert [e.get("type") for e in s.take()] == ["set", "result"]


def test_a_large_subscription_request_is_kept_bare(w: World) -> None:
    big = "x" * 5000
    w.remote(
        f"<presence from='{M}/lab' to='{J}' type='subscribe'><status>{big}</status></presence>"
    )
    assert w.rosters.stanzas.get((J, M)) is None  # not kept whole
    s = w.connect(J, presence=None)
    w.send(s, "<presence/>")
    (req,) = [e for e in s.sent if e.get("type") == "subscribe"]
    assert brief(req) == ("presence", "subscribe", M, J)  # still delivered again, bare


def test_offline_delivery_moves_on_when_its_resource_goes_negative() -> None:
    w = World(offline_limit=1000, offline_batch=100)
    for i in range(150):
        w.remote(msg(J, "chat", str(i)))
    first = w.connect(J, "a", presence=None, auto_ack=False)
    w.send(first, "<presence/>")
    assert len(bodies(first.take())) == 100
    second = w.connect(J, "b", presence=None, auto_ack=False)
    w.send(second, "<presence/>")
    w.send(first, "<presence><priority>-1</priority></presence>")  # wants no more messages
    first.ack()
    assert bodies(first.take()) == []
    assert bodies(second.take()) == [str(i) for i in range(100, 150)]


# -- a store that refuses writes (a full disk) ---------------------------------------------------


def test_a_failed_offline_write_is_refused_to_the_sender_and_the_session_goes_on(w: World):
    from zerolink.errors import StorageError

    s = w.connect(J)

    def full(*_: object) -> bool:
        raise StorageError("database or disk is full")

    w.offline.push = full  # type: ignore[method-assign]
    w.remote(f"<message from='x@ground.example/a' to='{R}' id='m1'><body>hi</body></message>")
    (bounce,) = w.link.take()
    assert bounce.get("id") == "m1" and error_condition(bounce) == "resource-constraint"
    assert w.host.storage_failing is not None and w.host.store_refused == 1
    # the client's own traffic still works
    w.send(s, "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert [e.get("id") for e in s.take()] == ["p1"]


def test_a_failed_roster_write_is_an_iq_error_not_a_disconnect(w: World, caplog):
    from zerolink.errors import StorageError

    s = w.connect(J)

    def full(*_: object) -> int:
        raise StorageError("database or disk is full")

    w.rosters.put = full  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="zerolink.host")
    for i in range(3):
        w.send(
            s,
            f"<iq type='set' id='s{i}'><query xmlns='{ROSTER}'><item jid='x{i}@ground.example'/>"
            "</query></iq>",
        )
    replies = s.take()
    assert [(e.get("id"), error_condition(e)) for e in replies] == [
        (f"s{i}", "resource-constraint") for i in range(3)
    ]
    assert not s.kicked
    assert caplog.text.count("host store cannot be written") == 1  # once, not per stanza
