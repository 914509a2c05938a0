"""Store-side steps of the rules that keep a misbehaving server from costing mail (plan.py, rules
M4 and G1-G2): lifting tombstones of UIDs listed again, counting a folder's live placements.

Owns: these few queries. Must not: decide (plan.py does), talk to a server, or commit (the caller's
unit of work does).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select, update

from mailsync.store import repositories as repo
from mailsync.store import tables


def restore_tombstones(db, folder_id: int, uids: Iterable[int]) -> list[int]:
    """Rule M4: lift the tombstones of the folder's placements whose UID is in ``uids``; the UIDs
    lifted, sorted. Only tombstones are looked up, and they are few (each lives one run)."""
    pl = tables.placements.c
    tombs = dict(db.execute(select(pl.uid, pl.id).where(pl.folder_id == folder_id, pl.uid.isnot(None),
                                                        pl.tombstone_run.isnot(None))).all())
    if not tombs:
        return []
    back = sorted(set(tombs) & set(uids))
    ids = [tombs[u] for u in back]
    for i in range(0, len(ids), 500):
        db.execute(update(tables.placements).where(pl.id.in_(ids[i:i + 500])).values(tombstone_run=None))
    return back


def live_count(db, folder_id: int) -> int:
    """How many placements of the folder are on the server, as far as the store knows."""
    pl = tables.placements.c
    return db.scalar(select(func.count()).select_from(tables.placements)
                     .where(pl.folder_id == folder_id, *repo.LIVE)) or 0
