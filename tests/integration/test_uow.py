"""UnitOfWork: Core statements on uow.connection and mapped objects on uow.session share one
transaction, on SQLite and on a real PostgreSQL: committed together, rolled back together."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select, text

from mailsync.errors import StoreError
from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.store.db import open_store
from mailsync.store.models import Account, Folder
from mailsync.store.uow import UnitOfWork


def _names(store) -> list[str]:
    with UnitOfWork(store) as uow:
        return sorted(uow.connection.scalars(select(tables.accounts.c.name)))


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.dispose()


def test_core_then_session_commit_together(store):
    with UnitOfWork(store) as uow:
        repo.account_id(uow.connection, "core", "h", "u")
        uow.session.add(Account(name="orm", host="h", username="u"))
        uow.commit()
    assert _names(store) == ["core", "orm"]


def test_without_commit_both_roll_back(store):
    with UnitOfWork(store) as uow:
        repo.account_id(uow.connection, "core", "h", "u")
        uow.session.add(Account(name="orm", host="h", username="u"))
        uow.session.flush()
    with pytest.raises(RuntimeError):
        with UnitOfWork(store) as uow:
            uow.session.add(Account(name="orm2", host="h", username="u"))
            uow.session.flush()
            repo.account_id(uow.connection, "core2", "h", "u")
            raise RuntimeError("stop")
    assert _names(store) == []


def test_core_after_a_session_commit_is_committed_by_the_next_commit(store):
    with UnitOfWork(store) as uow:
        uow.session.add(Account(name="first", host="h", username="u"))
        uow.commit()
        acc = repo.account_id(uow.connection, "second", "h", "u")  # a new transaction, begun by Core
        uow.session.add(Folder(account_id=acc, name="INBOX", raw_name="INBOX", fetched_uid=0, status="ok"))
        uow.commit()
        repo.account_id(uow.connection, "third", "h", "u")  # never committed
    assert _names(store) == ["first", "second"]
    with UnitOfWork(store) as uow:
        assert [f.raw_name for f in repo.folders_of(uow.connection, acc)] == ["INBOX"]


def test_a_unit_that_never_touches_the_session_does_not_make_one(store):
    with UnitOfWork(store) as uow:
        repo.account_id(uow.connection, "core", "h", "u")
        uow.commit()
        assert uow._session is None
    assert _names(store) == ["core"]


def test_a_failed_commit_is_a_store_error_and_keeps_nothing(store):
    with UnitOfWork(store) as uow:
        repo.account_id(uow.connection, "a", "h", "u")
        uow.commit()
    with UnitOfWork(store) as uow:
        uow.connection.execute(insert(tables.accounts).values(name="b", host="h", username="u"))
        uow.session.add(Account(name="a", host="h", username="u"))  # the name is unique
        with pytest.raises(StoreError, match="could not commit to the store: IntegrityError"):
            uow.commit()
        assert not uow.connection.in_transaction()
        assert uow.connection.execute(text("SELECT 1")).scalar() == 1  # the unit is usable again
    assert _names(store) == ["a"]


def test_a_bound_connection_is_left_open(store):
    with store.engine.connect() as conn:
        with UnitOfWork(store, bind=conn) as uow:
            repo.account_id(uow.connection, "a", "h", "u")
            assert uow.session.connection() is conn
            uow.commit()
        assert not conn.closed and not conn.in_transaction()
        with UnitOfWork(store, bind=conn) as uow:
            assert [a.name for a in repo.list_accounts(uow.session)] == ["a"]


def test_account_for_run_reads_id_and_throttle_in_one_and_keeps_host_and_user_current(store):
    """repositories.account_for_run: a new account gets its row and no throttle; a throttled one
    answers its throttle (as UTC); a changed host or username is written, the throttle kept."""
    from datetime import datetime, timezone

    with UnitOfWork(store) as uow:
        new_id, until, why, count = repo.account_for_run(uow.connection, "a", "h1", "u1")
        assert (until, why, count) == (None, None, 0)
        when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        repo.set_throttle(uow.connection, new_id, when, "slow down", 2)
        uow.commit()
    with UnitOfWork(store) as uow:
        assert repo.account_for_run(uow.connection, "a", "h1", "u1") == (new_id, when, "slow down", 2)
        assert repo.account_for_run(uow.connection, "a", "h2", "u2") == (new_id, when, "slow down", 2)
        uow.commit()
    with UnitOfWork(store) as uow:
        row = uow.connection.execute(select(tables.accounts.c.host, tables.accounts.c.username)
                                     .where(tables.accounts.c.id == new_id)).one()
        assert tuple(row) == ("h2", "u2")
