"""Step 2 of a CRM run: bring crm_sources (one row per copy of a message) up to date with placements.

Owns: which placements are new (above the account's mark in crm_marks, or unread below it), which
sources changed (placement gone, another body under the id, moved folder, \\Answered or \\Draft
changed; one anti-join per account; a message held by its headers alone, larger than max_size,
whose body came has its facts read again), folder roles and their changes, and the insertion of sources
for new placements. The two-way sync's tombstones (``placements.tombstone_run`` set) are not copies.
Must not: parse a body (facts.py does, through the ``read_facts`` function it is handed), or write
to the sync engine's tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from mailsync.crm.identity import folder_role
from mailsync.crm.models import CrmMark, CrmSource
from mailsync.crm.queries import State, chunks, delete_messages, insert_ignore
from mailsync.store.headers_only import is_headers_key
from mailsync.store.models import Folder, Placement

__all__ = ["Scan", "add_sources", "scan_placements"]

_FLAG_ANSWERED = "\\Answered"
_FLAG_DRAFT = "\\Draft"
_EPOCH_CACHE: dict[str, int] = {}

# (placement id, account id, folder id, sha, flags, internaldate) of a placement with no source yet
FreshRow = tuple[int, int, int, str, str, str]


@dataclass
class Scan:
    changed: set[str] = field(default_factory=set)  # message keys whose copies changed or went
    fresh: list[FreshRow] = field(default_factory=list)  # placements that need a source
    roles: dict[int, str] = field(default_factory=dict)  # folder id -> role, every account


def _epoch(iso_text: str) -> int:
    got = _EPOCH_CACHE.get(iso_text)
    if got is None:
        try:
            got = int(datetime.fromisoformat(iso_text).timestamp())
        except ValueError:
            got = 0
        if len(_EPOCH_CACHE) > 100_000:
            _EPOCH_CACHE.clear()
        _EPOCH_CACHE[iso_text] = got
    return got


def _has_flag(flags: str, flag: str) -> bool:
    return flag.lower() in flags.lower().split()


def _roles(session: Session, account_id: int) -> dict[int, str]:
    return {fid: folder_role(su, name) for fid, su, name in session.execute(
        select(Folder.id, Folder.special_use, Folder.name).where(Folder.account_id == account_id))}


def _copies():
    return Placement.tombstone_run.is_(None)  # the two-way sync's tombstones are not copies


def _placement_rows(account_id: int):
    return (select(Placement.id, Placement.folder_id, Placement.body_sha256, Placement.flags, Placement.internaldate)
            .join(Folder, Folder.id == Placement.folder_id)
            .where(Folder.account_id == account_id, _copies()))


def scan_placements(session: Session, state: State, account_ids: Iterable[int]) -> Scan:
    """Sources brought up to date with placements (changed ones updated, gone ones deleted, marks
    moved); returns the changed message keys and the placements that still need a source."""
    scan = Scan()
    for account_id in sorted(account_ids):
        roles = _roles(session, account_id)
        scan.roles.update(roles)
        mark_row = session.get(CrmMark, account_id)
        mark = mark_row.placement_mark if mark_row is not None else 0
        new_rows = session.execute(_placement_rows(account_id).where(Placement.id > mark).order_by(Placement.id)).all()
        top = max([mark] + [r[0] for r in new_rows])
        _update_changed(session, scan, account_id, roles)
        _update_roles(session, state, scan, account_id, roles)
        scan.fresh.extend((pid, account_id, fid, sha, flags, idate) for pid, fid, sha, flags, idate in new_rows)
        _find_unread(session, scan, account_id, mark)
        if mark_row is None:
            session.add(CrmMark(account_id=account_id, placement_mark=top))
        elif top != mark:
            mark_row.placement_mark = top
    return scan


def _update_changed(session: Session, scan: Scan, account_id: int, roles: dict[int, str]) -> None:
    """Existing sources whose placement changed or went away."""
    answered = case((Placement.flags.contains(_FLAG_ANSWERED, autoescape=True), True), else_=False)
    draft = case((Placement.flags.contains(_FLAG_DRAFT, autoescape=True), True), else_=False)
    conds = [Placement.id.is_(None), Placement.body_sha256 != CrmSource.body_sha256,
             Placement.folder_id != CrmSource.folder_id, answered != CrmSource.answered,
             draft != CrmSource.draft, Placement.tombstone_run.is_not(None)]
    diff = session.execute(
        select(CrmSource.placement_id, CrmSource.message_key, Placement.id, Placement.folder_id,
               Placement.body_sha256, Placement.flags, Placement.internaldate, CrmSource.body_sha256,
               Placement.tombstone_run)
        .outerjoin(Placement, Placement.id == CrmSource.placement_id)
        .where(CrmSource.account_id == account_id, or_(*conds))).all()
    gone: list[int] = []
    reread: set[str] = set()
    for sid, key, pid, fid, sha, flags, idate, old_sha, tomb_run in diff:
        scan.changed.add(key)
        if pid is None or sha != old_sha or tomb_run is not None:
            gone.append(sid)
            if pid is not None and tomb_run is None:  # the id now holds another message
                scan.fresh.append((pid, account_id, fid, sha, flags, idate))
                if is_headers_key(old_sha) and not is_headers_key(sha):
                    reread.add(key)  # its body came (max_size): its facts are read again from the whole
        else:
            session.execute(update(CrmSource).where(CrmSource.placement_id == sid).values(
                folder_id=fid, role=roles.get(fid, "other"), answered=_has_flag(flags, _FLAG_ANSWERED),
                draft=_has_flag(flags, _FLAG_DRAFT)))
    if reread:
        delete_messages(session, sorted(reread))
    for chunk in chunks(gone):
        session.execute(delete(CrmSource).where(CrmSource.placement_id.in_(chunk)))


def _update_roles(session: Session, state: State, scan: Scan, account_id: int, roles: dict[int, str]) -> None:
    """Folders whose role changed (special-use or name): their sources' roles."""
    old_roles = state.get(f"roles:{account_id}", {})
    now_roles = {str(k): v for k, v in roles.items()}
    if old_roles and old_roles != now_roles:
        for fid, role in roles.items():
            if old_roles.get(str(fid)) not in (None, role):
                keys = session.scalars(select(CrmSource.message_key).where(CrmSource.folder_id == fid)).all()
                scan.changed.update(keys)
                session.execute(update(CrmSource).where(CrmSource.folder_id == fid).values(role=role))
    state.set(f"roles:{account_id}", now_roles)


