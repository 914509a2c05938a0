"""The delivery worker: outbox rows -> sinks, with leases, retries, backoff, rate limits, dead letters.

Owns: the life of an outbox row after the pipeline wrote it:
  pending --claim (lease)--> sent --2xx--> deleted
                                  --retryable--> pending, attempts+1, next_attempt_at = now + delay
                                  --permanent or attempts == max_attempts--> dead
  dead --`crm outbox --retry`--> pending, attempts 0
The delay is max(Retry-After, backoff * 2^(attempts-1) with jitter in [0.5, 1]) capped at
max_backoff (a Retry-After is honoured even above it, up to an hour). A 429 or 503 pauses the whole
sink until its Retry-After. Claims lease rows to this process ("host:pid") for as long as sending them
may take; a lease whose owner died (same host, pid gone) is taken back at start, so a killed run loses
nothing: its rows are sent again under the same idempotency keys, which receivers dedupe.
A CRM sink's transport names the records whose CRM ids it needs (``ref_ids``); the worker hands it
those it knows (crm_sink_refs, and what this group learnt) and stores what it learns with the
settlement of the rows, so a deletion or an association finds the CRM's object.
Per sink: rows go in id order, ``batch_size`` per request, at most ``rate_limit`` requests a second
(a token bucket on the injected clock). The worker runs after ``mailsync sync`` (and is what a
``watch`` daemon calls between wake-ups) until nothing is due or ``deadline`` seconds have passed.
Must not: derive or change records (pipeline.py and its steps), or know a transport's wire format (sinks.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, func, or_, select, update

from mailsync.crm.mapping import apply_mapping
from mailsync.crm.models import CrmContact, CrmOutbox, CrmSinkRef
from mailsync.crm.settings import CrmSettings, SinkSettings
from mailsync.errors import MailsyncError
from mailsync.store.db import Store
from mailsync.store.uow import UnitOfWork

log = logging.getLogger("mailsync.crm.outbox")

__all__ = ["DeliveryResult", "Worker", "envelope", "idempotency_key", "outbox_summary", "retry_dead"]

MAX_RETRY_AFTER = 3600.0
GROUP = 200  # rows claimed at once (sent batch_size per request)


def idempotency_key(sink: str, rtype: str, rid: str, op: str, digest: str, prev: str | None) -> str:
    """Stable for one change of one record (a retry or a re-run repeats it), new for every change:
    it covers the content before and after, so A -> B -> A gives three different keys."""
    text = "\0".join((sink, rtype, rid, op, digest, prev or ""))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def envelope(row: CrmOutbox | dict, sink: SinkSettings) -> dict:
    """What a sink is sent. A CRM sink (hubspot, salesforce) also gets the record as derived, under
    ``record``: its ``data`` holds only the CRM properties the mapping names, and the transport keys,
    links and dates its objects by the record's own fields."""
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    data = record = None
    if get("op") == "upsert":
        record = json.loads(get("payload"))
        data = apply_mapping(record, sink.fields.get(get("record_type"), ()), passthrough=not sink.crm)
    env = {"idempotency_key": get("idempotency_key"), "op": get("op"), "type": get("record_type"),
           "id": get("record_id"), "sink": sink.name, "data": data}
    if sink.crm:
        env["record"] = record
    return env


@dataclass
class DeliveryResult:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    requests: int = 0
    pending: int = 0  # left for a later run
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        text = (f"crm: delivered {self.delivered} record(s) in {self.requests} request(s)"
                f"{f', {self.retried} to retry' if self.retried else ''}"
                f"{f', {self.dead} dead' if self.dead else ''}"
                f"{f', {self.pending} pending' if self.pending else ''} ({self.seconds:.2f}s)")
        return text


