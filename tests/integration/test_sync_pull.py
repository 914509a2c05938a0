"""Server -> store sync against the real Dovecot, on SQLite and on PostgreSQL.

The yardstick is a second IMAP client: after a sync, `mailsync export` must equal what that client
reads (folders, UIDVALIDITY, UIDs, flags, sizes, SHA-256 of bodies).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from helpers import (account_entry, client_for, export_snapshot, export_via_cli, password_var, run_cli,
                     nonempty, server_snapshot, write_config)
from mailsync.testing.corpus import load_into, read_corpus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus():
    return read_corpus(REPO / "fixtures" / "corpus")


def _setup(tmp_path, user, store_url, **extra):
    cfg = write_config(tmp_path / "config.toml", store_url, [account_entry(user, "acc", **extra)])
    return cfg, {password_var("acc"): user.password}


def _assert_bodies_read_back(store_url: str, shas: set[str]) -> None:
    """The stored bytes themselves, not only their keys: every body reads back (from its pack file
    on SQLite, from the database on PostgreSQL) with the SHA-256 the server's copy has."""
    from mailsync.store import repositories as repo
    from mailsync.store.db import open_store
    from mailsync.store.uow import UnitOfWork

    store = open_store(store_url)
    try:
        with UnitOfWork(store) as uow:
            for sha in shas:
                assert hashlib.sha256(repo.read_body(uow.session, sha)).hexdigest() == sha
        assert (store.packs is not None) == store_url.startswith("sqlite")
    finally:
        store.dispose()


