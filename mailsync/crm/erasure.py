"""Erasure of one address from the CRM (``mailsync crm forget``).

Owns: deleting the address's contact and activities and their undelivered outbox rows, keeping its
salted hash so it is never derived again, rewriting the stored facts that name it (facts.py), and
the audit_events rows that record the erasure with the hash, never the address.
Must not: derive records or queue the deletions (the pipeline's run does, from the changes returned
here).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailsync.crm.facts import FactsCache, Forgotten, rewrite_address
from mailsync.crm.models import CrmActivity, CrmContact, CrmForgotten, CrmOutbox
from mailsync.crm.queries import chunks
from mailsync.crm.record_store import Change
from mailsync.crm.records import forget_hash
from mailsync.store.models import AuditEvent

__all__ = ["Erased", "audit", "erase"]


@dataclass
class Erased:
    hash: str
    contact: bool
    company: str | None  # the erased contact's company domain, whose record changes
    activities: int
    changes: list[Change]


def erase(session: Session, address: str, forgotten: Forgotten, cache: FactsCache) -> Erased:
    """The contact and activities of ``address`` deleted (the changes returned, to be queued), its
    hash kept, and the facts that name it rewritten with a placeholder."""
    h = forget_hash(forgotten.salt, address)
    if h not in forgotten.hashes:
        session.add(CrmForgotten(hash=h))
    forgotten.add(address)
    contact = session.execute(select(CrmContact.id, CrmContact.company_domain)
                              .where(CrmContact.address == address)).first()
    act_ids = session.scalars(select(CrmActivity.id).where(CrmActivity.contact_address == address)).all()
    changes: list[Change] = []
    # undelivered changes of these records carry the address: they go, deletions replace them
    for chunk in chunks(list(act_ids) + ([contact[0]] if contact else [])):
        session.execute(delete(CrmOutbox).where(CrmOutbox.record_id.in_(chunk)))
    for chunk in chunks(list(act_ids)):
        session.execute(delete(CrmActivity).where(CrmActivity.id.in_(chunk)))
    for aid in act_ids:
        changes.append(("activity", aid, "delete", None, "forget", "deleted"))
    if contact:
        session.execute(delete(CrmContact).where(CrmContact.address == address))
        changes.append(("contact", contact[0], "delete", None, "forget", "deleted"))
    rewrite_address(session, cache, address, forgotten.placeholder(address))
    return Erased(hash=h, contact=contact is not None, company=contact[1] if contact else None,
                  activities=len(act_ids), changes=changes)


def audit(session: Session, account_ids: Iterable[int], erased: Erased) -> None:
    """The erasure goes to the audit log (audit_events, one row per account: CRM records derive
    from all of them) with the salted hash, never the address."""
    detail = (f"crm forget: erased {'a contact' if erased.contact else 'no contact'} and {erased.activities} "
              f"activities; salted hash {erased.hash} kept so the address is never derived again")
    for account_id in sorted(account_ids):
        session.add(AuditEvent(account_id=account_id, kind="crm_forget", detail=detail))