def _find_unread(session: Session, scan: Scan, account_id: int, mark: int) -> None:
    """SQLite hands out max(rowid)+1: once the top placements are gone, new ones can get ids at or
    below the mark. Sources and placements then disagree in number; find those unread."""
    n_place = session.scalar(select(func.count()).select_from(Placement).join(Folder, Folder.id == Placement.folder_id)
                             .where(Folder.account_id == account_id, _copies()))
    n_src = session.scalar(select(func.count()).select_from(CrmSource).where(CrmSource.account_id == account_id))
    ours = sum(1 for r in scan.fresh if r[1] == account_id)
    if n_place == n_src + ours:
        return
    seen = {r[0] for r in scan.fresh}
    stmt = (_placement_rows(account_id).outerjoin(CrmSource, CrmSource.placement_id == Placement.id)
            .where(Placement.id <= mark, CrmSource.placement_id.is_(None)))
    scan.fresh.extend((pid, account_id, fid, sha, flags, idate)
                      for pid, fid, sha, flags, idate in session.execute(stmt) if pid not in seen)


def add_sources(session: Session, scan: Scan, read_facts: Callable[[list[str]], dict[str, str]]) -> set[str]:
    """Sources for the new placements; ``read_facts`` turns the bodies not yet known into facts and
    returns sha -> message key. Returns the keys of the messages that got a source."""
    if not scan.fresh:
        return set()
    shas = sorted({r[3] for r in scan.fresh})
    known: dict[str, str] = {}
    for chunk in chunks(shas):
        known.update(session.execute(select(CrmSource.body_sha256, CrmSource.message_key)
                                     .where(CrmSource.body_sha256.in_(chunk))).all())
    known.update(read_facts([s for s in shas if s not in known]))
    rows = []
    for pid, account_id, fid, sha, flags, idate in scan.fresh:
        rows.append({"placement_id": pid, "account_id": account_id, "folder_id": fid,
                     "message_key": known[sha], "body_sha256": sha,
                     "role": scan.roles.get(fid, "other"), "draft": _has_flag(flags, _FLAG_DRAFT),
                     "answered": _has_flag(flags, _FLAG_ANSWERED), "internaldate": _epoch(idate)})
    insert_ignore(session, CrmSource.__table__, rows, ["placement_id"])
    return {r["message_key"] for r in rows}
