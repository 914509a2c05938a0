"""Reclaiming pack space: a body that no placement needs any more leaves dead bytes in its pack.

Owns: deciding which packs are worth compacting, moving their live bodies to a new pack, and
retiring the emptied pack files. Must not: decide which bodies are dead (repositories.
delete_orphan_bodies removes their rows; a body without a row is dead by definition).

Crash safety: a live body is first appended (and fsynced) to the newest pack, then its row is
repointed in a transaction; the old pack is retired only when no row points into it. A crash at any
point leaves every row pointing at a complete copy; at worst a copy is written twice (dead space
for the next compaction). A retired pack is kept for an hour under another name, so that a reader
that looked up a row before the move can still read it, then deleted.

Cost that follows change: finding the dead share of each pack reads every body row (70 ms at
200,000 messages, and more the larger the store), while a sync with an expunge deletes a handful of
bodies. So compact() scans at most once per SCAN_INTERVAL, counted from its last scan or, before the
first, from the first time it looked (the mtime of a stamp file in the pack folder); dead space is
given back at the first sync with deletions after that.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from dataclasses import dataclass

from sqlalchemy import func, select, update

from mailsync.store.db import Store
from mailsync.store.tables import bodies

_B = bodies.c
from mailsync.store.packs import HEADER
from mailsync.store.uow import UnitOfWork

log = logging.getLogger(__name__)

MIN_DEAD_FRACTION = 0.5  # compact a pack when at least half of it is dead ...
MIN_DEAD_BYTES = 64 << 20  # ... and that half is worth a rewrite
MOVE_CHUNK = 64 << 20  # live bytes moved per transaction
SCAN_INTERVAL = 3600.0  # seconds between two usage scans of compact()
_SCANNED = "usage-scanned"  # in the pack folder; its mtime is when compact() last finished a scan


@dataclass
class CompactionResult:
    packs: int = 0  # packs retired
    moved: int = 0  # live bytes copied to a new pack
    freed: int = 0  # bytes given back to the file system (retired packs deleted)


def pack_usage(store: Store) -> dict[int, tuple[int, int]]:
    """{pack: (bytes on disk, live bytes)} for the store's packs."""
    if store.packs is None:
        return {}
    with UnitOfWork(store) as uow:
        live = {p: int(n or 0) + int(c) * HEADER.size for p, n, c in uow.connection.execute(
            select(_B.pack, func.sum(_B.size), func.count()).where(_B.pack.isnot(None)).group_by(_B.pack))}
    return {p: (size, live.get(p, 0)) for p, size in store.packs.sizes().items()}


def compact(store: Store, *, min_dead_fraction: float = MIN_DEAD_FRACTION, min_dead_bytes: int = MIN_DEAD_BYTES,
            retired_grace: float = 3600.0, scan_interval: float = SCAN_INTERVAL) -> CompactionResult:
    """Compact the packs whose dead share passes both thresholds, unless the last scan for them was
    less than ``scan_interval`` seconds ago; delete packs retired more than ``retired_grace`` seconds
    ago. Returns at once when another process is compacting."""
    result = CompactionResult()
    packs = store.packs
    if packs is None or not packs.root.exists():
        return result
    fd = os.open(packs.root / "compact.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return result
        result.freed += packs.purge_retired(retired_grace)
        stamp = packs.root / _SCANNED
        if not _scan_due(stamp, scan_interval):
            return result
        usage = pack_usage(store)
        todo = [p for p, (size, live) in sorted(usage.items())
                if size - live >= min_dead_bytes and size - live >= size * min_dead_fraction]
        if todo:
            packs.seal()  # moved bodies go to a fresh pack, never into one being emptied
        for pack in todo:
            result.moved += _move_live(store, pack)
            with UnitOfWork(store) as uow:
                left = uow.connection.scalar(select(func.count()).select_from(bodies).where(_B.pack == pack))
            if left == 0:
                packs.retire(pack)
                result.packs += 1
                log.info("compacted body pack %d: %d live bytes moved", pack, usage[pack][1])
        stamp.touch(mode=0o600)  # only now: after a crash in between, the next call scans again
        return result
    finally:
        os.close(fd)


def _scan_due(stamp, seconds: float) -> bool:
    """Is a usage scan due, the last having finished ``seconds`` ago or more? Without a stamp, this
    first look starts the clock (not due). A stamp from the future, after the clock was set back,
    does not hold scans off."""
    if seconds <= 0:
        return True
    try:
        age = time.time() - stamp.stat().st_mtime
    except FileNotFoundError:
        stamp.touch(mode=0o600)
        return False
    return not 0 <= age < seconds


def _move_live(store: Store, pack: int) -> int:
    packs = store.packs
    assert packs is not None
    with UnitOfWork(store) as uow:
        rows = uow.connection.execute(select(_B.sha256, _B.size, _B.pack_offset)
                                      .where(_B.pack == pack).order_by(_B.pack_offset)).all()
    moved = 0
    chunk: list = []
    size = 0
    for row in rows + [None]:
        if row is not None:
            chunk.append(row)
            size += row.size
        if chunk and (row is None or size >= MOVE_CHUNK):
            items = [(r.sha256, packs.read(pack, r.pack_offset, r.size, r.sha256)) for r in chunk]
            where = packs.append(items)
            with UnitOfWork(store) as uow:
                for r, (new_pack, offset) in zip(chunk, where):
                    uow.connection.execute(update(bodies).where(_B.sha256 == r.sha256, _B.pack == pack)
                                           .values(pack=new_pack, pack_offset=offset))
                uow.commit()
            moved += size
            chunk, size = [], 0
    return moved
