"""`mailsync sync --json` and the post_sync / on_new_mail hooks, through the CLI against the test Dovecot."""

from __future__ import annotations

import json
import sys

from helpers import account_entry, password_var, run_cli, toml_str, write_config


def _msg(i: int) -> bytes:
    return f"From: a@example.org\r\nMessage-ID: <h{i}@example.org>\r\nSubject: {i}\r\n\r\nbody {i}\r\n".encode()


def _recorder(tmp_path, name: str, exit_code: int = 0) -> str:
    """A hook command that appends its MAILSYNC_* environment, as JSON, to a file."""
    script = tmp_path / f"{name}.py"
    script.write_text(
        "import json, os, sys\n"
        f"with open({str(tmp_path / (name + '.jsonl'))!r}, 'a') as fh:\n"
        "    fh.write(json.dumps({k: v for k, v in os.environ.items() if k.startswith('MAILSYNC_')}) + '\\n')\n"
        f"sys.exit({exit_code})\n")
    return f"{sys.executable} {script}"


def _calls(tmp_path, name: str) -> list[dict]:
    path = tmp_path / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sync_json_summary_and_hooks_run_only_when_something_changed(tmp_path, imap_user):
    imap_user.server.load(imap_user.name, [("INBOX", _msg(1)), ("INBOX", _msg(2)), ("Lists/a", _msg(3))])
    entry = account_entry(imap_user, "acc", post_sync=_recorder(tmp_path, "post"),
                          on_new_mail=_recorder(tmp_path, "new"))
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [entry])
    env = {password_var("acc"): imap_user.password}

    proc = run_cli("sync", "--json", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # stdout is the JSON document alone
    assert summary["ok"] is True and summary["failed"] == [] and summary["hook_failures"] == []
    (acc,) = summary["accounts"]
    assert acc["account"] == "acc" and acc["ok"] is True and acc["new_messages"] == 3
    assert acc["folders"] >= 2 and acc["bytes_fetched"] > 0 and acc["error"] is None
    (new_call,) = _calls(tmp_path, "new")
    (post_call,) = _calls(tmp_path, "post")
    assert new_call["MAILSYNC_HOOK"] == "on_new_mail" and post_call["MAILSYNC_HOOK"] == "post_sync"
    for call in (new_call, post_call):
        assert call["MAILSYNC_ACCOUNT"] == "acc" and call["MAILSYNC_NEW"] == "3"
        assert call["MAILSYNC_FOLDERS"].split("\n") == ["INBOX", "Lists/a"]
        assert call["MAILSYNC_CONFIG"] == str(cfg)

    # nothing changed: no hook runs
    again = json.loads(run_cli("sync", "--json", config=cfg, env=env, check=True).stdout)
    assert again["accounts"][0]["new_messages"] == 0
    assert len(_calls(tmp_path, "new")) == 1 and len(_calls(tmp_path, "post")) == 1

    # a flag change elsewhere: post_sync runs, on_new_mail does not
    from helpers import client_for

    c = client_for(imap_user)
    c.select_folder("INBOX")
    c.add_flags(c.search("ALL")[:1], [b"\\Flagged"])
    c.logout()
    third = json.loads(run_cli("sync", "--json", config=cfg, env=env, check=True).stdout)
    assert third["accounts"][0]["flag_changes"] == 1
    assert len(_calls(tmp_path, "new")) == 1
    post = _calls(tmp_path, "post")
    assert len(post) == 2 and post[1]["MAILSYNC_FLAG_CHANGES"] == "1" and post[1]["MAILSYNC_NEW"] == "0"


def test_a_failing_hook_is_logged_and_never_fails_the_sync(tmp_path, imap_user, dovecot):
    other = dovecot.new_user(imap_user.name + "-b")
    imap_user.server.load(imap_user.name, [("INBOX", _msg(10))])
    other.server.load(other.name, [("INBOX", _msg(11))])
    lines = ["[store]", f"url = {toml_str(f'sqlite:///{tmp_path}/s.db')}", "",
             "[hooks]", f"post_sync = {toml_str(_recorder(tmp_path, 'global', exit_code=3))}", ""]
    for name, user, extra in (("one", imap_user, {}), ("two", other, {"post_sync": "no-such-command-xyz"})):
        lines.append("[[account]]")
        for key, value in account_entry(user, name, **extra).items():
            lines.append(f"{key} = {value if isinstance(value, int) else toml_str(value)}")
        lines.append("")
    cfg = tmp_path / "c.toml"
    cfg.write_text("\n".join(lines))
    cfg.chmod(0o600)
    env = {password_var("one"): imap_user.password, password_var("two"): other.password}
    proc = run_cli("sync", "--json", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["ok"] is True and [a["new_messages"] for a in summary["accounts"]] == [1, 1]
    assert len(summary["hook_failures"]) == 2
    # the global hook ran for "one" (and failed with 3); "two" has its own, which does not exist
    (call,) = _calls(tmp_path, "global")
    assert call["MAILSYNC_ACCOUNT"] == "one"
    assert "account 'one': post_sync hook" in proc.stderr and "exit status 3" in proc.stderr
    assert "account 'two': post_sync hook 'no-such-command-xyz'" in proc.stderr and "not found" in proc.stderr


def test_a_hook_of_the_wrong_type_is_a_config_error(tmp_path, imap_user):
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db",
                       [account_entry(imap_user, "acc", post_sync=3)])
    proc = run_cli("sync", config=cfg)
    assert proc.returncode == 2 and "post_sync" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "b.toml"
    bad.write_text('[hooks]\npost_sink = "x"\n')
    bad.chmod(0o600)
    proc = run_cli("sync", config=bad)
    assert proc.returncode == 2 and "post_sink" in proc.stderr and "post_sync" in proc.stderr


def test_watch_runs_the_hooks_after_a_sync_that_brought_new_mail(tmp_path, imap_user):
    import os
    import signal
    import subprocess
    import time

    from helpers import REPO
    from watch_support import wait_until

    imap_user.server.load(imap_user.name, [("Lists/b", _msg(20))])
    entry = account_entry(imap_user, "acc", on_new_mail=_recorder(tmp_path, "new"))
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [entry])
    env = dict(os.environ, **{password_var("acc"): imap_user.password})
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    run_cli("sync", "-q", config=cfg, env=env, check=True)  # the first message: one hook call
    assert len(_calls(tmp_path, "new")) == 1
    log = tmp_path / "watch.log"
    with open(log, "wb") as err:
        daemon = subprocess.Popen([sys.executable, "-m", "mailsync", "--config", str(cfg), "watch", "--log-format",
                                   "json"], stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        wait_until(lambda: daemon.poll() is not None or b'"connected"' in log.read_bytes(), 30, "connected")
        time.sleep(0.5)
        assert len(_calls(tmp_path, "new")) == 1  # the catch-up sync at start found nothing new
        from helpers import client_for

        other = client_for(imap_user)  # another client delivers: NOTIFY (or IDLE) wakes the daemon
        other.append("Lists/b", _msg(21))
        other.append("Lists/b", _msg(22))
        other.logout()
        wait_until(lambda: len(_calls(tmp_path, "new")) >= 2, 30, "the on_new_mail hook")
        if _calls(tmp_path, "new")[1]["MAILSYNC_NEW"] == "1":  # the two appends fell into two syncs
            wait_until(lambda: len(_calls(tmp_path, "new")) == 3, 30, "the second on_new_mail hook")
        calls = _calls(tmp_path, "new")[1:]
        assert sum(int(c["MAILSYNC_NEW"]) for c in calls) == 2
        for call in calls:
            assert call["MAILSYNC_ACCOUNT"] == "acc" and call["MAILSYNC_FOLDERS"] == "Lists/b"
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
