"""Message bodies in append-only pack files beside a SQLite store.

Owns: the pack folder (``<store>.db-bodies/``): its files, appending records with one fsync per
batch, reading them back with their SHA-256 checked, and the file side of compaction. Must not:
touch the database. The caller writes the rows that point into a pack (bodies.pack and
bodies.pack_offset) only after ``append`` has returned, so a row never points at bytes that are
not on disk; a crash in between leaves unreferenced bytes (dead space, reclaimed by compaction),
never a dangling row.

Why: in SQLite every body byte was copied into B-tree pages and written through the journal, and
that work, not the network, bounded the initial sync. A pack append is one sequential write per
batch that the kernel does without the GIL. PostgreSQL stores keep bodies in the database (several
machines may share one store; a local folder would not be shared).

Layout: ``pack-000001.dat``, ``pack-000002.dat``, ... Each record is a 48-byte header (magic
``MSPK``, format version, body length, SHA-256 digest) followed by the raw message. The header makes
a pack readable without the database (a scan can list its records), and lets a read check that the
offset it was given really starts a record of that body. A new pack is started when the newest one
has reached ``limit`` bytes. Appends from several processes are serialised by an flock on
``lock``; the offset of a record is the file's size under that lock. Batches of DIRECT_MIN bytes or
more are written with O_DIRECT from an aligned buffer and end in zero padding up to the next ALIGN
boundary, which a scan skips; smaller ones go through the page cache, unpadded.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import re
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mailsync.errors import StoreError
from mailsync.fsutil import fsync_dir, write_all

HEADER = struct.Struct(">4sB3xQ32s")  # magic, version, length, sha256 digest: 48 bytes
MAGIC = b"MSPK"
VERSION = 1
PACK_LIMIT = 1 << 30  # start a new pack at 1 GiB
_NAME = re.compile(r"pack-(\d{6,})\.dat")
_IOV_MAX = 1024
ALIGN = 4096  # O_DIRECT: offsets, lengths and the buffer on this boundary
# Batches smaller than this are written through the page cache: the copy is cheap for them, and a
# direct write would pad each (a watch daemon's one-message syncs) to ALIGN bytes.
DIRECT_MIN = 1 << 20


def pack_folder_for(database: str) -> Path:
    """The pack folder of the SQLite database file ``database``."""
    return Path(database).expanduser().resolve().with_name(Path(database).name + "-bodies")


class PackStore:
    def __init__(self, root: Path, *, limit: int = PACK_LIMIT, direct: bool = True) -> None:
        self.root = Path(root)
        self.limit = limit
        self._fds: dict[int, int] = {}
        self._fd_lock = threading.Lock()
        self._direct = direct and hasattr(os, "O_DIRECT")
        self._buf: mmap.mmap | None = None

    # -- names ----------------------------------------------------------------------------------

    def path(self, pack: int) -> Path:
        return self.root / f"pack-{pack:06d}.dat"

    def packs(self) -> list[int]:
        """The numbers of the pack files present, ascending."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := _NAME.fullmatch(n)))

    def sizes(self) -> dict[int, int]:
        """{pack: bytes on disk}."""
        out = {}
        for n in self.packs():
            try:
                out[n] = self.path(n).stat().st_size
            except FileNotFoundError:
                continue
        return out

    # -- writing --------------------------------------------------------------------------------

    def _ensure_root(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the body pack folder {self.root}: {exc.strerror}",
                             hint="make the store's folder writable, or set [store] url elsewhere") from exc

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The append lock (an flock, so it also excludes other processes)."""
        self._ensure_root()
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def append(self, items: Sequence[tuple[str, bytes]]) -> list[tuple[int, int]]:
        """Write each (sha256 hex, raw message) as a record, fsync, and return for each the
        (pack, offset of the message bytes) to store in its row. Durable when this returns."""
        if not items:
            return []
        with self.locked():
            return self._append_locked(items)

    def _append_locked(self, items: Sequence[tuple[str, bytes]]) -> list[tuple[int, int]]:
        numbers = self.packs()
        pack = numbers[-1] if numbers else 1
        if numbers and self._size(pack) >= self.limit:
            pack += 1
        path = self.path(pack)
        created = not path.exists()
        total = sum(HEADER.size + len(data) for _, data in items)
        try:
            if self._direct and total >= DIRECT_MIN:
                try:
                    out = self._write_direct(path, pack, items)
                except _DirectUnsupported:
                    self._direct = False
                    out = self._write_buffered(path, pack, items)
            else:
                out = self._write_buffered(path, pack, items)
        except OSError as exc:
            hint = ("free some disk space and run the sync again" if exc.errno == errno.ENOSPC
                    else "check the disk and the folder's permissions")
            raise StoreError(f"cannot write message bodies to {path}: {exc.strerror}", hint=hint) from exc
        if created:
            fsync_dir(self.root)
        return out

    def _size(self, pack: int) -> int:
        try:
            return self.path(pack).stat().st_size
        except FileNotFoundError:
            return 0

    @staticmethod
    def _layout(pack: int, start: int, items: Sequence[tuple[str, bytes]]):
        """The records' headers and where each message will start."""
        out: list[tuple[int, int]] = []
        headers: list[bytes] = []
        pos = start
        for sha, data in items:
            headers.append(HEADER.pack(MAGIC, VERSION, len(data), bytes.fromhex(sha)))
            out.append((pack, pos + HEADER.size))
            pos += HEADER.size + len(data)
        return headers, out, pos

    def _write_buffered(self, path: Path, pack: int, items: Sequence[tuple[str, bytes]]) -> list[tuple[int, int]]:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            start = os.fstat(fd).st_size
            headers, out, _ = self._layout(pack, start, items)
            bufs: list[bytes] = []
            for header, (_, data) in zip(headers, items):
                bufs += (header, data)
            try:
                for i in range(0, len(bufs), _IOV_MAX):
                    _writev_all(fd, bufs[i:i + _IOV_MAX])
                os.fdatasync(fd)
            except OSError:
                _truncate(fd, start)  # leave no half record: the next append starts at a record boundary
                raise
            return out
        finally:
            os.close(fd)

    def _write_direct(self, path: Path, pack: int, items: Sequence[tuple[str, bytes]]) -> list[tuple[int, int]]:
        """One O_DIRECT write of the whole batch from an aligned buffer: the kernel does not copy
        the bytes into the page cache (that copy cost as much CPU as reading them off the socket),
        and the batch lands on disk in one request. The batch is padded with zeros to the next
        ALIGN boundary, which a scan skips (see records)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                raise _DirectUnsupported() from exc
            raise
        try:
            start = os.fstat(fd).st_size
            if start % ALIGN:  # written by the buffered path before: pad it to a boundary first
                with open(path, "ab") as f:
                    f.write(b"\0" * (ALIGN - start % ALIGN))
                start += ALIGN - start % ALIGN
            headers, out, end = self._layout(pack, start, items)
            length = end - start
            padded = -(-length // ALIGN) * ALIGN
            buf = self._buffer(padded)
            pos = 0
            for header, (_, data) in zip(headers, items):
                buf[pos:pos + HEADER.size] = header
                pos += HEADER.size
                buf[pos:pos + len(data)] = data
                pos += len(data)
            buf[pos:padded] = bytes(padded - pos)
            try:
                view = memoryview(buf)[:padded]
                try:
                    done = 0
                    while done < padded:
                        n = os.pwrite(fd, view[done:], start + done)
                        if n <= 0 or n % ALIGN:
                            raise OSError(errno.EIO, "short O_DIRECT write")
                        done += n
                finally:
                    view.release()
                os.fdatasync(fd)
            except OSError as exc:
                _truncate(fd, start)
                if exc.errno == errno.EINVAL:  # opened, but the file system will not write directly
                    raise _DirectUnsupported() from exc
                raise
            return out
        finally:
            os.close(fd)

    def _buffer(self, size: int) -> mmap.mmap:
        """A page-aligned buffer of at least ``size`` bytes, kept between batches."""
        if self._buf is None or len(self._buf) < size:
            if self._buf is not None:
                self._buf.close()
            self._buf = mmap.mmap(-1, max(size, 16 << 20))
        return self._buf

    def seal(self) -> None:
        """Make the next append start a new pack (compaction moves bodies out of the current one)."""
        with self.locked():
            numbers = self.packs()
            if numbers and self._size(numbers[-1]) > 0:
                fd = os.open(self.path(numbers[-1] + 1), os.O_WRONLY | os.O_CREAT, 0o600)
                os.close(fd)
                fsync_dir(self.root)

    # -- reading --------------------------------------------------------------------------------

    def _fd(self, pack: int) -> int:
        """A read descriptor of the pack (cached); the caller holds _fd_lock."""
        fd = self._fds.get(pack)
        if fd is None:
            try:
                fd = os.open(self.path(pack), os.O_RDONLY)
            except FileNotFoundError:
                try:
                    fd = os.open(self._retired(pack), os.O_RDONLY)
                except FileNotFoundError:
                    raise StoreError(f"the body pack {self.path(pack)} is missing",
                                     hint="restore the store's -bodies folder from a backup together "
                                          "with the database file") from None
            self._fds[pack] = fd
        return fd

    def _retired(self, pack: int) -> Path:
        return self.root / f"pack-{pack:06d}.retired"

    def read(self, pack: int, offset: int, size: int, sha256: str, *, limit: int | None = None) -> bytes:
        """The message stored at (pack, offset); its header and (for a whole read) its SHA-256 are
        checked. ``limit``: read only the first ``limit`` bytes (not hashed)."""
        want = size if limit is None else min(size, limit)
        try:
            with self._fd_lock:  # held across the read: purge_retired may close a cached descriptor
                raw = os.pread(self._fd(pack), HEADER.size + want, offset - HEADER.size)
        except OSError as exc:
            raise StoreError(f"cannot read {self.path(pack)} at {offset}: {exc.strerror}") from exc
        where = f"{self.path(pack)} at offset {offset}"
        if len(raw) < HEADER.size + want:
            raise StoreError(f"the body pack {where} is cut short (expected {size} bytes of message "
                             f"{sha256[:12]})", hint="restore the store from a backup, or remove the message's "
                                                     "folder state and sync again to download it anew")
        magic, version, length, digest = HEADER.unpack_from(raw)
        if magic != MAGIC or version != VERSION or length != size or digest.hex() != sha256:
            raise StoreError(f"the body pack {where} does not hold message {sha256[:12]} "
                             f"(found {digest.hex()[:12]}, {length} bytes)",
                             hint="the pack or the database was changed outside mailsync; restore both "
                                  "from the same backup")
        data = raw[HEADER.size:]
        if limit is None and hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"message {sha256[:12]} in {where} is corrupt (its SHA-256 does not match)",
                             hint="restore the store from a backup; a sync after removing the folder's "
                                  "state downloads it again")
        return data

    def records(self, pack: int) -> Iterator[tuple[int, int, str]]:
        """Scan a pack: (offset of the message, length, sha256 hex) of each whole record."""
        path = self.path(pack)
        with open(path, "rb") as f:
            pos = 0
            while True:
                head = f.read(HEADER.size)
                if len(head) < HEADER.size:
                    return
                magic, version, length, digest = HEADER.unpack(head)
                if magic != MAGIC and pos % ALIGN:  # the zero padding after a batch written directly?
                    gap = ALIGN - pos % ALIGN
                    f.seek(pos)
                    if f.read(gap) == bytes(gap):
                        pos += gap
                        f.seek(pos)
                        continue
                if magic != MAGIC or version != VERSION:
                    raise StoreError(f"{path}: no record at offset {pos}", hint="the pack is damaged")
                yield pos + HEADER.size, length, digest.hex()
                pos += HEADER.size + length
                f.seek(pos)

    # -- compaction (the file side) -------------------------------------------------------------

    def retire(self, pack: int) -> None:
        """Take a pack out of use: renamed, so that a reader still holding an old row finds it, and
        deleted by ``purge_retired`` later."""
        try:  # an open descriptor (here or in another process) keeps reading the renamed file
            os.replace(self.path(pack), self._retired(pack))
        except FileNotFoundError:
            return
        fsync_dir(self.root)

    def purge_retired(self, older_than: float = 3600.0) -> int:
        """Delete packs retired more than ``older_than`` seconds ago; returns the bytes freed."""
        freed = 0
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return 0
        now = time.time()
        for name in names:
            m = re.fullmatch(r"pack-(\d{6,})\.retired", name)
            if m is None:
                continue
            p = self.root / name
            try:
                st = p.stat()
                if now - st.st_ctime < older_than:
                    continue
                p.unlink()
                freed += st.st_size
            except FileNotFoundError:
                continue
            with self._fd_lock:  # a cached descriptor would keep the deleted file's space
                fd = self._fds.pop(int(m.group(1)), None)
                if fd is not None:
                    os.close(fd)
        return freed

    def close(self) -> None:
        with self._fd_lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            if self._buf is not None:
                self._buf.close()
                self._buf = None


class _DirectUnsupported(Exception):
    """The file system refuses O_DIRECT (tmpfs, some network file systems): write buffered."""


def _truncate(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass


def _writev_all(fd: int, bufs: list[bytes]) -> None:
    written = os.writev(fd, bufs)
    if written != sum(len(b) for b in bufs):  # a short write (rare on regular files): finish it plainly
        write_all(fd, b"".join(bufs)[written:])
