"""The journal of local operations walked as a sync would push it, for `mailsync sync --dry-run`.

Owns: for each pending entry of the journal (folder operations, appends, moves, deletes), the
look-ups the sync makes before it sends anything (journal_push.JournalPush and its _push_* steps: is the UID
still there, does it hold the message the store names, was it done before an interruption), made
read-only (EXAMINE, UID FETCH of the Message-ID header and size, UID SEARCH), and the commands it
would send, written down instead of sent; and what those pushes would change on the server for the
pull that follows (UIDs moved or deleted away, folders created, deleted or renamed).
Must not: send a command that changes the server, or write to the store. A mixin of
dry_run._DryRun, whose state it shares (the read-only connection ``c``, the account, the plan).
"""

from __future__ import annotations

import json

from sqlalchemy import select

from mailsync.errors import MappingMismatch, ProtocolError
from mailsync.imap import utf7
from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.sync import plan as rules
from mailsync.sync.dry_plan import OpPlan
from mailsync.sync.message import message_id

Key = tuple[str | None, int]  # (Message-ID, size)


class JournalWalk:
    def _journal(self, conn) -> None:
        if self.account_id is None:
            return
        o = tables.pending_ops.c
        rows = self.c.execute(select(o.id, o.kind, o.state, o.args, o.placement_id).where(
            o.account_id == self.account_id, o.state.in_(("pending", "sent")), o.kind != "flags").order_by(o.id))
        for op_id, kind, state, args, pid in rows.all():
            op = OpPlan(op_id, kind, state, kind)
            args = json.loads(args)
            try:
                getattr(self, f"_op_{kind}")(conn, op, args, pid)
            except (ProtocolError, MappingMismatch) as exc:  # as the sync: this one fails, the others go on
                if getattr(conn, "broken", False):
                    raise
                op.outcome, op.why, op.sends = "failed", str(exc), []
                # rules L1-L2 (mailsync.sync.undo): the folder is read again in full by the pull
                if kind == "delete":
                    self.reread.add(args["folder_name"])
                elif kind == "move" and isinstance(exc, MappingMismatch):
                    self.reread.add(args["src_folder"])
            self.plan.ops.append(op)
            if op.outcome == "done":
                self.plan.pushed += 1

    def _names_now(self, conn) -> set[str]:
        """The server's folder names as the journal's earlier folder operations would leave them."""
        return apply_folder_ops({f.raw_name for f in conn.list_folders(with_status=False) if f.selectable},
                                self.folder_ops, None)

    def _op_mkdir(self, conn, op: OpPlan, args: dict, _pid) -> None:
        op.what = f"create folder {utf7.decode(args['folder_name'])!r}"
        op.sends = [f"CREATE {args['folder_name']}"]
        self.folder_ops.append(("create", args["folder_name"]))

    def _op_rmdir(self, conn, op: OpPlan, args: dict, _pid) -> None:
        op.what = f"delete folder {utf7.decode(args['folder_name'])!r}"
        op.sends = [f"DELETE {args['folder_name']}"]
        self.folder_ops.append(("delete", args["folder_name"]))

    def _op_rename(self, conn, op: OpPlan, args: dict, _pid) -> None:
        old, new = args["old"], args["new"]
        op.what = f"rename folder {utf7.decode(old)!r} to {utf7.decode(new)!r}"
        names = self._names_now(conn)
        if old not in names and new in names:
            op.why = "the server has it renamed already: nothing to send"
            return
        op.sends = [f"RENAME {old} {new}"]
        self.folder_ops.append(("rename", old, new))

    def _op_append(self, conn, op: OpPlan, args: dict, pid) -> None:
        folder = args["folder_name"]
        pl, b = tables.placements.c, tables.bodies.c
        row = None if not pid else self.c.execute(
            select(pl.flags, pl.size, b.message_id).join(tables.bodies, b.sha256 == pl.body_sha256)
            .where(pl.id == pid)).one_or_none()
        op.what = f"append a message to {utf7.decode(folder)!r}"
        if row is None:
            op.why = "the local message was deleted again: nothing to send"
            return
        flags, size, mid = row
        op.what = f"append {mid or 'a message'} ({size} bytes) to {utf7.decode(folder)!r}"
        there = folder in self._names_now(conn)
        copy = self._new_copy(conn, folder, mid) if op.state == "sent" and there else None
        if copy is not None:
            op.why = f"the server has it already as UID {copy} (appended before an interruption): nothing to send"
            self._hide(folder, copy)
            return
        op.sends = [f"APPEND {folder} ({flags}) {{{size}}}"]
        if not there:  # rule L5: the folder went from the server; it is created again to hold the message
            op.sends.insert(0, f"CREATE {folder}")
            op.why = "the folder is gone from the server: created again to hold it"
            self.folder_ops.append(("create", folder))
            self.recreated.add(folder)
        self.touched.add(folder)

    def _op_move(self, conn, op: OpPlan, args: dict, pid) -> None:
        src, uid, dest = args["src_folder"], args["src_uid"], args["dest_folder"]
        op.what = f"move UID {uid} from {utf7.decode(src)!r} to {utf7.decode(dest)!r}"
        key = self._key_of(pid)
        present = self._guard(conn, src, uid, key, "move")
        copy = self._new_copy(conn, dest, key[0] if key else None) if op.state == "sent" else None
        if copy is not None:
            op.why = f"copied as UID {copy} before an interruption: only the source is removed"
            self._hide(dest, copy)
            if present is not None:
                op.sends = [f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)", f"UID EXPUNGE {uid}"]
                self._gone(src, uid)
            return
        if present is None:
            op.outcome, op.why = "failed", "the message was expunged on the server: the local copy is dropped"
            return
        op.sends = ([f"UID MOVE {uid} {dest}"] if conn.has("MOVE") else
                    [f"UID COPY {uid} {dest}", f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)", f"UID EXPUNGE {uid}"])
        self._gone(src, uid)
        self.touched.add(dest)
        self._moved_flags(pid, dest, present)

    def _moved_flags(self, pid, dest: str, item) -> None:
        """A moved message keeps the base flags the store last agreed (journal_push._settle_placement):
        a flag change queued for it is merged with the flags the server moves along (T1-T2) and pushed
        by the pull of ``dest`` (T3)."""
        pl = tables.placements.c
        row = self.c.execute(select(pl.flags, pl.base_flags).where(pl.id == pid)).one_or_none()
        if row is None or row.flags == row.base_flags or item is None:
            return
        mp = rules.plan_messages({0: rules.LocalMessage(row.flags, row.base_flags, None)},
                             {0: rules.ServerMessage(tuple(item.flags or ()), None)}, vanished=[], full=False,
                             policy=self.account.conflict)
        for _uid, add, remove, _modseq in mp.pushes:
            self.moved_pushes.append((dest, tuple(add), tuple(remove)))

    def _op_delete(self, conn, op: OpPlan, args: dict, _pid) -> None:
        folder, uid = args["folder_name"], args["uid"]
        op.what = f"delete UID {uid} in {utf7.decode(folder)!r}"
        key = (args.get("message_id"), args["size"]) if "size" in args else None
        if self._guard(conn, folder, uid, key, "delete") is not None:
            trash = self._gmail_trash(conn, folder)
            if trash is not None:  # rule N6: deleted from Gmail's All Mail means moved into Trash
                op.sends = [f"UID MOVE {uid} {trash}" if conn.has("MOVE") else f"UID COPY {uid} {trash}"]
                op.why = "Gmail: a message deleted from All Mail is moved into Trash"
                self.touched.add(trash)
            else:
                op.sends = [f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)", f"UID EXPUNGE {uid}"]
            self._gone(folder, uid)
        else:
            op.why = "already gone from the server: nothing to send"

    def _gmail_trash(self, conn, folder: str) -> str | None:
        """Rule N6 (mailsync.sync.gmail): Gmail's Trash folder when ``folder`` is its All Mail."""
        if not conn.has("X-GM-EXT-1"):
            return None
        listing = conn.list_folders(with_status=False)
        if not any(f.raw_name == folder and f.special_use == "\\All" for f in listing):
            return None
        return next((f.raw_name for f in listing if f.special_use == "\\Trash"), None)

    def _op_labels(self, conn, op: OpPlan, args: dict, pid) -> None:
        folder, uid = args["folder_name"], args["uid"]
        op.what = f"change the Gmail labels of UID {uid} in {utf7.decode(folder)!r}"
        if not conn.has("X-GM-EXT-1"):
            raise ProtocolError("the server does not offer Gmail's labels (X-GM-EXT-1): the label change "
                                "would not be sent")
        if self._guard(conn, folder, uid, self._key_of(pid), "label change") is None:
            op.outcome, op.why = "failed", "the message left the folder on the server: nothing to send"
            return
        op.sends = [f"UID STORE {uid} {sign}X-GM-LABELS ({' '.join(args.get(key, ()))})"
                    for sign, key in (("+", "add"), ("-", "remove")) if args.get(key)]

    def _gone(self, folder: str, uid: int) -> None:
        """The push takes ``uid`` away from ``folder`` on the server."""
        self._hide(folder, uid)

    def _hide(self, folder: str, uid: int) -> None:
        """The pull does not see ``uid`` of ``folder``: moved or deleted away by the push, or the UID of
        a local placement the push settles (a copy found on the server), which the store then knows."""
        folder = self._on_server(folder)
        self.gone.setdefault(folder, set()).add(uid)
        self.touched.add(folder)

    def _guard(self, conn, folder: str, uid: int, expected: Key | None, what: str):
        """journal_push._guard, read-only: is ``uid`` still in ``folder``, holding the message the store
        names? Its FETCH item (flags included), or None when it is gone; MappingMismatch (the change
        fails, nothing would be sent) when it holds another."""
        conn.select(self._on_server(folder), readonly=True)
        item = conn.fetch_headers([uid]).get(uid)
        if item is None:
            return None
        found = (message_id(item.header_fields or b""), item.size)
        if expected is not None and found != tuple(expected):
            raise MappingMismatch(f"{utf7.decode(folder)!r} UID {uid} is not the message the store names (the server "
                                f"has Message-ID {found[0]}, {found[1]} bytes; the store expected {expected[0]}, "
                                f"{expected[1]} bytes): the {what} would not be sent")
        return item

    def _new_copy(self, conn, folder: str, mid: str | None) -> int | None:
        """journal_push._find_new_copy, read-only."""
        if not mid:
            return None
        conn.select(self._on_server(folder), readonly=True)
        fresh = [u for u in conn.search_message_id(mid) if u not in self._known_uids(folder)]
        return max(fresh) if fresh else None

    def _on_server(self, raw: str) -> str:
        """The name on the server now of a folder an entry names: the entry was made after the journal's
        earlier renames, which the server has not seen yet."""
        delimiter = next((f.delimiter for f in self._folder_rows(gone=True) if f.delimiter), None)
        for op in reversed(self.folder_ops):
            if op[0] == "rename":
                old, new = op[1], op[2]
                if raw == new:
                    raw = old
                elif delimiter and raw.startswith(new + delimiter):
                    raw = old + raw[len(new):]
        return raw

    def _key_of(self, placement_id: int | None) -> Key | None:
        if not placement_id or self.c is None:
            return None
        pl, b = tables.placements.c, tables.bodies.c
        row = self.c.execute(select(b.message_id, pl.size).join(tables.bodies, b.sha256 == pl.body_sha256)
                             .where(pl.id == placement_id)).one_or_none()
        return (row[0], row[1]) if row else None

    def _known_uids(self, raw: str) -> set[int]:
        f = tables.folders.c
        fid = None if self.account_id is None else self.c.scalar(
            select(f.id).where(f.account_id == self.account_id, f.raw_name == raw))
        return set() if fid is None else set(repo.uid_flags(self.c, fid))


def apply_folder_ops(names: set[str], ops: list[tuple], delimiter: str | None) -> set[str]:
    """``names`` as the journal's folder operations, in order, would leave them. A rename takes the
    folders below the renamed one along (RFC 3501 6.3.5) when ``delimiter`` is known."""
    out = set(names)
    for op in ops:
        if op[0] == "create":
            out.add(op[1])
        elif op[0] == "delete":
            out.discard(op[1])
        else:
            old, new = op[1], op[2]
            for raw in list(out):
                if raw == old:
                    out.discard(raw)
                    out.add(new)
                elif delimiter and raw.startswith(old + delimiter):
                    out.discard(raw)
                    out.add(new + raw[len(old):])
    return out


def after_folder_ops(raw: str, ops: list[tuple], delimiter: str | None) -> str | None:
    """The name a listed folder has once the journal's folder operations ran (None: deleted)."""
    for op in ops:
        if op[0] == "delete" and raw == op[1]:
            return None
        if op[0] == "rename":
            old, new = op[1], op[2]
            if raw == old:
                raw = new
            elif delimiter and raw.startswith(old + delimiter):
                raw = new + raw[len(old):]
    return raw


def made_folder(raw: str, delimiter: str | None):
    """A folder the journal's CREATE makes, as the LIST after it would show it (empty, no flags)."""
    from mailsync.imap.commands import RemoteFolder

    return RemoteFolder(raw_name=raw, name=utf7.decode(raw), delimiter=delimiter, flags=(), status=None)
