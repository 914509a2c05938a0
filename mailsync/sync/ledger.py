"""What one account's sync reports, and the one object its two threads both write.

Owns: AccountResult (the counters, notes and folders set aside that the CLI, the daemon and the run
row show), SyncObserver (progress callbacks), and RunLedger: every write a run makes to what it
reports (counters, notes, set-aside folders, audit events, the bodies that lost a placement) goes
through the ledger's methods, under its lock. A sync has two threads (engine.py speaks IMAP; the
store worker runs the transactions of store_tasks.py); they share nothing else. Must not: decide
anything or speak IMAP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from mailsync.store import repositories as repo
from mailsync.store.uow import UnitOfWork
from mailsync.sync.result import AccountResult, SyncObserver  # noqa: F401 (re-exported: the API)


class RunLedger:
    """The run's AccountResult as its threads write it, plus the bodies left without a placement."""

    def __init__(self, result: AccountResult) -> None:
        self.result = result
        self.account_id: int | None = None
        self.run_id: int | None = None
        self._orphans: set[str] = set()
        self._lock = threading.Lock()

    def add(self, **counts: int) -> None:
        """Add to the counters (a bare ``+=`` from two threads could lose an update)."""
        with self._lock:
            self.result.add(**counts)

    def note(self, text: str) -> None:
        with self._lock:
            self.result.notes.append(text)

    def set_aside(self, text: str) -> None:
        """A folder this run could not sync in full, and why."""
        with self._lock:
            self.result.set_aside.append(text)

    def orphan(self, shas: Iterable[str]) -> None:
        """Bodies whose placement this run removed: dropped at the end of the run if nothing else
        refers to them."""
        with self._lock:
            self._orphans.update(shas)

    def orphans(self) -> set[str]:
        with self._lock:
            return set(self._orphans)

    def audit(self, uow: UnitOfWork, kind: str, detail: str, *, folder: str | None = None,
              uid: int | None = None) -> None:
        """An audit event in the store (in ``uow``'s transaction), and the same as a note of the run."""
        repo.add_audit_event(uow.connection, self.account_id, self.run_id, kind, detail, folder=folder, uid=uid)
        self.note(f"{kind}: {folder + ': ' if folder else ''}{detail}")
