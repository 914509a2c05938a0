"""Bad input and bad circumstances through the CLI: each a clear message and the documented exit code
(0 ok, 1 a run failed, 2 usage or config error), and one account's failure never stops another."""

from __future__ import annotations

import json

from helpers import account_entry, export_via_cli, password_var, run_cli, server_snapshot, export_snapshot, nonempty, write_config


def _msg(i: int) -> bytes:
    return f"From: a@example.org\r\nMessage-ID: <m{i}@example.org>\r\nSubject: {i}\r\n\r\nbody {i}\r\n".encode()


def test_wrong_password_exits_1_and_names_account_and_host(tmp_path, imap_user):
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [account_entry(imap_user, "acc")])
    proc = run_cli("sync", config=cfg, env={password_var("acc"): "wrong"})
    assert proc.returncode == 1
    assert "account 'acc'" in proc.stderr and "refused the login" in proc.stderr
    assert "wrong" not in proc.stderr.replace("wrong password", "")  # the password itself never shows
    report = json.loads(run_cli("status", "--json", config=cfg, check=True).stdout)
    assert report["accounts"][0]["last_run"]["status"] == "failed"
    assert "refused the login" in report["accounts"][0]["last_run"]["error"]


def test_the_login_made_during_start_up_is_handed_over_once(imap_user):
    """`mailsync sync` logs in to its first account while the store opens (cli.main._EarlyLogin):
    that account's sync gets that connection; a reconnect, or another account, gets a new one."""
    from mailsync.cli.main import _EarlyLogin
    from twoway_support import account_for

    account = account_for(imap_user)
    other = account_for(imap_user, name="other")
    early = _EarlyLogin(account)
    assert early.connection() is early.connection()  # a look at it (the no-change check) does not take it
    connect = early.connect
    others = connect(other)  # another account's sync never gets the early connection
    first = connect(account)
    second = connect(account)
    try:
        assert len({id(others), id(first), id(second)}) == 3 and first is early.connection()
        for conn in (others, first, second):
            conn.noop()
    finally:
        for conn in (others, first, second):
            conn.logout()


def test_unreachable_host_exits_1(tmp_path, imap_user):
    entry = account_entry(imap_user, "acc", port=1)
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [entry])
    proc = run_cli("sync", config=cfg, env={password_var("acc"): imap_user.password})
    assert proc.returncode == 1
    assert "127.0.0.1:1" in proc.stderr and "refused" in proc.stderr


def test_untrusted_certificate_exits_1_naming_the_host(tmp_path, imap_user):
    entry = account_entry(imap_user, "acc")
    del entry["ca_file"]  # the system store does not trust the test server's self-signed certificate
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [entry])
    proc = run_cli("sync", config=cfg, env={password_var("acc"): imap_user.password})
    assert proc.returncode == 1
    assert "did not verify" in proc.stderr and imap_user.host in proc.stderr and "ca_file" in proc.stderr


def test_literal_password_in_group_readable_file_exits_2(tmp_path, imap_user):
    entry = account_entry(imap_user, "acc", password=imap_user.password + "-literal")
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [entry], mode=0o640)
    proc = run_cli("sync", config=cfg)
    assert proc.returncode == 2
    assert "chmod 600" in proc.stderr and str(cfg) in proc.stderr
    assert imap_user.password + "-literal" not in proc.stderr
    # with mode 0600 the same file is accepted and the sync works
    cfg.chmod(0o600)
    imap_user.server.load(imap_user.name, [("INBOX", _msg(1))])
    proc = run_cli("sync", config=cfg)
    assert proc.returncode == 1 and "refused the login" in proc.stderr  # wrong literal, but accepted as config


def test_unknown_config_key_exits_2_with_suggestion(tmp_path, imap_user):
    entry = account_entry(imap_user, "acc", hots="example.org")
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [entry])
    proc = run_cli("sync", config=cfg)
    assert proc.returncode == 2
    assert "hots" in proc.stderr and "host" in proc.stderr and str(cfg) in proc.stderr


def test_missing_config_exits_2_and_points_to_init(tmp_path):
    proc = run_cli("sync", config=tmp_path / "nope.toml")
    assert proc.returncode == 2 and "mailsync init" in proc.stderr


