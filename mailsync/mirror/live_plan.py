"""The live Maildir mirror's decisions: state in, plan out, both ways.

Owns: ``plan_write`` (store -> Maildir: which folders to make, rename and remove, which files to
write, adopt, rename for a flag change or a move, and remove, from the store's live placements and
the mirror's state rows) and ``plan_scan`` (Maildir -> store: which client changes a scan of the
Maildir found, from the state rows and the files on disk: flag letters changed, files deleted,
files moved to another folder, new files, folders removed; and which deletions the mass-delete
guard holds).

Must not: touch the file system, the store or the clock (mailsync.mirror.live does the I/O and
records client changes through mailsync.changes.LocalChanges).

Identity. A mirrored file is known by the unique part of its name (Maildir's rule: a reader
renames a file only to change its info or its folder, never its unique part), so a file found under
another folder is a move, not a delete plus an append. mailsync names the files it writes
``unique_name(sha256, placement id, ...)``: after a crash between a file's rename into place and
its state row's commit, the next write finds the file by that name and adopts it (never a second
copy), and a scan leaves such a file to the write (never an append).

Order within one run (mailsync.mirror.live): scan (client changes recorded in the journal) ->
the account's sync (pushes them, pulls the server's) -> write (the store's state into the Maildir).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from mailsync.mirror import maildir

#: Mass-delete guard: deletions in one folder are held when more than this share of the folder's
#: mirrored files and more than MASS_DELETE_MIN of them vanished in one scan.
MASS_DELETE_SHARE = 0.5
MASS_DELETE_MIN = 50


# --- inputs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoreFolder:
    """A store folder the mirror holds, at the Maildir path its name maps to."""

    folder_id: int
    name: str
    path: str


@dataclass(frozen=True)
class StoreMessage:
    """A placement of a mirrored folder that is on the server (or waiting to reach it)."""

    placement_id: int
    folder_id: int
    sha256: str
    flags: frozenset[str]
    when: int  # INTERNALDATE, seconds
    size: int
    uid: int | None = None

    @property
    def unique(self) -> str:
        return maildir.unique_name(self.sha256, self.placement_id, self.when, self.size)


@dataclass(frozen=True)
class FolderRow:
    id: int
    folder_id: int
    path: str


@dataclass(frozen=True)
class FileRow:
    """A mirror_files row: the file as mailsync last wrote or agreed it."""

    id: int
    placement_id: int | None
    sha256: str
    folder: str
    name: str  # "cur/UNIQUE:2,FS" or "new/UNIQUE"
    unique: str
    flags: frozenset[str]
    state: str = "ok"


@dataclass(frozen=True)
class DiskFile:
    """A message file found in a Maildir folder's cur/ or new/; ``flags`` from its info letters."""

    folder: str
    name: str  # "cur/UNIQUE:2,FS"
    unique: str
    flags: frozenset[str]


# --- store -> Maildir ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MakeFolder:
    folder: StoreFolder


@dataclass(frozen=True)
class RenameFolder:
    row: FolderRow
    new_path: str


@dataclass(frozen=True)
class RemoveFolder:
    row: FolderRow


@dataclass(frozen=True)
class WriteFile:
    message: StoreMessage
    folder: str


@dataclass(frozen=True)
class AdoptFile:
    """A file an interrupted write left without its state row, or another program's file holding
    the message (an adopted Maildir): it becomes the message's file."""

    message: StoreMessage
    found: DiskFile
    folder: str


@dataclass(frozen=True)
class RenameFile:
    """The file of ``row`` renamed: into ``folder`` (a move), with ``flags``, now mirroring ``message``."""

    row: FileRow
    message: StoreMessage
    folder: str


@dataclass(frozen=True)
class RemoveFile:
    row: FileRow


@dataclass(frozen=True)
class RemoveStray:
    """A mailsync-named file without a state row whose placement is gone (an interrupted write)."""

    found: DiskFile


@dataclass
class WritePlan:
    make_folders: list[MakeFolder] = field(default_factory=list)
    rename_folders: list[RenameFolder] = field(default_factory=list)
    files: list[WriteFile | AdoptFile | RenameFile | RemoveFile | RemoveStray] = field(default_factory=list)
    remove_folders: list[RemoveFolder] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.make_folders or self.rename_folders or self.files or self.remove_folders)


