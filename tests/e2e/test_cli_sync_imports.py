"""`mailsync sync` as users run it imports only what a sync needs: not SQLAlchemy's ORM (about
0.07 s of start-up before the first FETCH), not the CRM layer; the work done is all there. That
holds for a first sync, a sync with nothing to do, and a sync that pushes a local change and merges
the server's."""

from __future__ import annotations

import json
import re

from helpers import (account_entry, client_for, export_snapshot, export_via_cli, nonempty, password_var, run_cli,
                     server_snapshot, write_config)

_IMPORT = re.compile(r"^import time:\s+-?\d+ \|\s+-?\d+ \|\s*(\S+)$", re.M)  # self time can read negative on a busy machine


def _msg(i: int) -> bytes:
    return (f"From: a@example.org\r\nMessage-ID: <imp{i}@example.org>\r\nSubject: {i}\r\n\r\n".encode()
            + f"line {i}\r\n".encode() * (10 + i))


def _sync_imports(cfg, env) -> set[str]:
    proc = run_cli("sync", "--quiet", config=cfg, env=dict(env, PYTHONPROFILEIMPORTTIME="1"), check=True)
    modules = set(_IMPORT.findall(proc.stderr))
    assert "mailsync.cli.main" in modules  # the import log was read
    return modules


def test_first_and_no_change_sync_do_not_import_the_orm(tmp_path, imap_user, store_url):
    imap_user.server.load(imap_user.name, [("INBOX", _msg(i)) for i in range(6)] + [("Work", _msg(9))])
    cfg = write_config(tmp_path / "c.toml", store_url, [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}

    for run in ("first", "no change"):
        modules = _sync_imports(cfg, env)
        # a first sync runs the engine; a sync with nothing to do into a SQLite store ends at the
        # folder listing, without SQLAlchemy (mailsync.sync.quick, tests/e2e/test_cli_quiet_sync.py)
        quiet = run == "no change" and store_url.startswith("sqlite")
        assert ("mailsync.sync.engine" in modules) is not quiet and ("sqlalchemy" in modules) is not quiet
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


def test_a_sync_that_pushes_and_merges_changes_does_not_import_the_orm(tmp_path, imap_user, store_url):
    imap_user.server.load(imap_user.name, [("INBOX", _msg(i)) for i in range(4)])
    cfg = write_config(tmp_path / "c.toml", store_url, [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    run_cli("flag", "acc", "INBOX", "2", "+\\Flagged", config=cfg, env=env, check=True)  # a local change
    c = client_for(imap_user)  # and the server's: a flag, an expunge, a new message
    c.select_folder("INBOX")
    c.add_flags([3], [b"\\Seen"])
    c.delete_messages([4])
    c.expunge()
    c.append("INBOX", _msg(7))
    c.logout()

    modules = _sync_imports(cfg, env)
    assert "mailsync.sync.engine" in modules
    assert sorted(m for m in modules if m.startswith(("sqlalchemy.orm", "mailsync.store.models"))) == []
    server = server_snapshot(imap_user)
    flags, _size, _sha = server["INBOX"]["messages"][2]
    assert "\\Flagged" in flags  # pushed
    assert "\\Seen" in server["INBOX"]["messages"][3][0] and 4 not in server["INBOX"]["messages"]
    assert export_snapshot(export_via_cli(cfg, env), "acc") == nonempty(server)  # merged
    report = json.loads(run_cli("status", "--json", config=cfg, env=env, check=True).stdout)
    last = report["accounts"][0]["last_run"]
    assert (last["status"], last["new_messages"], last["expunged"]) == ("ok", 1, 1)
