"""`mailsync show` and `mailsync export maildir|mbox`: the store's messages, byte for byte, out to a
reader.

Owns: walking the store's live placements in (account, folder, UID) order, reading each body and
checking its SHA-256, choosing the folder's place (maildir.folder_path, or ``A/B.mbox``), skipping
what an earlier run wrote (by SHA-256 and copy number) and what is held by its headers alone
(larger than max_size: no body to write, said in a note), and counting. Memory: one message's bytes,
plus per folder the keys of the files already there and the SHA-256s seen (to number copies of one
message); never the whole selection.

Must not: print (progress goes through the ``progress`` callback), commit, or speak IMAP.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from mailsync.errors import MailsyncError, StoreError
from mailsync.mirror import maildir
from mailsync.mirror.writer import MaildirFolder, MboxFile
from mailsync.store import repositories as repo


@dataclass
class Problem:
    account: str
    folder: str
    uid: int
    error: str


@dataclass
class ExportResult:
    written: int = 0
    present: int = 0  # already in the export from an earlier run
    nbytes: int = 0
    folders: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things the user should know (keywords left out, ...)


Progress = Callable[[ExportResult], None]


def checked_body(db, row: repo.ExportRow) -> bytes:
    """The stored message of ``row``, its SHA-256 checked; StoreError naming the message and the fix."""
    where = f"{row.account}/{row.folder} UID {row.uid}"
    fix = "run mailsync verify to list the damaged messages, then mailsync verify --repair and mailsync sync"
    try:
        raw = repo.read_body(db, row.sha256)
    except StoreError as exc:
        raise StoreError(f"message {where} cannot be read from the store: {exc.message}", hint=fix) from exc
    if hashlib.sha256(raw).hexdigest() != row.sha256:
        raise StoreError(f"message {where} is damaged in the store (its SHA-256 does not match "
                         f"{row.sha256[:12]})", hint=fix)
    return raw


def find_message(db, account: str, folder: str, uid: int) -> repo.ExportRow:
    for row in repo.export_rows(db, account=account, folder=folder, uid=uid):
        return row
    raise MailsyncError(f"no message with UID {uid} in {account}/{folder} in the store",
                        hint="list them with: mailsync export messages --account "
                             f"{account} --folder {folder!r}; run mailsync sync if it is new")


def header_of(raw: bytes) -> bytes:
    """The header section, with the blank line that ends it (the whole message when it has none)."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := raw.find(sep)) >= 0]
    return raw[:min(ends)] if ends else raw


def _delimiters(session, account: str | None) -> dict[tuple[str, str], str | None]:
    out: dict[tuple[str, str], str | None] = {}
    for acc in repo.list_accounts(session):
        if account is None or acc.name == account:
            for f in repo.folders_of(session, acc.id, gone=True):
                out[(acc.name, f.name)] = f.delimiter
    return out


def _when(row: repo.ExportRow) -> datetime:
    return datetime.fromisoformat(row.internaldate)


class _Walk:
    """The shared loop: for each placement, its copy number in the folder; what is already there is
    skipped; the rest is read, checked and handed to ``write``; a bad message is a Problem, not the end."""

    def __init__(self, session, progress: Progress | None) -> None:
        self.db = session.connection()  # Core statements on the connection: the Session's ORM layer
        # cost a third of an export's time on a per-message query
        self.progress = progress
        self.result = ExportResult()
        self.heads = 0  # messages held by their headers alone, left out

    def run(self, rows: Iterator[repo.ExportRow], open_target, write, close) -> ExportResult:
        key = None
        target = None
        seen: dict[str, int] = {}
        try:
            for row in rows:
                if (row.account, row.folder) != key:
                    if target is not None:
                        close(target)
                    key = (row.account, row.folder)
                    target, seen = open_target(row), {}
                    self.result.folders += 1
                if row.headers_only:  # larger than max_size: no body to write yet (rule H1)
                    self.heads += 1
                    continue
                n = seen.get(row.sha256, 0)
                seen[row.sha256] = n + 1
                if maildir.FileKey(row.sha256, n) in target.present:
                    self.result.present += 1
                    continue
                try:
                    raw = checked_body(self.db, row)
                except StoreError as exc:
                    self.result.problems.append(Problem(row.account, row.folder, row.uid, exc.message))
                    continue
                write(target, row, raw, n)
                self.result.written += 1
                self.result.nbytes += len(raw)
                if self.progress is not None:
                    self.progress(self.result)
        finally:
            if target is not None:
                close(target)
        if self.heads:
            self.result.notes.append(f"{self.heads} message(s) larger than max_size are held by their headers alone: "
                                     f"left out (mailsync show ACCOUNT FOLDER UID fetches one; raising max_size "
                                     f"and syncing fetches them all)")
        return self.result


