"""Writing messages into a Maildir folder or an mbox file, crash-safe: the thin I/O shell around
maildir.py and mbox.py.

Owns: directories (cur/ new/ tmp/, Maildir++'s ``maildirfolder``), ``dovecot-keywords`` (written
new-then-renamed, before any file name uses one of its letters), message files (written to tmp/,
fsynced (a batch at once with syncfs where Linux has it), given the INTERNALDATE as mtime,
renamed into new/ or cur/, the directory fsynced; in batches, see MaildirFolder.deliver), the
mbox file and its index (``.NAME.mailsync-index``: one line ``SHA256 N END`` per message,
written after the mbox bytes it covers are fsynced), and reading back what an earlier run left
there.

Must not: read the store, decide which messages to write (see export.py), or hold more than one
message's bytes at a time. OSError is mapped here to MailsyncError naming the path.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from mailsync.errors import MailsyncError
from mailsync.mirror import maildir, mbox


class ExportError(MailsyncError):
    """A Maildir or mbox could not be written or read back."""


def _fail(what: str, path: Path, exc: OSError) -> ExportError:
    return ExportError(f"cannot {what} {path}: {exc.strerror or exc}",
                       hint="check the path, its permissions and the free space, then run the export again")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes, mtime: float | None = None) -> None:
    """Write ``data`` to ``path`` (created or truncated) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs():
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).syncfs
        fn.argtypes = [ctypes.c_int]
        return fn
    except (OSError, AttributeError):  # not Linux
        return None


_SYSCALL_SYNCFS = _load_syncfs()


def _syncfs(fd: int) -> bool:
    """syncfs(2): everything written to the file system of ``fd`` made durable in one call (one
    journal commit for a batch of new files, where an fsync each costs one commit each on a busy
    disk: measured here, about half the time for 64 files). False where it is missing or fails (the
    caller fsyncs each file then)."""
    if _SYSCALL_SYNCFS is None:
        return False
    return _SYSCALL_SYNCFS(fd) == 0


class MaildirFolder:
    """One Maildir folder: made when missing; ``present`` holds the FileKeys of the files a
    mailsync export or mirror wrote there before (in cur/ or new/, whatever their flags now)."""

    def __init__(self, path: Path, *, maildirplusplus_child: bool = False) -> None:
        self.path = path
        try:
            for sub in ("cur", "new", "tmp"):
                (path / sub).mkdir(parents=True, exist_ok=True)
            if maildirplusplus_child and not (path / "maildirfolder").exists():
                _write_new(path / "maildirfolder", b"")
            text = (path / maildir.KEYWORDS_FILE).read_text("utf-8", "replace") \
                if (path / maildir.KEYWORDS_FILE).exists() else ""
            self.present: set[maildir.FileKey] = set()
            for sub in ("cur", "new"):
                with os.scandir(path / sub) as it:
                    for entry in it:
                        key = maildir.file_key(entry.name)
                        if key is not None:
                            self.present.add(key)
        except OSError as exc:
            raise _fail("prepare the Maildir folder", path, exc) from exc
        self.keywords = maildir.KeywordTable.parse(text)
        self._dirty: set[str] = set()
        self._batch: list[tuple[int, Path, Path, float]] = []  # (open fd, tmp path, final path, mtime)
        self._batch_bytes = 0
        self.dropped_keywords: set[str] = set()  # past the 26 letters Maildir has

    def _ensure_keywords(self, flags: Iterable[str]) -> None:
        before = self.keywords.render()
        for kw in maildir.keywords_of(flags):
            if not self.keywords.add(kw):
                self.dropped_keywords.add(kw)
        after = self.keywords.render()
        if after != before:
            target = self.path / maildir.KEYWORDS_FILE
            tmp = self.path / "tmp" / (maildir.KEYWORDS_FILE + ".mailsync")
            try:
                _write_new(tmp, after.encode("utf-8"))
                os.replace(tmp, target)
                _fsync_dir(self.path)
            except OSError as exc:
                raise _fail("write", target, exc) from exc

    _BATCH_FILES = 64  # messages written to tmp/ before they are fsynced and renamed, as one batch:
    _BATCH_BYTES = 32 << 20  # the first fsync commits the file system's journal for all of them, so
    # the others cost little (one fsync per message, each its own commit, made a 10,000-message export
    # take minutes on a busy disk)

    def deliver(self, raw: bytes, sha256: str, n: int, flags: Iterable[str], when: float) -> Path:
        """Write one message to tmp/; flush (at the latest on close) fsyncs it, sets its mtime to
        ``when`` and renames it into new/ or cur/. Returns the path it will have."""
        flags = list(flags)
        self._ensure_keywords(flags)  # durable before any name uses its letters
        unique = maildir.unique_name(sha256, n, int(when), len(raw))
        sub = maildir.subdir_for(flags)
        name = maildir.file_name(unique, maildir.flags_to_info(flags, self.keywords.letters()))
        tmp, final = self.path / "tmp" / unique, self.path / sub / name
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise _fail("write the message file", tmp, exc) from exc
        self._batch.append((fd, tmp, final, when))
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            raise _fail("write the message file", tmp, exc) from exc
        self._batch_bytes += len(raw)
        self.present.add(maildir.FileKey(sha256, n))
        if len(self._batch) >= self._BATCH_FILES or self._batch_bytes >= self._BATCH_BYTES:
            self.flush()
        return final

    def deliver_staged(self, staged: Path, size: int, sha256: str, n: int, flags: Iterable[str], when: float) -> Path:
        """As deliver, for a message already written to ``staged`` (``size`` bytes; mailsync.mirror.stage:
        the bytes the download hashed as ``sha256``), not yet fsynced: it joins the batch and is
        renamed from there."""
        flags = list(flags)
        self._ensure_keywords(flags)
        unique = maildir.unique_name(sha256, n, int(when), size)
        final = self.path / maildir.subdir_for(flags) / maildir.file_name(
            unique, maildir.flags_to_info(flags, self.keywords.letters()))
        self._batch.append((None, staged, final, when))
        self._batch_bytes += size
        self.present.add(maildir.FileKey(sha256, n))
        if len(self._batch) >= self._BATCH_FILES or self._batch_bytes >= self._BATCH_BYTES:
            self.flush()
        return final

    def _syncfs(self, batch) -> bool:
        fd = next((fd for fd, *_ in batch if fd is not None), None)
        if fd is not None:
            return _syncfs(fd)
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return _syncfs(fd)
        finally:
            os.close(fd)

    def flush(self) -> None:
        """Make the batch's files durable (one syncfs for them all where Linux has it, else an fsync
        each), give each its mtime and rename it into place."""
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        try:
            if not (len(batch) > 1 and self._syncfs(batch)):
                for fd, tmp, _final, _when in batch:
                    if fd is None:
                        _fsync_file(tmp)
                    else:
                        os.fsync(fd)
        except OSError as exc:
            raise _fail("write the message files in", self.path / "tmp", exc) from exc
        finally:
            for fd, *_ in batch:
                if fd is not None:
                    os.close(fd)
        for fd, tmp, final, when in batch:
            try:
                os.utime(tmp, (when, when))
                try:
                    os.rename(tmp, final)
                except OSError as exc:  # a staged file on another file system than this folder
                    if fd is not None or exc.errno != errno.EXDEV:
                        raise
                    copy = self.path / "tmp" / tmp.name
                    _write_new(copy, tmp.read_bytes(), when)
                    os.rename(copy, final)
                    tmp.unlink()
            except OSError as exc:
                raise _fail("write the message file", final, exc) from exc
            self._dirty.add(final.parent.name)

    def close(self) -> None:
        """The last batch, then the renames made durable (one fsync per directory written to)."""
        self.flush()
        try:
            for sub in sorted(self._dirty):
                _fsync_dir(self.path / sub)
        except OSError as exc:
            raise _fail("sync the directory", self.path, exc) from exc
        self._dirty.clear()


