"""The watch daemon's health rows and their report in `mailsync status`, and its structured logs."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

from mailsync.config.model import AccountConfig
from mailsync.push import logs
from mailsync.push.health import STALE_AFTER, AccountHealth, HealthStore, render_watch, watch_report
from mailsync.store.db import open_store
from mailsync.store.models import utcnow
from mailsync.store.uow import UnitOfWork


def test_health_rows_round_trip_and_staleness(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    hs = HealthStore(store, pid=4242)
    ids = hs.ensure_accounts([AccountConfig(name="work", host="h", username="u")])
    h = AccountHealth("work", ids["work"])
    h.set(connected=True, mode="IDLE", connections=2, last_event_at=utcnow(), last_event="push: EXISTS in INBOX",
          last_sync_at=utcnow(), lag_seconds=0.61)
    hs.write([h])
    now = utcnow()
    with UnitOfWork(store) as uow:
        w = watch_report(uow.session, ids["work"], now=now)
    assert (w["daemon"], w["connected"], w["mode"], w["connections"], w["pid"]) == ("running", True, "IDLE", 2, 4242)
    assert w["lag_seconds"] == 0.61 and w["failing"] is None
    lines = render_watch(w)
    assert "watch: connected, push mode IDLE, 2 connection(s)" in lines[0] and "lag 0.61 s" in lines[1]
    # while changes wait, the lag is how long the oldest has waited
    h.set(pending_since=now - timedelta(seconds=3), failing="account 'work': refused the login")
    hs.write([h])
    with UnitOfWork(store) as uow:
        w = watch_report(uow.session, ids["work"], now=now)
    assert 2.9 < w["lag_seconds"] < 3.1 and "FAILING" in "\n".join(render_watch(w))
    # no heartbeat for a while: the daemon is gone, nothing is connected
    with UnitOfWork(store) as uow:
        w = watch_report(uow.session, ids["work"], now=now + timedelta(seconds=STALE_AFTER + 1))
    assert (w["daemon"], w["connected"], w["connections"]) == ("stopped", False, 0)
    assert render_watch(w)[0].strip().startswith("watch: daemon not running")
    with UnitOfWork(store) as uow:
        assert watch_report(uow.session, 999) is None
    store.dispose()


def _capture(fmt: str):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.TextFormatter())
    log = logging.getLogger(f"test.push.{fmt}")
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return log, stream


def test_logs_one_line_per_event_text_and_json():
    log, out = _capture("text")
    logs.event(log, "connected", account="work", mode="NOTIFY", connections=1, lag=0.1234)
    logs.event(log, "disconnected", logging.WARNING, account="work", reason='said BYE: "going down"\nnow')
    text = out.getvalue().splitlines()
    assert len(text) == 2
    assert text[0].endswith("INFO test.push.text connected account=work mode=NOTIFY connections=1 lag=0.123")
    assert 'reason="said BYE: \\"going down\\"\\nnow"' in text[1]
    log, out = _capture("json")
    logs.event(log, "synced", account="work", seconds=0.02, new=3, error=None)
    (line,) = out.getvalue().splitlines()
    e = json.loads(line)
    assert e["event"] == "synced" and e["new"] == 3 and e["error"] is None and e["level"] == "INFO"


def test_logs_never_carry_a_registered_secret():
    logs.register_secret("hunter2-Secret")
    log, out = _capture("json")
    logs.event(log, "oops", detail="login with hunter2-Secret failed")
    log.warning("plain message hunter2-Secret")
    assert "hunter2-Secret" not in out.getvalue() and out.getvalue().count("***") == 2
