"""The SQL of channels (mailsync.channel): the messages a channel reads on each side, and what it
writes for a copy (the destination's placement waiting for its APPEND, the journal entry, the pair).

Owns: those statements. Must not: decide what to copy (mailsync.channel.plan does), open or commit
transactions (the caller's unit of work does), or speak IMAP.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import bindparam, delete, func, insert, or_, select, update

from mailsync.store import headers_only, tables
from mailsync.store import repositories as repo
from mailsync.store.repositories import Db
from mailsync.store.tables import utcnow

_A, _F, _P, _B, _O = (tables.accounts.c, tables.folders.c, tables.placements.c, tables.bodies.c,
                      tables.pending_ops.c)
_CP = tables.channel_pairs.c


def account_by_name(db: Db, name: str) -> int | None:
    return db.scalar(select(_A.id).where(_A.name == name))


def unpaired_messages(db: Db, channel: str, account_id: int, *, side: str = "src") -> Iterator:
    """The account's live messages on the server (a UID, no tombstone) that ``channel`` has not
    paired yet on ``side`` ("src": the channel's source; "dest": a two-way channel's destination):
    (placement id, folder name, sha256, Message-ID, size, flags, internaldate). A message held by
    its headers alone (larger than max_size, store/headers_only.py) is not one of them until its
    body is in the store: it is neither copied nor paired from this side before (held_messages
    still lists it, so that the other side's copy of it pairs with it instead of being appended)."""
    column = _CP.src_placement_id if side == "src" else _CP.dest_placement_id
    paired = select(column).where(_CP.channel == channel, column.isnot(None))
    return db.execute(
        select(_P.id, _F.name, _P.body_sha256, _B.message_id, _P.size, _P.flags, _P.internaldate)
        .join(tables.folders, _F.id == _P.folder_id).join(tables.bodies, _B.sha256 == _P.body_sha256)
        .where(_F.account_id == account_id, _F.status != "gone", _P.uid.isnot(None), _P.tombstone_run.is_(None),
               _P.id.not_in(paired), headers_only.whole_key(_P.body_sha256))
        .order_by(_F.name, _P.uid))


def paired_ids(db: Db, channel: str, side: str) -> set[int]:
    column = _CP.src_placement_id if side == "src" else _CP.dest_placement_id
    return set(db.scalars(select(column).where(_CP.channel == channel, column.isnot(None))))


def held_messages(db: Db, account_id: int) -> Iterator:
    """Every live message of the account, copies still waiting for their APPEND included:
    (folder name, placement id, sha256, Message-ID, size)."""
    return db.execute(
        select(_F.name, _P.id, _P.body_sha256, _B.message_id, _P.size)
        .join(tables.folders, _F.id == _P.folder_id).join(tables.bodies, _B.sha256 == _P.body_sha256)
        .where(_F.account_id == account_id, _F.status != "gone", _P.tombstone_run.is_(None)))


def add_folder_to_create(db: Db, account_id: int, name: str, raw_name: str, delimiter: str | None,
                         kind: str, args: str) -> int:
    """A destination folder the channel needs, with its journal entry (mkdir): its id."""
    folder_id = db.execute(insert(tables.folders).values(account_id=account_id, name=name, raw_name=raw_name,
                                                         delimiter=delimiter, fetched_uid=0, status="ok")
                           ).inserted_primary_key[0]
    db.execute(insert(tables.pending_ops).values(account_id=account_id, kind=kind, folder_id=folder_id, args=args,
                                                 state="pending", attempts=0, created_at=utcnow()))
    return folder_id


def add_copies(db: Db, account_id: int, copies: list[tuple[int, str, str, str | None, int]], kind: str,
               args: list[str]) -> list[int]:
    """The destination's placements of copies, waiting for their APPENDs (no UID yet), and the journal
    entries that send them: ``copies`` are (folder id, sha256, flags, internaldate, size), ``args``
    each entry's arguments. Returns the placements' ids, in order. A few multi-row statements
    (repositories.insert_rows), whose RETURNING names each new placement by (folder id, sha256):
    one body is copied once into one folder (rule C3 of mailsync.channel.plan); copies that break
    that take Core's ordered path."""
    if not copies:
        return []
    if len({(f, sha) for f, sha, *_ in copies}) == len(copies):
        made = {(f, sha): pid for pid, f, sha in repo.insert_rows(
            db, "placements", repo.PLACEMENT_COLUMNS,
            [(f, None, sha, flags, None, None, idate, size) for f, sha, flags, idate, size in copies],
            returning=("id", "folder_id", "body_sha256"))}
        ids = [made[(f, sha)] for f, sha, *_ in copies]
    else:
        ids = list(db.execute(insert(tables.placements).returning(_P.id, sort_by_parameter_order=True),
                              [{"folder_id": f, "uid": None, "body_sha256": sha, "flags": flags, "base_flags": None,
                                "modseq": None, "internaldate": idate, "size": size}
                               for f, sha, flags, idate, size in copies]).scalars())
    now = repo.driver_value(db, tables.pending_ops.c.created_at, utcnow())
    repo.insert_rows(db, "pending_ops", ("account_id", "kind", "folder_id", "placement_id", "args", "state",
                                         "attempts", "created_at"),
                     [(account_id, kind, f, pid, a, "pending", 0, now) for (f, *_), pid, a in zip(copies, ids, args)])
    return ids


_PAIR_COLUMNS = ("channel", "src_placement_id", "dest_placement_id", "sha256", "created_at", "agreed_flags",
                 "dest_sha256", "src_folder_id", "dest_folder_id")


def add_pairs(db: Db, channel: str, pairs: list[tuple]) -> None:
    """(source placement id, destination placement id, sha256) of ``channel``; a two-way channel's
    add (agreed flags or None, source folder id, destination folder id[, the copy's own sha256 when it
    is another body, found by Message-ID and size])."""
    if pairs:
        now = repo.driver_value(db, tables.channel_pairs.c.created_at, utcnow())
        repo.insert_rows(db, "channel_pairs", _PAIR_COLUMNS, [
            (channel, p[0], p[1], p[2], now, p[3] if len(p) > 3 else None,
             p[6] if len(p) > 6 and p[6] != p[2] else None, p[4] if len(p) > 3 else None, p[5] if len(p) > 3 else None)
            for p in pairs])


def two_way_states(db: Db, channel: str, *, only_gone: bool = False) -> list[tuple]:
    """Each pair of ``channel`` for mailsync.channel.two_way: (pair id, (A folder id, folder name, UID,
    flags), the same of B, agreed flags, agreed A folder id, agreed B folder id, A's sha256, B's
    sha256); a side that is gone
    (deleted, tombstoned, or its folder gone) has folder id and name None. ``only_gone``: only the
    pairs with such a side."""
    src = tables.placements.alias("src")
    dst = tables.placements.alias("dst")
    sf = tables.folders.alias("sf")
    df = tables.folders.alias("df")
    rows = db.execute(
        select(_CP.id, sf.c.id, sf.c.name, sf.c.status, src.c.tombstone_run, src.c.uid, src.c.flags, src.c.body_sha256,
               df.c.id, df.c.name, df.c.status, dst.c.tombstone_run, dst.c.uid, dst.c.flags, dst.c.body_sha256,
               _CP.sha256, _CP.dest_sha256, _CP.agreed_flags, _CP.src_folder_id, _CP.dest_folder_id)
        .select_from(tables.channel_pairs)
        .outerjoin(src, src.c.id == _CP.src_placement_id).outerjoin(sf, sf.c.id == src.c.folder_id)
        .outerjoin(dst, dst.c.id == _CP.dest_placement_id).outerjoin(df, df.c.id == dst.c.folder_id)
        .where(_CP.channel == channel, *([or_(
            src.c.id.is_(None), sf.c.status == "gone", src.c.tombstone_run.isnot(None), src.c.body_sha256 != _CP.sha256,
            dst.c.id.is_(None), df.c.status == "gone", dst.c.tombstone_run.isnot(None),
            dst.c.body_sha256 != func.coalesce(_CP.dest_sha256, _CP.sha256))] if only_gone else []))
        .order_by(_CP.id))
    out = []
    for (pid, s_id, s_name, s_status, s_tomb, s_uid, s_flags, s_sha, d_id, d_name, d_status, d_tomb, d_uid, d_flags,
         d_sha, sha, dest_sha, agreed, agreed_s, agreed_d) in rows:
        # a placement id reused by another message (its own deleted) is not this pair's side
        s_live = s_name is not None and s_status != "gone" and s_tomb is None and s_sha == sha
        d_live = d_name is not None and d_status != "gone" and d_tomb is None and d_sha == (dest_sha or sha)
        out.append((pid, (s_id, s_name, s_uid, s_flags or "") if s_live else (None, None, None, ""),
                    (d_id, d_name, d_uid, d_flags or "") if d_live else (None, None, None, ""),
                    agreed, agreed_s, agreed_d, sha, dest_sha or sha))
    return out


def relink(db: Db, moves: list[tuple[int, str, int]]) -> None:
    """(pair id, "a" | "b", placement id): the pair's side is that placement now."""
    for pair_id, side, placement_id in moves:
        column = "src_placement_id" if side == "a" else "dest_placement_id"
        db.execute(update(tables.channel_pairs).where(_CP.id == pair_id).values({column: placement_id}))


def folder_ids(db: Db, account_id: int) -> dict[int, int]:
    """Placement id -> folder id, of the account's live placements."""
    return dict(db.execute(select(_P.id, _P.folder_id).join(tables.folders, _F.id == _P.folder_id)
                           .where(_F.account_id == account_id, _F.status != "gone",
                                  _P.tombstone_run.is_(None))).all())


def agree(db: Db, agreements: list[tuple[int, str, int, int]]) -> None:
    """(pair id, agreed flags, source folder id, destination folder id) of two-way pairs."""
    if agreements:
        db.execute(update(tables.channel_pairs).where(_CP.id == bindparam("pid")).values(
            agreed_flags=bindparam("flags"), src_folder_id=bindparam("sf"), dest_folder_id=bindparam("df")),
            [{"pid": p, "flags": f, "sf": s, "df": d} for p, f, s, d in agreements])


def folder_rows(db: Db, channel: str) -> list[tuple[int, int, int, str, str]]:
    """channel_folders of ``channel``: (row id, source folder id, destination folder id, agreed names)."""
    _CF = tables.channel_folders.c
    return [tuple(r) for r in db.execute(select(_CF.id, _CF.src_folder_id, _CF.dest_folder_id, _CF.src_name,
                                                _CF.dest_name).where(_CF.channel == channel).order_by(_CF.id))]


def link_folders(db: Db, channel: str, links: list[tuple[int, int, str, str]]) -> None:
    """(source folder id, destination folder id, source name, destination name) of ``channel``."""
    if links:
        db.execute(insert(tables.channel_folders), [
            {"channel": channel, "src_folder_id": s, "dest_folder_id": d, "src_name": sn, "dest_name": dn}
            for s, d, sn, dn in links])


def agree_folder_names(db: Db, names: list[tuple[int, str, str]]) -> None:
    """(row id, source name, destination name) now agreed."""
    _CF = tables.channel_folders.c
    for row_id, src_name, dest_name in names:
        db.execute(update(tables.channel_folders).where(_CF.id == row_id).values(src_name=src_name,
                                                                               dest_name=dest_name))


def pair_states(db: Db, channel: str) -> list[tuple]:
    """Each pair of ``channel``: (pair id, source folder or None when the source message is gone, its
    flags, destination folder or None when the copy is gone, the copy's UID, its flags)."""
    src = tables.placements.alias("src")
    dst = tables.placements.alias("dst")
    sf = tables.folders.alias("sf")
    df = tables.folders.alias("df")
    rows = db.execute(
        select(_CP.id, sf.c.name, sf.c.status, src.c.tombstone_run, src.c.flags,
               df.c.name, df.c.status, dst.c.tombstone_run, dst.c.uid, dst.c.flags)
        .select_from(tables.channel_pairs)
        .outerjoin(src, src.c.id == _CP.src_placement_id).outerjoin(sf, sf.c.id == src.c.folder_id)
        .outerjoin(dst, dst.c.id == _CP.dest_placement_id).outerjoin(df, df.c.id == dst.c.folder_id)
        .where(_CP.channel == channel).order_by(_CP.id))
    out = []
    for pid, s_name, s_status, s_tomb, s_flags, d_name, d_status, d_tomb, d_uid, d_flags in rows:
        s_live = s_name is not None and s_status != "gone" and s_tomb is None
        d_live = d_name is not None and d_status != "gone" and d_tomb is None
        out.append((pid, s_name if s_live else None, s_flags or "", d_name if d_live else None, d_uid, d_flags or ""))
    return out


def drop_pairs(db: Db, pair_ids: list[int]) -> None:
    if pair_ids:
        db.execute(delete(tables.channel_pairs).where(_CP.id.in_(pair_ids)))


def channel_counts(db: Db, channel: str) -> dict[str, int]:
    """pairs; copies still waiting for the server (pending, sent) and copies the server refused (failed)."""
    pairs = db.scalar(select(func.count()).select_from(tables.channel_pairs).where(_CP.channel == channel)) or 0
    states = dict(db.execute(
        select(_O.state, func.count()).select_from(tables.channel_pairs)
        .join(tables.pending_ops, _O.placement_id == _CP.dest_placement_id)
        .where(_CP.channel == channel, _O.kind == "append").group_by(_O.state)).all())
    return {"pairs": pairs, "waiting": states.get("pending", 0) + states.get("sent", 0),
            "failed": states.get("failed", 0)}
