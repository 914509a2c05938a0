"""Bounded time and memory against a misbehaving server (tests/hostile_server.py): a server that
floods untagged lines, sends a line without end or drips a byte at a time is cut off by the
command's deadline (`command_deadline`, `deadline_rate`) with a clear error, holding nothing of
what it sent; a slow answer that keeps moving gets the time its bytes earn."""

from __future__ import annotations

import pytest

from hostile_support import fill, msg, server, store, stored, sync, truth, variant

__all__ = ["server", "store", "variant"]  # fixtures (hostile_support), used by name


# -- item: bounded time and memory ----------------------------------------------------------------

def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _flood(s, tag, cmd):
    s.send(s.select_answer(s._folder("INBOX")))
    chunk = b"* OK still here, and here, and here\r\n" * 2000
    try:
        while True:
            s.send(chunk)
    except OSError:
        return b""


def _long_line(s, tag, cmd):
    s.send(s.select_answer(s._folder("INBOX")) + b"* OK ")
    chunk = b"x" * (1 << 20)
    try:
        for _ in range(400):  # 400 MiB without a line end
            s.send(chunk)
    except OSError:
        pass
    return b""


def _drip(s, tag, cmd):
    import time

    try:
        s.send(s.select_answer(s._folder("INBOX")))
        for c in b"* OK [UNSEEN 1] an answer that never ends" * 100:
            s.send(bytes([c]))
            time.sleep(0.4)
    except OSError:
        pass
    return b""


@pytest.mark.parametrize("hook, what", [(_flood, "flood"), (_long_line, "long line"), (_drip, "drip")])
def test_a_command_has_a_deadline_and_bounded_memory(server, store, hook, what):
    """A server that streams untagged lines forever, sends a line of 400 MiB, or drips one byte at a
    time: the sync ends within a bounded time, with a clear error, and without holding what it read."""
    import threading
    import time

    fill(server, 3)
    server.script(r"^SELECT", hook, times=None)
    before = _peak_rss_mb()
    out = {}
    t0 = time.monotonic()
    t = threading.Thread(target=lambda: out.setdefault("r", sync(store, server, timeout=1)), daemon=True)
    t.start()
    t.join(30)
    took = time.monotonic() - t0
    assert "r" in out, f"{what}: the sync was still waiting after {took:.0f} s"
    r = out["r"]
    assert not r.ok and "internal error" not in r.error, r.error
    assert took < 20, took
    assert _peak_rss_mb() - before < 150, f"{what}: peak RSS grew by {_peak_rss_mb() - before:.0f} MB"


def _timed_sync(store, server, **kw):
    import time

    t0 = time.monotonic()
    r = sync(store, server, **kw)
    return r, time.monotonic() - t0


def test_a_shorter_command_deadline_ends_a_drip_sooner(server, store):
    """The SELECT answer drips a byte every 0.4 s (never silent for `timeout`): by default it is
    cut at twice the timeout (4 s); with command_deadline = 1 after about 1 s."""
    fill(server, 3)
    server.script(r"^SELECT", _drip, times=None)
    r, default = _timed_sync(store, server, timeout=2)
    assert not r.ok and "longer than allowed" in r.error, r.error
    r, short = _timed_sync(store, server, timeout=2, command_deadline=1.0)
    assert not r.ok and "longer than allowed" in r.error and "(1 s for" in r.error, r.error
    assert 3.5 <= default < 8 and short < 2.5, (default, short)


def _slow_fetch(s, tag, cmd):
    """A body FETCH answered honestly, one message every 0.4 s: slow, but always moving."""
    import time

    uid_set, _, items = cmd[len("UID FETCH "):].partition(" ")
    wanted = {m.uid for m in s._uids(uid_set)}
    try:
        for seq, m in enumerate(s.selected.messages, 1):
            if m.uid in wanted:
                s.send(s.fetch_response(seq, m, items))
                time.sleep(0.4)
    except OSError:
        return b""
    return s._ok(tag)


@pytest.mark.parametrize("setting", [{}, {"command_deadline": 20.0}, {"deadline_rate": 1024}],
                         ids=["default", "command_deadline", "deadline_rate"])
def test_a_longer_command_deadline_lets_a_slow_fetch_finish(server, store, setting):
    """Ten messages of 2 KiB, one every 0.4 s (4 s in all) with timeout = 1: by default the FETCH
    has 2 s plus 1 s a 32 KiB and is cut; a longer command_deadline, or a lower deadline_rate (a
    second for each KiB), lets it finish with every message stored."""
    for i in range(1, 11):
        server.add_message("INBOX", msg(i, size=230))
    server.script(r"^UID FETCH 1:\* \(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK\[\]", _slow_fetch)
    r = sync(store, server, timeout=1, **setting)
    if not setting:
        assert not r.ok and "longer than allowed" in r.error and "command_deadline" in r.error, r.error
        assert len(stored(store)) < 10
        return
    assert r.ok, r.error
    assert stored(store) == truth(server)
