"""StoreWorker: tasks run in order on one connection; after a failure nothing later runs."""

import threading

import pytest

from mailsync.errors import StoreError
from mailsync.store import repositories as repo
from mailsync.store.db import open_store
from mailsync.store.models import Account
from mailsync.store.uow import UnitOfWork
from mailsync.store.worker import StoreWorker


def test_tasks_run_in_order_on_one_thread_and_commit(store_url):
    store = open_store(store_url)
    seen = []

    def add(uow, name):
        seen.append((name, threading.current_thread().name))
        repo.get_or_create_account(uow.session, name, "h", "u")
        uow.commit()

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
        repo.get_or_create_account(uow.session, name, "h", "u")
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
    short interval, and the worker's goes back to it."""
    from mailsync.store.db import BULK_WAL_CHECKPOINT_PAGES, WAL_CHECKPOINT_PAGES, bulk_checkpoints

    store = open_store(f"sqlite:///{tmp_path}/s.db")

    def interval(uow):
        return uow.session.connection().exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()

    try:
        with StoreWorker(store) as db:
            assert db.call(interval) == WAL_CHECKPOINT_PAGES
            db.call(lambda uow: bulk_checkpoints(uow.session.connection(), True))
            assert db.call(interval) == BULK_WAL_CHECKPOINT_PAGES
            with UnitOfWork(store) as other:  # another connection of the same store
                assert interval(other) == WAL_CHECKPOINT_PAGES
            db.call(lambda uow: bulk_checkpoints(uow.session.connection(), False))
            assert db.call(interval) == WAL_CHECKPOINT_PAGES
    finally:
        store.dispose()
