"""A live Maildir mirror's message files written while a first sync downloads the messages.

Owns: the staged files (``.mailsync-stage.SHA256`` in the mirror root's tmp/), each written from
the very bytes the download hashed, as the pack writer hands a written batch over (``put``, on its
own thread); handing one to the mirror's write, once (``take``), which fsyncs it with its batch
and renames it into place (writer.MaildirFolder.deliver_staged) instead of reading the message
back from the store's packs and writing it again; removing what is left (``clear``), and what a
run killed before its write left (on creation). Must not: read the store, fsync (the write makes
a batch durable at once), name a file as a message (only the write does), or fail a sync: a
staged file that cannot be written is simply not there, and the write reads that message from
the store.

Crash safety: a staged file is trusted only by the run that wrote it (the names are kept in
memory, never read back from the disk), so one cut short by a kill -9 is never renamed into a
folder; the next run removes it.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from mailsync.fsutil import write_all

__all__ = ["MaildirStage"]

PREFIX = ".mailsync-stage."
log = logging.getLogger("mailsync.mirror")


class MaildirStage:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._dir = str(tmp)
        self._files: dict[str, tuple[Path, int]] = {}  # sha256 -> (staged file, size)
        self._lock = threading.Lock()
        self._broken = False  # a write failed (the disk full, say): nothing more is staged
        self._remove_leftovers()

    @classmethod
    def for_root(cls, root: Path) -> "MaildirStage | None":
        """The stage in ``root``'s tmp/ (made when missing), or None when it cannot be made."""
        try:
            (root / "tmp").mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        return cls(root / "tmp")

    def _remove_leftovers(self) -> None:
        try:
            with os.scandir(self.tmp) as it:
                for e in it:
                    if e.name.startswith(PREFIX):
                        os.unlink(e.path)
        except OSError:
            pass

    def put(self, buf, records) -> None:
        """Stage each (sha256 hex, size, message id, offset in ``buf``) record of a written pack batch."""
        view = memoryview(buf)
        for sha, n, _mid, offset in records:
            if self._broken or sha in self._files:
                continue
            path = os.path.join(self._dir, PREFIX + sha)  # (a str: this runs once per message)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    write_all(fd, view[offset:offset + n])
                finally:
                    os.close(fd)
            except OSError as exc:
                log.info("not staging the mirror's files any more (%s): they are written from the store", exc)
                self._broken = True
                try:
                    os.unlink(path)
                except OSError:
                    pass
                continue
            with self._lock:
                self._files[sha] = (Path(path), n)

    def take(self, sha256: str) -> tuple[Path, int] | None:
        """(the staged file, its size) holding the message ``sha256``, handed out once; None when none."""
        with self._lock:
            return self._files.pop(sha256, None)

    def clear(self) -> None:
        """Remove the staged files no write took."""
        with self._lock:
            left, self._files = list(self._files.values()), {}
        for path, _n in left:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
