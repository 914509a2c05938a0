"""Derived records in the store: contacts, activities and companies, diffed by digest.

Owns: writing what extract.extract() returned against what crm_contacts / crm_activities /
crm_companies hold (an unchanged digest is no change; a record no longer derived is deleted), the
company records of every domain whose contacts changed, and the list of changes that the outbox
rows are made from: ``(record type, id, "upsert" | "delete", record | None, previous digest, digest)``.
Must not: derive a record (extract.py), or write the outbox (enqueue.py).
"""

from __future__ import annotations

import json

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mailsync.crm import extract
from mailsync.crm.models import CrmActivity, CrmCompany, CrmContact
from mailsync.crm.queries import chunks, insert_ignore
from mailsync.crm.records import canonical_json, digest

__all__ = ["Change", "apply_records", "update_companies"]

Change = tuple[str, str, str, "dict | None", "str | None", str]  # type, id, op, record, previous digest, digest


def apply_records(session: Session, records: extract.Records, dirty: set[str] | None,
                  half_life_days: float) -> list[Change]:
    """Store the derived records of the ``dirty`` addresses (None: of everyone) and their companies;
    returns the changes."""
    changes: list[Change] = []
    domains = _contacts(session, records, dirty, changes)
    _activities(session, records, dirty, changes)
    update_companies(session, None if dirty is None else domains, half_life_days, changes)
    return changes


def _contacts(session: Session, records: extract.Records, dirty: set[str] | None, changes: list[Change]) -> set[str]:
    """Contacts written; returns the company domains they touched (before and after)."""
    old: dict[str, tuple[str, str, str | None]] = {}  # address -> (id, digest, company)
    cols = select(CrmContact.address, CrmContact.id, CrmContact.digest, CrmContact.company_domain)
    if dirty is None:
        old = {a: (i, d, c) for a, i, d, c in session.execute(cols)}
    else:
        for chunk in chunks(sorted(dirty)):
            old.update({a: (i, d, c) for a, i, d, c in session.execute(cols.where(CrmContact.address.in_(chunk)))})
    domains: set[str] = set()
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
    for chunk in chunks([a for a, _ in gone_contacts]):
        session.execute(delete(CrmContact).where(CrmContact.address.in_(chunk)))
    for r in upd_rows:
        session.execute(update(CrmContact).where(CrmContact.address == r["address"]).values(
            id=r["id"], company_domain=r["company_domain"], digest=r["digest"], data=r["data"]))
    insert_ignore(session, CrmContact.__table__, new_rows, None)
    return domains


def _activities(session: Session, records: extract.Records, dirty: set[str] | None, changes: list[Change]) -> None:
    olda: dict[str, str] = {}
    if dirty is None:
        olda = dict(session.execute(select(CrmActivity.id, CrmActivity.digest)).all())
    else:
        for chunk in chunks(sorted(dirty)):
            olda.update(session.execute(select(CrmActivity.id, CrmActivity.digest)
                                        .where(CrmActivity.contact_address.in_(chunk))).all())
    new_a, upd_a = [], []
    for aid, rec in records.activities.items():
        dg = digest(rec)
        prev = olda.pop(aid, None)
        if prev == dg:
            continue
        row = {"id": aid, "contact_address": rec["contact_address"], "message_key": records.message_keys.get(aid, ""),
               "kind": rec["kind"], "timestamp": rec["timestamp"], "latency": rec["latency_seconds"],
               "digest": dg, "data": canonical_json(rec)}
        (upd_a if prev is not None else new_a).append(row)
        changes.append(("activity", aid, "upsert", rec, prev, dg))
    gone_a = sorted(olda.items())
    for aid, dg in gone_a:
        changes.append(("activity", aid, "delete", None, dg, "deleted"))
    for chunk in chunks([a for a, _ in gone_a]):
        session.execute(delete(CrmActivity).where(CrmActivity.id.in_(chunk)))
    for r in upd_a:
        session.execute(update(CrmActivity).where(CrmActivity.id == r["id"]).values(
            {k: v for k, v in r.items() if k != "id"}))
    insert_ignore(session, CrmActivity.__table__, new_a, None)


def update_companies(session: Session, domains: set[str] | None, half_life_days: float,
                     changes: list[Change]) -> None:
    """The company records of these domains (None: every domain) from their contacts, stored."""
    s = session
    if domains is None:
        domains = set(s.scalars(select(CrmContact.company_domain).distinct()
                                .where(CrmContact.company_domain.is_not(None))).all())
        domains |= set(s.scalars(select(CrmCompany.domain)).all())
    for chunk in chunks(sorted(domains)):
        contacts = [json.loads(t) for t in s.scalars(select(CrmContact.data)
                                                     .where(CrmContact.company_domain.in_(chunk))).all()]
        addrs = [c["address"] for c in contacts]
        latencies: list[dict] = []
        for ac in chunks(addrs):
            latencies.extend({"contact_address": a, "kind": "reply", "latency_seconds": lat}
                             for a, lat in s.execute(select(CrmActivity.contact_address, CrmActivity.latency)
                                                     .where(CrmActivity.contact_address.in_(ac),
                                                            CrmActivity.kind == "reply")))
        recs = extract.companies(contacts, latencies, half_life_days, domains=chunk)
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
