"""Repositories: the queries and writes of the store, each taking the caller's Session.

Owns: SQL for accounts, folders, bodies, placements and sync runs. Must not: commit, roll back or
open sessions (see uow.py), nor speak IMAP.

Bulk paths (placements of a whole folder, a batch of bodies) use Core statements with executemany:
the ORM's per-object bookkeeping is too slow for 20,000-message folders.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from mailsync.store.models import Account, Body, Folder, Placement, SyncRun, utcnow


def text_to_flags(text: str) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


# --- accounts ---------------------------------------------------------------------------------

def get_or_create_account(session: Session, name: str, host: str, username: str) -> Account:
    acc = session.scalars(select(Account).where(Account.name == name)).one_or_none()
    if acc is None:
        acc = Account(name=name, host=host, username=username)
        session.add(acc)
        session.flush()
    elif (acc.host, acc.username) != (host, username):
        acc.host, acc.username = host, username
    return acc


def list_accounts(session: Session) -> Sequence[Account]:
    return session.scalars(select(Account).order_by(Account.name)).all()


def find_account(session: Session, name: str) -> Account | None:
    return session.scalars(select(Account).where(Account.name == name)).one_or_none()


# --- folders ----------------------------------------------------------------------------------

def folders_of(session: Session, account_id: int, *, gone: bool = False) -> Sequence[Folder]:
    stmt = select(Folder).where(Folder.account_id == account_id)
    if not gone:
        stmt = stmt.where(Folder.status != "gone")
    return session.scalars(stmt.order_by(Folder.name)).all()


def get_folder(session: Session, folder_id: int) -> Folder:
    return session.get_one(Folder, folder_id)


# --- bodies -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NewBody:
    sha256: str
    size: int
    message_id: str | None
    data: bytes


def _insert_ignore(session: Session, table, rows: list[dict], conflict_cols: list[str]) -> None:
    """INSERT rows, skipping those whose `conflict_cols` already exist (SQLite and PostgreSQL)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:  # pragma: no cover - other backends: look up first, insert the rest
        existing = set(session.scalars(select(table.c[conflict_cols[0]]).where(
            table.c[conflict_cols[0]].in_([r[conflict_cols[0]] for r in rows]))))
        rows = [r for r in rows if r[conflict_cols[0]] not in existing]
        if rows:
            session.execute(insert(table), rows)
        return
    session.execute(dialect_insert(table).on_conflict_do_nothing(index_elements=conflict_cols), rows)


def store_bodies(session: Session, bodies: Sequence[NewBody]) -> None:
    """Store each body once: rows whose SHA-256 is already in the store are skipped."""
    unique: dict[str, NewBody] = {b.sha256: b for b in bodies}
    _insert_ignore(session, Body.__table__,
                   [{"sha256": b.sha256, "size": b.size, "message_id": b.message_id, "data": b.data}
                    for b in unique.values()], ["sha256"])


def delete_orphan_bodies(session: Session, candidates: Iterable[str]) -> int:
    """Delete those of the `candidates` bodies (sha256s) that no placement refers to any more.

    Only the bodies of placements just removed can have become orphans, so the check costs what
    changed, not the size of the store."""
    candidates = sorted(set(candidates))
    n = 0
    for i in range(0, len(candidates), 500):
        chunk = candidates[i:i + 500]
        used = select(Placement.id).where(Placement.body_sha256 == Body.sha256).exists()
        n += session.execute(delete(Body).where(Body.sha256.in_(chunk), ~used)).rowcount or 0
    return n


def live_placements_for(session: Session, folder_id: int, uids: Iterable[int],
                        ids: Iterable[int] = ()) -> dict[int, Placement]:
    """The live placements of the folder with one of `uids`, or one of the placement `ids`."""
    out: dict[int, Placement] = {}
    uids, ids = sorted(set(uids)), sorted(set(ids))
    for i in range(0, len(uids), 500):
        for p in session.scalars(select(Placement).where(Placement.folder_id == folder_id, *LIVE,
                                                         Placement.uid.in_(uids[i:i + 500]))):
            out[p.uid] = p
    for i in range(0, len(ids), 500):
        for p in session.scalars(select(Placement).where(Placement.folder_id == folder_id, *LIVE,
                                                         Placement.id.in_(ids[i:i + 500]))):
            out[p.uid] = p
    return out


def pending_flag_placements(session: Session, account_id: int) -> dict[int, set[int]]:
    """folder id -> ids of its placements with a flag change waiting to be pushed (from the journal)."""
    from mailsync.store.models import PendingOp

    rows = session.execute(select(Placement.folder_id, Placement.id).join(
        PendingOp, PendingOp.placement_id == Placement.id).where(
        PendingOp.account_id == account_id, PendingOp.kind == "flags",
        PendingOp.state.in_(("pending", "sent")))).all()
    out: dict[int, set[int]] = {}
    for folder_id, pid in rows:
        out.setdefault(folder_id, set()).add(pid)
    return out


