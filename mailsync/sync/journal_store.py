"""The store side of pushing the journal of local changes: each a function the store worker runs
(journal_push.py, on the IMAP thread, calls them through the StoreWorker).

Owns: loading the entries to push, marking them sent, done or failed, settling a placement with the
UID the server gave it, dropping one the server expunged, rule L5's recreated folder, and the
messages an entry needs (body, Message-ID and size). Must not: speak IMAP or decide (undo.py holds
rules L1-L4 for refused entries).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, select, update

from mailsync.errors import MailsyncError, StoreError
from mailsync.imap import utf7
from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.store.tables import utcnow
from mailsync.store.uow import UnitOfWork
from mailsync.sync import journal
from mailsync.sync.store_tasks import StoreSide
from mailsync.sync.undo import undo_refused


def load_ops(uow: UnitOfWork, side: StoreSide) -> list[journal.Entry]:
    """The entries to push, oldest first. Flag changes are not among them: each folder's pull
    merges and pushes them (rules T1-T3)."""
    o = tables.pending_ops.c
    ops = uow.connection.execute(repo.built_once(lambda: select(
        o.id, o.kind, o.state, o.args, o.placement_id, o.folder_id).where(
        o.account_id == bindparam("_account"), o.state.in_(("pending", "sent")), o.kind != "flags").order_by(o.id)),
        {"_account": side.account_id})
    decoded: dict[tuple[str, str], journal.Operation] = {}  # a channel's copies into a folder share theirs

    def decode(op_id: int, kind: str, args: str) -> journal.Operation:
        op = decoded.get((kind, args))
        if op is None:
            op = decoded[(kind, args)] = journal.decode(kind, args, op_id=op_id)
        return op

    return [journal.Entry(op_id, state, pid, fid, decode(op_id, kind, args))
            for op_id, kind, state, args, pid, fid in ops]


def mark(uow: UnitOfWork, side: StoreSide, op_id: int, state: str, error: str | None = None, *,
         commit: bool = True) -> None:
    o = tables.pending_ops.c
    uow.connection.execute(update(tables.pending_ops).where(o.id == op_id).values(
        state=state, error=error, updated_at=utcnow(),
        attempts=o.attempts + 1 if state == "sent" else o.attempts))
    if commit:
        uow.commit()
    if state == "done":
        side.ledger.add(pushed=1)


def mark_sent(uow: UnitOfWork, side: StoreSide, op_ids: list[int]) -> None:
    """A batch of entries (APPENDs sent together) marked "sent" in one transaction."""
    o = tables.pending_ops.c
    uow.connection.execute(update(tables.pending_ops).where(o.id.in_(op_ids)).values(
        state="sent", updated_at=utcnow(), attempts=o.attempts + 1))
    uow.commit()


def refused(uow: UnitOfWork, side: StoreSide, entry: journal.Entry, exc: MailsyncError) -> str:
    """The server refused a local change: the store goes back to what the server has (rules L1-L3
    in mailsync.sync.undo), in the transaction that marks the change failed."""
    undone, orphans = undo_refused(uow.connection, side.account_id, entry, exc)
    side.ledger.orphan(orphans)
    mark(uow, side, entry.id, "failed", str(exc) + (f" ({undone})" if undone else ""))
    return undone


def folder_recreated(uow: UnitOfWork, side: StoreSide, raw_name: str, uidvalidity: int, keep: int) -> None:
    """Rule L5's store side: the folder on the server is a new one. The old one's messages are
    tombstoned (found again by body if another client moved them, rule N2); the folder starts
    over with the new UIDVALIDITY and no checkpoints, holding the waiting message ``keep``."""
    c, pl, fo = uow.connection, tables.placements.c, tables.folders.c
    folder_id = c.scalar(select(fo.id).where(fo.account_id == side.account_id, fo.raw_name == raw_name))
    if folder_id is None:
        return
    c.execute(update(tables.placements).where(pl.folder_id == folder_id, pl.uid.isnot(None), pl.id != keep,
                                              pl.tombstone_run.is_(None)).values(tombstone_run=side.run_id))
    repo.update_folder(c, folder_id, uidvalidity=uidvalidity, uidnext=None, highestmodseq=None, messages=None,
                       fetched_uid=0, status="ok", status_reason=None)
    side.ledger.audit(uow, "folder_recreated", "gone from the server while a local message waited to go into it: "
                "created again to hold it", folder=utf7.decode(raw_name))
    uow.commit()


def known_uids(uow: UnitOfWork, side: StoreSide, raw_name: str) -> set[int]:
    f = tables.folders.c
    folder_id = uow.connection.scalar(select(f.id).where(f.account_id == side.account_id,
                                                         f.raw_name == raw_name))
    return set() if folder_id is None else set(repo.uid_flags(uow.connection, folder_id))


def placement_sources(uow: UnitOfWork, side: StoreSide, entries: list[tuple[int, int | None]],
                      budget: int) -> tuple[dict, dict]:
    """A batch of APPENDs located and marked "sent" (mark_sent, committed here): of ``entries``,
    (journal entry id, placement id) in order, the first ones until their messages add up to
    ``budget`` bytes (at least one). Returns (placement id -> (sha256, flags, Message-ID, IMAP date),
    or None when the placement is gone; sha256 -> where its body lies, repositories.body_location),
    which read_placement_bodies turns into the messages on any thread: the pack reads, the bulk
    of the work, stay off the store's thread. One query for the rows, one statement for the mark;
    marked before the messages are read, so a batch is marked once its sending may start."""
    c, pl, b = uow.connection, tables.placements.c, tables.bodies.c
    rows = {r.id: r for r in c.execute(
        select(pl.id, pl.body_sha256, pl.flags, b.message_id, pl.size, pl.internaldate, b.size.label("body_size"),
               b.pack, b.pack_offset, b.data, b.headers_only)
        .join(tables.bodies, b.sha256 == pl.body_sha256).where(pl.id.in_([p for _, p in entries if p])))}
    taken, total = [], 0
    for op_id, pid in entries:
        if taken and total >= budget:
            break
        taken.append((op_id, pid))
        total += rows[pid].size if pid in rows else 0
    sources, located = {}, {}
    for _, pid in taken:
        r = rows.get(pid)
        sources[pid] = None if r is None else (r.body_sha256, r.flags.split(), r.message_id, imap_date(r.internaldate))
        if r is not None:
            located[r.body_sha256] = repo.body_location(r.body_sha256, r.body_size, r.pack, r.pack_offset, r.data,
                                                        r.headers_only)
    mark_sent(uow, side, [op_id for op_id, _ in taken])
    return sources, located


def read_placement_bodies(sources: dict, located: dict, packs) -> dict:
    """placement_sources' answer with the messages read (repositories.read_located; ``packs`` the
    store's PackStore, or None): placement id -> (raw, flags, Message-ID, IMAP date), or None; a
    body that cannot be read raises its StoreError. Touches no database."""
    raws = repo.read_located(located, packs)
    out = {}
    for pid, src in sources.items():
        if src is None:
            out[pid] = None
            continue
        raw = raws[src[0]]
        if isinstance(raw, StoreError):
            raise raw
        out[pid] = (raw, *src[1:])
    return out


def placement_body(uow: UnitOfWork, side: StoreSide, placement_id: int | None):
    p = placement_with_body(uow.connection, placement_id)
    if p is None:
        return None
    return repo.read_body(uow.connection, p.body_sha256), p.flags.split(), p.message_id, imap_date(p.internaldate)


def placement_key(uow: UnitOfWork, side: StoreSide, placement_id: int | None) -> tuple[str | None, int] | None:
    """(Message-ID, size) of a placement's message: what its UID must hold on the server."""
    p = placement_with_body(uow.connection, placement_id)
    return (p.message_id, p.size) if p else None


