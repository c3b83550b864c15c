"""The local host: the hosted domains' users, RFC 6121 IM and presence, sans-I/O.

`LocalHost` is a route (``deliver``) for the hosted domains and the other end of every bound
client session (``bind``, ``from_client``, ``unbind``). What a client sends is processed on its
user's behalf and leaves through ``router.route``, local users included, so that a local and
a remote contact take the same path; errors leave through ``router.bounce``. Stanzas reach a
session (``session.send``) only from ``deliver``, or as the user's own offline messages and
pending subscription requests.

Parts: `zerolink.core.roster` (store protocols, the Appendix A state machine, roster IQs and
pushes), `zerolink.core.presence` (sessions, presence, subscriptions), `zerolink.core.disco`
(disco, ping, version). The stores are passed in (see the protocols in
`zerolink.core.roster`); ``make_item`` builds roster items and is called with the keyword
arguments ``contact, name, subscription, ask, approved, pending_in, groups``
(``zerolink.store.roster.RosterItem`` fits).

Where RFC 6121 leaves a choice:

* A resource conflict is won by the new session; the old one is unbound (unavailable presence
  sent for it) and kicked with 'conflict' (RFC 6120 §7.7.2.2, as Prosody does).
* Messages to a bare JID go to every non-negative resource of the highest priority (chat and
  normal, §8.5.2.1.1), headlines to every non-negative resource; with none, chat and normal
  are stored offline (XEP-0160) and headline and error are dropped.
* A chat or normal message to a full JID whose resource is gone is handled as if sent to the
  bare JID (Prosody, ejabberd); groupchat gets service-unavailable, headline and error are
  dropped.
* Stanzas to an account that does not exist: message and iq get service-unavailable, presence
  of any type is ignored (§8.5.1 allows ignoring subscribe and probe: silence tells nothing).
* A probe from a contact without a 'from' subscription is answered 'unsubscribed' (§4.3.2).
* An iq without 'to' from a client is for the server (disco, ping, version), except the
  roster, which is the account's.
* Offline messages made only of chat states (XEP-0085) are dropped rather than stored.
* Offline messages go to the first resource that becomes available with a non-negative
  priority, in batches (`offline_batch` messages, at most `offline_batch_bytes`): the next
  batch is read from the store once the client has the previous one, which is deleted only
  then. A client that drops half way gets the rest, and maybe a few again, at its next login.
* Stanzas a session was sent and whose client never got them (the connection gave up on it,
  see ``undelivered``) are not lost: a message to the bare JID is handled again as if it had
  just arrived (other resources, else offline), one to the session's full JID is stored
  offline (RFC 6121 §8.5.3.2.1 allows it), an iq request bounces with service-unavailable.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from zerolink import __version__
from zerolink.core.disco import account_info, iq_payload, server_iq, stream_features
from zerolink.core.presence import (
    ClientSession,
    Presence,
    Resource,
    Resources,
    parse_stored,
    send_all,
)
from zerolink.core.roster import (
    QUERY,
    AccountStore,
    MakeItem,
    OfflineStore,
    Roster,
    RosterLimits,
    RosterStore,
    has_from,
)
from zerolink.core.router import Router
from zerolink.errors import StanzaError, StorageError
from zerolink.jid import JID, JIDError, normalize_domain, parse_jid, stanza_error_for
from zerolink.stanza import IQ, MESSAGE, PRESENCE
from zerolink.xml.element import SERVER_NS, Element
from zerolink.xml.serializer import serialize

__all__ = ["ClientSession", "LocalHost", "stream_features"]

log = logging.getLogger("zerolink.host")

DELAY = "{urn:xmpp:delay}delay"
CHATSTATES_NS = "http://jabber.org/protocol/chatstates"
THREAD = f"{{{SERVER_NS}}}thread"
MESSAGE_TYPES = frozenset({"chat", "groupchat", "headline", "normal", "error"})
STORE_LOG_EVERY = 60.0  # seconds between log lines while the store refuses writes


def delay_stamp(t: float) -> str:
    """XEP-0082 DateTime in UTC with milliseconds: ``YYYY-MM-DDThh:mm:ss.sssZ``."""
    dt = datetime.fromtimestamp(t, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def only_chat_states(msg: Element) -> bool:
    """A message carrying nothing but a chat state notification (and maybe a thread)."""
    children = [c for c in msg.elements() if c.tag != THREAD]
    return bool(children) and all(c.namespace == CHATSTATES_NS for c in children)


def jid_or_none(raw: str | None) -> JID | None:
    try:
        return parse_jid(raw) if raw else None
    except JIDError:
        return None


class LocalHost:
    """Route for the hosted domains and the server side of client sessions."""

    name = "local host"

    def __init__(
        self,
        domains: Iterable[str],
        router: Router,
        accounts: AccountStore,
        rosters: RosterStore,
        offline: OfflineStore,
        make_item: MakeItem,
        *,
        clock: Callable[[], float],
        software: tuple[str, str] = ("zerolink", __version__),
        max_sessions_per_user: int = 10,
        roster_limits: RosterLimits | None = None,
        offline_batch: int = 100,
        offline_batch_bytes: int = 1024 * 1024,
    ) -> None:
        self.max_sessions_per_user = max_sessions_per_user
        self.offline_batch = offline_batch
        self.offline_batch_bytes = offline_batch_bytes
        self.domains = frozenset(normalize_domain(d) for d in domains)
        self.router = router
        self.accounts = accounts
        self.offline = offline
        self.clock = clock
        self.software = software
        self.resources = Resources()
        self.roster = Roster(rosters, make_item, self.resources, router, roster_limits)
        #: Why the store refused a write, while that lasts (None: it works); stanzas refused.
        self.storage_failing: str | None = None
        self.store_refused = 0
        self._store_logged = self._store_failed_at = 0.0
        # The resource each user's offline messages are being delivered to, batch by batch.
        self._offline_to: dict[str, Resource] = {}
        self.presence = Presence(
            self.resources, self.roster, router, on_available=self._deliver_offline
        )

    @staticmethod
    def stream_features() -> list[Element]:
        """Client stream features to advertise: roster versioning, pre-approval."""
        return stream_features()

    # -- sessions ------------------------------------------------------------------------
    def bind(self, session: ClientSession, local: str, domain: str, resource: str | None) -> JID:
        """Bind `session` to local@domain/resource (RFC 6120 §7); returns the full JID.

        Without a resource one is generated. If another session holds the JID, the new one
        wins and the old one is unbound and kicked with 'conflict'. Raises `StanzaError`
        (bad-request) for a resource that cannot be prepared, (resource-constraint) when the
        account already has `max_sessions_per_user` sessions, `ValueError` for a domain not
        hosted here or a session already bound.
        """
        domain = normalize_domain(domain)
        if domain not in self.domains:
            raise ValueError(f"{domain} is not hosted here")
        if self.resources.of(session) is not None:
            raise ValueError("session already bound")
        try:
            if resource is None:
                jid = self._new_resource(local, domain)
            else:
                jid = JID(local, domain, resource)
        except JIDError as exc:
            raise StanzaError("bad-request", exc.text) from None
        old = self.resources.get(jid)
        if old is None and len(self.resources.connected(f"{local}@{domain}")) >= (
            self.max_sessions_per_user
        ):
            # RFC 6120 §7.6.2.1: the account has reached its limit of sessions.
            raise StanzaError(
                "resource-constraint", f"at most {self.max_sessions_per_user} sessions per account"
            )
        if old is not None:
            log.info("%s: resource conflict, the new session replaces the old one", jid)
            self.unbind(old.session)
            old.session.kick("conflict", "replaced by a new session")
        self.resources.add(Resource(session, jid))
        session.jid = jid
        return jid

    def _new_resource(self, local: str, domain: str) -> JID:
        while True:
            jid = JID(local, domain, secrets.token_urlsafe(6))
            if self.resources.get(jid) is None:
                return jid

    def unbind(self, session: ClientSession) -> None:
        """The session is gone: unavailable presence where due (RFC 6121 §4.5.2, §4.6.3)."""
        res = self.resources.of(session)
        if res is None:
            return
        self.resources.remove(res)
        if res.available or res.directed:
            self.presence.unavailable(res)
        if self._offline_to.get(res.bare) is res:
            self._offline_handover(res)

    def undelivered(self, jid: JID, stanzas: list[Element]) -> None:
        """Stanzas sent to the session of `jid`, now unbound, that never reached its client
        (the connection ended it over its output budget, or lost it): handled so that nothing
        is lost (see the module docstring). Presence, results and errors are dropped; the
        contacts got unavailable presence when the session was unbound."""
        user = str(jid.bare)
        exists = jid.local is not None and self.accounts.exists(jid.local, jid.domain)
        gone = StanzaError("service-unavailable", "the recipient's session ended")
        counts = {"message": 0, "iq": 0}
        for stanza in stanzas:
            kind = stanza.get("type")
            if stanza.tag == IQ:
                if kind in ("get", "set"):
                    self.router.bounce(stanza, gone)
                    counts["iq"] += 1
                continue
            if stanza.tag != MESSAGE:
                continue
            kind = kind if kind in MESSAGE_TYPES else "normal"
            if kind in ("error", "headline"):  # headlines are not stored (XEP-0160 §3)
                continue
            counts["message"] += 1
            if not exists:
                self.router.bounce(stanza, gone)
                continue
            to = jid_or_none(stanza.get("to"))
            if to is None or str(to.bare) != user:
                to = jid
            if to.resource is None:
                self._message(stanza, to, user)
                continue
            res = self.resources.get(to)
            if res is not None:  # a new session holds that full JID now
                res.session.send(stanza)
            elif kind == "groupchat":
                self.router.bounce(stanza, gone)
            else:
                self._store_offline(stanza, user)
        if counts["message"] or counts["iq"]:
            log.info(
                "%s: %d message(s) its client never got handled again, %d iq request(s) bounced",
                jid,
                counts["message"],
                counts["iq"],
            )

    def end_deleted_sessions(self) -> list[str]:
        """Unbind and kick the sessions of accounts that no longer exist; their bare JIDs.

        Accounts are deleted by another process (`zerolink user delete`), which cannot reach
        the sessions; the server calls this when the store says that something changed. The
        stream error is Prosody's for a deleted account: not-authorized, "account deleted".
        """
        gone = []
        for user in self.resources.users():
            local, _, domain = user.partition("@")
            if self.accounts.exists(local, domain):
                continue
            gone.append(user)
            sessions = [r.session for r in self.resources.connected(user)]
            for session in sessions:
                self.unbind(session)
                session.kick("not-authorized", "account deleted")
            log.info("%s: account deleted, %d session(s) ended", user, len(sessions))
        return gone

    def sessions_of(self, bare: str) -> list[ClientSession]:
        """The sessions bound to the bare JID `bare`."""
        try:
            user = str(parse_jid(bare).bare)
        except JIDError:
            return []
        return [r.session for r in self.resources.connected(user)]

    # -- the store failing ----------------------------------------------------------------
    def _store_failed(self, stanza: Element, exc: StorageError) -> None:
        """A write for `stanza` failed (the disk is full): refuse the stanza, not the session.

        The sender gets ``resource-constraint`` with the reason; the log says it once a
        minute at most; `storage_failing` holds the reason (for the status) until a minute
        passes without another failure.
        """
        now = self.clock()
        self.store_refused += 1
        if self.storage_failing is None or now - self._store_logged >= STORE_LOG_EVERY:
            log.error(
                "host store cannot be written (%s): stanzas that need it are refused with "
                "resource-constraint (%d so far)",
                exc,
                self.store_refused,
            )
            self._store_logged = now
        self.storage_failing = str(exc)
        self._store_failed_at = now
        self.router.bounce(
            stanza, StanzaError("resource-constraint", f"cannot be stored now: {exc}")
        )

    def _store_ok(self) -> None:
        if self.storage_failing is not None and self.clock() - self._store_failed_at > 60:
            log.warning("host store: no write failed for a minute")
            self.storage_failing = None

    # -- from a client -------------------------------------------------------------------
    def from_client(self, session: ClientSession, stanza: Element) -> None:
        """A stanza from a bound client (its 'from' is stamped again here, RFC 6120 §8.1.2.1)."""
        try:
            self._from_client(session, stanza)
        except StorageError as exc:
            self._store_failed(stanza, exc)
        else:
            self._store_ok()

    def _from_client(self, session: ClientSession, stanza: Element) -> None:
        res = self.resources.of(session)
        if res is None:  # e.g. a session replaced a moment ago and not closed yet
            log.debug("dropped %s from an unbound session", stanza.local)
            return
        stanza.set("from", str(res.jid))
        to: JID | None = None
        raw = stanza.get("to")
        if raw:
            try:
                to = parse_jid(raw)
            except JIDError as exc:
                self.router.bounce(stanza, stanza_error_for(exc))
                return
        if stanza.tag == PRESENCE:
            self.presence.from_client(res, stanza, to)
        elif stanza.tag == MESSAGE:
            if to is None:  # RFC 6120 §10.3.1: as if to the user's bare JID
                stanza.set("to", res.bare)
            self.router.route(stanza)
        elif stanza.tag == IQ:
            if to is None:
                self._server_iq(stanza, res.jid.domain, res.jid)
            else:
                self.router.route(stanza)
        else:
            log.debug("ignored <%s/> from %s", stanza.local, res.jid)

    # -- the route -----------------------------------------------------------------------
    def deliver(self, stanza: Element) -> None:
        """A stanza addressed to a hosted domain (RFC 6121 §8.5)."""
        try:
            self._deliver(stanza)
        except StorageError as exc:
            self._store_failed(stanza, exc)

    def _deliver(self, stanza: Element) -> None:
        try:
            to = parse_jid(stanza.get("to") or "")
        except JIDError:
            log.debug("dropped %s with a bad 'to'", stanza.local)
            return
        if to.domain not in self.domains:
            self.router.bounce(stanza, StanzaError("service-unavailable"))
            return
        sender = jid_or_none(stanza.get("from"))
        tag = stanza.tag
        if to.local is None:
            if tag == IQ and to.resource is None:
                self._server_iq(stanza, to.domain, sender)
            elif tag != PRESENCE:
                self.router.bounce(stanza, StanzaError("service-unavailable"))
            return
        user = str(to.bare)
        if not (self.resources.connected(user) or self.accounts.exists(to.local, to.domain)):
            if tag != PRESENCE:  # §8.5.1; presence is ignored
                self.router.bounce(stanza, StanzaError("service-unavailable"))
            return
        if tag == MESSAGE:
            self._message(stanza, to, user)
        elif tag == PRESENCE:
            self.presence.inbound(stanza, to, sender, user)
        elif tag == IQ:
            self._account_iq(stanza, to, user, sender)

    # -- messages ------------------------------------------------------------------------
    def _message(self, stanza: Element, to: JID, user: str) -> None:
        kind = stanza.get("type") or "normal"
        if kind not in MESSAGE_TYPES:
            kind = "normal"  # RFC 6121 §5.2.2
        if to.resource is not None:  # §8.5.3
            res = self.resources.get(to)
            if res is not None:
                res.session.send(stanza)
                return
            if kind in ("headline", "error"):
                return
        if kind == "error":
            return
        if kind == "groupchat":
            self.router.bounce(stanza, StanzaError("service-unavailable"))
            return
        nonneg = [r for r in self.resources.available(user) if r.priority >= 0]
        if kind == "headline":
            send_all(nonneg, stanza)
            return
        if nonneg:
            top = max(r.priority for r in nonneg)
            send_all([r for r in nonneg if r.priority == top], stanza)
            return
        self._store_offline(stanza, user)

    def _store_offline(self, stanza: Element, user: str) -> None:
        """XEP-0160: keep a chat or normal message for the next available resource."""
        if only_chat_states(stanza):
            return
        if not self.offline.push(user, serialize(stanza), self.clock()):
            # Over the user's quota (host.offline_limit messages, host.offline_bytes bytes):
            # XEP-0160 §2 step 3, "if not (e.g., because the recipient's offline message queue
            # is full), the server returns a <service-unavailable/> error to the sender", as
            # RFC 6121 §8.5.2.2.1 has it for a message that is not stored.
            self.router.bounce(stanza, StanzaError("service-unavailable", "offline storage full"))

    def _deliver_offline(self, res: Resource) -> None:
        """Stored messages to a resource now available with a non-negative priority, each with
        its time of arrival (XEP-0203), one batch at a time (never all in memory)."""
        if res.bare not in self._offline_to:  # else another resource is receiving them
            self._offline_batch(res)

    def _offline_batch(self, res: Resource) -> None:
        user = res.bare
        rows = self.offline.batch(user, self.offline_batch, self.offline_batch_bytes)
        if not rows:
            self._offline_to.pop(user, None)
            return
        self._offline_to[user] = res
        msgs = []
        for _, raw, stamp in rows:
            msg = parse_stored(raw)
            if msg is not None:
                msg.append(Element(DELAY, {"from": res.jid.domain, "stamp": delay_stamp(stamp)}))
                msgs.append(msg)
        last = rows[-1][0]

        def done() -> None:
            """The client has the batch: delete it, then the next one (if still wanted)."""
            try:
                self.offline.remove_through(user, last)
            except StorageError as exc:  # they are delivered again at the next login
                log.warning("offline messages of %s delivered but not removed: %s", user, exc)
                self._offline_to.pop(user, None)
                return
            if self._offline_to.get(user) is not res:
                return
            if self.resources.of(res.session) is res and res.available and res.priority >= 0:
                self._offline_batch(res)
            else:
                self._offline_handover(res)

        if msgs:
            res.session.send_stored(msgs, done)
        else:
            done()

    def _offline_handover(self, res: Resource) -> None:
        """`res` stops receiving offline messages: another available resource takes over."""
        del self._offline_to[res.bare]
        for other in self.resources.available(res.bare):
            if other is not res and other.priority >= 0:
                self._offline_batch(other)
                return

    # -- iq ------------------------------------------------------------------------------
    def _server_iq(self, stanza: Element, domain: str, sender: JID | None) -> None:
        """An iq to a hosted domain, or without 'to' from a client of it."""
        if stanza.get("type") not in ("get", "set"):
            return  # results (roster push acks) and errors: nothing waits for them
        try:
            payload = iq_payload(stanza)
            if payload.tag == QUERY:  # the roster, for the domain's own users only
                if sender is None or sender.local is None or sender.domain != domain:
                    raise StanzaError("service-unavailable")
                self._roster(stanza, payload, sender)
                return
            reply = server_iq(stanza, payload, self.software)
        except StanzaError as exc:
            self.router.bounce(stanza, exc)
            return
        self.router.route(reply)

    def _account_iq(self, stanza: Element, to: JID, user: str, sender: JID | None) -> None:
        """An iq to a user (RFC 6121 §8.5.2.1.3, §8.5.3)."""
        kind = stanza.get("type")
        if to.resource is not None:
            res = self.resources.get(to)
            if res is not None:
                res.session.send(stanza)
            elif kind in ("get", "set"):
                self.router.bounce(stanza, StanzaError("service-unavailable"))
            return
        if kind not in ("get", "set"):
            return
        try:
            payload = iq_payload(stanza)
            requester = None if sender is None else str(sender.bare)
            if payload.tag == QUERY:
                if requester != user:
                    raise StanzaError("forbidden", "not your roster")
                assert sender is not None
                self._roster(stanza, payload, sender)
                return
            # The account is visible to itself and to whom it shares its presence with.
            if requester is None or (
                requester != user and not has_from(self.roster.item(user, requester))
            ):
                raise StanzaError("service-unavailable")
            reply = account_info(stanza, payload)
        except StanzaError as exc:
            self.router.bounce(stanza, exc)
            return
        self.router.route(reply)

    def _roster(self, stanza: Element, query: Element, sender: JID) -> None:
        self.roster.handle(
            stanza,
            query,
            str(sender.bare),
            self.resources.get(sender),
            self.presence.contact_removed,
        )
