"""A body that one sync is about to reference is never removed by another sync's orphan clean-up,
on SQLite and on a real PostgreSQL: two transactions in two threads, interleaved on purpose."""

from __future__ import annotations

import hashlib
import threading
import time

from sqlalchemy import select

from mailsync.store import repositories as repo
from mailsync.store.db import open_store
from mailsync.store.models import Body, Folder, Placement
from mailsync.store.uow import UnitOfWork


def _placement(folder_id: int, uid: int, sha: str, size: int) -> dict:
    return {"folder_id": folder_id, "uid": uid, "body_sha256": sha, "flags": "", "base_flags": "",
            "modseq": None, "internaldate": "2026-11-26T10:00:00+00:00", "size": size}


def test_orphan_clean_up_leaves_a_body_being_adopted(store_url):
    store = open_store(store_url)
    raw = b"Message-ID: <shared@example.org>\r\nSubject: shared\r\n\r\nthe same message in two accounts\r\n"
    sha = hashlib.sha256(raw).hexdigest()
    body = repo.NewBody(sha, len(raw), "<shared@example.org>", raw)
    with UnitOfWork(store) as uow:
        s = uow.session
        folders = []
        for name in ("a", "b"):
            acc_id = repo.account_id(s, name, "127.0.0.1", name)
            f = Folder(account_id=acc_id, name="INBOX", raw_name="INBOX", delimiter="/", fetched_uid=0, status="ok")
            s.add(f)
            s.flush()
            folders.append(f.id)
        repo.store_bodies(s, [body])
        repo.add_placements(s, [_placement(folders[0], 1, sha, len(raw))])
        uow.commit()
    with UnitOfWork(store) as uow:  # account a's copy is expunged: the body is now an orphan candidate
        uow.session.execute(Placement.__table__.delete())
        uow.commit()

    found = threading.Event()
    attempted = threading.Event()
    outcome: dict = {}

    def account_b() -> None:  # a batch of account b: the body is already stored, its placement follows
        try:
            with UnitOfWork(store) as uow:
                repo.store_bodies(uow.session, [body])
                found.set()
                attempted.wait(5)
                time.sleep(0.3)  # give the clean-up every chance to run in between
                repo.add_placements(uow.session, [_placement(folders[1], 7, sha, len(raw))])
                uow.commit()
            outcome["b"] = "committed"
        except Exception as exc:  # reported below
            outcome["b"] = repr(exc)

    def account_a() -> None:  # the end of a sync of account a: drop bodies nothing refers to
        found.wait(5)
        attempted.set()
        try:
            with UnitOfWork(store) as uow:
                outcome["deleted"] = repo.delete_orphan_bodies(uow.session, [sha])
                uow.commit()
        except Exception as exc:
            outcome["a"] = repr(exc)

    threads = [threading.Thread(target=account_b), threading.Thread(target=account_a)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcome.get("b") == "committed", outcome
    assert "a" not in outcome and outcome["deleted"] == 0, outcome
    with UnitOfWork(store) as uow:
        assert uow.session.scalar(select(Body.sha256).where(Body.sha256 == sha)) == sha
        assert repo.read_body(uow.session, sha) == raw
        assert [p.uid for p in uow.session.scalars(select(Placement))] == [7]
    # and once nothing refers to it, it does go
    with UnitOfWork(store) as uow:
        uow.session.execute(Placement.__table__.delete())
        assert repo.delete_orphan_bodies(uow.session, [sha]) == 1
        uow.commit()
    store.dispose()
