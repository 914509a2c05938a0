"""The folder writes of every downloaded folder (repositories.advance_fetched_uid, adopt_uidvalidity,
mark_folder_synced), as Core UPDATEs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from mailsync.store import repositories as repo
from mailsync.store.db import open_store
from mailsync.store.models import Folder
from mailsync.store.uow import UnitOfWork


def _folder(store, **fields) -> int:
    with UnitOfWork(store) as uow:
        acc_id = repo.account_id(uow.connection, "acc", "127.0.0.1", "u")
        f = Folder(account_id=acc_id, name="INBOX", raw_name="INBOX", delimiter="/", fetched_uid=0, status="ok",
                   **fields)
        uow.session.add(f)
        uow.commit()
        return f.id


def _row(store, folder_id: int) -> dict:
    with UnitOfWork(store) as uow:
        t = Folder.__table__
        return dict(uow.session.execute(select(t).where(t.c.id == folder_id)).mappings().one())


def _write(store, fn, *args) -> None:
    with UnitOfWork(store) as uow:
        fn(uow.session, *args)
        uow.commit()


def test_the_download_mark_only_moves_up(store_url):
    store = open_store(store_url)
    fid = _folder(store)
    _write(store, repo.advance_fetched_uid, fid, 500)
    assert _row(store, fid)["fetched_uid"] == 500
    _write(store, repo.advance_fetched_uid, fid, 200)  # a batch committed late never moves it back
    assert _row(store, fid)["fetched_uid"] == 500
    _write(store, repo.advance_fetched_uid, fid, 501)
    assert _row(store, fid)["fetched_uid"] == 501


def test_adopting_a_uidvalidity_resets_what_was_known_under_the_old_one(store_url):
    store = open_store(store_url)
    fid = _folder(store, uidvalidity=7, uidnext=40, highestmodseq=9)
    _write(store, repo.advance_fetched_uid, fid, 39)
    _write(store, repo.adopt_uidvalidity, fid, 7)  # the same: nothing changes
    row = _row(store, fid)
    assert (row["uidvalidity"], row["uidnext"], row["highestmodseq"], row["fetched_uid"]) == (7, 40, 9, 39)
    _write(store, repo.adopt_uidvalidity, fid, 8)
    row = _row(store, fid)
    assert (row["uidvalidity"], row["uidnext"], row["highestmodseq"], row["fetched_uid"]) == (8, None, None, 0)

    with UnitOfWork(store) as uow:  # a folder never selected has no UIDVALIDITY: it is adopted too
        uow.session.execute(Folder.__table__.update().where(Folder.__table__.c.id == fid).values(uidvalidity=None))
        uow.commit()
    _write(store, repo.adopt_uidvalidity, fid, 3)
    assert _row(store, fid)["uidvalidity"] == 3


def test_a_synced_folder_records_its_select(store_url):
    store = open_store(store_url)
    fid = _folder(store, uidvalidity=5)
    when = datetime(2026, 11, 26, 18, 0, tzinfo=timezone.utc)
    _write(store, repo.mark_folder_synced, fid, 101, 77, 100, when)
    row = _row(store, fid)
    assert (row["uidnext"], row["highestmodseq"], row["messages"], row["uidvalidity"]) == (101, 77, 100, 5)
    assert row["last_synced_at"].replace(tzinfo=timezone.utc) == when
