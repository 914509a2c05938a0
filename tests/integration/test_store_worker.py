"""StoreWorker: tasks run in order on one connection; after a failure nothing later runs."""

import threading

import pytest

from mailsync.errors import StoreError
from mailsync.store import repositories as repo
from mailsync.store.db import open_store
from mailsync.store.models import Account
from mailsync.store.uow import UnitOfWork
from mailsync.store.worker import StoreWorker


def _adder(seen: list):
    """A task adding the account ``name`` and noting (name, the thread it ran on) in ``seen``."""

    def add(uow, name):
        seen.append((name, threading.current_thread().name))
        repo.account_id(uow.connection, name, "h", "u")
        uow.commit()

    return add


def test_tasks_run_in_order_on_one_thread_and_commit(store_url):
    store = open_store(store_url)
    seen: list[tuple[str, str]] = []
    add = _adder(seen)

    with StoreWorker(store, max_pending=2) as db:
        for i in range(10):
            db.submit(add, f"a{i}")
        names = db.call(lambda uow: [a.name for a in repo.list_accounts(uow.session)])
    assert [n for n, _ in seen] == [f"a{i}" for i in range(10)]
    assert len({t for _, t in seen}) == 1 and seen[0][1] != threading.current_thread().name
    assert sorted(names) == sorted(f"a{i}" for i in range(10))  # call() sees everything queued before it
    with UnitOfWork(store) as uow:
        assert len(repo.list_accounts(uow.session)) == 10
    store.dispose()


def test_after_a_failure_later_tasks_do_not_run(store_url):
    store = open_store(store_url)
    ran = []

    def ok(uow, name):
        repo.account_id(uow.connection, name, "h", "u")
        uow.commit()
        ran.append(name)

    def boom(uow):
        uow.session.add(Account(name="half", host="h", username="u"))
        uow.session.flush()
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        with StoreWorker(store, max_pending=5) as db:
            db.submit(ok, "before")
            db.submit(boom)
            db.submit(ok, "after")  # e.g. a folder checkpoint that must not outrun a lost batch
    assert ran == ["before"]
    with UnitOfWork(store) as uow:
        assert [a.name for a in repo.list_accounts(uow.session)] == ["before"]  # "half" rolled back
    with pytest.raises(RuntimeError, match="disk on fire"):  # raised again when the worker drains
        with StoreWorker(store) as db:
            db.submit(boom)
            with pytest.raises(StoreError, match="skipped after an earlier store error"):
                db.call(ok, "never")
    assert ran == ["before"]
    store.dispose()


def test_bulk_checkpoints_switch_only_the_worker_connection(tmp_path):
    """A first sync checkpoints its WAL in bulk on the worker's own connection; others keep the
    short interval, and the worker's goes back to it. The intervals are bytes of WAL, in pages of
    the store's own size (16 KB in a new store)."""
    from mailsync.store.db import BULK_WAL_CHECKPOINT_BYTES, PAGE_SIZE, WAL_CHECKPOINT_BYTES, bulk_checkpoints

    store = open_store(f"sqlite:///{tmp_path}/s.db")

    def interval(uow):
        return uow.session.connection().exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()

    try:
        with UnitOfWork(store) as uow:
            assert uow.session.connection().exec_driver_sql("PRAGMA page_size").scalar() == PAGE_SIZE == 16384
        short, bulk = WAL_CHECKPOINT_BYTES // PAGE_SIZE, BULK_WAL_CHECKPOINT_BYTES // PAGE_SIZE
        assert (short, bulk) == (256, 2048)
        with StoreWorker(store) as db:
            assert db.call(interval) == short
            db.call(lambda uow: bulk_checkpoints(uow.session.connection(), True))
            assert db.call(interval) == bulk
            with UnitOfWork(store) as other:  # another connection of the same store
                assert interval(other) == short
            db.call(lambda uow: bulk_checkpoints(uow.session.connection(), False))
            assert db.call(interval) == short
    finally:
        store.dispose()


def test_a_store_created_with_4k_pages_keeps_them(tmp_path):
    """A store made before the page size changed keeps its 4 KB pages, and its checkpoint
    intervals are the same bytes counted in its pages."""
    import sqlite3

    from mailsync.store.db import bulk_checkpoints

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA page_size=4096")
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("CREATE TABLE leftover (x INTEGER)")  # not empty: the page size is fixed now
    store = open_store(f"sqlite:///{path}")
    try:
        with UnitOfWork(store) as uow:
            conn = uow.session.connection()
            assert conn.exec_driver_sql("PRAGMA page_size").scalar() == 4096
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1024
            bulk_checkpoints(conn, True)
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 8192
    finally:
        store.dispose()


def test_small_tasks_neither_wait_nor_count_against_the_queue(store_url):
    """Backpressure is for tasks that carry downloaded messages: with max_pending=1 and one such
    task stuck, small tasks (a folder's checkpoint) queue at once, in order, and the next large
    task waits until the stuck one is done."""
    store = open_store(store_url)
    release = threading.Event()
    ran = []

    def large(uow, name):
        if name == "first":
            assert release.wait(10)
        ran.append(name)

    def small(uow, name):
        ran.append(name)

    try:
        with StoreWorker(store, max_pending=1) as db:
            db.submit(large, "first")
            for i in range(5):
                db.submit(small, f"s{i}", small=True)  # would block here if small tasks counted
            queued = threading.Event()

            def second():
                db.submit(large, "second")
                queued.set()

            t = threading.Thread(target=second)
            t.start()
            assert not queued.wait(0.3)  # waits on "first"
            release.set()
            assert queued.wait(10)
            t.join()
        assert ran == ["first", "s0", "s1", "s2", "s3", "s4", "second"]
    finally:
        release.set()
        store.dispose()


def test_lazy_worker_runs_on_the_callers_thread_until_a_download_task(store_url):
    """lazy=True (the sync engine's): small tasks and calls run on the caller's thread; the first task
    carrying downloads starts the worker thread, and it and every task after run there; the order is
    kept and everything is committed."""
    store = open_store(store_url)
    seen: list[tuple[str, str]] = []
    add = _adder(seen)

    me = threading.current_thread().name
    try:
        with StoreWorker(store, lazy=True) as db:
            db.submit(add, "small", small=True)
            db.call(add, "call")
            assert [t for _, t in seen] == [me, me]  # ran at once, here
            db.submit(add, "large1")
            db.submit(add, "small2", small=True)
            db.call(add, "call2")
        assert [n for n, _ in seen] == ["small", "call", "large1", "small2", "call2"]
        threads = {t for _, t in seen[2:]}
        assert len(threads) == 1 and me not in threads
        with UnitOfWork(store) as uow:
            assert sorted(a.name for a in repo.list_accounts(uow.session)) == sorted(n for n, _ in seen)
    finally:
        store.dispose()


def test_lazy_worker_stops_after_a_failure_on_the_callers_thread(store_url):
    """A task that fails inline is raised at drain, as a thread's would be, and nothing after it runs."""
    store = open_store(store_url)
    ran = []

    def boom(uow):
        raise RuntimeError("disk on fire")

    try:
        with pytest.raises(RuntimeError, match="disk on fire"):
            with StoreWorker(store, lazy=True) as db:
                db.submit(boom, small=True)  # inline: its error waits in its Future
                with pytest.raises(StoreError, match="skipped after an earlier store error"):
                    db.call(lambda uow: ran.append("never"))
        assert ran == []
    finally:
        store.dispose()
