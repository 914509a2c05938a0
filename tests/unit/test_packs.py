"""Body pack files (mailsync.store.packs) and their compaction (mailsync.store.compaction), on a real
file system and a real SQLite store: records round-trip and are checked on read, batches written
directly (O_DIRECT) or buffered scan the same, a crash between pack and row only leaves dead space,
and compaction gives that space back without losing a live body."""

from __future__ import annotations

import hashlib
import os
import stat
import time
import pytest
from sqlalchemy import delete, select

from mailsync.errors import StoreError
from mailsync.store import compaction
from mailsync.store import repositories as repo
from mailsync.store.db import open_store
from mailsync.store.models import Body
from mailsync.store.packs import ALIGN, PackStore, pack_folder_for
from mailsync.store.uow import UnitOfWork


def _items(n: int, size: int = 3000, tag: str = "m") -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        raw = (f"Message-ID: <{tag}{i}@example.org>\r\n\r\n".encode() + os.urandom(size + i % 97))
        out.append((hashlib.sha256(raw).hexdigest(), raw))
    return out


@pytest.fixture(params=["direct", "buffered"])
def packs(request, tmp_path) -> PackStore:
    p = PackStore(tmp_path / "store.db-bodies", direct=request.param == "direct")
    yield p
    p.close()


def test_read_many_reads_neighbours_together_each_checked_and_in_the_order_asked(packs, monkeypatch):
    batches = [_items(300, size=2000, tag="x"), _items(5, tag="y"), _items(300, size=2000, tag="z")]
    placed = []
    for batch in batches:
        for (sha, raw), (pack, offset) in zip(batch, packs.append(batch)):
            placed.append((pack, offset, len(raw), sha, raw))
    calls = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: calls.append(n) or real(fd, n, off))
    wants = [w[:4] for w in reversed(placed)]  # asked out of order: answered in the order asked
    got = packs.read_many(wants)
    assert got == [w[4] for w in reversed(placed)]
    assert len(calls) < len(placed) / 50  # runs of neighbours, not one pread per record
    # a record whose bytes were changed is its own error; its neighbours are still read
    pack, offset, size, sha, raw = placed[10]
    with open(packs.path(pack), "r+b") as f:
        f.seek(offset + 5)
        f.write(b"X")
    got = packs.read_many([w[:4] for w in placed[8:13]])
    assert isinstance(got[2], StoreError) and "corrupt" in str(got[2])
    assert [g for i, g in enumerate(got) if i != 2] == [w[4] for i, w in enumerate(placed[8:13]) if i != 2]


def test_records_round_trip_and_scan(packs):
    # small batches (buffered even in direct mode) between large ones (direct in direct mode)
    batches = [_items(7, tag="a"), _items(400, size=3000, tag="big1"), _items(1, tag="b"),
               _items(30, size=100, tag="c"), _items(400, size=3000, tag="big2")]
    placed = []
    for batch in batches:
        for (sha, raw), (pack, offset) in zip(batch, packs.append(batch)):
            placed.append((sha, raw, pack, offset))
    for sha, raw, pack, offset in placed:
        assert packs.read(pack, offset, len(raw), sha) == raw
        assert packs.read(pack, offset, len(raw), sha, limit=10) == raw[:10]
    # a scan finds every record, in order, whatever padding lies between batches
    assert list(packs.records(1)) == [(offset, len(raw), sha) for sha, raw, _p, offset in placed]
    if packs._direct:  # a large batch, written directly, ends on the alignment boundary
        assert packs.path(1).stat().st_size % ALIGN == 0
    else:  # buffered: no padding at all
        assert packs.path(1).stat().st_size == sum(48 + len(raw) for _s, raw, _p, _o in placed)


def test_batches_filled_in_place_round_trip_and_scan(packs):
    """PackBatch: messages read straight into their slots (as the first-sync reader does), then
    the header put in front; batches written as they lie, between appends of the usual kind."""
    placed = []
    before = _items(3, tag="before")
    placed += [(sha, raw, pack, off) for (sha, raw), (pack, off) in zip(before, packs.append(before))]
    for tag, count, size in (("big", 500, 3000), ("small", 5, 200), ("big2", 450, 3000)):
        items = _items(count, size=size, tag=tag)
        batch = packs.new_batch(1 << 20)
        offsets = []
        for sha, raw in items:
            if not batch.fits(len(raw)):
                break
            slot = batch.slot(len(raw))
            slot[:] = raw  # what readinto() does with a literal
            offsets.append(batch.add(len(raw), bytes.fromhex(sha)))
        pack, start = packs.write_batch(batch)
        placed += [(sha, raw, pack, start + off) for (sha, raw), off in zip(items, offsets)]
        packs.recycle(batch)
    after = _items(2, tag="after")
    placed += [(sha, raw, pack, off) for (sha, raw), (pack, off) in zip(after, packs.append(after))]
    for sha, raw, pack, offset in placed:
        assert packs.read(pack, offset, len(raw), sha) == raw
    assert list(packs.records(1)) == [(offset, len(raw), sha) for sha, raw, _p, offset in placed]


