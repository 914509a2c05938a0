"""A sync with nothing to do ends at the folder listing (mailsync.sync.quick): without SQLAlchemy or
the engine, it records the run the engine would have recorded and reports the same summary; with
anything to do (a change on the server, a local change queued, a tombstone to expire, a new folder,
a changed config) it changes nothing and leaves the sync to the engine, on the same connection."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from helpers import (account_entry, client_for, export_snapshot, export_via_cli, nonempty, password_var, run_cli,
                     server_snapshot, write_config)
from mailsync.auth.login import open_connection
from mailsync.config.loader import load_config
from mailsync.sync.quick import quiet_sync

_IMPORT = re.compile(r"^import time:\s+-?\d+ \|\s+-?\d+ \|\s*(\S+)$", re.M)
_RUN_COLUMNS = ("account_id", "status", "folders", "new_messages", "flag_changes", "expunged", "bytes_fetched",
                "bodies_downloaded", "moves", "pushed", "conflicts", "error", "notes")


def _msg(i: int) -> bytes:
    return (f"From: a@example.org\r\nMessage-ID: <quiet{i}@example.org>\r\nSubject: {i}\r\n\r\n".encode()
            + f"line {i}\r\n".encode() * (5 + i))


def _runs(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute(f"SELECT {', '.join(_RUN_COLUMNS)}, started_at, finished_at FROM sync_runs "
                         "ORDER BY id").fetchall()


@pytest.fixture
def synced(tmp_path, imap_user, monkeypatch):
    """(config path, env, store file, user): an account synced once into a SQLite store."""
    imap_user.server.load(imap_user.name, [("INBOX", _msg(i)) for i in range(5)] + [("Work", _msg(7))])
    db = tmp_path / "store.db"
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{db}", [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}
    monkeypatch.setenv(password_var("acc"), imap_user.password)
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    return cfg, env, db, imap_user


def test_nothing_to_do_is_recorded_as_the_engine_records_it_without_loading_sqlalchemy(synced):
    cfg, env, db, user = synced
    engine_json = json.loads(run_cli("sync", "--json", "--account", "acc", config=cfg,
                                     env=dict(env, MAILSYNC_CRASH_AFTER="999"), check=True).stdout)  # the engine's
    proc = run_cli("sync", "--json", config=cfg, env=dict(env, PYTHONPROFILEIMPORTTIME="1"), check=True)
    modules = set(_IMPORT.findall(proc.stderr))
    assert "mailsync.sync.quick" in modules  # the import log was read
    assert not [m for m in modules if m.startswith(("sqlalchemy", "mailsync.sync.engine", "mailsync.store.db",
                                                   "mailsync.cli.crm_cmds", "mailsync.cli.watch_cmd"))]
    quick_json = json.loads(proc.stdout)
    for doc in (engine_json, quick_json):
        doc["accounts"][0].pop("seconds")
    assert quick_json == engine_json
    assert quick_json["accounts"][0]["commands"] == 1 and quick_json["accounts"][0]["folders"] >= 2

    *_first, engine_run, quick_run = _runs(db)
    n = len(_RUN_COLUMNS)
    assert quick_run[:n] == engine_run[:n]
    assert len(quick_run[n]) == len(engine_run[n]) and quick_run[n] <= quick_run[n + 1]  # same time format
    report = json.loads(run_cli("status", "--json", config=cfg, env=env, check=True).stdout)
    assert report["accounts"][0]["last_run"]["status"] == "ok"
    text = run_cli("sync", config=cfg, env=env, check=True).stderr
    assert re.fullmatch(r"acc: ok: \d+ folders, 0 new, 0 flag changes, 0 expunged, 0 moved, 0 local changes pushed, "
                        r"0\.0 MB in \d+\.\d\d s, 1 IMAP commands after login\n", text)


def _quiet(cfg: Path, db: Path):
    account = load_config(cfg).accounts[0]
    conn = open_connection(account)
    before = _runs(db)
    try:
        result = quiet_sync(db, account, lambda: conn)
        if result is None:
            assert _runs(db) == before  # declined: nothing written
            assert conn.list_folders()  # and the connection left open for the engine
        return result
    finally:
        conn.logout()


def test_with_anything_to_do_it_changes_nothing_and_the_engine_syncs(synced, tmp_path):
    cfg, env, db, user = synced
    assert _quiet(cfg, db) is not None

    c = client_for(user)  # a flag changed on the server
    c.select_folder("INBOX")
    c.add_flags([2], [b"\\Seen"])
    c.logout()
    assert _quiet(cfg, db) is None
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    assert export_snapshot(export_via_cli(cfg, env), "acc") == nonempty(server_snapshot(user))
    assert _quiet(cfg, db) is not None

    run_cli("flag", "acc", "INBOX", "3", "+\\Flagged", config=cfg, env=env, check=True)  # a local change queued
    assert _quiet(cfg, db) is None
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    assert "\\Flagged" in server_snapshot(user)["INBOX"]["messages"][3][0]  # pushed by the engine

    c = client_for(user)  # an expunge: its tombstone is kept one run, then expired by the engine
    c.select_folder("INBOX")
    c.delete_messages([1])
    c.expunge()
    c.create_folder("Fresh")  # and a new folder
    c.logout()
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    assert _quiet(cfg, db) is None  # the tombstone waits
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    assert _quiet(cfg, db) is not None
    assert export_snapshot(export_via_cli(cfg, env), "acc") == nonempty(server_snapshot(user))

    c = client_for(user)
    c.create_folder("Newer")
    c.logout()
    assert _quiet(cfg, db) is None
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)

    narrowed = write_config(tmp_path / "narrow.toml", f"sqlite:///{db}",
                            [account_entry(user, "acc", exclude=["Work"])])  # a folder leaves the selection
    assert _quiet(narrowed, db) is None
    moved = write_config(tmp_path / "moved.toml", f"sqlite:///{db}",
                         [account_entry(user, "acc", host="localhost")])  # the host changed
    assert _quiet(moved, db) is None
    assert _quiet(cfg, db) is not None


def test_the_engine_starts_from_the_listing_the_check_read_and_counts_it(synced):
    """With something to do, the check hands its listing to the engine on the same connection: the
    engine sends no second LIST, and the sync's command count includes the one LIST it came from. A
    handed listing is taken once, and not after any other command."""
    cfg, env, db, user = synced
    c = client_for(user)
    c.select_folder("INBOX")
    c.add_flags([2], [b"\\Flagged"])
    c.logout()
    account = load_config(cfg).accounts[0]
    conn = open_connection(account)
    try:
        assert quiet_sync(db, account, lambda: conn) is None
        sent = conn.commands
        listed = {f.raw_name: f.status for f in conn.list_folders(handed=True)}
        assert conn.commands == sent and listed["INBOX"]["MESSAGES"] == 5 and "Work" in listed
        conn.list_folders(handed=True)
        assert conn.commands == sent + 1  # taken once
        assert quiet_sync(db, account, lambda: conn) is None
        conn.noop()
        conn.list_folders(handed=True)
        assert conn.commands == sent + 4  # the check's LIST, the NOOP, a LIST of its own
    finally:
        conn.logout()
    doc = json.loads(run_cli("sync", "--json", config=cfg, env=env, check=True).stdout)["accounts"][0]
    # one LIST, then ENABLE QRESYNC, SELECT (QRESYNC) and UNSELECT or CLOSE at most: no second LIST
    assert doc["flag_changes"] == 1 and 3 <= doc["commands"] <= 4, doc
    assert export_snapshot(export_via_cli(cfg, env), "acc") == nonempty(server_snapshot(user))


def test_a_failed_login_is_reported_by_the_sync_as_before(synced):
    cfg, env, db, user = synced
    before = _runs(db)
    proc = run_cli("sync", config=cfg, env={password_var("acc"): "wrong"})
    assert proc.returncode == 1
    assert "acc: FAILED:" in proc.stderr and "1 of 1 account(s) failed: acc" in proc.stderr
    runs = _runs(db)
    assert len(runs) == len(before) + 1 and runs[-1][1] == "failed"  # the engine recorded the failed run


def test_the_early_login_uses_the_one_connection_it_dialed(tmp_path, imap_user):
    """The CLI dials the server before the IMAP modules load and logs in on that socket (TLS from
    the first byte here): a sync with nothing to do, and one with work for the engine, each open
    exactly one connection."""
    from mailsync.testing.proxy import TcpProxy

    imap_user.server.load(imap_user.name, [("INBOX", _msg(i)) for i in range(3)])
    with TcpProxy(imap_user.host, imap_user.imaps_port) as proxy:
        entry = dict(account_entry(imap_user, "acc"), port=proxy.port)
        cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/store.db", [entry])
        env = {password_var("acc"): imap_user.password}
        run_cli("sync", "--quiet", config=cfg, env=env, check=True)  # the first sync
        for change in (False, True):
            if change:
                imap_user.server.load(imap_user.name, [("INBOX", _msg(9))])
            before = proxy.accepted
            out = json.loads(run_cli("sync", "--json", config=cfg, env=env, check=True).stdout)
            assert out["accounts"][0]["new_messages"] == (1 if change else 0)
            assert proxy.accepted - before == 1
