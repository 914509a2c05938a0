"""The dry run's view of messages larger than max_size (rules H1 and H3 of mailsync.sync.heads):
which new messages a sync would place by their header section, and which bodies of messages held
so it would download now that max_size allows them.

Owns: those counts, as DryHeads, a mixin of dry_run._DryRun (its account, store connection and
plan). Must not: change the store or the server (SEARCH and FETCH of headers only, as the dry run).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from mailsync.store import headers_only, tables
from mailsync.sync import plan as rules
from mailsync.sync.dry_plan import FolderPlan
from mailsync.sync.heads import larger_criteria


class DryHeads:
    """Rules H1 and H3 in a dry run (see the module's docstring)."""

    def _larger(self, conn, uids: list[int] | None) -> list[int]:
        """Rule H1: of ``uids`` (None: all), those a sync holds by their headers alone."""
        if self.account.max_size is None or (uids is not None and not uids):
            return []
        acc = self.account
        found = conn.uid_search(larger_criteria(acc.max_age, acc.max_size, datetime.now(timezone.utc)))
        if uids is None:
            return sorted(found)
        found = set(found)
        return [u for u in uids if u in found]

    def _heads(self, conn, folder, fp: FolderPlan, uids: list[int]) -> None:
        """Rule H1: new messages placed by their header section; a body the store holds is linked (N5, N1)."""
        if not uids:
            return
        headers = rules.only_asked(conn.fetch_headers(uids), uids)
        self._new_messages(folder, fp, self._gmail_links(conn, fp, uids, headers), headers, take=self._head)

    def _head(self, fp: FolderPlan, uid: int, it) -> None:
        fp.heads.append(uid)
        self.plan.heads += 1
        self.plan.new_messages += 1

    def _completed(self, folder_id: int, fp: FolderPlan) -> None:
        """Rule H3: the bodies of the folder's messages held by their headers that max_size allows now."""
        if self.c is None:
            return
        waiting = headers_only.waiting(self.c, folder_id, self.account.max_size)
        pl = tables.placements.c
        sizes = dict(self.c.execute(select(pl.uid, pl.size).where(pl.folder_id == folder_id,
                                                                  pl.uid.in_(sorted(waiting)))).all())
        for uid in sorted(waiting):
            fp.downloads.append((uid, sizes.get(uid, 0)))
            fp.completed.append(uid)
            self.plan.downloads += 1
            self.plan.completed += 1
            self.plan.download_bytes += sizes.get(uid, 0)