def test_a_batch_slot_not_added_is_overwritten(packs):
    [(sha1, raw1), (sha2, raw2)] = _items(2, size=5000)
    batch = packs.new_batch(1 << 16)
    batch.slot(len(raw1))[:] = raw1  # read, then not taken (an unsolicited response, say)
    batch.slot(len(raw2))[:] = raw2
    off = batch.add(len(raw2), bytes.fromhex(sha2))
    pack, start = packs.write_batch(batch)
    assert batch.count == 1
    assert packs.read(pack, start + off, len(raw2), sha2) == raw2
    assert [sha for _o, _n, sha in packs.records(pack)] == [sha2]
    with pytest.raises(ValueError, match="empty batch"):
        packs.write_batch(packs.new_batch(1 << 16))


def test_pack_files_are_private(packs):
    packs.append(_items(1))
    assert stat.S_IMODE(packs.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(packs.path(1).stat().st_mode) == 0o600


def test_a_read_checks_what_it_finds(packs):
    [(sha, raw), more] = _items(2)
    [(pack, offset), _] = packs.append([(sha, raw), more])
    other_sha = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(StoreError, match="does not hold message"):
        packs.read(pack, offset, len(raw), other_sha)
    with pytest.raises(StoreError, match="does not hold message"):
        packs.read(pack, offset + 1, len(raw), sha)
    with open(packs.path(pack), "r+b") as f:  # one flipped byte in the message
        f.seek(offset + len(raw) - 1)
        last = f.read(1)
        f.seek(offset + len(raw) - 1)
        f.write(bytes([last[0] ^ 1]))
    packs.close()  # drop cached descriptors: read the changed file
    with pytest.raises(StoreError, match="corrupt"):
        packs.read(pack, offset, len(raw), sha)
    os.truncate(packs.path(pack), offset + 10)
    packs.close()
    with pytest.raises(StoreError, match="cut short"):
        packs.read(pack, offset, len(raw), sha)


def test_a_missing_pack_is_a_clear_error(packs):
    [(sha, raw)] = _items(1)
    [(pack, offset)] = packs.append([(sha, raw)])
    packs.close()
    packs.path(pack).unlink()
    with pytest.raises(StoreError, match="is missing") as info:
        packs.read(pack, offset, len(raw), sha)
    assert "restore" in str(info.value)


def test_a_full_pack_rolls_over(tmp_path):
    packs = PackStore(tmp_path / "b", limit=10_000)
    first = packs.append(_items(5, size=3000, tag="x"))  # > 10,000 bytes: pack 1 is full after this
    second = packs.append(_items(2, size=100, tag="y"))
    assert {p for p, _ in first} == {1} and {p for p, _ in second} == {2}
    assert packs.packs() == [1, 2]


def test_direct_writes_fall_back_where_the_file_system_refuses_them(tmp_path, monkeypatch):
    """Some file systems (older tmpfs, some network file systems) refuse O_DIRECT with EINVAL:
    the store then writes through the page cache, and says nothing about it."""
    import errno

    real_open = os.open

    def refusing_open(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing_open)
    packs = PackStore(tmp_path / "bodies", direct=True)
    items = _items(400)  # over DIRECT_MIN: a direct write is tried
    where = packs.append(items)
    assert packs._direct is False  # buffered from now on
    assert [packs.read(p, o, len(raw), sha) for (sha, raw), (p, o) in zip(items, where)] == [r for _, r in items]
    packs.close()


def test_the_pack_folder_sits_beside_the_database(tmp_path):
    assert pack_folder_for(str(tmp_path / "mailsync.db")) == tmp_path / "mailsync.db-bodies"


# ------------------------------------------------------------------ through the store


def _store(tmp_path):
    return open_store(f"sqlite:///{tmp_path}/store.db")


def _bodies(items):
    return [repo.NewBody(sha, len(raw), None, raw) for sha, raw in items]


def test_a_body_is_written_once(tmp_path):
    store = _store(tmp_path)
    items = _items(20)
    with UnitOfWork(store) as uow:
        repo.store_bodies(uow.session, _bodies(items))
        uow.commit()
    size = store.packs.path(1).stat().st_size
    with UnitOfWork(store) as uow:  # the same bodies again, and one new
        repo.store_bodies(uow.session, _bodies(items + _items(1, tag="new")))
        uow.commit()
    grown = store.packs.path(1).stat().st_size - size
    assert 0 < grown < 2 * ALIGN + 4000  # only the new body was written
    with UnitOfWork(store) as uow:
        assert all(repo.read_body(uow.session, sha) == raw for sha, raw in items)
        heads = repo.read_heads(uow.session, [sha for sha, _ in items], 12)
        assert sorted(heads) == sorted((sha, raw[:12], len(raw)) for sha, raw in items)
        assert uow.session.scalar(select(Body.data).where(Body.sha256 == items[0][0])) == b""
    store.dispose()


def test_dispose_closes_the_packs_and_the_connections_and_reports_a_failure(tmp_path, monkeypatch):
    """Store.dispose closes the pack files beside the engine's connections (on a thread of its own):
    both are done when it returns, and an error closing the packs reaches the caller."""
    store = _store(tmp_path)
    items = _items(3)
    with UnitOfWork(store) as uow:
        repo.store_bodies(uow.session, _bodies(items))
        uow.commit()
        assert repo.read_body(uow.session, items[0][0]) == items[0][1]  # a pack file held open for reading
    batch = store.packs.new_batch(1 << 20)
    store.packs.recycle(batch)
    assert store.packs._fds and store.packs._pool
    store.dispose()
    assert not store.packs._fds and not store.packs._pool
    assert store.engine.pool.checkedin() == 0  # every pooled connection closed
    assert not (tmp_path / "store.db-wal").exists()  # the last close checkpointed and removed the WAL

    store = _store(tmp_path)

    def broken() -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store.packs, "close", broken)
    with pytest.raises(OSError, match="Input/output error"):
        store.dispose()
    assert store.engine.pool.checkedin() == 0


