"""The sync of an account in which nothing changed, settled from one LIST-STATUS answer.

A sync with nothing to do costs one round trip (DESIGN: cost follows change); what it cost besides
was start-up: SQLAlchemy and the engine, about 0.3 s of CPU, to learn that every folder's counters
are where the store left them. This check reads those counters from a SQLite store through the
standard library (mailsync.store.quiet), lists the folders, and when the engine would have found
nothing to do -- no local change queued, no tombstone to expire, the same folders, every one
unchanged by rule D1 -- it records the run as the engine would (one sync_runs row, status ok) and
returns the same AccountResult. Otherwise it answers None, having changed nothing, and the caller
runs the engine, on the same connection, which starts from this listing (hand_over_listing) when
the check read one.

With a live Maildir mirror (an account's ``maildir``) the sync also ends here when the mirror
would do nothing (mirror_quiet): no client changed the Maildir since a scan last vouched for it,
and the mirror's rows match the store's messages.

Owns: when a sync may end at the listing, and that ending. Must not: decide what plan.py decides
(folder selection, the folder plan, rule D1 are asked of it), write anything but the run's row, or
import SQLAlchemy or the engine (mailsync.cli.main calls it before either is loaded).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from mailsync.config.limits import limits_key
from mailsync.config.model import AccountConfig
from mailsync.store import quiet
from mailsync.sync import crash
from mailsync.sync import plan as rules
from mailsync.sync.result import AccountResult

__all__ = ["quiet_sync"]


def quiet_sync(db_path: Path, account: AccountConfig, connection: Callable[[], object | None]) -> AccountResult | None:
    """The account's sync when nothing changed on either side, else None (nothing done).

    ``db_path``: the SQLite store file; ``connection()``: the account's logged-in connection, or
    None when logging in failed (the engine then reports it). The connection is logged out when the
    sync ends here, and left open for the engine otherwise. An IMAP error of the listing propagates
    (the caller hands it to the engine, which reports it as its own)."""
    if crash._after:  # crash tests count the engine's steps
        return None
    t0 = time.monotonic()
    started = datetime.now(timezone.utc)
    try:
        db = quiet.connect(db_path)
    except sqlite3.Error:
        return None
    try:
        state = quiet.read_state(db, account.name, account.host, account.username,
                                 limits_key(account.max_age, account.max_size))
        if state is None:
            return None
        if account.mirror.maildir is not None and not mirror_quiet(db, state.account_id, account):
            return None
        conn = connection()
        if conn is None or not (conn.has("LIST-STATUS") and conn.condstore):
            return None
        base = conn.commands
        listed = conn.list_folders(handed=True)  # the early login's, if it listed already
        handed = conn.commands == base  # that LIST was sent for this sync: it counts among its commands
        remote = [f for f in listed if f.selectable and rules.folder_selected(f.name, account.folders, account.exclude)]
        if conn.unlisted or not nothing_to_do(remote, state.folders):
            conn.hand_over_listing()  # the engine's pull starts from this listing, not another LIST
            return None
        conn.logout()
        result = AccountResult(account=account.name, folders=len(remote), commands=conn.commands - base + handed)
        result.seconds = time.monotonic() - t0
        quiet.record_run(db, state.account_id, started, datetime.now(timezone.utc), len(remote))
    except sqlite3.Error:  # a busy or damaged store: the engine says what is wrong
        return None
    finally:
        db.close()
    return result


def nothing_to_do(remote, stored: tuple[quiet.StoredFolder, ...]) -> bool:
    """Would the engine's pull do nothing? The folder plan (rules F1/F2) creates, renames, updates
    and drops nothing, no MAILBOXID is new, and every folder is unchanged (rule D1)."""
    local = {f.raw_name: f for f in stored}
    plan = rules.plan_folders([rules.FolderView(f.raw_name, f.name, f.delimiter, f.special_use) for f in remote],
                              {n: rules.FolderView(f.raw_name, f.name, f.delimiter, f.special_use)
                               for n, f in local.items()})
    if plan.create or plan.update or plan.drop:
        return False
    for f in remote:
        known = local[f.raw_name]
        if f.mailboxid and f.mailboxid != known.mailboxid:
            return False
        checkpoint = rules.FolderCheckpoint(known.uidvalidity, known.uidnext, known.highestmodseq, known.messages)
        if not rules.folder_unchanged(checkpoint, f.status, False):
            return False
    return True


def mirror_quiet(db: sqlite3.Connection, account_id: int, account: AccountConfig) -> bool:
    """Would the account's Maildir mirror do nothing, in a sync where the server changed nothing?
    Its scan would find no client change: the fingerprint the last scan that found none recorded
    still holds (mailsync.mirror.snapshot); and its write would find every folder in step, as
    LiveMirror._in_step counts it: a mirror folder for each store folder, no other, and each
    folder's live placements mirrored one by one, with their bodies and flags (a store changed
    without the mirror, by a channel's sync say, is not)."""
    from mailsync.mirror import maildir, snapshot  # here: only an account with a mirror needs them

    state = quiet.read_mirror(db, account_id)
    root, layout = snapshot.mirror_root(account)
    if state is None or not snapshot.unchanged(root, layout, state.snapshot):
        return False
    paths = {fid: maildir.folder_path(maildir.folder_parts(name, delimiter), layout)
             for fid, name, delimiter in state.folders}
    if state.rows != frozenset(paths.items()):
        return False
    return all(state.live.get(fid, 0) == state.mirrored.get(path, 0) == state.matching.get(fid, 0)
               for fid, path in paths.items())
