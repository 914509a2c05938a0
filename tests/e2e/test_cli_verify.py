"""`mailsync verify`: every stored message read back and checked against its SHA-256, on SQLite
(pack files) and PostgreSQL (rows); a damaged one is named, and --repair forgets it so that the
next sync downloads it again."""

from __future__ import annotations

import json

from sqlalchemy import select, update

from helpers import (account_entry, damage_stored_body, export_snapshot, export_via_cli, nonempty, password_var,
                     run_cli, server_snapshot, write_config)
from mailsync.store.db import open_store


def _msg(i: int) -> bytes:
    return (f"From: a@example.org\r\nMessage-ID: <v{i}@example.org>\r\nSubject: {i}\r\n\r\n".encode()
            + f"line {i}\r\n".encode() * (20 + i))


def test_verify_names_a_damaged_message_and_repair_gets_it_back(tmp_path, imap_user, store_url):
    imap_user.server.load(imap_user.name, [("INBOX", _msg(i)) for i in range(5)] + [("Work", _msg(9))])
    cfg = write_config(tmp_path / "c.toml", store_url, [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)

    ok = run_cli("verify", config=cfg, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "verified 6 message(s)" in ok.stderr and "0 problem(s)" in ok.stderr and ok.stdout == ""

    damage_stored_body(store_url, "<v3@example.org>")
    bad = run_cli("verify", config=cfg, env=env)
    assert bad.returncode == 1
    assert bad.stdout.startswith("acc/INBOX UID 4: ") and "corrupt" in bad.stdout
    assert len(bad.stdout.splitlines()) == 1
    assert "1 problem(s)" in bad.stderr and "mailsync verify --repair" in bad.stderr
    report = json.loads(run_cli("verify", "--json", config=cfg, env=env).stdout)
    assert [(p["folder"], p["uid"]) for p in report["problems"]] == [("INBOX", 4)] and report["messages"] == 6

    fixed = run_cli("verify", "--repair", config=cfg, env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert "forgot 1 message(s)" in fixed.stderr
    again = run_cli("sync", config=cfg, env=env, check=True)
    assert "1 new" in again.stderr
    assert run_cli("verify", config=cfg, env=env).returncode == 0
    assert export_snapshot(export_via_cli(cfg, env), "acc") == nonempty(server_snapshot(imap_user))


def test_verify_of_an_unknown_account_exits_2(tmp_path, imap_user):
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [account_entry(imap_user, "acc")])
    proc = run_cli("verify", "--account", "nope", config=cfg)
    assert proc.returncode == 2 and "no account named 'nope'" in proc.stderr


def test_verify_server_finds_a_wrong_uid_mapping_and_repair_re_reads_the_folder(tmp_path, imap_user, store_url):
    """The bodies are intact and the mapping is wrong (UIDs 1 and 2 swapped in the store): the body
    check passes, `verify --server` names both UIDs, and `--repair` re-reads the folder without
    downloading a body again, after which the store equals the server."""
    imap_user.server.load(imap_user.name, [_msg(i) for i in range(1, 5)])
    cfg = write_config(tmp_path / "c.toml", store_url, [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}
    run_cli("sync", config=cfg, env=env, check=True)
    store = open_store(store_url)
    try:
        from mailsync.store import tables

        pl = tables.placements.c
        with store.engine.begin() as conn:
            ids = dict(conn.execute(select(pl.uid, pl.id)).all())
            conn.execute(update(tables.placements).where(pl.id == ids[1]).values(uid=1000))
            conn.execute(update(tables.placements).where(pl.id == ids[2]).values(uid=1))
            conn.execute(update(tables.placements).where(pl.id == ids[1]).values(uid=2))
    finally:
        store.dispose()
    assert run_cli("verify", config=cfg, env=env).returncode == 0  # the bodies are fine
    proc = run_cli("verify", "--server", config=cfg, env=env)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("acc/INBOX UID 1:") and lines[1].startswith("acc/INBOX UID 2:")
    assert "<v2@example.org>" in lines[0] and "--repair" in proc.stderr
    proc = run_cli("verify", "--server", "--repair", "--json", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["accounts"][0]["repaired"] == ["INBOX"]
    last = json.loads(run_cli("status", "--json", config=cfg, env=env, check=True).stdout)["accounts"][0]["last_run"]
    assert last["status"] == "ok" and last["bytes_fetched"] < 2000  # headers only: no body downloaded again
    assert export_snapshot(export_via_cli(cfg, env), "acc") == nonempty(server_snapshot(imap_user))
    proc = run_cli("verify", "--server", config=cfg, env=env)
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