def test_bytes_written_before_a_crash_are_only_dead_space(tmp_path):
    """A crash between the pack append and the commit of its rows: nothing points at the bytes, the
    rerun writes the body again and the store reads it; compaction later drops the lost copy."""
    store = _store(tmp_path)
    items = _items(10, size=20_000)
    with UnitOfWork(store) as uow:
        repo.store_bodies(uow.session, _bodies(items))  # the pack write and the rows ...
        # ... and the process dies before the commit: the rows are gone, the bytes are not
    with UnitOfWork(store) as uow:
        assert uow.session.scalar(select(Body.sha256).limit(1)) is None
        repo.store_bodies(uow.session, _bodies(items))
        uow.commit()
    with UnitOfWork(store) as uow:
        assert [repo.read_body(uow.session, sha) for sha, _ in items] == [raw for _, raw in items]
    [(size, live)] = compaction.pack_usage(store).values()
    assert size >= 2 * live - 2 * ALIGN  # half of the pack is the lost first copy
    done = compaction.compact(store, min_dead_bytes=1, retired_grace=0, scan_interval=0)
    assert done.packs == 1
    with UnitOfWork(store) as uow:
        assert [repo.read_body(uow.session, sha) for sha, _ in items] == [raw for _, raw in items]
    store.dispose()


def test_compaction_moves_live_bodies_and_frees_the_rest(tmp_path):
    store = _store(tmp_path)
    items = _items(60, size=10_000)
    with UnitOfWork(store) as uow:
        repo.store_bodies(uow.session, _bodies(items))
        uow.commit()
    keep, drop = items[::4], [it for i, it in enumerate(items) if i % 4]
    with UnitOfWork(store) as uow:
        uow.session.execute(delete(Body).where(Body.sha256.in_([sha for sha, _ in drop])))
        uow.commit()
    before = compaction.pack_usage(store)
    assert compaction.compact(store, min_dead_bytes=10 ** 9, scan_interval=0).packs == 0  # below the threshold
    # a reader that looked its row up before the move
    with UnitOfWork(store) as uow:
        old = uow.session.execute(select(Body.pack, Body.pack_offset).where(Body.sha256 == keep[0][0])).one()
    done = compaction.compact(store, min_dead_bytes=1, scan_interval=0)  # the call above scanned just now
    assert done.packs == 1 and done.moved == sum(len(raw) for _, raw in keep)
    assert 1 not in store.packs.packs()  # retired, kept an hour under another name
    assert store.packs.read(old.pack, old.pack_offset, len(keep[0][1]), keep[0][0]) == keep[0][1]
    with UnitOfWork(store) as uow:
        assert [repo.read_body(uow.session, sha) for sha, _ in keep] == [raw for _, raw in keep]
        assert set(uow.session.scalars(select(Body.pack))) == {2}
    after = compaction.pack_usage(store)
    assert sum(s for s, _ in after.values()) < sum(s for s, _ in before.values()) / 2 + ALIGN
    # the retired pack goes once its grace period is over (the cached descriptor with it)
    assert compaction.compact(store, retired_grace=3600).freed == 0
    assert compaction.compact(store, retired_grace=0).freed == before[1][0]
    assert 1 not in store.packs._fds
    assert not list(store.packs.root.glob("*.retired"))
    store.dispose()



