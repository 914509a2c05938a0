"""What the store does when the server refuses a local change: it goes back to what the server has.

Owns: the store side of a refused local change (rules L1-L4 below), as functions of one store
transaction that the engine calls on its store worker. Must not: speak IMAP, commit (the caller's
unit of work does), or decide anything about changes the server accepted.

A local change (LocalChanges) is applied to the store at once and journalled; the sync sends it
later. When the server refuses it (the folder it names was deleted or renamed by another client, the
name it wants is taken, the UID no longer holds the message), the store must not keep a state the
server will never have, and must not lose anything either:
  L1  A refused move puts the message back where the server still has it (its folder and UID
      before the move). When the store's mapping itself is in doubt (the UID holds another message),
      the placement is dropped instead and the source folder read again in full.
  L2  A refused delete reads the folder again in full: the message, still on the server, comes back.
  L3  A refused rename gives the folder (and the folders below it) their old names back, unless the
      old folder is gone from the server, which the next listing shows anyway.
  L4  A flag change whose message is gone (deleted locally after the change, or expunged on the
      server and not found in another folder) has nothing to act on: it is settled ("done" when a
      later local change superseded it, "failed" with the reason when the server removed the message).
  (A refused append keeps its message: engine._op_append creates the folder again, rule L5.)
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete, select, update

from mailsync.errors import FolderMissing, MappingMismatch, MailsyncError
from mailsync.imap import utf7
from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.store.repositories import Db
from mailsync.store.tables import utcnow
from mailsync.sync import journal


def undo_refused(db: Db, account_id: int, entry: journal.Entry, exc: MailsyncError) -> tuple[str, set[str]]:
    """Rules L1-L3 for one refused change: (what was done, as words for the notes; bodies that may
    have lost their last placement)."""
    op = entry.op
    if isinstance(op, journal.Move):
        return _undo_move(db, account_id, op, entry.placement_id, exc)
    if isinstance(op, journal.Delete):
        target = _live_folder(db, account_id, op.folder_name) or entry.folder_id
        if target is not None:
            repo.reread_folder(db, target)
            return "the folder is read again, so the message is back in the store", set()
    if isinstance(op, journal.Rename) and not isinstance(exc, FolderMissing) and entry.folder_id is not None:
        return _undo_rename(db, account_id, entry.folder_id, op.old, op.new), set()
    return "", set()


def _live_folder(db: Db, account_id: int, raw_name: str) -> int | None:
    fo = tables.folders.c
    return db.scalar(select(fo.id).where(fo.account_id == account_id, fo.raw_name == raw_name,
                                         fo.status != "gone"))


def _undo_move(db: Db, account_id: int, op: journal.Move, placement_id: int | None,
               exc: MailsyncError) -> tuple[str, set[str]]:
    pl = tables.placements.c
    row = db.execute(select(pl.uid, pl.body_sha256).where(pl.id == placement_id)).one_or_none()
    if row is None or row.uid is not None:  # deleted again locally, or already settled
        return "", set()
    src = _live_folder(db, account_id, op.src_folder)
    taken = src is not None and db.scalar(select(pl.id).where(pl.folder_id == src, pl.uid == op.src_uid))
    if src is not None and not taken and not isinstance(exc, MappingMismatch):  # L1
        db.execute(update(tables.placements).where(pl.id == placement_id)
                   .values(folder_id=src, uid=op.src_uid, modseq=None))
        return f"the message is back in {utf7.decode(op.src_folder)!r} in the store", set()
    db.execute(delete(tables.placements).where(pl.id == placement_id))
    if src is not None:
        repo.reread_folder(db, src)
    return f"{utf7.decode(op.src_folder)!r} is read again from the server", {row.body_sha256}


def _undo_rename(db: Db, account_id: int, folder_id: int, old: str, new: str) -> str:
    fo = tables.folders.c
    if _live_folder(db, account_id, old) is not None:  # the old name was taken again locally
        return ""
    rows = db.execute(select(fo.id, fo.raw_name, fo.name, fo.delimiter).where(fo.account_id == account_id)).all()
    this = next((r for r in rows if r.id == folder_id), None)
    if this is None or this.raw_name != new:
        return ""
    delimiter = this.delimiter or next((r.delimiter for r in rows if r.delimiter), None)
    old_name = utf7.decode(old)
    repo.update_folder(db, folder_id, raw_name=old, name=old_name)
    if delimiter:
        for r in rows:
            if r.id != folder_id and r.raw_name.startswith(new + delimiter):
                repo.update_folder(db, r.id, raw_name=old + r.raw_name[len(new):],
                                   name=old_name + r.name[len(this.name):])
    return f"the folder is called {old_name!r} again in the store"


L4_ERROR = "the message was removed on the server before the change reached it"


def settle_orphaned_flag_changes(db: Db, account_id: int) -> int:
    """Rule L4 at the end of a run: flag changes whose placement is gone, or is still a tombstone
    after every folder was read (expunged, not moved), fail with the reason. Returns how many."""
    o, pl = tables.pending_ops.c, tables.placements.c
    return db.execute(repo.built_once(lambda: update(tables.pending_ops).where(
        o.account_id == bindparam("_account"), o.kind == "flags", o.state.in_(("pending", "sent")),
        o.placement_id.is_(None) | o.placement_id.in_(select(pl.id).where(pl.tombstone_run.isnot(None)))).values(
        state="failed", updated_at=bindparam("_now"), error=L4_ERROR)),
        {"_account": account_id, "_now": utcnow()}).rowcount or 0
