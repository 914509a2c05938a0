"""Repositories: the queries and writes of the store, each taking the caller's connection or Session.

Owns: SQL for accounts, folders, bodies, placements and sync runs. Must not: commit, roll back or
open connections or sessions (see uow.py), nor speak IMAP.

Most functions are Core statements on the tables of tables.py and take either a Connection or a
Session (``db``): the sync engine passes its unit of work's connection and never imports the ORM.
The few that return mapped objects (accounts and runs, for status and local changes) take a Session
and import the models when called.

Bulk paths (placements of a whole folder, a batch of bodies) use Core statements with executemany:
the ORM's per-object bookkeeping is too slow for 20,000-message folders.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Union

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update

from mailsync.errors import StoreError
from mailsync.store import tables
from mailsync.store.tables import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from mailsync.store.models import Account, SyncRun

Db = Union[Connection, "Session"]  # what the Core functions below take: the unit of work's either
_A, _F, _B, _P, _R = (tables.accounts.c, tables.folders.c, tables.bodies.c, tables.placements.c,
                      tables.sync_runs.c)


_BUILT: dict[object, Any] = {}


def built_once(build: Callable[[], Any]) -> Any:
    """The statement ``build()`` returns, built on the first call from that place in the code (the
    lambda's code object is the key) and reused after: its values are bindparam()s given at
    execution, and an UPDATE's or INSERT's columns may come from the parameters too; ``build`` must
    not depend on the call's arguments (tables and columns only). Building a statement and its cache key cost about 0.15 ms each
    time, and a delta sync ran some twenty of the same statements."""
    stmt = _BUILT.get(build.__code__)
    if stmt is None:
        stmt = _BUILT[build.__code__] = build()
    return stmt


def _connection(db: Db) -> Connection:
    return db if isinstance(db, Connection) else db.connection()


def packs_of(db: Db):
    """The store's pack files (packs.PackStore), or None when bodies live in the database: the unit
    of work puts them on its connection (uow.py)."""
    return _connection(db).info.get("packs")


def text_to_flags(text: str) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()


# --- accounts ---------------------------------------------------------------------------------

def account_id(db: Db, name: str, host: str, username: str) -> int:
    """The id of the account named ``name``, its row made now if there is none; its host and
    username updated when the config changed them."""
    row = db.execute(built_once(lambda: select(_A.id, _A.host, _A.username).where(_A.name == bindparam("_name"))),
                     {"_name": name}).one_or_none()
    if row is None:
        return db.execute(insert(tables.accounts).values(name=name, host=host, username=username)
                          ).inserted_primary_key[0]
    if (row.host, row.username) != (host, username):
        db.execute(update(tables.accounts).where(_A.id == row.id).values(host=host, username=username))
    return row.id


def list_accounts(session: Session) -> Sequence[Account]:
    from mailsync.store.models import Account

    return session.scalars(select(Account).order_by(Account.name)).all()


def find_account(session: Session, name: str) -> Account | None:
    from mailsync.store.models import Account

    return session.scalars(select(Account).where(Account.name == name)).one_or_none()


# --- folders ----------------------------------------------------------------------------------

def folders_of(db: Db, account_id: int, *, gone: bool = False) -> Sequence[Row]:
    """The account's folder rows (every column of tables.folders), by name; ``gone``: with the
    folders gone from the server."""
    stmt = (built_once(lambda: select(tables.folders).where(_F.account_id == bindparam("_account"))
                       .order_by(_F.name)) if gone else
            built_once(lambda: select(tables.folders).where(_F.account_id == bindparam("_account"),
                                                            _F.status != "gone").order_by(_F.name)))
    return db.execute(stmt, {"_account": account_id}).all()


def get_folder(db: Db, folder_id: int) -> Row:
    """The folder's row (every column of tables.folders); NoResultFound when there is none."""
    return db.execute(built_once(lambda: select(tables.folders).where(_F.id == bindparam("_id"))),
                      {"_id": folder_id}).one()


def add_folder(db: Db, account_id: int, raw_name: str, name: str, delimiter: str | None,
               special_use: str | None) -> int:
    """A new folder row, not synced yet; its id."""
    return db.execute(insert(tables.folders).values(
        account_id=account_id, raw_name=raw_name, name=name, delimiter=delimiter, special_use=special_use,
        fetched_uid=0, status="ok")).inserted_primary_key[0]


def update_folder(db: Db, folder_id: int, **values: Any) -> None:
    if values:  # SET: the parameters' columns
        db.execute(built_once(lambda: update(tables.folders).where(_F.id == bindparam("_id"))),
                   {"_id": folder_id, **values})


def reread_folder(db: Db, folder_id: int) -> None:
    """Make the next sync compare the whole folder with the server (rule D3: no checkpoint to
    start from), keeping what the store has: a UID the store lacks is then found and read again."""
    db.execute(update(tables.folders).where(_F.id == folder_id).values(uidnext=None, highestmodseq=None))


# The three folder writes of every folder a sync downloads, as Core UPDATEs. Loading the Folder and
# flushing it through the ORM cost the store worker 1-3 ms of Python each time, holding the GIL the
# reader needs: a 20,000-message first sync took 40-75 ms longer (wall, medians of 12-16 rounds).

def advance_fetched_uid(db: Db, folder_id: int, top_uid: int) -> None:
    """Move the folder's download mark up to ``top_uid``; never down (rule C1)."""
    db.execute(built_once(lambda: update(tables.folders).where(
        _F.id == bindparam("_id"), _F.fetched_uid < bindparam("_top")).values(fetched_uid=bindparam("_top"))),
        {"_id": folder_id, "_top": top_uid})


def adopt_uidvalidity(db: Db, folder_id: int, uidvalidity: int) -> None:
    """Rule F3's adopt, for a folder without placements: its UIDVALIDITY is the server's from now
    on, and nothing has been downloaded under it. No change when it has that UIDVALIDITY already."""
    db.execute(update(tables.folders).where(_F.id == folder_id, (_F.uidvalidity != uidvalidity)
                                            | _F.uidvalidity.is_(None))
               .values(uidvalidity=uidvalidity, uidnext=None, highestmodseq=None, fetched_uid=0))


def mark_folder_synced(db: Db, folder_id: int, uidnext: int | None, highestmodseq: int | None,
                       messages: int, when: datetime, mailboxid: str | None = None) -> None:
    """The folder is in step with the server as of a SELECT that said ``uidnext``,
    ``highestmodseq`` and ``messages`` (EXISTS), and ``mailboxid`` (RFC 8474) when it said one."""
    extra = {"mailboxid": mailboxid} if mailboxid else {}
    update_folder(db, folder_id, uidnext=uidnext, highestmodseq=highestmodseq, messages=messages,
                  last_synced_at=when, **extra)


# --- bodies -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NewBody:
    sha256: str
    size: int
    message_id: str | None
    data: bytes
    # the header section of a message larger than max_size, under a key of its own
    # (mailsync.store.headers_only): stored in its row, never in a pack
    headers_only: bool = False


def insert_rows(db: Db, table: str, columns: Sequence[str], rows: list[tuple],
                conflict: Sequence[str] | None = None, *, returning: Sequence[str] = ()) -> list[tuple]:
    """The one bulk INSERT of the store and the CRM layer: tuples in ``columns`` order straight to
    the driver, many rows per statement; with ``conflict``, ON CONFLICT (those columns) DO NOTHING
    (SQLite and PostgreSQL both speak this form), so a row already there is skipped. Core's per-row
    parameter processing cost about 10 us a row, and the driver's executemany releases and retakes
    the GIL around every row, which stalls the thread reading the server; one multi-row statement
    per few hundred rows does not. Values go to the driver as they are: a date-time column's value
    comes from driver_value. With ``returning`` (columns), the inserted rows' values of those
    columns, in no promised order (RETURNING: SQLite 3.35 and PostgreSQL); else []."""
    if not rows:
        return []
    conn = _connection(db)
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    group = "(" + ", ".join([mark] * len(columns)) + ")"
    names = ", ".join(f'"{c}"' for c in columns)
    head = f'INSERT INTO "{table}" ({names}) VALUES '
    tail = f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING" if conflict else ""
    if returning:
        tail += " RETURNING " + ", ".join(f'"{c}"' for c in returning)
    step = max(1, _MAX_PARAMS // len(columns))
    out: list[tuple] = []
    for i in range(0, len(rows), step):
        chunk = rows[i:i + step]
        params = [v for row in chunk for v in row]
        result = conn.exec_driver_sql(head + ", ".join([group] * len(chunk)) + tail, tuple(params))
        if returning:
            out += [tuple(r) for r in result]
    return out


def driver_value(db: Db, column, value):
    """``value`` as the driver is handed it for ``column`` (a Table column) by Core: for insert_rows,
    which skips Core (a SQLite DateTime is stored as text in SQLAlchemy's format)."""
    dialect = _connection(db).dialect
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process(value) if process is not None else value


_MAX_PARAMS = 4000  # per statement (SQLite allows 32766 since 3.32, PostgreSQL 65535)
_BODY_COLUMNS = ("sha256", "size", "message_id", "data", "pack", "pack_offset")


def store_bodies(db: Db, bodies: Sequence[NewBody]) -> None:
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
    conn = _connection(db)
    heads = [unique.pop(k) for k in [k for k, b in unique.items() if b.headers_only]]
    if heads:  # never in a pack (a pack checks the SHA-256 of what it holds); ON CONFLICT: stored once
        insert_rows(db, "bodies", _BODY_COLUMNS + ("headers_only",),
                    [(b.sha256, b.size, b.message_id, b.data, None, None, True) for b in heads], ("sha256",))
        if not unique:
            return
    dialect = conn.dialect.name
    if dialect == "sqlite":
        conn.exec_driver_sql("UPDATE bodies SET size = size WHERE 0")  # BEGIN + the write lock, no change
    packs = packs_of(conn)
    keys = list(unique)
    if packs is not None:  # SQLite only: the write lock makes look-up and insert one step
        have = _existing_bodies(db, keys)
        new = [b for k, b in unique.items() if k not in have]
        where = packs.append([(b.sha256, b.data) for b in new])
        add_packed_bodies(db, [(b.sha256, b.size, b.message_id, p, o) for b, (p, o) in zip(new, where)])
        return
    todo = keys
    for _ in range(3):  # PostgreSQL: a body deleted between our insert and our lock is inserted again
        insert_rows(db, "bodies", _BODY_COLUMNS,
                    [(b.sha256, b.size, b.message_id, b.data, None, None) for b in (unique[k] for k in todo)],
                    ("sha256",))
        if dialect != "postgresql":
            return
        have = _existing_bodies(db, todo, share_lock=True)
        todo = [k for k in todo if k not in have]
        if not todo:
            return
    raise StoreError(f"{len(todo)} message bodies kept disappearing while being stored (a clean-up running "
                     f"alongside?)", hint="run the sync again")


def _existing_bodies(db: Db, keys: Sequence[str], *, share_lock: bool = False) -> set[str]:
    have: set[str] = set()
    for i in range(0, len(keys), 500):
        stmt = (built_once(lambda: select(_B.sha256).where(_B.sha256.in_(bindparam("_keys", expanding=True)))
                           .with_for_update(read=True)) if share_lock else  # FOR SHARE until the transaction ends
                built_once(lambda: select(_B.sha256).where(_B.sha256.in_(bindparam("_keys", expanding=True)))))
        have.update(db.scalars(stmt, {"_keys": list(keys[i:i + 500])}))
    return have


def read_body(db: Db, sha256: str, *, heads: bool = False) -> bytes:
    """The raw message with this SHA-256, wherever the store keeps it (checked when from a pack).
    A message held by its header section alone (larger than max_size: mailsync.store.headers_only)
    is a StoreError saying so, or, with ``heads``, its header section."""
    row = db.execute(select(_B.size, _B.pack, _B.pack_offset, _B.headers_only)
                     .where(_B.sha256 == sha256)).one_or_none()
    if row is None:
        raise StoreError(f"message body {sha256[:12]} is not in the store")
    if row.headers_only and not heads:
        raise headers_only_error(sha256)
    if row.pack is None:
        return bytes(db.scalar(select(_B.data).where(_B.sha256 == sha256)))
    return _packs(db).read(row.pack, row.pack_offset, row.size, sha256)


def read_bodies(db: Db, shas: Sequence[str]) -> dict[str, bytes | StoreError]:
    """sha256 -> the raw message (its SHA-256 checked), or the StoreError that says why it cannot be
    had, for each of ``shas``; one query per 500 (read_body costs one per message). The caller
    bounds how many bytes one call holds."""
    found: dict[str, bytes | StoreError | tuple] = {}
    for i in range(0, len(shas), 500):
        for sha, size, pack, offset, data, heads in db.execute(
                select(_B.sha256, _B.size, _B.pack, _B.pack_offset, _B.data, _B.headers_only)
                .where(_B.sha256.in_(shas[i:i + 500]))):
            found[sha] = body_location(sha, size, pack, offset, data, heads)
    return read_located(located_in(found, shas), packs_of(db))


def body_location(sha: str, size: int, pack: int | None, offset: int | None, data: bytes | None,
                  headers_only: bool = False) -> bytes | StoreError | tuple:
    """Where the body of a row of bodies (sha256, size, pack, pack_offset, data, headers_only) is to
    be had, without reading a pack: the (pack, offset, size, sha256) of its record, the raw message
    kept in the row (its SHA-256 checked), or the StoreError that says why it cannot be had."""
    if headers_only:
        return headers_only_error(sha)
    if pack is not None:
        return (pack, offset, size, sha)
    if data is None or hashlib.sha256(data).hexdigest() != sha:
        return StoreError(f"message {sha[:12]} is damaged in the store (its SHA-256 does not match)",
                          hint="run mailsync verify --repair, then mailsync sync")
    return bytes(data)


def located_in(found: dict, shas: Sequence[str]) -> dict:
    """``found`` (sha256 -> body_location) with a StoreError for each of ``shas`` it lacks."""
    for sha in shas:
        found.setdefault(sha, StoreError(f"message body {sha[:12]} is not in the store",
                                         hint="run mailsync verify --repair, then mailsync sync"))
    return found


def read_located(located: dict, packs) -> dict[str, bytes | StoreError]:
    """sha256 -> the raw message or its StoreError, from body_location answers: the records in
    ``packs`` (the store's PackStore) read together, neighbours in one pread, each checked (its
    SHA-256: a pack holds no other guard against damage). Touches no database: it may run on
    any thread."""
    out = {sha: v for sha, v in located.items() if not isinstance(v, tuple)}
    in_packs = [v for v in located.values() if isinstance(v, tuple)]
    if in_packs:
        if packs is None:
            raise StoreError("this store keeps message bodies in pack files, but it was opened without them",
                             hint="open the SQLite store by its file path (sqlite:////path/mailsync.db)")
        for want, got in zip(in_packs, packs.read_many(in_packs)):
            out[want[3]] = got
    return out


def headers_only_error(key: str) -> StoreError:
    return StoreError(f"message {key[:12]} is held by its headers alone: it is larger than the account's "
                      f"max_size, and its body was not downloaded",
                      hint="mailsync show ACCOUNT FOLDER UID fetches it; or raise or remove max_size and run mailsync sync")


def read_heads(db: Db, shas: Sequence[str], limit: int) -> list[tuple[str, bytes, int]]:
    """(sha256, the first `limit` bytes, size) of each of these bodies that is in the store."""
    out: list[tuple[str, bytes, int]] = []
    for i in range(0, len(shas), 500):
        for sha, head, size, pack, offset in db.execute(
                select(_B.sha256, func.substr(_B.data, 1, limit), _B.size, _B.pack, _B.pack_offset)
                .where(_B.sha256.in_(shas[i:i + 500]))):
            if pack is not None:
                head = _packs(db).read(pack, offset, size, sha, limit=limit)
            out.append((sha, bytes(head or b""), size))
    return out


def _packs(db: Db):
    packs = packs_of(db)
    if packs is None:
        raise StoreError("this store keeps message bodies in pack files, but it was opened without them",
                         hint="open the SQLite store by its file path (sqlite:////path/mailsync.db)")
    return packs


def delete_orphan_bodies(db: Db, candidates: Iterable[str]) -> int:
    """Delete those of the `candidates` bodies (sha256s) that no placement refers to any more.

    Only the bodies of placements just removed can have become orphans, so the check costs what
    changed, not the size of the store."""
    candidates = sorted(set(candidates))
    n = 0
    for i in range(0, len(candidates), 500):
        chunk = candidates[i:i + 500]
        used = select(_P.id).where(_P.body_sha256 == _B.sha256).exists()
        # PostgreSQL: a body share-locked by a store_bodies in flight is about to gain a placement:
        # skip it (SKIP LOCKED). SQLite has one writer at a time, so there is nothing to skip.
        orphans = select(_B.sha256).where(_B.sha256.in_(chunk), ~used).with_for_update(skip_locked=True)
        n += db.execute(delete(tables.bodies).where(_B.sha256.in_(orphans))).rowcount or 0
    return n


def live_placements_for(db: Db, folder_id: int, uids: Iterable[int], ids: Iterable[int] = ()) -> dict[int, Row]:
    """uid -> the live placement (a row of tables.placements) of the folder with one of `uids`, or one
    of the placement `ids`."""
    out: dict[int, Row] = {}
    uids, ids = sorted(set(uids)), sorted(set(ids))
    for i in range(0, len(uids), 500):
        for p in db.execute(built_once(lambda: select(tables.placements).where(
                _P.folder_id == bindparam("_folder"), *LIVE, _P.uid.in_(bindparam("_uids", expanding=True)))),
                {"_folder": folder_id, "_uids": uids[i:i + 500]}):
            out[p.uid] = p
    for i in range(0, len(ids), 500):
        for p in db.execute(built_once(lambda: select(tables.placements).where(
                _P.folder_id == bindparam("_folder"), *LIVE, _P.id.in_(bindparam("_ids", expanding=True)))),
                {"_folder": folder_id, "_ids": ids[i:i + 500]}):
            out[p.uid] = p
    return out


def pending_flag_placements(db: Db, account_id: int) -> dict[int, set[int]]:
    """folder id -> ids of its placements with a flag change waiting to be pushed (from the journal)."""
    ops = tables.pending_ops.c
    rows = db.execute(built_once(lambda: select(_P.folder_id, _P.id).join(
        tables.pending_ops, ops.placement_id == _P.id).where(
        ops.account_id == bindparam("_account"), ops.kind == "flags", ops.state.in_(("pending", "sent")))),
        {"_account": account_id}).all()
    out: dict[int, set[int]] = {}
    for folder_id, pid in rows:
        out.setdefault(folder_id, set()).add(pid)
    return out


# --- placements -------------------------------------------------------------------------------

LIVE = (_P.uid.isnot(None), _P.tombstone_run.is_(None))  # on the server, as far as we know
# Every tombstone, found by the tombstone index. Run ids are positive, so this is "tombstone_run IS NOT
# NULL", which SQLite answers by reading every row of the table instead (3.4 ms at 20,000 messages,
# against 0.01 ms).
TOMBSTONES = _P.tombstone_run > 0


def uid_flags(db: Db, folder_id: int) -> dict[int, str]:
    """uid -> flags text of every live placement in the folder."""
    return dict(db.execute(
        select(_P.uid, _P.flags).where(_P.folder_id == folder_id, *LIVE)).all())


def flag_states(db: Db, folder_id: int) -> dict[int, tuple[str, str | None, int | None]]:
    """uid -> (flags, base_flags, modseq) of every live placement in the folder (rule D5)."""
    return {uid: (flags, base, modseq) for uid, flags, base, modseq in db.execute(
        select(_P.uid, _P.flags, _P.base_flags, _P.modseq).where(_P.folder_id == folder_id, *LIVE))}


def placement_keys(db: Db, folder_id: int, uids: Sequence[int]) -> dict[int, tuple[str | None, int]]:
    """uid -> (Message-ID, size) of the folder's live placements with one of ``uids``: what a UID is
    checked against on the server before it is trusted (rule F4) or acted on (a delete or move)."""
    out: dict[int, tuple[str | None, int]] = {}
    uids = sorted(set(uids))
    for i in range(0, len(uids), 500):
        out.update((uid, (mid, size)) for uid, mid, size in db.execute(
            select(_P.uid, _B.message_id, _P.size).join(tables.bodies, _B.sha256 == _P.body_sha256)
            .where(_P.folder_id == folder_id, *LIVE, _P.uid.in_(uids[i:i + 500]))))
    return out


def live_placements(db: Db, folder_id: int) -> dict[int, Row]:
    """uid -> every live placement of the folder (rows of tables.placements)."""
    return {p.uid: p for p in db.execute(select(tables.placements).where(_P.folder_id == folder_id, *LIVE))}


def update_placements(db: Db, changes: Iterable[tuple[int, dict[str, Any]]]) -> None:
    """Set columns of placements: (placement id, {column: new value}) each, naming only the columns
    that change (one written back with the value read earlier could undo a change made meanwhile).
    One executemany per set of columns."""
    groups: dict[tuple[str, ...], list[dict]] = {}
    for pid, values in changes:
        if values:
            groups.setdefault(tuple(sorted(values)), []).append(
                {"_id": pid, **{f"_{k}": v for k, v in values.items()}})
    for columns, params in groups.items():
        db.execute(update(tables.placements).where(_P.id == bindparam("_id"))
                   .values({c: bindparam(f"_{c}") for c in columns}), params)


def tombstone(db: Db, folder_id: int, uids: Iterable[int], run_id: int) -> int:
    uids = sorted(uids)
    n = 0
    for i in range(0, len(uids), 500):
        n += db.execute(update(tables.placements).where(
            _P.folder_id == folder_id, _P.uid.in_(uids[i:i + 500]),
            _P.tombstone_run.is_(None)).values(tombstone_run=run_id)).rowcount or 0
    return n


def bodies_by_message_id(db: Db, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """(Message-ID, size) -> sha256 of a stored body, for the keys that name exactly one body (or
    one whole body, and header sections alone, mailsync.store.headers_only)."""
    keys = list(set(keys))
    found: dict[tuple[str, int], set[str]] = {}
    for i in range(0, len(keys), 500):
        chunk = set(keys[i:i + 500])
        ids = {k[0] for k in chunk}
        for mid, size, sha, heads in db.execute(built_once(lambda: select(
                _B.message_id, _B.size, _B.sha256, _B.headers_only).where(
                _B.message_id.in_(bindparam("_ids", expanding=True)))), {"_ids": sorted(ids)}):
            if (mid, size) in chunk:
                found.setdefault((mid, size), set()).add((bool(heads), sha))
    # a whole body before a header section alone (a message larger than max_size, held so)
    return {k: sha for k, v in found.items() if len(v) == 1 or len({h for h in v if not h[0]}) == 1
            for heads, sha in [min(v)]}


def has_bodies(db: Db) -> bool:
    return db.execute(built_once(lambda: select(_B.sha256).limit(1))).first() is not None


def has_placements(db: Db, folder_id: int) -> bool:
    """Does the folder hold any placement (live, tombstone or waiting for its UID)?"""
    return db.execute(built_once(lambda: select(_P.id).where(_P.folder_id == bindparam("_folder")).limit(1)),
                      {"_folder": folder_id}).first() is not None


PLACEMENT_COLUMNS = ("folder_id", "uid", "body_sha256", "flags", "base_flags", "modseq", "internaldate", "size")


def add_placements(db: Db, rows: list[dict]) -> None:
    """rows: dicts with PLACEMENT_COLUMNS (base_flags and modseq may be left out); a (folder_id, uid)
    already present is skipped."""
    add_placement_rows(db, [(r["folder_id"], r["uid"], r["body_sha256"], r["flags"], r.get("base_flags"),
                                  r.get("modseq"), r["internaldate"], r["size"]) for r in rows])


def add_placement_rows(db: Db, rows: list[tuple]) -> None:
    """add_placements for rows already in PLACEMENT_COLUMNS order."""
    insert_rows(db, "placements", PLACEMENT_COLUMNS, rows, ("folder_id", "uid"))


def add_packed_bodies(db: Db, rows: list[tuple[str, int, str | None, int, int]]) -> None:
    """Rows of bodies already written to a pack: (sha256, size, message_id, pack, offset). A body
    already stored is left as it is (its new copy in the pack is dead space). Call it before the
    placements that point at these bodies, in the same transaction: on SQLite the insert takes the
    write lock, so no orphan clean-up can remove a body found already stored before they point at
    it (see store_bodies)."""
    insert_rows(db, "bodies", _BODY_COLUMNS,
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
    headers_only: bool = False  # held by its header section alone (larger than max_size: store/headers_only.py)


def export_rows(db: Db, account: str | None = None, folder: str | None = None,
                uid: int | None = None) -> Iterator[ExportRow]:
    """The live placements (of one account, folder, UID when given), by account, folder and UID;
    streamed, a few thousand rows at a time."""
    stmt = (select(_A.name, _F.name, _F.uidvalidity, _P.uid, _B.message_id,
                   _P.flags, _P.size, _P.internaldate, _B.sha256, _B.headers_only)
            .join(tables.folders, _F.account_id == _A.id)
            .join(tables.placements, _P.folder_id == _F.id)
            .join(tables.bodies, _B.sha256 == _P.body_sha256)
            .where(*LIVE)
            .order_by(_A.name, _F.name, _P.uid))
    if account is not None:
        stmt = stmt.where(_A.name == account)
    if folder is not None:
        stmt = stmt.where(_F.name == folder)
    if uid is not None:
        stmt = stmt.where(_P.uid == uid)
    for row in db.execute(stmt.execution_options(yield_per=2000)):
        yield ExportRow(row[0], row[1], row[2], row[3], row[4], sorted(text_to_flags(row[5])),
                        row[6], row[7], row[8], bool(row[9]))


# --- sync runs (audit log) --------------------------------------------------------------------

def account_for_run(db: Db, name: str, host: str, username: str) -> tuple[int, datetime | None, str | None, int]:
    """What a sync run starts from, in one statement: the account's id (its row made now if there is
    none, its host and username updated as account_id does) and its throttle as the last throttled
    run left it: (id, no sync before this time, why, throttled runs in a row); the throttle is
    (None, None, 0) when there is none."""
    row = db.execute(built_once(lambda: select(_A.id, _A.host, _A.username, _A.throttled_until, _A.throttle_reason,
                                               _A.throttle_count).where(_A.name == bindparam("_name"))),
                     {"_name": name}).one_or_none()
    if row is None:
        return account_id(db, name, host, username), None, None, 0
    if (row.host, row.username) != (host, username):
        account_id(db, name, host, username)  # updates them
    until = row.throttled_until
    if until is not None and until.tzinfo is None:  # SQLite keeps no zone: every time the store writes is UTC
        until = until.replace(tzinfo=timezone.utc)
    return row.id, until, row.throttle_reason, row.throttle_count or 0


def set_throttle(db: Db, account_id: int, until: datetime | None, reason: str | None, count: int) -> None:
    """Record the account's throttle (``until`` None: lifted)."""
    db.execute(update(tables.accounts).where(_A.id == account_id)
               .values(throttled_until=until, throttle_reason=reason, throttle_count=count))


def set_left_out(db: Db, folder_id: int, by_age: int | None, by_size: int | None, limits: str | None) -> None:
    """The folder's messages on the server that max_age and max_size left out at its last sync
    (None: no such limit), and those limits (mailsync.config.limits.limits_key)."""
    db.execute(update(tables.folders).where(tables.folders.c.id == folder_id)
               .values(left_out_age=by_age, left_out_size=by_size, limits=limits))


def start_run(db: Db, account_id: int) -> int:
    """A new sync run of the account, running from now; its id."""
    return db.execute(built_once(lambda: insert(tables.sync_runs)),  # the columns: the parameters'
                      {"account_id": account_id, "started_at": utcnow(), "status": "running"}).inserted_primary_key[0]


def last_run(session: Session, account_id: int, *, status: str | None = None) -> SyncRun | None:
    from mailsync.store.models import SyncRun

    stmt = select(SyncRun).where(_R.account_id == account_id)
    if status:
        stmt = stmt.where(_R.status == status)
    return session.scalars(stmt.order_by(_R.id.desc()).limit(1)).one_or_none()


def folder_counts(db: Db, account_id: int) -> dict[int, int]:
    return dict(db.execute(
        select(_P.folder_id, func.count()).join(tables.folders, _F.id == _P.folder_id)
        .where(_F.account_id == account_id, *LIVE).group_by(_P.folder_id)).all())


def finish_run(db: Db, run_id: int, *, status: str, error: str | None = None, when: datetime | None = None,
               **counts: Any) -> None:
    """The run ended with ``status`` (ok | failed) and ``error``; ``counts``: its other columns
    (folders, new_messages, ...)."""
    db.execute(built_once(lambda: update(tables.sync_runs).where(_R.id == bindparam("_id"))),  # SET: the parameters'
               {"_id": run_id, "status": status, "error": error, "finished_at": when or utcnow(), **counts})


# --- what a sync run writes besides messages ---------------------------------------------------

def add_audit_event(db: Db, account_id: int, run_id: int | None, kind: str, detail: str, *,
                    folder: str | None = None, uid: int | None = None) -> None:
    db.execute(insert(tables.audit_events).values(account_id=account_id, run_id=run_id, at=utcnow(), kind=kind,
                                                  folder=folder, uid=uid, detail=detail))


def delete_folder(db: Db, folder_id: int) -> None:
    db.execute(delete(tables.folders).where(_F.id == folder_id))


def tombstone_folder(db: Db, folder_id: int, run_id: int) -> None:
    """Every live placement of a folder gone from the server becomes a tombstone of this run (N2)."""
    db.execute(update(tables.placements).where(_P.folder_id == folder_id, _P.tombstone_run.is_(None))
               .values(tombstone_run=run_id))


def drop_server_placements(db: Db, folder_id: int) -> list[str]:
    """Remove the folder's placements that have a UID (of a UIDVALIDITY the folder no longer has);
    their bodies (sha256s), which may be orphans now. Local appends waiting for a UID stay."""
    shas = list(db.scalars(select(_P.body_sha256).where(_P.folder_id == folder_id, _P.uid.isnot(None))))
    db.execute(delete(tables.placements).where(_P.folder_id == folder_id, _P.uid.isnot(None)))
    return shas


def settle_flag_ops(db: Db, placement_ids: Sequence[int]) -> None:
    """The flag changes waiting on these placements reached the server (or need not): done."""
    ops = tables.pending_ops.c
    for i in range(0, len(placement_ids), 500):
        db.execute(update(tables.pending_ops).where(ops.placement_id.in_(placement_ids[i:i + 500]),
                                                    ops.kind == "flags", ops.state.in_(("pending", "sent")))
                   .values(state="done", updated_at=utcnow()))


def live_placement_keys(db: Db, folder_id: int) -> list[Row]:
    """(id, body_sha256, message_id, size) of every live placement of the folder."""
    return db.execute(select(_P.id, _P.body_sha256, _B.message_id, _B.size)
                      .join(tables.bodies, _B.sha256 == _P.body_sha256)
                      .where(_P.folder_id == folder_id, *LIVE)).all()


def rematch_placements(db: Db, folder_id: int, matches: dict[int, int], lost: Sequence[int]) -> None:
    """Rule V1's write: placements found again take their new UIDs, the others (``lost``) and the
    folder's tombstones go. In two steps, so that no UID is briefly held twice in the folder."""
    db.execute(update(tables.placements).where(_P.folder_id == folder_id, _P.uid.isnot(None)).values(uid=None))
    for i in range(0, len(lost), 500):
        db.execute(delete(tables.placements).where(_P.id.in_(lost[i:i + 500])))
    update_placements(db, ((pid, {"uid": uid, "modseq": None}) for pid, uid in matches.items()))
    db.execute(delete(tables.placements).where(_P.folder_id == folder_id, _P.tombstone_run.isnot(None)))


def run_tombstones(db: Db, account_id: int, run_id: int, shas: Sequence[str]) -> list[Row]:
    """(id, body_sha256, flags, base_flags) of the account's placements tombstoned in this run whose
    body is one of ``shas``: the candidates for a move (rule N2). In parts: a first sync of Gmail
    links tens of thousands of bodies, more than SQLite takes variables in one statement."""
    shas = list(shas)
    return [row for i in range(0, len(shas), 5000) for row in db.execute(
        select(_P.id, _P.body_sha256, _P.flags, _P.base_flags).join(tables.folders, _F.id == _P.folder_id)
        .where(_F.account_id == account_id, _P.tombstone_run == run_id, _P.body_sha256.in_(shas[i:i + 5000])))]


def expire_tombstones(db: Db, account_id: int, run_id: int) -> list[str]:
    """Delete the account's tombstones of runs before ``run_id`` (rule N2); their bodies' sha256s."""
    # Tombstones are few (each lives one run): found by their index, then this account's kept.
    # (Filtering by folder in SQL made SQLite scan every placement of the account instead.)
    expired = db.execute(built_once(lambda: select(_P.id, _P.folder_id, _P.body_sha256).where(
        _P.tombstone_run.isnot(None), _P.tombstone_run < bindparam("_run"))), {"_run": run_id}).all()
    if expired:
        mine = set(db.scalars(select(_F.id).where(_F.account_id == account_id)))
        expired = [(pid, sha) for pid, fid, sha in expired if fid in mine]
    ids = [pid for pid, _ in expired]
    for i in range(0, len(ids), 500):
        db.execute(delete(tables.placements).where(_P.id.in_(ids[i:i + 500])))
    return [sha for _, sha in expired]


def drop_empty_gone_folders(db: Db, account_id: int) -> None:
    """Folders gone from the server whose tombstones have expired leave the store."""
    for folder_id in db.scalars(built_once(lambda: select(_F.id).where(_F.account_id == bindparam("_account"),
                                                                        _F.status == "gone")),
                                {"_account": account_id}).all():
        if not has_placements(db, folder_id):
            delete_folder(db, folder_id)


def newest_flag_change_at(db: Db, placement_id: int) -> datetime | None:
    """When the newest flag change of a placement was made (for conflict = "newest")."""
    ops = tables.pending_ops.c
    return db.scalar(select(ops.created_at).where(ops.placement_id == placement_id, ops.kind == "flags")
                     .order_by(ops.id.desc()).limit(1))
