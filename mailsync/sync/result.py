"""What one account's sync reports: the result it returns and the observer it tells as it goes.

Owns: AccountResult (the counters, notes and folders set aside that the CLI, the daemon and the run
row show) and SyncObserver (progress callbacks). Must not: import the store or the IMAP layer: the
CLI's display and the no-change check (mailsync.sync.quick) use these without loading SQLAlchemy
(mailsync.sync.ledger, which the engine's threads write through, re-exports both).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["AccountResult", "SyncObserver"]


class SyncObserver:
    """Progress callbacks; the default does nothing. The CLI passes a rich progress display.
    Called from the sync thread and from the store worker's thread."""

    def account_started(self, account: str) -> None: ...
    def folder_started(self, account: str, folder: str, new: int) -> None: ...
    def messages_stored(self, account: str, folder: str, count: int, nbytes: int) -> None: ...
    # local messages APPENDed to the server (a channel's copies): folder_started and folder_done
    # frame them, under a label that is not a folder's name
    def messages_sent(self, account: str, label: str, count: int, nbytes: int) -> None: ...
    def folder_done(self, account: str, folder: str) -> None: ...
    def account_done(self, result: "AccountResult") -> None: ...


@dataclass
class AccountResult:
    account: str
    ok: bool = True
    error: str | None = None
    folders: int = 0
    new_messages: int = 0
    flag_changes: int = 0
    expunged: int = 0
    bytes_fetched: int = 0
    bodies_downloaded: int = 0
    moves: int = 0
    pushed: int = 0
    conflicts: int = 0
    commands: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Folders this run could not sync in full, each with its reason (held deletions, a name that
    # cannot be used, UIDVALIDITY set aside): the rest synced, so ``ok`` stays; the CLI exits 1.
    set_aside: list[str] = field(default_factory=list)
    # The server throttled the account (mailsync.errors.Throttled): the Unix time before which no
    # sync contacts it again (mailsync.sync.pacing); None when it did not.
    throttled_until: float | None = None

    def fail(self, message: str) -> None:
        if self.ok:
            self.ok, self.error = False, message

    def add(self, **counts: int) -> None:
        """Add to the counters (single-threaded use; a run's threads go through RunLedger.add)."""
        for name, n in counts.items():
            setattr(self, name, getattr(self, name) + n)
