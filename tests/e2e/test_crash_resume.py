"""kill -9 at random moments during a sync, several times in a row, then a run to the end: no
duplicate, nothing missing, and nothing that was committed is downloaded again."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

from helpers import (REPO, account_entry, export_snapshot, export_via_cli, password_var, run_cli,
                     nonempty, server_snapshot, write_config)
from mailsync.testing.corpus import generate_bulk, load_into


def test_sigkill_at_random_moments_then_resume(tmp_path, dovecot, store_url):
    user = dovecot.new_user("crash-" + tmp_path.name[-10:], "pw")
    total = 8000
    load_into(dovecot, user.name, generate_bulk(total, folders=4, seed=11))
    cfg = write_config(tmp_path / "c.toml", store_url, [account_entry(user, "acc", batch_size=200)])
    env = dict(os.environ, **{password_var("acc"): "pw"}, PYTHONPATH=str(REPO))
    server = server_snapshot(user)
    rng = random.Random(20261126)

    kills = 0
    committed = 0
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-m", "mailsync", "--config", str(cfg), "sync", "--quiet"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 1.2))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
        rows = export_via_cli(cfg, env)
        got = export_snapshot(rows, "acc")  # asserts no duplicate (folder, uid)
        # everything committed matches the server exactly
        for folder, f in got.items():
            for uid, msg in f["messages"].items():
                assert server[folder]["messages"][uid] == msg
        now = sum(len(f["messages"]) for f in got.values())
        assert now >= committed  # committed batches survive the kill
        committed = now
        if committed == total:
            break
    assert kills >= 3, f"only {kills} kills landed mid-sync; the corpus is too small for this machine"

    proc = run_cli("sync", config=cfg, env=env, check=True)
    report = json.loads(run_cli("status", "--json", config=cfg, env=env, check=True).stdout)
    last = report["accounts"][0]["last_run"]
    assert last["status"] == "ok"
    assert last["new_messages"] == total - committed  # nothing committed was fetched again
    assert export_snapshot(export_via_cli(cfg, env), "acc") == nonempty(server)