def _filled(packs: PackStore, items: list[tuple[str, bytes]]):
    batch = packs.new_batch(1 << 20)
    offsets = []
    for sha, raw in items:
        batch.slot(len(raw))[:] = raw
        offsets.append(batch.add(len(raw), bytes.fromhex(sha)))
    return batch, offsets


def test_the_pack_writer_writes_in_order_and_hands_batches_back(packs):
    """PackWriter (the first sync's third thread): batches written in the order given, each Future
    giving where its records went, ``written`` called after each write, every batch back in the
    pool, and at most max_pending writes waiting."""
    from mailsync.store.worker import PackWriter

    writer = PackWriter(packs, max_pending=2)
    calls = []
    expected = []
    try:
        for k in range(6):
            items = _items(20, size=2000, tag=f"w{k}")
            batch, offsets = _filled(packs, items)
            fut = writer.submit(batch, lambda k=k: calls.append(k))
            assert len(writer._pending) <= 2
            expected.append((fut, items, offsets))
    finally:
        writer.close()
    assert calls == list(range(6))
    placed = []
    for fut, items, offsets in expected:
        pack, start = fut.result()
        placed += [(sha, raw, pack, start + off) for (sha, raw), off in zip(items, offsets)]
    for sha, raw, pack, offset in placed:
        assert packs.read(pack, offset, len(raw), sha) == raw
    assert [sha for _o, _n, sha in packs.records(1)] == [sha for sha, *_ in placed]  # in order
    assert 0 < len(packs._pool) <= 4


def test_a_failed_pack_write_reaches_its_future_and_the_next_submit(packs, monkeypatch):
    from mailsync.store.worker import PackWriter

    def full(batch):
        raise StoreError("cannot write message bodies to x: No space left on device")

    monkeypatch.setattr(packs, "write_batch", full)
    writer = PackWriter(packs)
    try:
        fut = writer.submit(_filled(packs, _items(2))[0])
        with pytest.raises(StoreError, match="No space left"):
            fut.result()
        with pytest.raises(StoreError, match="No space left"):  # the reader hears of it too
            writer.submit(_filled(packs, _items(2))[0])
    finally:
        writer.close()


def test_compaction_scans_at_most_once_per_interval(tmp_path):
    """The usage scan reads every body row, so compact() runs it at most once per scan_interval,
    counted from the first look before the first scan: dead space made within the interval waits for
    the first call after it."""
    store = _store(tmp_path)
    items = _items(40, size=10_000)
    with UnitOfWork(store) as uow:
        repo.store_bodies(uow.session, _bodies(items))
        uow.commit()
    stamp = store.packs.root / "usage-scanned"
    with UnitOfWork(store) as uow:  # dead before the first look ...
        uow.session.execute(delete(Body).where(Body.sha256 == items[-1][0]))
        uow.commit()
    assert compaction.compact(store, min_dead_bytes=1, min_dead_fraction=0).packs == 0  # ... waits an hour
    assert stamp.exists()
    os.utime(stamp, (time.time() - 2 * compaction.SCAN_INTERVAL,) * 2)
    with UnitOfWork(store) as uow:
        repo.store_bodies(uow.session, _bodies(items[-1:]))  # alive again: nothing dead but the old copy
        uow.commit()
    assert compaction.compact(store, min_dead_bytes=10 ** 9).packs == 0  # scanned: under the threshold
    assert time.time() - stamp.stat().st_mtime < 60
    with UnitOfWork(store) as uow:
        uow.session.execute(delete(Body).where(Body.sha256.in_([sha for sha, _ in items[1:]])))
        uow.commit()
    assert compaction.compact(store, min_dead_bytes=1).packs == 0  # within the hour: not looked at
    assert store.packs.packs() == [1]
    scanned = stamp.stat().st_mtime
    os.utime(stamp, (scanned - 2 * compaction.SCAN_INTERVAL,) * 2)  # the last scan was two hours ago
    assert compaction.compact(store, min_dead_bytes=1).packs == 1
    assert stamp.stat().st_mtime > scanned - compaction.SCAN_INTERVAL  # this scan is the last one now
    os.utime(stamp, (time.time() + 3600,) * 2)  # a stamp from the future (the clock was set back) ...
    assert compaction._scan_due(stamp, compaction.SCAN_INTERVAL)  # ... does not hold scans off
    with UnitOfWork(store) as uow:
        assert repo.read_body(uow.session, items[0][0]) == items[0][1]
    store.dispose()
