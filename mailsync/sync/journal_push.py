"""Pushing the journal of local changes to the server, oldest first: one push function per kind
of operation (mailsync.sync.journal), each guarded, marked "sent" before its command goes out, and
settled from the server's answer (APPENDUID, COPYUID) or, after a crash, by looking at the server.

Owns: the IMAP side of each journal entry and the store tasks that record its outcome; a refused
entry is handed to mailsync.sync.undo (rules L1-L4), a vanished folder to rule L5 (an append
creates it again). JournalPush is a mixin of engine.AccountSync, whose state it shares (the account,
the run, the result, the store worker). Must not: pull from the server (engine.py) or decide flag
merges (plan.py; flag changes are pushed by each folder's pull, rules T1-T3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update

from mailsync.errors import FolderMissing, MailsyncError, MappingMismatch, ProtocolError
from mailsync.imap import utf7
from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.store.tables import utcnow
from mailsync.store.uow import UnitOfWork
from mailsync.store.worker import StoreWorker
from mailsync.sync import crash, journal
from mailsync.sync.message import message_id
from mailsync.sync.undo import undo_refused

if TYPE_CHECKING:
    from mailsync.sync.session import ImapSession


class JournalPush:
    """The journal half of a sync (see the module's docstring)."""

    def _load_ops(self, uow: UnitOfWork) -> list[journal.Entry]:
        """The entries to push, oldest first. Flag changes are not among them: each folder's pull
        merges and pushes them (rules T1-T3)."""
        o = tables.pending_ops.c
        ops = uow.connection.execute(select(o.id, o.kind, o.state, o.args, o.placement_id, o.folder_id).where(
            o.account_id == self.account_id, o.state.in_(("pending", "sent")), o.kind != "flags").order_by(o.id))
        return [journal.Entry(op_id, state, pid, fid, journal.decode(kind, args, op_id=op_id))
                for op_id, kind, state, args, pid, fid in ops]

    def _mark(self, uow: UnitOfWork, op_id: int, state: str, error: str | None = None) -> None:
        o = tables.pending_ops.c
        uow.connection.execute(update(tables.pending_ops).where(o.id == op_id).values(
            state=state, error=error, updated_at=utcnow(),
            attempts=o.attempts + 1 if state == "sent" else o.attempts))
        uow.commit()
        if state == "done":
            self.ledger.add(pushed=1)

    def _push_ops(self, conn: ImapSession, db: StoreWorker) -> None:
        # In the order they were made: each names folders as they were called at that moment.
        push = {journal.Mkdir: self._push_mkdir, journal.Rmdir: self._push_rmdir, journal.Rename: self._push_rename,
                journal.Append: self._push_append, journal.Move: self._push_move, journal.Delete: self._push_delete}
        for entry in db.call(self._load_ops):
            self._check_stop()
            try:
                push[type(entry.op)](conn, db, entry, entry.op)
            except (ProtocolError, MappingMismatch) as exc:  # the server refused this one; the others go on
                if conn.broken:
                    raise
                undone = db.call(self._refused, entry, exc)
                self.ledger.note(f"local change #{entry.id} ({entry.kind}) failed: {exc}"
                                         + (f"; {undone}" if undone else ""))

    def _refused(self, uow: UnitOfWork, entry: journal.Entry, exc: MailsyncError) -> str:
        """The server refused a local change: the store goes back to what the server has (rules L1-L3
        in mailsync.sync.undo), in the transaction that marks the change failed."""
        undone, orphans = undo_refused(uow.connection, self.account_id, entry, exc)
        self.ledger.orphan(orphans)
        self._mark(uow, entry.id, "failed", str(exc) + (f" ({undone})" if undone else ""))
        return undone

    def _push_mkdir(self, conn: ImapSession, db: StoreWorker, entry: journal.Entry, op: journal.Mkdir) -> None:
        db.call(self._mark, entry.id, "sent")
        crash.point("mkdir sent")
        conn.create(op.folder_name)
        db.call(self._mark, entry.id, "done")

    def _push_rmdir(self, conn: ImapSession, db: StoreWorker, entry: journal.Entry, op: journal.Rmdir) -> None:
        db.call(self._mark, entry.id, "sent")
        crash.point("rmdir sent")
        conn.delete(op.folder_name)
        db.call(self._mark, entry.id, "done")

    def _push_rename(self, conn: ImapSession, db: StoreWorker, entry: journal.Entry, op: journal.Rename) -> None:
        names = {f.raw_name for f in conn.list_folders(with_status=False)}
        if op.old not in names and op.new in names:  # it happened before a crash
            db.call(self._mark, entry.id, "done")
            return
        db.call(self._mark, entry.id, "sent")
        crash.point("rename sent")
        conn.rename(op.old, op.new)
        db.call(self._mark, entry.id, "done")

    def _push_append(self, conn: ImapSession, db: StoreWorker, entry: journal.Entry, op: journal.Append) -> None:
        op_id, placement_id = entry.id, entry.placement_id
        info = db.call(self._placement_body, placement_id)
        if info is None:  # the local message was deleted again before it reached the server
            db.call(self._mark, op_id, "done")
            return
        raw, flags, mid, when = info
        folder = op.folder_name
        if entry.state == "sent":  # a crash may have come after the APPEND: look before appending again
            try:
                uid = self._find_new_copy(conn, db, folder, mid)
            except FolderMissing:  # not there: the APPEND below creates it again (rule L5)
                uid = None
            if uid is not None:
                db.call(self._settle_placement, op_id, placement_id, uid)
                return
        db.call(self._mark, op_id, "sent")
        crash.point("append sent")
        try:
            answer = conn.append(folder, raw, flags, when)
        except FolderMissing:
            # Rule L5: the folder went from the server (another client deleted or renamed it) while
            # this message waited: it is created again to hold it, never dropped with the folder.
            conn.create(folder)
            answer = conn.append(folder, raw, flags, when)
            validity = answer[0] if answer else conn.select(folder).uidvalidity
            db.call(self._folder_recreated, folder, validity, placement_id)
        crash.point("append answered")
        uid = self._appended_uid(conn, db, folder, answer, raw, mid)
        db.call(self._settle_placement, op_id, placement_id, uid)

    def _folder_recreated(self, uow: UnitOfWork, raw_name: str, uidvalidity: int, keep: int) -> None:
        """Rule L5's store side: the folder on the server is a new one. The old one's messages are
        tombstoned (found again by body if another client moved them, rule N2); the folder starts
        over with the new UIDVALIDITY and no checkpoints, holding the waiting message ``keep``."""
        c, pl, fo = uow.connection, tables.placements.c, tables.folders.c
        folder_id = c.scalar(select(fo.id).where(fo.account_id == self.account_id, fo.raw_name == raw_name))
        if folder_id is None:
            return
        c.execute(update(tables.placements).where(pl.folder_id == folder_id, pl.uid.isnot(None), pl.id != keep,
                                                  pl.tombstone_run.is_(None)).values(tombstone_run=self.run_id))
        repo.update_folder(c, folder_id, uidvalidity=uidvalidity, uidnext=None, highestmodseq=None, messages=None,
                           fetched_uid=0, status="ok", status_reason=None)
        self.ledger.audit(uow, "folder_recreated", "gone from the server while a local message waited to go into it: "
                    "created again to hold it", folder=utf7.decode(raw_name))
        uow.commit()

    def _push_move(self, conn: ImapSession, db: StoreWorker, entry: journal.Entry, op: journal.Move) -> None:
        op_id, placement_id = entry.id, entry.placement_id
        src, src_uid, dest = op.src_folder, op.src_uid, op.dest_folder
        key = db.call(self._placement_key, placement_id)
        mid = key[0] if key else None
        conn.select(src)
        in_src = self._guard(conn, src, src_uid, key, "move")
        if entry.state == "sent":
            uid = self._find_new_copy(conn, db, dest, mid)
            if uid is not None:  # copied before the crash; finish the expunge
                if in_src:
                    conn.select(src)
                    conn.uid_store([src_uid], "+FLAGS.SILENT", ["\\Deleted"])
                    conn.uid_expunge([src_uid])
                db.call(self._settle_placement, op_id, placement_id, uid, True)
                return
            conn.select(src)
        if not in_src:  # gone from the server meanwhile: the server's expunge wins
            db.call(self._drop_placement, op_id, placement_id, "the message was expunged on the server")
            return
        db.call(self._mark, op_id, "sent")
        crash.point("move sent")
        if conn.has("MOVE"):
            mapping = conn.uid_copy([src_uid], dest, move=True)
        else:
            mapping = conn.uid_copy([src_uid], dest)
            crash.point("move copied")
            conn.uid_store([src_uid], "+FLAGS.SILENT", ["\\Deleted"])
            conn.uid_expunge([src_uid])
        crash.point("move answered")
        uid = self._copied_uid(conn, db, dest, mapping, src_uid, key)
        db.call(self._settle_placement, op_id, placement_id, uid, True)

    def _push_delete(self, conn: ImapSession, db: StoreWorker, entry: journal.Entry, op: journal.Delete) -> None:
        conn.select(op.folder_name)
        present = self._guard(conn, op.folder_name, op.uid, op.expected, "delete")
        db.call(self._mark, entry.id, "sent")
        crash.point("delete sent")
        if present:
            conn.uid_store([op.uid], "+FLAGS.SILENT", ["\\Deleted"])
            conn.uid_expunge([op.uid])
        db.call(self._mark, entry.id, "done")

    def _guard(self, conn: ImapSession, folder: str, uid: int, expected: tuple[str | None, int] | None, what: str) -> bool:
        """The last line of defence before a destructive command: is ``uid`` (in the selected
        ``folder``) still on the server, and does it hold the message the store names (Message-ID and
        size)? False when it is gone; MappingMismatch, with nothing sent, when it holds another."""
        item = conn.fetch_headers([uid]).get(uid)
        if item is None:
            return False
        if expected is not None:
            found = (message_id(item.header_fields or b""), item.size)
            if found != tuple(expected):
                raise MappingMismatch(
                    f"account '{self.account.name}': {utf7.decode(folder)!r} UID {uid} is not the message the "
                    f"store names (the server has Message-ID {found[0]}, {found[1]} bytes; the store expected "
                    f"{expected[0]}, {expected[1]} bytes): the {what} was not sent",
                    hint="run `mailsync verify --server --repair` to re-read the folder, then make the change again")
        return True

    def _find_new_copy(self, conn: ImapSession, db, folder: str, mid: str | None) -> int | None:
        """The UID in `folder` of a message with Message-ID `mid` that the store does not know yet."""
        if not mid:
            return None
        conn.select(folder)
        candidates = conn.search_message_id(mid)
        known = db.call(self._known_uids, folder)
        fresh = [u for u in candidates if u not in known]
        return max(fresh) if fresh else None

    def _known_uids(self, uow: UnitOfWork, raw_name: str) -> set[int]:
        f = tables.folders.c
        folder_id = uow.connection.scalar(select(f.id).where(f.account_id == self.account_id,
                                                             f.raw_name == raw_name))
        return set() if folder_id is None else set(repo.uid_flags(uow.connection, folder_id))

    def _placement_body(self, uow: UnitOfWork, placement_id: int | None):
        p = _placement_with_body(uow.connection, placement_id)
        if p is None:
            return None
        return repo.read_body(uow.connection, p.body_sha256), p.flags.split(), p.message_id, imap_date(p.internaldate)

    def _placement_key(self, uow: UnitOfWork, placement_id: int | None) -> tuple[str | None, int] | None:
        """(Message-ID, size) of a placement's message: what its UID must hold on the server."""
        p = _placement_with_body(uow.connection, placement_id)
        return (p.message_id, p.size) if p else None

    def _settle_placement(self, uow: UnitOfWork, op_id: int, placement_id: int, uid: int | None,
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
        self._mark(uow, op_id, "done")

    def _drop_placement(self, uow: UnitOfWork, op_id: int, placement_id: int, why: str) -> None:
        uow.connection.execute(delete(tables.placements).where(tables.placements.c.id == placement_id))
        self._mark(uow, op_id, "failed", why)


def _placement_with_body(c, placement_id: int | None):
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
