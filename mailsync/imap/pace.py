"""A download rate limit (the account's ``max_download_rate``, bytes a second, for metered links):
a token bucket, pure (the clock is passed in).

Owns: how long to pause after reading n bytes so that the average stays at or under the rate, with
bursts of at most one second's worth. Must not: sleep or read (mailsync.imap.connection pauses
between literals, so the socket's buffer fills and TCP slows the server down).
"""

from __future__ import annotations


class RateLimit:
    """``pause(n, now)`` after reading n bytes: the seconds to wait before reading on."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self.tokens = self.burst
        self.at: float | None = None

    def pause(self, n: int, now: float) -> float:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
