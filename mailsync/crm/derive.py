"""Steps 4, 6 and 7 of a CRM run: what every derivation depends on, the dirty addresses, and the
records derived for them.

Owns: our identity, list addresses and learned mailing lists (and their fingerprint, which asks for
a full derivation when it changes); the addresses a run must derive again (participants of changed
messages, of messages whose thread changed, of messages that reference a changed one, and of
blocklist entries added or removed); the extractor's inputs (facts + copies + thread ids) and the
call to extract.extract().
Must not: decide a derivation rule (extract.py does), store records (record_store.py) or queue
them (enqueue.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mailsync.crm import extract
from mailsync.crm.addresses import canonical
from mailsync.crm.facts import FactsCache
from mailsync.crm.identity import Identity
from mailsync.crm.models import CrmMessage, CrmParticipant, CrmSource
from mailsync.crm.queries import State, chunks, message_keys, participants_of, referencing, sent_from
from mailsync.crm.records import forget_hash
from mailsync.crm.settings import CrmSettings

__all__ = ["Globals", "Inputs", "blocklist_dirty", "changed_addresses", "derive", "globals_of"]


class Inputs:
    """The extractor's inputs of a run: facts (cached), copies (with their account's settings) and
    thread ids (``thread_of``, filled by threads.recompute_threads and read here)."""

    def __init__(self, session: Session, settings: CrmSettings, accounts: Mapping[int, str], cache: FactsCache,
                 thread_of: dict[str, str]) -> None:
        self.session = session
        self.settings = settings
        self.accounts = accounts
        self.cache = cache
        self.thread_of = thread_of

    def copies(self, keys: Iterable[str] | None) -> dict[str, list[extract.Copy]]:
        """key -> its copies (``keys`` None: every message)."""
        out: dict[str, list[extract.Copy]] = defaultdict(list)
        acc = self.settings.accounts
        default = self.settings.account("")
        cols = select(CrmSource.message_key, CrmSource.account_id, CrmSource.role, CrmSource.draft,
                      CrmSource.answered, CrmSource.internaldate)
        stmts = [cols] if keys is None else [cols.where(CrmSource.message_key.in_(c)) for c in chunks(sorted(set(keys)))]
        memo: dict[tuple, extract.Copy] = {}
        for stmt in stmts:
            for key, account_id, role, draft, answered, idate in self.session.execute(stmt):
                sig = (account_id, role, draft, answered, idate)
                copy = memo.get(sig)
                if copy is None:
                    a = acc.get(self.accounts.get(account_id, ""), default)
                    copy = memo[sig] = extract.Copy(role, bool(draft), bool(answered), int(idate), a.share,
                                                    a.create_contacts)
                out[key].append(copy)
        return out

    def of(self, keys: Iterable[str], *, every: bool = False) -> list[extract.MessageInput]:
        """The inputs of these messages (``every``: read the copies of all messages in one pass)."""
        keys = sorted(set(keys))
        facts = self.cache.load(keys)
        copies = self.copies(None if every else keys)
        missing = [k for k in keys if k not in self.thread_of]
        for chunk in chunks(missing):
            self.thread_of.update(self.session.execute(select(CrmMessage.key, CrmMessage.thread_id)
                                                       .where(CrmMessage.key.in_(chunk))).all())
        return [extract.combine(facts[k], copies[k], self.thread_of.get(k) or "") for k in keys
                if k in facts and copies.get(k)]


@dataclass(frozen=True)
class Globals:
    """What every derivation depends on beyond the messages themselves."""

    identity: Identity
    unsubscribe: frozenset[str]  # our List-Unsubscribe addresses
    subscribe: frozenset[str]  # our List-Subscribe addresses
    lists: frozenset[str]  # mailing lists learned from the List-Post/List-Id of received copies

    def fingerprint(self, settings: CrmSettings) -> dict:
        """When this changes, everything is derived again."""
        fp = {"settings": settings.fingerprint(), "own": sorted(self.identity.own),
              "domains": sorted(self.identity.work_domains), "unsub": sorted(self.unsubscribe),
              "sub": sorted(self.subscribe)}
        if self.lists:
            fp["lists"] = sorted(self.lists)
        return fp


def globals_of(session: Session, settings: CrmSettings, inputs: Inputs) -> Globals:
    """Our identity, our List-Unsubscribe and List-Subscribe addresses, and the mailing lists
    learned from the List-Post/List-Id of received copies."""
    identity = Identity.build(settings.configured_identities, sent_from(session), settings.internal_domains)
    unsub, sub, lists = set(), set(), set()
    keys = session.scalars(select(CrmMessage.key).where(CrmMessage.list_mailto.is_(True))).all()
    if keys:
        facts = inputs.cache.load(keys)
        copies = inputs.copies(keys)
        listed = [extract.combine(facts[k], copies.get(k, [])) for k in keys if k in facts and copies.get(k)]
        u, s_ = extract.list_addresses(listed, identity)
        unsub |= u
        sub |= s_
        lists |= extract.learned_lists(listed, identity)
    unsub |= {a for a in (canonical(x) for x in settings.unsubscribe_addresses) if a}
    return Globals(identity, frozenset(unsub), frozenset(sub), frozenset(lists))


def blocklist_dirty(session: Session, state: State, blocklist: Iterable[str], salt: bytes) -> set[str]:
    """Addresses matched by blocklist entries added or removed since the last run (the entries are
    kept in crm_state as domains and salted hashes)."""
    blocklist = list(blocklist)
    domains_now = sorted({e[1:].lower() for e in blocklist if e.startswith("@")})
    addrs_now = {canonical(e) for e in blocklist if not e.startswith("@")} - {None}
    hashed_now = sorted(forget_hash(salt, "block\0" + a) for a in addrs_now)
    before = state.get("blocklist", {"domains": [], "addresses": []})
    state.set("blocklist", {"domains": domains_now, "addresses": hashed_now})
    changed_domains = set(domains_now) ^ set(before["domains"])
    changed_hashes = set(hashed_now) ^ set(before["addresses"])
    out: set[str] = {a for a in addrs_now if forget_hash(salt, "block\0" + a) in changed_hashes}
    if changed_hashes - {forget_hash(salt, "block\0" + a) for a in addrs_now}:  # removed entries
        for a in session.scalars(select(CrmParticipant.address).distinct()).all():
            if forget_hash(salt, "block\0" + a) in changed_hashes:
                out.add(a)
    for d in changed_domains:
        out.update(session.scalars(select(CrmParticipant.address).distinct().where(
            or_(CrmParticipant.address.like(f"%@{d}"), CrmParticipant.address.like(f"%.{d}")))).all())
    return out


def changed_addresses(session: Session, changed: set[str], moved: set[str]) -> set[str]:
    """The participants of changed messages, of messages whose thread id changed (``moved``), and of
    messages that reference a changed one (a reply becomes a reply when our message arrives)."""
    return participants_of(session, changed | moved) | participants_of(session, referencing(session, changed))


def derive(session: Session, dirty: set[str] | None, g: Globals, inputs: Inputs, *, settings: CrmSettings,
           salt: bytes, forgotten: Callable[[str], bool]) -> tuple[extract.Records, int]:
    """(records, messages derived) for the messages involving the ``dirty`` addresses (None: all)."""
    if dirty is None:
        keys = message_keys(session)
    else:
        keys = set()
        for chunk in chunks(sorted(dirty)):
            keys.update(session.scalars(select(CrmParticipant.message_key)
                                        .where(CrmParticipant.address.in_(chunk))).all())
    messages = inputs.of(keys, every=dirty is None)
    if dirty is None:
        sent_ids = extract.sent_index(messages, g.identity)
    else:
        sent_ids = _sent_ids(session, messages, g.identity, inputs)
    ctx = extract.Context(identity=g.identity, settings=settings.extract_settings(), sent_ids=sent_ids,
                          unsubscribe_addresses=g.unsubscribe, subscribe_addresses=g.subscribe, lists=g.lists,
                          salt=salt, forgotten=forgotten)
    return extract.extract(messages, ctx, scope=dirty), len(messages)


def _sent_ids(session: Session, messages: list[extract.MessageInput], identity: Identity,
              inputs: Inputs) -> dict[str, int]:
    """Our sent Message-IDs among the ids the given messages thread under, with their times."""
    wanted = sorted({p for m in messages for p in m.facts.parents})
    if not wanted:
        return {}
    keys: set[str] = set()
    for chunk in chunks(wanted):
        keys.update(session.scalars(select(CrmMessage.key).where(CrmMessage.message_id.in_(chunk))).all())
    return extract.sent_index(inputs.of(keys), identity)
