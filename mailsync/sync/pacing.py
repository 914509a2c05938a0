"""How long to wait when a server throttles an account: a Throttled error and the count of throttled
runs in a row in, the time to resume at out. Pure (the random source and the clock are passed in).

Owns: the waiting policy. A wait the server names is taken with up to 25% jitter added, never
less (many accounts of one tenant throttled together do not all come back in the same instant);
without one, a jittered exponential backoff: 5 s doubling up to 5 minutes for throttling and
connection limits; for a daily quota with no reset time named, 1 hour doubling up to 24 hours; a
named reset time is waited for, plus up to a minute. Must not: sleep, or recognise throttling
(mailsync.imap.throttle does).
"""

from __future__ import annotations

import random

from mailsync.errors import Throttled

SHORT = (5.0, 300.0)  # throttled / connections / unavailable / limit without a named wait: (first, cap)
QUOTA = (3600.0, 86400.0)  # a daily quota without a named reset
JITTER = 0.25  # the fraction added on top of a named or computed wait, at most
RESET_JITTER = 60.0  # seconds added after a named reset time, at most


def resume_at(exc: Throttled, attempt: int, now: float, rng: random.Random | None = None) -> float:
    """The Unix time to resume at after ``exc``; ``attempt``: how many throttled runs came right
    before this one (0 for the first)."""
    r = (rng or random).random()
    if exc.reset_at is not None:
        return max(exc.reset_at, now) + r * min(RESET_JITTER, max(exc.reset_at - now, 0.0) * JITTER)
    if exc.wait is not None:
        return now + exc.wait * (1 + JITTER * r)
    first, cap = QUOTA if exc.daily else SHORT
    base = cap if attempt > 32 else min(cap, first * 2 ** attempt)
    return now + base * (1 + JITTER * r)