def export_maildir(session, root: Path, *, account: str | None = None, folder: str | None = None,
                   layout: str = "maildir++", per_account: bool = True,
                   progress: Progress | None = None) -> ExportResult:
    """Write the selected placements into Maildir folders under ``root`` (``root/ACCOUNT/...`` when
    ``per_account``), adding only those an earlier export did not write."""
    delims = _delimiters(session, account)
    walk = _Walk(session, progress)

    def open_target(row):
        parts = maildir.folder_parts(row.folder, delims.get((row.account, row.folder)))
        rel = maildir.folder_path(parts, layout)
        base = root / row.account if per_account else root
        return MaildirFolder(base / rel if rel else base, maildirplusplus_child=layout == "maildir++" and bool(rel))

    def write(target, row, raw, n):
        target.deliver(raw, row.sha256, n, row.flags, _when(row).timestamp())

    def close(target):
        target.close()
        if target.dropped_keywords:
            walk.result.notes.append(f"{target.path}: more than 26 keywords; left out of the file names: "
                                     f"{', '.join(sorted(target.dropped_keywords))}")

    return walk.run(repo.export_rows(walk.db, account=account, folder=folder), open_target, write, close)


def mbox_path(root: Path, account: str, folder: str, delimiter: str | None, per_account: bool) -> Path:
    """``root/[ACCOUNT/]A/B.mbox`` for folder A<delim>B (each part escaped as in fs Maildirs)."""
    rel = maildir.folder_path(maildir.folder_parts(folder, delimiter), "fs")
    base = root / account if per_account else root
    return base / (rel + ".mbox")


def export_mbox(session, target: Path, *, single_file: bool, account: str | None = None,
                folder: str | None = None, per_account: bool = True,
                progress: Progress | None = None) -> ExportResult:
    """Write the selected placements as mboxrd: into the one file ``target`` (``single_file``: the
    caller checked that the selection is one folder), or one file per folder under ``target``."""
    delims = _delimiters(session, account)
    walk = _Walk(session, progress)

    def open_target(row):
        path = target if single_file else mbox_path(target, row.account, row.folder,
                                                    delims.get((row.account, row.folder)), per_account)
        box = MboxFile(path)
        if box.truncated:
            walk.result.notes.append(f"{path}: cut off {box.truncated} byte(s) an interrupted export left "
                                     f"after the last message it recorded; they are written again")
        return box

    from mailsync.store import gmail_repo

    gmail: dict[str, dict] = {}  # account -> its Gmail messages by body: their labels go in X-Gmail-Labels

    def write(box, row, raw, n):
        if row.account not in gmail:
            gmail[row.account] = gmail_repo.messages_of_account(walk.db, row.account)
        gm = gmail[row.account].get(row.sha256)
        box.append(raw, row.sha256, n, row.flags, _when(row), None if gm is None else gm[2])

    return walk.run(repo.export_rows(walk.db, account=account, folder=folder), open_target, write,
                    lambda box: box.close())


def selection_folders(session, account: str | None, folder: str | None) -> list[tuple[str, str]]:
    """The (account, folder) pairs the selection holds live messages in (for `export mbox FILE`)."""
    out = []
    for acc in repo.list_accounts(session):
        if account is not None and acc.name != account:
            continue
        counts = repo.folder_counts(session, acc.id)
        for f in repo.folders_of(session, acc.id, gone=True):
            if counts.get(f.id) and (folder is None or f.name == folder):
                out.append((acc.name, f.name))
    return out
