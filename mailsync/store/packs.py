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
boundary, which a scan skips; smaller ones go through the page cache, unpadded. That buffer is a
PackBatch: ``append`` copies messages into one, and a first sync fills one in place (the IMAP reader
puts each message straight where it will lie, see sync.engine._download_packed), so its bytes are
never copied between the socket and the disk.
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


SPAN_BYTES = 8 << 20  # read_many: the most one pread reads
SPAN_GAP = 64 << 10  # ... and the most bytes between two records it reads through


class PackStore:
    def __init__(self, root: Path, *, limit: int = PACK_LIMIT, direct: bool = True) -> None:
        self.root = Path(root)
        self.limit = limit
        self._fds: dict[int, int] = {}
        self._fd_lock = threading.Lock()
        self._direct = direct and hasattr(os, "O_DIRECT")
        self._buf: PackBatch | None = None  # append()'s scratch batch
        self._pool: list[PackBatch] = []  # written batches, for new_batch() to hand out again
        self._pool_lock = threading.Lock()

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
            total = sum(HEADER.size + len(data) for _, data in items)
            if not (self._direct and total >= DIRECT_MIN):  # small: no copy, the kernel gathers them
                return self._append_buffered(items)
            batch = self._scratch(total)
            offsets = [batch.put(data, bytes.fromhex(sha)) for sha, data in items]
            pack, start = self._write_locked(batch)
            return [(pack, start + off) for off in offsets]

    def write_batch(self, batch: "PackBatch") -> tuple[int, int]:
        """Write a filled PackBatch as it lies, fsync, and return (pack, start): a record added at
        offset ``off`` of the batch is at ``start + off`` in that pack. Durable when this returns."""
        if not batch.count:
            raise ValueError("write_batch() of an empty batch")
        with self.locked():
            return self._write_locked(batch)

    def _target(self) -> tuple[int, Path]:
        """The pack to append to (the lock is held): the newest, or a new one when it is full."""
        numbers = self.packs()
        pack = numbers[-1] if numbers else 1
        if numbers and self._size(pack) >= self.limit:
            pack += 1
        return pack, self.path(pack)

    def _write_locked(self, batch: "PackBatch") -> tuple[int, int]:
        def write(path: Path) -> int:
            if self._direct and batch.used >= DIRECT_MIN:
                try:
                    return self._write_direct(path, batch)
                except _DirectUnsupported:
                    self._direct = False
            with memoryview(batch.buf) as view:
                return self._write_plain(path, [view[:batch.used]])

        return self._on_target(write)

    def _append_buffered(self, items: Sequence[tuple[str, bytes]]) -> list[tuple[int, int]]:
        """Small batches: headers and messages handed to the kernel as they are, no copy."""
        bufs: list = []
        offsets: list[int] = []
        pos = 0
        for sha, data in items:
            bufs += (HEADER.pack(MAGIC, VERSION, len(data), bytes.fromhex(sha)), data)
            offsets.append(pos + HEADER.size)
            pos += HEADER.size + len(data)
        pack, start = self._on_target(lambda path: self._write_plain(path, bufs))
        return [(pack, start + off) for off in offsets]

    def _on_target(self, write) -> tuple[int, int]:
        """Run ``write(path)``, which appends to the file and returns where it started, on the pack
        to append to (the lock is held); a new pack's folder entry is synced too. (pack, start)."""
        pack, path = self._target()
        created = not path.exists()
        try:
            start = write(path)
        except OSError as exc:
            raise _write_error(path, exc) from exc
        if created:
            fsync_dir(self.root)
        return pack, start

    def _size(self, pack: int) -> int:
        try:
            return self.path(pack).stat().st_size
        except FileNotFoundError:
            return 0

    def _write_plain(self, path: Path, bufs: list) -> int:
        """Append ``bufs`` through the page cache, unpadded, and sync (small batches; file systems
        without O_DIRECT); returns where they start. On failure the file is cut back to that point,
        so the next append starts at a record boundary."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            start = os.fstat(fd).st_size
            try:
                for i in range(0, len(bufs), _IOV_MAX):
                    _writev_all(fd, bufs[i:i + _IOV_MAX])
                os.fdatasync(fd)
            except OSError:
                _truncate(fd, start)
                raise
            return start
        finally:
            os.close(fd)

    def _write_direct(self, path: Path, batch: "PackBatch") -> int:
        """One O_DIRECT write of the whole batch from its aligned buffer: the kernel does not copy
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
            padded = batch.pad()
            try:
                with memoryview(batch.buf) as whole:
                    view = whole[:padded]
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
            return start
        finally:
            os.close(fd)

    def _scratch(self, size: int) -> "PackBatch":
        """The batch append() copies into (the lock is held), kept between appends."""
        if self._buf is None or self._buf.capacity < size:
            self._buf = PackBatch(max(size, 16 << 20))
        self._buf.clear()
        return self._buf

    # -- batches the reader fills in place ------------------------------------------------------

    def new_batch(self, capacity: int) -> "PackBatch":
        """An empty batch of at least ``capacity`` bytes, from the pool when one is free there.
        Give it back with ``recycle`` once written."""
        with self._pool_lock:
            for i, batch in enumerate(self._pool):
                if batch.capacity >= capacity:
                    del self._pool[i]
                    batch.clear()
                    return batch
        return PackBatch(capacity)

    def recycle(self, batch: "PackBatch") -> None:
        with self._pool_lock:
            if len(self._pool) < _POOL_MAX and not any(b is batch for b in self._pool):
                self._pool.append(batch)

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
        return self._checked(memoryview(raw), pack, offset, size, sha256, want, hashed=limit is None)

    def _checked(self, raw: memoryview, pack: int, offset: int, size: int, sha256: str, want: int, *,
                 hashed: bool) -> bytes:
        def where() -> str:  # named only in an error: a path per record read cost more than its hash
            return f"{self.path(pack)} at offset {offset}"

        if len(raw) < HEADER.size + want:
            raise StoreError(f"the body pack {where()} is cut short (expected {size} bytes of message "
                             f"{sha256[:12]})", hint="run mailsync verify --repair, then mailsync sync, to "
                                                     "download the damaged messages again")
        magic, version, length, digest = HEADER.unpack_from(raw)
        if magic != MAGIC or version != VERSION or length != size or digest.hex() != sha256:
            raise StoreError(f"the body pack {where()} does not hold message {sha256[:12]} "
                             f"(found {digest.hex()[:12]}, {length} bytes)",
                             hint="the pack or the database was changed outside mailsync; restore both "
                                  "from the same backup")
        data = bytes(raw[HEADER.size:HEADER.size + want])
        if hashed and hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"message {sha256[:12]} in {where()} is corrupt (its SHA-256 does not match)",
                             hint="run mailsync verify --repair, then mailsync sync, to download the damaged "
                                  "messages again")
        return data

    def read_many(self, wants: Sequence[tuple[int, int, int, str]]) -> list[bytes | StoreError]:
        """read() of each (pack, offset, size, sha256), in order, each checked as read() checks it;
        records that lie close together in a pack (as a download wrote them) are read with one pread
        per run of up to SPAN_BYTES, not one per message. A record that cannot be read is its
        StoreError, and the others are still read."""
        out: list[bytes | StoreError] = [StoreError("not read")] * len(wants)
        order = sorted(range(len(wants)), key=lambda i: (wants[i][0], wants[i][1]))
        run: list[int] = []

        def flush() -> None:
            if not run:
                return
            pack = wants[run[0]][0]
            start = wants[run[0]][1] - HEADER.size
            end = max(wants[i][1] + wants[i][2] for i in run)
            try:
                with self._fd_lock:
                    span = memoryview(os.pread(self._fd(pack), end - start, start))
            except (OSError, StoreError):  # read one by one: each gets its own error
                for i in run:
                    try:
                        out[i] = self.read(*wants[i])
                    except StoreError as exc:
                        out[i] = exc
            else:
                for i in run:
                    _pack, offset, size, sha = wants[i]
                    at = offset - HEADER.size - start
                    try:
                        out[i] = self._checked(span[at:at + HEADER.size + size], pack, offset, size, sha, size,
                                               hashed=True)
                    except StoreError as exc:
                        out[i] = exc
            run.clear()

        for i in order:
            pack, offset, size, _sha = wants[i]
            if run:
                first, last = wants[run[0]], wants[run[-1]]
                gap = offset - HEADER.size - (last[1] + last[2])
                if pack != first[0] or gap < 0 or gap > SPAN_GAP or offset + size - first[1] > SPAN_BYTES:
                    flush()
            run.append(i)
        flush()
        return out

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
            self._buf = None
        with self._pool_lock:
            self._pool.clear()


