"""`mailsync watch` as users run it: a real subprocess, changes both ways within a second, `status`
and the metrics endpoint while it runs, structured logs without secrets, and SIGTERM / SIGINT
answered with exit 0 within 5 s (also in the middle of a large first sync, which then resumes)."""

from __future__ import annotations

import json
import secrets
import signal
import time
import urllib.request

import pytest

from helpers import account_entry, password_var, run_cli, write_config
from mailsync.store.db import open_store
from twoway_support import assert_agree
from watch_support import Daemon, OtherClient, message, stored_flags, wait_until


def _setup(dovecot, tmp_path, **extra):
    user = dovecot.new_user(f"cli{secrets.token_hex(4)}", "pw-" + secrets.token_hex(6))
    store_url = f"sqlite:///{tmp_path}/store.db"
    config = write_config(tmp_path / "config.toml", store_url, [account_entry(user, "acc", **extra)])
    env = {password_var("acc"): user.password}
    return user, store_url, config, env


def test_watch_end_to_end(dovecot, tmp_path):
    user, store_url, config, env = _setup(dovecot, tmp_path)
    daemon = Daemon(config, env, tmp_path, "--metrics-port", "0")
    other = OtherClient(user)
    store = None
    try:
        port = daemon.wait_for("metrics")["port"]
        daemon.wait_for("connected", account="acc", mode="NOTIFY")
        daemon.wait_for("synced", account="acc")
        store = open_store(store_url)
        # server -> store
        raw, mid = message(1, "e2e")
        t0 = other.append("INBOX", raw)
        wait_until(lambda: stored_flags(store, "acc", mid) is not None, 1.0, "the APPEND in the store")
        assert time.monotonic() - t0 <= 1.0
        uid = other.uid_of("INBOX", mid)
        t0 = other.add_flags("INBOX", uid, ["\\Answered"])
        wait_until(lambda: "\\Answered" in (stored_flags(store, "acc", mid) or []), 1.0, "the flag in the store")
        # store -> server: from the moment `mailsync flag` has recorded the change
        run_cli("flag", "acc", "INBOX", str(uid), "+\\Flagged", config=config, env=env, check=True)
        t0 = time.monotonic()
        wait_until(lambda: "\\Flagged" in other.flags("INBOX", uid), 1.0, "the local flag on the server", interval=0.02)
        assert time.monotonic() - t0 <= 1.0
        # status while it runs
        wait_until(lambda: _watch_status(config, env)["last_sync"] is not None, 3, "health rows")
        w = _watch_status(config, env)
        assert (w["daemon"], w["connected"], w["mode"], w["connections"]) == ("running", True, "NOTIFY", 1)
        assert w["last_event"] and w["last_sync"] and w["lag_seconds"] is not None and w["failing"] is None
        text = run_cli("status", config=config, env=env, check=True).stdout
        assert "watch: connected, push mode NOTIFY" in text and "last successful sync" in text
        # metrics on 127.0.0.1
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        for name in ('mailsync_syncs_completed_total{account="acc"}', 'mailsync_messages_applied_total{account="acc"}',
                     'mailsync_flag_changes_applied_total{account="acc"}', "mailsync_push_events_total{",
                     'mailsync_reconnects_total{account="acc"}', "mailsync_sync_duration_seconds_bucket",
                     'mailsync_seconds_since_last_sync{account="acc"}', 'mailsync_connected{account="acc"} 1.0'):
            assert name in body, name
        rc, took = daemon.stop(signal.SIGTERM)
        assert rc == 0 and took < 5.0, (rc, took)
        events = daemon.events()
        assert events[-1]["event"] == "stopped"
        log_text = daemon.log_path.read_text()
        assert user.password not in log_text
        w = _watch_status(config, env)
        assert (w["daemon"], w["connected"], w["connections"]) == ("stopped", False, 0)
    finally:
        other.close()
        daemon.kill()
        if store is not None:
            store.dispose()


