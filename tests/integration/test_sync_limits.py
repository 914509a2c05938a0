"""The limits a user sets per account (issue 23), against Dovecot: max_age (only mail newer, by
UID SEARCH SINCE; what the store holds stays; `status` counts what was left out) and
max_download_rate (bytes a second, for metered links)."""

from __future__ import annotations

import time

from mailsync.cli.status import collect_status, render_status
from mailsync.config.loader import config_from_mapping
from mailsync.service import run_sync
from mailsync.store.db import open_store
from mailsync.sync.dry_run import dry_run

DAY = 86400


def message(i: int, size: int = 200) -> bytes:
    return (b"Message-ID: <lim%d@example.org>\r\nSubject: limit %d\r\n\r\n" % (i, i)) + b"x" * size + b"\r\n"


def _config(tmp_path, user, **keys):
    doc = {"store": {"url": f"sqlite:///{tmp_path}/s.db"},
           "account": [{"name": "acc", "host": user.host, "port": user.imaps_port, "username": user.name,
                        "password": user.password, "ca_file": str(user.ca_file), **keys}]}
    return config_from_mapping(doc, path=tmp_path / "c.toml")


def _subjects(store) -> set[int]:
    from sqlalchemy import select

    from mailsync.store import tables
    from mailsync.store.uow import UnitOfWork

    pl, fo = tables.placements.c, tables.folders.c
    with UnitOfWork(store) as uow:
        rows = uow.connection.execute(select(fo.name, pl.uid).join(tables.folders, fo.id == pl.folder_id)
                                      .where(pl.uid.isnot(None), pl.tombstone_run.is_(None))).all()
    return {(name, uid) for name, uid in rows}


def test_max_age_downloads_only_newer_mail_and_keeps_what_is_stored(tmp_path, imap_user):
    now = time.time()
    imap_user.server.load(imap_user.name, [("INBOX", message(i), "", now - (200 if i < 4 else 1) * DAY)
                                           for i in range(1, 10)]
                          + [("Archive", message(20 + i), "", now - 400 * DAY) for i in range(3)])
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        # the first sync without a limit holds everything
        assert run_sync(_config(tmp_path, imap_user), store, quiet=True).failed == []
        everything = _subjects(store)
        assert len([k for k in everything if k[0] in ("INBOX", "Archive")]) == 12
        # a new old message and a new young one arrive; with max_age only the young one comes,
        # and the old ones already stored stay
        imap_user.server.load(imap_user.name, [("INBOX", message(30), "", now - 300 * DAY),
                                               ("INBOX", message(31), "", now - 2 * DAY)])
        cfg = _config(tmp_path, imap_user, max_age="90d")
        outcome = run_sync(cfg, store, quiet=True)
        assert outcome.failed == [], outcome.results[0].error
        assert outcome.results[0].new_messages == 1
        after = _subjects(store)
        assert everything < after and len(after - everything) == 1
        inbox = next(f for f in collect_status(store, cfg)["accounts"][0]["folders"] if f["name"] == "INBOX")
        assert inbox["left_out"]["max_age"] == 1 and inbox["messages"] == 10
    finally:
        store.dispose()


def test_max_age_on_a_first_sync(tmp_path, imap_user):
    now = time.time()
    imap_user.server.load(imap_user.name, [("INBOX", message(i), "", now - (100 if i % 2 else 10) * DAY)
                                           for i in range(1, 11)])
    cfg = _config(tmp_path, imap_user, max_age="30d")
    store = open_store(cfg.store.url)
    try:
        outcome = run_sync(cfg, store, quiet=True)
        assert outcome.failed == [], outcome.results[0].error
        assert outcome.results[0].new_messages == 5
        report = collect_status(store, cfg)
        inbox = next(f for f in report["accounts"][0]["folders"] if f["name"] == "INBOX")
        assert inbox["messages"] == 5 and inbox["left_out"]["max_age"] == 5
        assert "5 older message(s) left out by max_age" in render_status(report)
        # a second sync downloads nothing more and still counts them
        again = run_sync(cfg, store, quiet=True)
        assert again.failed == [] and again.results[0].new_messages == 0 and again.results[0].bodies_downloaded == 0
    finally:
        store.dispose()


