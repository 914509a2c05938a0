"""Throttling and quotas (issue 23) against the scriptable server (tests/hostile_server.py) playing
Microsoft 365 and Gmail as their documentation says they answer (tests/throttle_support.py): the sync
waits what the server asks, resumes where it stopped without fetching a committed message again,
ends with every message once, shows the wait in `status`, and never holds another account up."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from hostile_server import HostileServer
from hostile_support import fill, msg, stored, truth
from mailsync.changes import LocalChanges
from mailsync.cli.status import collect_status, render_status
from mailsync.config.loader import config_from_mapping
from mailsync.service import run_sync
from mailsync.sync.result import SyncObserver
from throttle_support import MS_BYE, MS_THROTTLED, O365_CAPABILITIES, refuse, throttled_after

BODY_FETCH = r"^UID FETCH .* \(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK\[\]"


@pytest.fixture
def o365():
    srv = HostileServer(capabilities=O365_CAPABILITIES).start()
    srv.add_folder("INBOX")
    yield srv
    srv.stop()


def config(tmp_path, store, *servers, **keys):
    accounts = [{"name": f"acc{i}", "host": srv.host, "port": srv.port, "tls": "none", "username": "u",
                 "password": "p", **keys} for i, srv in enumerate(servers)]
    return config_from_mapping({"store": {"url": store.url}, "account": accounts}, path=tmp_path / "c.toml")


def served_once(srv: HostileServer, folder: bytes = b"INBOX") -> bool:
    counts = Counter(uid for f, uid in srv.bodies_served if f == folder)
    return set(counts) == set(srv.truth(folder)) and set(counts.values()) == {1}


def test_throttled_mid_fetch_waits_the_suggested_time_and_resumes_without_fetching_again(tmp_path, o365, store):
    """Exchange Online stops a first download after 12 of 40 messages: NO Request is throttled
    (Suggested Backoff Time: 400 ms), then BYE. The sync waits at least that long, resumes, and the
    server sent each body exactly once: the 12 read before the throttle were committed."""
    fill(o365, 40)
    o365.script(BODY_FETCH, throttled_after(12, MS_THROTTLED % 400))
    lines: list[str] = []
    t0 = time.monotonic()
    outcome = run_sync(config(tmp_path, store, o365), store, report=lines.append)
    assert outcome.failed == [], outcome.results[0].error
    assert time.monotonic() - t0 >= 0.4
    assert stored(store) == truth(o365)
    assert served_once(o365)
    assert o365.connections == 2
    assert any("throttled by the server; resuming in" in line for line in lines)
    report = collect_status(store, config(tmp_path, store, o365))
    assert report["accounts"][0]["throttled"] is None  # the wait is over and the last run ended it


def test_throttled_with_bad_and_no_bye_in_a_delta_resumes(tmp_path, o365, store):
    """The same as BAD, the session left open, in a delta sync (new messages fetched by UID)."""
    fill(o365, 5)
    cfg = config(tmp_path, store, o365)
    assert run_sync(cfg, store).failed == []
    for i in range(6, 16):
        o365.add_message("INBOX", msg(i))
    o365.script(BODY_FETCH, throttled_after(4, b"{tag} BAD Request is throttled. Suggested Backoff Time: 200 "
                                               b"milliseconds\r\n", bye=None))
    assert run_sync(cfg, store).failed == []
    assert stored(store) == truth(o365)
    assert served_once(o365)


def test_throttled_mid_append_sends_every_local_message_once(tmp_path, o365, store):
    """Six local messages queued; the server throttles the third APPEND and ends the session. The
    sync waits, resumes, and the server ends with each message once (the one refused is sent again,
    the two stored are not), the store with each placed once."""
    fill(o365, 2)
    cfg = config(tmp_path, store, o365)
    assert run_sync(cfg, store).failed == []
    changes = LocalChanges(store)
    for i in range(100, 106):
        changes.append("acc0", "INBOX", msg(i))
    o365.script(r"^APPEND ", refuse(MS_THROTTLED % 300, bye=MS_BYE), times=1)
    o365.script(r"^APPEND ", lambda s, tag, cmd: None, times=2)  # placed first: the two before it go through
    o365._rules.insert(0, o365._rules.pop())  # (rules are tried in order: the honest two come first)
    outcome = run_sync(cfg, store)
    assert outcome.failed == [], outcome.results[0].error
    assert [r.used for r in o365._rules] == [2, 1]  # the third APPEND was throttled
    ids = Counter(body.split(b"\r\n", 1)[0] for _, body in o365.truth("INBOX").values())
    assert len(ids) == 8 and set(ids.values()) == {1}
    assert stored(store) == truth(o365)


def test_a_daily_quota_is_not_hammered_and_resumes_after_its_reset(tmp_path, o365, store):
    """Gmail-style [OVERQUOTA] after 3 messages, resetting in 2 s. With throttle_max_wait = 0 the sync
    fails (exit 1) naming the quota; `status` shows the wait; a sync before the reset does not even
    connect; one after it completes, each body sent once."""
    fill(o365, 10)
    o365.script(BODY_FETCH, throttled_after(3, b"{tag} NO [OVERQUOTA] Daily download limit exceeded, try again "
                                               b"in 2 seconds\r\n", bye=None))
    cfg = config(tmp_path, store, o365, throttle_max_wait=0)
    first = run_sync(cfg, store)
    assert first.failed == ["acc0"]
    assert "download quota is used up" in first.results[0].error and "[OVERQUOTA]" not in first.results[0].error
    assert len(stored(store)) == 3  # what came before the quota was kept
    report = collect_status(store, cfg)
    throttled = report["accounts"][0]["throttled"]
    assert throttled is not None and 0 < throttled["seconds_left"] <= 2.5 and throttled["in_a_row"] == 1
    assert "THROTTLED by the server" in render_status(report)
    connections = o365.connections
    again = run_sync(cfg, store)
    assert again.failed == ["acc0"] and "not contacted" in again.results[0].error
    assert o365.connections == connections  # nothing sent to the server before the reset
    time.sleep(max(0.0, throttled["seconds_left"]) + 0.1)
    last = run_sync(cfg, store)
    assert last.failed == [], last.results[0].error
    assert stored(store) == truth(o365) and served_once(o365)
    assert collect_status(store, cfg)["accounts"][0]["throttled"] is None


def test_a_throttled_account_never_holds_the_others_up(tmp_path, store):
    """Two accounts, the first throttled for 1.5 s at its first FETCH: the second syncs at once,
    then the first resumes; both end complete."""
    slow, fast = (HostileServer(capabilities=O365_CAPABILITIES).start() for _ in range(2))
    try:
        for srv in (slow, fast):
            srv.add_folder("INBOX")
            fill(srv, 8)
        slow.script(BODY_FETCH, throttled_after(0, MS_THROTTLED % 1500))
        done: list[tuple[str, bool, float]] = []

        class Watch(SyncObserver):
            def account_done(self, result):
                done.append((result.account, result.ok, time.monotonic()))

        t0 = time.monotonic()
        outcome = run_sync(config(tmp_path, store, slow, fast), store, Watch(), quiet=True)
        assert outcome.failed == []
        assert [(a, ok) for a, ok, _ in done] == [("acc0", False), ("acc1", True), ("acc0", True)]
        assert done[1][2] - t0 < 1.5  # the second account did not wait for the first's backoff
        assert done[2][2] - t0 >= 1.5
        assert stored(store, account="acc0") == truth(slow) and stored(store, account="acc1") == truth(fast)
    finally:
        slow.stop()
        fast.stop()


def test_too_many_connections_backs_off_and_is_not_a_login_failure(tmp_path, o365, store):
    """Exchange's "User is authenticated but not connected" right after the login, twice: not an
    AuthError; waited out with the growing backoff (5 s at first: the test shortens it), then synced."""
    from mailsync.sync import pacing

    fill(o365, 3)
    o365.script(r"^LIST ", refuse(b"{tag} BAD User is authenticated but not connected.\r\n"), times=2)
    old = pacing.SHORT
    pacing.SHORT = (0.2, 1.0)
    try:
        outcome = run_sync(config(tmp_path, store, o365), store, quiet=True)
    finally:
        pacing.SHORT = old
    assert outcome.failed == [], outcome.results[0].error
    assert stored(store) == truth(o365)


def test_an_o365_like_account_converges_on_every_delta_without_condstore(tmp_path, o365, store):
    """No CONDSTORE, QRESYNC or NOTIFY: every delta compares UIDs and flags in full (rule D5 plans
    only where they differ). Flags set and cleared by another client, an expunge, new mail and a local
    flag change all end up on both sides."""
    fill(o365, 30)
    cfg = config(tmp_path, store, o365)
    assert run_sync(cfg, store).failed == []
    o365.set_flags("INBOX", 2, {"\\Seen", "\\Flagged"})
    o365.set_flags("INBOX", 3, set())  # was \\Seen
    o365.expunge("INBOX", {5, 6})
    o365.add_message("INBOX", msg(31))
    LocalChanges(store).flag("acc0", "INBOX", 10, add=["$Important"])
    result = run_sync(cfg, store).results[0]
    assert result.ok, result.error
    assert (result.flag_changes, result.expunged, result.new_messages, result.pushed) == (2, 2, 1, 1)
    assert "$Important" in o365.truth("INBOX")[10][0]
    assert stored(store) == truth(o365)
    again = run_sync(cfg, store).results[0]
    assert (again.flag_changes, again.expunged, again.new_messages, again.pushed) == (0, 0, 0, 0)
