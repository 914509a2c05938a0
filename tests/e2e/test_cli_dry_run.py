"""`mailsync sync --dry-run` through the CLI: the plan as text and as JSON, the same figures as the
`sync --json` that follows, the store's files untouched, no store created where there is none, and a
failing account reported as `sync` reports it."""

from __future__ import annotations

import hashlib
import json

from helpers import account_entry, client_for, password_var, run_cli, write_config


def _msg(i: int, pad: int = 0) -> bytes:
    return (f"From: a@example.org\r\nMessage-ID: <d{i}@example.org>\r\nSubject: {i}\r\n\r\nbody {i}\r\n"
            + "x" * pad + "\r\n").encode()


def _files(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def test_dry_run_text_and_json_match_the_sync_that_follows(tmp_path, imap_user):
    imap_user.server.load(imap_user.name, [("INBOX", _msg(i)) for i in range(1, 5)] + [("Archive", _msg(9))])
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{data}/s.db", [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}
    run_cli("sync", "-q", config=cfg, env=env, check=True)
    c = client_for(imap_user)
    c.append("INBOX", _msg(20, pad=3000))
    c.select_folder("INBOX")
    c.add_flags([2], [b"\\Flagged"])
    c.delete_messages([3])
    c.expunge()
    c.logout()
    run_cli("flag", "acc", "INBOX", "1", "+\\Seen", config=cfg, env=env, check=True)
    run_cli("move", "acc", "INBOX", "4", "Archive", config=cfg, env=env, check=True)
    files = _files(data)

    text = run_cli("sync", "--dry-run", config=cfg, env=env)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "acc: a sync would:" in out and "1 new (1 to download" in out
    assert "local change #" in out and "(move): move UID 4 from 'INBOX' to 'Archive': sends UID MOVE 4 Archive" in out
    inbox = next(line for line in out.splitlines() if line.startswith("  'INBOX'"))
    assert "download 1 (" in inbox and ": 5" in inbox  # the new message is UID 5
    assert "remove 1 expunged on the server: 3" in inbox
    assert "take the server's flags for 1" in inbox and "push flags of 1: UID 1 +\\Seen" in inbox

    proc = run_cli("sync", "--dry-run", "--json", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["dry_run"] is True and plan["ok"] is True
    (acc,) = plan["accounts"]
    folders = {f["folder"]: f for f in acc["folder_plans"]}
    size = len(_msg(20, pad=3000))
    assert folders["INBOX"]["downloads"] == [{"uid": 5, "size": size}] and acc["download_bytes"] == size
    assert folders["INBOX"]["flag_pushes"] == [{"uid": 1, "add": ["\\Seen"], "remove": []}]
    assert [(o["kind"], o["outcome"]) for o in acc["local_changes"]] == [("move", "done")]
    assert _files(data) == files, "the dry run changed the store's files"

    synced = json.loads(run_cli("sync", "--json", config=cfg, env=env, check=True).stdout)["accounts"][0]
    for key in ("folders", "new_messages", "flag_changes", "expunged", "moved", "pushed", "conflicts"):
        assert acc[key] == synced[key], key
    assert acc["downloads"] == synced["bodies_downloaded"] == 1

    after = json.loads(run_cli("sync", "--dry-run", "--json", config=cfg, env=env, check=True).stdout)["accounts"][0]
    assert (after["new_messages"], after["pushed"], after["expunged"], after["local_changes"]) == (0, 0, 0, [])
    # INBOX is read again (its HIGHESTMODSEQ moved with our own flag push, after the SELECT that the
    # checkpoint comes from), and finds nothing to do
    assert not any(f["downloads"] or f["linked"] or f["expunged"] or f["flag_pushes"] or f["flag_changes"]
                   for f in after["folder_plans"]), after["folder_plans"]


def test_dry_run_without_a_store_creates_none(tmp_path, imap_user):
    imap_user.server.load(imap_user.name, [("INBOX", _msg(i, pad=100)) for i in range(3)])
    db = tmp_path / "data" / "s.db"
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{db}", [account_entry(imap_user, "acc")])
    proc = run_cli("sync", "--dry-run", "--json", config=cfg, env={password_var("acc"): imap_user.password})
    assert proc.returncode == 0, proc.stderr
    (acc,) = json.loads(proc.stdout)["accounts"]
    assert acc["downloads"] == 3 and acc["download_bytes"] == sum(len(_msg(i, pad=100)) for i in range(3))
    assert {f["folder"]: f["mode"] for f in acc["folder_plans"]}["INBOX"] == "whole"
    assert not (tmp_path / "data").exists()


def test_dry_run_reports_a_failing_account_and_plans_the_others(tmp_path, imap_user):
    imap_user.server.load(imap_user.name, [("INBOX", _msg(1))])
    good, bad = account_entry(imap_user, "good"), account_entry(imap_user, "bad")
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [good, bad])
    env = {password_var("good"): imap_user.password, password_var("bad"): "wrong"}
    proc = run_cli("sync", "--dry-run", config=cfg, env=env)
    assert proc.returncode == 1
    assert "good: a sync would: " in proc.stdout and "bad: FAILED: " in proc.stdout
    assert "1 of 2 account(s) failed: bad" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("sync", "--dry-run", "--json", config=cfg, env=env)
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["ok"] is False and report["failed"] == ["bad"]


def test_dry_run_of_an_empty_store_file_says_what_sync_says(tmp_path, imap_user):
    db = tmp_path / "s.db"
    db.write_bytes(b"")
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{db}", [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}
    dry = run_cli("sync", "--dry-run", config=cfg, env=env)
    real = run_cli("sync", config=cfg, env=env)
    assert dry.returncode == real.returncode != 0
    assert "is empty (0 bytes)" in dry.stderr and "is empty (0 bytes)" in real.stderr
    assert db.read_bytes() == b""
