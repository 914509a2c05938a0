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

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from mailsync.errors import StoreError
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


# The three folder writes of every folder a sync downloads, as Core UPDATEs. Loading the Folder and
# flushing it through the ORM cost the store worker 1-3 ms of Python each time, holding the GIL the
# reader needs: a 20,000-message first sync took 40-75 ms longer (wall, medians of 12-16 rounds).
_FOLDERS = Folder.__table__


def advance_fetched_uid(session: Session, folder_id: int, top_uid: int) -> None:
    """Move the folder's download mark up to ``top_uid``; never down (rule C1)."""
    session.execute(update(_FOLDERS).where(_FOLDERS.c.id == folder_id, _FOLDERS.c.fetched_uid < top_uid)
                    .values(fetched_uid=top_uid))


def adopt_uidvalidity(session: Session, folder_id: int, uidvalidity: int) -> None:
    """Rule F3's adopt, for a folder without placements: its UIDVALIDITY is the server's from now
    on, and nothing has been downloaded under it. No change when it has that UIDVALIDITY already."""
    session.execute(update(_FOLDERS).where(_FOLDERS.c.id == folder_id, (_FOLDERS.c.uidvalidity != uidvalidity)
                                           | _FOLDERS.c.uidvalidity.is_(None))
                    .values(uidvalidity=uidvalidity, uidnext=None, highestmodseq=None, fetched_uid=0))


def mark_folder_synced(session: Session, folder_id: int, uidnext: int | None, highestmodseq: int | None,
                       messages: int, when: datetime) -> None:
    """The folder is in step with the server as of a SELECT that said ``uidnext``,
    ``highestmodseq`` and ``messages`` (EXISTS)."""
    session.execute(update(_FOLDERS).where(_FOLDERS.c.id == folder_id)
                    .values(uidnext=uidnext, highestmodseq=highestmodseq, messages=messages, last_synced_at=when))


# --- bodies -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NewBody:
    sha256: str
    size: int
    message_id: str | None
    data: bytes