class PackBatch:
    """Records laid out in a page-aligned buffer exactly as they will lie in a pack, so that a
    batch is written with one O_DIRECT pwrite and no copy. A reader puts each message straight into
    its place (``slot(n)`` gives the n bytes after the next header), then ``add`` writes the header
    in front of it; a slot never added is overwritten by the next one."""

    __slots__ = ("buf", "used", "count")

    def __init__(self, capacity: int) -> None:
        self.buf = mmap.mmap(-1, max(ALIGN, -(-capacity // ALIGN) * ALIGN))
        self.used = 0  # bytes of whole records
        self.count = 0  # records

    @property
    def capacity(self) -> int:
        return len(self.buf)

    def fits(self, n: int) -> bool:
        """Is there room for one more record of an n-byte message?"""
        return self.used + HEADER.size + n <= len(self.buf)

    def slot(self, n: int) -> memoryview:
        """Where the next record's n message bytes go (check ``fits`` first)."""
        start = self.used + HEADER.size
        return memoryview(self.buf)[start:start + n]

    def add(self, n: int, digest: bytes) -> int:
        """Close the record whose n bytes are in the slot: its header is written; returns the
        offset of the message in the batch."""
        HEADER.pack_into(self.buf, self.used, MAGIC, VERSION, n, digest)
        offset = self.used + HEADER.size
        self.used = offset + n
        self.count += 1
        return offset

    def put(self, data, digest: bytes) -> int:
        """Copy a message in as a record; returns its offset in the batch."""
        start = self.used + HEADER.size
        self.buf[start:start + len(data)] = data
        return self.add(len(data), digest)

    def pad(self) -> int:
        """Zero the bytes up to the next ALIGN boundary; returns the padded length."""
        padded = -(-self.used // ALIGN) * ALIGN
        self.buf[self.used:padded] = bytes(padded - self.used)
        return padded

    def clear(self) -> None:
        self.used = self.count = 0


_POOL_MAX = 4


def _write_error(path: Path, exc: OSError) -> StoreError:
    hint = ("free some disk space and run the sync again" if exc.errno == errno.ENOSPC
            else "check the disk and the folder's permissions")
    return StoreError(f"cannot write message bodies to {path}: {exc.strerror}", hint=hint)


class _DirectUnsupported(Exception):
    """The file system refuses O_DIRECT (tmpfs, some network file systems): write buffered."""


def _truncate(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass


def _writev_all(fd: int, bufs: list) -> None:
    written = os.writev(fd, bufs)
    if written != sum(len(b) for b in bufs):  # a short write (rare on regular files): finish it plainly
        write_all(fd, b"".join(bufs)[written:])
