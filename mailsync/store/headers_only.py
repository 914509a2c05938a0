"""Messages held by their header section alone: those larger than their account's max_size.

Such a message has its placement (UID, flags, size, INTERNALDATE) like any other, pointing at a
bodies row whose ``headers_only`` is set: its ``data`` is the header section the server sent for
BODY.PEEK[HEADER] (with the blank line that ends it), its ``size`` the whole message's RFC822.SIZE,
and its key ``h`` followed by 63 hex digits of the SHA-256 of the size and the header section
(headers_key). A real SHA-256 is 64 hex digits, so no such key can ever name a downloaded message:
two copies of one large message (two folders, Gmail labels) share their row, and a whole message
whose bytes happen to equal a header section is never mistaken for it.

When the whole message is fetched (``mailsync show``, or a sync after max_size was raised or
removed), complete() stores it content-addressed like every body and points at it everything that
pointed at the header section (placements, Gmail messages, channel pairs, mirror files), then drops
the header row, in the caller's transaction: a crash before its commit leaves the header section as
it was, and doing it again finds the body stored and changes nothing more.

Owns: the key, the row of a header section, those look-ups and complete(). Must not: speak IMAP,
open or commit transactions (the caller's unit of work does).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import and_, bindparam, delete, func, select, update

from mailsync.store import tables
from mailsync.store.repositories import Db, NewBody, built_once, store_bodies

_B, _P = tables.bodies.c, tables.placements.c
PREFIX = "h"


def headers_key(header: bytes, size: int) -> str:
    """The key of a message held by its header section ``header`` whose whole size is ``size`` (pure)."""
    return PREFIX + hashlib.sha256(b"%d\n" % size + bytes(header)).hexdigest()[:63]


def is_headers_key(key: str | None) -> bool:
    """Does this bodies key name a header section alone (pure)? A SHA-256 is lower-case hex."""
    return bool(key) and key[0] == PREFIX


def held_key(column):
    """SQL: ``column`` (a bodies key) names a header section alone. A range on the key, so that an
    index on the column answers it (placements' ix_placements_body) without reading every row."""
    return and_(column >= PREFIX, column < chr(ord(PREFIX) + 1))


def whole_key(column):
    """SQL: ``column`` (a bodies key) names a whole message (every SHA-256 in hex sorts before PREFIX)."""
    return column < PREFIX


def new_head(header: bytes, size: int, message_id: str | None) -> NewBody:
    """The bodies row of a message of ``size`` bytes held by its header section (pure)."""
    return NewBody(headers_key(header, size), size, message_id, bytes(header), headers_only=True)


def waiting(db: Db, folder_id: int, max_size: int | None) -> dict[int, str]:
    """UID -> key of the folder's live messages held by their header section whose whole size is
    within ``max_size`` (None: all of them): what a sync under that limit downloads now."""
    stmt = (select(_P.uid, _P.body_sha256).join(tables.bodies, _B.sha256 == _P.body_sha256)
            .where(_P.folder_id == folder_id, _P.uid.isnot(None), _P.tombstone_run.is_(None), _B.headers_only))
    if max_size is not None:
        stmt = stmt.where(_B.size <= max_size)
    return dict(db.execute(stmt).all())


def held_uids(db: Db, folder_id: int) -> set[int]:
    """The UIDs of the folder's live messages held by their header section."""
    return set(db.scalars(built_once(lambda: select(_P.uid).join(tables.bodies, _B.sha256 == _P.body_sha256).where(
        _P.folder_id == bindparam("_folder"), _P.uid.isnot(None), _P.tombstone_run.is_(None), _B.headers_only)),
        {"_folder": folder_id}))


def count_by_folder(db: Db, folder_ids: list[int]) -> dict[int, int]:
    """Folder id -> how many of its live messages are held by their header section (those with any)."""
    out: dict[int, int] = {}
    for i in range(0, len(folder_ids), 500):
        out.update(db.execute(select(_P.folder_id, func.count()).join(tables.bodies, _B.sha256 == _P.body_sha256)
                              .where(_P.folder_id.in_(folder_ids[i:i + 500]), _P.uid.isnot(None),
                                     _P.tombstone_run.is_(None), _B.headers_only)
                              .group_by(_P.folder_id)).all())
    return out


def key_of(db: Db, key: str) -> tuple[int, str | None] | None:
    """(whole size, Message-ID) of a header section's row; None when it is not (or no longer) one."""
    row = db.execute(select(_B.size, _B.message_id).where(_B.sha256 == key, _B.headers_only)).one_or_none()
    return None if row is None else (row.size, row.message_id)


def complete(db: Db, key: str, raw: bytes, message_id: str | None) -> str:
    """The whole message ``raw`` of the header section ``key``: stored, and named instead of ``key``
    wherever the store named it; the header row dropped. Returns its SHA-256. Idempotent: a key
    completed already names nothing, and the body is stored once."""
    sha = hashlib.sha256(raw).hexdigest()
    store_bodies(db, [NewBody(sha, len(raw), message_id, bytes(raw))])
    db.execute(update(tables.placements).where(_P.body_sha256 == key).values(body_sha256=sha))
    gm = tables.gmail_messages.c
    db.execute(update(tables.gmail_messages).where(gm.body_sha256 == key).values(body_sha256=sha))
    cp = tables.channel_pairs.c
    db.execute(update(tables.channel_pairs).where(cp.sha256 == key).values(sha256=sha))
    db.execute(update(tables.channel_pairs).where(cp.dest_sha256 == key).values(dest_sha256=sha))
    mm = tables.mirror_files.c
    db.execute(update(tables.mirror_files).where(mm.sha256 == key).values(sha256=sha))
    db.execute(delete(tables.bodies).where(and_(_B.sha256 == key, _B.headers_only)))
    return sha