def test_max_download_rate_holds_the_average_rate(tmp_path, imap_user):
    """40 messages of 20 KB (800 KB) at 200 KB/s: at least (800 - 200 burst) / 200 = 3 s. A lower
    bound, which a slow machine only exceeds; without the limit the same sync takes well under 1 s."""
    imap_user.server.load(imap_user.name, [("INBOX", message(i, 20_000)) for i in range(40)])
    cfg = _config(tmp_path, imap_user, max_download_rate="200KB/s")
    store = open_store(cfg.store.url)
    try:
        t0 = time.monotonic()
        outcome = run_sync(cfg, store, quiet=True)
        took = time.monotonic() - t0
        assert outcome.failed == [], outcome.results[0].error
        assert outcome.results[0].new_messages == 40
        assert outcome.results[0].bytes_fetched >= 800_000
        assert took >= (outcome.results[0].bytes_fetched - 200_000) / 200_000
    finally:
        store.dispose()


def test_max_size_holds_larger_messages_by_their_headers_and_counts_them_apart_from_max_age(tmp_path, imap_user):
    now = time.time()
    imap_user.server.load(imap_user.name,
                          [("INBOX", message(i, 200), "", now - DAY) for i in range(6)]  # small, young
                          + [("INBOX", message(10 + i, 60_000), "", now - DAY) for i in range(3)]  # large, young
                          + [("INBOX", message(20 + i, 200), "", now - 300 * DAY) for i in range(2)]  # small, old
                          + [("INBOX", message(30, 60_000), "", now - 300 * DAY)])  # large, old
    cfg = _config(tmp_path, imap_user, max_size="50KB", max_age="90d")
    store = open_store(cfg.store.url)
    try:
        plan = dry_run(None, cfg.accounts[0])  # what the sync will do, no more
        assert (plan.new_messages, plan.downloads, plan.heads) == (9, 6, 3)
        outcome = run_sync(cfg, store, quiet=True)
        assert outcome.failed == [], outcome.results[0].error
        r = outcome.results[0]
        # the large ones have their rows, by their headers: no body of them crossed the network
        assert (r.new_messages, r.bodies_downloaded) == (9, 6) and r.bytes_fetched < 50_000
        report = collect_status(store, cfg)
        inbox = next(f for f in report["accounts"][0]["folders"] if f["name"] == "INBOX")
        assert inbox["messages"] == 9 and inbox["headers_only"] == 3
        # by max_size: the 3 held by their headers and the old large one; by max_age: the 2 old small ones
        assert inbox["left_out"] == {"max_age": 2, "max_size": 4}
        assert "4 message(s) larger than max_size left out (3 held by their headers alone" in render_status(report)
        # lifting max_size brings the bodies of the held ones; the old ones stay out (and the dry run says so first)
        lifted = _config(tmp_path, imap_user, max_age="90d")
        plan = dry_run(store, lifted.accounts[0])
        assert (plan.new_messages, plan.downloads, plan.completed) == (0, 3, 3)
        again = run_sync(lifted, store, quiet=True).results[0]
        assert again.ok, again.error
        assert (again.new_messages, again.bodies_downloaded) == (0, 3) and again.bytes_fetched > 180_000
        inbox = next(f for f in collect_status(store, lifted)["accounts"][0]["folders"] if f["name"] == "INBOX")
        assert inbox["messages"] == 9 and inbox["left_out"] == {"max_age": 3, "max_size": None}
        assert inbox["headers_only"] == 0
        assert _bodies_whole(store)
    finally:
        store.dispose()


def _bodies_whole(store) -> bool:
    """Every live placement names a whole message whose SHA-256 is its key."""
    import hashlib

    from sqlalchemy import select

    from mailsync.store import repositories as repo
    from mailsync.store import tables
    from mailsync.store.uow import UnitOfWork

    pl = tables.placements.c
    with UnitOfWork(store) as uow:
        shas = set(uow.connection.scalars(select(pl.body_sha256).where(pl.tombstone_run.is_(None))))
        return all(hashlib.sha256(repo.read_body(uow.connection, sha)).hexdigest() == sha for sha in shas)