def _watch_status(config, env) -> dict:
    report = json.loads(run_cli("status", "--json", config=config, env=env, check=True).stdout)
    (acc,) = report["accounts"]
    return acc["watch"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_in_the_middle_of_a_large_first_sync(sig, dovecot, tmp_path):
    """The step in progress is committed, the daemon exits 0 within 5 s, and a later sync resumes:
    store and server then agree exactly (nothing lost, nothing twice)."""
    user, store_url, config, env = _setup(dovecot, tmp_path, batch_size=100)
    body = b"x" * 20_000
    dovecot.load(user.name, [("INBOX", b"Message-ID: <big%d@example.org>\r\nSubject: %d\r\n\r\n" % (i, i) + body)
                             for i in range(3000)])
    daemon = Daemon(config, env, tmp_path)
    try:
        daemon.wait_for("connected", account="acc")
        time.sleep(0.3)  # the catch-up sync is downloading 60 MB now
        rc, took = daemon.stop(sig)
        assert rc == 0 and took < 5.0, (rc, took, daemon.log_path.read_text()[-2000:])
        names = [e["event"] for e in daemon.events()]
        assert "synced" not in names, "the first sync should still have been running"
        assert names[-1] == "stopped"
    finally:
        daemon.kill()
    store = open_store(store_url)
    try:
        with store.engine.connect() as conn:
            partial = conn.exec_driver_sql("SELECT count(*) FROM placements").scalar()
        assert 0 < partial < 3000, partial  # committed batches are kept
        run_cli("sync", "--quiet", config=config, env=env, check=True)
        assert_agree(store, user, "acc")
    finally:
        store.dispose()


def test_watch_usage_errors(tmp_path):
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db",
                          [{"name": "off", "host": "127.0.0.1", "port": 1, "tls": "none", "username": "u",
                            "password": "env:NOPE", "allow_plaintext": True, "watch": False}])
    proc = run_cli("watch", config=config)
    assert proc.returncode == 2 and "no account to watch" in proc.stderr
    proc = run_cli("watch", "--backoff-initial", "5", "--backoff-max", "1", config=config)
    assert proc.returncode == 2


def test_watch_runs_the_crm_delivery_after_each_sync(dovecot, tmp_path):
    """With a [crm] table, the daemon extracts and delivers after its syncs, as `mailsync sync` does:
    a reply arriving while it runs reaches the jsonl sink without any other command."""
    user, _store_url, config, env = _setup(dovecot, tmp_path, identities=["me@example.org"])
    sink = tmp_path / "records.jsonl"
    with open(config, "a") as fh:
        fh.write(f'\n[crm]\n[[crm.sink]]\nname = "file"\ntype = "jsonl"\npath = {json.dumps(str(sink))}\n')
    sent = (b"From: Me <me@example.org>\r\nTo: Ada Client <ada@client-company.example>\r\n"
            b"Message-ID: <out1@example.org>\r\nSubject: offer\r\nDate: Mon, 2 Feb 2026 10:00:00 +0000\r\n\r\nhi\r\n")
    dovecot.load(user.name, [("Sent", sent, "\\Seen")])
    daemon = Daemon(config, env, tmp_path)
    try:
        daemon.wait_for("connected", account="acc", timeout=30)
        wait_until(lambda: sink.exists() and "ada@client-company.example" in sink.read_text(), 20,
                   "the contact of the sent message in the sink")
        other = OtherClient(user)
        reply = (b"From: Ada Client <ada@client-company.example>\r\nTo: me@example.org\r\n"
                 b"Message-ID: <in1@client-company.example>\r\nIn-Reply-To: <out1@example.org>\r\n"
                 b"Subject: Re: offer\r\nDate: Mon, 2 Feb 2026 11:00:00 +0000\r\n\r\nyes\r\n")
        other.append("INBOX", reply)
        wait_until(lambda: '"reply"' in sink.read_text(), 20, "the reply activity in the sink")
        rc, seconds = daemon.stop()
        assert rc == 0 and seconds < 5
    finally:
        daemon.kill()
