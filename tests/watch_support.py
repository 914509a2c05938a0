"""Helpers for the watch-daemon tests: the daemon on a thread of its own, waiting for a condition with
its latency measured, and looking at the store and the server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from helpers import REPO, client_for
from mailsync.push.backoff import BackoffPolicy
from mailsync.push.daemon import WatchDaemon
from mailsync.push.settings import WatchSettings
from mailsync.store.models import Account, Body, Folder, Placement
from mailsync.store.uow import UnitOfWork

#: Fast fault handling for tests (the defaults are minutes).
FAST = WatchSettings(keepalive=2.0, response_timeout=2.0, connect_timeout=5.0,
                     backoff=BackoffPolicy(initial=0.2, maximum=1.0), stable_after=1.0)


class RunningDaemon:
    """``with RunningDaemon(store, accounts) as d: ...`` -- the daemon runs on its own thread and loop."""

    def __init__(self, store, accounts, *, settings: WatchSettings | None = None, clock=None) -> None:
        self.store, self.accounts = store, accounts
        self.settings, self.clock = settings or FAST, clock
        self.daemon: WatchDaemon | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="watch-daemon", daemon=True)
        self._up = threading.Event()

    def _main(self) -> None:
        async def run() -> None:
            self.loop = asyncio.get_running_loop()
            self.daemon = WatchDaemon(self.store, self.accounts, settings=self.settings, clock=self.clock)
            self._up.set()
            await self.daemon.run()

        try:
            asyncio.run(run())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            self._up.set()

    def __enter__(self) -> "RunningDaemon":
        if os.environ.get("MAILSYNC_TEST_LOGS"):  # MAILSYNC_TEST_LOGS=1 pytest -s -p no:logging: the daemon's log
            from mailsync.push import logs

            logs.setup("text", logging.INFO)
        self._thread.start()
        assert self._up.wait(10), "the daemon did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self, timeout: float = 10.0) -> float:
        t0 = time.monotonic()
        if self.loop is not None and self.daemon is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.daemon.request_stop, "test")
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the daemon did not stop"
        if self.error is not None:
            raise self.error
        return time.monotonic() - t0

    def watcher(self, name: str):
        assert self.daemon is not None
        return self.daemon.watchers[name]

    def wait_connected(self, names=None, timeout: float = 15.0) -> None:
        def ok() -> bool:
            if self.daemon is None or not self.daemon.watchers:
                return False
            # the daemon adds its watchers one by one, on its own thread: one not there yet is not ready
            watchers = dict(self.daemon.watchers)
            ws = [watchers.get(n) for n in (names or watchers)]
            # connected, and the catch-up sync that follows the connect has finished
            return all(w is not None and w.health.connected and w.sync_count > 0 and not w._wake.is_set()
                       and not w.syncing for w in ws)
        wait_until(ok, timeout, "the daemon to connect and catch up")


def wait_until(predicate: Callable[[], object], timeout: float, what: str = "the condition",
               interval: float = 0.01) -> float:
    """Poll until `predicate()` is true; returns the seconds it took. AssertionError after `timeout`."""
    t0 = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def stored_flags(store, account: str, message_id: str) -> list[str] | None:
    """The flags of the live placement of the message with this Message-ID, or None when not stored."""
    with UnitOfWork(store) as uow:
        row = uow.session.execute(
            select(Placement.flags).join(Body, Body.sha256 == Placement.body_sha256)
            .join(Folder, Folder.id == Placement.folder_id).join(Account, Account.id == Folder.account_id)
            .where(Account.name == account, Body.message_id == message_id, Placement.uid.isnot(None),
                   Placement.tombstone_run.is_(None))).first()
    return None if row is None else row[0].split()


def stored_ids(store, message_ids) -> set[str]:
    """Those of `message_ids` that have a live placement (any account): one query for many."""
    with UnitOfWork(store) as uow:
        return set(uow.session.scalars(
            select(Body.message_id).join(Placement, Placement.body_sha256 == Body.sha256)
            .where(Body.message_id.in_(list(message_ids)), Placement.uid.isnot(None),
                   Placement.tombstone_run.is_(None))))


def message(n: int, tag: str = "w") -> tuple[bytes, str]:
    mid = f"<{tag}{n}.{time.time_ns()}@example.org>"
    raw = (f"From: sender{n}@example.org\r\nTo: me@example.org\r\nMessage-ID: {mid}\r\nSubject: watch {n}\r\n\r\n"
           f"body {n}\r\n").encode()
    return raw, mid


class OtherClient:
    """Another IMAP client of a harness user, logged in up front so that timing starts at APPEND."""

    def __init__(self, user) -> None:
        self.client = client_for(user)

    def append(self, folder: str, raw: bytes) -> float:
        t = time.monotonic()
        self.client.append(folder, raw)
        return t

    def uid_of(self, folder: str, message_id: str) -> int:
        self.client.select_folder(folder)
        (uid,) = self.client.search(["HEADER", "Message-ID", message_id])
        return uid

    def flags(self, folder: str, uid: int) -> list[str]:
        self.client.select_folder(folder, readonly=True)
        data = self.client.fetch([uid], ["FLAGS"])[uid][b"FLAGS"]
        return sorted(f.decode() for f in data if f.lower() != b"\\recent")

    def add_flags(self, folder: str, uid: int, flags: list[str]) -> float:
        self.client.select_folder(folder)
        t = time.monotonic()
        self.client.add_flags([uid], [f.encode() for f in flags])
        return t

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:
            pass


class Daemon:
    """`python -m mailsync watch` in the background, its stderr (JSON lines) collected in a file."""

    def __init__(self, config: Path, env: dict, tmp_path: Path, *args: str) -> None:
        self.log_path = tmp_path / f"watch-{secrets.token_hex(3)}.log"
        full_env = dict(os.environ, **env)
        full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "mailsync", "--config", str(config), "watch",
                                      "--log-format", "json", *args],
                                     stdout=subprocess.DEVNULL, stderr=self.log_file, env=full_env)

    def events(self) -> list[dict]:
        out = []
        text = self.log_path.read_text(errors="replace")
        lines = text.splitlines()
        if lines and not text.endswith("\n"):  # a line being written as we read: next time
            lines.pop()
        for line in lines:
            out.append(json.loads(line))  # every line is one JSON object
        return out

    def wait_for(self, event: str, timeout: float = 20.0, **fields) -> dict:
        found: dict = {}

        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.proc.returncode}):\n{self.log_path.read_text()}")
            for e in self.events():
                if e["event"] == event and all(e.get(k) == v for k, v in fields.items()):
                    found.update(e)
                    return True
            return False

        wait_until(seen, timeout, f"log event {event} {fields}", interval=0.02)
        return found

    def stop(self, sig=signal.SIGTERM) -> tuple[int, float]:
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(10)
        finally:
            self.log_file.close()
        return rc, time.monotonic() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.log_file.close()