def test_unknown_account_and_bad_option_exit_2(tmp_path, imap_user):
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [account_entry(imap_user, "acc")])
    proc = run_cli("sync", "--account", "other", config=cfg)
    assert proc.returncode == 2 and "'other'" in proc.stderr and "acc" in proc.stderr
    assert run_cli("sync", "--no-such-option", config=cfg).returncode == 2


def test_init_writes_a_private_sample_that_loads(tmp_path):
    path = tmp_path / "cfg" / "config.toml"
    proc = run_cli("init", config=path)
    assert proc.returncode == 0 and path.exists()
    assert path.stat().st_mode & 0o777 == 0o600
    again = run_cli("init", config=path)
    assert again.returncode == 2 and "--force" in again.stderr
    proc = run_cli("status", config=path, env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert proc.returncode == 0, proc.stderr


def test_one_failing_account_does_not_stop_the_others(tmp_path, dovecot):
    good = dovecot.new_user("good-" + tmp_path.name[-8:], "pw-good")
    bad = dovecot.new_user("bad-" + tmp_path.name[-8:], "pw-bad")
    dovecot.load(good.name, [("INBOX", _msg(i)) for i in range(5)])
    accounts = [account_entry(bad, "bad"), account_entry(good, "good"),
                account_entry(good, "gone", port=1)]
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", accounts)
    env = {password_var("bad"): "nope", password_var("good"): "pw-good", password_var("gone"): "pw-good"}
    proc = run_cli("sync", config=cfg, env=env)
    assert proc.returncode == 1
    assert "2 of 3 account(s) failed: bad, gone" in proc.stderr
    assert export_snapshot(export_via_cli(cfg, env), "good") == nonempty(server_snapshot(good))


def test_starttls_and_plain_loopback_work(tmp_path, imap_user):
    imap_user.server.load(imap_user.name, [("INBOX", _msg(i)) for i in range(3)])
    accounts = [account_entry(imap_user, "tls-start", tls="starttls"), account_entry(imap_user, "plain", tls="none")]
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", accounts)
    env = {password_var("tls-start"): imap_user.password, password_var("plain"): imap_user.password}
    proc = run_cli("sync", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = export_via_cli(cfg, env)
    assert export_snapshot(rows, "tls-start") == export_snapshot(rows, "plain") == nonempty(server_snapshot(imap_user))


def test_plaintext_to_a_remote_host_is_refused(tmp_path, imap_user):
    entry = account_entry(imap_user, "acc", tls="none", host="imap.example.org")
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [entry])
    proc = run_cli("sync", config=cfg)
    assert proc.returncode == 2 and "allow_plaintext" in proc.stderr


def _run_into_pipes(args, cfg, env, *, stdout_reader: bool, stderr_reader: bool):
    """Run the CLI with stdout and stderr on pipes whose readers are already gone (or not)."""
    import os
    import subprocess
    import sys

    from helpers import REPO

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    if not stdout_reader:
        os.close(out_r)
    if not stderr_reader:
        os.close(err_r)
    full_env = dict(os.environ, **env, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "mailsync", "--config", str(cfg), *args],
                          stdout=out_w, stderr=err_w, env=full_env, timeout=120)
    os.close(out_w)
    os.close(err_w)
    err = b""
    if stderr_reader:
        with os.fdopen(err_r, "rb") as f:
            err = f.read()
    if stdout_reader:
        os.close(out_r)
    return proc.returncode, err


def test_output_to_a_reader_that_left_is_not_an_error(tmp_path, imap_user):
    """`mailsync status | head -0`: every write to stdout fails with EPIPE; the command ends
    quietly with exit 0, as `export messages` does."""
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    for args in (["status"], ["status", "--json"], ["export", "messages"]):
        code, err = _run_into_pipes(args, cfg, env, stdout_reader=False, stderr_reader=True)
        assert (code, err) == (0, b""), (args, err)


def test_a_failure_with_its_message_cut_short_still_exits_1(tmp_path, imap_user):
    """A sync that fails (wrong password) while its stderr has no reader: exit 1 all the same,
    so a closed pipe never turns a failure into success."""
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [account_entry(imap_user, "acc")])
    code, _ = _run_into_pipes(["sync"], cfg, {password_var("acc"): "wrong"}, stdout_reader=True, stderr_reader=False)
    assert code == 1
