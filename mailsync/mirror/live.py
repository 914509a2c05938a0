"""The live two-way Maildir mirror of an account, store -> Maildir, and the run around a sync.

Owns: the write after an account's sync (live_plan.plan_write carried out: folders made, renamed
and removed; new messages written to tmp/, fsynced, renamed into new/ or cur/; flag changes and
moves as renames of the same file; expunged files removed; a state row committed only after its
file is in place), ``sync_with_mirror`` (scan, sync, write: the CLI's and the watch daemon's entry
point) and ``maildir_signature`` (what the watch daemon compares to notice a client's change).
The scan before the sync is live_scan.py's; the state both read is live_state.py's. A message held
by its headers alone (larger than max_size, store/headers_only.py) gets no file until its body is
in the store: a file is never a truncated message.

Must not: speak IMAP, decide (live_plan.py does), or write into the store's tables other than the
mirror's own. One file that cannot be handled is a note, not the end of the run.

Crash safety (a kill -9 anywhere, then a rerun): a written file without its row is adopted by its
name (live_plan's identity rule); a rename whose row was not updated is seen by the next scan as
a flag change or move the store already has, which records nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import delete, func, insert, select, update

from mailsync.errors import MailsyncError, StoreError
from mailsync.mirror import live_plan
from mailsync.mirror import maildir
from mailsync.mirror.live_scan import ClientScan
from mailsync.mirror.stage import MaildirStage
from mailsync.mirror.live_state import MirrorError, MirrorResult, _fail, _flags_text, mirror_of
from mailsync.mirror.writer import MaildirFolder, _fsync_dir
from mailsync.store import headers_only
from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.store.uow import UnitOfWork
from mailsync.sync import crash

__all__ = ["LiveMirror", "MirrorError", "MirrorResult", "maildir_signature", "mirror_of", "sync_with_mirror"]

log = logging.getLogger("mailsync.mirror")


class LiveMirror(ClientScan):
    """``LiveMirror(store, account).scan()`` before the account's sync (live_scan.py), ``.write()``
    after it."""

    def write(self, *, store_changed: bool = True, stage: MaildirStage | None = None) -> MirrorResult:
        """Put the store's state of the account into the Maildir. The folders whose live
        placements the state rows mirror exactly (_in_step) are left out: their placements and
        rows are not read, nor their directories listed; after a quiet scan and a sync that
        changed nothing (not ``store_changed``) with every folder in step, nothing is done. A new
        message the sync staged (``stage``) is renamed into place, not read from the store again."""
        with UnitOfWork(self.store) as uow:
            c = uow.connection
            account_id = self._account_id(c)
            if account_id is None:
                return self.result
            folders = self._store_folders(c, account_id)
            settled, same_folders = (set(), False) if self.adopting else self._in_step(c, account_id, folders)
            if not store_changed and self.quiet and same_folders and settled == {f.path for f in folders}:
                self._vouch(c, account_id)
                uow.commit()
                return self.result
            folder_rows, file_rows = self._state(c, account_id, leave_out=settled)
            self._check_root(bool(folder_rows))
            messages = self._messages(c, [f.folder_id for f in folders if f.path not in settled])
        known = {r.unique for r in file_rows}
        disk = self._disk(sorted(({r.path for r in folder_rows} | {f.path for f in folders}) - settled))
        where = {f.unique: f for f in disk}
        stray = {f.unique: f for f in disk if f.unique not in known and maildir.file_key(f.unique) is not None}
        full = {}
        for path in {r.path for r in folder_rows}:
            table = self._keywords(path).keywords()
            if len(table) >= len(maildir.KEYWORD_LETTERS):
                full[path] = frozenset(table.values())
        foreign, self._base, self._replaced = {}, {}, []
        if self.adopting:
            from mailsync.mirror import adopt

            theirs = [f for f in disk if f.unique not in known and maildir.file_key(f.unique) is None]
            foreign = adopt.by_content(self.adopting, theirs, self._dir)
            for path in {f.folder for f in theirs}:
                self._base.update(adopt.base_flags(self._dir(path), [f.unique for f in theirs if f.folder == path]))
        plan = live_plan.plan_write(folders, folder_rows, messages, file_rows, stray, full, foreign)
        if foreign:
            self._leave_unmatched(account_id, foreign, plan)
        if not plan:
            return self.result
        made = [insert(tables.mirror_folders).values(account_id=account_id, folder_id=a.folder.folder_id,
                                                     path=a.folder.path) for a in plan.make_folders]
        for a in plan.make_folders:
            self._open(a.folder.path)
            self.result.folders += 1
        if not self.adopting:
            self._rows(*made)
        for a in plan.rename_folders:
            self._rename_folder(account_id, a)
        self._write_files(account_id, plan.files, where, stage)
        if self._replaced:
            for f in self._replaced:
                self._unlink(self._dir(f.folder) / f.name)
            self.result.notes.append(f"{len(self._replaced)} file(s) of the adopted Maildir held their message as "
                                     f"the other program changed it (not the server's bytes): replaced by the "
                                     f"server's copy")
        if self.adopting:  # only now: a run stopped before this adopts again (the scan reads no client change)
            crash.point("mirror adopted")
            self._rows(*made)
            with UnitOfWork(self.store) as uow:  # the bodies of files that matched no message go
                repo.delete_orphan_bodies(uow.connection, sorted({sha for sha, _mid in self.adopting.values()}))
                uow.commit()
        for a in plan.remove_folders:
            self._remove_folder(a)
        return self.result

    def _vouch(self, c, account_id: int) -> None:
        """The scan found no client change and the Maildir is in step with the store: its
        fingerprint is recorded, for the no-change sync (mailsync.sync.quick) to trust while it holds."""
        if self.snapshot is None or self.adopting:
            return
        ms = tables.mirror_snapshots.c
        c.execute(delete(tables.mirror_snapshots).where(ms.account_id == account_id))
        c.execute(insert(tables.mirror_snapshots).values(account_id=account_id, snapshot=self.snapshot))

    def _in_step(self, c, account_id: int, folders: list[live_plan.StoreFolder]) -> tuple[set[str], bool]:
        """(the paths of the folders the state rows mirror exactly: a folder row at the folder's
        path, and each live placement by one row of that folder with its body and flags; whether
        the folder rows are those of the store's folders, no more). Counted by the database,
        without reading the rows; any difference (a write a crash cut short, a message with flags
        no file name holds) leaves the folder to the write."""
        mf, mm, pl = tables.mirror_folders.c, tables.mirror_files.c, tables.placements.c
        rows = {(r.folder_id, r.path) for r in c.execute(select(mf.folder_id, mf.path)
                                                        .where(mf.account_id == account_id))}
        live = dict(c.execute(select(pl.folder_id, func.count()).where(
            pl.folder_id.in_([f.folder_id for f in folders]), pl.tombstone_run.is_(None)).group_by(pl.folder_id)).all())
        for (fid,) in c.execute(select(pl.folder_id).where(  # held by their headers: no file (live_state)
                headers_only.held_key(pl.body_sha256), pl.tombstone_run.is_(None))):
            if fid in live:
                live[fid] -= 1
        mirrored = dict(c.execute(select(mm.folder, func.count()).where(
            mm.account_id == account_id, mm.state == "ok").group_by(mm.folder)).all())
        matching = dict(c.execute(
            select(mf.folder_id, func.count()).select_from(tables.mirror_files)
            .join(tables.placements, pl.id == mm.placement_id)
            .join(tables.mirror_folders, (mf.account_id == mm.account_id) & (mf.path == mm.folder))
            .where(mm.account_id == account_id, mm.state == "ok", pl.tombstone_run.is_(None),
                   pl.folder_id == mf.folder_id, pl.body_sha256 == mm.sha256, pl.flags == mm.flags)
            .group_by(mf.folder_id)).all())
        settled = {f.path for f in folders if (f.folder_id, f.path) in rows
                   and live.get(f.folder_id, 0) == mirrored.get(f.path, 0) == matching.get(f.folder_id, 0)}
        return settled, rows == {(f.folder_id, f.path) for f in folders}

    def _leave_unmatched(self, account_id: int, foreign, plan: live_plan.WritePlan) -> None:
        """Files of an adopted Maildir that hold no message of the server by content: one whose
        message is written anew in its folder (the same Message-ID) is replaced by it (removed once
        the new file is in place, self._replaced); the others (expunged on the server since the
        other program's last run, or never sent) are left in place, recorded so that no scan
        appends or deletes them."""
        from mailsync.mirror import adopt

        taken = {a.found.unique for a in plan.files if isinstance(a, live_plan.AdoptFile)}
        left = [f for files in foreign.values() for f in files if f.unique not in taken]
        if not left:
            return
        writes = [a for a in plan.files if isinstance(a, live_plan.WriteFile)]
        b = tables.bodies.c
        with UnitOfWork(self.store) as uow:
            shas = sorted({w.message.sha256 for w in writes})
            mids = {sha: mid for i in range(0, len(shas), 500) for sha, mid in uow.connection.execute(
                select(b.sha256, b.message_id).where(b.sha256.in_(shas[i:i + 500])))}
        self._replaced = adopt.superseded(left, writes, self.adopting, self._dir, mids)
        replaced = {f.unique for f in self._replaced}
        left = [f for f in left if f.unique not in replaced]
        if not left:
            return
        with UnitOfWork(self.store) as uow:
            uow.connection.execute(insert(tables.mirror_files), [dict(
                account_id=account_id, placement_id=None,
                sha256=self.adopting.get((self._dir(f.folder), f.unique), ("",))[0],
                folder=f.folder, name=f.name, unique_name=f.unique, flags=_flags_text(f.flags), state="orphan")
                for f in left])
            uow.commit()
        self.result.notes.append(f"{len(left)} file(s) of the adopted Maildir hold no message the server has "
                                 f"(expunged there since the other program's last run?): left in place, neither "
                                 f"sent nor removed")

    def _open(self, path: str) -> MaildirFolder:
        return MaildirFolder(self._dir(path), maildirplusplus_child=self.layout == "maildir++" and bool(path))

    def _rename_folder(self, account_id: int, a: live_plan.RenameFolder) -> None:
        src, dst = self._dir(a.row.path), self._dir(a.new_path)
        try:
            if src.exists() and not dst.exists() and a.row.path:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.rename(src, dst)
                _fsync_dir(dst.parent)
            self._open(a.new_path)
        except OSError as exc:
            raise _fail("rename the Maildir folder", src, exc) from exc
        mf, mm = tables.mirror_folders.c, tables.mirror_files.c
        self._rows(update(tables.mirror_folders).where(mf.id == a.row.id).values(path=a.new_path),
                   update(tables.mirror_files).where(mm.account_id == account_id, mm.folder == a.row.path)
                   .values(folder=a.new_path))
        self.result.folders += 1

    def _remove_folder(self, a: live_plan.RemoveFolder) -> None:
        """The folder went from the store: its directory goes when nothing but Maildir's own files
        is left in it (a client's file there is never deleted unseen)."""
        base = self._dir(a.row.path)
        own = {"cur", "new", "tmp", "maildirfolder", maildir.KEYWORDS_FILE}
        try:
            if a.row.path and base.is_dir():
                leftovers = [p for p in base.iterdir() if p.name not in own]
                busy = any(any((base / sub).iterdir()) for sub in ("cur", "new") if (base / sub).is_dir())
                if leftovers or busy:
                    self.result.notes.append(f"{base}: left in place (the folder is gone from the server, but the "
                                             f"directory holds files mailsync did not write)")
                else:
                    for sub in ("cur", "new", "tmp"):
                        if (base / sub).is_dir():
                            for p in (base / sub).iterdir():
                                p.unlink()
                            (base / sub).rmdir()
                    for name in ("maildirfolder", maildir.KEYWORDS_FILE):
                        (base / name).unlink(missing_ok=True)
                    base.rmdir()
                    _fsync_dir(base.parent)
        except OSError as exc:
            raise _fail("remove the Maildir folder", base, exc) from exc
        self._rows(delete(tables.mirror_folders).where(tables.mirror_folders.c.id == a.row.id))
        self.result.folders += 1

    def _name(self, target: MaildirFolder, unique: str, flags) -> tuple[str, frozenset[str]]:
        """(``sub/name`` for ``flags`` in ``target``, the flags that name stands for)."""
        flags = [f for f in flags if f.lower() not in maildir.IGNORED_FLAGS]
        target._ensure_keywords(flags)
        info = maildir.flags_to_info(flags, target.keywords.letters())
        return (f"{maildir.subdir_for(flags)}/{maildir.file_name(unique, info)}",
                frozenset(maildir.info_to_flags(info, target.keywords.keywords())))

    def _write_files(self, account_id: int, actions, where: dict[str, live_plan.DiskFile],
                     stage: MaildirStage | None = None) -> None:
        mm = tables.mirror_files.c
        opened: dict[str, MaildirFolder] = {}

        def folder(path: str) -> MaildirFolder:
            if path not in opened:
                opened[path] = self._open(path)
            return opened[path]

        new_rows: dict[str, list[dict]] = {}

        def written(a: live_plan.WriteFile, target: MaildirFolder, final: Path) -> None:
            m = a.message
            flags = maildir.info_to_flags(maildir.split_name(final.name)[1], target.keywords.keywords())
            new_rows.setdefault(a.folder, []).append(dict(
                account_id=account_id, placement_id=m.placement_id, sha256=m.sha256, folder=a.folder,
                name=f"{final.parent.name}/{final.name}", unique_name=m.unique, flags=_flags_text(flags),
                state="ok"))
            self.result.written += 1

        writes = []
        for a in actions:
            if not isinstance(a, live_plan.WriteFile):
                continue
            staged = stage.take(a.message.sha256) if stage is not None else None
            if staged is None:
                writes.append(a)
                continue
            m, target = a.message, folder(a.folder)
            written(a, target, target.deliver_staged(staged[0], staged[1], m.sha256, m.placement_id,
                                                     sorted(m.flags), m.when))
        with UnitOfWork(self.store) as reader:
            for a, raw in self._bodies(reader.connection, writes):
                m, target = a.message, folder(a.folder)
                written(a, target, target.deliver(raw, m.sha256, m.placement_id, sorted(m.flags), m.when))
        for path, rows in new_rows.items():
            opened[path].close()  # fsynced and renamed into place: only now are the rows committed
            crash.point("mirror files written")
            with UnitOfWork(self.store) as uow:
                uow.connection.execute(insert(tables.mirror_files), rows)
                uow.commit()
        for a in actions:
            try:
                if isinstance(a, live_plan.AdoptFile):
                    m = a.message
                    name, flags = a.found.name, a.found.flags
                    # another program's file: the flags it last agreed with the server are the base (a
                    # difference from the file's is a client change, which the next scan sends)
                    base = self._base.get(a.found.unique)
                    self._rows(insert(tables.mirror_files).values(
                        account_id=account_id, placement_id=m.placement_id, sha256=m.sha256, folder=a.found.folder,
                        name=name, unique_name=a.found.unique, flags=_flags_text(flags if base is None else base),
                        state="ok"))
                    if a.found.folder != a.folder or (base is None and flags != live_plan._mirrored(m.flags)):
                        with UnitOfWork(self.store) as uow:
                            rows = self._state(uow.connection, account_id)[1]
                        row = next(r for r in rows if r.unique == a.found.unique)
                        self._rename(folder, live_plan.RenameFile(row, m, a.folder), a.found)
                elif isinstance(a, live_plan.RenameFile):
                    found = where.get(a.row.unique)
                    if found is None:  # the client moved or deleted it meanwhile: the next scan sees to it
                        continue
                    self._rename(folder, a, found)
                elif isinstance(a, live_plan.RemoveFile):
                    found = where.get(a.row.unique)
                    if found is not None:
                        self._unlink(self._dir(found.folder) / found.name)
                    self._rows(delete(tables.mirror_files).where(mm.id == a.row.id))
                    self.result.removed += 1
                elif isinstance(a, live_plan.RemoveStray):
                    self._unlink(self._dir(a.found.folder) / a.found.name)
                    self.result.removed += 1
            except MirrorError as exc:
                self.result.notes.append(str(exc))
        for target in opened.values():
            target.close()

    def _rename(self, folder, a: live_plan.RenameFile, found: live_plan.DiskFile) -> None:
        m = a.message
        target = folder(a.folder)
        name, flags = self._name(target, a.row.unique, m.flags)
        src, dst = self._dir(found.folder) / found.name, self._dir(a.folder) / name
        if src != dst:
            try:
                os.rename(src, dst)
                _fsync_dir(dst.parent)
                if src.parent != dst.parent:
                    _fsync_dir(src.parent)
            except FileNotFoundError:
                return  # the client renamed it just now: the next scan sees to it
            except OSError as exc:
                raise _fail("rename", src, exc) from exc
        crash.point("mirror file renamed")
        mm = tables.mirror_files.c
        self._rows(update(tables.mirror_files).where(mm.id == a.row.id).values(
            placement_id=m.placement_id, sha256=m.sha256, folder=a.folder, name=name, flags=_flags_text(flags)))
        self.result.renamed += 1

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise _fail("remove", path, exc) from exc

    _CHUNK_BYTES = 32 << 20  # bodies read from the store at once, at most (one message may be larger)

    def _bodies(self, c, writes: list[live_plan.WriteFile]):
        """(action, the message's bytes, SHA-256 checked) for each write, read a chunk at a time; a
        body that cannot be had is a note."""
        i = 0
        while i < len(writes):
            chunk, size = [], 0
            while i < len(writes) and (not chunk or size + writes[i].message.size <= self._CHUNK_BYTES):
                chunk.append(writes[i])
                size += writes[i].message.size
                i += 1
            bodies = repo.read_bodies(c, sorted({a.message.sha256 for a in chunk}))
            for a in chunk:
                raw = bodies[a.message.sha256]
                if isinstance(raw, StoreError):
                    self.result.notes.append(f"{raw.message}: not written to the Maildir")
                    continue
                yield a, raw


def sync_with_mirror(store, account, run_sync, *, allow_mass_delete: bool = False):
    """One sync of ``account`` with its Maildir mirror around it: the scan records the client's
    changes (so ``run_sync()`` pushes them), then the write puts the synced store into the Maildir.
    Returns (the sync's AccountResult, MirrorResult or None without a mirror). A Maildir that cannot
    be read or written fails the account, never the others; held deletions set it aside."""
    if mirror_of(account) is None:
        return run_sync(), None
    adopted: list[str] = []
    while True:
        mirror = LiveMirror(store, account)
        problem = None
        try:
            mirror.scan(allow_mass_delete=allow_mass_delete)
        except MailsyncError as exc:
            problem = exc
        # the messages the sync downloads in bulk are written to the Maildir's tmp/ as they come
        stage = MaildirStage.for_root(mirror.root) if problem is None and not mirror.adopting else None
        try:
            result = run_sync(stage)
            if problem is None:
                changed = (not result.ok or result.set_aside or result.new_messages or result.flag_changes
                           or result.expunged or result.moves or result.pushed or result.conflicts)
                try:
                    mirror.write(store_changed=bool(changed), stage=stage)
                except MailsyncError as exc:
                    problem = exc
        finally:
            if stage is not None:
                stage.clear()
        if not mirror.adopting or problem is not None or not result.ok:
            break
        # a Maildir just adopted: once more, so that flags changed in it since the other program's
        # last run reach the server, and the server's reach its file names, in this same sync
        adopted = mirror.result.notes
    mirror.result.notes[:0] = adopted
    if problem is not None:
        result.fail(f"account '{account.name}': Maildir mirror: {problem}")
    for why in mirror.result.held:
        result.set_aside.append(f"Maildir: {why}; run `mailsync sync --allow-deletions` to send them")
    result.notes += [f"Maildir: {n}" for n in mirror.result.notes]
    return result, mirror.result


def maildir_signature(account) -> tuple:
    """A cheap fingerprint of the account's Maildir: the modification times of every cur/ and new/
    directory (a client's rename, new file or deletion changes its directory's). The watch daemon
    compares it a few times a second to sync as soon as a client changed something."""
    root, layout = mirror_of(account)
    out = []
    stack = [root]
    while stack:
        base = stack.pop()
        try:
            entries = list(os.scandir(base))
        except OSError:
            continue
        for e in entries:
            if e.name in ("cur", "new"):
                try:
                    out.append((e.path, e.stat().st_mtime_ns))
                except OSError:
                    pass
            elif e.name != "tmp" and e.is_dir(follow_symlinks=False) and (layout == "fs" or base == root):
                if layout == "fs" or e.name.startswith("."):
                    stack.append(Path(e.path))
    return tuple(sorted(out))
