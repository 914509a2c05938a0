"""Crash points: the test hook that kills a sync at a chosen step, as kill -9 would.

Owns: MAILSYNC_CRASH_AFTER (die at the Nth crash point passed), MAILSYNC_CRASH_AT (die at the first
crash point of that name, or "NAME:K" at its Kth), and their counts. Must not: do anything else; with
neither variable set a crash point is one compare. Call it as ``crash.point(name)`` (a module
attribute look-up), so that a test can replace ``crash.point`` for every module at once.
"""

from __future__ import annotations

import os

_after = int(os.environ.get("MAILSYNC_CRASH_AFTER") or 0)
_at_name, _, _at_count = (os.environ.get("MAILSYNC_CRASH_AT") or "").partition(":")
_at = int(_at_count or 1) if _at_name else 0
_seen = 0
_seen_named = 0


def point(name: str) -> None:
    """With MAILSYNC_CRASH_AFTER=N the process dies (os._exit(99), leaving what kill -9 would) at
    the Nth crash point it passes, as in isync's test suite; with MAILSYNC_CRASH_AT=NAME[:K], at the
    Kth (default first) crash point called NAME."""
    global _seen, _seen_named
    if _after:
        _seen += 1
        if _seen == _after:
            _die(_seen, name)
    if _at and name == _at_name:
        _seen_named += 1
        if _seen_named == _at:
            _die(_seen_named, name)


def _die(n: int, name: str) -> None:
    os.write(2, f"mailsync: crash point {n} ({name}) reached\n".encode())
    os._exit(99)
