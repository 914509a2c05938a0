"""When the watch daemon gives freed memory back to the system (mailsync.push.memory.TrimPolicy),
and that the call itself works where glibc is the C library."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

from mailsync.push.memory import TrimPolicy, trim


def test_no_trim_before_any_sync():
    p = TrimPolicy(quiet=2.0, min_gap=30.0)
    assert not p.due(100.0, done=0, running=0, last_end=None)


def test_trim_once_the_syncs_have_been_quiet():
    p = TrimPolicy(quiet=2.0, min_gap=30.0)
    assert not p.due(10.0, done=5, running=1, last_end=9.0)  # one still running
    assert not p.due(10.0, done=5, running=0, last_end=9.0)  # quiet for 1 s only
    assert p.due(11.0, done=5, running=0, last_end=9.0)


def test_no_second_trim_without_a_sync_since_the_last():
    p = TrimPolicy(quiet=2.0, min_gap=30.0)
    p.done(11.0, 5)
    assert not p.due(500.0, done=5, running=0, last_end=9.0)


def test_at_most_one_trim_per_gap():
    p = TrimPolicy(quiet=2.0, min_gap=30.0)
    p.done(11.0, 5)
    assert not p.due(20.0, done=6, running=0, last_end=15.0)  # a sync since, but 9 s after the last trim
    assert p.due(41.0, done=6, running=0, last_end=15.0)


@pytest.mark.skipif(not sys.platform.startswith("linux") or "glibc" not in " ".join(
    __import__("platform").libc_ver()) or ctypes.util.find_library("c") is None, reason="glibc only")
def test_trim_returns_freed_pages_to_the_system():
    def rss_kb() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    # many small blocks (below the mmap threshold: from the heap), then all but every 64th freed, so
    # the heap cannot shrink from the top: only a trim gives the pages between them back
    blocks = [bytearray(b"x" * 4000) for _ in range(40_000)]
    keep = blocks[::64]
    del blocks
    before = rss_kb()
    assert trim() is True
    after = rss_kb()
    assert before - after > 50_000, (before, after)  # of about 160 MB freed, most back to the system
    assert len(keep) == 625
