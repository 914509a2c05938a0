"""The clock every timer of the daemon goes through, so that tests run 25-minute IDLE refreshes and
backoff schedules without waiting (as aioimaplib's tests do with a virtual event-loop clock).

Owns: `Clock` (what the daemon needs: `now()` and `sleep_until()`), `SystemClock` (the event loop's
monotonic time) and `ManualClock` (time moves only when a test calls `advance()`).
Must not: know anything about IMAP or accounts.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""

    async def sleep_until(self, when: float) -> None:
        """Return once now() >= when (at once if it already is)."""


class SystemClock:
    """The running loop's clock (time.monotonic)."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep_until(self, when: float) -> None:
        delay = when - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.now() + seconds)


class ManualClock:
    """A clock that a test moves: ``await clock.advance(1500)`` wakes every sleeper due by then, in
    order, letting the loop run between them so that what they do next happens at the right time."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._order), fut))
        await fut

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + seconds)

    def next_wakeup(self) -> float | None:
        """The earliest time a live sleeper waits for, or None."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float, *, settle: float = 0.0) -> None:
        """Move time forward by `seconds`, waking sleepers in deadline order. After each wake the
        loop runs for `settle` real seconds (0: just a few turns), so that I/O started by a woken
        task (e.g. a DONE sent to a real server) can complete before time moves on."""
        target = self._now + seconds
        while True:
            nxt = self.next_wakeup()
            if nxt is None or nxt > target:
                break
            self._now = max(self._now, nxt)
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, fut = heapq.heappop(self._sleepers)
                if not fut.done():
                    fut.set_result(None)
            await _settle(settle)
        self._now = target
        await _settle(settle)


async def _settle(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)
    else:
        for _ in range(5):
            await asyncio.sleep(0)
