"""The limits a user sets on what a sync downloads: ``max_age`` (only mail newer than that, found by
``UID SEARCH SINCE``; what the store already holds stays) -- the rule and its I/O.

  A1  With max_age, a message is downloaded only when its INTERNALDATE is on or after the day
      max_age ago (SEARCH SINCE has day granularity, RFC 3501 6.4.4: the day itself counts). A
      message left out is not a deletion: the store keeps what it has, the server keeps it all.
  A2  A folder never read is downloaded by the UIDs SEARCH SINCE names, not with UID FETCH 1:*.
  A3  What the limits left out is counted per folder (messages on the server the store does not
      hold, as of the folder's last sync), for ``mailsync status``.

Owns: the SEARCH criterion (pure: since_criterion) and, as Limits, a mixin of engine.AccountSync, the
filtering of the UIDs to download. Must not: download (download.py does) or decide deletions.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

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


class Limits:
    """The max_age half of a sync (see the module's docstring)."""

    def _young_enough(self, conn: ImapSession, uids: list[int] | None) -> list[int] | None:
        """Rule A1: of ``uids`` (None: every message of the selected folder), those max_age allows;
        ``uids`` as they are without max_age."""
        max_age = self.account.max_age
        if max_age is None:
            return uids
        young = conn.uid_search(since_criterion(max_age, datetime.now(timezone.utc)))
        if uids is None:
            return sorted(young)
        allowed = set(young)
        return [u for u in uids if u in allowed]


def record_left_out(uow: UnitOfWork, folder_ids: dict[int, int]) -> None:
    """Rule A3, a store task: each folder's messages on the server (EXISTS at its SELECT) that the
    store does not hold, as max_age left them out; committed."""
    for folder_id, exists in folder_ids.items():
        held = store_tasks.live_count(uow.connection, folder_id)
        repo.set_left_out_age(uow.connection, folder_id, max(exists - held, 0))
    uow.commit()
