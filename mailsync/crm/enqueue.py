"""The outbox rows a CRM run writes: one per record change and sink that takes its type.

Owns: turning record changes (record_store.Change) into pending crm_outbox rows with an idempotency
key that changes whenever the record does, replacing a pending row of a record that changed again,
and the backfill a sink newly added to the config gets (every current record once).
Must not: send anything or touch a row a worker holds (outbox.py), or derive a record.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from mailsync.crm.models import CrmActivity, CrmCompany, CrmContact, CrmOutbox
from mailsync.crm.outbox import idempotency_key
from mailsync.crm.queries import State, chunks, insert_ignore
from mailsync.crm.record_store import Change
from mailsync.crm.records import canonical_json
from mailsync.crm.settings import SinkSettings

__all__ = ["backfill_new_sinks", "enqueue"]


def _row(sink: str, rtype: str, rid: str, op: str, key: str, payload: str, now: float) -> dict:
    return {"sink": sink, "record_type": rtype, "record_id": rid, "op": op, "idempotency_key": key,
            "payload": payload, "state": "pending", "attempts": 0, "next_attempt_at": now, "lease_until": None,
            "lease_owner": None, "last_error": None, "created_at": now}


def enqueue(session: Session, sinks: Sequence[SinkSettings], changes: list[Change], now: float,
            counts: Counter) -> int:
    """Queue each change for each sink that takes its type; ``counts`` gets "type:op" -> n.
    Returns the rows written."""
    if not sinks or not changes:
        counts.update(f"{t}:{op}" for t, _, op, _, _, _ in changes)
        return 0
    rows = []
    supersede: dict[str, list[str]] = defaultdict(list)
    for rtype, rid, op, rec, prev, dg in changes:
        counts[f"{rtype}:{op}"] += 1
        payload = canonical_json(rec) if rec is not None else json.dumps({"id": rid})
        for sink in sinks:
            if rtype not in sink.records:
                continue
            supersede[sink.name].append(rid)
            rows.append(_row(sink.name, rtype, rid, op, idempotency_key(sink.name, rtype, rid, op, dg, prev),
                             payload, now))
    _supersede(session, supersede, now)
    insert_ignore(session, CrmOutbox.__table__, rows, None)
    return len(rows)


def _supersede(session: Session, by_sink: dict[str, list[str]], now: float) -> None:
    """Pending rows for a record that changes again are replaced by the newer change (unless a
    worker is sending them right now); dead letters stay until retried."""
    for sink, ids in by_sink.items():
        for chunk in chunks(sorted(set(ids))):
            session.execute(delete(CrmOutbox).where(
                CrmOutbox.sink == sink, CrmOutbox.state == "pending", CrmOutbox.record_id.in_(chunk),
                or_(CrmOutbox.lease_until.is_(None), CrmOutbox.lease_until < now)))


def backfill_new_sinks(session: Session, state: State, sinks: Sequence[SinkSettings], *, rebuild: bool,
                       now: float) -> int:
    """A sink added to the config gets every current record once; returns the rows written."""
    names = sorted(s.name for s in sinks)
    known = state.get("sinks")
    state.set("sinks", names)
    if known is None:
        known = names if rebuild else []  # first run: everything is new anyway
    new = [s for s in sinks if s.name not in known]
    if not new:
        return 0
    rows = []
    for model, rtype in ((CrmContact, "contact"), (CrmCompany, "company"), (CrmActivity, "activity")):
        wanted = [s for s in new if rtype in s.records]
        if not wanted:
            continue
        for rid, dg, data in session.execute(select(model.id, model.digest, model.data)):
            for sink in wanted:
                rows.append(_row(sink.name, rtype, rid, "upsert",
                                 idempotency_key(sink.name, rtype, rid, "upsert", dg, "backfill"), data, now))
    insert_ignore(session, CrmOutbox.__table__, rows, None)
    return len(rows)
