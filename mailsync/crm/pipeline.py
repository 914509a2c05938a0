"""The CRM pipeline: what the store holds -> derived records and outbox rows, incrementally.

Owns: the order of a CRM run and its transaction, which is ONE per run (facts, sources, marks,
records and outbox rows commit together, so a crash loses nothing and repeats nothing):
  1. take the CRM write lock (an UPDATE of crm_state's lock row) and the state (salt, fingerprints);
  2. per account: placements above the account's mark are new; crm_sources rows whose placement is
     gone, holds another body, moved folder or changed \\Answered/\\Draft are changed (one anti-join);
  3. parse each body not seen before (headers only, see headers.HEAD_LIMIT; machine reports whole) into
     crm_messages, crm_participants, crm_refs; forgotten addresses are replaced as they are read;
  4. our identity (configured + senders of \\Sent copies, see identity.py), our list addresses and the
     mailing lists learned from received copies; when they, the
     settings, or (for a rebuild) everything changed, everything is derived again;
  5. JWZ threads of the id-connected components the changed messages touch;
  6. the dirty addresses: participants of changed messages, of messages whose thread id changed, of
     messages that reference a changed message (a reply becomes a reply when our message arrives),
     and of blocklist entries added or removed;
  7. extract.extract() over every message involving them; records diffed by digest against what is
     stored; each change (upsert or delete) queued for each sink that takes its type, with an
     idempotency key that changes whenever the record does (A -> B -> A are three keys);
  8. the companies of every domain whose contacts changed; state saved; commit.
``rebuild`` forgets the facts and reads every body again: the records it yields must equal what
the incremental runs built (tests check it), so it changes nothing and queues nothing then.
Erasure (:meth:`Pipeline.forget`) deletes a contact and its activities, rewrites the message facts
that name the address, keeps a salted hash, queues deletions and writes the audit log.
Must not: write to the sync engine's tables (except an audit_events row on erasure), speak to sinks
(outbox.py does), or decide a derivation rule (extract.py does).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from mailsync.crm import extract as X
from mailsync.crm.addresses import canonical
from mailsync.crm.headers import HEAD_LIMIT, MessageFacts, header_section, parse_message
from mailsync.crm.identity import Identity, folder_role
from mailsync.crm.models import (CrmActivity, CrmCompany, CrmContact, CrmForgotten, CrmMark, CrmMessage,
                                 CrmOutbox, CrmParticipant, CrmRef, CrmSource, CrmState)
from mailsync.crm.records import canonical_json, digest, forget_hash
from mailsync.crm.settings import CrmSettings
from mailsync.store import repositories as repo
from mailsync.store.db import Store
from mailsync.store.models import Account, Folder, Placement
from mailsync.store.uow import UnitOfWork

log = logging.getLogger("mailsync.crm")

__all__ = ["Pipeline", "RunResult", "ForgetResult", "FORGOTTEN_DOMAIN"]

CHUNK = 500  # ids per IN (...) list
FORGOTTEN_DOMAIN = "forgotten.invalid"
_EPOCH_CACHE: dict[str, int] = {}


@dataclass
class RunResult:
    full: bool = False
    placements: int = 0  # placements read (new or changed)
    parsed: int = 0  # bodies parsed
    messages: int = 0  # messages derived
    addresses: int = 0  # dirty addresses
    changes: Counter = field(default_factory=Counter)  # "contact:upsert" -> n
    queued: int = 0  # outbox rows written
    seconds: float = 0.0
    phases: dict = field(default_factory=dict)  # phase -> seconds

    def summary(self) -> str:
        ch = ", ".join(f"{n} {k}" for k, n in sorted(self.changes.items())) or "no record changes"
        return (f"crm: {'full' if self.full else 'incremental'} run: {self.placements} placements, "
                f"{self.parsed} parsed, {self.messages} messages derived; {ch}; {self.queued} queued "
                f"({self.seconds:.2f}s)")


@dataclass
class ForgetResult:
    hash: str
    contact: bool
    activities: int
    queued: int


def _epoch(iso_text: str) -> int:
    got = _EPOCH_CACHE.get(iso_text)
    if got is None:
        try:
            got = int(datetime.fromisoformat(iso_text).timestamp())
        except ValueError:
            got = 0
        if len(_EPOCH_CACHE) > 100_000:
            _EPOCH_CACHE.clear()
        _EPOCH_CACHE[iso_text] = got
    return got


def _chunks(items: Sequence, n: int = CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _insert_ignore(session: Session, table, rows: list[dict], cols: list[str] | None) -> None:
    """INSERT rows (all with the same keys); with ``cols``, rows whose ``cols`` exist are skipped
    (repositories.insert_rows: many rows per statement, no per-row work in SQLAlchemy)."""
    if rows:
        names = list(rows[0])
        repo.insert_rows(session, table.name, names, [tuple(r[n] for n in names) for r in rows], cols)


_FLAG_ANSWERED = "\\Answered"
_FLAG_DRAFT = "\\Draft"


def _has_flag(flags: str, flag: str) -> bool:
    return flag.lower() in flags.lower().split()


def _tombstone_filter():
    col = getattr(Placement, "tombstone_run", None)  # the two-way sync's tombstones are not copies
    return col.is_(None) if col is not None else None


class _State:
    """crm_state as a dict, written back at the end of the run."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.values = dict(session.execute(select(CrmState.key, CrmState.value)).all())
        self.dirty: set[str] = set()

    def get(self, key: str, default=None):
        raw = self.values.get(key)
        return json.loads(raw) if raw is not None else default

    def set(self, key: str, value) -> None:
        text = json.dumps(value, sort_keys=True)
        if self.values.get(key) != text:
            self.values[key] = text
            self.dirty.add(key)

    def save(self) -> None:
        for key in sorted(self.dirty):
            if self.session.get(CrmState, key) is None:
                self.session.add(CrmState(key=key, value=self.values[key]))
            else:
                self.session.execute(update(CrmState).where(CrmState.key == key).values(value=self.values[key]))
        self.dirty.clear()


