"""`mailsync check` and `mailsync status` against the test Dovecot, through the CLI: what they report,
their exit codes, and that neither creates a store."""

from __future__ import annotations

import json
import stat

from helpers import account_entry, password_var, run_cli, write_config


def _msg(i: int, pad: int = 0) -> bytes:
    return (f"From: a@example.org\r\nMessage-ID: <c{i}@example.org>\r\nSubject: {i}\r\n\r\nbody {i}\r\n"
            + "x" * pad + "\r\n").encode()


def test_check_reports_login_capabilities_and_selected_folders_and_creates_nothing(tmp_path, imap_user):
    raws = [("INBOX", _msg(1, 1000)), ("INBOX", _msg(2, 500)), ("Lists/python", _msg(3)), ("Junk", _msg(4))]
    imap_user.server.load(imap_user.name, raws)
    db = tmp_path / "data" / "s.db"
    entry = account_entry(imap_user, "acc", exclude=["Junk", "Trash"])
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{db}", [entry])
    proc = run_cli("check", "--json", config=cfg, env={password_var("acc"): imap_user.password})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    (acc,) = report["accounts"]
    steps = {s["step"]: s for s in acc["steps"]}
    assert steps["secret password"]["ok"] and imap_user.password not in proc.stdout
    assert steps["connect and log in"]["ok"] and "implicit TLS" in steps["connect and log in"]["detail"]
    caps = acc["capabilities"]
    assert caps["CONDSTORE"] and caps["QRESYNC"] and caps["MOVE"] and caps["UIDPLUS"] and caps["LIST-STATUS"]
    assert caps["X-GM-EXT-1"] is False
    folders = {f["name"]: f for f in acc["folders"]}
    assert "Junk" not in folders and "Trash" not in folders  # excluded
    assert {"INBOX", "Lists/python", "Sent", "Drafts", "Archive"} <= set(folders)
    assert folders["INBOX"]["messages"] == 2 and folders["Lists/python"]["messages"] == 1
    inbox_bytes = len(raws[0][1]) + len(raws[1][1])
    assert folders["INBOX"]["bytes"] == inbox_bytes  # STATUS SIZE: the messages' RFC822.SIZE
    assert report["store"]["exists"] is False
    assert not db.exists() and not db.parent.exists()  # check created no store, not even its folder

    text = run_cli("check", config=cfg, env={password_var("acc"): imap_user.password})
    assert text.returncode == 0
    assert "acc: OK" in text.stdout and "folder INBOX: 2 messages" in text.stdout
    assert "not offered: X-GM-EXT-1" in text.stdout and not db.exists()


def test_check_exits_1_when_one_account_fails_and_still_checks_the_others(tmp_path, imap_user):
    good = account_entry(imap_user, "good")
    bad_password = account_entry(imap_user, "badpw")
    no_secret = account_entry(imap_user, "nosecret", password="env:MAILSYNC_TEST_UNSET_VARIABLE")
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [good, bad_password, no_secret])
    env = {password_var("good"): imap_user.password, password_var("badpw"): "wrong"}
    proc = run_cli("check", "--json", config=cfg, env=env)
    assert proc.returncode == 1
    by_name = {a["account"]: a for a in json.loads(proc.stdout)["accounts"]}
    assert by_name["good"]["ok"] is True
    assert by_name["badpw"]["ok"] is False
    login = [s for s in by_name["badpw"]["steps"] if s["step"] == "connect and log in"][0]
    assert not login["ok"] and "refused the login" in login["detail"]
    assert by_name["nosecret"]["ok"] is False
    secret = by_name["nosecret"]["steps"][0]
    assert secret["step"] == "secret password" and not secret["ok"]
    assert "MAILSYNC_TEST_UNSET_VARIABLE" in secret["detail"]
    assert "badpw" in proc.stderr and "nosecret" in proc.stderr and "good," not in proc.stderr
    # --account narrows it to the one that works: exit 0
    only = run_cli("check", "--account", "good", config=cfg, env=env)
    assert only.returncode == 0 and "good: OK" in only.stdout and "badpw" not in only.stdout
    assert not (tmp_path / "s.db").exists()


def test_check_names_a_folder_pattern_that_selects_nothing(tmp_path, imap_user):
    entry = account_entry(imap_user, "acc", folders=["NoSuchFolder*"])
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [entry])
    proc = run_cli("check", config=cfg, env={password_var("acc"): imap_user.password})
    assert proc.returncode == 1
    assert "select none of the" in proc.stdout and "NoSuchFolder*" in proc.stdout and "INBOX" in proc.stdout


def test_status_creates_no_store(tmp_path, imap_user):
    db = tmp_path / "data" / "s.db"
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{db}", [account_entry(imap_user, "acc")])
    proc = run_cli("status", "--json", config=cfg)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["accounts"][0]["name"] == "acc" and report["accounts"][0]["last_run"] is None
    assert report["store"]["exists"] is False
    assert not db.exists() and not db.parent.exists()
    text = run_cli("status", config=cfg)
    assert text.returncode == 0 and "never synced" in text.stdout and "not created yet" in text.stdout
    assert not db.exists()


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_store_is_private_and_looser_modes_are_reported(tmp_path, imap_user):
    imap_user.server.load(imap_user.name, [("INBOX", _msg(1))])
    db = tmp_path / "data" / "nested" / "s.db"
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{db}", [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}
    # `mailsync init` writes the config; the store appears with the first sync
    init_cfg = tmp_path / "init" / "config.toml"
    assert run_cli("init", config=init_cfg).returncode == 0
    assert _mode(init_cfg) == 0o600
    run_cli("sync", "-q", config=cfg, env=env, check=True)
    assert _mode(db) == 0o600
    assert _mode(db.parent) == 0o700 and _mode(db.parent.parent) == 0o700  # folders it made
    for side in (db.with_name("s.db-wal"), db.with_name("s.db-shm")):
        if side.exists():
            assert _mode(side) & 0o077 == 0
    report = json.loads(run_cli("status", "--json", config=cfg, check=True).stdout)
    assert report["store"]["mode_problems"] == []

    db.chmod(0o644)
    db.parent.chmod(0o755)
    report = json.loads(run_cli("status", "--json", config=cfg, check=True).stdout)
    problems = report["store"]["mode_problems"]
    assert any(str(db) in p and "0644" in p and "chmod 600" in p for p in problems)
    assert any(str(db.parent) in p and "0755" in p and "chmod 700" in p for p in problems)
    checked = run_cli("check", config=cfg, env=env)
    assert checked.returncode == 0  # a warning, not a failed account
    assert f"chmod 600 {db}" in checked.stdout and "WARNING" in checked.stdout


def test_check_connects_with_each_tls_policy(tmp_path, imap_user):
    entries = [account_entry(imap_user, "st", tls="starttls"), account_entry(imap_user, "plain", tls="none")]
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", entries)
    env = {password_var("st"): imap_user.password, password_var("plain"): imap_user.password}
    proc = run_cli("check", "--json", config=cfg, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    details = {a["account"]: [s["detail"] for s in a["steps"] if s["step"] == "connect and log in"][0]
               for a in json.loads(proc.stdout)["accounts"]}
    assert f":{imap_user.imap_port} with STARTTLS" in details["st"]
    assert "no TLS (plaintext)" in details["plain"]
