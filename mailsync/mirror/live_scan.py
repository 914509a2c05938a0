"""The live Maildir mirror, Maildir -> store: what a mail client changed, recorded for the server.

Owns: the scan before an account's sync (live_plan.plan_scan carried out): flag letters changed,
files deleted, files moved to another mirrored folder, new files (claimed, then appended), folders
a client made (mkdir) or removed (rmdir), each recorded through LocalChanges (the journal the sync
pushes), and the mass-delete guard's record (mirror_folders.held), which `mailsync status` shows;
before the first sync into a Maildir another program wrote, its bodies taken into the store
(mailsync.mirror.adopt). Must not: write message files other than a new file's own rewrite to the
bytes the server will hold, speak IMAP, or decide (live_plan.py does).

Crash safety: a client's new file is claimed (a row in state "append") before its append is
recorded, and a claim is settled by the message's SHA-256 before anything is appended again; a
client change is recorded before its row moves on, and recording it again finds nothing left to
change.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import delete, insert, select, update

from mailsync.errors import MailsyncError
from mailsync.mirror import live_plan
from mailsync.mirror import maildir
from mailsync.mirror import snapshot
from mailsync.mirror.adopt import LONE_LF
from mailsync.mirror.live_state import MirrorError, MirrorResult, MirrorState, _fail, _flags_text
from mailsync.mirror.writer import _fsync_dir, _write_new
from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.store.uow import UnitOfWork
from mailsync.sync import crash


class _LocalChanges:
    """mailsync.changes.LocalChanges, imported when the first change is recorded: it declares the
    store's ORM models, which a scan that finds nothing (most of them) does without (0.1-0.3 s)."""

    def __init__(self, store) -> None:
        self._store, self._changes = store, None

    def __getattr__(self, name: str):
        if self._changes is None:
            from mailsync.changes import LocalChanges

            self._changes = LocalChanges(self._store)
        return getattr(self._changes, name)