def index_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.mailsync-index")


class MboxFile:
    """One mbox file written by export, with its index. On opening, bytes past the last indexed
    message (an export interrupted before its index caught up) are cut off, to be written again;
    a file shorter than its index says, or a non-empty mbox without an index, was changed by
    something else and is refused (writing into it could duplicate or lose mail)."""

    _BATCH = 8 << 20  # bytes written between two fsyncs of the mbox and its index

    def __init__(self, path: Path) -> None:
        self.path = path
        self.index = index_path(path)
        self.present: set[maildir.FileKey] = set()
        self.truncated = 0  # bytes of an interrupted run cut off
        end = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            size = path.stat().st_size if path.exists() else 0
            if self.index.exists():
                for line in self.index.read_text("ascii", "replace").splitlines():
                    parts = line.split()
                    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                        self.present.add(maildir.FileKey(parts[0], int(parts[1])))
                        end = int(parts[2])
            elif size:
                raise ExportError(f"{path} is an mbox that mailsync export did not write (it has no "
                                  f"{self.index.name} beside it); adding to it could duplicate messages",
                                  hint="export into a new file or directory")
            if size < end:
                raise ExportError(f"{path} is shorter than when mailsync export last wrote it ({size} bytes, "
                                  f"expected {end}): another program changed it",
                                  hint=f"export into a new file or directory (or remove {path} and "
                                       f"{self.index} to write it again)")
            self._f = open(path, "ab")
            if size > end:
                self._f.truncate(end)
                self.truncated = size - end
            self._ix = open(self.index, "a", encoding="ascii")
        except OSError as exc:
            raise _fail("open the mbox", path, exc) from exc
        self._end = end
        self._pending: list[str] = []
        self._unsynced = 0

    def append(self, raw: bytes, sha256: str, n: int, flags: Iterable[str], when: datetime,
               labels: Iterable[str] | None = None) -> None:
        data = mbox.entry(raw, flags, when, labels)
        try:
            self._f.write(data)
        except OSError as exc:
            raise _fail("write", self.path, exc) from exc
        self._end += len(data)
        self._pending.append(f"{sha256} {n} {self._end}\n")
        self.present.add(maildir.FileKey(sha256, n))
        self._unsynced += len(data)
        if self._unsynced >= self._BATCH:
            self.flush()

    def flush(self) -> None:
        """fsync the mbox, then record what it now holds in the index (and fsync that)."""
        if not self._pending:
            return
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._ix.write("".join(self._pending))
            self._ix.flush()
            os.fsync(self._ix.fileno())
        except OSError as exc:
            raise _fail("write", self.path, exc) from exc
        self._pending.clear()
        self._unsynced = 0

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._f.close()
            self._ix.close()