# --- placements -------------------------------------------------------------------------------

LIVE = (Placement.uid.isnot(None), Placement.tombstone_run.is_(None))  # on the server, as far as we know


def uid_flags(session: Session, folder_id: int) -> dict[int, str]:
    """uid -> flags text of every live placement in the folder."""
    return dict(session.execute(
        select(Placement.uid, Placement.flags).where(Placement.folder_id == folder_id, *LIVE)).all())


def live_placements(session: Session, folder_id: int) -> dict[int, Placement]:
    return {p.uid: p for p in session.scalars(select(Placement).where(Placement.folder_id == folder_id, *LIVE))}


def tombstone(session: Session, folder_id: int, uids: Iterable[int], run_id: int) -> int:
    uids = sorted(uids)
    n = 0
    for i in range(0, len(uids), 500):
        n += session.execute(update(Placement).where(
            Placement.folder_id == folder_id, Placement.uid.in_(uids[i:i + 500]),
            Placement.tombstone_run.is_(None)).values(tombstone_run=run_id)).rowcount or 0
    return n


def bodies_by_message_id(session: Session, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """(Message-ID, size) -> sha256 of a stored body, for the keys that name exactly one body."""
    keys = list(set(keys))
    found: dict[tuple[str, int], set[str]] = {}
    for i in range(0, len(keys), 500):
        chunk = set(keys[i:i + 500])
        ids = {k[0] for k in chunk}
        for mid, size, sha in session.execute(select(Body.message_id, Body.size, Body.sha256).where(
                Body.message_id.in_(ids))):
            if (mid, size) in chunk:
                found.setdefault((mid, size), set()).add(sha)
    return {k: next(iter(v)) for k, v in found.items() if len(v) == 1}


def has_bodies(session: Session) -> bool:
    return session.execute(select(Body.sha256).limit(1)).first() is not None


def add_placements(session: Session, rows: list[dict]) -> None:
    """rows: dicts with folder_id, uid, body_sha256, flags, modseq, internaldate, size."""
    _insert_ignore(session, Placement.__table__, rows, ["folder_id", "uid"])


@dataclass(frozen=True, slots=True)
class ExportRow:
    account: str
    folder: str
    uidvalidity: int | None
    uid: int
    message_id: str | None
    flags: list[str]
    size: int
    internaldate: str
    sha256: str


def export_rows(session: Session, account: str | None = None, folder: str | None = None) -> Iterator[ExportRow]:
    stmt = (select(Account.name, Folder.name, Folder.uidvalidity, Placement.uid, Body.message_id,
                   Placement.flags, Placement.size, Placement.internaldate, Body.sha256)
            .join(Folder, Folder.account_id == Account.id)
            .join(Placement, Placement.folder_id == Folder.id)
            .join(Body, Body.sha256 == Placement.body_sha256)
            .where(*LIVE)
            .order_by(Account.name, Folder.name, Placement.uid))
    if account is not None:
        stmt = stmt.where(Account.name == account)
    if folder is not None:
        stmt = stmt.where(Folder.name == folder)
    for row in session.execute(stmt.execution_options(yield_per=2000)):
        yield ExportRow(row[0], row[1], row[2], row[3], row[4], sorted(text_to_flags(row[5])),
                        row[6], row[7], row[8])


# --- sync runs (audit log) --------------------------------------------------------------------

def start_run(session: Session, account_id: int) -> SyncRun:
    run = SyncRun(account_id=account_id, started_at=utcnow(), status="running")
    session.add(run)
    session.flush()
    return run


def last_run(session: Session, account_id: int, *, status: str | None = None) -> SyncRun | None:
    stmt = select(SyncRun).where(SyncRun.account_id == account_id)
    if status:
        stmt = stmt.where(SyncRun.status == status)
    return session.scalars(stmt.order_by(SyncRun.id.desc()).limit(1)).one_or_none()


def folder_counts(session: Session, account_id: int) -> dict[int, int]:
    return dict(session.execute(
        select(Placement.folder_id, func.count()).join(Folder, Folder.id == Placement.folder_id)
        .where(Folder.account_id == account_id, *LIVE).group_by(Placement.folder_id)).all())


def finish_run(run: SyncRun, *, status: str, error: str | None = None, when: datetime | None = None) -> None:
    run.status = status
    run.error = error
    run.finished_at = when or utcnow()