class ClientScan(MirrorState):
    """The scan half of LiveMirror."""

    def scan(self, *, allow_mass_delete: bool = False) -> MirrorResult:
        """Record what a mail client changed in the Maildir since the last write, as local changes."""
        changes = _LocalChanges(self.store)
        with UnitOfWork(self.store) as uow:
            c = uow.connection
            account_id = self._account_id(c)
            if account_id is None:  # its first sync
                if self.root.is_dir():
                    self._seed()
                return self.result
            folder_rows, file_rows = self._state(c, account_id)
            self._check_root(bool(folder_rows))
            names = {f.folder_id: f.name for f in self._store_folders(c, account_id)}
            ms = tables.mirror_snapshots.c
            recorded = c.scalar(select(ms.account_id).where(ms.account_id == account_id)) is not None
            # taken before the listing: a client's change from now on shows in it (snapshot.py)
            if folder_rows:
                self.snapshot = snapshot.take(self.root, self.layout, [r.path for r in folder_rows])
            disk = self._confirmed(self._disk(r.path for r in folder_rows), file_rows, folder_rows)
            uow.commit()
        if recorded:  # what this run records or writes is not what the fingerprint vouched for
            self._rows(delete(tables.mirror_snapshots).where(tables.mirror_snapshots.c.account_id == account_id))
        if not folder_rows and self.root.is_dir():  # never written: a Maildir another program wrote?
            self._seed()
            return self.result
        made = self._new_folders(changes, account_id, {r.path for r in folder_rows}, names)
        if made:
            with UnitOfWork(self.store) as uow:
                folder_rows = self._state(uow.connection, account_id)[0]
                names = {f.folder_id: f.name for f in self._store_folders(uow.connection, account_id)}
            disk = self._confirmed(self._disk(r.path for r in folder_rows), file_rows, folder_rows)
        by_unique = {f.unique: f for f in disk}
        claims = [r for r in file_rows if r.state == "append"]  # claims an earlier run left
        for row in claims:
            self._settle_claim(changes, account_id, row, by_unique.get(row.unique), folder_rows, names)
        if made or claims:
            with UnitOfWork(self.store) as uow:
                folder_rows, file_rows = self._state(uow.connection, account_id)
        plan = live_plan.plan_scan(folder_rows, file_rows, disk, allow_mass_delete=allow_mass_delete,
                           present=self._present(folder_rows))
        self.result.notes += plan.notes
        for change in plan.changes:
            try:
                self._record(changes, account_id, change, folder_rows, names)
            except MailsyncError as exc:  # one file that cannot be taken does not stop the others
                self.result.notes.append(f"{self.root}: a client change was not recorded: {exc}")
        self._record_held(account_id, plan.held)
        known = {r.unique for r in file_rows}
        # nothing found and nothing recorded: after a sync that changed nothing either, the write
        # has nothing to do (LiveMirror.write checks the counts before it takes this)
        self.quiet = not (made or claims or plan.changes or plan.held or any(f.unique not in known for f in disk))
        return self.result

    def _confirmed(self, disk: list, file_rows, folder_rows) -> list:
        """The listing, with what it missed while a client renamed files. readdir is not atomic with
        another process's rename (POSIX leaves it unspecified whether an entry added or removed
        meanwhile is returned): a file a mail client renamed during the listing (a flag change, new/
        to cur/, a move to another folder) can be missing under both names, and would be read as a
        deletion, sent to the server. Every file the state rows know and the listing lacks is looked
        for in a second listing, made after the first ended (and a third, while one finds more): a
        rename is then seen, and only a file that stays gone is gone."""
        for _ in range(3):
            seen = {f.unique for f in disk}
            missing = {r.unique for r in file_rows if r.state == "ok"} - seen
            if not missing:
                break
            found = [f for f in self._disk(r.path for r in folder_rows) if f.unique in missing]
            if not found:
                break
            disk = disk + found
        return disk

    def _seed(self) -> None:
        """Adopting a Maildir another program wrote (mailsync.mirror.adopt): its folders named in
        modified UTF-7 (mbsync's way) renamed to the UTF-8 paths mailsync uses, and every message
        file's bytes put into the store, so that the sync links the server's messages to them
        instead of downloading them and the write takes the files over. Nothing is recorded."""
        from mailsync.imap import utf7
        from mailsync.mirror import adopt

        paths = ([""] if (self.root / "cur").is_dir() else []) + self._client_folders()
        for i, path in enumerate(paths):
            try:
                parts = maildir.path_folder(path, self.layout)
                utf8 = maildir.folder_path([utf7.decode(p) for p in parts], self.layout)
            except (ValueError, MailsyncError):  # not modified UTF-7: taken as it is
                continue
            if utf8 != path and not self._dir(utf8).exists():
                try:
                    os.rename(self._dir(path), self._dir(utf8))
                except OSError as exc:
                    raise _fail("rename the Maildir folder", self._dir(path), exc) from exc
                self.result.notes.append(f"{self._dir(path)} renamed to {self._dir(utf8)} (folder names in UTF-8)")
                paths[i] = utf8
        files = adopt.message_files([self._dir(p) for p in paths])
        if not files:
            return
        self.adopting, nbytes = adopt.seed_bodies(self.store, files)
        self.result.notes.append(f"adopting the Maildir {self.root}: {len(files)} message file(s) ({nbytes >> 20} MiB) "
                                 f"taken into the store, matched to the server's messages by Message-ID and size, "
                                 f"not downloaded again")

    def _client_folders(self) -> list[str]:
        """The Maildir folders (directories with a cur/) under the root, as paths relative to it."""
        out = []
        if self.layout == "maildir++":
            try:
                with os.scandir(self.root) as it:
                    out = [e.name for e in it if e.name.startswith(".") and (Path(e.path) / "cur").is_dir()]
            except OSError as exc:
                raise _fail("list", self.root, exc) from exc
            return sorted(out)
        for base, dirs, _files in os.walk(self.root):
            dirs[:] = [d for d in dirs if d not in ("cur", "new", "tmp")]
            if base != str(self.root) and os.path.isdir(os.path.join(base, "cur")):
                out.append(os.path.relpath(base, self.root))
        return sorted(out)

    def _new_folders(self, changes, account_id: int, mirrored: set[str], names: dict[int, str]) -> bool:
        """Folders a client made in the Maildir: made on the server (LocalChanges.mkdir), then
        mirrored, so that the files in them are appended. True when any was made."""
        from mailsync.sync.plan import folder_selected

        made = False
        if not self.root.is_dir():
            return False
        with UnitOfWork(self.store) as uow:
            delimiter = next((f.delimiter for f in repo.folders_of(uow.connection, account_id) if f.delimiter), "/")
        for path in self._client_folders():
            if path in mirrored:
                continue
            try:
                parts = maildir.path_folder(path, self.layout)
            except ValueError:
                continue
            name = delimiter.join(parts)
            if name in names.values():  # a store folder whose directory the write has not recorded yet
                continue
            if any(delimiter in p for p in parts) or not folder_selected(name, self.account.folders,
                                                                          self.account.exclude):
                self.result.notes.append(f"{self._dir(path)}: a folder made in the Maildir that this account's "
                                         f"folders/exclude do not select (or whose name cannot be used): left alone")
                continue
            try:
                changes.mkdir(self.account.name, name)
            except MailsyncError as exc:
                self.result.notes.append(f"{self._dir(path)}: not made on the server: {exc}")
                continue
            crash.point("mirror mkdir recorded")
            fo = tables.folders.c
            with UnitOfWork(self.store) as uow:
                folder_id = uow.connection.scalar(select(fo.id).where(fo.account_id == account_id, fo.name == name))
                uow.connection.execute(insert(tables.mirror_folders).values(
                    account_id=account_id, folder_id=folder_id, path=path))
                uow.commit()
            self.result.recorded += 1
            made = True
        return made

    def _present(self, folder_rows) -> set[str]:
        """The paths of the mirrored folders whose directories are there. When none is (a disk not
        mounted, a path mistyped), the scan stops: nothing is read as deleted."""
        there = {r.path for r in folder_rows if (self._dir(r.path) / "cur").is_dir()}
        if folder_rows and not there:
            raise MirrorError(f"account '{self.account.name}': none of the Maildir folders mailsync wrote under "
                              f"{self.root} is there any more: nothing was sent to the server",
                              hint="mount the disk or fix the maildir path in the config, then sync again")
        return there

    def _placement(self, c, row: live_plan.FileRow):
        pl, fo = tables.placements.c, tables.folders.c
        if row.placement_id is None:
            return None
        return c.execute(select(pl.id, pl.folder_id, pl.uid, pl.flags, pl.body_sha256, fo.name)
                         .join(tables.folders, fo.id == pl.folder_id)
                         .where(pl.id == row.placement_id, pl.body_sha256 == row.sha256,
                                pl.tombstone_run.is_(None))).one_or_none()

    def _record(self, changes, account_id: int, change, folder_rows, names) -> None:
        mm = tables.mirror_files.c
        acc = self.account.name
        if isinstance(change, live_plan.ClientAppend):
            self._append(changes, account_id, change.found, change.folder_id, names)
            return
        if isinstance(change, live_plan.ClientRmdir):
            self._rmdir(changes, account_id, change, names)
            return
        row = change.row
        with UnitOfWork(self.store) as uow:
            p = self._placement(uow.connection, row)
        if isinstance(change, live_plan.ClientDelete):
            if p is not None and p.uid is None:
                return  # not on the server yet: deleted once it is (next scan)
            if p is not None:
                changes.delete(acc, p.name, p.uid)
                crash.point("mirror delete recorded")
                self.result.recorded += 1
            self._rows(delete(tables.mirror_files).where(mm.id == row.id))
            return
        if p is None:  # the message is gone from the store: the write removes the row
            return
        if p.uid is None:
            return  # its last change has not reached the server yet: the next scan sees this one
        if isinstance(change, live_plan.ClientMove):
            # flags changed with the move are recorded first, at the source UID: the MOVE carries the
            # flags the server had, and the pull of the destination pushes the rest, in the same sync
            self._record_flags(changes, p, change.found.flags - row.flags, row.flags - change.found.flags)
            if p.folder_id != change.dest_folder_id:
                changes.move(acc, p.name, p.uid, names[change.dest_folder_id])
                crash.point("mirror move recorded")
                self.result.recorded += 1
        else:
            self._record_flags(changes, p, change.add, change.remove)
        self._rows(update(tables.mirror_files).where(mm.id == row.id).values(
            folder=change.found.folder, flags=_flags_text(change.found.flags), name=change.found.name))

    def _record_flags(self, changes, p, add: frozenset[str], remove: frozenset[str]) -> None:
        current = set(p.flags.split())
        add, remove = sorted(add - current), sorted(remove & current)
        if add or remove:
            changes.flag(self.account.name, p.name, p.uid, add=add, remove=remove)
            crash.point("mirror flags recorded")
            self.result.recorded += 1

    def _rmdir(self, changes, account_id: int, change: live_plan.ClientRmdir, names) -> None:
        """A folder whose directory a client removed: removed on the server (LocalChanges.rmdir,
        which forgets its messages in the store), then its mirror rows dropped. A rerun after a
        crash between the two finds the folder gone from the store and only drops the rows."""
        name = names.get(change.row.folder_id)
        if name is not None:
            changes.rmdir(self.account.name, name)
            crash.point("mirror rmdir recorded")
            self.result.recorded += 1
            self.result.notes.append(f"{self._dir(change.row.path)} was removed: folder {name!r} is removed on "
                                     f"the server, with the {change.messages} message(s) it still held")
        mf, mm = tables.mirror_folders.c, tables.mirror_files.c
        self._rows(delete(tables.mirror_files).where(mm.account_id == account_id, mm.folder == change.row.path),
                   delete(tables.mirror_folders).where(mf.id == change.row.id))

    def _append(self, changes, account_id: int, found: live_plan.DiskFile, folder_id: int, names,
                claim_id: int | None = None) -> None:
        """A client's new file: claimed (its row, state "append"), then recorded as an append."""
        from mailsync.changes import ensure_message_id, read_message_file

        path = self._dir(found.folder) / found.name
        try:
            raw = read_message_file(path)
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _fail("read", path, exc) from exc
        # IMAP carries CRLF lines (RFC 3501), and the server hands them back so: the message goes out
        # as the server will hold it, with a Message-ID (to find it after a crash), and the file is
        # rewritten to match, so that the mirror and the server hold the same bytes and a rerun
        # finds the claim by its SHA-256
        fixed = LONE_LF.sub(b"\r\n", ensure_message_id(raw))
        if fixed != raw:
            tmp = self._dir(found.folder) / "tmp" / (found.unique + ".mailsync")
            try:
                _write_new(tmp, fixed, mtime)
                os.replace(tmp, path)
                _fsync_dir(path.parent)
            except OSError as exc:
                raise _fail("write", path, exc) from exc
        sha = hashlib.sha256(fixed).hexdigest()
        mm = tables.mirror_files.c
        if claim_id is None:
            with UnitOfWork(self.store) as uow:
                claim_id = uow.connection.execute(insert(tables.mirror_files).values(
                    account_id=account_id, placement_id=None, sha256=sha, folder=found.folder, name=found.name,
                    unique_name=found.unique, flags=_flags_text(found.flags), state="append")).inserted_primary_key[0]
                uow.commit()
            crash.point("mirror append claimed")
        else:
            self._rows(update(tables.mirror_files).where(mm.id == claim_id).values(sha256=sha))
        when = datetime.fromtimestamp(int(mtime), timezone.utc).isoformat()
        op_id = changes.append(self.account.name, names[folder_id], fixed, flags=sorted(found.flags),
                               internaldate=when)
        crash.point("mirror append recorded")
        o = tables.pending_ops.c
        with UnitOfWork(self.store) as uow:
            pid = uow.connection.scalar(select(o.placement_id).where(o.id == op_id))
            uow.connection.execute(update(tables.mirror_files).where(mm.id == claim_id).values(
                placement_id=pid, state="ok"))
            uow.commit()
        self.result.recorded += 1

    def _settle_claim(self, changes, account_id: int, row: live_plan.FileRow, found: live_plan.DiskFile | None,
                      folder_rows, names) -> None:
        """A claim left by a run that stopped: the append was recorded (a placement of that message
        in that folder that no row mirrors) or not (append it now), or the file is gone (drop it)."""
        mm, pl = tables.mirror_files.c, tables.placements.c
        folder_id = next((r.folder_id for r in folder_rows if r.path == row.folder), None)
        with UnitOfWork(self.store) as uow:
            c = uow.connection
            mirrored = select(mm.placement_id).where(mm.placement_id.isnot(None))
            pid = None if folder_id is None else c.scalar(select(pl.id).where(
                pl.folder_id == folder_id, pl.body_sha256 == row.sha256, pl.tombstone_run.is_(None),
                pl.id.not_in(mirrored)).order_by(pl.id.desc()).limit(1))
            if pid is not None:
                c.execute(update(tables.mirror_files).where(mm.id == row.id).values(placement_id=pid, state="ok"))
            elif found is None or folder_id is None or found.folder != row.folder:
                c.execute(delete(tables.mirror_files).where(mm.id == row.id))
            uow.commit()
        if pid is None and found is not None and folder_id is not None and found.folder == row.folder:
            self._append(changes, account_id, found, folder_id, names, claim_id=row.id)

    def _record_held(self, account_id: int, held: list[live_plan.Held]) -> None:
        mf = tables.mirror_folders.c
        if not held:
            with UnitOfWork(self.store) as uow:  # a read: no write transaction for a scan that holds nothing
                if uow.connection.scalar(select(mf.id).where(mf.account_id == account_id, mf.held.isnot(None))
                                         .limit(1)) is None:
                    return
        stmts = [update(tables.mirror_folders).where(mf.account_id == account_id).values(held=None, held_reason=None)]
        for h in held:
            stmts.append(update(tables.mirror_folders).where(mf.account_id == account_id, mf.folder_id == h.folder_id)
                         .values(held=h.deleted, held_reason=h.reason))
            self.result.held.append(h.reason)
        self._rows(*stmts)

    # -- store -> Maildir ------------------------------------------------------------------------