def settle_placement(uow: UnitOfWork, side: StoreSide, op_id: int, placement_id: int, uid: int | None,
                     moved: bool = False, uidvalidity: int | None = None, *, commit: bool = True) -> None:
    """The change reached the server as ``uid``. An appended message has the flags it was sent
    with; a moved one has the flags the server gave it before, which the store last agreed as
    its base: a local flag change not pushed yet stays one, and the pull of the folder pushes it.
    ``uidvalidity``: the one the server's APPENDUID or COPYUID named, which a folder the store has
    never read (made by a local mkdir) takes, as in settle_placements."""
    c, pl = uow.connection, tables.placements.c
    p = c.execute(select(pl.folder_id).where(pl.id == placement_id)).one_or_none()
    if p is not None and uid is not None:
        # the pull may already have seen this UID and made a placement for it: merge into ours
        c.execute(delete(tables.placements).where(pl.folder_id == p.folder_id, pl.uid == uid,
                                                  pl.id != placement_id))
        values = {"uid": uid, "modseq": None} if moved else {"uid": uid, "base_flags": pl.flags}
        c.execute(update(tables.placements).where(pl.id == placement_id).values(**values))
        if uidvalidity is not None:
            fo = tables.folders.c
            c.execute(update(tables.folders).where(fo.id == p.folder_id, fo.uidvalidity.is_(None))
                      .values(uidvalidity=uidvalidity))
    mark(uow, side, op_id, "done", commit=commit)


