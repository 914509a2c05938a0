"""Recognising a server that throttles: a response line's status, code and text in, a Throttle (or
None) out. Pure, so each provider's wording is a table row in tests/unit/test_throttle.py.

Owns: what counts as "slow down" or "come back later" in an IMAP answer, and the wait it names:
  - Microsoft 365 / Outlook.com: ``NO`` or ``BAD Request is throttled. Suggested Backoff Time: N
    milliseconds`` (often followed by ``BYE``), and ``BAD User is authenticated but not connected``
    (too many connections to the mailbox; no wait named);
  - RFC 5530 codes: [UNAVAILABLE] (a subsystem is down for now), [OVERQUOTA] (a quota, here read as
    a download quota when the answer names a reset or speaks of downloads/bandwidth), [LIMIT] when
    its text speaks of connections, bandwidth or a rate (other LIMITs, "too many flags", are
    refusals: waiting does not lift them);
  - Gmail: [THROTTLED], and [ALERT]s "Too many simultaneous connections", "Account exceeded command
    or bandwidth limits" (Gmail's daily bandwidth cap: a daily quota);
  - a wait named in the text: "Suggested Backoff Time: N milliseconds", "retry/try again in|after N
    (ms|seconds|minutes|hours)", "reset(s) at <ISO 8601 time>".
Must not: do I/O, sleep or decide how long to wait when no time is named (mailsync.sync.pacing does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from mailsync.errors import ProtocolError, Throttled
from mailsync.imap.values import parse_response_code

_BACKOFF_MS = re.compile(r"suggested\s+backoff\s+time:?\s*(\d{1,10})\s*(milliseconds|ms|seconds|s)\b", re.I)
_IN = re.compile(r"\b(?:in|after|for)\s+(\d{1,10}(?:\.\d+)?)\s*(milliseconds|ms|seconds|secs?|s|minutes|mins?|"
                 r"hours?|h)\b", re.I)
_AT = re.compile(r"\b(?:resets?|retry|try\s+again|available)\s+(?:at|after)\s+"
                 r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)", re.I)
_UNITS = {"ms": 0.001, "milliseconds": 0.001, "s": 1, "sec": 1, "secs": 1, "seconds": 1, "min": 60, "mins": 60,
          "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600}

_CONNECTIONS = ("too many simultaneous connections", "too many connections", "maximum number of connections",
                "user is authenticated but not connected", "connection limit")
_BANDWIDTH = ("bandwidth", "download limit", "download quota", "daily limit", "daily quota", "exceeded command")
_RATE = ("throttl", "rate limit", "too many requests", "too many commands", "slow down") + _CONNECTIONS + _BANDWIDTH


@dataclass(frozen=True, slots=True)
class Throttle:
    """What a throttling answer says: its kind, the wait it names (seconds, None when none), the
    reset time of a daily quota (Unix seconds) where named, and whether only a reset lifts it."""

    kind: str  # throttled | connections | quota | unavailable | limit
    wait: float | None
    reset_at: float | None
    daily: bool
    text: str  # the server's words, for the message


def classify(status: str, code: str | None, text: str) -> Throttle | None:
    """The Throttle an answer (tagged or untagged NO/BAD, or BYE) stands for, or None when it is
    not one. ``code``: its response code without brackets (``"OVERQUOTA"``, ``"LIMIT"``), if any."""
    if status.upper() not in ("NO", "BAD", "BYE"):
        return None
    name = (code or "").split(" ", 1)[0].upper()
    low = text.lower()
    wait, reset_at = _named_wait(text)
    words = text.strip()[:300]
    if "user is authenticated but not connected" in low or (
            name in ("ALERT", "LIMIT", "") and any(w in low for w in _CONNECTIONS)):
        return Throttle("connections", wait, reset_at, False, words)
    if "request is throttled" in low or name == "THROTTLED":
        return Throttle("throttled", wait, reset_at, False, words)
    if name == "OVERQUOTA" or (name in ("ALERT", "LIMIT", "") and any(w in low for w in _BANDWIDTH)):
        storage = name == "OVERQUOTA" and reset_at is None and wait is None and not any(
            w in low for w in _BANDWIDTH + ("download",))
        if storage:  # RFC 5530: the mailbox is full; no wait lifts that
            return None
        return Throttle("quota", wait, reset_at, True, words)
    if name == "UNAVAILABLE":
        return Throttle("unavailable", wait, reset_at, False, words)
    if name in ("LIMIT", "ALERT") and any(w in low for w in _RATE):
        return Throttle("limit", wait, reset_at, False, words)
    if name == "" and status.upper() != "BYE" and any(w in low for w in ("throttl", "rate limit", "too many requests")):
        return Throttle("throttled", wait, reset_at, False, words)
    return None


def _named_wait(text: str) -> tuple[float | None, float | None]:
    """(seconds to wait, reset time as Unix seconds) as the text names them; (None, None) when it
    names neither."""
    m = _BACKOFF_MS.search(text)
    if m:
        return int(m.group(1)) * _UNITS[m.group(2).lower()], None
    m = _AT.search(text)
    if m:
        stamp = m.group(1).replace(" ", "T").replace("Z", "+00:00")
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            return None, when.timestamp()
    m = _IN.search(text)
    if m:
        seconds = float(m.group(1)) * _UNITS[m.group(2).lower()]
        return seconds, None
    return None, None


HINTS = {
    "throttled": "the server limits how fast an account may work; mailsync waits and resumes by itself",
    "connections": "too many connections to this mailbox: close other mail clients, or lower max_connections "
                   "for this account",
    "quota": "the account's download quota is used up for now; mailsync resumes after it resets (lower "
             "max_download_rate or set max_size to spread a first sync over more days)",
    "unavailable": "the server is temporarily unavailable; mailsync retries with a growing delay",
    "limit": "the server says a limit was reached; mailsync retries with a growing delay",
}
_WHAT = {"throttled": "throttled the account", "connections": "refused: too many connections",
         "quota": "says the download quota is used up", "unavailable": "is temporarily unavailable",
         "limit": "says a limit was reached"}


def throttled_error(account: str, throttle: Throttle, doing: str) -> Throttled:
    """The Throttled error for ``throttle``, naming the account, what was being done and the wait."""
    if throttle.reset_at is not None:
        when = datetime.fromtimestamp(throttle.reset_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        wait = f"; it resets at {when}"
    elif throttle.wait is not None:
        wait = f"; it suggests waiting {throttle.wait:g} s"
    else:
        wait = ""
    return Throttled(f"account '{account}': the server {_WHAT[throttle.kind]} while {doing}{wait} "
                     f"(it said: {throttle.text})", hint=HINTS[throttle.kind], kind=throttle.kind,
                     wait=throttle.wait, reset_at=throttle.reset_at, daily=throttle.daily)


def refused_by_throttle(account: str, status: str, code: str | None, text: str, doing: str) -> Throttled | None:
    """The Throttled error an answer stands for, or None: classify and throttled_error in one."""
    throttle = classify(status, code, text)
    return None if throttle is None else throttled_error(account, throttle, doing)


def throttle_check(account: str, tagged, doing: str) -> None:
    """Raise the Throttled error a refused tagged answer stands for, if it stands for one."""
    throttled = refused_by_throttle(account, tagged.status, tagged.code, tagged.text, doing)
    if throttled is not None:
        raise throttled


def untagged_throttle(account: str, kind: str, text: str, doing: str) -> Throttled | None:
    """The Throttled error an untagged NO, BAD or BYE (``text``: what follows the kind word, with
    its [code]) stands for, or None."""
    try:
        code, words = parse_response_code(text)
    except ProtocolError:
        code, words = None, text
    return refused_by_throttle(account, kind, code, words, doing)
