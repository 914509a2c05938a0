"""`mailsync sync` as users run it imports only what a sync needs: not SQLAlchemy's ORM (about
0.07 s of start-up before the first FETCH), not the CRM layer; the work done is all there. A sync
that has local changes to push uses the ORM where it needs objects, and still works."""

from __future__ import annotations

import json
import re

from helpers import (account_entry, export_snapshot, export_via_cli, nonempty, password_var, run_cli,
                     server_snapshot, write_config)

_IMPORT = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.M)


def _msg(i: int) -> bytes:
    return (f"From: a@example.org\r\nMessage-ID: <imp{i}@example.org>\r\nSubject: {i}\r\n\r\n".encode()
            + f"line {i}\r\n".encode() * (10 + i))


def _sync_imports(cfg, env) -> set[str]:
    proc = run_cli("sync", "--quiet", config=cfg, env=dict(env, PYTHONPROFILEIMPORTTIME="1"), check=True)
    modules = set(_IMPORT.findall(proc.stderr))
    assert "mailsync.sync.engine" in modules and "sqlalchemy" in modules  # the import log was read
    return modules


def test_first_and_no_change_sync_do_not_import_the_orm(tmp_path, imap_user, store_url):
    imap_user.server.load(imap_user.name, [("INBOX", _msg(i)) for i in range(6)] + [("Work", _msg(9))])
    cfg = write_config(tmp_path / "c.toml", store_url, [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}

    for run in ("first", "no change"):
        modules = _sync_imports(cfg, env)
        orm = sorted(m for m in modules if m.startswith(("sqlalchemy.orm", "mailsync.store.models", "mailsync.crm")))
        if run == "first" and store_url.startswith("postgresql"):
            # a new PostgreSQL store is created from the models (the CRM layer's tables are declared
            # there); a new SQLite store from the schema file generated from them
            assert "mailsync.crm.models" in orm
        else:
            assert orm == [], f"{run} sync imported {orm}"
        assert export_snapshot(export_via_cli(cfg, env), "acc") == nonempty(server_snapshot(imap_user))
    report = json.loads(run_cli("status", "--json", config=cfg, env=env, check=True).stdout)
    assert report["accounts"][0]["last_run"]["status"] == "ok"
    assert report["accounts"][0]["last_run"]["new_messages"] == 0  # the second run found nothing new


def test_a_sync_with_local_changes_uses_the_orm_and_pushes_them(tmp_path, imap_user, store_url):
    imap_user.server.load(imap_user.name, [("INBOX", _msg(i)) for i in range(3)])
    cfg = write_config(tmp_path / "c.toml", store_url, [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    run_cli("flag", "acc", "INBOX", "2", "+\\Flagged", config=cfg, env=env, check=True)

    modules = _sync_imports(cfg, env)
    assert "sqlalchemy.orm" in modules  # the flag merge works on mapped placements
    server = server_snapshot(imap_user)
    flags, _size, _sha = server["INBOX"]["messages"][2]
    assert "\\Flagged" in flags
    assert export_snapshot(export_via_cli(cfg, env), "acc") == nonempty(server)