def plan_write(folders: Iterable[StoreFolder], folder_rows: Iterable[FolderRow], messages: Iterable[StoreMessage],
               file_rows: Iterable[FileRow], stray: Mapping[str, DiskFile],
               full: Mapping[str, frozenset[str]] | None = None,
               foreign: Mapping[tuple[str, str], list[DiskFile]] | None = None) -> WritePlan:
    """What to do so that the Maildir holds the store's state. ``stray``: mailsync-named files on disk
    without a state row, by unique part. ``full``: per folder path whose ``dovecot-keywords`` has
    all 26 letters taken, the keywords it holds (any other keyword cannot be in a file name there,
    so a message carrying one is not renamed for it, sync after sync). ``foreign``: when adopting a
    Maildir another program wrote, its files by (folder path, SHA-256): a message without a file
    takes one of those (AdoptFile) rather than a new one."""
    full = full or {}
    foreign = {k: list(v) for k, v in (foreign or {}).items()}
    plan = WritePlan()
    folders = {f.folder_id: f for f in folders}
    rows_by_folder = {r.folder_id: r for r in folder_rows}
    for fid, f in sorted(folders.items(), key=lambda kv: kv[1].path):
        row = rows_by_folder.get(fid)
        if row is None:
            plan.make_folders.append(MakeFolder(f))
        elif row.path != f.path:
            plan.rename_folders.append(RenameFolder(row, f.path))
    # parents before children: an fs rename of A carries A/B along
    plan.rename_folders.sort(key=lambda a: (a.row.path.count("/"), a.row.path))
    for fid, row in rows_by_folder.items():
        if fid not in folders:
            plan.remove_folders.append(RemoveFolder(row))
    plan.remove_folders.sort(key=lambda a: -len(a.row.path))  # children first

    messages = {m.placement_id: m for m in messages if m.folder_id in folders}
    covered: set[int] = set()
    gone: dict[str, list[FileRow]] = defaultdict(list)  # sha256 -> rows whose placement went
    for row in sorted(file_rows, key=lambda r: r.id):
        if row.state != "ok":  # a client's new file whose append a scan has not recorded yet
            continue
        m = messages.get(row.placement_id) if row.placement_id is not None else None
        if m is None or m.sha256 != row.sha256 or m.placement_id in covered:
            gone[row.sha256].append(row)
            continue
        covered.add(m.placement_id)
        path = folders[m.folder_id].path
        if row.folder != path or row.flags != _mirrored(m.flags, full.get(path)):
            plan.files.append(RenameFile(row, m, path))
    for pid, m in sorted(messages.items()):
        if pid in covered:
            continue
        path = folders[m.folder_id].path
        if gone.get(m.sha256):  # the same message gone from one place and new in another: a move
            plan.files.append(RenameFile(gone[m.sha256].pop(0), m, path))
        elif m.unique in stray:
            plan.files.append(AdoptFile(m, stray[m.unique], path))
        elif foreign.get((path, m.sha256)):
            plan.files.append(AdoptFile(m, foreign[(path, m.sha256)].pop(0), path))
        else:
            plan.files.append(WriteFile(m, path))
    adopted = {a.found.unique for a in plan.files if isinstance(a, AdoptFile)}
    for rows in gone.values():
        plan.files += [RemoveFile(r) for r in rows]
    plan.files += [RemoveStray(f) for u, f in sorted(stray.items()) if u not in adopted]
    return plan


def _mirrored(flags: Iterable[str], keywords: frozenset[str] | None = None) -> frozenset[str]:
    """The flags a Maildir file can hold (\\Recent is the session's, never a file's); with
    ``keywords`` (a folder whose 26 keyword letters are taken), only those keywords."""
    return frozenset(f for f in flags if f.lower() not in maildir.IGNORED_FLAGS
                     and (keywords is None or not maildir.is_keyword(f) or f in keywords))


# --- Maildir -> store ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ClientFlags:
    row: FileRow
    found: DiskFile
    add: frozenset[str]
    remove: frozenset[str]


@dataclass(frozen=True)
class ClientMove:
    row: FileRow
    found: DiskFile
    dest_folder_id: int


@dataclass(frozen=True)
class ClientDelete:
    row: FileRow


@dataclass(frozen=True)
class ClientAppend:
    found: DiskFile
    folder_id: int


@dataclass(frozen=True)
class ClientRmdir:
    """A mirrored folder whose directory a client removed: removed on the server (with its
    ``messages``)."""

    row: FolderRow
    messages: int


