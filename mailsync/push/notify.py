"""PostgreSQL LISTEN for the watch worker: a local change queued anywhere wakes its account at once,
and `mailsync workers reload` makes every worker read its config again.

Owns: one connection LISTENing on tables.LOCAL_CHANGES_CHANNEL (the pending_ops trigger NOTIFYs the
account id at each commit) and on CONFIG_CHANNEL, on a thread of its own, handing each account id
(or the reload request) to a callback; and sending the reload request (ask_reload). Must not: decide
what a wake-up or a reload does (the caller's callbacks do), or write any row.

The 200 ms poll of pending_ops (mailsync.push.daemon) stays as the net, run less often while this
listener is up: a notification is lost when no one is listening (a reconnect), never the change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from mailsync.push import logs
from mailsync.store.db import Store
from mailsync.store.tables import LOCAL_CHANGES_CHANNEL

log = logging.getLogger("mailsync.push")

CONFIG_CHANNEL = "mailsync_config"  # NOTIFYed by `mailsync workers reload`: every worker reads its config again


def ask_reload(store: Store) -> None:
    """NOTIFY every listening worker to read its config file again (delivered at commit)."""
    from sqlalchemy import text

    with store.engine.begin() as conn:
        conn.execute(text("SELECT pg_notify(:channel, 'reload')"), {"channel": CONFIG_CHANNEL})


class LocalChangeListener:
    """``start()`` a thread that calls ``on_change(account_id)`` for each NOTIFY; ``stop()``."""

    def __init__(self, store: Store, on_change: Callable[[int], None], *, retry: float = 2.0,
                 on_config: Callable[[], None] | None = None) -> None:
        self.store = store
        self.on_change = on_change
        self.on_config = on_config
        self.retry = retry
        self.listening = threading.Event()  # set while LISTEN is active
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mailsync-listen", daemon=True)

    def start(self) -> "LocalChangeListener":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            raw = None
            try:
                raw = self.store.engine.raw_connection()  # a pooled connection, kept for as long as this runs
                conn = raw.driver_connection
                conn.autocommit = True
                conn.execute(f"LISTEN {LOCAL_CHANGES_CHANNEL}")
                if self.on_config is not None:
                    conn.execute(f"LISTEN {CONFIG_CHANNEL}")
                self.listening.set()
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=0.5):
                        if note.channel == CONFIG_CHANNEL:
                            if self.on_config is not None:
                                self.on_config()
                            continue
                        try:
                            self.on_change(int(note.payload))
                        except ValueError:
                            pass
            except Exception as exc:  # the store went away: the poll covers until LISTEN is back
                self.listening.clear()
                logs.event(log, "store_error", logging.WARNING, doing="listening for local changes",
                           error=f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                self._stop.wait(self.retry)
            finally:
                self.listening.clear()
                if raw is not None:
                    try:
                        raw.invalidate()  # not back to the pool: it is in LISTEN and autocommit
                    except Exception:
                        pass
