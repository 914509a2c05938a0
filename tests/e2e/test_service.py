"""Running mailsync as a service: the systemd user unit from `mailsync install-service` (its ExecStart
line run as the watch tests run the daemon, then stopped with the unit's KillSignal), the Dockerfile's
command line, --metrics-addr, and --log-format json for commands besides watch."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from helpers import REPO, account_entry, password_var, run_cli, write_config
from watch_support import wait_until


def _unit_values(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(errors="replace").splitlines() if line.strip()]


def test_install_service_writes_a_unit_whose_execstart_runs_the_daemon_and_stops_on_its_signal(tmp_path, imap_user):
    (tmp_path / "conf").mkdir()
    cfg = write_config(tmp_path / "conf" / "config.toml", f"sqlite:///{tmp_path}/data/s.db",
                       [account_entry(imap_user, "acc")])
    xdg = tmp_path / "xdg"
    proc = run_cli("install-service", config=cfg, env={"XDG_CONFIG_HOME": str(xdg)})
    assert proc.returncode == 0, proc.stderr
    unit = xdg / "systemd" / "user" / "mailsync.service"
    assert proc.stdout.strip() == str(unit) and "systemctl --user enable --now mailsync.service" in proc.stderr
    values = _unit_values(unit.read_text())
    assert values["Restart"] == ["on-failure"] and values["KillSignal"] == ["SIGTERM"]
    assert values["RestartPreventExitStatus"] == ["2"] and values["WantedBy"] == ["default.target"]
    again = run_cli("install-service", config=cfg, env={"XDG_CONFIG_HOME": str(xdg)})
    assert again.returncode == 2 and "--force" in again.stderr  # an existing unit is kept
    printed = run_cli("install-service", "--print", config=cfg)
    assert printed.stdout == unit.read_text()

    # Run the ExecStart line as systemd would: its words, the unit's Environment= and EnvironmentFile=
    # (written here with the account's password), no terminal; then the unit's KillSignal.
    (exec_start,) = values["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[argv.index("--config") + 1] == str(cfg) and argv[-1] == "watch"
    env_file = values["EnvironmentFile"][0].lstrip("-")
    assert env_file == str(cfg.with_name("env"))
    Path(env_file).write_text(f"{password_var('acc')}={imap_user.password}\n")
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    for assignment in values["Environment"]:
        key, _, value = assignment.partition("=")
        env[key] = value
    for line in Path(env_file).read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    log = tmp_path / "daemon.log"
    with open(log, "wb") as err:
        daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                  cwd="/")
    try:
        wait_until(lambda: daemon.poll() is not None or any(e["event"] == "synced" for e in _events(log)), 30,
                   "the daemon's first sync")
        assert daemon.poll() is None, log.read_text()
        daemon.send_signal(getattr(signal, values["KillSignal"][0]))
        t0 = time.monotonic()
        rc = daemon.wait(float(values["TimeoutStopSec"][0]))
        assert rc == 0, log.read_text()
        assert time.monotonic() - t0 < 5
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_the_dockerfile_command_line_is_one_the_cli_accepts():
    """The image is not built here (no Docker on the test machines): its ENTRYPOINT + CMD must at
    least be a command line `mailsync` accepts, and it must stop with SIGTERM."""
    text = (REPO / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert entry[0] == "mailsync" and re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    proc = run_cli(*entry[1:], *cmd, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--metrics-addr" in proc.stdout


def test_metrics_addr_is_where_the_metrics_are_served(tmp_path, imap_user):
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [account_entry(imap_user, "acc")])
    log = tmp_path / "w.log"
    env = dict(os.environ, **{password_var("acc"): imap_user.password})
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "wb") as err:
        daemon = subprocess.Popen([sys.executable, "-m", "mailsync", "--config", str(cfg), "--log-format", "json",
                                   "watch", "--metrics-port", "0", "--metrics-addr", "127.0.0.2"],
                                  stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        wait_until(lambda: daemon.poll() is not None or any(e["event"] == "metrics" for e in _events(log)), 30,
                   "the metrics event")
        assert daemon.poll() is None, log.read_text()
        event = [e for e in _events(log) if e["event"] == "metrics"][0]
        assert event["addr"] == "127.0.0.2" and event["url"].startswith("http://127.0.0.2:")
        body = urllib.request.urlopen(f"http://127.0.0.2:{event['port']}/metrics", timeout=10).read()
        assert b"mailsync" in body
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    bad = run_cli("watch", "--metrics-port", "0", "--metrics-addr", "203.0.113.7", config=cfg,
                  env={password_var("acc"): imap_user.password})
    assert bad.returncode == 2 and "203.0.113.7" in bad.stderr and "--metrics-addr" in bad.stderr
    alone = run_cli("watch", "--metrics-addr", "0.0.0.0", config=cfg)
    assert alone.returncode == 2 and "--metrics-port" in alone.stderr


def test_log_format_json_holds_for_every_command(tmp_path, imap_user):
    imap_user.server.load(imap_user.name, [("INBOX", b"From: a@example.org\r\nSubject: j\r\n\r\nj\r\n")])
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db",
                       [account_entry(imap_user, "acc"), account_entry(imap_user, "bad")])
    env = {password_var("acc"): imap_user.password, password_var("bad"): "wrong"}
    proc = run_cli("--log-format", "json", "sync", config=cfg, env=env)
    assert proc.returncode == 1
    lines = [json.loads(line) for line in proc.stderr.splitlines()]  # every stderr line is one JSON object
    by_event = {(e["event"], e.get("account")): e for e in lines}
    ok = by_event[("account_synced", "acc")]
    assert ok["new_messages"] == 1 and ok["ok"] is True
    failed = by_event[("account_failed", "bad")]
    assert failed["level"] == "ERROR" and "refused the login" in failed["error"]
    assert any(e["event"] == "sync_failed" and e["failed"] == "bad" for e in lines)

    missing = run_cli("--log-format", "json", "status", config=tmp_path / "nope.toml")
    assert missing.returncode == 2
    (error,) = [json.loads(line) for line in missing.stderr.splitlines()]
    assert error["event"] == "error" and "config file not found" in error["message"] and error["hint"]
    via_env = run_cli("check", "--account", "acc", config=cfg, env=dict(env, MAILSYNC_LOG_FORMAT="json"))
    assert via_env.returncode == 0 and all(json.loads(line) for line in via_env.stderr.splitlines())


def test_shell_completion_as_the_readme_shows_it():
    """README: eval "$(_MAILSYNC_COMPLETE=bash_source mailsync)"; the function it defines asks the
    command again with bash_complete, which must answer with the commands and options."""
    readme = (REPO / "README.md").read_text()
    assert '_MAILSYNC_COMPLETE=bash_source mailsync' in readme and '_MAILSYNC_COMPLETE=zsh_source mailsync' in readme
    source = run_cli(env={"_MAILSYNC_COMPLETE": "bash_source"})
    assert source.returncode == 0 and "_mailsync_completion()" in source.stdout and "complete " in source.stdout
    words = run_cli(env={"_MAILSYNC_COMPLETE": "bash_complete", "COMP_WORDS": "mailsync ch", "COMP_CWORD": "1"})
    assert words.stdout.split() == ["plain,channel", "plain,check"]
    options = run_cli(env={"_MAILSYNC_COMPLETE": "bash_complete", "COMP_WORDS": "mailsync sync --",
                           "COMP_CWORD": "2"})
    assert "plain,--json" in options.stdout.split() and "plain,--account" in options.stdout.split()
