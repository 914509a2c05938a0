"""The overall deadline of each IMAP command in progress, for the blocking shell.

Owns: how long a command may take (the account's command_deadline, by default DEADLINE_TIMEOUTS
times its timeout, plus one second for each deadline_rate bytes, by default DEADLINE_RATE, of answer
it asked for: a large FETCH gets all the time its bytes need, a server that streams lines nobody
asked for or drips a byte at a time does not), and the one thread per process that cuts a
connection whose command outlived its allowance. Must not: read or write the socket (it only calls
the ``cut`` it was given, which ends any read in progress).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from mailsync.config.model import AccountConfig

DEADLINE_TIMEOUTS = 2
DEADLINE_RATE = 32 * 1024


class Watchdog:
    """One connection's deadline. A read timeout alone never fires while bytes keep coming; the
    watcher thread calls ``cut()`` when the command in progress runs out of time."""

    def __init__(self, account: AccountConfig, cut: Callable[[], None]) -> None:
        self.cut = cut
        self.timeout = float(account.timeout or 60)
        deadline = getattr(account, "command_deadline", None)
        self.base = float(deadline) if deadline else DEADLINE_TIMEOUTS * self.timeout
        self.rate = getattr(account, "deadline_rate", None) or DEADLINE_RATE
        self.credit = 0  # bytes of answer asked for, received by the command in progress
        self.expired = False
        self._since: float | None = None

    def allowance(self) -> float:
        return self.base + self.credit / self.rate

    def begin(self) -> None:
        self.credit = 0
        self._since = time.monotonic()
        _WATCHER.add(self)

    def end(self) -> None:
        self._since = None
        _WATCHER.discard(self)

    def check(self, now: float) -> bool:
        """Called by the watcher: True (and the connection cut) when the command ran out of time."""
        since = self._since
        if since is None or now - since <= self.allowance():
            return False
        self.expired = True
        with contextlib.suppress(Exception):
            self.cut()
        return True


class _Watcher:
    """The one thread that checks every command in progress, TICK apart, and sleeps while there are none."""

    TICK = 0.25

    def __init__(self) -> None:
        self._active: set[Watchdog] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def add(self, dog: Watchdog) -> None:
        with self._lock:
            self._active.add(dog)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="imap-deadlines", daemon=True)
                self._thread.start()
            self._wake.notify()

    def discard(self, dog: Watchdog) -> None:
        with self._lock:
            self._active.discard(dog)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._active:
                    self._wake.wait()
                dogs = list(self._active)
            now = time.monotonic()
            tick = self.TICK
            for dog in dogs:
                tick = min(tick, dog.timeout / 4, dog.base / 4)
                if dog.check(now):
                    self.discard(dog)
            time.sleep(tick)


_WATCHER = _Watcher()