class _Bucket:
    def __init__(self, rate: float | None, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.clock = clock
        self.capacity = max(1.0, rate or 1.0)
        self.tokens = self.capacity
        self.at = clock()

    def wait(self) -> float:
        """Seconds until a request may go (0: now, and the token is taken)."""
        if self.rate is None:
            return 0.0
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(owner: str | None) -> bool:
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's worker: trust its lease until it expires
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Worker:
    def __init__(self, store: Store, settings: CrmSettings, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 transports: dict | None = None) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.owner = _owner()
        self._transports = dict(transports or {})
        self.paused: dict[str, float] = {}

    # -- store steps (each its own short transaction) ---------------------------------------------

    def _release_dead_leases(self) -> None:
        with UnitOfWork(self.store) as uow:
            owners = uow.session.scalars(select(CrmOutbox.lease_owner).distinct()
                                         .where(CrmOutbox.lease_owner.is_not(None))).all()
            dead = [o for o in owners if o != self.owner and not _alive(o)]
            if dead:
                uow.session.execute(update(CrmOutbox).where(CrmOutbox.lease_owner.in_(dead))
                                    .values(lease_until=None, lease_owner=None))
                uow.commit()

    def _claim(self, sink: SinkSettings, now: float) -> list[dict]:
        with UnitOfWork(self.store) as uow:
            s = uow.session
            free = or_(CrmOutbox.lease_until.is_(None), CrmOutbox.lease_until < now)
            rows = s.execute(select(CrmOutbox.id, CrmOutbox.record_type, CrmOutbox.record_id, CrmOutbox.op,
                                    CrmOutbox.idempotency_key, CrmOutbox.payload, CrmOutbox.attempts)
                             .where(CrmOutbox.sink == sink.name, CrmOutbox.state == "pending",
                                    CrmOutbox.next_attempt_at <= now, free)
                             .order_by(CrmOutbox.id).limit(max(sink.batch_size, GROUP))).mappings().all()
            if not rows:
                return []
            requests = -(-len(rows) // sink.batch_size)
            until = now + requests * (sink.timeout + 1.0) + 30.0
            ids = [r["id"] for r in rows]
            got = s.execute(update(CrmOutbox).where(CrmOutbox.id.in_(ids), free)
                            .values(lease_until=until, lease_owner=self.owner)).rowcount
            uow.commit()
            if got != len(ids):  # another worker took some in between: keep only ours
                return [dict(r) for r in self._mine(ids)]
            return [dict(r) for r in rows]

    def _mine(self, ids: list[int]) -> list:
        with UnitOfWork(self.store) as uow:
            return uow.session.execute(select(CrmOutbox.id, CrmOutbox.record_type, CrmOutbox.record_id,
                                              CrmOutbox.op, CrmOutbox.idempotency_key, CrmOutbox.payload,
                                              CrmOutbox.attempts)
                                       .where(CrmOutbox.id.in_(ids), CrmOutbox.lease_owner == self.owner)
                                       .order_by(CrmOutbox.id)).mappings().all()

    def _settle(self, sink: SinkSettings, done: list[int], retry: list[tuple[dict, float, str]],
                dead: list[tuple[dict, str]], release: list[int],
                refs: dict[str, tuple[str, str | None] | None] | None = None) -> None:
        with UnitOfWork(self.store) as uow:
            s = uow.session
            for rid, ref in (refs or {}).items():  # with the rows' settlement: never one without the other
                s.execute(delete(CrmSinkRef).where(CrmSinkRef.sink == sink.name, CrmSinkRef.record_id == rid))
                if ref is not None:
                    s.add(CrmSinkRef(sink=sink.name, record_id=rid, remote_id=ref[0], link_id=ref[1]))
            mine = CrmOutbox.lease_owner == self.owner
            for i in range(0, len(done), 500):
                s.execute(delete(CrmOutbox).where(CrmOutbox.id.in_(done[i:i + 500]), mine))
            for row, at, error in retry:
                s.execute(update(CrmOutbox).where(CrmOutbox.id == row["id"], mine).values(
                    attempts=row["attempts"] + 1, next_attempt_at=at, last_error=error,
                    lease_until=None, lease_owner=None))
            for row, error in dead:
                s.execute(update(CrmOutbox).where(CrmOutbox.id == row["id"], mine).values(
                    state="dead", attempts=row["attempts"] + 1, last_error=error, lease_until=None,
                    lease_owner=None))
            if release:
                s.execute(update(CrmOutbox).where(CrmOutbox.id.in_(release), mine)
                          .values(lease_until=None, lease_owner=None))
            uow.commit()

    def _next_due(self, name: str) -> float | None:
        """When the next row of the sink that no other worker holds falls due."""
        now = self.clock()
        with UnitOfWork(self.store) as uow:
            return uow.session.scalar(select(func.min(CrmOutbox.next_attempt_at)).where(
                CrmOutbox.sink == name, CrmOutbox.state == "pending",
                or_(CrmOutbox.lease_until.is_(None), CrmOutbox.lease_until < now)))

    def _pending(self, names: list[str]) -> int:
        with UnitOfWork(self.store) as uow:
            return uow.session.scalar(select(func.count()).select_from(CrmOutbox)
                                      .where(CrmOutbox.sink.in_(names), CrmOutbox.state == "pending")) or 0

    # -- sending --------------------------------------------------------------------------------

    def _transport(self, sink: SinkSettings):
        t = self._transports.get(sink.name)
        if t is None:
            from mailsync.crm.sinks import make_transport

            t = self._transports[sink.name] = make_transport(sink, clock=self.clock, sleep=self.sleep)
        return t

    def _delay(self, sink: SinkSettings, attempts: int, retry_after: float | None) -> float:
        backoff = min(sink.max_backoff, sink.backoff * (2 ** max(0, attempts - 1)))
        backoff *= 0.5 + 0.5 * self.rng.random()
        if retry_after is not None and retry_after > 0:
            return min(MAX_RETRY_AFTER, retry_after)  # the sink said when: honoured as given
        return backoff

    def _group(self, sink: SinkSettings, rows: list[dict], bucket: _Bucket, end: float,
               result: DeliveryResult) -> None:
        transport = self._transport(sink)
        done: list[int] = []
        retry: list[tuple[dict, float, str]] = []
        dead: list[tuple[dict, str]] = []
        release: list[int] = []
        refs: dict[str, tuple[str, str | None] | None] = {}  # learnt in this group, settled with it
        batches = [rows[i:i + sink.batch_size] for i in range(0, len(rows), sink.batch_size)]
        for n, batch in enumerate(batches):
            wait = bucket.wait()
            if wait > 0:
                if self.clock() + wait > end:
                    release.extend(r["id"] for b in batches[n:] for r in b)
                    break
                self.sleep(wait)
                bucket.wait()
            envelopes = [envelope(r, sink) for r in batch]
            wanted = getattr(transport, "ref_ids", None)
            if wanted is None:
                outcome = transport.send(envelopes)
            else:  # a CRM sink: the ids its CRM gave the records it addresses
                ids = wanted(envelopes)
                known = {**self._refs(sink.name, [i for i in ids if i not in refs]),
                         **{i: refs[i] for i in ids if i in refs}}
                # an activity whose contact has not reached the CRM (its row failed and waits for a
                # retry, or the sink skips contacts) brings the contact's record: made whole, not bare
                missing = [e["record"]["contact_id"] for e in envelopes if e["type"] == "activity" and e["record"]
                           and e["record"].get("contact_id") and known.get(e["record"]["contact_id"]) is None]
                outcome = transport.send(envelopes, refs=known, contacts=self._contacts(missing))
            if outcome.refs:
                refs.update(outcome.refs)
            result.requests += 1
            now = self.clock()
            if outcome.ok:
                done.extend(r["id"] for r in batch)
                result.delivered += len(batch)
                continue
            for r in batch:
                attempts = r["attempts"] + 1
                if outcome.permanent or attempts >= sink.max_attempts:
                    dead.append((r, outcome.error or "failed"))
                    result.dead += 1
                else:
                    retry.append((r, now + self._delay(sink, attempts, outcome.retry_after), outcome.error or "failed"))
                    result.retried += 1
            if outcome.status in (429, 503) and outcome.retry_after is not None:
                # the sink asked everyone to wait: the rest of this group goes back untouched
                self.paused[sink.name] = now + min(MAX_RETRY_AFTER, outcome.retry_after)
                release.extend(r["id"] for b in batches[n + 1:] for r in b)
                break
        self._settle(sink, done, retry, dead, release, refs)

    def _refs(self, sink: str, ids: list[str]) -> dict[str, tuple[str, str | None]]:
        if not ids:
            return {}
        with UnitOfWork(self.store) as uow:
            rows = uow.session.execute(select(CrmSinkRef.record_id, CrmSinkRef.remote_id, CrmSinkRef.link_id)
                                       .where(CrmSinkRef.sink == sink, CrmSinkRef.record_id.in_(ids))).all()
        return {rid: (remote, link) for rid, remote, link in rows}

    def _contacts(self, ids: list[str]) -> dict[str, dict]:
        if not ids:
            return {}
        with UnitOfWork(self.store) as uow:
            rows = uow.session.execute(select(CrmContact.id, CrmContact.data).where(CrmContact.id.in_(ids))).all()
        return {cid: json.loads(data) for cid, data in rows}

    def run(self, *, deadline: float | None = None, sinks: Iterable[str] | None = None) -> DeliveryResult:
        """Deliver what is due; wait for retries while ``deadline`` (seconds) allows."""
        t0 = time.perf_counter()
        result = DeliveryResult()
        chosen = [s for s in self.settings.sinks if sinks is None or s.name in set(sinks)]
        if not chosen:
            return result
        start = self.clock()
        end = start + (self.settings.delivery_timeout if deadline is None else deadline)
        self._release_dead_leases()
        buckets = {s.name: _Bucket(s.rate_limit, self.clock) for s in chosen}
        broken: set[str] = set()
        try:
            while True:
                progressed = False
                now = self.clock()
                for sink in chosen:
                    if sink.name in broken or self.paused.get(sink.name, 0) > now:
                        continue
                    rows = self._claim(sink, now)
                    if not rows:
                        continue
                    try:
                        self._group(sink, rows, buckets[sink.name], end, result)
                    except MailsyncError as exc:  # e.g. the secret cannot be resolved
                        broken.add(sink.name)
                        result.errors.append(f"sink '{sink.name}': {exc}")
                        self._settle(sink, [], [], [], [r["id"] for r in rows])
                        continue
                    progressed = True
                    now = self.clock()
                if self.clock() >= end:
                    break
                if progressed:
                    continue
                wakes = []
                for sink in chosen:
                    due = None if sink.name in broken else self._next_due(sink.name)
                    if due is not None:
                        wakes.append(max(due, self.paused.get(sink.name, 0.0)))
                if not wakes or min(wakes) >= end:
                    break
                self.sleep(max(0.0, min(wakes) - self.clock()) + 0.001)
        finally:
            for t in self._transports.values():
                t.close()
        result.pending = self._pending([s.name for s in chosen])
        result.seconds = time.perf_counter() - t0
        return result


def retry_dead(store: Store, *, sink: str | None = None, now: float | None = None) -> int:
    """Dead letters back to pending with a fresh attempt count; returns how many."""
    with UnitOfWork(store) as uow:
        stmt = update(CrmOutbox).where(CrmOutbox.state == "dead").values(
            state="pending", attempts=0, next_attempt_at=now if now is not None else time.time(),
            lease_until=None, lease_owner=None)
        if sink:
            stmt = stmt.where(CrmOutbox.sink == sink)
        n = uow.session.execute(stmt).rowcount or 0
        uow.commit()
        return n


def outbox_summary(store: Store) -> dict:
    """Counts per sink and state, and the dead letters (without payloads)."""
    with UnitOfWork(store) as uow:
        s = uow.session
        counts = s.execute(select(CrmOutbox.sink, CrmOutbox.state, func.count())
                           .group_by(CrmOutbox.sink, CrmOutbox.state)).all()
        dead = s.execute(select(CrmOutbox.id, CrmOutbox.sink, CrmOutbox.record_type, CrmOutbox.record_id,
                                CrmOutbox.op, CrmOutbox.attempts, CrmOutbox.last_error)
                         .where(CrmOutbox.state == "dead").order_by(CrmOutbox.id)).mappings().all()
        retrying = s.execute(select(CrmOutbox.sink, func.count(), func.min(CrmOutbox.next_attempt_at))
                             .where(CrmOutbox.state == "pending", CrmOutbox.attempts > 0)
                             .group_by(CrmOutbox.sink)).all()
    sinks: dict[str, dict] = {}
    for name, state, n in counts:
        sinks.setdefault(name, {"pending": 0, "dead": 0, "retrying": 0, "next_retry": None})[state] = n
    for name, n, at in retrying:
        sinks.setdefault(name, {"pending": 0, "dead": 0, "retrying": 0, "next_retry": None})
        sinks[name]["retrying"] = n
        sinks[name]["next_retry"] = at
    return {"sinks": sinks, "dead": [dict(d) for d in dead]}
