"""SQLAlchemy models of the CRM tables (on mailsync.store.models.Base; migration 0002_crm).

Owns: the layout of every ``crm_*`` table. Must not: hold behaviour (queries live in the steps of a
run -- queries.py, sources.py, facts.py, threads.py, derive.py, record_store.py, enqueue.py -- and
in outbox.py), or reference the sync engine's tables beyond foreign keys to ``accounts``.

Layout:
  crm_state         key -> value: the installation salt, settings and identity fingerprints, the
                    blocklist and sinks last applied
  crm_marks         per account: the highest placement id already read (the incremental mark)
  crm_sources       one row per placement read: its message key, folder role, \\Draft/\\Answered and
                    INTERNALDATE -- compared with placements to find what changed
  crm_messages      one row per message (by key): the parsed header facts (JSON) and its thread id
  crm_participants  message key <-> canonical address (From, To, Cc, Bcc, bounce recipients)
  crm_refs          message key <-> each id it threads under (References, In-Reply-To, bounce)
  crm_contacts      contact records (JSON) by canonical address, with a digest of their content
  crm_companies     company records by registrable domain
  crm_activities    activity records: one per (message, contact, kind)
  crm_forgotten     salted hashes of erased addresses (``crm forget``): never derived again
  crm_outbox        record changes waiting for each sink, written with the change: pending,
                    then deleted once delivered, or dead after max_attempts
  crm_sink_refs     per CRM sink (hubspot, salesforce): a record's id -> the id the CRM gave its
                    object (and, for a contact, its company's), written with the outbox row's
                    settlement; what deletions and associations are addressed by
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mailsync.store.models import Base, utcnow

KEY = 32  # message keys, record digests
ADDR = 320  # RFC 5321 limit of an address
MSGID = 998  # a header line


class CrmState(Base):
    __tablename__ = "crm_state"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class CrmMark(Base):
    __tablename__ = "crm_marks"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    placement_mark: Mapped[int] = mapped_column(BigInteger, default=0)  # placements up to this id are read
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=utcnow)


class CrmSource(Base):
    __tablename__ = "crm_sources"

    # No foreign key to placements: a placement that disappears must leave this row behind, which is
    # how its removal is noticed.
    placement_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    folder_id: Mapped[int] = mapped_column(Integer)  # where the placement was when read
    message_key: Mapped[str] = mapped_column(String(KEY), index=True)
    body_sha256: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(10))  # sent | drafts | junk | trash | archive | inbox | other
    draft: Mapped[bool] = mapped_column(Boolean, default=False)
    answered: Mapped[bool] = mapped_column(Boolean, default=False)
    internaldate: Mapped[int] = mapped_column(BigInteger, default=0)  # seconds since the epoch


class CrmMessage(Base):
    __tablename__ = "crm_messages"

    key: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    message_id: Mapped[str | None] = mapped_column(String(MSGID), index=True)
    date: Mapped[int | None] = mapped_column(BigInteger)  # Date header, seconds since the epoch
    # canonical: who sent this copy, as identity learns it from \Sent (MessageFacts.sender_of_copy:
    # Resent-From, else From; NULL for a machine report)
    from_address: Mapped[str | None] = mapped_column(String(ADDR), index=True)
    list_mailto: Mapped[bool] = mapped_column(Boolean, default=False)  # List-(Un)Subscribe mailto, List-Post/-Id
    thread_id: Mapped[str | None] = mapped_column(String(KEY))
    facts: Mapped[str] = mapped_column(Text)  # headers.MessageFacts.to_json()


class CrmParticipant(Base):
    __tablename__ = "crm_participants"
    __table_args__ = (Index("ix_crm_participants_address", "address"),)

    message_key: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    address: Mapped[str] = mapped_column(String(ADDR), primary_key=True)


class CrmRef(Base):
    __tablename__ = "crm_refs"
    __table_args__ = (Index("ix_crm_refs_ref_id", "ref_id"),)

    message_key: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    ref_id: Mapped[str] = mapped_column(String(MSGID), primary_key=True)


class CrmContact(Base):
    __tablename__ = "crm_contacts"

    id: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    address: Mapped[str] = mapped_column(String(ADDR), unique=True)
    company_domain: Mapped[str | None] = mapped_column(String(255), index=True)
    digest: Mapped[str] = mapped_column(String(KEY))
    data: Mapped[str] = mapped_column(Text)  # the record, JSON


class CrmCompany(Base):
    __tablename__ = "crm_companies"

    id: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    digest: Mapped[str] = mapped_column(String(KEY))
    data: Mapped[str] = mapped_column(Text)


class CrmActivity(Base):
    __tablename__ = "crm_activities"

    id: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    contact_address: Mapped[str] = mapped_column(String(ADDR), index=True)
    message_key: Mapped[str] = mapped_column(String(KEY), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    timestamp: Mapped[str] = mapped_column(String(20), index=True)  # ISO 8601 UTC
    latency: Mapped[float | None] = mapped_column(Float)  # reply latency, for company medians
    digest: Mapped[str] = mapped_column(String(KEY))
    data: Mapped[str] = mapped_column(Text)


class CrmForgotten(Base):
    __tablename__ = "crm_forgotten"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CrmOutbox(Base):
    __tablename__ = "crm_outbox"
    __table_args__ = (Index("ix_crm_outbox_sink_state", "sink", "state", "id"),
                      Index("ix_crm_outbox_record", "record_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sink: Mapped[str] = mapped_column(String(100))
    record_type: Mapped[str] = mapped_column(String(20))  # contact | company | activity
    record_id: Mapped[str] = mapped_column(String(KEY))
    op: Mapped[str] = mapped_column(String(10))  # upsert | delete
    idempotency_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)  # the record as derived (JSON); mapped at delivery
    state: Mapped[str] = mapped_column(String(10), default="pending")  # pending | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)  # seconds since the epoch
    lease_until: Mapped[float | None] = mapped_column(Float)  # a worker is sending it until then
    lease_owner: Mapped[str | None] = mapped_column(String(100))  # "host:pid"
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=0.0)


class CrmSinkRef(Base):
    __tablename__ = "crm_sink_refs"

    sink: Mapped[str] = mapped_column(String(100), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    remote_id: Mapped[str] = mapped_column(String(64))  # the CRM's id of the object
    link_id: Mapped[str | None] = mapped_column(String(64))  # a contact's company in the CRM
