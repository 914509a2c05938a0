"""Giving the memory freed after a burst of syncs back to the system (glibc's malloc_trim).

Owns: when the watch daemon trims (TrimPolicy, pure: times in, yes or no) and the call itself
(``trim``, a no-op where the C library is not glibc). Must not: free anything Python still holds, or
run on the event loop (a trim walks the heap: a few milliseconds for a few hundred MB; the daemon
runs it on a thread).

Why: the catch-up syncs after the start (and any burst later) allocate and free far more than the
daemon keeps: TLS handshakes, SQLAlchemy rows, 256 KiB socket reads. glibc keeps what was freed in
its heaps, mostly as pages no longer used but still resident, so the daemon at rest held about twice
what it uses (scripts/bench-watch: 400 accounts, 211 MB resident, 117 MB after one malloc_trim(0)).
Trimming once the syncs have been quiet for QUIET seconds, at most every MIN_GAP seconds, returns
those pages; the next burst takes them back from the system as needed. The kept sync connections
closed once idle (two minutes after the syncs) free their TLS state too, and are followed by a trim
the same way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from dataclasses import dataclass

QUIET = 2.0  # seconds without a sync running before a trim
MIN_GAP = 30.0  # seconds between trims at least


@dataclass
class TrimPolicy:
    """Trim after work that freed memory (syncs, kept sync connections closed once idle), once it has
    been quiet for ``quiet`` seconds, at most every ``min_gap``."""

    quiet: float = QUIET
    min_gap: float = MIN_GAP
    last_trim: float | None = None
    done_at_trim: int = 0

    def due(self, now: float, *, done: int, running: int, last_end: float | None) -> bool:
        """``done``: pieces of work finished so far; ``running``: syncs in progress; ``last_end``:
        when the last piece ended (the daemon's clock)."""
        if running or done == self.done_at_trim or last_end is None:
            return False
        if now - last_end < self.quiet:
            return False
        return self.last_trim is None or now - self.last_trim >= self.min_gap

    def done(self, now: float, done: int) -> None:
        self.last_trim, self.done_at_trim = now, done


_malloc_trim = None


def _load():
    global _malloc_trim
    if _malloc_trim is None:
        fn = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                fn = getattr(libc, "malloc_trim", False)  # glibc only (musl has none)
                if fn:
                    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
            except OSError:
                fn = False
        _malloc_trim = fn
    return _malloc_trim


def trim() -> bool:
    """Return the free memory at the top and inside glibc's heaps to the system; False where
    there is no malloc_trim."""
    fn = _load()
    if not fn:
        return False
    fn(0)
    return True
