"""SQLAlchemy 2.0 typed models of the local store.

Owns: the table layout (mirrored by the Alembic migrations in migrations/versions; a test checks
that the two agree). Must not: hold behaviour beyond small derived properties; queries live in
repositories.py, transactions in uow.py.

Layout:
  accounts    one row per configured account (by name)
  folders     one row per server folder: names, special-use, checkpoints (UIDVALIDITY, UIDNEXT,
              HIGHESTMODSEQ), the resumable download mark `fetched_uid`, and a status
  bodies      raw messages, stored once, content-addressed by SHA-256
  placements  (folder, uid) -> body, with flags, modseq, internaldate and size
  sync_runs   audit log of sync runs: started, finished, counts, error
  pending_ops local changes waiting for the server (flags, moves, deletes, appends, folder ops)
  audit_events conflicts, fallbacks and UIDVALIDITY decisions
  watch_state the watch daemon's health per account (connected, push mode, last event and sync, lag)
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

intpk = Annotated[int, mapped_column(Integer, primary_key=True)]
# IMAP UIDs and MODSEQs are unsigned 32- and 63-bit numbers: BigInteger everywhere.
imapnum = Annotated[int, mapped_column(BigInteger)]
timestamp = Annotated[datetime, mapped_column(DateTime(timezone=True))]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[intpk]
    name: Mapped[str] = mapped_column(String(200), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    username: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[timestamp] = mapped_column(default=utcnow)


class Folder(Base):
    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("account_id", "raw_name", name="uq_folders_account_raw"),)

    id: Mapped[intpk]
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(1000))  # decoded from modified UTF-7
    raw_name: Mapped[str] = mapped_column(String(1000))  # as the server names it on the wire
    delimiter: Mapped[str | None] = mapped_column(String(1))
    special_use: Mapped[str | None] = mapped_column(String(40))  # e.g. "\Sent"
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    # Checkpoints: moved only in the transaction that stores the data they cover.
    uidnext: Mapped[int | None] = mapped_column(BigInteger)  # all UIDs below are mirrored
    highestmodseq: Mapped[int | None] = mapped_column(BigInteger)
    messages: Mapped[int | None] = mapped_column(BigInteger)  # EXISTS at that same SELECT
    fetched_uid: Mapped[int] = mapped_column(BigInteger, default=0)  # download mark within a run
    status: Mapped[str] = mapped_column(String(20), default="ok")  # ok | aside | gone
    status_reason: Mapped[str | None] = mapped_column(Text)
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Body(Base):
    __tablename__ = "bodies"

    # Content-addressed: the key is the SHA-256 of the raw message (lowercase hex), so a body is
    # stored once and a batch of placements can name its bodies without reading ids back.
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    # The raw message, or b"" when it is in a pack file (pack is set; see mailsync.store.packs).
    # Read it through repositories.read_body, never from here.
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    pack: Mapped[int | None] = mapped_column(Integer)
    pack_offset: Mapped[int | None] = mapped_column(BigInteger)  # where the message bytes start


class Placement(Base):
    __tablename__ = "placements"
    __table_args__ = (
        UniqueConstraint("folder_id", "uid", name="uq_placements_folder_uid"),
        Index("ix_placements_body", "body_sha256"),
        Index("ix_placements_tombstone", "tombstone_run"),
    )

    id: Mapped[intpk]
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    uid: Mapped[int | None] = mapped_column(BigInteger)  # None: a local append/move not yet on the server
    body_sha256: Mapped[str] = mapped_column(ForeignKey("bodies.sha256"))
    flags: Mapped[str] = mapped_column(Text, default="")  # the local view: sorted, space-separated
    # The flags last agreed with the server (the merge base); flags != base_flags is a local change
    # waiting to be pushed. None: no agreed state yet (e.g. after a UIDVALIDITY re-match).
    base_flags: Mapped[str | None] = mapped_column(Text)
    # Set when the server expunged it: a tombstone kept for one sync run, so that the same message
    # appearing in another folder becomes a move of this placement rather than a new one.
    tombstone_run: Mapped[int | None] = mapped_column(Integer)
    modseq: Mapped[int | None] = mapped_column(BigInteger)
    internaldate: Mapped[str] = mapped_column(String(40))  # ISO 8601 with the server's offset
    size: Mapped[int] = mapped_column(BigInteger)


class PendingOp(Base):
    """A local change waiting to reach the server (the journal of the store-to-server direction).

    Written in the same transaction as the local state it changes. States: pending (not sent),
    sent (the command may have reached the server: settle by looking at the server before redoing),
    done, failed (with error; shown by status).
    """

    __tablename__ = "pending_ops"

    id: Mapped[intpk]
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # flags | move | delete | append | mkdir | rmdir | rename
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("folders.id", ondelete="SET NULL"))
    placement_id: Mapped[int | None] = mapped_column(ForeignKey("placements.id", ondelete="SET NULL"))
    args: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    state: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[timestamp] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """Things a user may need to know happened: conflicts and how they were settled, fallbacks to the
    full comparison, UIDVALIDITY decisions, folders renamed or set aside."""

    __tablename__ = "audit_events"

    id: Mapped[intpk]
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[timestamp] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(30))
    folder: Mapped[str | None] = mapped_column(String(1000))
    uid: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(Text)


class SyncRun(Base):
    __tablename__ = "sync_runs"

    id: Mapped[intpk]
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[timestamp] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | ok | failed
    folders: Mapped[int] = mapped_column(Integer, default=0)
    new_messages: Mapped[int] = mapped_column(Integer, default=0)
    flag_changes: Mapped[int] = mapped_column(Integer, default=0)
    expunged: Mapped[int] = mapped_column(Integer, default=0)
    bytes_fetched: Mapped[int] = mapped_column(BigInteger, default=0)
    bodies_downloaded: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    moves: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # server-side moves mirrored without download
    pushed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # local changes settled on the server
    conflicts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)  # e.g. "folder X put aside: UIDVALIDITY changed"


class WatchState(Base):
    """What the watch daemon (mailsync.push) last knew of one account; `mailsync status` reads it.
    Written by the daemon only; a stale heartbeat_at means the daemon is no longer running."""

    __tablename__ = "watch_state"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    connected: Mapped[bool] = mapped_column(Boolean, default=False)  # every push connection is live
    mode: Mapped[str | None] = mapped_column(String(10))  # NOTIFY | IDLE | poll
    connections: Mapped[int] = mapped_column(Integer, default=0)  # push connections open
    last_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event: Mapped[str | None] = mapped_column(Text)  # what woke the last sync
    last_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # last successful sync
    lag_seconds: Mapped[float | None] = mapped_column(Float)  # event -> synced, of the last sync
    pending_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # oldest event not synced
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failing: Mapped[str | None] = mapped_column(Text)  # credentials refused: why (retried slowly)
    daemon_pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# The CRM layer's tables (crm_*) live on this Base too, declared in mailsync.crm.models, which is
# not imported here: a sync without the CRM layer does not need them (25-55 ms of declarations).
# mailsync.store.schema.schema_metadata() is Base.metadata with them, for whatever needs the whole
# schema (creating it, comparing it with the migrations).
