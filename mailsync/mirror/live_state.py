"""The live Maildir mirror's state and the Maildir as they are: what both halves of a run read.

Owns: reading the mirror's state rows (mirror_folders, mirror_files), the store's folders and live
placements of the account, and the Maildir's message files (with the flags their names stand for);
MirrorError (OSError mapped, naming the path) and MirrorResult (what a run did). Must not: change
the store or the Maildir (live_scan.py records client changes, live.py writes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from mailsync.errors import MailsyncError
from mailsync.mirror import live_plan
from mailsync.mirror import maildir
from mailsync.mirror import snapshot
from mailsync.store import headers_only
from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.store.uow import UnitOfWork

class MirrorError(MailsyncError):
    """The account's Maildir cannot be read or written."""


def _fail(what: str, path: Path, exc: OSError) -> MirrorError:
    return MirrorError(f"cannot {what} {path}: {exc.strerror or exc}",
                       hint="check the path, its permissions and the free space, then run mailsync sync again")


@dataclass
class MirrorResult:
    written: int = 0  # files written (new messages)
    renamed: int = 0  # flag changes and moves
    removed: int = 0
    folders: int = 0  # folders made, renamed or removed
    recorded: int = 0  # client changes recorded for the server
    held: list[str] = field(default_factory=list)  # why deletions were held
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.recorded, "client change(s) recorded"),
                                               (self.written, "written"), (self.renamed, "renamed"),
                                               (self.removed, "removed"), (self.folders, "folder change(s)")) if n]
        return ", ".join(parts)


def mirror_of(account) -> tuple[Path, str] | None:
    """(root, layout) of the account's Maildir mirror, or None when it has none."""
    return snapshot.mirror_root(account)


def _flags_text(flags) -> str:
    return " ".join(sorted(flags))


def _epoch(internaldate: str) -> int:
    try:
        return int(datetime.fromisoformat(internaldate).timestamp())
    except ValueError:
        return 0


class MirrorState:
    """The account's mirror: settings, state rows and files (the base of ClientScan and LiveMirror)."""

    def __init__(self, store, account) -> None:
        self.store = store
        self.account = account
        self.root, self.layout = mirror_of(account)
        self.result = MirrorResult()
        self.adopting: dict = {}  # adopting another program's Maildir: (folder dir, unique) -> (SHA-256, Message-ID)
        self.quiet = False  # the scan found no client change, no file it does not know, nothing held
        self.snapshot: str | None = None  # the Maildir's fingerprint the scan took before listing it

    # -- reading -----------------------------------------------------------------------------

    def _account_id(self, c) -> int | None:
        a = tables.accounts.c
        return c.scalar(select(a.id).where(a.name == self.account.name))

    def _store_folders(self, c, account_id: int) -> list[live_plan.StoreFolder]:
        out = []
        for f in repo.folders_of(c, account_id):
            parts = maildir.folder_parts(f.name, f.delimiter)
            out.append(live_plan.StoreFolder(f.id, f.name, maildir.folder_path(parts, self.layout)))
        return out

    def _state(self, c, account_id: int, leave_out=()) -> tuple[list[live_plan.FolderRow], list[live_plan.FileRow]]:
        """The folder rows, and the file rows but those of the folders at ``leave_out`` paths."""
        mf, mm = tables.mirror_folders.c, tables.mirror_files.c
        folders = [live_plan.FolderRow(r.id, r.folder_id, r.path) for r in c.execute(
            select(mf.id, mf.folder_id, mf.path).where(mf.account_id == account_id))]
        files = [live_plan.FileRow(i, pid, sha, folder, name, unique, frozenset(flags.split()), state)
                 for i, pid, sha, folder, name, unique, flags, state in c.execute(
                     select(mm.id, mm.placement_id, mm.sha256, mm.folder, mm.name, mm.unique_name, mm.flags, mm.state)
                     .where(mm.account_id == account_id, mm.folder.not_in(sorted(leave_out)))).all()]
        return folders, files

    def _messages(self, c, folder_ids: list[int]) -> list[live_plan.StoreMessage]:
        pl = tables.placements.c
        out = []
        for i in range(0, len(folder_ids), 500):
            for pid, fid, sha, flags, idate, size, uid in c.execute(
                    select(pl.id, pl.folder_id, pl.body_sha256, pl.flags, pl.internaldate, pl.size, pl.uid)
                    .where(pl.folder_id.in_(folder_ids[i:i + 500]), pl.tombstone_run.is_(None),
                           headers_only.whole_key(pl.body_sha256))).all():  # rule H1: no body to write yet
                out.append(live_plan.StoreMessage(pid, fid, sha, frozenset(flags.split()), _epoch(idate), size, uid))
        return out

    def _dir(self, path: str) -> Path:
        return self.root / path if path else self.root

    def _keywords(self, path: str) -> maildir.KeywordTable:
        f = self._dir(path) / maildir.KEYWORDS_FILE
        try:
            return maildir.KeywordTable.parse(f.read_text("utf-8", "replace")) if f.exists() else maildir.KeywordTable()
        except OSError as exc:
            raise _fail("read", f, exc) from exc

    def _disk(self, paths) -> list[live_plan.DiskFile]:
        """The message files of the Maildir folders at ``paths`` (those that exist)."""
        out = []
        for path in paths:
            base = self._dir(path)
            if not (base / "cur").is_dir():
                continue
            letters = self._keywords(path).keywords()
            for sub in ("new", "cur"):
                try:
                    with os.scandir(base / sub) as it:
                        for entry in it:
                            if entry.name.startswith("."):
                                continue
                            unique, info = maildir.split_name(entry.name)
                            flags = frozenset(maildir.info_to_flags(info, letters)) if sub == "cur" else frozenset()
                            out.append(live_plan.DiskFile(path, f"{sub}/{entry.name}", unique, flags))
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise _fail("list", base / sub, exc) from exc
        return out

    def _check_root(self, has_state: bool) -> None:
        """A mirror that was written before and whose root is now missing is a disk not mounted or a
        path changed: nothing is read as deleted."""
        if has_state and not (self.root / "cur").is_dir() and not self.root.is_dir():
            raise MirrorError(f"account '{self.account.name}': the Maildir {self.root} is missing, although mailsync "
                              f"wrote it before: nothing was sent to the server",
                              hint="mount the disk or fix the maildir path in the config; to start the Maildir "
                                   "over, remove its state with a new maildir path")

    # -- Maildir -> store ------------------------------------------------------------------------

    def _rows(self, *statements) -> None:
        with UnitOfWork(self.store) as uow:
            for stmt in statements:
                uow.connection.execute(stmt)
            uow.commit()

