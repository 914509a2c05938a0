"""repositories.update_placements on SQLite and on a real PostgreSQL: each placement gets the
columns it names and no other, so a change made meanwhile to a column it does not name survives."""

from __future__ import annotations

from sqlalchemy import select

from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.store.db import open_store
from mailsync.store.uow import UnitOfWork

_P = tables.placements.c


def _setup(store) -> int:
    with UnitOfWork(store) as uow:
        c = uow.connection
        acc = repo.account_id(c, "acc", "127.0.0.1", "u")
        folder = repo.add_folder(c, acc, "INBOX", "INBOX", "/", None)
        repo.store_bodies(c, [repo.NewBody(f"{i:064x}", 10, None, b"x" * 10) for i in range(3)])
        repo.add_placements(c, [{"folder_id": folder, "uid": i + 1, "body_sha256": f"{i:064x}", "flags": "",
                                 "base_flags": "", "modseq": 5, "internaldate": "2024-01-01T00:00:00+00:00",
                                 "size": 10} for i in range(3)])
        uow.commit()
        return folder


def _rows(store, folder: int) -> dict[int, tuple]:
    with UnitOfWork(store) as uow:
        return {r.uid: (r.flags, r.base_flags, r.modseq) for r in uow.connection.execute(
            select(_P.uid, _P.flags, _P.base_flags, _P.modseq).where(_P.folder_id == folder))}


def test_each_placement_gets_the_columns_it_names_and_no_other(store_url):
    store = open_store(store_url)
    try:
        folder = _setup(store)
        with UnitOfWork(store) as uow:
            local = repo.live_placements(uow.connection, folder)
        assert sorted(local) == [1, 2, 3]
        with UnitOfWork(store) as uow:  # meanwhile, a local change to the flags of UID 2
            uow.connection.execute(tables.placements.update().where(_P.id == local[2].id).values(flags="\\Seen"))
            uow.commit()
        with UnitOfWork(store) as uow:
            repo.update_placements(uow.connection, [
                (local[1].id, {"flags": "\\Flagged", "base_flags": "\\Flagged", "modseq": 9}),
                (local[2].id, {"base_flags": "\\Answered"}),  # names base_flags only
                (local[3].id, {"modseq": None}),
                (local[3].id, {}),  # nothing to write
            ])
            uow.commit()
        assert _rows(store, folder) == {1: ("\\Flagged", "\\Flagged", 9), 2: ("\\Seen", "\\Answered", 5),
                                        3: ("", "", None)}
    finally:
        store.dispose()