def lock(session: Session) -> None:
    """Take the CRM write lock for the transaction (SQLite: the database write lock; PostgreSQL: the
    row lock), so that two runs never interleave."""
    _insert_ignore(session, CrmState.__table__, [{"key": "lock", "value": "0"}], ["key"])
    session.execute(update(CrmState).where(CrmState.key == "lock").values(value=str(time.time())))


def salt_of(session: Session, state: _State) -> bytes:
    salt = state.get("salt")
    if salt is None:
        salt = secrets.token_hex(32)
        state.set("salt", salt)
    return bytes.fromhex(salt)


def _parse_chunk(items: list[tuple[str, bytes]]) -> list[tuple[str, MessageFacts]]:
    return [(sha, parse_message(head)) for sha, head in items]


def _forked_init() -> None:  # pragma: no cover - runs in the parse workers
    import gc

    gc.disable()  # short-lived workers: no collections that would copy the parent's pages


class _Parser:
    """parse_message over many bodies: in this process for small batches, on every core (fork) for
    large ones. Results do not depend on which: parsing is pure."""

    PARALLEL_FROM = 3000

    def __init__(self, total: int) -> None:
        self.pool = None
        cores = os.cpu_count() or 1
        if total >= self.PARALLEL_FROM and cores > 1 and os.name == "posix":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            try:
                import gc

                gc.freeze()  # the parent's objects stay out of the workers' collections (no copy-on-write)
                self.pool = ProcessPoolExecutor(max_workers=min(cores, 8), initializer=_forked_init,
                                                mp_context=multiprocessing.get_context("fork"))
            except (OSError, ValueError):  # pragma: no cover - no fork: parse here
                self.pool = None

    def __enter__(self) -> "_Parser":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            import gc

            self.pool.shutdown(cancel_futures=True)
            gc.unfreeze()

    def submit(self, items: list[tuple[str, bytes]]) -> Callable[[], dict[str, MessageFacts]]:
        """Start parsing; the returned function waits for (or, without workers, does) the work."""
        if self.pool is None or len(items) < 500:
            return lambda: dict(_parse_chunk(items))
        items = [(sha, header_section(head)) for sha, head in items]  # ship headers only
        size = max(100, len(items) // (4 * (os.cpu_count() or 1)))
        futures = [self.pool.submit(_parse_chunk, items[i:i + size]) for i in range(0, len(items), size)]

        def result() -> dict[str, MessageFacts]:
            out: dict[str, MessageFacts] = {}
            for f in futures:
                out.update(f.result())
            return out

        return result

    def parse(self, items: list[tuple[str, bytes]]) -> dict[str, MessageFacts]:
        return self.submit(items)()


class Pipeline:
    def __init__(self, store: Store, settings: CrmSettings, *, clock: Callable[[], float] = time.time,
                 preview: bool | None = None) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        # a text preview is read from bodies only when some account shares everything
        self.preview = (any(a.share == "everything" for a in settings.accounts.values())
                        if preview is None else preview)

    # ------------------------------------------------------------------------------------ run

    def run(self, *, rebuild: bool = False) -> RunResult:
        t0 = time.perf_counter()
        with UnitOfWork(self.store) as uow:
            result = _Run(self, uow.session, rebuild=rebuild).go()
            uow.commit()
        result.seconds = time.perf_counter() - t0
        log.info("%s", result.summary())
        return result

    def identity(self, account: str | None = None) -> Identity:
        """Who we are and why (``Identity.why`` / ``.rejected``): from every account, or from one
        account's configured identities, address username and \\Sent folders. Reads only."""
        with UnitOfWork(self.store) as uow:
            run = _Run(self, uow.session, rebuild=False)
            if account is None:
                return Identity.build(self.settings.configured_identities, run.sent_from(),
                                      self.settings.internal_domains)
            row = uow.session.execute(select(Account.id, Account.username).where(Account.name == account)).first()
            if row is None and account not in self.settings.accounts:
                from mailsync.errors import ConfigError

                raise ConfigError(f"no account named {account!r}",
                                  hint="name one of the [[account]] tables of the config file")
            configured = list(self.settings.account(account).identities)
            if row is not None and "@" in row.username:
                configured.append(row.username)
            return Identity.build(configured, run.sent_from(row.id) if row is not None else {},
                                  self.settings.internal_domains)

    def forget(self, address: str) -> ForgetResult:
        addr = canonical(address)
        if addr is None:
            from mailsync.errors import ConfigError

            raise ConfigError(f"{address!r} is not an email address", hint="e.g. mailsync crm forget jane@example.com")
        with UnitOfWork(self.store) as uow:
            result = _Run(self, uow.session, rebuild=False).forget(addr)
            uow.commit()
        return result


class _Run:
    def __init__(self, pipe: Pipeline, session: Session, *, rebuild: bool) -> None:
        self.pipe = pipe
        self.s = session
        self.settings = pipe.settings
        self.rebuild = rebuild
        self.now = pipe.clock()
        self.result = RunResult()
        self.facts_cache: dict[str, MessageFacts] = {}  # parsed (or loaded) this run
        self.old_threads: dict[str, str | None] = {}  # a rebuild's thread ids from before
        self.accounts: dict[int, str] = {}

    # -- setup --------------------------------------------------------------------------------

    def _setup(self) -> None:
        lock(self.s)
        self.state = _State(self.s)
        self.salt = salt_of(self.s, self.state)
        self.forgotten = set(self.s.scalars(select(CrmForgotten.hash)).all())
        self._forgot_memo: dict[str, bool] = {}
        self.accounts = dict(self.s.execute(select(Account.id, Account.name)).all())

    def is_forgotten(self, address: str) -> bool:
        if address.endswith("@" + FORGOTTEN_DOMAIN):
            return True
        if not self.forgotten:
            return False
        got = self._forgot_memo.get(address)
        if got is None:
            got = self._forgot_memo[address] = forget_hash(self.salt, address) in self.forgotten
        return got

    def placeholder(self, address: str) -> str:
        return f"x{forget_hash(self.salt, address)[:24]}@{FORGOTTEN_DOMAIN}"

    # -- step 2: what changed -------------------------------------------------------------------

    def _roles(self, account_id: int) -> dict[int, str]:
        return {fid: folder_role(su, name) for fid, su, name in self.s.execute(
            select(Folder.id, Folder.special_use, Folder.name).where(Folder.account_id == account_id))}

    def _changes(self) -> tuple[set[str], set[str]]:
        """Bring crm_sources up to date with placements; returns (changed keys, keys removed from some
        copy), parsing new bodies on the way."""
        changed: set[str] = set()
        fresh: list[tuple] = []  # (placement id, account id, folder id, sha, flags, internaldate)
        tomb = _tombstone_filter()
        for account_id in sorted(self.accounts):
            roles = self._roles(account_id)
            self.roles_by_folder.update(roles)
            mark_row = self.s.get(CrmMark, account_id)
            mark = mark_row.placement_mark if mark_row is not None else 0
            stmt = (select(Placement.id, Placement.folder_id, Placement.body_sha256, Placement.flags,
                           Placement.internaldate)
                    .join(Folder, Folder.id == Placement.folder_id)
                    .where(Folder.account_id == account_id, Placement.id > mark).order_by(Placement.id))
            if tomb is not None:
                stmt = stmt.where(tomb)
            new_rows = self.s.execute(stmt).all()
            top = max([mark] + [r[0] for r in new_rows])
            # existing sources whose placement changed or went away
            answered = case((Placement.flags.contains(_FLAG_ANSWERED, autoescape=True), True), else_=False)
            draft = case((Placement.flags.contains(_FLAG_DRAFT, autoescape=True), True), else_=False)
            conds = [Placement.id.is_(None), Placement.body_sha256 != CrmSource.body_sha256,
                     Placement.folder_id != CrmSource.folder_id, answered != CrmSource.answered,
                     draft != CrmSource.draft]
            if tomb is not None:
                conds.append(getattr(Placement, "tombstone_run").is_not(None))
            diff = self.s.execute(
                select(CrmSource.placement_id, CrmSource.message_key, Placement.id, Placement.folder_id,
                       Placement.body_sha256, Placement.flags, Placement.internaldate, CrmSource.body_sha256,
                       *( [getattr(Placement, "tombstone_run")] if tomb is not None else []))
                .outerjoin(Placement, Placement.id == CrmSource.placement_id)
                .where(CrmSource.account_id == account_id, or_(*conds))).all()
            gone: list[int] = []
            for row in diff:
                sid, key, pid, fid, sha, flags, idate, old_sha = row[:8]
                tomb_run = row[8] if len(row) > 8 else None
                changed.add(key)
                if pid is None or sha != old_sha or tomb_run is not None:
                    gone.append(sid)
                    if pid is not None and tomb_run is None:  # the id now holds another message
                        fresh.append((pid, account_id, fid, sha, flags, idate))
                else:
                    self.s.execute(update(CrmSource).where(CrmSource.placement_id == sid).values(
                        folder_id=fid, role=roles.get(fid, "other"), answered=_has_flag(flags, _FLAG_ANSWERED),
                        draft=_has_flag(flags, _FLAG_DRAFT)))
            for chunk in _chunks(gone):
                self.s.execute(delete(CrmSource).where(CrmSource.placement_id.in_(chunk)))
            # folders whose role changed (special-use or name): their sources' roles
            old_roles = self.state.get(f"roles:{account_id}", {})
            now_roles = {str(k): v for k, v in roles.items()}
            if old_roles and old_roles != now_roles:
                for fid, role in roles.items():
                    if old_roles.get(str(fid)) not in (None, role):
                        keys = self.s.scalars(select(CrmSource.message_key).where(CrmSource.folder_id == fid)).all()
                        changed.update(keys)
                        self.s.execute(update(CrmSource).where(CrmSource.folder_id == fid).values(role=role))
            self.state.set(f"roles:{account_id}", now_roles)
            fresh.extend((pid, account_id, fid, sha, flags, idate) for pid, fid, sha, flags, idate in new_rows)
            # SQLite hands out max(rowid)+1: once the top placements are gone, new ones can get ids at
            # or below the mark. Sources and placements then disagree in number; find those unread.
            n_place = self.s.scalar(self._placements_count(account_id, tomb))
            n_src = self.s.scalar(select(func.count()).select_from(CrmSource).where(CrmSource.account_id == account_id))
            ours = sum(1 for r in fresh if r[1] == account_id)
            if n_place != n_src + ours:
                seen = {r[0] for r in fresh}
                stmt = (select(Placement.id, Placement.folder_id, Placement.body_sha256, Placement.flags,
                               Placement.internaldate)
                        .join(Folder, Folder.id == Placement.folder_id)
                        .outerjoin(CrmSource, CrmSource.placement_id == Placement.id)
                        .where(Folder.account_id == account_id, Placement.id <= mark,
                               CrmSource.placement_id.is_(None)))
                if tomb is not None:
                    stmt = stmt.where(tomb)
                fresh.extend((pid, account_id, fid, sha, flags, idate)
                             for pid, fid, sha, flags, idate in self.s.execute(stmt) if pid not in seen)
            if mark_row is None:
                self.s.add(CrmMark(account_id=account_id, placement_mark=top))
            elif top != mark:
                mark_row.placement_mark = top
        self.result.placements = len(fresh) + len(changed)
        changed |= self._add_sources(fresh)
        return changed

    def _placements_count(self, account_id: int, tomb):
        stmt = (select(func.count()).select_from(Placement).join(Folder, Folder.id == Placement.folder_id)
                .where(Folder.account_id == account_id))
        return stmt.where(tomb) if tomb is not None else stmt

    def _add_sources(self, fresh: list[tuple]) -> set[str]:
        """Sources for new placements; bodies not yet known are parsed into facts."""
        if not fresh:
            return set()
        shas = sorted({r[3] for r in fresh})
        known: dict[str, str] = {}
        for chunk in _chunks(shas):
            known.update(self.s.execute(select(CrmSource.body_sha256, CrmSource.message_key)
                                        .where(CrmSource.body_sha256.in_(chunk))).all())
        todo = [s for s in shas if s not in known]
        known.update(self._parse_bodies(todo))
        rows = []
        for pid, account_id, fid, sha, flags, idate in fresh:
            rows.append({"placement_id": pid, "account_id": account_id, "folder_id": fid,
                         "message_key": known[sha], "body_sha256": sha,
                         "role": self.roles_by_folder.get(fid, "other"), "draft": _has_flag(flags, _FLAG_DRAFT),
                         "answered": _has_flag(flags, _FLAG_ANSWERED), "internaldate": _epoch(idate)})
        _insert_ignore(self.s, CrmSource.__table__, rows, ["placement_id"])
        return {r["message_key"] for r in rows}

    def _parse_bodies(self, shas: list[str]) -> dict[str, str]:
        """sha -> message key; new messages' facts, participants and refs are inserted. Headers are
        read from the first HEAD_LIMIT bytes; reports, previews and longer headers from the whole body.
        Large batches are parsed on every core (parsing is pure; the store is only touched here)."""
        out: dict[str, str] = {}
        if not shas:
            return out
        facts_rows, part_rows, ref_rows = [], [], []

        def read(block: Sequence[str]) -> list[tuple[str, bytes, int]]:
            return repo.read_heads(self.s, list(block), HEAD_LIMIT)

        def handle(heads: list[tuple[str, bytes, int]], parsed: dict[str, MessageFacts]) -> None:
            batch: list[tuple[str, MessageFacts]] = []
            for sha, head, size in heads:
                facts = parsed[sha]  # from the headers alone
                cut = size > len(head)
                if facts.is_report or self.pipe.preview or (cut and b"\n\n" not in head
                                                            and b"\r\n\r\n" not in head):
                    whole = repo.read_body(self.s, sha) if cut else head
                    facts = parse_message(whole, preview=self.pipe.preview)
                batch.append((sha, self._scrub_forgotten(facts)))
            existing: set[str] = set()
            for kc in _chunks([f.key for _, f in batch if f.key not in self.facts_cache]):
                existing.update(self.s.scalars(select(CrmMessage.key).where(CrmMessage.key.in_(kc))).all())
            for sha, facts in batch:
                out[sha] = facts.key
                if facts.key in existing or facts.key in self.facts_cache:
                    continue
                self.facts_cache[facts.key] = facts
                self.result.parsed += 1
                facts_rows.append({"key": facts.key, "message_id": facts.message_id, "date": facts.date,
                                   "from_address": facts.sender_of_copy,
                                   "list_mailto": bool(facts.list_unsubscribe or facts.list_subscribe or facts.lists),
                                   "thread_id": self.old_threads.get(facts.key),
                                   "facts": json.dumps(facts.to_json(), ensure_ascii=False, separators=(",", ":"))})
                part_rows.extend({"message_key": facts.key, "address": a} for a in _participants(facts))
                ref_rows.extend({"message_key": facts.key, "ref_id": r[:998]} for r in facts.parents)

        with _Parser(len(shas)) as parser:
            waiting = None  # the previous block, parsing in the workers while this one is read
            for block in _chunks(shas, 2000):
                heads = read(block)
                started = (heads, parser.submit([(sha, head) for sha, head, _ in heads]))
                if waiting is not None:
                    handle(waiting[0], waiting[1]())
                waiting = started
            if waiting is not None:
                handle(waiting[0], waiting[1]())
        _insert_ignore(self.s, CrmMessage.__table__, facts_rows, ["key"])
        _insert_ignore(self.s, CrmParticipant.__table__, part_rows, ["message_key", "address"])
        _insert_ignore(self.s, CrmRef.__table__, ref_rows, ["message_key", "ref_id"])
        return out

    def _scrub_forgotten(self, facts: MessageFacts) -> MessageFacts:
        if not self.forgotten:
            return facts
        for a in _participants(facts):
            if self.is_forgotten(a) and not a.endswith("@" + FORGOTTEN_DOMAIN):
                facts = _scrub(facts, a, self.placeholder(a))
        return facts

    # -- facts access ---------------------------------------------------------------------------

    def load_facts(self, keys: Iterable[str]) -> dict[str, MessageFacts]:
        want = [k for k in keys if k not in self.facts_cache]
        for chunk in _chunks(sorted(want)):
            for key, text in self.s.execute(select(CrmMessage.key, CrmMessage.facts)
                                            .where(CrmMessage.key.in_(chunk))):
                self.facts_cache[key] = MessageFacts.from_json(json.loads(text))
        return {k: self.facts_cache[k] for k in keys if k in self.facts_cache}

    def load_copies(self, keys: Iterable[str] | None) -> dict[str, list[X.Copy]]:
        """key -> its copies (``keys`` None: every message)."""
        out: dict[str, list[X.Copy]] = defaultdict(list)
        acc = self.settings.accounts
        default = self.settings.account("")
        cols = select(CrmSource.message_key, CrmSource.account_id, CrmSource.role, CrmSource.draft,
                      CrmSource.answered, CrmSource.internaldate)
        stmts = [cols] if keys is None else [cols.where(CrmSource.message_key.in_(c)) for c in _chunks(sorted(set(keys)))]
        memo: dict[tuple, X.Copy] = {}
        for stmt in stmts:
            for key, account_id, role, draft, answered, idate in self.s.execute(stmt):
                sig = (account_id, role, draft, answered, idate)
                copy = memo.get(sig)
                if copy is None:
                    a = acc.get(self.accounts.get(account_id, ""), default)
                    copy = memo[sig] = X.Copy(role, bool(draft), bool(answered), int(idate), a.share, a.create_contacts)
                out[key].append(copy)
        return out

    # -- step 4: identity ---------------------------------------------------------------------

    def sent_from(self, account_id: int | None = None) -> dict[str, int]:
        """Who sent the messages in \\Sent folders (crm_messages.from_address) -> how many messages."""
        stmt = (select(CrmMessage.from_address, func.count(func.distinct(CrmMessage.key)))
                .join(CrmSource, CrmSource.message_key == CrmMessage.key)
                .where(CrmSource.role == "sent", CrmSource.draft.is_(False), CrmMessage.from_address.is_not(None))
                .group_by(CrmMessage.from_address))
        if account_id is not None:
            stmt = stmt.where(CrmSource.account_id == account_id)
        return {a: int(n) for a, n in self.s.execute(stmt)}

    def _globals(self) -> tuple[Identity, frozenset[str], frozenset[str], frozenset[str]]:
        """Our identity, our List-Unsubscribe and List-Subscribe addresses, and the mailing lists
        learned from the List-Post/List-Id of received copies."""
        identity = Identity.build(self.settings.configured_identities, self.sent_from(),
                                  self.settings.internal_domains)
        unsub, sub, lists = set(), set(), set()
        keys = self.s.scalars(select(CrmMessage.key).where(CrmMessage.list_mailto.is_(True))).all()
        if keys:
            facts = self.load_facts(keys)
            copies = self.load_copies(keys)
            inputs = [X.combine(facts[k], copies.get(k, [])) for k in keys if k in facts and copies.get(k)]
            u, s_ = X.list_addresses(inputs, identity)
            unsub |= u
            sub |= s_
            lists |= X.learned_lists(inputs, identity)
        unsub |= {a for a in (canonical(x) for x in self.settings.unsubscribe_addresses) if a}
        return identity, frozenset(unsub), frozenset(sub), frozenset(lists)

    # -- step 5: threads ----------------------------------------------------------------------

    def _component(self, keys: set[str], extra_ids: set[str]) -> set[str]:
        """Every message connected to ``keys`` (or to ``extra_ids``) through Message-IDs and refs."""
        seen_keys: set[str] = set()
        seen_ids: set[str] = set()
        frontier_keys = set(keys)
        frontier_ids = set(extra_ids)
        while frontier_keys or frontier_ids:
            new_ids: set[str] = set()
            fk = sorted(frontier_keys - seen_keys)
            seen_keys |= set(fk)
            for chunk in _chunks(fk):
                new_ids.update(i for i in self.s.scalars(select(CrmMessage.message_id)
                                                         .where(CrmMessage.key.in_(chunk))).all() if i)
                new_ids.update(self.s.scalars(select(CrmRef.ref_id).where(CrmRef.message_key.in_(chunk))).all())
            new_ids |= frontier_ids
            fi = sorted(new_ids - seen_ids)
            seen_ids |= set(fi)
            new_keys: set[str] = set()
            for chunk in _chunks(fi):
                new_keys.update(self.s.scalars(select(CrmMessage.key).where(CrmMessage.message_id.in_(chunk))).all())
                new_keys.update(self.s.scalars(select(CrmRef.message_key).where(CrmRef.ref_id.in_(chunk))).all())
            frontier_keys = new_keys - seen_keys
            frontier_ids = set()
        return seen_keys

    def _threads(self, keys: set[str] | None, extra_ids: set[str]) -> set[str]:
        """Recompute thread ids of the components of ``keys`` (None: all); return keys whose id changed."""
        if keys is None:
            comp = set(self.s.scalars(select(CrmMessage.key)).all())
        else:
            comp = self._component(keys, extra_ids)
        if not comp:
            return set()
        stored: dict[str, str | None] = {}
        dates: dict[str, int | None] = {}
        cols = select(CrmMessage.key, CrmMessage.thread_id, CrmMessage.date)
        stmts = [cols] if keys is None else [cols.where(CrmMessage.key.in_(c)) for c in _chunks(sorted(comp))]
        for stmt in stmts:
            for k, tid, d in self.s.execute(stmt):
                stored[k] = tid
                dates[k] = d
        facts = self.load_facts(stored)
        first_seen = self._min_internaldate([k for k, d in dates.items() if d is None])
        tids = X.thread_ids((facts[k], dates[k] if dates[k] is not None else first_seen.get(k, 0)) for k in facts)
        changed = {k for k, t in tids.items() if stored.get(k) != t}
        if changed:
            from sqlalchemy import bindparam

            t = CrmMessage.__table__
            self.s.execute(update(t).where(t.c.key == bindparam("k")).values(thread_id=bindparam("t")),
                           [{"k": k, "t": tids[k]} for k in sorted(changed)])
        self.thread_of.update(tids)
        return changed

    def _min_internaldate(self, keys: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in _chunks(sorted(keys)):
            out.update(self.s.execute(select(CrmSource.message_key, func.min(CrmSource.internaldate))
                                      .where(CrmSource.message_key.in_(chunk))
                                      .group_by(CrmSource.message_key)).all())
        return out

    # -- step 6: dirty addresses --------------------------------------------------------------

    def _participants_of(self, keys: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for chunk in _chunks(sorted(set(keys))):
            out.update(self.s.scalars(select(CrmParticipant.address).where(CrmParticipant.message_key.in_(chunk))).all())
        return out

    def _referencing(self, keys: set[str]) -> set[str]:
        ids: set[str] = set()
        for chunk in _chunks(sorted(keys)):
            ids.update(i for i in self.s.scalars(select(CrmMessage.message_id).where(CrmMessage.key.in_(chunk))).all() if i)
        out: set[str] = set()
        for chunk in _chunks(sorted(ids)):
            out.update(self.s.scalars(select(CrmRef.message_key).where(CrmRef.ref_id.in_(chunk))).all())
        return out

    def _blocklist_dirty(self) -> set[str]:
        """Addresses matched by blocklist entries added or removed since the last run."""
        domains_now = sorted({e[1:].lower() for e in self.settings.blocklist if e.startswith("@")})
        addrs_now = {canonical(e) for e in self.settings.blocklist if not e.startswith("@")} - {None}
        hashed_now = sorted(forget_hash(self.salt, "block\0" + a) for a in addrs_now)
        before = self.state.get("blocklist", {"domains": [], "addresses": []})
        self.state.set("blocklist", {"domains": domains_now, "addresses": hashed_now})
        changed_domains = set(domains_now) ^ set(before["domains"])
        changed_hashes = set(hashed_now) ^ set(before["addresses"])
        out: set[str] = {a for a in addrs_now if forget_hash(self.salt, "block\0" + a) in changed_hashes}
        if changed_hashes - {forget_hash(self.salt, "block\0" + a) for a in addrs_now}:  # removed entries
            for a in self.s.scalars(select(CrmParticipant.address).distinct()).all():
                if forget_hash(self.salt, "block\0" + a) in changed_hashes:
                    out.add(a)
        for d in changed_domains:
            out.update(self.s.scalars(select(CrmParticipant.address).distinct().where(
                or_(CrmParticipant.address.like(f"%@{d}"), CrmParticipant.address.like(f"%.{d}")))).all())
        return out

    # -- step 7: derivation -------------------------------------------------------------------

    def _inputs(self, keys: Iterable[str], *, every: bool = False) -> list[X.MessageInput]:
        keys = sorted(set(keys))
        facts = self.load_facts(keys)
        copies = self.load_copies(None if every else keys)
        missing = [k for k in keys if k not in self.thread_of]
        for chunk in _chunks(missing):
            self.thread_of.update(self.s.execute(select(CrmMessage.key, CrmMessage.thread_id)
                                                 .where(CrmMessage.key.in_(chunk))).all())
        return [X.combine(facts[k], copies[k], self.thread_of.get(k) or "") for k in keys
                if k in facts and copies.get(k)]

    def _sent_ids(self, inputs: list[X.MessageInput], identity: Identity) -> dict[str, int]:
        """Our sent Message-IDs among the ids the given messages thread under, with their times."""
        wanted = sorted({p for m in inputs for p in m.facts.parents})
        if not wanted:
            return {}
        keys: set[str] = set()
        for chunk in _chunks(wanted):
            keys.update(self.s.scalars(select(CrmMessage.key).where(CrmMessage.message_id.in_(chunk))).all())
        refd = self._inputs(keys)
        return X.sent_index(refd, identity)

    def _derive(self, dirty: set[str] | None, identity: Identity, unsub: frozenset[str],
                sub: frozenset[str], lists: frozenset[str]) -> None:
        if dirty is None:
            keys = set(self.s.scalars(select(CrmMessage.key)).all())
        else:
            keys = set()
            for chunk in _chunks(sorted(dirty)):
                keys.update(self.s.scalars(select(CrmParticipant.message_key)
                                           .where(CrmParticipant.address.in_(chunk))).all())
        inputs = self._inputs(keys, every=dirty is None)
        self.result.messages = len(inputs)
        if dirty is None:
            sent_ids = X.sent_index(inputs, identity)
        else:
            sent_ids = self._sent_ids(inputs, identity)
        ctx = X.Context(identity=identity, settings=self.settings.extract_settings(), sent_ids=sent_ids,
                        unsubscribe_addresses=unsub, subscribe_addresses=sub, lists=lists, salt=self.salt,
                        forgotten=self.is_forgotten)
        records = X.extract(inputs, ctx, scope=dirty)
        self._apply(records, dirty)

    # -- applying record changes ----------------------------------------------------------------

    def _apply(self, records: X.Records, dirty: set[str] | None) -> None:
        s = self.s
        # contacts
        old: dict[str, tuple[str, str, str | None]] = {}  # address -> (id, digest, company)
        if dirty is None:
            q = select(CrmContact.address, CrmContact.id, CrmContact.digest, CrmContact.company_domain)
            old = {a: (i, d, c) for a, i, d, c in s.execute(q)}
        else:
            for chunk in _chunks(sorted(dirty)):
                q = (select(CrmContact.address, CrmContact.id, CrmContact.digest, CrmContact.company_domain)
                     .where(CrmContact.address.in_(chunk)))
                old.update({a: (i, d, c) for a, i, d, c in s.execute(q)})
        domains: set[str] = set()
        changes: list[tuple[str, str, str, dict | None, str | None, str]] = []  # type, id, op, rec, prev, digest
        new_rows, upd_rows = [], []
        for address, rec in records.contacts.items():
            dg = digest(rec)
            prev = old.pop(address, None)
            if prev is not None and prev[1] == dg:
                continue
            row = {"id": rec["id"], "address": address, "company_domain": rec["company_domain"], "digest": dg,
                   "data": canonical_json(rec)}
            (upd_rows if prev is not None else new_rows).append(row)
            changes.append(("contact", rec["id"], "upsert", rec, prev[1] if prev else None, dg))
            if rec["company_domain"]:
                domains.add(rec["company_domain"])
            if prev is not None and prev[2]:
                domains.add(prev[2])
        gone_contacts = sorted(old.items())
        for address, (cid, dg, company) in gone_contacts:
            changes.append(("contact", cid, "delete", None, dg, "deleted"))
            if company:
                domains.add(company)
        if gone_contacts:
            for chunk in _chunks([a for a, _ in gone_contacts]):
                s.execute(delete(CrmContact).where(CrmContact.address.in_(chunk)))
        if upd_rows:
            for r in upd_rows:
                s.execute(update(CrmContact).where(CrmContact.address == r["address"]).values(
                    id=r["id"], company_domain=r["company_domain"], digest=r["digest"], data=r["data"]))
        _insert_ignore(s, CrmContact.__table__, new_rows, None)
        # activities
        olda: dict[str, str] = {}
        if dirty is None:
            olda = dict(s.execute(select(CrmActivity.id, CrmActivity.digest)).all())
        else:
            for chunk in _chunks(sorted(dirty)):
                olda.update(s.execute(select(CrmActivity.id, CrmActivity.digest)
                                      .where(CrmActivity.contact_address.in_(chunk))).all())
        new_a, upd_a = [], []
        for aid, rec in records.activities.items():
            dg = digest(rec)
            prev = olda.pop(aid, None)
            if prev == dg:
                continue
            row = {"id": aid, "contact_address": rec["contact_address"], "message_key": "",
                   "kind": rec["kind"], "timestamp": rec["timestamp"], "latency": rec["latency_seconds"],
                   "digest": dg, "data": canonical_json(rec)}
            (upd_a if prev is not None else new_a).append(row)
            changes.append(("activity", aid, "upsert", rec, prev, dg))
        key_of = self._activity_keys(records)
        for row in new_a + upd_a:
            row["message_key"] = key_of.get(row["id"], "")
        gone_a = sorted(olda.items())
        for aid, dg in gone_a:
            changes.append(("activity", aid, "delete", None, dg, "deleted"))
        for chunk in _chunks([a for a, _ in gone_a]):
            s.execute(delete(CrmActivity).where(CrmActivity.id.in_(chunk)))
        for r in upd_a:
            s.execute(update(CrmActivity).where(CrmActivity.id == r["id"]).values(
                {k: v for k, v in r.items() if k != "id"}))
        _insert_ignore(s, CrmActivity.__table__, new_a, None)
        self._companies(None if dirty is None else domains, changes)
        self._enqueue(changes)

    def _activity_keys(self, records: X.Records) -> dict[str, str]:
        return records.message_keys

    def _companies(self, domains: set[str] | None, changes: list) -> None:
        s = self.s
        if domains is None:
            domains = set(s.scalars(select(CrmContact.company_domain).distinct()
                                    .where(CrmContact.company_domain.is_not(None))).all())
            domains |= set(s.scalars(select(CrmCompany.domain)).all())
        for chunk in _chunks(sorted(domains)):
            contacts = [json.loads(t) for t in s.scalars(select(CrmContact.data)
                                                         .where(CrmContact.company_domain.in_(chunk))).all()]
            addrs = [c["address"] for c in contacts]
            latencies: list[dict] = []
            for ac in _chunks(addrs):
                latencies.extend({"contact_address": a, "kind": "reply", "latency_seconds": l}
                                 for a, l in s.execute(select(CrmActivity.contact_address, CrmActivity.latency)
                                                       .where(CrmActivity.contact_address.in_(ac),
                                                              CrmActivity.kind == "reply")))
            recs = X.companies(contacts, latencies, self.settings.score_half_life_days, domains=chunk)
            old = {d: (i, dg) for d, i, dg in s.execute(select(CrmCompany.domain, CrmCompany.id, CrmCompany.digest)
                                                        .where(CrmCompany.domain.in_(chunk)))}
            for d, rec in recs.items():
                dg = digest(rec)
                prev = old.pop(d, None)
                if prev is not None and prev[1] == dg:
                    continue
                if prev is None:
                    s.add(CrmCompany(id=rec["id"], domain=d, digest=dg, data=canonical_json(rec)))
                else:
                    s.execute(update(CrmCompany).where(CrmCompany.domain == d).values(digest=dg, data=canonical_json(rec)))
                changes.append(("company", rec["id"], "upsert", rec, prev[1] if prev else None, dg))
            for d, (cid, dg) in old.items():
                s.execute(delete(CrmCompany).where(CrmCompany.domain == d))
                changes.append(("company", cid, "delete", None, dg, "deleted"))
        s.flush()

    # -- the outbox -----------------------------------------------------------------------------

    def _enqueue(self, changes: list) -> None:
        from mailsync.crm.outbox import idempotency_key

        sinks = self.settings.sinks
        if not sinks or not changes:
            self.result.changes.update(f"{t}:{op}" for t, _, op, _, _, _ in changes)
            return
        rows = []
        supersede: dict[str, list[str]] = defaultdict(list)
        for rtype, rid, op, rec, prev, dg in changes:
            self.result.changes[f"{rtype}:{op}"] += 1
            payload = canonical_json(rec) if rec is not None else json.dumps({"id": rid})
            for sink in sinks:
                if rtype not in sink.records:
                    continue
                supersede[sink.name].append(rid)
                rows.append({"sink": sink.name, "record_type": rtype, "record_id": rid, "op": op,
                             "idempotency_key": idempotency_key(sink.name, rtype, rid, op, dg, prev),
                             "payload": payload, "state": "pending", "attempts": 0,
                             "next_attempt_at": self.now, "lease_until": None, "lease_owner": None,
                             "last_error": None, "created_at": self.now})
        self._supersede(supersede)
        _insert_ignore(self.s, CrmOutbox.__table__, rows, None)
        self.result.queued += len(rows)

    def _supersede(self, by_sink: dict[str, list[str]]) -> None:
        """Pending rows for a record that changes again are replaced by the newer change (unless a
        worker is sending them right now); dead letters stay until retried."""
        for sink, ids in by_sink.items():
            for chunk in _chunks(sorted(set(ids))):
                self.s.execute(delete(CrmOutbox).where(
                    CrmOutbox.sink == sink, CrmOutbox.state == "pending", CrmOutbox.record_id.in_(chunk),
                    or_(CrmOutbox.lease_until.is_(None), CrmOutbox.lease_until < self.now)))

    def _backfill_new_sinks(self) -> None:
        """A sink added to the config gets every current record once."""
        names = sorted(s.name for s in self.settings.sinks)
        known = self.state.get("sinks")
        self.state.set("sinks", names)
        if known is None:
            known = names if self.rebuild else []  # first run: everything is new anyway
        new = [s for s in self.settings.sinks if s.name not in known]
        if not new:
            return
        from mailsync.crm.outbox import idempotency_key

        rows = []
        for model, rtype in ((CrmContact, "contact"), (CrmCompany, "company"), (CrmActivity, "activity")):
            wanted = [s for s in new if rtype in s.records]
            if not wanted:
                continue
            for rid, dg, data in self.s.execute(select(model.id, model.digest, model.data)):
                for sink in wanted:
                    rows.append({"sink": sink.name, "record_type": rtype, "record_id": rid, "op": "upsert",
                                 "idempotency_key": idempotency_key(sink.name, rtype, rid, "upsert", dg, "backfill"),
                                 "payload": data, "state": "pending", "attempts": 0, "next_attempt_at": self.now,
                                 "lease_until": None, "lease_owner": None, "last_error": None,
                                 "created_at": self.now})
        _insert_ignore(self.s, CrmOutbox.__table__, rows, None)
        self.result.queued += len(rows)

    # -- the run ---------------------------------------------------------------------------------

    def _phase(self, name: str) -> None:
        now = time.perf_counter()
        last = getattr(self, "_phase_at", None)
        if last is not None:
            self.result.phases[self._phase_name] = round(now - last, 3)
        self._phase_at, self._phase_name = now, name

    def go(self) -> RunResult:
        self._phase("setup")
        self._setup()
        self.roles_by_folder: dict[int, str] = {}
        self.thread_of: dict[str, str] = {}
        if self.rebuild:
            # thread ids are re-derived below; rows that come back with the same one need no update
            self.old_threads = dict(self.s.execute(select(CrmMessage.key, CrmMessage.thread_id)).all())
            for model in (CrmSource, CrmMessage, CrmParticipant, CrmRef, CrmMark):
                self.s.execute(delete(model))
            for key in [k for k in self.state.values if k.startswith("roles:")]:
                self.state.values.pop(key)
        self._backfill_new_sinks()
        self._phase("read")
        changed = self._changes()
        self._phase("identity")
        # messages with no copy left: remember who they involved and what they touched, then drop them
        dead: set[str] = set()
        dead_ids: set[str] = set()
        if changed:
            alive: set[str] = set()
            for chunk in _chunks(sorted(changed)):
                alive.update(self.s.scalars(select(CrmSource.message_key).distinct()
                                            .where(CrmSource.message_key.in_(chunk))).all())
            dead = changed - alive
        dirty: set[str] | None = set()
        if dead:
            dirty |= self._participants_of(dead)
            dirty |= self._participants_of(self._referencing(dead))
            for chunk in _chunks(sorted(dead)):
                dead_ids.update(i for i in self.s.scalars(select(CrmMessage.message_id)
                                                          .where(CrmMessage.key.in_(chunk))).all() if i)
                dead_ids.update(self.s.scalars(select(CrmRef.ref_id).where(CrmRef.message_key.in_(chunk))).all())
                for model, col in ((CrmMessage, CrmMessage.key), (CrmParticipant, CrmParticipant.message_key),
                                   (CrmRef, CrmRef.message_key)):
                    self.s.execute(delete(model).where(col.in_(chunk)))
        self.s.flush()
        identity, unsub, sub, lists = self._globals()
        fp = {"settings": self.settings.fingerprint(), "own": sorted(identity.own),
              "domains": sorted(identity.work_domains), "unsub": sorted(unsub), "sub": sorted(sub)}
        if lists:
            fp["lists"] = sorted(lists)
        full = self.rebuild or self.state.get("fingerprint") != fp
        self.state.set("fingerprint", fp)
        block_dirty = self._blocklist_dirty()
        self._phase("threads")
        if full:
            self._threads(None, set())
            dirty = None
        elif changed or block_dirty:
            alive_changed = changed - dead
            moved = self._threads(alive_changed, dead_ids) if (alive_changed or dead_ids) else set()
            dirty |= self._participants_of(alive_changed | moved)
            dirty |= self._participants_of(self._referencing(alive_changed))
            dirty |= block_dirty
        self.result.full = full
        self._phase("derive")
        if dirty is None or dirty:
            self.result.addresses = -1 if dirty is None else len(dirty)
            self._derive(dirty, identity, unsub, sub, lists)
        self.state.save()
        self._phase("end")
        return self.result

    # -- erasure ------------------------------------------------------------------------------------

    def forget(self, address: str) -> ForgetResult:
        self._setup()
        self.roles_by_folder = {}
        self.thread_of = {}
        h = forget_hash(self.salt, address)
        s = self.s
        if h not in self.forgotten:
            s.add(CrmForgotten(hash=h))
            self.forgotten.add(h)
        self._forgot_memo.clear()
        contact = s.execute(select(CrmContact.id, CrmContact.company_domain).where(CrmContact.address == address)).first()
        act_ids = s.scalars(select(CrmActivity.id).where(CrmActivity.contact_address == address)).all()
        changes = []
        removed_ids = list(act_ids) + ([contact[0]] if contact else [])
        # undelivered changes of these records carry the address: they go, deletions replace them
        for chunk in _chunks(removed_ids):
            s.execute(delete(CrmOutbox).where(CrmOutbox.record_id.in_(chunk)))
        for chunk in _chunks(list(act_ids)):
            s.execute(delete(CrmActivity).where(CrmActivity.id.in_(chunk)))
        for aid in act_ids:
            changes.append(("activity", aid, "delete", None, "forget", "deleted"))
        if contact:
            s.execute(delete(CrmContact).where(CrmContact.address == address))
            changes.append(("contact", contact[0], "delete", None, "forget", "deleted"))
        # the message facts that name the address: rewritten to a placeholder
        keys = s.scalars(select(CrmParticipant.message_key).where(CrmParticipant.address == address)).all()
        ph = self.placeholder(address)
        facts = self.load_facts(keys)
        for key, f in facts.items():
            f2 = _scrub(f, address, ph)
            s.execute(update(CrmMessage).where(CrmMessage.key == key).values(
                facts=json.dumps(f2.to_json(), ensure_ascii=False, separators=(",", ":")),
                from_address=f2.sender_of_copy))
        if keys:
            s.execute(delete(CrmParticipant).where(CrmParticipant.address == address))
            _insert_ignore(s, CrmParticipant.__table__, [{"message_key": k, "address": ph} for k in keys],
                           ["message_key", "address"])
        self.result = RunResult()
        if contact and contact[1]:
            self._companies({contact[1]}, changes)
        self._enqueue(changes)
        self._audit(h, contact is not None, len(act_ids))
        self.state.save()
        return ForgetResult(hash=h, contact=contact is not None, activities=len(act_ids), queued=self.result.queued)

    def _audit(self, h: str, contact: bool, activities: int) -> None:
        """The erasure goes to the audit log (audit_events, one row per account: CRM records derive
        from all of them) with the salted hash, never the address."""
        try:
            from mailsync.store.models import AuditEvent
        except ImportError:  # pragma: no cover - the audit log arrived with the two-way sync
            log.warning("crm forget: no audit log table; erased hash %s", h)
            return
        detail = (f"crm forget: erased {'a contact' if contact else 'no contact'} and {activities} "
                  f"activities; salted hash {h} kept so the address is never derived again")
        for account_id in sorted(self.accounts):
            self.s.add(AuditEvent(account_id=account_id, kind="crm_forget", detail=detail))


def _participants(facts: MessageFacts) -> list[str]:
    out: list[str] = []
    if facts.from_:
        out.append(facts.from_.address)
    out.extend(m.address for m in facts.recipients)
    if facts.report:
        out.extend(r.address for r in facts.report.recipients)
    return list(dict.fromkeys(out))


def _scrub(facts: MessageFacts, address: str, placeholder: str) -> MessageFacts:
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