def insert_rows(session: Session, table: str, columns: Sequence[str], rows: list[tuple],
                conflict: Sequence[str] | None = None) -> None:
    """The one bulk INSERT of the store and the CRM layer: tuples in ``columns`` order straight to
    the driver, many rows per statement; with ``conflict``, ON CONFLICT (those columns) DO NOTHING
    (SQLite and PostgreSQL both speak this form), so a row already there is skipped. Core's per-row
    parameter processing cost about 10 us a row, and the driver's executemany releases and retakes
    the GIL around every row, which stalls the thread reading the server; one multi-row statement
    per few hundred rows does not."""
    if not rows:
        return
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    group = "(" + ", ".join([mark] * len(columns)) + ")"
    names = ", ".join(f'"{c}"' for c in columns)
    head = f'INSERT INTO "{table}" ({names}) VALUES '
    tail = f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING" if conflict else ""
    step = max(1, _MAX_PARAMS // len(columns))
    for i in range(0, len(rows), step):
        chunk = rows[i:i + step]
        params = [v for row in chunk for v in row]
        conn.exec_driver_sql(head + ", ".join([group] * len(chunk)) + tail, tuple(params))


_MAX_PARAMS = 4000  # per statement (SQLite allows 32766 since 3.32, PostgreSQL 65535)
_BODY_COLUMNS = ("sha256", "size", "message_id", "data", "pack", "pack_offset")


def store_bodies(session: Session, bodies: Sequence[NewBody]) -> None:
    """Store each body once: bodies whose SHA-256 is already in the store are skipped. In a store
    with pack files the bytes are appended to a pack, and fsynced, before the rows that point at
    them are written (a crash in between leaves dead bytes, never a row without its body);
    otherwise they go into the rows.

    The bodies stay in the store until the caller's transaction ends, so that placements added in
    it can point at them: another sync's orphan clean-up (delete_orphan_bodies) cannot remove a body
    that was found here already stored and is about to gain a placement. SQLite: the write lock is
    taken before looking; PostgreSQL: the rows found are share-locked."""
    unique: dict[str, NewBody] = {b.sha256: b for b in bodies}
    if not unique:
        return
    conn = session.connection()
    dialect = conn.dialect.name
    if dialect == "sqlite":
        conn.exec_driver_sql("UPDATE bodies SET size = size WHERE 0")  # BEGIN + the write lock, no change
    packs = session.info.get("packs")
    keys = list(unique)
    if packs is not None:  # SQLite only: the write lock makes look-up and insert one step
        have = _existing_bodies(session, keys)
        new = [b for k, b in unique.items() if k not in have]
        where = packs.append([(b.sha256, b.data) for b in new])
        add_packed_bodies(session, [(b.sha256, b.size, b.message_id, p, o) for b, (p, o) in zip(new, where)])
        return
    todo = keys
    for _ in range(3):  # PostgreSQL: a body deleted between our insert and our lock is inserted again
        insert_rows(session, Body.__table__.name, _BODY_COLUMNS,
                    [(b.sha256, b.size, b.message_id, b.data, None, None) for b in (unique[k] for k in todo)],
                    ("sha256",))
        if dialect != "postgresql":
            return
        have = _existing_bodies(session, todo, share_lock=True)
        todo = [k for k in todo if k not in have]
        if not todo:
            return
    raise StoreError(f"{len(todo)} message bodies kept disappearing while being stored (a clean-up running "
                     f"alongside?)", hint="run the sync again")


def _existing_bodies(session: Session, keys: Sequence[str], *, share_lock: bool = False) -> set[str]:
    have: set[str] = set()
    for i in range(0, len(keys), 500):
        stmt = select(Body.sha256).where(Body.sha256.in_(keys[i:i + 500]))
        if share_lock:
            stmt = stmt.with_for_update(read=True)  # FOR SHARE until the transaction ends
        have.update(session.scalars(stmt))
    return have


def read_body(session: Session, sha256: str) -> bytes:
    """The raw message with this SHA-256, wherever the store keeps it (checked when from a pack)."""
    row = session.execute(select(Body.size, Body.pack, Body.pack_offset).where(Body.sha256 == sha256)).one_or_none()
    if row is None:
        raise StoreError(f"message body {sha256[:12]} is not in the store")
    if row.pack is None:
        return bytes(session.scalar(select(Body.data).where(Body.sha256 == sha256)))
    return _packs(session).read(row.pack, row.pack_offset, row.size, sha256)


def read_heads(session: Session, shas: Sequence[str], limit: int) -> list[tuple[str, bytes, int]]:
    """(sha256, the first `limit` bytes, size) of each of these bodies that is in the store."""
    out: list[tuple[str, bytes, int]] = []
    for i in range(0, len(shas), 500):
        for sha, head, size, pack, offset in session.execute(
                select(Body.sha256, func.substr(Body.data, 1, limit), Body.size, Body.pack, Body.pack_offset)
                .where(Body.sha256.in_(shas[i:i + 500]))):
            if pack is not None:
                head = _packs(session).read(pack, offset, size, sha, limit=limit)
            out.append((sha, bytes(head or b""), size))
    return out


def _packs(session: Session):
    packs = session.info.get("packs")
    if packs is None:
        raise StoreError("this store keeps message bodies in pack files, but it was opened without them",
                         hint="open the SQLite store by its file path (sqlite:////path/mailsync.db)")
    return packs


def delete_orphan_bodies(session: Session, candidates: Iterable[str]) -> int:
    """Delete those of the `candidates` bodies (sha256s) that no placement refers to any more.

    Only the bodies of placements just removed can have become orphans, so the check costs what
    changed, not the size of the store."""
    candidates = sorted(set(candidates))
    n = 0
    for i in range(0, len(candidates), 500):
        chunk = candidates[i:i + 500]
        used = select(Placement.id).where(Placement.body_sha256 == Body.sha256).exists()
        # PostgreSQL: a body share-locked by a store_bodies in flight is about to gain a placement:
        # skip it (SKIP LOCKED). SQLite has one writer at a time, so there is nothing to skip.
        orphans = select(Body.sha256).where(Body.sha256.in_(chunk), ~used).with_for_update(skip_locked=True)
        n += session.execute(delete(Body).where(Body.sha256.in_(orphans))).rowcount or 0
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


def has_placements(session: Session, folder_id: int) -> bool:
    """Does the folder hold any placement (live, tombstone or waiting for its UID)?"""
    return session.execute(select(Placement.id).where(Placement.folder_id == folder_id).limit(1)).first() is not None


PLACEMENT_COLUMNS = ("folder_id", "uid", "body_sha256", "flags", "base_flags", "modseq", "internaldate", "size")


def add_placements(session: Session, rows: list[dict]) -> None:
    """rows: dicts with PLACEMENT_COLUMNS (base_flags and modseq may be left out); a (folder_id, uid)
    already present is skipped."""
    add_placement_rows(session, [(r["folder_id"], r["uid"], r["body_sha256"], r["flags"], r.get("base_flags"),
                                  r.get("modseq"), r["internaldate"], r["size"]) for r in rows])


def add_placement_rows(session: Session, rows: list[tuple]) -> None:
    """add_placements for rows already in PLACEMENT_COLUMNS order."""
    insert_rows(session, Placement.__table__.name, PLACEMENT_COLUMNS, rows, ("folder_id", "uid"))


def add_packed_bodies(session: Session, rows: list[tuple[str, int, str | None, int, int]]) -> None:
    """Rows of bodies already written to a pack: (sha256, size, message_id, pack, offset). A body
    already stored is left as it is (its new copy in the pack is dead space). Call it before the
    placements that point at these bodies, in the same transaction: on SQLite the insert takes the
    write lock, so no orphan clean-up can remove a body found already stored before they point at
    it (see store_bodies)."""
    insert_rows(session, Body.__table__.name, _BODY_COLUMNS,
                [(sha, size, mid, b"", pack, offset) for sha, size, mid, pack, offset in rows], ("sha256",))


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
