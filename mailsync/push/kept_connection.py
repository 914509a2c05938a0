"""The sync's IMAP connection in the watch daemon, kept open between syncs of an account.

Owns: handing a healthy connection from one sync to the next (saving TCP, TLS and login), deciding
when a kept one may not be reused (idle too long, unread bytes such as a BYE, no UNSELECT), and
cutting the one in use at shutdown. Runs on the daemon's sync threads. Must not: sync, or speak
IMAP beyond UNSELECT and LOGOUT (mailsync.imap.connection does).
"""

from __future__ import annotations

import threading
import time

from mailsync.config.model import AccountConfig
from mailsync.errors import MailsyncError


def quick_logout(conn) -> None:
    """LOGOUT, giving up after 2 s (a kept connection may have died quietly)."""
    conn.set_timeout(2.0)
    conn.logout()


class SyncConnection:
    """The `connect`/`release` pair handed to AccountSync: a healthy connection is kept open after a
    clean sync and handed to the next one (saving TCP, TLS and login: about 20 ms of a 45 ms sync
    on loopback), unless it was idle for `idle_max`, has unread bytes (a BYE, say), or the server
    cannot UNSELECT. Also remembers the connection in use, so shutdown can cut it."""

    def __init__(self, keep: bool, idle_max: float) -> None:
        self.keep = keep
        self.idle_max = idle_max
        self._lock = threading.Lock()
        self._idle = None  # the kept connection
        self._idle_since = 0.0
        self.active = None  # the connection a running sync uses
        self.connect_error: BaseException | None = None  # what the last connect raised

    @property
    def holding(self) -> bool:
        return self._idle is not None

    def connect(self, account: AccountConfig):
        from mailsync.auth.login import open_connection

        with self._lock:
            conn, self._idle = self._idle, None
        if conn is not None and not self._usable(conn):
            conn.logout()
            conn = None
        self.connect_error = None
        if conn is None:
            try:
                conn = open_connection(account)
            except BaseException as exc:
                self.connect_error = exc
                raise
        self.active = conn
        return conn

    def _usable(self, conn) -> bool:
        if conn.broken or time.monotonic() - self._idle_since > self.idle_max:
            return False
        return not conn.has_unread()  # a kept connection gets nothing unasked but a BYE (or EOF)

    def release(self, conn, clean: bool) -> None:
        self.active = None
        if self.keep and clean and not conn.broken:
            try:
                kept = conn.unselect()
            except MailsyncError:
                kept = False
            if kept:
                with self._lock:
                    self._idle, self._idle_since = conn, time.monotonic()
                return
        conn.logout()

    def close(self) -> None:
        with self._lock:
            conn, self._idle = self._idle, None
        if conn is not None:
            quick_logout(conn)

    def take_stale(self):
        """The kept connection if it was idle longer than idle_max (the caller logs it out), else None."""
        with self._lock:
            if self._idle is not None and time.monotonic() - self._idle_since > self.idle_max:
                conn, self._idle = self._idle, None
                return conn
        return None

    def discard(self) -> None:
        """Drop the kept connection without a LOGOUT (it may hang): the push connection on the same
        path just died, so this one is suspect too."""
        with self._lock:
            conn, self._idle = self._idle, None
        if conn is not None:
            conn.shutdown()

    def cut(self) -> None:
        """Make a sync blocked on the socket fail at once (shutdown, or a silent dead path)."""
        conn = self.active
        if conn is not None:
            conn.shutdown()
