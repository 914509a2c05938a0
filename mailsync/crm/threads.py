"""Step 5 of a CRM run: JWZ thread ids of the id-connected components the changed messages touch.

Owns: finding a component (messages linked through Message-IDs and references), recomputing its
thread ids (jwz through extract.thread_ids; a message without a Date sorts by its first copy's
INTERNALDATE) and storing those that changed.
Must not: parse a body (facts.py) or derive a record (derive.py).
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from mailsync.crm import extract
from mailsync.crm.facts import FactsCache
from mailsync.crm.models import CrmMessage, CrmRef, CrmSource
from mailsync.crm.queries import chunks, ids_of, message_keys

__all__ = ["component", "recompute_threads"]


def component(session: Session, keys: set[str], extra_ids: set[str]) -> set[str]:
    """Every message connected to ``keys`` (or to ``extra_ids``) through Message-IDs and refs."""
    seen_keys: set[str] = set()
    seen_ids: set[str] = set()
    frontier_keys = set(keys)
    frontier_ids = set(extra_ids)
    while frontier_keys or frontier_ids:
        fk = sorted(frontier_keys - seen_keys)
        seen_keys |= set(fk)
        new_ids = ids_of(session, fk) | frontier_ids
        fi = sorted(new_ids - seen_ids)
        seen_ids |= set(fi)
        new_keys: set[str] = set()
        for chunk in chunks(fi):
            new_keys.update(session.scalars(select(CrmMessage.key).where(CrmMessage.message_id.in_(chunk))).all())
            new_keys.update(session.scalars(select(CrmRef.message_key).where(CrmRef.ref_id.in_(chunk))).all())
        frontier_keys = new_keys - seen_keys
        frontier_ids = set()
    return seen_keys


def recompute_threads(session: Session, keys: set[str] | None, extra_ids: set[str], cache: FactsCache,
                      thread_of: dict[str, str]) -> set[str]:
    """Recompute the thread ids of the components of ``keys`` (None: every message) into
    ``thread_of`` and the store; return the keys whose id changed."""
    comp = message_keys(session) if keys is None else component(session, keys, extra_ids)
    if not comp:
        return set()
    stored: dict[str, str | None] = {}
    dates: dict[str, int | None] = {}
    cols = select(CrmMessage.key, CrmMessage.thread_id, CrmMessage.date)
    stmts = [cols] if keys is None else [cols.where(CrmMessage.key.in_(c)) for c in chunks(sorted(comp))]
    for stmt in stmts:
        for k, tid, d in session.execute(stmt):
            stored[k] = tid
            dates[k] = d
    facts = cache.load(stored)
    first_seen = _min_internaldate(session, [k for k, d in dates.items() if d is None])
    tids = extract.thread_ids((facts[k], dates[k] if dates[k] is not None else first_seen.get(k, 0)) for k in facts)
    changed = {k for k, t in tids.items() if stored.get(k) != t}
    if changed:
        t = CrmMessage.__table__
        session.execute(update(t).where(t.c.key == bindparam("k")).values(thread_id=bindparam("t")),
                        [{"k": k, "t": tids[k]} for k in sorted(changed)])
    thread_of.update(tids)
    return changed


def _min_internaldate(session: Session, keys: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in chunks(sorted(keys)):
        out.update(session.execute(select(CrmSource.message_key, func.min(CrmSource.internaldate))
                                   .where(CrmSource.message_key.in_(chunk))
                                   .group_by(CrmSource.message_key)).all())
    return out
