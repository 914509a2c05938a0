"""Reconnect delays: jittered exponential backoff, capped (pure: the random source is injected).

Owns: the schedule. Must not: sleep (the daemon sleeps on its clock) or decide when to give up
(it never does; an account whose credentials fail is retried on the slow schedule).

"Full jitter" (AWS architecture blog, "Exponential Backoff And Jitter"): the n-th delay is uniform in
[base_n * (1 - jitter), base_n] with base_n = min(maximum, initial * multiplier ** n), so many
accounts cut off at once (a server restart) do not all come back in the same instant, while the
delay still grows and stays under the cap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    initial: float = 1.0  # seconds before the first retry (before jitter)
    maximum: float = 300.0  # the cap
    multiplier: float = 2.0
    jitter: float = 0.5  # the fraction of each delay that is random: 0 = none, 1 = full jitter

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"bad backoff policy {self!r}: need 0 < initial <= maximum, multiplier >= 1, "
                             f"0 <= jitter <= 1")

    def base(self, attempt: int) -> float:
        """The delay before retry number `attempt` (0-based) without jitter."""
        if attempt > 64:  # multiplier ** attempt would overflow long before; the cap holds anyway
            return self.maximum
        return min(self.maximum, self.initial * self.multiplier ** attempt)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        base = self.base(attempt)
        r = (rng or random).random()
        return base * (1 - self.jitter) + base * self.jitter * r


@dataclass
class Backoff:
    """One connection's retry state: `next_delay()` after each failure, `reset()` after a success."""

    policy: BackoffPolicy
    rng: random.Random | None = None  # None: the random module's shared generator (one Random is 2.5 KB,
    # and the daemon keeps three Backoffs per account)
    attempt: int = 0

    def next_delay(self) -> float:
        d = self.policy.delay(self.attempt, self.rng)
        self.attempt += 1
        return d

    def reset(self) -> None:
        self.attempt = 0


#: Network trouble: 1 s, 2 s, 4 s ... up to 5 minutes.
NETWORK = BackoffPolicy(initial=1.0, maximum=300.0)
#: Refused credentials: retried slowly (1 minute doubling up to an hour), so a wrong password is
#: not hammered against the server (which may lock the account) while it is being fixed.
CREDENTIALS = BackoffPolicy(initial=60.0, maximum=3600.0)
