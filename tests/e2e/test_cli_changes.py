"""Local changes through the CLI: queued by `mailsync flag|move|delete|append|mkdir|rename|rmdir`,
pushed by the next `mailsync sync`; bad arguments exit 2 with a message naming the problem."""

from __future__ import annotations

import json

from helpers import (account_entry, export_snapshot, export_via_cli, nonempty, password_var, run_cli,
                     server_snapshot, write_config)


def _msg(i: int) -> bytes:
    return f"From: a@example.org\r\nMessage-ID: <c{i}@example.org>\r\nSubject: {i}\r\n\r\nbody {i}\r\n".encode()


def test_cli_changes_are_pushed(tmp_path, imap_user):
    imap_user.server.load(imap_user.name, [("INBOX", _msg(i)) for i in range(4)])
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}
    run_cli("sync", config=cfg, env=env, check=True)
    eml = tmp_path / "new.eml"
    eml.write_bytes(_msg(99))
    for args in (["flag", "acc", "INBOX", "1", "+\\Flagged", "+$Label1"], ["move", "acc", "INBOX", "2", "Archive"],
                 ["delete", "acc", "INBOX", "3"], ["append", "acc", "Sent", str(eml), "--flag", "\\Seen"],
                 ["mkdir", "acc", "Kunden/Größe"], ["rename", "acc", "Kunden/Größe", "Kunden/Neu"]):
        proc = run_cli(*args, config=cfg, env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().isdigit() and "queued change" in proc.stderr
    queued = json.loads(run_cli("status", "--json", config=cfg, env=env, check=True).stdout)["accounts"][0]
    assert queued["local_changes"] == {"pending": 6, "failed": []}
    assert "6 local change(s) waiting" in run_cli("status", config=cfg, env=env, check=True).stdout
    proc = run_cli("sync", config=cfg, env=env, check=True)
    assert "6 local changes pushed" in proc.stderr
    server = server_snapshot(imap_user)
    assert export_snapshot(export_via_cli(cfg, env), "acc") == nonempty(server)
    assert "Kunden/Neu" in server and "Kunden/Größe" not in server
    assert server["INBOX"]["messages"][1][0] == ["$Label1", "\\Flagged"]
    assert len(server["Archive"]["messages"]) == 1 and len(server["Sent"]["messages"]) == 1
    status = json.loads(run_cli("status", "--json", config=cfg, env=env, check=True).stdout)
    assert status["accounts"][0]["last_run"]["status"] == "ok"
    assert status["accounts"][0]["local_changes"] == {"pending": 0, "failed": []}


def test_cli_change_errors_exit_2(tmp_path, imap_user):
    imap_user.server.load(imap_user.name, [("INBOX", _msg(1))])
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}
    run_cli("sync", config=cfg, env=env, check=True)
    cases = [
        (["flag", "acc", "INBOX", "77", "+\\Seen"], "no message with UID 77"),
        (["flag", "acc", "Nope", "1", "+\\Seen"], "has no folder 'Nope'"),
        (["flag", "other", "INBOX", "1", "+\\Seen"], "no account 'other'"),
        (["flag", "acc", "INBOX", "1", "Seen"], "must start with + (add) or - (remove)"),
        (["move", "acc", "INBOX", "1", "INBOX"], "cannot move a message to the folder it is in"),
        (["rmdir", "acc", "INBOX"], "INBOX cannot be deleted"),
        (["flag", "acc", "INBOX", "zero", "+\\Seen"], "is not a valid integer"),
        (["label", "acc", "INBOX", "1", "+Work"], "has no Gmail labels in the store"),  # Dovecot is not Gmail
        (["label", "acc", "INBOX", "1", "Work"], "must start with + (add) or - (remove)"),
    ]
    for args, message in cases:
        proc = run_cli(*args, config=cfg, env=env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
