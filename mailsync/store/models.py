"""SQLAlchemy 2.0 typed models of the local store, mapped onto the Core tables of tables.py.

Owns: the mapped classes (typed attributes, small derived properties) for the code that works with
objects: status, local changes, the watch daemon, the CRM layer. Must not: declare columns (tables.py
does, once, for these classes and for the Core statements of the sync engine), hold behaviour
beyond small derived properties, query (repositories.py) or run transactions (uow.py).

Importing this module imports sqlalchemy.orm: the sync engine does not, and must not need to.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import DeclarativeBase, Mapped, deferred

from mailsync.store import tables
from mailsync.store.tables import utcnow

__all__ = ["Account", "AuditEvent", "Base", "Body", "Folder", "PendingOp", "Placement", "SyncRun",
           "WatchState", "utcnow"]


class Base(DeclarativeBase):
    metadata = tables.metadata


class Account(Base):
    __table__ = tables.accounts

    id: Mapped[int]
    name: Mapped[str]
    host: Mapped[str]
    username: Mapped[str]
    created_at: Mapped[datetime]
    throttled_until: Mapped[datetime | None]
    throttle_reason: Mapped[str | None]
    throttle_count: Mapped[int]


class Folder(Base):
    __table__ = tables.folders

    id: Mapped[int]
    account_id: Mapped[int]
    name: Mapped[str]
    raw_name: Mapped[str]
    delimiter: Mapped[str | None]
    special_use: Mapped[str | None]
    mailboxid: Mapped[str | None]
    uidvalidity: Mapped[int | None]
    uidnext: Mapped[int | None]
    highestmodseq: Mapped[int | None]
    messages: Mapped[int | None]
    fetched_uid: Mapped[int]
    status: Mapped[str]
    status_reason: Mapped[str | None]
    last_synced_at: Mapped[datetime | None]
    left_out_age: Mapped[int | None]
    left_out_size: Mapped[int | None]
    limits: Mapped[str | None]


class Body(Base):
    __table__ = tables.bodies

    sha256: Mapped[str]
    size: Mapped[int]
    message_id: Mapped[str | None]
    # Read it through repositories.read_body, never from here (b"" when the body is in a pack).
    data: Mapped[bytes] = deferred(tables.bodies.c.data)
    pack: Mapped[int | None]
    pack_offset: Mapped[int | None]
    headers_only: Mapped[bool]


class Placement(Base):
    __table__ = tables.placements

    id: Mapped[int]
    folder_id: Mapped[int]
    uid: Mapped[int | None]
    body_sha256: Mapped[str]
    flags: Mapped[str]
    base_flags: Mapped[str | None]
    tombstone_run: Mapped[int | None]
    modseq: Mapped[int | None]
    internaldate: Mapped[str]
    size: Mapped[int]


class PendingOp(Base):
    """A local change waiting to reach the server (see tables.pending_ops for its states)."""

    __table__ = tables.pending_ops

    id: Mapped[int]
    account_id: Mapped[int]
    kind: Mapped[str]
    folder_id: Mapped[int | None]
    placement_id: Mapped[int | None]
    args: Mapped[str]
    state: Mapped[str]
    attempts: Mapped[int]
    error: Mapped[str | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]


class AuditEvent(Base):
    __table__ = tables.audit_events

    id: Mapped[int]
    account_id: Mapped[int]
    run_id: Mapped[int | None]
    at: Mapped[datetime]
    kind: Mapped[str]
    folder: Mapped[str | None]
    uid: Mapped[int | None]
    detail: Mapped[str]


class SyncRun(Base):
    __table__ = tables.sync_runs

    id: Mapped[int]
    account_id: Mapped[int]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str]
    folders: Mapped[int]
    new_messages: Mapped[int]
    flag_changes: Mapped[int]
    expunged: Mapped[int]
    bytes_fetched: Mapped[int]
    bodies_downloaded: Mapped[int]
    moves: Mapped[int]
    pushed: Mapped[int]
    conflicts: Mapped[int]
    error: Mapped[str | None]
    notes: Mapped[str | None]


class WatchState(Base):
    __table__ = tables.watch_state

    account_id: Mapped[int]
    connected: Mapped[bool]
    mode: Mapped[str | None]
    connections: Mapped[int]
    last_event_at: Mapped[datetime | None]
    last_event: Mapped[str | None]
    last_sync_at: Mapped[datetime | None]
    lag_seconds: Mapped[float | None]
    pending_since: Mapped[datetime | None]
    last_error: Mapped[str | None]
    last_error_at: Mapped[datetime | None]
    failing: Mapped[str | None]
    daemon_pid: Mapped[int | None]
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]


# The CRM layer's tables (crm_*) live on this Base too, declared in mailsync.crm.models, which is
# not imported here: a sync without the CRM layer does not need them (25-55 ms of declarations).
# mailsync.store.schema.schema_metadata() is Base.metadata with them, for whatever needs the whole
# schema (creating it, comparing it with the migrations).
