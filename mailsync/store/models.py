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
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from sqlalchemy import (
    BigInteger,
    DateTime,
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
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)


class Placement(Base):
    __tablename__ = "placements"
    __table_args__ = (
        UniqueConstraint("folder_id", "uid", name="uq_placements_folder_uid"),
        Index("ix_placements_body", "body_sha256"),
    )

    id: Mapped[intpk]
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"))
    uid: Mapped[imapnum]
    body_sha256: Mapped[str] = mapped_column(ForeignKey("bodies.sha256"))
    flags: Mapped[str] = mapped_column(Text, default="")  # sorted, space-separated
    modseq: Mapped[int | None] = mapped_column(BigInteger)
    internaldate: Mapped[str] = mapped_column(String(40))  # ISO 8601 with the server's offset
    size: Mapped[int] = mapped_column(BigInteger)


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
    error: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)  # e.g. "folder X put aside: UIDVALIDITY changed"