def test_export_equals_server_after_first_sync(tmp_path, imap_user, corpus, store_url):
    load_into(imap_user.server, imap_user.name, corpus)
    cfg, env = _setup(tmp_path, imap_user, store_url)
    proc = run_cli("sync", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "acc: ok" in proc.stderr
    server = server_snapshot(imap_user)
    expected = nonempty(server)
    got = export_snapshot(export_via_cli(cfg, env), "acc")
    assert got == expected
    _assert_bodies_read_back(store_url, {m[2] for f in got.values() for m in f["messages"].values()})
    status = json.loads(run_cli("status", "--json", config=cfg, env=env, check=True).stdout)
    assert {f["name"] for f in status["accounts"][0]["folders"]} == set(server)  # empty folders too
    # the corpus really exercised what it should: non-ASCII folder names, keywords, many folders
    assert any(not name.isascii() for name in got)
    assert sum(len(f["messages"]) for f in got.values()) == len(corpus)
    assert any("$Forwarded" in m[0] or "$Label1" in m[0] for f in got.values() for m in f["messages"].values())

    # A second sync with nothing changed downloads nothing and changes nothing.
    proc = run_cli("sync", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "0 new, 0 flag changes, 0 expunged" in proc.stderr
    assert export_snapshot(export_via_cli(cfg, env), "acc") == expected


def test_first_sync_of_messages_larger_than_a_batch(tmp_path, imap_user, store_url):
    """Rule D4 with batches that end by count (batch_size 2), by bytes, and a message larger than
    a whole batch (16 MiB): each is stored exactly, next to the small ones around it."""
    import os

    from mailsync.sync.download import BATCH_BYTES

    def message(i: int, size: int) -> bytes:
        head = f"Message-ID: <big{i}@example.org>\r\nSubject: part {i}\r\n\r\n".encode()
        line = os.urandom(max(1, size // 2)).hex().encode()[:76] + b"\r\n"
        return head + line * max(1, (size - len(head)) // len(line))

    sizes = [2000, 300, BATCH_BYTES + (1 << 20), 5000, BATCH_BYTES // 2, BATCH_BYTES // 2, 700]
    client = client_for(imap_user)
    try:
        for i, size in enumerate(sizes):
            client.append("INBOX", message(i, size), flags=("\\Seen",) if i % 2 else ())
    finally:
        client.logout()
    cfg, env = _setup(tmp_path, imap_user, store_url, batch_size=2)
    proc = run_cli("sync", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    server = nonempty(server_snapshot(imap_user))
    got = export_snapshot(export_via_cli(cfg, env), "acc")
    assert got == server
    assert sorted(m[1] for m in got["INBOX"]["messages"].values()) == sorted(
        m[1] for m in server["INBOX"]["messages"].values())
    assert max(m[1] for m in got["INBOX"]["messages"].values()) > BATCH_BYTES
    _assert_bodies_read_back(store_url, {m[2] for f in got.values() for m in f["messages"].values()})


def test_changes_by_another_client_are_picked_up(tmp_path, imap_user, corpus, store_url):
    inbox = [m for m in corpus if m.folder == "INBOX"]
    load_into(imap_user.server, imap_user.name, inbox[:20] + [m for m in corpus if m.folder != "INBOX"][:40])
    cfg, env = _setup(tmp_path, imap_user, store_url)
    run_cli("sync", config=cfg, env=env, check=True)

    c = client_for(imap_user)
    c.select_folder("INBOX")
    uids = sorted(c.search("ALL"))
    assert len(uids) >= 6
    c.add_flags(uids[:2], [b"\\Flagged", b"$Important"])
    c.remove_flags(uids[2:3], [b"\\Seen"])
    c.add_flags(uids[3:5], [b"\\Seen"])
    c.delete_messages(uids[5:6])
    c.uid_expunge(uids[5:6])
    c.append("INBOX", b"From: x@example.org\r\nMessage-ID: <new-1@example.org>\r\nSubject: new\r\n\r\nhello\r\n",
             flags=[b"\\Seen"])
    c.create_folder("Fresh")
    c.append("Fresh", b"From: y@example.org\r\nSubject: fresh\r\n\r\nin a new folder\r\n")
    c.logout()

    proc = run_cli("sync", config=cfg, env=env, check=True)
    assert "2 new" in proc.stderr and "1 expunged" in proc.stderr
    assert export_snapshot(export_via_cli(cfg, env), "acc") == nonempty(server_snapshot(imap_user))

    # A folder deleted on the server disappears from the store.
    c = client_for(imap_user)
    c.delete_folder("Fresh")
    c.logout()
    run_cli("sync", config=cfg, env=env, check=True)
    snap = export_snapshot(export_via_cli(cfg, env), "acc")
    assert "Fresh" not in snap
    assert snap == nonempty(server_snapshot(imap_user))


def test_export_filters_and_format(tmp_path, imap_user, corpus, store_url):
    load_into(imap_user.server, imap_user.name, corpus[:30])
    cfg, env = _setup(tmp_path, imap_user, store_url)
    run_cli("sync", config=cfg, env=env, check=True)
    rows = export_via_cli(cfg, env, "--folder", "INBOX")
    assert rows and all(r["folder"] == "INBOX" for r in rows)
    r = rows[0]
    assert set(r) == {"account", "folder", "uidvalidity", "uid", "message_id", "flags", "size", "internaldate",
                      "sha256"}
    assert r["flags"] == sorted(r["flags"])
    assert r["internaldate"][:2] in ("19", "20") and "T" in r["internaldate"]
    # internaldate keeps the offset: ISO 8601 with a zone
    assert r["internaldate"][-6] in "+-"
    # sha256 really is the hash of the raw message on the server
    c = client_for(imap_user)
    c.select_folder("INBOX", readonly=True)
    body = c.fetch([r["uid"]], ["BODY.PEEK[]"])[r["uid"]][b"BODY[]"]
    c.logout()
    assert hashlib.sha256(body).hexdigest() == r["sha256"] and len(body) == r["size"]
    assert export_via_cli(cfg, env, "--account", "acc") == export_via_cli(cfg, env)
    bad = run_cli("export", "messages", "--account", "nope", config=cfg, env=env)
    assert bad.returncode == 2 and "no account named 'nope'" in bad.stderr


def test_status_json_reports_folders_and_checkpoints(tmp_path, imap_user, corpus, store_url):
    load_into(imap_user.server, imap_user.name, corpus[:40])
    cfg, env = _setup(tmp_path, imap_user, store_url)
    run_cli("sync", config=cfg, env=env, check=True)
    proc = run_cli("status", "--json", config=cfg, env=env, check=True)
    report = json.loads(proc.stdout)
    (acc,) = report["accounts"]
    assert acc["name"] == "acc" and acc["last_run"]["status"] == "ok" and acc["last_success"]
    snap = server_snapshot(imap_user)
    assert {f["name"] for f in acc["folders"]} == set(snap)
    for f in acc["folders"]:
        assert f["messages"] == len(snap[f["name"]]["messages"])
        assert f["uidvalidity"] == snap[f["name"]]["uidvalidity"]
        assert f["uidnext"] is not None and f["uidnext"] > max(snap[f["name"]]["messages"], default=0)
    sent = [f for f in acc["folders"] if f["name"] == "Sent"]
    assert sent and sent[0]["special_use"] == "\\Sent"
    human = run_cli("status", config=cfg, env=env, check=True).stdout
    assert "acc:" in human and "INBOX" in human
    # where the bodies are: pack files beside a SQLite database, the database itself on PostgreSQL
    from sqlalchemy.engine import make_url

    store = report["store"]
    assert store["url"] == make_url(store_url).render_as_string(hide_password=True)  # never a password
    if store_url.startswith("sqlite"):
        packs = store["packs"]
        assert store["bodies"] == "packs" and packs["files"] == 1 and Path(packs["folder"]).is_dir()
        assert 0 < packs["live_bytes"] <= packs["bytes"]
        assert packs["live_bytes"] >= sum(f["messages"] for f in acc["folders"]) * 100
        assert "pack file(s)" in human
    else:
        assert store["bodies"] == "database" and "packs" not in store


def test_export_into_a_pipe_closed_early_exits_0(tmp_path, imap_user, corpus):
    """`mailsync export messages | head -1`: the reader leaving early is not an error (no traceback,
    no message, exit 0), however much output was still to come."""
    import os
    import subprocess
    import sys

    load_into(imap_user.server, imap_user.name, corpus)
    cfg, env = _setup(tmp_path, imap_user, f"sqlite:///{tmp_path}/s.db")
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    full_env = dict(os.environ, **env, PYTHONPATH=str(REPO))
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "mailsync", "--config", str(cfg), "export", "messages"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
        first = proc.stdout.readline()
        proc.stdout.close()  # more than a pipe's 64 KB is still to come: the next writes fail with EPIPE
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 0, err
        assert err == b""
        assert json.loads(first)["account"] == "acc"


def test_a_crash_between_pack_write_and_commit_costs_only_a_download(tmp_path, imap_user):
    """Rule C3: a first sync writes pack batches as they fill and commits their rows later. Killed
    in between (crash point "packs written"), the store holds no row for them, only dead bytes in
    the pack; the next sync downloads them again and ends with every message exactly once."""
    import os

    from mailsync.store.db import open_store

    client = client_for(imap_user)
    try:
        for i in range(3):  # 18 MB: two pack batches (16 MB each at most) in one commit
            head = f"Message-ID: <crash{i}@example.org>\r\nSubject: part {i}\r\n\r\n".encode()
            client.append("INBOX", head + (os.urandom(3 << 20).hex().encode()[:(6 << 20)] + b"\r\n"))
    finally:
        client.logout()
    store_url = f"sqlite:///{tmp_path}/s.db"
    cfg, env = _setup(tmp_path, imap_user, store_url)
    for n in range(1, 30):
        crashed = run_cli("sync", "--quiet", config=cfg, env=dict(env, MAILSYNC_CRASH_AFTER=str(n)))
        assert crashed.returncode == 99, crashed.stderr  # an earlier crash point leaves it a first sync
        if "(packs written)" in crashed.stderr:
            break
    else:
        raise AssertionError("the crash point between pack write and commit was never reached")
    assert export_via_cli(cfg, env) == []  # no row without its commit
    store = open_store(store_url)
    try:
        assert len(list(store.packs.records(1))) == 3  # the bytes are there, dead
    finally:
        store.dispose()

    proc = run_cli("sync", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "3 new" in proc.stderr
    got = export_snapshot(export_via_cli(cfg, env), "acc")  # asserts no duplicate (folder, uid)
    assert got == nonempty(server_snapshot(imap_user))
    _assert_bodies_read_back(store_url, {m[2] for f in got.values() for m in f["messages"].values()})
