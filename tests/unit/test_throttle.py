"""Throttling recognised (mailsync.imap.throttle) and waited for (mailsync.sync.pacing): one row per
provider wording, as documented by Microsoft (Exchange Online IMAP throttling), Google (Gmail IMAP
errors and bandwidth limits) and RFC 5530."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from mailsync.errors import ConnectError, ProtocolError, Throttled
from mailsync.imap.commands import refusal
from mailsync.imap.events import Tagged
from mailsync.imap.throttle import classify, untagged_throttle
from mailsync.sync import pacing

RESET = "2026-12-08T00:00:00Z"


@pytest.mark.parametrize("status, code, text, kind, wait, daily", [
    # Microsoft 365 / Outlook.com
    ("NO", None, "Request is throttled. Suggested Backoff Time: 3000 milliseconds", "throttled", 3.0, False),
    ("BAD", None, "Request is throttled. Suggested Backoff Time: 250 milliseconds", "throttled", 0.25, False),
    ("BYE", None, "Request is throttled. Suggested Backoff Time: 60000 milliseconds", "throttled", 60.0, False),
    ("BAD", None, "User is authenticated but not connected.", "connections", None, False),
    # RFC 5530 and Gmail
    ("NO", "THROTTLED", "Too many requests, slow down", "throttled", None, False),
    ("NO", "UNAVAILABLE", "Backend temporarily unavailable, try again in 30 seconds", "unavailable", 30.0, False),
    ("NO", "ALERT", "Too many simultaneous connections. (Failure)", "connections", None, False),
    ("NO", "ALERT", "Account exceeded command or bandwidth limits. (Failure)", "quota", None, True),
    ("NO", "OVERQUOTA", "Daily download limit exceeded, try again in 2 hours", "quota", 7200.0, True),
    ("NO", "LIMIT", "Too many connections from your IP", "connections", None, False),
    ("NO", "LIMIT", "Rate limit exceeded, retry after 5 s", "limit", 5.0, False),
])
def test_throttling_answers_are_recognised_with_their_wait(status, code, text, kind, wait, daily):
    t = classify(status, code, text)
    assert t is not None and (t.kind, t.wait, t.daily) == (kind, wait, daily)


def test_a_named_reset_time_is_kept_as_the_time():
    t = classify("NO", "OVERQUOTA", f"Daily download quota used up; resets at {RESET}")
    assert (t.kind, t.daily, t.wait) == ("quota", True, None)
    assert t.reset_at == datetime(2026, 12, 8, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("status, code, text", [
    ("OK", None, "Request is throttled. Suggested Backoff Time: 10 milliseconds"),  # OK is never a refusal
    ("NO", None, "Mailbox doesn't exist: Foo"),
    ("NO", "AUTHENTICATIONFAILED", "Authentication failed."),
    ("NO", "OVERQUOTA", "Mailbox is full"),  # RFC 5530: storage is full; no wait lifts it
    ("NO", "LIMIT", "Too many flags in this mailbox"),  # an implementation limit, not a rate
    ("NO", "ALERT", "Your password expires in 3 days"),
    ("BYE", None, "Logging out"),
    ("BAD", None, "Error in IMAP command UID: Invalid arguments"),
])
def test_other_refusals_are_not_throttling(status, code, text):
    assert classify(status, code, text) is None


def test_refusal_gives_throttled_for_a_throttle_and_protocol_error_otherwise():
    throttled = refusal("o365", Tagged(b"A1", "NO", None, "Request is throttled. Suggested Backoff Time: 1500 "
                                                          "milliseconds"), "fetching messages")
    assert isinstance(throttled, Throttled) and isinstance(throttled, ConnectError)
    assert not isinstance(throttled, ProtocolError)  # never taken for one bad folder or one refused change
    assert throttled.wait == 1.5 and throttled.kind == "throttled"
    assert "account 'o365'" in throttled.message and "fetching messages" in throttled.message
    assert "waiting 1.5 s" in throttled.message and throttled.hint
    other = refusal("o365", Tagged(b"A1", "NO", None, "Some other problem"), "fetching messages")
    assert type(other) is ProtocolError


def test_an_untagged_bye_with_a_code_is_read():
    exc = untagged_throttle("g", "BYE", "[UNAVAILABLE] Server shutting down for maintenance", "listing folders")
    assert isinstance(exc, Throttled) and exc.kind == "unavailable"
    assert untagged_throttle("g", "BYE", "[UNAVAILABLE unterminated", "x") is None


def _throttled(**kw) -> Throttled:
    return Throttled("t", **kw)


def test_a_named_wait_is_never_shortened_and_jittered_by_at_most_a_quarter():
    rng = random.Random(7)
    waits = [pacing.resume_at(_throttled(wait=2.0), 0, 1000.0, rng) - 1000.0 for _ in range(200)]
    assert min(waits) >= 2.0 and max(waits) <= 2.5 and len(set(waits)) > 100


def test_without_a_named_wait_the_backoff_grows_to_its_cap():
    rng = random.Random(1)
    first = [pacing.resume_at(_throttled(), n, 0.0, rng) for n in range(12)]
    assert 5.0 <= first[0] <= 6.25 and 10.0 <= first[1] <= 12.5
    assert all(300.0 <= w <= 375.0 for w in first[7:])


def test_a_daily_quota_waits_for_its_reset_or_an_hour_and_more():
    rng = random.Random(3)
    at = pacing.resume_at(_throttled(reset_at=5000.0, daily=True), 0, 1000.0, rng)
    assert 5000.0 <= at <= 5060.0
    unnamed = [pacing.resume_at(_throttled(daily=True), n, 0.0, rng) for n in (0, 1, 10)]
    assert 3600 <= unnamed[0] <= 4500 and 7200 <= unnamed[1] <= 9000 and 86400 <= unnamed[2] <= 108000
    # a reset time already past: resume now, not in the past
    assert 1000.0 <= pacing.resume_at(_throttled(reset_at=10.0, daily=True), 0, 1000.0, rng) <= 1000.0


def test_the_rate_limit_lets_a_burst_through_then_keeps_the_average():
    from mailsync.imap.pace import RateLimit

    pace = RateLimit(1000)
    assert pace.pause(1000, 0.0) == 0.0  # one second's worth at once
    assert pace.pause(500, 0.0) == 0.5  # then the rate: 500 more bytes take half a second
    assert pace.pause(500, 0.5) == 0.5  # after that half second's pause: the next 500 bytes wait as long
    assert pace.pause(500, 2.0) == 0.0  # a second later than that, 1,000 bytes had come back
    assert pace.pause(100, 100.0) == 0.0  # a long pause refills at most one second's worth


def test_since_criterion_names_the_day_max_age_ago():
    from mailsync.sync.limits import since_criterion

    now = datetime(2026, 12, 7, 19, 0, tzinfo=timezone.utc)
    assert since_criterion(90 * 86400, now) == "SINCE 8-Sep-2026"
    assert since_criterion(3600, datetime(2026, 1, 1, 0, 30, tzinfo=timezone.utc)) == "SINCE 31-Dec-2025"


def test_a_push_connection_ended_by_a_throttle_is_recognised_from_its_reason():
    from mailsync.push.daemon import _throttle_in

    ended = _throttle_in("o365", "the server said BYE: Request is throttled. Suggested Backoff Time: 2000 milliseconds")
    assert isinstance(ended, Throttled) and ended.wait == 2.0
    assert _throttle_in("o365", "the server said BYE: Autologout; idle for too long") is None
    assert _throttle_in("o365", None) is None
