"""The store side of pushing the journal of local changes: each a function the store worker runs
(journal_push.py, on the IMAP thread, calls them through the StoreWorker).

Owns: loading the entries to push, marking them sent, done or failed, settling a placement with the
UID the server gave it, dropping one the server expunged, rule L5's recreated folder, and the
messages an entry needs (body, Message-ID and size). Must not: speak IMAP or decide (undo.py holds
rules L1-L4 for refused entries).
"""

from __future__ import annotations

from sqlalchemy import delete, select, update

from mailsync.errors import MailsyncError
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
    ops = uow.connection.execute(select(o.id, o.kind, o.state, o.args, o.placement_id, o.folder_id).where(
        o.account_id == side.account_id, o.state.in_(("pending", "sent")), o.kind != "flags").order_by(o.id))
    return [journal.Entry(op_id, state, pid, fid, journal.decode(kind, args, op_id=op_id))
            for op_id, kind, state, args, pid, fid in ops]


def mark(uow: UnitOfWork, side: StoreSide, op_id: int, state: str, error: str | None = None) -> None:
    o = tables.pending_ops.c
    uow.connection.execute(update(tables.pending_ops).where(o.id == op_id).values(
        state=state, error=error, updated_at=utcnow(),
        attempts=o.attempts + 1 if state == "sent" else o.attempts))
    uow.commit()
    if state == "done":
        side.ledger.add(pushed=1)


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
                      moved: bool = False) -> None:
    """The change reached the server as ``uid``. An appended message has the flags it was sent
    with; a moved one has the flags the server gave it before, which the store last agreed as
    its base: a local flag change not pushed yet stays one, and the pull of the folder pushes it."""
    c, pl = uow.connection, tables.placements.c
    p = c.execute(select(pl.folder_id).where(pl.id == placement_id)).one_or_none()
    if p is not None and uid is not None:
        # the pull may already have seen this UID and made a placement for it: merge into ours
        c.execute(delete(tables.placements).where(pl.folder_id == p.folder_id, pl.uid == uid,
                                                  pl.id != placement_id))
        values = {"uid": uid, "modseq": None} if moved else {"uid": uid, "base_flags": pl.flags}
        c.execute(update(tables.placements).where(pl.id == placement_id).values(**values))
    mark(uow, side, op_id, "done")


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
    from datetime import datetime

    try:
        t = datetime.fromisoformat(iso) if iso else None
    except ValueError:
        return None
    if t is None or t.tzinfo is None:
        return None
    offset = int(t.utcoffset().total_seconds()) // 60
    sign = "-" if offset < 0 else "+"
    return (f"{t.day:2d}-{_MONTHS[t.month - 1]}-{t.year:04d} {t:%H:%M:%S} "
            f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}")
