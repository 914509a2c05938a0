"""Webhook delivery to a real HTTP server on 127.0.0.1 that fails at random: every record arrives,
each idempotency key is processed once, every signature verifies -- in-process, in batches, through
dead letters and `--retry`, and with the sync process killed mid-delivery and started again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from crm_support import OWN, crm_settings, stored_records
from helpers import REPO, account_entry, password_var, run_cli, write_config
from mailsync.crm.models import CrmOutbox
from mailsync.crm.outbox import Worker, outbox_summary, retry_dead
from mailsync.crm.pipeline import Pipeline
from mailsync.store.db import open_store
from mailsync.store.uow import UnitOfWork
from mailsync.testing.corpus import load_into
from mailsync.testing.crm_corpus import generate_crm_corpus, load_into_store
from webhook_server import Receiver

SECRET = "s3cret-for-tests"


@pytest.fixture(scope="module")
def crm_corpus():
    return generate_crm_corpus(1)


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("CRM_HOOK_SECRET", SECRET)


def _sink(url: str, **kw) -> dict:
    return {"name": "hook", "type": "webhook", "url": url, "secret": "env:CRM_HOOK_SECRET", "timeout": 0.4,
            "backoff": 0.02, "max_backoff": 0.2, "max_attempts": 60, **kw}


def _queued(store) -> dict[str, tuple]:
    with UnitOfWork(store) as uow:
        return {k: (t, i, op) for k, t, i, op in uow.session.execute(
            select(CrmOutbox.idempotency_key, CrmOutbox.record_type, CrmOutbox.record_id, CrmOutbox.op))}


def _pending(store) -> int:
    with UnitOfWork(store) as uow:
        return uow.session.scalar(select(func.count()).select_from(CrmOutbox))


def _all_records(store) -> set[tuple[str, str]]:
    r = stored_records(store)
    return ({("contact", c["id"]) for c in r["contacts"].values()} | {("company", c["id"]) for c in r["companies"].values()}
            | {("activity", a["id"]) for a in r["activities"].values()})


@pytest.mark.parametrize("batch_size", [1, 5])
def test_every_record_arrives_once_through_random_failures(tmp_path, crm_corpus, secret_env, batch_size):
    messages, _ = crm_corpus
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", messages)
    with Receiver(SECRET, seed=batch_size, failure_rate=0.3, max_failures=30, slow=0.5) as rx:
        settings = crm_settings(tmp_path, {"sink": [_sink(rx.url, batch_size=batch_size, rate_limit=500)]})
        Pipeline(store, settings).run()
        queued = _queued(store)
        assert len(queued) == len(_all_records(store)) > 300
        result = Worker(store, settings).run(deadline=120)
        assert result.dead == 0 and result.pending == 0, result.summary()
        assert _pending(store) == 0
        assert set(rx.processed) == set(queued)  # every record arrived ...
        assert set(rx.times_processed.values()) == {1}  # ... and was processed once
        assert rx.bad_signatures == 0
        assert sum(rx.failures.values()) >= 15 and len(rx.failures) >= 4  # the failures really happened
        assert rx.duplicates >= 1  # a request processed but not acknowledged came again, and was not redone
        assert {(e["type"], e["id"]) for e in rx.processed.values()} == _all_records(store)
        got = {e["id"]: e["data"] for e in rx.processed.values() if e["type"] == "contact"}
        assert got == {c["id"]: c for c in stored_records(store)["contacts"].values()}
    store.dispose()


def test_rate_limit_and_dead_letters_and_retry(tmp_path, crm_corpus, secret_env):
    messages, _ = crm_corpus
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", messages[:60])
    with Receiver("the wrong secret") as rx:  # every request is refused: 401 is not retried
        settings = crm_settings(tmp_path, {"sink": [_sink(rx.url, max_attempts=3, rate_limit=20)]})
        Pipeline(store, settings).run()
        n = _pending(store)
        t0 = time.monotonic()
        result = Worker(store, settings).run(deadline=30)
        elapsed = time.monotonic() - t0
        assert result.dead == n and result.requests == n and not rx.processed
        assert elapsed >= (n - 20) / 20 * 0.9  # 20 requests a second after the first burst
        summary = outbox_summary(store)
        assert summary["sinks"]["hook"]["dead"] == n and "HTTP 401" in summary["dead"][0]["last_error"]
    with Receiver(SECRET) as rx:  # fixed: --retry sends them all
        settings = crm_settings(tmp_path, {"sink": [_sink(rx.url)]})
        assert retry_dead(store) == n
        result = Worker(store, settings).run(deadline=30)
        assert result.delivered == n and len(rx.processed) == n and _pending(store) == 0
    store.dispose()


def test_retry_after_is_honoured(tmp_path, crm_corpus, secret_env):
    messages, _ = crm_corpus
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", messages[:10])
    clock = [1_000_000.0]
    slept: list[float] = []

    class Always429:
        def send(self, envelopes):
            from mailsync.crm.sinks import Outcome
            return Outcome(False, retry_after=42.0, error="HTTP 429", status=429)

        def close(self):
            pass

    settings = crm_settings(tmp_path, {"sink": [_sink("http://127.0.0.1:9/hook", max_attempts=2)]})
    Pipeline(store, settings, clock=lambda: clock[0]).run()

    def sleep(s):
        slept.append(s)
        clock[0] += s

    worker = Worker(store, settings, clock=lambda: clock[0], sleep=sleep, transports={"hook": Always429()})
    result = worker.run(deadline=100)
    assert slept and 41.9 <= slept[0] <= 42.1  # waited as told, not the 0.02 s backoff
    assert result.dead >= 1
    store.dispose()


def test_sync_killed_mid_delivery_loses_nothing(tmp_path, imap_user, crm_corpus):
    messages, _ = crm_corpus
    load_into(imap_user.server, imap_user.name, messages)
    env = {password_var("acc"): imap_user.password, "CRM_HOOK_SECRET": SECRET}
    with Receiver(SECRET, seed=3, failure_rate=0.15, max_failures=25, delay=0.01, slow=0.5) as rx:
        cfg = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path}/store.db",
                           [account_entry(imap_user, "acc", identities=[OWN])])
        with open(cfg, "a") as fh:
            fh.write("\n[crm]\ndelivery_timeout = 120\n[[crm.sink]]\n" + "\n".join(
                f"{k} = {json.dumps(v)}" for k, v in _sink(rx.url).items()) + "\n")
        full_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-m", "mailsync", "--config", str(cfg), "sync", "--quiet"],
                                env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while len(rx.processed) < 60 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        assert proc.poll() is None, "delivery finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        arrived_before = len(rx.processed)
        store = open_store(f"sqlite:///{tmp_path}/store.db")
        left = _pending(store)
        assert 0 < left and arrived_before >= 60
        again = run_cli("sync", "--quiet", config=cfg, env=env, timeout=300)
        assert again.returncode == 0, again.stderr
        assert _pending(store) == 0
        records = _all_records(store)
        assert {(e["type"], e["id"]) for e in rx.processed.values()} == records
        assert set(rx.times_processed.values()) == {1} and rx.bad_signatures == 0
        store.dispose()
