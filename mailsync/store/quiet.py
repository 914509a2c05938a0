"""A SQLite store read and written through the standard library, for a sync that changes nothing.

Owns: the few statements the no-change check needs (mailsync.sync.quick): the store's schema
revision, one account's folder checkpoints and whether anything waits in the store (a queued local
change, a tombstone to expire, a folder gone or set aside), the state of its live Maildir mirror
(the fingerprint a scan recorded, and how many of each folder's messages the mirror's rows
match, counted as mailsync.mirror.live counts them), and the sync_runs row of a run that
found nothing to do, written as repositories.start_run/finish_run write it (the column meanings are
tables.py's; a test compares the two rows).
Must not: import SQLAlchemy (not importing it is what this module is for: about 0.25 s of CPU at
start-up), decide whether a folder changed (plan.py does), or write anything but that one row.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mailsync.store.revision import HEAD_REVISION

__all__ = ["MirrorQuiet", "QuietState", "StoredFolder", "connect", "read_mirror", "read_state", "record_run",
           "throttled"]

# How SQLAlchemy's DateTime stores a value in SQLite (its default storage format; the zone is dropped:
# every time the store writes is UTC, tables.utcnow)
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True)
class StoredFolder:
    raw_name: str
    name: str
    delimiter: str | None
    special_use: str | None
    mailboxid: str | None
    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None
    messages: int | None


@dataclass(frozen=True)
class QuietState:
    account_id: int
    folders: tuple[StoredFolder, ...]  # every folder of the account (all of them "ok")


def connect(path: Path) -> sqlite3.Connection:
    """A connection to an existing store file (never creates one), set up as the store's engine sets
    up its own (db._sqlite_pragmas) for what this module does."""
    db = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=30, isolation_level=None)
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def read_state(db: sqlite3.Connection, name: str, host: str, username: str,
               limits: str | None = None) -> QuietState | None:
    """The account's folders, or None when a sync would have more to do than compare checkpoints:
    the schema is not at this code's revision, the account has no row yet (or its host or user
    changed, or the server throttled it last time), a folder was last synced under other download
    limits than ``limits`` (mailsync.config.limits.limits_key), a local change is queued, a tombstone waits to expire, or a folder is gone or set
    aside (its status is not "ok")."""
    revision = db.execute("SELECT version_num FROM alembic_version").fetchone()
    if revision is None or revision[0] != HEAD_REVISION:
        return None
    row = db.execute("SELECT id, host, username, throttled_until FROM accounts WHERE name = ?", (name,)).fetchone()
    if row is None or (row[1], row[2]) != (host, username) or row[3] is not None:  # throttled: the engine decides
        return None
    account_id = row[0]
    if db.execute("SELECT 1 FROM pending_ops WHERE account_id = ? AND state IN ('pending', 'sent') LIMIT 1",
                  (account_id,)).fetchone():
        return None
    rows = db.execute("SELECT id, status, limits, raw_name, name, delimiter, special_use, mailboxid, uidvalidity, "
                      "uidnext, highestmodseq, messages FROM folders WHERE account_id = ?", (account_id,)).fetchall()
    if any(r[1] != "ok" or (r[2] is not None and r[2] != limits) for r in rows):
        return None
    mine = {r[0] for r in rows}
    # tombstones are few, found by their index (repositories.TOMBSTONES: "IS NOT NULL" would read every row)
    if any(fid in mine for (fid,) in db.execute("SELECT folder_id FROM placements WHERE tombstone_run > 0")):
        return None
    return QuietState(account_id, tuple(StoredFolder(*r[3:]) for r in rows))


def throttled(path: Path, name: str) -> bool:
    """Does the store say the account waits out a throttle (accounts.throttled_until set)? False
    when it cannot tell (no such account, a store of an older revision, a busy or damaged file)."""
    try:
        db = connect(path)
    except sqlite3.Error:
        return False
    try:
        row = db.execute("SELECT throttled_until FROM accounts WHERE name = ?", (name,)).fetchone()
    except sqlite3.Error:
        return False
    finally:
        db.close()
    return row is not None and row[0] is not None


@dataclass(frozen=True)
class MirrorQuiet:
    snapshot: str  # mirror_snapshots.snapshot (mailsync.mirror.snapshot)
    rows: frozenset[tuple[int, str]]  # the mirror's folders: (store folder id, Maildir path)
    folders: tuple[tuple[int, str, str | None], ...]  # the account's store folders: (id, name, delimiter)
    live: dict[int, int]  # store folder id -> its live placements
    mirrored: dict[str, int]  # Maildir path -> the mirror's rows of files in it (state ok)
    matching: dict[int, int]  # store folder id -> its live placements a row of its Maildir folder mirrors
    # with the same body and flags


def read_mirror(db: sqlite3.Connection, account_id: int) -> MirrorQuiet | None:
    """The account's Maildir mirror as the no-change check needs it, or None when no scan vouched
    for it since it last changed (no mirror_snapshots row), deletions are held, or a client's new
    file waits to be appended (a claim)."""
    row = db.execute("SELECT snapshot FROM mirror_snapshots WHERE account_id = ?", (account_id,)).fetchone()
    if row is None:
        return None
    if db.execute("SELECT 1 FROM mirror_folders WHERE account_id = ? AND held IS NOT NULL LIMIT 1",
                  (account_id,)).fetchone():
        return None
    if db.execute("SELECT 1 FROM mirror_files WHERE account_id = ? AND state = 'append' LIMIT 1",
                  (account_id,)).fetchone():
        return None
    rows = frozenset(db.execute("SELECT folder_id, path FROM mirror_folders WHERE account_id = ?",
                                (account_id,)).fetchall())
    folders = tuple(db.execute("SELECT id, name, delimiter FROM folders WHERE account_id = ? AND status != 'gone'",
                               (account_id,)).fetchall())
    ids = [f[0] for f in folders]
    marks = ", ".join("?" * len(ids))
    # every placement counted on the (folder_id, uid) index, less the tombstones (few, on theirs):
    # "tombstone_run IS NULL" would read every row
    live = dict(db.execute(f"SELECT folder_id, count(*) FROM placements WHERE folder_id IN ({marks}) "
                           "GROUP BY folder_id", ids).fetchall()) if ids else {}
    for (fid,) in db.execute("SELECT folder_id FROM placements WHERE tombstone_run > 0"):
        if fid in live:
            live[fid] -= 1
    # held by their headers alone (larger than max_size): no file until the body comes (store/headers_only.py);
    # a range on the body index, as headers_only.held_key
    for (fid,) in db.execute("SELECT folder_id FROM placements WHERE body_sha256 >= 'h' AND body_sha256 < 'i' "
                             "AND tombstone_run IS NULL"):
        if fid in live:
            live[fid] -= 1
    mirrored = dict(db.execute("SELECT folder, count(*) FROM mirror_files WHERE account_id = ? AND state = 'ok' "
                               "GROUP BY folder", (account_id,)).fetchall())
    matching = dict(db.execute(
        "SELECT mf.folder_id, count(*) FROM mirror_files mm JOIN placements p ON p.id = mm.placement_id "
        "JOIN mirror_folders mf ON mf.account_id = mm.account_id AND mf.path = mm.folder "
        "WHERE mm.account_id = ? AND mm.state = 'ok' AND p.tombstone_run IS NULL AND p.folder_id = mf.folder_id "
        "AND p.body_sha256 = mm.sha256 AND p.flags = mm.flags GROUP BY mf.folder_id", (account_id,)).fetchall())
    return MirrorQuiet(row[0], rows, folders, live, mirrored, matching)


def record_run(db: sqlite3.Connection, account_id: int, started: datetime, finished: datetime, folders: int) -> None:
    """The sync_runs row of a run that found nothing to do: status ok, ``folders`` synced, every other
    count 0 (one statement: committed on its own)."""
    db.execute("INSERT INTO sync_runs (account_id, started_at, finished_at, status, folders, new_messages, flag_changes, "
               "expunged, bytes_fetched, bodies_downloaded, moves, pushed, conflicts, error, notes) "
               "VALUES (?, ?, ?, 'ok', ?, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL)",
               (account_id, started.strftime(_SQLITE_DATETIME), finished.strftime(_SQLITE_DATETIME), folders))
