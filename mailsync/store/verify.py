"""Check that every message body the store points at reads back with its SHA-256 (a header section
held alone, for a message larger than max_size, with its own key: store/headers_only.py); repair
what does not by forgetting it, so that the next sync downloads it again.

Owns: the walk over the bodies that live placements point at, and the repair (their placements
and body rows removed, their folders set to compare in full next time). Must not: speak IMAP,
print, or commit for the caller (the caller's unit of work commits).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mailsync.errors import StoreError
from mailsync.store.headers_only import headers_key, is_headers_key
from mailsync.store.models import Account, Body, Folder, PendingOp, Placement
from mailsync.store.repositories import LIVE, packs_of


_GROUP = 200  # bodies read from the database per query


@dataclass(frozen=True)
class Problem:
    account: str
    folder: str
    uid: int
    sha256: str
    error: str
    placement_id: int  # the row forget_bad_bodies removes


@dataclass
class VerifyResult:
    bodies: int = 0  # bodies read back
    nbytes: int = 0
    problems: list[Problem] = field(default_factory=list)  # one per placement of a bad body


def verify_bodies(session: Session, accounts: Sequence[str] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> VerifyResult:
    """Read back every body a live placement of these accounts (all when None) points at, and
    check it: a pack record's header and SHA-256, or a database row's SHA-256. ``progress(n,
    nbytes)`` is called after each body."""
    live = (select(Placement.body_sha256).join(Folder, Folder.id == Placement.folder_id)
            .join(Account, Account.id == Folder.account_id).where(*LIVE))
    if accounts is not None:
        live = live.where(Account.name.in_(list(accounts)))
    packs = packs_of(session)
    result = VerifyResult()
    bad: dict[str, str] = {}
    rows = session.execute(select(Body.sha256, Body.size, Body.pack, Body.pack_offset)
                           .where(Body.sha256.in_(live.distinct().scalar_subquery()))
                           .order_by(Body.pack, Body.pack_offset)).all()

    def checked(sha: str, size: int) -> None:
        result.bodies += 1
        result.nbytes += size
        if progress is not None:
            progress(result.bodies, result.nbytes)

    in_rows: list[tuple[str, int]] = []  # bodies kept in the database: read in groups, one query each
    for sha, size, pack, offset in rows:
        if pack is None:
            in_rows.append((sha, size))
            continue
        try:
            if packs is None:
                raise StoreError("this store keeps the body in a pack file, but was opened without them")
            packs.read(pack, offset, size, sha)  # checks the header and the SHA-256
        except StoreError as exc:
            bad[sha] = exc.message  # the fix is verify --repair (the CLI says so), not the reader's hint
        checked(sha, size)
    for i in range(0, len(in_rows), _GROUP):
        group = dict(in_rows[i:i + _GROUP])
        found = dict(session.execute(select(Body.sha256, Body.data).where(Body.sha256.in_(list(group)))).all())
        for sha, size in group.items():
            data = found.get(sha)
            if data is not None and is_headers_key(sha):  # a header section alone (max_size): its own key
                if headers_key(data, size) != sha:
                    bad[sha] = f"message {sha[:12]}'s header section in the database is corrupt (its key does not match)"
            elif data is None or len(data) != size or hashlib.sha256(data).hexdigest() != sha:
                bad[sha] = f"message {sha[:12]} in the database is corrupt (its SHA-256 or size does not match)"
            checked(sha, size)
    if bad:
        q = (select(Account.name, Folder.name, Placement.uid, Placement.body_sha256, Placement.id)
             .join(Folder, Folder.id == Placement.folder_id).join(Account, Account.id == Folder.account_id)
             .where(*LIVE, Placement.body_sha256.in_(list(bad))).order_by(Account.name, Folder.name, Placement.uid))
        if accounts is not None:
            q = q.where(Account.name.in_(list(accounts)))
        result.problems = [Problem(a, f, uid, sha, bad[sha], pid) for a, f, uid, sha, pid in session.execute(q)]
    return result


def forget_bad_bodies(session: Session, problems: Sequence[Problem]) -> tuple[int, int]:
    """Repair: remove the placements of these problems and, once nothing points at them, their
    bodies; their folders lose the checkpoints that let a sync skip or delta-read them (rules D1,
    D2), so the next sync compares them in full and downloads those messages again (rule M1).
    A placement that a local change still waits on (a pending operation) is kept: the sync that
    pushes the change comes first. Returns (placements removed, placements kept)."""
    if not problems:
        return 0, 0
    waiting = (select(PendingOp.id).where(PendingOp.placement_id == Placement.id,
                                          PendingOp.state.in_(("pending", "sent"))).exists())
    doomed = select(Placement.id, Placement.folder_id).where(
        Placement.id.in_([p.placement_id for p in problems]), ~waiting)
    ids, folder_ids = set(), set()
    for pid, fid in session.execute(doomed):
        ids.add(pid)
        folder_ids.add(fid)
    if ids:
        session.execute(delete(Placement).where(Placement.id.in_(ids)))
        session.execute(update(Folder).where(Folder.id.in_(folder_ids)).values(highestmodseq=None, messages=None))
    used = select(Placement.id).where(Placement.body_sha256 == Body.sha256).exists()
    session.execute(delete(Body).where(Body.sha256.in_(sorted({p.sha256 for p in problems})), ~used))
    return len(ids), len(problems) - len(ids)
