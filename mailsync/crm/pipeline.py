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
Each step is a function of its own module, handed the values it needs: sources.py (2), facts.py
(3), derive.py (4, 6, 7), threads.py (5), record_store.py and enqueue.py (7, 8); queries.py holds
the SQL they share, erasure.py the erasure. :class:`_Run` is their sequence.
Must not: write to the sync engine's tables (except an audit_events row on erasure), speak to sinks
(outbox.py does), decide a derivation rule (extract.py does), or hold SQL of its own.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from mailsync.crm.addresses import canonical
from mailsync.crm.derive import Globals, Inputs, blocklist_dirty, changed_addresses, derive, globals_of
from mailsync.crm.enqueue import backfill_new_sinks, enqueue
from mailsync.crm.erasure import audit, erase
from mailsync.crm.facts import FORGOTTEN_DOMAIN, Dead, FactsCache, Forgotten, drop_dead, read_new_facts
from mailsync.crm.identity import Identity
from mailsync.crm.parsing import Parser as _Parser  # noqa: F401 - tests tune its PARALLEL_FROM here
from mailsync.crm.queries import (State, account_names, account_row, forget_facts, forgotten_hashes, lock,
                                  salt_of, sent_from)
from mailsync.crm.record_store import Change, apply_records, update_companies
from mailsync.crm.settings import CrmSettings
from mailsync.crm.sources import add_sources, scan_placements
from mailsync.crm.threads import recompute_threads
from mailsync.errors import ConfigError
from mailsync.store.db import Store
from mailsync.store.uow import UnitOfWork

log = logging.getLogger("mailsync.crm")

__all__ = ["Pipeline", "RunResult", "ForgetResult", "FORGOTTEN_DOMAIN"]


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


class Pipeline:
    def __init__(self, store: Store, settings: CrmSettings, *, clock: Callable[[], float] = time.time,
                 preview: bool | None = None) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        # a text preview is read from bodies only when some account shares everything
        self.preview = (any(a.share == "everything" for a in settings.accounts.values())
                        if preview is None else preview)

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
            if account is None:
                return Identity.build(self.settings.configured_identities, sent_from(uow.session),
                                      self.settings.internal_domains)
            row = account_row(uow.session, account)
            if row is None and account not in self.settings.accounts:
                raise ConfigError(f"no account named {account!r}",
                                  hint="name one of the [[account]] tables of the config file")
            configured = list(self.settings.account(account).identities)
            if row is not None and "@" in row.username:
                configured.append(row.username)
            return Identity.build(configured, sent_from(uow.session, row.id) if row is not None else {},
                                  self.settings.internal_domains)

    def forget(self, address: str) -> ForgetResult:
        addr = canonical(address)
        if addr is None:
            raise ConfigError(f"{address!r} is not an email address", hint="e.g. mailsync crm forget jane@example.com")
        with UnitOfWork(self.store) as uow:
            result = _Run(self, uow.session, rebuild=False).forget(addr)
            uow.commit()
        return result


class _Phases:
    """Seconds spent in each phase of a run, into RunResult.phases."""

    def __init__(self, phases: dict, first: str) -> None:
        self.phases = phases
        self.name = first
        self.at = time.perf_counter()

    def next(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[self.name] = round(now - self.at, 3)
        self.name, self.at = name, now


class _Run:
    """One CRM transaction (step 1 here: the lock, the state, the salt and the forgotten hashes); the
    other steps in the order of the module docstring."""

    def __init__(self, pipe: Pipeline, session: Session, *, rebuild: bool) -> None:
        self.s = session
        self.settings = pipe.settings
        self.preview = pipe.preview
        self.rebuild = rebuild
        self.now = pipe.clock()
        self.result = RunResult()
        self.phases = _Phases(self.result.phases, "setup")
        lock(session)
        self.state = State(session)
        self.forgotten = Forgotten(salt_of(self.state), forgotten_hashes(session))
        self.accounts = account_names(session)
        self.cache = FactsCache(session)  # facts parsed or loaded this run
        self.thread_of: dict[str, str] = {}  # thread ids known this run
        self.inputs = Inputs(session, self.settings, self.accounts, self.cache, self.thread_of)
        self.old_threads: dict[str, str | None] = {}  # a rebuild's thread ids from before

    def go(self) -> RunResult:
        if self.rebuild:
            self.old_threads = forget_facts(self.s, self.state)
        self.result.queued += backfill_new_sinks(self.s, self.state, self.settings.sinks, rebuild=self.rebuild,
                                                 now=self.now)
        self.phases.next("read")
        scan = scan_placements(self.s, self.state, self.accounts)
        self.result.placements = len(scan.fresh) + len(scan.changed)
        changed = scan.changed | add_sources(self.s, scan, self._read_facts)
        self.phases.next("identity")
        dead = drop_dead(self.s, changed)
        g = globals_of(self.s, self.settings, self.inputs)
        fingerprint = g.fingerprint(self.settings)
        self.result.full = self.rebuild or self.state.get("fingerprint") != fingerprint
        self.state.set("fingerprint", fingerprint)
        block_dirty = blocklist_dirty(self.s, self.state, self.settings.blocklist, self.forgotten.salt)
        self.phases.next("threads")
        dirty = self._dirty(changed, dead, block_dirty)
        self.phases.next("derive")
        if dirty is None or dirty:
            self.result.addresses = -1 if dirty is None else len(dirty)
            self._derive(dirty, g)
        self.state.save()
        self.phases.next("end")
        return self.result

    def _read_facts(self, shas: list[str]) -> dict[str, str]:
        keys, parsed = read_new_facts(self.s, shas, preview=self.preview, forgotten=self.forgotten,
                                      cache=self.cache, old_threads=self.old_threads)
        self.result.parsed += parsed
        return keys

    def _dirty(self, changed: set[str], dead: Dead, block_dirty: set[str]) -> set[str] | None:
        """Threads recomputed; the addresses to derive again (None: everyone)."""
        if self.result.full:
            recompute_threads(self.s, None, set(), self.cache, self.thread_of)
            return None
        dirty = set(dead.addresses)
        if changed or block_dirty:
            alive = changed - dead.keys
            moved = (recompute_threads(self.s, alive, dead.ids, self.cache, self.thread_of)
                     if (alive or dead.ids) else set())
            dirty |= changed_addresses(self.s, alive, moved) | block_dirty
        return dirty

    def _derive(self, dirty: set[str] | None, g: Globals) -> None:
        records, self.result.messages = derive(self.s, dirty, g, self.inputs, settings=self.settings,
                                               salt=self.forgotten.salt, forgotten=self.forgotten.__contains__)
        self._enqueue(apply_records(self.s, records, dirty, self.settings.score_half_life_days))

    def _enqueue(self, changes: list[Change]) -> None:
        self.result.queued += enqueue(self.s, self.settings.sinks, changes, self.now, self.result.changes)

    def forget(self, address: str) -> ForgetResult:
        erased = erase(self.s, address, self.forgotten, self.cache)
        if erased.company:
            update_companies(self.s, {erased.company}, self.settings.score_half_life_days, erased.changes)
        self._enqueue(erased.changes)
        audit(self.s, self.accounts, erased)
        self.state.save()
        return ForgetResult(hash=erased.hash, contact=erased.contact, activities=erased.activities,
                            queued=self.result.queued)
