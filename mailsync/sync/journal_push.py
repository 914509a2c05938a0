"""Pushing the journal of local changes to the server, oldest first: one push function per kind
of operation (mailsync.sync.journal), each guarded, marked "sent" before its command goes out, and
settled from the server's answer (APPENDUID, COPYUID) or, after a crash, by looking at the server.

Owns: the IMAP side of each journal entry; its transactions are journal_store.py's, run through the
store worker; a refused entry is handed to mailsync.sync.undo (rules L1-L4), a vanished folder to
rule L5 (an append creates it again). JournalPush is a mixin of engine.AccountSync, whose account,
run ledger, StoreSide and store worker it uses. Must not: pull from the server (engine.py) or decide flag
merges (plan.py; flag changes are pushed by each folder's pull, rules T1-T3).
"""

from __future__ import annotations

import dataclasses

from typing import TYPE_CHECKING


from mailsync.errors import FolderMissing, MappingMismatch, ProtocolError
from mailsync.imap import utf7
from mailsync.store.worker import StoreWorker
from mailsync.sync import crash, journal, journal_store, store_tasks
from mailsync.sync.message import message_id

if TYPE_CHECKING:
    from mailsync.sync.session import ImapSession


class JournalPush:
    """The journal half of a sync (see the module's docstring)."""

    def _push_ops(self, conn: ImapSession, db: StoreWorker) -> None:
        # In the order they were made: each names folders as they were called at that moment.
        push = {journal.Mkdir: self._push_mkdir, journal.Rmdir: self._push_rmdir, journal.Rename: self._push_rename,
                journal.Append: self._push_append, journal.Move: self._push_move, journal.Delete: self._push_delete,
                journal.LabelChange: self._push_labels}
        for group in _groups(db.call(journal_store.load_ops, self.side), conn.has("LITERAL+")):
            self._check_stop()
            if len(group) > 1:  # APPENDs into one folder, pipelined; what they could not settle goes one by one
                label = f"{utf7.decode(group[0].op.folder_name)} (sending)"
                self.observer.folder_started(self.account.name, label, len(group))
                try:
                    group = self._push_appends(conn, db, group, label)
                finally:
                    self.observer.folder_done(self.account.name, label)
            for entry in group:
                try:
                    push[type(entry.op)](conn, db, entry, entry.op)
                except (ProtocolError, MappingMismatch) as exc:  # the server refused this one; the others go on
                    if conn.broken:
                        raise
                    undone = db.call(journal_store.refused, self.side, entry, exc)
                    self.ledger.note(f"local change #{entry.id} ({entry.kind}) failed: {exc}"
                                     + (f"; {undone}" if undone else ""))

    def _push_appends(self, conn: ImapSession, db: StoreWorker, group: list[journal.Entry],
                      label: str) -> list[journal.Entry]:
        """Pending APPENDs into one folder, in batches (APPEND_BATCH messages, APPEND_BATCH_BYTES):
        each marked "sent" in one transaction and sent without a round trip per message
        (send_appends); while the server stores one batch, the next one is located and marked on
        the store's thread and its messages read from the packs on a reader thread (a pread and a
        SHA-256 check each, which let go of the GIL), so neither thread paces the other; each batch
        settled in one transaction. An APPENDUID is believed here only when it cannot be wrong (the
        folder's UIDVALIDITY, a UID the store does not hold). Returns the entries left to the
        one-by-one path (refused, or an answer to look into), which finds a copy already made by its
        Message-ID (a batch marked and not sent is among them after an error: "sent" only means
        it may have been)."""
        from concurrent.futures import ThreadPoolExecutor

        folder = group[0].op.folder_name
        rest: list[journal.Entry] = []
        validity, known = db.call(store_tasks.folder_uids, self.account_id, folder)
        packs = self.store.packs

        def read_ahead(reader, entries):
            located = db.submit(journal_store.placement_sources, self.side,
                                [(e.id, e.placement_id) for e in entries[:APPEND_BATCH]], APPEND_BATCH_BYTES)
            return reader.submit(lambda: journal_store.read_placement_bodies(*located.result(), packs))

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailsync-packread") as reader:
            upcoming = read_ahead(reader, group)
            in_flight = None  # (entries, ticket) sent and not read yet
            while group or in_flight:
                sent = None
                if group:
                    bodies = upcoming.result()  # marked "sent" already
                    taken, group = group[:len(bodies)], group[len(bodies):]
                    if group:
                        upcoming = read_ahead(reader, group)
                    ready = [e for e in taken if bodies[e.placement_id] is not None]
                    rest += [dataclasses.replace(e, state="sent") for e in taken if bodies[e.placement_id] is None]
                    if ready:
                        crash.point("appends sent")
                        sent = (ready, conn.send_appends(folder, [(bodies[e.placement_id][0], bodies[e.placement_id][1],
                                                                   bodies[e.placement_id][3]) for e in ready]),
                                sum(len(bodies[e.placement_id][0]) for e in ready))
                if in_flight is not None:
                    entries, ticket, nbytes = in_flight
                    answers = conn.read_appends(ticket)
                    self.observer.messages_sent(self.account.name, label, len(entries), nbytes)
                    crash.point("appends answered")
                    named = {a[0] for a in answers if isinstance(a, tuple)}
                    if validity is None and len(named) == 1:
                        validity = named.pop()  # a folder the store never read takes it (settle_placements)
                    settled = []
                    for entry, answer in zip(entries, answers):
                        if isinstance(answer, tuple) and answer[0] == validity and answer[1] not in known:
                            known.add(answer[1])
                            settled.append((entry.id, entry.placement_id, answer[1]))
                        else:
                            rest.append(dataclasses.replace(entry, state="sent"))
                    db.submit(journal_store.settle_placements, self.side, settled, validity)
                in_flight = sent
        return rest

    def _push_mkdir(self, conn: ImapSession, db: StoreWorker, entry: journal.Entry, op: journal.Mkdir) -> None:
        db.call(journal_store.mark, self.side, entry.id, "sent")
        crash.point("mkdir sent")
        conn.create(op.folder_name)
        db.call(journal_store.mark, self.side, entry.id, "done")

    def _push_rmdir(self, conn: ImapSession, db: StoreWorker, entry: journal.Entry, op: journal.Rmdir) -> None:
        db.call(journal_store.mark, self.side, entry.id, "sent")
        crash.point("rmdir sent")
        conn.delete(op.folder_name)
        db.call(journal_store.mark, self.side, entry.id, "done")

    def _push_rename(self, conn: ImapSession, db: StoreWorker, entry: journal.Entry, op: journal.Rename) -> None:
        names = {f.raw_name for f in conn.list_folders(with_status=False)}
        if op.old not in names and op.new in names:  # it happened before a crash
            db.call(journal_store.mark, self.side, entry.id, "done")
            return
        db.call(journal_store.mark, self.side, entry.id, "sent")
        crash.point("rename sent")
        conn.rename(op.old, op.new)
        db.call(journal_store.mark, self.side, entry.id, "done")

    def _push_append(self, conn: ImapSession, db: StoreWorker, entry: journal.Entry, op: journal.Append) -> None:
        op_id, placement_id = entry.id, entry.placement_id
        info = db.call(journal_store.placement_body, self.side, placement_id)
        if info is None:  # the local message was deleted again before it reached the server
            db.call(journal_store.mark, self.side, op_id, "done")
            return
        raw, flags, mid, when = info
        folder = op.folder_name
        if entry.state == "sent":  # a crash may have come after the APPEND: look before appending again
            try:
                uid = self._find_new_copy(conn, db, folder, mid)
            except FolderMissing:  # not there: the APPEND below creates it again (rule L5)
                uid = None
            if uid is not None:
                db.call(journal_store.settle_placement, self.side, op_id, placement_id, uid)
                return
        limit = conn.append_limit
        if limit is not None and len(raw) > limit:  # RFC 7889: the server would refuse it; nothing is sent
            raise ProtocolError(f"account '{self.account.name}': a message of {len(raw):,} bytes is larger than "
                                f"{folder!r} takes (APPENDLIMIT {limit:,} bytes): not sent",
                                hint="the server refuses messages this large; keep it elsewhere")
        db.call(journal_store.mark, self.side, op_id, "sent")
        crash.point("append sent")
        try:
            answer = conn.append(folder, raw, flags, when)
        except FolderMissing:
            # Rule L5: the folder went from the server (another client deleted or renamed it) while
            # this message waited: it is created again to hold it, never dropped with the folder.
            conn.create(folder)
            answer = conn.append(folder, raw, flags, when)
            validity = answer[0] if answer else conn.select(folder).uidvalidity
            db.call(journal_store.folder_recreated, self.side, folder, validity, placement_id)
        crash.point("append answered")
        uid = self._appended_uid(conn, db, folder, answer, raw, mid)
        db.call(journal_store.settle_placement, self.side, op_id, placement_id, uid)

    def _push_move(self, conn: ImapSession, db: StoreWorker, entry: journal.Entry, op: journal.Move) -> None:
        op_id, placement_id = entry.id, entry.placement_id
        src, src_uid, dest = op.src_folder, op.src_uid, op.dest_folder
        key = db.call(journal_store.placement_key, self.side, placement_id)
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
                db.call(journal_store.settle_placement, self.side, op_id, placement_id, uid, True)
                return
            conn.select(src)
        if not in_src:  # gone from the server meanwhile: the server's expunge wins
            db.call(journal_store.drop_placement, self.side, op_id, placement_id, "the message was expunged on the server")
            return
        db.call(journal_store.mark, self.side, op_id, "sent")
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
        named = bool(mapping) and uid is not None and mapping.get(src_uid) == uid  # the COPYUID was believed
        validity = getattr(mapping, "uidvalidity", None) if named else None
        db.call(journal_store.settle_placement, self.side, op_id, placement_id, uid, True, validity)

    def _push_delete(self, conn: ImapSession, db: StoreWorker, entry: journal.Entry, op: journal.Delete) -> None:
        conn.select(op.folder_name)
        present = self._guard(conn, op.folder_name, op.uid, op.expected, "delete")
        db.call(journal_store.mark, self.side, entry.id, "sent")
        crash.point("delete sent")
        trash = self._gmail_trash(conn, db, op.folder_name) if present else None
        if trash is not None:  # Gmail: deleted from All Mail means deleted: into Trash (rule N6)
            conn.uid_copy([op.uid], trash, move=conn.has("MOVE"))
        elif present:  # on Gmail, from a label's folder: that label goes, the message stays (rule N6)
            conn.uid_store([op.uid], "+FLAGS.SILENT", ["\\Deleted"])
            conn.uid_expunge([op.uid])
        db.call(journal_store.mark, self.side, entry.id, "done")

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
        known = db.call(journal_store.known_uids, self.side, folder)
        fresh = [u for u in candidates if u not in known]
        return max(fresh) if fresh else None


APPEND_BATCH = 200  # APPENDs sent together (one MULTIAPPEND where the server offers it)
APPEND_BATCH_BYTES = 8 << 20


def _groups(entries: list[journal.Entry], pipelined: bool) -> list[list[journal.Entry]]:
    """The entries in order, runs of pending APPENDs into one folder grouped (without LITERAL+ every
    entry alone)."""
    out: list[list[journal.Entry]] = []
    for entry in entries:
        last = out[-1] if out else None
        if (pipelined and last and entry.state == "pending" and isinstance(entry.op, journal.Append)
                and last[0].state == "pending" and isinstance(last[0].op, journal.Append)
                and last[0].op.folder_name == entry.op.folder_name):
            last.append(entry)
        else:
            out.append([entry])
    return out
