"""THE extractor: messages (header facts, flags, folder roles) in; contacts and activities out.

Owns every derivation rule, in this order for each message:
  skipped    a draft (every copy \\Draft or in a drafts folder) or a message only in junk folders;
  bounce     a received bounce (RFC 3464 report, X-Failed-Recipients, or a text bounce flufl.bounce's
             detectors read; see bounces.py): one ``bounce`` per failed/delayed recipient (hard when
             the server gave up, soft when it still tries), linked to the returned message; a
             machine report of any kind (bounce, feedback, DMARC) never creates a contact;
  direction  sent (From is ours, or it sits in \\Sent) or received; internal when every participant is
             ours or on our work domains -- skipped unless ``log_internal``;
  loop guard a received message is skipped when its sender sent more than ``loop_messages`` (20)
             messages within ``loop_window`` (2 hours) up to and including it;
  auto-reply RFC 3834 and kin: ``auto_reply`` on the sender; never creates a contact;
  junk       bulk mail (List-Id, List-Unsubscribe, Precedence bulk/list/junk, Auto-Submitted not
             "no") and messages with more than ``max_recipients`` (25) recipients: nothing -- except
             a reply to our message that came through a mailing list, which is a ``reply``;
  sent       ``email_sent`` for each recipient;
  received   to one of our List-Unsubscribe addresses: ``unsubscribe`` (consent opted out); to a
             List-Subscribe address: consent subscribed; a reply (In-Reply-To/References names a
             message we sent): ``reply`` with the latency from our message, plus ``unsubscribe``
             when its subject is an opt-out ("unsubscribe", "remove me" ...); otherwise
             ``email_received``; and ``answered`` when we set \\Answered on it.
An address never becomes a contact when it is ours, on our work domains (unless ``log_internal``), a
mailing list (learned from the List-Post/List-Id of received copies), a role, no-reply or mail-system
address, on an email-to-SMS gateway, blocklisted, or forgotten. Otherwise, by the ``create_contacts`` policy of
the accounts holding the message (the most permissive wins): "sent" -- someone we wrote to or who
replied to us; "sent_and_received" -- also anyone who wrote to us; "none" -- no one. Activities are
kept only for contacts, one per (message, contact, kind) whatever the folders or accounts holding
the message. Visibility comes from the accounts' ``share`` (the most restrictive wins): "metadata"
(no subject, no body), "subject", "everything" (subject and a short text preview).
Display name: the latest non-empty name the contact used in From, else the latest we used for them.

Pure: the caller passes every message that involves the addresses it asks about (``scope``), plus
the index of our sent Message-IDs; the same inputs always give the same records.
Must not: touch the store, the network or the clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mailsync.crm.addresses import check_syntax, is_typo_domain, split_name, typo_suggestion
from mailsync.crm.bounces import is_system_address
from mailsync.crm.domains import is_carrier_gateway, is_free_mail, registrable_domain
from mailsync.crm.engagement import contact_engagement
from mailsync.crm.headers import MessageFacts
from mailsync.crm.identity import Identity
from mailsync.crm.junk import Blocklist, is_role_address
from mailsync.crm.records import activity_id, contact_id, iso
from mailsync.crm.unsubscribe import is_opt_in, is_opt_out

__all__ = ["Context", "ExtractSettings", "MessageInput", "Records", "extract", "sent_index", "POLICIES",
           "SHARES"]

POLICIES = ("none", "sent", "sent_and_received")  # least to most permissive
SHARES = ("metadata", "subject", "everything")  # most to least restrictive


@dataclass(frozen=True, slots=True)
class MessageInput:
    """One message as every folder and account holding it shows it."""

    facts: MessageFacts
    roles: frozenset[str]  # folder roles of its copies (identity.folder_role)
    draft: bool = False  # every copy has \\Draft or sits in a drafts folder
    answered: bool = False  # \\Answered on some copy
    internaldate: int = 0  # earliest INTERNALDATE, for messages without a usable Date
    share: str = "metadata"
    policy: str = "sent"
    thread_id: str = ""

    @property
    def timestamp(self) -> int:
        return self.facts.date if self.facts.date is not None else self.internaldate


@dataclass(frozen=True)
class ExtractSettings:
    max_recipients: int = 25
    blocklist: Blocklist = field(default_factory=Blocklist)
    role_local_parts: frozenset[str] = frozenset()
    log_internal: bool = False
    loop_messages: int = 20
    loop_window: int = 2 * 3600
    half_life_days: float = 90.0


@dataclass(frozen=True)
class Context:
    identity: Identity
    settings: ExtractSettings
    sent_ids: Mapping[str, int]  # Message-ID of a message we sent -> its (earliest) timestamp
    unsubscribe_addresses: frozenset[str] = frozenset()
    subscribe_addresses: frozenset[str] = frozenset()
    lists: frozenset[str] = frozenset()  # mailing list addresses (learned_lists): never contacts
    salt: bytes = b""
    forgotten: Callable[[str], bool] = lambda address: False


@dataclass
class Records:
    contacts: dict[str, dict] = field(default_factory=dict)  # address -> record
    activities: dict[str, dict] = field(default_factory=dict)  # id -> record
    message_keys: dict[str, str] = field(default_factory=dict)  # activity id -> message key


def is_sent(m: MessageInput, identity: Identity) -> bool:
    f = m.facts
    return "sent" in m.roles or (f.from_ is not None and identity.is_own(f.from_.address))


_JUNK_ONLY = frozenset({"junk"})


def skipped(m: MessageInput) -> bool:
    return m.draft or (bool(m.roles) and m.roles <= _JUNK_ONLY)


def sent_index(messages: Iterable[MessageInput], identity: Identity) -> dict[str, int]:
    """Message-ID -> earliest timestamp, of every message we sent."""
    out: dict[str, int] = {}
    for m in messages:
        mid = m.facts.message_id
        if mid and not skipped(m) and is_sent(m, identity):
            t = m.timestamp
            if mid not in out or t < out[mid]:
                out[mid] = t
    return out


def replied_to(f: MessageFacts, sent_ids: Mapping[str, int]) -> str | None:
    """The Message-ID of our message that ``f`` answers: In-Reply-To when it is ours, else the last
    of ours in References."""
    if f.in_reply_to and f.in_reply_to in sent_ids:
        return f.in_reply_to
    for ref in reversed(f.references):
        if ref in sent_ids:
            return ref
    return None


@dataclass
class _Person:
    """What the messages say about one address, before the policy decides it is a contact."""

    creates: bool = False
    cands: list = field(default_factory=list)  # (message, kind, extra)
    from_names: list = field(default_factory=list)  # (ts, name)
    rcpt_names: list = field(default_factory=list)
    emails: list = field(default_factory=list)  # (ts, email)
    consent: list = field(default_factory=list)  # (ts, state, message_id)
    suppressed: int = 0


class _Run:
    def __init__(self, ctx: Context, scope: set[str] | None) -> None:
        self.ctx = ctx
        self.s = ctx.settings
        self.scope = scope
        self.people: dict[str, _Person] = {}
        self._ok: dict[str, bool] = {}
        self._cid: dict[str, str] = {}

    def contact_id(self, address: str) -> str:
        cid = self._cid.get(address)
        if cid is None:
            cid = self._cid[address] = contact_id(self.ctx.salt, address)
        return cid

    def contactable(self, address: str) -> bool:
        ok = self._ok.get(address)
        if ok is None:
            idn, s = self.ctx.identity, self.s
            ok = not (idn.is_own(address)
                      or (not s.log_internal and idn.on_work_domain(address))
                      or address in self.ctx.lists
                      or is_role_address(address, s.role_local_parts)
                      or is_system_address(address)
                      or is_carrier_gateway(address.rpartition("@")[2])
                      or s.blocklist.blocks(address)
                      or self.ctx.forgotten(address))
            self._ok[address] = ok
        return ok

    def person(self, address: str) -> _Person | None:
        if self.scope is not None and address not in self.scope:
            return None
        if not self.contactable(address):
            return None
        p = self.people.get(address)
        if p is None:
            p = self.people[address] = _Person()
        return p

    # -- pass 1: the loop guard -----------------------------------------------------------------

    def loop_guard(self, messages: Sequence[MessageInput]) -> set[str]:
        by_sender: dict[str, list[tuple[int, str]]] = {}
        idn = self.ctx.identity
        for m in messages:
            f = m.facts
            if skipped(m) or f.from_ is None or f.is_report or is_sent(m, idn):
                continue
            if self.scope is not None and f.from_.address not in self.scope:
                continue
            by_sender.setdefault(f.from_.address, []).append((m.timestamp, f.key))
        guarded: set[str] = set()
        limit, window = self.s.loop_messages, self.s.loop_window
        for items in by_sender.values():
            if len(items) <= limit:
                continue
            items.sort()
            recent: deque[int] = deque()
            for ts, key in items:
                recent.append(ts)
                while recent[0] <= ts - window:
                    recent.popleft()
                if len(recent) > limit:
                    guarded.add(key)
        return guarded

    # -- pass 2: each message -------------------------------------------------------------------

    def message(self, m: MessageInput, guarded: set[str]) -> None:
        f = m.facts
        if skipped(m):
            return
        ts = m.timestamp
        idn = self.ctx.identity
        sent = is_sent(m, idn)
        if f.report is not None and not sent:
            for r in f.report.recipients:
                if r.bounce is None:
                    continue
                p = self.person(r.address)
                if p is not None:
                    p.cands.append((m, "bounce", {
                        "bounce_type": r.bounce, "bounce_status": r.status or None,
                        "bounce_diagnostic": r.diagnostic or None,
                        "original_message_id": f.report.original_message_id}))
            return
        if f.is_report:
            return  # a machine report (a bounce naming no one, feedback, DMARC ...), or one saved in Sent
        sender = f.from_
        if not self.s.log_internal:
            people = ([sender] if sender else []) + list(f.recipients)
            if people and all(idn.is_internal_address(x.address) for x in people):
                return
        if sent:
            if f.bulk or len(f.recipients) > self.s.max_recipients:
                return
            for r in f.recipients:
                p = self.person(r.address)
                if p is None:
                    continue
                p.cands.append((m, "email_sent", {}))
                if m.policy != "none":
                    p.creates = True
                p.rcpt_names.append((ts, r.name))
                p.emails.append((ts, r.email))
            return
        if sender is None:
            return
        p = self.person(sender.address)
        if p is None:
            return
        if f.key in guarded:
            p.suppressed += 1
            return
        if f.auto_reply:
            p.cands.append((m, "auto_reply", {"in_reply_to": replied_to(f, self.ctx.sent_ids)}))
            p.from_names.append((ts, sender.name))
            p.emails.append((ts, sender.email))
            return
        if f.bulk or len(f.recipients) > self.s.max_recipients:
            # list mail: only a reply to our message counts (it came through the list it was sent to)
            ours = replied_to(f, self.ctx.sent_ids) if f.lists else None
            if ours is None:
                return
            self._reply(p, m, f, ours, ts)
            p.from_names.append((ts, sender.name))
            p.emails.append((ts, sender.email))
            return
        rcpts = {r.address for r in f.recipients}
        if rcpts & self.ctx.unsubscribe_addresses:
            p.cands.append((m, "unsubscribe", {"unsubscribe_source": "list-unsubscribe"}))
            p.consent.append((ts, "opted_out", f.message_id))
            p.from_names.append((ts, sender.name))
            p.emails.append((ts, sender.email))
            return
        if rcpts & self.ctx.subscribe_addresses:
            p.consent.append((ts, "subscribed", f.message_id))
            return
        ours = replied_to(f, self.ctx.sent_ids)
        if ours is not None:
            self._reply(p, m, f, ours, ts)
        else:
            p.cands.append((m, "email_received", {}))
            if m.policy == "sent_and_received":
                p.creates = True
        if m.answered:
            p.cands.append((m, "answered", {}))
        p.from_names.append((ts, sender.name))
        p.emails.append((ts, sender.email))

    def _reply(self, p: _Person, m: MessageInput, f: MessageFacts, ours: str, ts: int) -> None:
        latency = max(0, ts - self.ctx.sent_ids[ours])
        p.cands.append((m, "reply", {"in_reply_to": ours, "latency_seconds": latency}))
        if m.policy != "none":
            p.creates = True
        if is_opt_out(f.subject):
            p.cands.append((m, "unsubscribe", {"unsubscribe_source": "opt-out-reply"}))
            p.consent.append((ts, "opted_out", f.message_id))
        elif is_opt_in(f.subject):
            p.consent.append((ts, "subscribed", f.message_id))

    # -- records --------------------------------------------------------------------------------

    def activity(self, address: str, m: MessageInput, kind: str, extra: dict) -> dict:
        f = m.facts
        share = m.share
        rec = {
            "id": activity_id(self.ctx.salt, f.key, address, kind),
            "kind": kind,
            "contact_id": self.contact_id(address),
            "contact_address": address,
            "message_id": f.message_id,
            "thread_id": m.thread_id,
            "timestamp": iso(m.timestamp),
            "direction": "out" if kind in ("email_sent", "answered") else "in",
            "visibility": share,
            "subject": f.subject if share in ("subject", "everything") else None,
            "body_preview": f.preview if share == "everything" else None,
            "in_reply_to": None, "latency_seconds": None, "bounce_type": None, "bounce_status": None,
            "bounce_diagnostic": None, "original_message_id": None, "unsubscribe_source": None,
        }
        rec.update(extra)
        return rec

    def contact(self, address: str, p: _Person, acts: list[dict]) -> dict:
        named = [x for x in p.from_names if x[1]] or [x for x in p.rcpt_names if x[1]]
        display = max(named)[1] if named else ""
        email = max(p.emails)[1] if p.emails else address
        first, last = split_name(display)
        domain = registrable_domain(address.rpartition("@")[2])
        problem = check_syntax(email)
        rec = {
            "id": self.contact_id(address),
            "address": address,
            "email": email,
            "display_name": display,
            "first_name": first,
            "last_name": last,
            # free mail never makes a company, nor does a typo of it (gmal.com)
            "company_domain": None if is_free_mail(domain) or is_typo_domain(domain) else domain,
            "address_valid": problem is None,
            "address_problem": problem,
            "typo_suggestion": typo_suggestion(email),
            "loop_guarded": p.suppressed,
        }
        rec.update(contact_engagement(acts, p.consent, self.s.half_life_days))
        return rec


def extract(messages: Sequence[MessageInput], ctx: Context, *, scope: Iterable[str] | None = None) -> Records:
    """Contacts and activities of ``messages``; with ``scope``, only those of these addresses (the
    caller must then pass every message that involves them)."""
    run = _Run(ctx, set(scope) if scope is not None else None)
    guarded = run.loop_guard(messages)
    for m in messages:
        run.message(m, guarded)
    out = Records()
    for address in sorted(run.people):
        p = run.people[address]
        if not p.creates:
            continue
        acts: dict[str, dict] = {}
        for m, kind, extra in p.cands:
            rec = run.activity(address, m, kind, extra)
            if rec["id"] not in acts:
                acts[rec["id"]] = rec
                out.message_keys[rec["id"]] = m.facts.key
        out.activities.update(acts)
        out.contacts[address] = run.contact(address, p, list(acts.values()))
    return out


def most_restrictive_share(shares: Iterable[str]) -> str:
    got = [s for s in shares if s in SHARES]
    return min(got, key=SHARES.index) if got else "metadata"


def most_permissive_policy(policies: Iterable[str]) -> str:
    got = [p for p in policies if p in POLICIES]
    return max(got, key=POLICIES.index) if got else "sent"


# ------------------------------------------------------------------------------------ assembling


@dataclass(frozen=True, slots=True)
class Copy:
    """One placement of a message: where it sits and how the account holding it is configured."""

    role: str
    draft: bool = False  # \\Draft
    answered: bool = False  # \\Answered
    internaldate: int = 0
    share: str = "metadata"
    policy: str = "sent"


def combine(facts: MessageFacts, copies: Sequence[Copy], thread_id: str = "") -> MessageInput:
    """A message as all its copies show it together."""
    return MessageInput(
        facts=facts,
        roles=frozenset(c.role for c in copies),
        draft=bool(copies) and all(c.draft or c.role == "drafts" for c in copies),
        answered=any(c.answered for c in copies),
        internaldate=min((c.internaldate for c in copies), default=0),
        share=most_restrictive_share(c.share for c in copies),
        policy=most_permissive_policy(c.policy for c in copies),
        thread_id=thread_id,
    )


def thread_ids(items: Iterable[tuple[MessageFacts, int]]) -> dict[str, str]:
    """key -> thread id, for (facts, timestamp) pairs; JWZ runs in (timestamp, key) order."""
    from mailsync.crm.jwz import thread, thread_id_of

    ordered = sorted(items, key=lambda x: (x[1], x[0].key))
    roots = thread((f.key, f.message_id, f.parents) for f, _ in ordered)
    return {k: thread_id_of(r) for k, r in roots.items()}


def sent_from(messages: Iterable[MessageInput]) -> dict[str, int]:
    """Who sent the messages in a \\Sent folder (MessageFacts.sender_of_copy) -> how many: the
    evidence identity.Identity weighs."""
    out: dict[str, int] = {}
    for m in messages:
        if "sent" in m.roles and not m.draft:
            a = m.facts.sender_of_copy
            if a is not None:
                out[a] = out.get(a, 0) + 1
    return out


def learned_lists(messages: Iterable[MessageInput], identity: Identity) -> frozenset[str]:
    """The mailing lists that delivered the mail we received (List-Post, List-Id): our Sent copy of
    a list post carries neither, so this is how a list address is told from a person."""
    out: set[str] = set()
    for m in messages:
        if m.facts.lists and not skipped(m) and not is_sent(m, identity):
            out.update(m.facts.lists)
    return frozenset(out)


def list_addresses(messages: Iterable[MessageInput], identity: Identity) -> tuple[frozenset[str], frozenset[str]]:
    """(List-Unsubscribe, List-Subscribe) mailto addresses of the mail we sent: "our" list addresses."""
    unsub: set[str] = set()
    sub: set[str] = set()
    for m in messages:
        if not skipped(m) and is_sent(m, identity):
            unsub.update(m.facts.list_unsubscribe)
            sub.update(m.facts.list_subscribe)
    return frozenset(unsub), frozenset(sub)


def companies(contacts: Iterable[dict], activities: Iterable[dict], half_life_days: float,
              domains: Iterable[str] | None = None) -> dict[str, dict]:
    """domain -> company record, from contact records and their reply activities."""
    from mailsync.crm.domains import company_name
    from mailsync.crm.engagement import company_engagement

    wanted = set(domains) if domains is not None else None
    by_domain: dict[str, list[dict]] = {}
    domain_of_contact: dict[str, str] = {}
    for c in contacts:
        d = c.get("company_domain")
        if d and (wanted is None or d in wanted):
            by_domain.setdefault(d, []).append(c)
            domain_of_contact[c["address"]] = d
    latencies: dict[str, list[float]] = {}
    for a in activities:
        d = domain_of_contact.get(a["contact_address"])
        if d and a["kind"] == "reply" and a["latency_seconds"] is not None:
            latencies.setdefault(d, []).append(a["latency_seconds"])
    return {d: company_engagement(d, company_name(d), cs, latencies.get(d, ()), half_life_days)
            for d, cs in sorted(by_domain.items())}


def extract_all(inputs: Sequence[MessageInput], settings: ExtractSettings, *, identities: Iterable[str] = (),
                internal_domains: Iterable[str] = (), unsubscribe_addresses: Iterable[str] = (),
                salt: bytes = b"", forgotten: Callable[[str], bool] = lambda a: False) -> tuple[Records, dict]:
    """The whole derivation for one set of messages (the ``crm rebuild`` of a pure caller):
    records and companies."""
    identity = Identity.build(identities, sent_from(inputs), internal_domains)
    unsub, sub = list_addresses(inputs, identity)
    ctx = Context(identity=identity, settings=settings, sent_ids=sent_index(inputs, identity),
                  unsubscribe_addresses=unsub | frozenset(unsubscribe_addresses), subscribe_addresses=sub,
                  lists=learned_lists(inputs, identity), salt=salt, forgotten=forgotten)
    records = extract(inputs, ctx)
    return records, companies(records.contacts.values(), records.activities.values(), settings.half_life_days)
