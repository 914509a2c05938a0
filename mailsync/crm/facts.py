"""Step 3 of a CRM run: message facts (crm_messages, crm_participants, crm_refs) from bodies.

Owns: reading each body not seen before (headers only, see headers.HEAD_LIMIT; machine reports,
previews and longer headers whole) and storing its facts, participants and references; the facts
cache of a run; forgotten addresses (salted hashes) and their replacement by a placeholder, both in
facts being read and in facts already stored (erasure); and dropping the facts of messages that
have no copy left.
Must not: decide which placements are new (sources.py) or derive a record (extract.py, derive.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mailsync.crm.headers import HEAD_LIMIT, MessageFacts, parse_message
from mailsync.crm.models import CrmMessage, CrmParticipant, CrmRef, CrmSource
from mailsync.crm.parsing import Parser
from mailsync.crm.queries import chunks, delete_messages, ids_of, insert_ignore, participants_of, referencing
from mailsync.crm.records import forget_hash
from mailsync.store import repositories as repo

__all__ = ["Dead", "FORGOTTEN_DOMAIN", "FactsCache", "Forgotten", "drop_dead", "participants", "read_new_facts",
           "rewrite_address", "scrub"]

FORGOTTEN_DOMAIN = "forgotten.invalid"


class Forgotten:
    """The salted hashes of erased addresses: whether an address is one, and its placeholder."""

    def __init__(self, salt: bytes, hashes: set[str]) -> None:
        self.salt = salt
        self.hashes = hashes
        self._memo: dict[str, bool] = {}

    def add(self, address: str) -> str:
        """Remember an erased address; returns its salted hash."""
        h = forget_hash(self.salt, address)
        self.hashes.add(h)
        self._memo.clear()
        return h

    def __contains__(self, address: str) -> bool:
        if address.endswith("@" + FORGOTTEN_DOMAIN):
            return True
        if not self.hashes:
            return False
        got = self._memo.get(address)
        if got is None:
            got = self._memo[address] = forget_hash(self.salt, address) in self.hashes
        return got

    def placeholder(self, address: str) -> str:
        return f"x{forget_hash(self.salt, address)[:24]}@{FORGOTTEN_DOMAIN}"

    def scrub(self, facts: MessageFacts) -> MessageFacts:
        """``facts`` with every forgotten participant replaced by its placeholder."""
        if not self.hashes:
            return facts
        for a in participants(facts):
            if a in self and not a.endswith("@" + FORGOTTEN_DOMAIN):
                facts = scrub(facts, a, self.placeholder(a))
        return facts


class FactsCache:
    """The facts parsed (or loaded) during one run, by message key."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.facts: dict[str, MessageFacts] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.facts

    def add(self, facts: MessageFacts) -> None:
        self.facts[facts.key] = facts

    def load(self, keys: Iterable[str]) -> dict[str, MessageFacts]:
        want = [k for k in keys if k not in self.facts]
        for chunk in chunks(sorted(want)):
            for key, text in self.session.execute(select(CrmMessage.key, CrmMessage.facts)
                                                  .where(CrmMessage.key.in_(chunk))):
                self.facts[key] = MessageFacts.from_json(json.loads(text))
        return {k: self.facts[k] for k in keys if k in self.facts}


def _facts_json(facts: MessageFacts) -> str:
    return json.dumps(facts.to_json(), ensure_ascii=False, separators=(",", ":"))


@dataclass
class _NewFacts:
    """What read_new_facts collects before its three bulk inserts."""

    keys: dict[str, str] = field(default_factory=dict)  # sha -> message key
    messages: list[dict] = field(default_factory=list)
    participants: list[dict] = field(default_factory=list)
    refs: list[dict] = field(default_factory=list)


def read_new_facts(session: Session, shas: list[str], *, preview: bool, forgotten: Forgotten, cache: FactsCache,
                   old_threads: dict[str, str | None]) -> tuple[dict[str, str], int]:
    """(sha -> message key, messages parsed); new messages' facts, participants and refs are inserted,
    with the thread id a rebuild had before (``old_threads``). Headers are read from the first
    HEAD_LIMIT bytes; reports, previews and longer headers from the whole body. Large batches are
    parsed on every core (parsing is pure; the store is only touched here)."""
    new = _NewFacts()
    if not shas:
        return new.keys, 0

    def handle(heads: list[tuple[str, bytes, int]], parsed: dict[str, MessageFacts]) -> None:
        batch: list[tuple[str, MessageFacts]] = []
        for sha, head, size in heads:
            facts = parsed[sha]  # from the headers alone
            cut = size > len(head)
            if facts.is_report or preview or (cut and b"\n\n" not in head and b"\r\n\r\n" not in head):
                # (a message larger than max_size is held by its header section alone: that is its whole)
                whole = repo.read_body(session, sha, heads=True) if cut else head
                facts = parse_message(whole, preview=preview)
            batch.append((sha, forgotten.scrub(facts)))
        _collect(session, batch, new, cache, old_threads)

    with Parser(len(shas)) as parser:
        waiting = None  # the previous block, parsing in the workers while this one is read
        for block in chunks(shas, 2000):
            heads = repo.read_heads(session, list(block), HEAD_LIMIT)
            started = (heads, parser.submit([(sha, head) for sha, head, _ in heads]))
            if waiting is not None:
                handle(waiting[0], waiting[1]())
            waiting = started
        if waiting is not None:
            handle(waiting[0], waiting[1]())
    insert_ignore(session, CrmMessage.__table__, new.messages, ["key"])
    insert_ignore(session, CrmParticipant.__table__, new.participants, ["message_key", "address"])
    insert_ignore(session, CrmRef.__table__, new.refs, ["message_key", "ref_id"])
    return new.keys, len(new.messages)