@dataclass(frozen=True)
class Held:
    """Deletions in one folder held by the mass-delete guard (``folder``: the whole folder's
    directory vanished)."""

    folder_id: int
    path: str
    deleted: int
    mirrored: int
    folder: bool = False

    @property
    def reason(self) -> str:
        where = self.path or "the root (INBOX)"
        if self.folder:
            return (f"Maildir folder {where!r} vanished with its {self.mirrored} messages (a wrong path, an "
                    f"unmounted disk or a client's bug would look the same): the folder is not removed on the "
                    f"server")
        return (f"{self.deleted} of the {self.mirrored} messages of Maildir folder {where!r} vanished at once "
                f"(a wrong path, an unmounted disk or a client's bug would look the same): their deletion "
                f"is held, not sent to the server")


@dataclass
class ScanPlan:
    changes: list[ClientFlags | ClientMove | ClientDelete | ClientAppend | ClientRmdir] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_scan(folder_rows: Iterable[FolderRow], file_rows: Iterable[FileRow], disk: Iterable[DiskFile], *,
              allow_mass_delete: bool = False, present: Collection[str] | None = None) -> ScanPlan:
    """The client's changes since the state rows were written: each row's file looked up by its
    unique part; a file without a row is new (an append) unless mailsync named it (an interrupted
    write: plan_write adopts or removes it). ``present``: the paths of the mirrored folders whose
    directories are there (default: all); one that is not was removed by a client (an rmdir, held
    like a mass delete when it took more than MASS_DELETE_MIN messages with it). The root (INBOX)
    is never removed."""
    plan = ScanPlan()
    folder_rows = list(folder_rows)
    gone = [] if present is None else [r for r in folder_rows if r.path not in present]
    gone_paths = {r.path for r in gone}
    by_path = {r.path: r.folder_id for r in folder_rows if r.path not in gone_paths}
    found: dict[str, list[DiskFile]] = defaultdict(list)
    for f in disk:
        found[f.unique].append(f)
    rows = sorted(file_rows, key=lambda r: r.id)
    known = {r.unique for r in rows}
    deletes: dict[str, list[ClientDelete]] = defaultdict(list)
    mirrored: dict[str, int] = defaultdict(int)
    for row in rows:
        if row.state != "ok":
            continue
        mirrored[row.folder] += 1
        copies = found.get(row.unique)
        if not copies:
            if row.folder not in gone_paths:  # those go with their folder
                deletes[row.folder].append(ClientDelete(row))
            continue
        here = next((c for c in copies if c.folder == row.folder), copies[0])
        if len(copies) > 1:
            plan.notes.append(f"{len(copies)} files in the Maildir share the name {row.unique!r}: only "
                              f"{here.folder or '(root)'}/{here.name} is taken for that message")
        if here.folder != row.folder:
            dest = by_path.get(here.folder)
            if dest is None:
                plan.notes.append(f"{here.folder}/{here.name}: moved into a Maildir folder mailsync does not "
                                  f"mirror; left alone (make the folder with `mailsync mkdir` first)")
                continue
            plan.changes.append(ClientMove(row, here, dest))
        elif here.flags != row.flags:
            plan.changes.append(ClientFlags(row, here, here.flags - row.flags, row.flags - here.flags))
    for unique, copies in sorted(found.items()):
        if unique in known or maildir.file_key(unique) is not None:
            continue
        for f in copies:
            folder_id = by_path.get(f.folder)
            if folder_id is None:
                plan.notes.append(f"{f.folder}/{f.name}: a new file in a Maildir folder mailsync does not mirror; "
                                  f"left alone")
                continue
            plan.changes.append(ClientAppend(f, folder_id))
    for path, dels in sorted(deletes.items()):
        if (not allow_mass_delete and len(dels) > MASS_DELETE_MIN
                and len(dels) > MASS_DELETE_SHARE * mirrored[path]):
            plan.held.append(Held(by_path.get(path, -1), path, len(dels), mirrored[path]))
            continue
        plan.changes += dels
    # folders last (their messages moved out first), children first (an fs rmdir of A takes A/B along)
    for r in sorted(gone, key=lambda r: -len(r.path)):
        left = mirrored[r.path] - sum(1 for row in rows if row.folder == r.path and row.state == "ok"
                                      and found.get(row.unique))
        if not r.path:
            plan.notes.append("the Maildir's root folder (INBOX) is gone: INBOX is never removed on the server")
        elif left > MASS_DELETE_MIN and not allow_mass_delete:
            plan.held.append(Held(r.folder_id, r.path, left, left, folder=True))
        else:
            plan.changes.append(ClientRmdir(r, left))
    return plan
