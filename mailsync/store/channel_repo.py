"""The SQL of channels (mailsync.channel): the messages a channel reads on each side, and what it
writes for a copy (the destination's placement waiting for its APPEND, the journal entry, the pair).

Owns: those statements. Must not: decide what to copy (mailsync.channel.plan does), open or commit
transactions (the caller's unit of work does), or speak IMAP.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import delete, func, insert, select

from mailsync.store import tables
from mailsync.store.repositories import Db
from mailsync.store.tables import utcnow

_A, _F, _P, _B, _O = (tables.accounts.c, tables.folders.c, tables.placements.c, tables.bodies.c,
                      tables.pending_ops.c)
_CP = tables.channel_pairs.c


def account_by_name(db: Db, name: str) -> int | None:
    return db.scalar(select(_A.id).where(_A.name == name))


def unpaired_messages(db: Db, channel: str, account_id: int) -> Iterator:
    """The account's live messages on the server (a UID, no tombstone) that ``channel`` has not
    paired yet: (placement id, folder name, sha256, Message-ID, size, flags, internaldate)."""
    paired = select(_CP.src_placement_id).where(_CP.channel == channel)
    return db.execute(
        select(_P.id, _F.name, _P.body_sha256, _B.message_id, _P.size, _P.flags, _P.internaldate)
        .join(tables.folders, _F.id == _P.folder_id).join(tables.bodies, _B.sha256 == _P.body_sha256)
        .where(_F.account_id == account_id, _F.status != "gone", _P.uid.isnot(None), _P.tombstone_run.is_(None),
               _P.id.not_in(paired))
        .order_by(_F.name, _P.uid))


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
    each entry's arguments. Returns the placements' ids, in order."""
    if not copies:
        return []
    ids = list(db.execute(insert(tables.placements).returning(_P.id, sort_by_parameter_order=True),
                          [{"folder_id": f, "uid": None, "body_sha256": sha, "flags": flags, "base_flags": None,
                            "modseq": None, "internaldate": idate, "size": size}
                           for f, sha, flags, idate, size in copies]).scalars())
    now = utcnow()
    db.execute(insert(tables.pending_ops), [{"account_id": account_id, "kind": kind, "folder_id": f,
                                             "placement_id": pid, "args": a, "state": "pending", "attempts": 0,
                                             "created_at": now}
                                            for (f, *_), pid, a in zip(copies, ids, args)])
    return ids


def add_pairs(db: Db, channel: str, pairs: list[tuple[int, int | None, str]]) -> None:
    """(source placement id, destination placement id, sha256) of ``channel``."""
    if pairs:
        db.execute(insert(tables.channel_pairs), [{"channel": channel, "src_placement_id": s,
                                                   "dest_placement_id": d, "sha256": sha, "created_at": utcnow()}
                                                  for s, d, sha in pairs])


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
