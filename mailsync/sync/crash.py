"""Crash points: the test hook that kills a sync at its Nth step, as kill -9 would.

Owns: MAILSYNC_CRASH_AFTER and the count of crash points passed. Must not: do anything else; with
the variable unset a crash point is one integer compare. Call it as ``crash.point(name)`` (a module
attribute look-up), so that a test can replace ``crash.point`` for every module at once.
"""

from __future__ import annotations

import os

_after = int(os.environ.get("MAILSYNC_CRASH_AFTER") or 0)
_seen = 0


def point(name: str) -> None:
    """With MAILSYNC_CRASH_AFTER=N the process dies (os._exit(99), leaving what kill -9 would) at
    the Nth crash point it passes, as in isync's test suite."""
    global _seen
    if _after:
        _seen += 1
        if _seen == _after:
            os.write(2, f"mailsync: crash point {_seen} ({name}) reached\n".encode())
            os._exit(99)
