"""The limits a user sets on what a sync downloads: ``max_age`` (only mail newer than that) and
``max_size`` (only messages at most that large), both found by one ``UID SEARCH`` -- the rules and
their I/O.

  A1  With max_age, a message is downloaded only when its INTERNALDATE is on or after the day
      max_age ago (SEARCH SINCE has day granularity, RFC 3501 6.4.4: the day itself counts); with
      max_size, only when its RFC822.SIZE is at most max_size (NOT LARGER); a larger one gets its
      placement on its header section alone (rule H1, heads.py). A message left out is not a
      deletion: the store keeps what it has, the server keeps it all.
  A2  A folder never read is downloaded by the UIDs that SEARCH names, not with UID FETCH 1:*.
  A3  What the limits left out is counted per folder as of its last sync, for ``mailsync status``:
      by max_size, the messages LARGER than it that the store holds by their headers alone (rule
      H1, heads.py) or not at all; by max_age, the rest of what the store does not hold (EXISTS
      less the messages it holds, less those LARGER ones it does not hold).

Owns: the SEARCH criteria (pure: limit_criteria) and, as Limits, a mixin of engine.AccountSync, the
filtering of the UIDs to download. Must not: download (download.py does) or decide deletions.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from mailsync.config.limits import limits_key
from mailsync.store import headers_only
from mailsync.store import repositories as repo
from mailsync.sync import store_tasks

if TYPE_CHECKING:
    from mailsync.store.uow import UnitOfWork
    from mailsync.sync.session import ImapSession

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def since_criterion(max_age: int, now: datetime) -> str:
    """Rule A1: ``SINCE d-Mon-yyyy`` for the day ``max_age`` seconds before ``now`` (UTC)."""
    day = (now.astimezone(timezone.utc) - timedelta(seconds=max_age)).date()
    return f"SINCE {day.day}-{_MONTHS[day.month - 1]}-{day.year}"


def limit_criteria(max_age: int | None, max_size: int | None, now: datetime) -> str | None:
    """Rule A1: the SEARCH criteria of what the limits allow; None without limits."""
    parts = ([since_criterion(max_age, now)] if max_age is not None else []) + (
        [f"NOT LARGER {max_size}"] if max_size is not None else [])
    return " ".join(parts) or None


class Limits:
    """The limits half of a sync (see the module's docstring)."""

    def _within_limits(self, conn: ImapSession, uids: list[int] | None) -> list[int] | None:
        """Rule A1: of ``uids`` (None: every message of the selected folder), those the limits
        allow; ``uids`` as they are without limits."""
        criteria = limit_criteria(self.account.max_age, self.account.max_size, datetime.now(timezone.utc))
        if criteria is None:
            return uids
        allowed = conn.uid_search(criteria)
        if uids is None:
            return sorted(allowed)
        allowed = set(allowed)
        return [u for u in uids if u in allowed]

    def _count_left_out(self, conn: ImapSession, folder_id: int, exists: int, relimited: bool) -> None:
        """Rule A3's server half, right after the folder's SELECT: what record_left_out needs
        (``relimited``: the folder's last sync ran under other limits, whose record is replaced)."""
        acc = self.account
        if acc.max_age is None and acc.max_size is None and not relimited:
            return
        larger = conn.uid_search(f"LARGER {acc.max_size}") if acc.max_size is not None and exists else []
        self._left_out[folder_id] = (exists, larger if acc.max_size is not None else None,
                                     acc.max_age is not None, limits_key(acc.max_age, acc.max_size))


def record_left_out(uow: UnitOfWork, folders: dict[int, tuple]) -> None:
    """Rule A3, a store task: for each folder (id -> (EXISTS at its SELECT, the UIDs LARGER than
    max_size or None without max_size, whether max_age is set, the limits' key)) the messages the
    limits left out, and the limits; committed."""
    for folder_id, (exists, larger, aged, key) in folders.items():
        held = store_tasks.live_count(uow.connection, folder_id)
        by_size = None
        absent = 0  # LARGER and not held at all: older than max_age too
        if larger is not None:
            stored = set(repo.uid_flags(uow.connection, folder_id)) if larger else set()
            heads = headers_only.held_uids(uow.connection, folder_id) if larger else set()
            absent = sum(1 for uid in larger if uid not in stored)
            by_size = absent + sum(1 for uid in larger if uid in heads)
        by_age = max(exists - held - absent, 0) if aged else None
        repo.set_left_out(uow.connection, folder_id, by_age, by_size, key)
    uow.commit()