def settle_placements(uow: UnitOfWork, side: StoreSide, settled: list[tuple[int, int, int | None]],
                      uidvalidity: int | None = None) -> None:
    """settle_placement of each (entry, placement, UID) of a batch of new messages (APPENDs), in one
    transaction and a few statements. ``uidvalidity``: the one their APPENDUIDs named; a folder the
    store has never read (made by a local mkdir) takes it, so that its next pull compares UIDs with
    these placements instead of adopting the folder afresh (rule F3 would drop them)."""
    if not settled:
        return
    c, pl, o = uow.connection, tables.placements.c, tables.pending_ops.c
    folders = dict(c.execute(select(pl.id, pl.folder_id).where(pl.id.in_([p for _, p, _ in settled]))).all())
    rows = [{"p": p, "f": folders[p], "u": uid} for _, p, uid in settled if uid is not None and p in folders]
    if rows:
        # the pull may already have seen these UIDs and made placements for them: merged into ours
        # (a statement per folder, not per message: a batch of APPENDs goes to one folder)
        by_folder: dict[int, list[dict]] = {}
        for r in rows:
            by_folder.setdefault(r["f"], []).append(r)
        for folder_id, batch in by_folder.items():
            c.execute(delete(tables.placements).where(pl.folder_id == folder_id, pl.uid.in_([r["u"] for r in batch]),
                                                      pl.id.not_in([r["p"] for r in batch])))
        c.execute(update(tables.placements).where(pl.id == bindparam("p")).values(uid=bindparam("u"),
                                                                                 base_flags=pl.flags), rows)
    c.execute(update(tables.pending_ops).where(o.id.in_([op for op, _, _ in settled])).values(
        state="done", error=None, updated_at=utcnow()))
    if uidvalidity is not None and folders:
        fo = tables.folders.c
        c.execute(update(tables.folders).where(fo.id.in_(set(folders.values())), fo.uidvalidity.is_(None))
                  .values(uidvalidity=uidvalidity))
    uow.commit()
    side.ledger.add(pushed=len(settled))


def drop_placement(uow: UnitOfWork, side: StoreSide, op_id: int, placement_id: int, why: str) -> None:
    uow.connection.execute(delete(tables.placements).where(tables.placements.c.id == placement_id))
    mark(uow, side, op_id, "failed", why)


def placement_with_body(c, placement_id: int | None):
    """(body_sha256, flags, message_id) of a placement, or None when there is no such placement."""
    if not placement_id:
        return None
    pl, b = tables.placements.c, tables.bodies.c
    return c.execute(select(pl.body_sha256, pl.flags, b.message_id, pl.size, pl.internaldate).join(tables.bodies, b.sha256 == pl.body_sha256)
                     .where(pl.id == placement_id)).one_or_none()


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def imap_date(iso: str | None) -> str | None:
    """A stored INTERNALDATE (ISO 8601) as IMAP's date-time (RFC 3501), for APPEND: the server
    keeps the date the message was given locally (a file's mtime, a date chosen by the caller)
    instead of the moment it arrived. None when there is none or it cannot be read."""
    try:
        t = datetime.fromisoformat(iso) if iso else None
    except ValueError:
        return None
    if t is None or t.tzinfo is None:
        return None
    offset = int(t.utcoffset().total_seconds()) // 60
    sign = "-" if offset < 0 else "+"
    return (f"{t.day:2d}-{_MONTHS[t.month - 1]}-{t.year:04d} {t.hour:02d}:{t.minute:02d}:{t.second:02d} "
            f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}")