def _collect(session: Session, batch: list[tuple[str, MessageFacts]], new: _NewFacts, cache: FactsCache,
             old_threads: dict[str, str | None]) -> None:
    existing: set[str] = set()
    for kc in chunks([f.key for _, f in batch if f.key not in cache]):
        existing.update(session.scalars(select(CrmMessage.key).where(CrmMessage.key.in_(kc))).all())
    for sha, facts in batch:
        new.keys[sha] = facts.key
        if facts.key in existing or facts.key in cache:
            continue
        cache.add(facts)
        new.messages.append({"key": facts.key, "message_id": facts.message_id, "date": facts.date,
                             "from_address": facts.sender_of_copy,
                             "list_mailto": bool(facts.list_unsubscribe or facts.list_subscribe or facts.lists),
                             "thread_id": old_threads.get(facts.key), "facts": _facts_json(facts)})
        new.participants.extend({"message_key": facts.key, "address": a} for a in participants(facts))
        new.refs.extend({"message_key": facts.key, "ref_id": r[:998]} for r in facts.parents)


@dataclass
class Dead:
    """Messages with no copy left, dropped: who they involved and the ids they threaded through."""

    keys: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)


def drop_dead(session: Session, changed: set[str]) -> Dead:
    """Of the changed messages, those with no copy left: remember who they involved (and who the
    messages that reference them involve) and what they thread through, then drop their facts."""
    dead = Dead()
    if changed:
        alive: set[str] = set()
        for chunk in chunks(sorted(changed)):
            alive.update(session.scalars(select(CrmSource.message_key).distinct()
                                         .where(CrmSource.message_key.in_(chunk))).all())
        dead.keys = changed - alive
    if dead.keys:
        dead.addresses = participants_of(session, dead.keys) | participants_of(session, referencing(session, dead.keys))
        ordered = sorted(dead.keys)
        dead.ids = ids_of(session, ordered)
        delete_messages(session, ordered)
    session.flush()
    return dead


def rewrite_address(session: Session, cache: FactsCache, address: str, placeholder: str) -> None:
    """The stored facts that name ``address`` rewritten with ``placeholder`` in its place."""
    keys = session.scalars(select(CrmParticipant.message_key).where(CrmParticipant.address == address)).all()
    for key, f in cache.load(keys).items():
        f2 = scrub(f, address, placeholder)
        session.execute(update(CrmMessage).where(CrmMessage.key == key).values(
            facts=_facts_json(f2), from_address=f2.sender_of_copy))
    if keys:
        session.execute(delete(CrmParticipant).where(CrmParticipant.address == address))
        insert_ignore(session, CrmParticipant.__table__, [{"message_key": k, "address": placeholder} for k in keys],
                      ["message_key", "address"])


def participants(facts: MessageFacts) -> list[str]:
    out: list[str] = []
    if facts.from_:
        out.append(facts.from_.address)
    out.extend(m.address for m in facts.recipients)
    if facts.report:
        out.extend(r.address for r in facts.report.recipients)
    return list(dict.fromkeys(out))


def scrub(facts: MessageFacts, address: str, placeholder: str) -> MessageFacts:
    """Facts with ``address`` gone: mailboxes replaced (names blanked), and the address in any written
    form, and the names it came with, cut out of the subject and preview."""
    forms = {address}
    for mb in ([facts.from_] if facts.from_ else []) + list(facts.recipients):
        if mb.address == address:
            forms.add(mb.email)
            if len(mb.name) >= 3:
                forms.add(mb.name)
    f = facts.replace_address(address, placeholder)
    pattern = re.compile("|".join(re.escape(x) for x in sorted(forms, key=len, reverse=True)), re.IGNORECASE)
    subject = pattern.sub(placeholder, f.subject)
    preview = pattern.sub(placeholder, f.preview) if f.preview else f.preview
    if subject == f.subject and preview == f.preview:
        return f
    doc = f.to_json()
    doc["s"] = subject
    if preview is not None:
        doc["p"] = preview
    return MessageFacts.from_json(doc)
