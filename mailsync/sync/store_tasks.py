"""The sync's transactions on the store: each a function the store worker runs, taking values and
returning values, so that engine.py (the IMAP thread) and the store worker share nothing but what
they hand each other and the run's RunLedger.

Owns: the store side of a sync run (the folder plan carried out, a folder's reconciliation, flag
pushes recorded, folders completed, UIDVALIDITY re-matches, links of recognised messages, held
deletions, the clean-up at the end) and StoreSide, the state only these tasks use (the run's ids,
the placements with flag changes to push, the placements expunged in this run, the held masses of
deletions). Must not: speak IMAP, decide (plan.py does), or be called from the IMAP thread except
through the StoreWorker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, select, update

from mailsync.config.model import AccountConfig
from mailsync.errors import ProtocolError
from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.store.tables import utcnow
from mailsync.store.uow import UnitOfWork
from mailsync.sync import crash, gmail
from mailsync.sync import plan as rules
from mailsync.sync.ledger import RunLedger, SyncObserver
from mailsync.sync.message import message_id
from mailsync.sync.undo import L4_ERROR, settle_orphaned_flag_changes


@dataclass
class StoreSide:
    """What the store tasks of one run share; read and written on the store worker's thread only."""

    account: AccountConfig
    account_id: int
    run_id: int
    ledger: RunLedger
    observer: SyncObserver
    bodies_before_run: bool
    allow_mass_delete: bool = False  # rule G2: apply deletions of most of a folder
    pending_flags: dict[int, set[int]] = field(default_factory=dict)  # folder id -> placements to push
    expunged: set[int] = field(default_factory=set)  # placements tombstoned as expunged in this run
    mass: dict[int, tuple[str, list[int], int]] = field(default_factory=dict)  # folder id -> (name, UIDs, live): G2


@dataclass
class SyncFolder:
    """One folder to sync, as the store knows it."""

    id: int
    raw_name: str
    name: str
    status: str
    reason: str | None
    checkpoint: rules.FolderCheckpoint | None
    pending: bool  # local flag changes waiting to be pushed
    placements: bool = True  # False: the folder holds none (see rule D4)
    limits: str | None = None  # the download limits its last sync ran under (rule A3), if any


@dataclass
class Delta:
    """What reconcile decided for one folder."""

    new: list[int] = field(default_factory=list)
    # (uid, +flags, -flags, the server's modseq, the merged flags) of each push (rule T3)
    pushes: list[tuple[int, tuple[str, ...], tuple[str, ...], int | None, tuple[str, ...]]] = field(
        default_factory=list)
    have_bodies: bool = False
    skipped: str | None = None
    expunged: set[str] = field(default_factory=set)  # bodies of the placements expunged (Gmail: rule N8)


def known_folder_names(uow: UnitOfWork, side: StoreSide) -> set[str]:
    return {f.raw_name for f in repo.folders_of(uow.connection, side.account_id)}


def apply_folder_plan(uow: UnitOfWork, side: StoreSide, remote, renames: dict[str, int],
                      known=None) -> list[SyncFolder]:
    """Rules F1/F2 plus renames (``renames``: new raw name -> the known folder's id, rule F4).
    Dropped folders are tombstoned with their placements (rule N2). ``known``: the account's folder
    rows (gone ones too) as the store task before this one read them, or None to read them here."""
    s = uow.connection
    if known is None:
        known = repo.folders_of(s, side.account_id, gone=True)
    rows = {f.raw_name: f for f in known}
    live = {n: f for n, f in rows.items() if f.status != "gone"}
    views = [rules.FolderView(f.raw_name, f.name, f.delimiter, f.special_use) for f in remote]
    local = {n: rules.FolderView(f.raw_name, f.name, f.delimiter, f.special_use) for n, f in live.items()}
    fplan = rules.plan_folders(views, local)
    by_id = {f.id: f for n, f in live.items() if n in fplan.drop}
    mailboxids = {f.raw_name: f.mailboxid for f in remote if f.mailboxid}
    created: set[str] = set()  # rows added by this plan: no placement can point at them yet
    # Renamed rows first take a name no folder can have ("*" is a LIST wildcard), so that names
    # can be swapped or chained.
    moving = [(v, by_id.pop(renames[v.raw_name])) for v in fplan.create
              if renames.get(v.raw_name) in by_id]
    for v, renamed in moving:
        repo.update_folder(s, renamed.id, raw_name=f"* renaming {renamed.id}")
    for v, renamed in moving:
        side.ledger.audit(uow, "folder_renamed", f"renamed on the server from {renamed.name!r}", folder=v.name)
        stale = rows.get(v.raw_name)
        if stale is not None:  # an old gone row with the new name
            repo.delete_folder(s, stale.id)
        repo.update_folder(s, renamed.id, raw_name=v.raw_name, name=v.name, delimiter=v.delimiter,
                           special_use=v.special_use, mailboxid=mailboxids.get(v.raw_name, renamed.mailboxid))
        live.pop(next(n for n, f in live.items() if f.id == renamed.id))
    for v in fplan.create:
        if any(v is m for m, _ in moving):
            continue
        row = rows.get(v.raw_name)
        if row is not None:  # it was gone and came back
            repo.update_folder(s, row.id, status="ok", status_reason=None, uidvalidity=None, uidnext=None,
                               highestmodseq=None, name=v.name, delimiter=v.delimiter, special_use=v.special_use,
                               mailboxid=mailboxids.get(v.raw_name))
        else:
            folder_id = repo.add_folder(s, side.account_id, v.raw_name, v.name, v.delimiter, v.special_use)
            if v.raw_name in mailboxids:
                repo.update_folder(s, folder_id, mailboxid=mailboxids[v.raw_name])
            created.add(v.raw_name)
    for v in fplan.update:
        repo.update_folder(s, live[v.raw_name].id, name=v.name, delimiter=v.delimiter, special_use=v.special_use)
    # learnt, or the server gave it a new one
    new_ids = {raw: mid for raw, mid in mailboxids.items() if raw in live and live[raw].mailboxid != mid}
    for raw, mailboxid in new_ids.items():
        repo.update_folder(s, live[raw].id, mailboxid=mailboxid)
    for raw in fplan.drop:
        row = live.get(raw)
        if row is None:  # renamed above
            continue
        repo.update_folder(s, row.id, status="gone", status_reason=f"gone from the server (run {side.run_id})")
        repo.tombstone_folder(s, row.id, side.run_id)
        side.ledger.audit(uow, "folder_gone", "gone from the server: its messages are kept one run as tombstones",
                    folder=row.name)
    uow.commit()
    side.pending_flags = repo.pending_flag_placements(s, side.account_id)
    pending = set(side.pending_flags)
    out = []
    # the rows as the plan left them: read again only when the plan wrote any
    wrote = bool(moving or fplan.create or fplan.update or fplan.drop or new_ids)
    by_raw = {f.raw_name: f for f in repo.folders_of(s, side.account_id)} if wrote else live
    for raw in fplan.sync:
        f = by_raw.get(raw)
        if f is None:
            continue
        # only a folder never completed can be empty of placements and downloaded whole (rule D4)
        placements = f.messages is not None or (raw not in created and repo.has_placements(s, f.id))
        out.append(SyncFolder(f.id, f.raw_name, f.name, f.status, f.status_reason,
                           rules.FolderCheckpoint(f.uidvalidity, f.uidnext, f.highestmodseq, f.messages),
                           f.id in pending, placements, f.limits))
    return out


def reconcile(uow: UnitOfWork, side: StoreSide, folder_id: int, info, changed: dict, vanished, full: bool,
               reason: str | None, listed: set[int] | None = None, contradiction: str | None = None) -> Delta:
    """Rule F3 (adopt), then the plan of rules M1-M3 and T1-T3 (plan.plan_messages) carried out:
    tombstones, flag updates, conflicts to the audit log; commits. Pushes are left to the caller."""
    s = uow.connection
    folder = repo.get_folder(s, folder_id)
    if reason:
        side.ledger.audit(uow, "full_comparison", reason, folder=folder.name)
    if folder.uidvalidity != info.uidvalidity:  # adopt (rule F3: no live placements)
        side.ledger.orphan(repo.drop_server_placements(s, folder_id))
        repo.adopt_uidvalidity(s, folder_id, info.uidvalidity)  # `folder` is not read for these after
    restore_tombstones(uow, side, folder, changed if listed is None else listed)  # rule M4
    total = None
    if full:  # only where the two sides differ (rule D5)
        states = repo.flag_states(s, folder_id)
        total = len(states)
        plan_uids, vanished = rules.full_candidates(states, changed)
        changed, full = {uid: changed[uid] for uid in plan_uids}, False
    if full:
        local = repo.live_placements(s, folder_id)
    else:  # only what changed, and what we changed: the cost follows change (rule D2)
        local = repo.live_placements_for(s, folder_id, list(changed) + list(vanished or ()),
                                         side.pending_flags.get(folder_id, ()))
    policy = side.account.conflict
    # Only an unagreed placement can conflict (T2), and only conflict = "newest" asks when its
    # local change was made: that look-up is done for those alone.
    view = {uid: rules.LocalMessage(p.flags, p.base_flags, p.modseq, bool(
                policy == "newest" and p.base_flags is None and folder.last_synced_at is not None
                and newest_local_change(s, p.id, folder.last_synced_at)))
            for uid, p in local.items()}
    plan = rules.plan_messages(view, {uid: rules.ServerMessage(it.flags or (), it.modseq) for uid, it in changed.items()},
                           vanished=vanished, full=full, policy=policy)
    plan.expunged = hold_deletions(uow, side, folder, plan.expunged, total, contradiction)  # rules G1-G2
    if plan.expunged:
        repo.tombstone(s, folder_id, plan.expunged, side.run_id)
        side.expunged.update(local[uid].id for uid in plan.expunged)
        side.ledger.add(expunged=len(plan.expunged))
    repo.update_placements(s, ((local[uid].id, changed_values(local[uid], flags=flags, base_flags=base, modseq=modseq))
                               for uid, (flags, base, modseq) in plan.updates.items()))
    side.ledger.add(flag_changes=plan.flag_changes)
    for uid, flag, on_server, on_local, kept in plan.conflicts:
        side.ledger.add(conflicts=1)
        side.ledger.audit(uow, "conflict", f"flag {flag}: server {'has' if on_server else 'lacks'} it, "
                    f"local {'has' if on_local else 'lacks'} it, no agreed base; "
                    f"settled by conflict = {policy!r}: {'kept' if kept else 'dropped'}",
                    folder=folder.name, uid=uid)
    # A queued change that changes nothing (+\\Seen on a read message; +X then -X) settles now:
    # the placement agrees with the server already (rule T4).
    pending = side.pending_flags.get(folder_id, set())
    settled = [local[uid].id for uid in plan.settled]
    settled += [p.id for p in local.values() if p.id in pending and p.flags == p.base_flags]
    if settled:
        repo.settle_flag_ops(s, settled)
    delta = Delta(new=plan.new, pushes=[(uid, add, remove, modseq, tuple(plan.updates[uid][0].split()))
                                         for uid, add, remove, modseq in plan.pushes],
                  expunged={local[uid].body_sha256 for uid in plan.expunged})
    if delta.new:
        delta.have_bodies = side.bodies_before_run
    uow.commit()
    crash.point("folder reconciled")
    return delta


def adopt_whole(uow: UnitOfWork, side: StoreSide, folder_id: int, name: str, info, reason: str | None) -> None:
    """_reconcile for a folder downloaded whole (rule D4): it has no placements, so there is
    nothing to compare, tombstone or set aside; rule F3 adopts the server's UIDVALIDITY."""
    if reason:
        side.ledger.audit(uow, "full_comparison", reason, folder=name)
    repo.adopt_uidvalidity(uow.connection, folder_id, info.uidvalidity)
    uow.commit()
    crash.point("folder reconciled")


def record_flag_pushes(uow: UnitOfWork, side: StoreSide, folder_id: int, name: str, uids: list[int],
                        answered: dict, refused: set[int]) -> None:
    s = uow.connection
    local = repo.live_placements(s, folder_id)
    done, changes = [], []
    for uid in uids:
        p = local.get(uid)
        if p is None:
            continue
        if uid in refused:  # MODIFIED: the server changed it meanwhile; re-read and re-merge next run
            side.ledger.audit(uow, "modified", "the server changed the flags meanwhile: merged again next sync",
                        folder=name, uid=uid)
            changes.append((p.id, changed_values(p, modseq=None)))
            continue
        item = answered.get(uid)
        modseq = p.modseq
        if item is not None and item.flags is not None:
            server = rules.flags_text(item.flags)
            if server != p.flags:  # someone else's change landed between our merge and STORE
                changes.append((p.id, changed_values(p, base_flags=server)))
                continue
            modseq = item.modseq or p.modseq
        changes.append((p.id, changed_values(p, base_flags=p.flags, modseq=modseq)))
        done.append(p.id)
        side.ledger.add(pushed=1)
    repo.update_placements(s, changes)
    if done:
        repo.settle_flag_ops(s, done)
    uow.commit()


def complete_folder(uow: UnitOfWork, side: StoreSide, folder_id: int, name: str, info) -> None:
    repo.mark_folder_synced(uow.connection, folder_id, info.uidnext, info.highestmodseq, info.exists, utcnow(),
                            info.mailboxid)
    uow.commit()
    crash.point("folder complete")
    side.ledger.add(folders=1)
    side.observer.folder_done(side.account.name, name)


def apply_rematch(uow: UnitOfWork, side: StoreSide, folder_id: int, info, headers: dict) -> bool:
    s = uow.connection
    folder = repo.get_folder(s, folder_id)
    rows = repo.live_placement_keys(s, folder_id)
    index: dict[tuple[str, int], list[int]] = {}
    for uid, it in headers.items():
        mid = message_id(it.header_fields or b"")
        if mid and it.size is not None:
            index.setdefault((mid, it.size), []).append(uid)
    matches: dict[int, int] = {}
    for pid, _sha, mid, size in rows:
        cands = index.get((mid, size)) if mid else None
        if cands and len(cands) == 1:
            matches[pid] = cands[0]
    known, found = len(rows), len(matches)
    old = folder.uidvalidity
    if not rules.uidvalidity_rematch_accepted(known, found):
        why = (f"UIDVALIDITY changed from {old} to {info.uidvalidity} and only {found} of "
               f"{known} known messages were found again; set aside, nothing was deleted "
               f"(inspect the server, then remove and re-add the folder to start over)")
        repo.update_folder(s, folder_id, status="aside", status_reason=why)
        side.ledger.audit(uow, "uidvalidity_aside", why, folder=folder.name)
        side.ledger.set_aside(f"folder {folder.name!r}: {why}")
        uow.commit()
        return False
    lost = [(pid, sha) for pid, sha, _mid, _size in rows if pid not in matches]
    side.ledger.orphan(sha for _, sha in lost)
    repo.rematch_placements(s, folder_id, matches, [pid for pid, _ in lost])
    repo.update_folder(s, folder_id, uidvalidity=info.uidvalidity, uidnext=None, highestmodseq=None, fetched_uid=0)
    side.ledger.audit(uow, "uidvalidity_rematched", f"UIDVALIDITY changed from {old} to {info.uidvalidity}: "
                f"{found} of {known} known messages found again by Message-ID and size; nothing downloaded",
                folder=folder.name)
    uow.commit()
    return True


def link_deferred(uow: UnitOfWork, side: StoreSide, links: list) -> dict[int, dict[int, rules.ServerMessage]]:
    """Rules N1/N2 for the new UIDs recognised by (Message-ID, size), after every folder was read
    (``links``: (folder id, UID, FETCH item, body SHA-256)). Returns the local flag changes that
    followed a moved message (rule N3): folder id -> UID -> the flags the server gave it."""
    carried: dict[int, dict[int, rules.ServerMessage]] = {}
    if not links:
        return carried
    s = uow.connection
    shas = sorted({sha for *_, sha in links})
    tombs: dict[str, list[int]] = {}
    local: dict[int, tuple[str, str | None]] = {}  # tombstone -> (flags, base) with a local change
    for pid, sha, flags, base in repo.run_tombstones(s, side.account_id, side.run_id, shas):
        tombs.setdefault(sha, []).append(pid)
        if flags != base:
            local[pid] = (flags, base)
    moves: list[tuple[int, dict]] = []
    rows_by_folder: dict[int, list[dict]] = {}
    for folder_id, uid, item, sha in links:
        row = placement_row(side.ledger, folder_id, item, sha)
        t = tombs.get(sha)
        if t:
            pid = t.pop(0)
            moves.append((pid, {"folder_id": folder_id, "uid": uid, "tombstone_run": None,
                                "flags": row["flags"], "base_flags": row["flags"], "modseq": row["modseq"],
                                "internaldate": row["internaldate"], "size": row["size"]}))
            if pid in local:  # a local flag change follows the message to its new folder (rule N3)
                flags, base = local[pid]
                moves[-1][1].update(flags=flags, base_flags=base)
                carried.setdefault(folder_id, {})[uid] = rules.ServerMessage(
                    tuple(row["flags"].split()), row["modseq"])
            side.ledger.add(moves=1)
            if pid in side.expunged:  # counted as expunged in this run; a dropped folder's were not
                side.ledger.add(expunged=-1)
        else:
            rows_by_folder.setdefault(folder_id, []).append(row)
        side.ledger.add(new_messages=1)
    repo.update_placements(s, moves)
    for folder_id, rows in rows_by_folder.items():
        repo.add_placements(s, adopt_unsettled(s, folder_id, rows))
    uow.commit()
    crash.point("links committed")
    return carried


def merge_carried(uow: UnitOfWork, side: StoreSide, folder_id: int, server: dict) -> tuple[SyncFolder, list]:
    s = uow.connection
    f = repo.get_folder(s, folder_id)
    local = repo.live_placements_for(s, folder_id, list(server))
    plan = rules.plan_messages({uid: rules.LocalMessage(p.flags, p.base_flags, p.modseq) for uid, p in local.items()},
                           {uid: m for uid, m in server.items() if uid in local}, vanished=[], full=False,
                           policy=side.account.conflict)
    repo.update_placements(s, ((local[uid].id, changed_values(local[uid], flags=flags, base_flags=base, modseq=modseq))
                               for uid, (flags, base, modseq) in plan.updates.items()))
    if plan.settled:
        repo.settle_flag_ops(s, [local[uid].id for uid in plan.settled])
    uow.commit()
    folder = SyncFolder(f.id, f.raw_name, f.name, f.status, f.status_reason, None, False, True)
    return folder, [(uid, add, remove, modseq, tuple(plan.updates[uid][0].split()))
                    for uid, add, remove, modseq in plan.pushes]


def cleanup(uow: UnitOfWork, side: StoreSide) -> None:
    """Expire tombstones of earlier runs (rule N2) and folders gone before this run; settle flag
    changes left without a message (rule L4)."""
    s = uow.connection
    if settle_orphaned_flag_changes(s, side.account_id):
        side.ledger.note("a flag change waited on a message removed on the server since: dropped")
    side.ledger.orphan(repo.expire_tombstones(s, side.account_id, side.run_id))
    repo.delete_orphan_bodies(s, side.ledger.orphans())
    repo.drop_empty_gone_folders(s, side.account_id)
    uow.commit()


def lift_tombstones(db, folder_id: int, uids: Iterable[int]) -> dict[int, int]:
    """Rule M4: lift the tombstones of the folder's placements whose UID is in ``uids``; the UIDs
    lifted -> their placement ids, by UID. Only tombstones are looked up, and they are few (each
    lives one run). A flag change that rule L4 failed because its message looked removed waits
    to be pushed again: the message was not removed after all."""
    pl = tables.placements.c
    # by the tombstone index, then this folder's (filtering by folder in SQL made SQLite walk the
    # folder's placements instead, on every sync of every folder)
    tombs = {uid: pid for pid, fid, uid in db.execute(
        repo.built_once(lambda: select(pl.id, pl.folder_id, pl.uid).where(repo.TOMBSTONES)))
        if fid == folder_id and uid is not None}
    if not tombs:
        return {}
    back = sorted(set(tombs) & set(uids))
    ids = [tombs[u] for u in back]
    o = tables.pending_ops.c
    for i in range(0, len(ids), 500):
        db.execute(update(tables.placements).where(pl.id.in_(ids[i:i + 500])).values(tombstone_run=None))
        db.execute(update(tables.pending_ops).where(
            o.kind == "flags", o.state == "failed", o.error == L4_ERROR, o.placement_id.in_(ids[i:i + 500]))
            .values(state="pending", error=None, updated_at=utcnow()))
    return {u: tombs[u] for u in back}


def live_count(db, folder_id: int) -> int:
    """How many placements of the folder are on the server, as far as the store knows: those with a
    UID, counted in the (folder, UID) index alone, less the folder's tombstones, found by their own
    index (they are few). Counting the live ones directly read every row of the folder: 3 ms for
    5,000 messages on SQLite, against 0.7 ms this way, in every sync of a changed folder."""
    pl = tables.placements.c
    with_uid = db.scalar(repo.built_once(lambda: select(func.count()).select_from(tables.placements).where(
        pl.folder_id == bindparam("_folder"), pl.uid.isnot(None))), {"_folder": folder_id}) or 0
    tombs = db.execute(repo.built_once(lambda: select(pl.folder_id, pl.uid).where(repo.TOMBSTONES)))
    return with_uid - sum(1 for fid, uid in tombs if fid == folder_id and uid is not None)


# -- downloads (download.py, download_packed.py) ---------------------------------------------------


def commit_written(uow: UnitOfWork, side: StoreSide, folder_id: int, name: str, writes: list[tuple],
                    nbytes: int) -> None:
    """On the store worker: once the pack writer has written these batches of _download_packed
    (durable, or the write's error raised here), insert their rows and move the folder's
    download mark, in one transaction (rules C1, C3). Rule D4 downloads only into a folder
    without placements, so no unsettled local append can be waiting for these UIDs
    (store_tasks.adopt_unsettled has nothing to do)."""
    rows: list[tuple] = []
    placed: list[tuple] = []
    for written, bodies, places in writes:
        pack, start = written.result()
        rows += [(sha, size, mid, pack, start + off) for sha, size, mid, off in bodies]
        placed += places
    crash.point("packs written")
    s = uow.connection
    repo.add_packed_bodies(s, rows)
    repo.add_placement_rows(s, placed)
    batch_done(uow, side, folder_id, name, max(r[1] for r in placed), len(placed), nbytes, report=False)


def commit_batch(uow: UnitOfWork, side: StoreSide, folder_id: int, name: str, batch: list, nbytes: int,
                 gm: list = ()) -> None:
    """On the store worker: one batch's bodies (to a pack first, where the store has packs), its
    placements, the folder's download mark and, from Gmail, the bodies' X-GM-MSGIDs (``gm``, see
    mailsync.sync.gmail), in one transaction (rule C1)."""
    s = uow.connection
    repo.store_bodies(s, [b for b, _ in batch])
    if gm:
        gmail.record_rows(uow, side, gm)
    rows = [r for _, r in batch]
    repo.add_placements(s, adopt_unsettled(s, folder_id, rows))
    batch_done(uow, side, folder_id, name, max(r["uid"] for r in rows), len(batch), nbytes)


def batch_done(uow: UnitOfWork, side: StoreSide, folder_id: int, name: str, top_uid: int, count: int,
                nbytes: int, report: bool = True) -> None:
    """The end of a batch's transaction: the folder's download mark moves to ``top_uid``, commit.
    ``report``: tell the observer (False when it was told as the bodies were written)."""
    repo.advance_fetched_uid(uow.connection, folder_id, top_uid)
    uow.commit()
    crash.point("batch committed")
    side.ledger.add(new_messages=count)
    if report:
        side.observer.messages_stored(side.account.name, name, count, nbytes)


# -- rules M4, G1, G2 ---------------------------------------------------------------------------------


def restore_tombstones(uow: UnitOfWork, side: StoreSide, folder, uids) -> None:
    """Rule M4: placements tombstoned in an earlier listing whose UIDs the server lists again."""
    restored = lift_tombstones(uow.connection, folder.id, uids)
    # compared with the server in this run, so that a local flag change on them is pushed even
    # when the folder's delta (CONDSTORE, QRESYNC) does not name them
    side.pending_flags.setdefault(folder.id, set()).update(restored.values())
    restored = sorted(restored)
    if restored:
        side.ledger.audit(uow, "restored", f"{len(restored)} message(s) missing from an earlier listing are listed "
                          f"again (UID {', '.join(map(str, restored[:10]))}{'...' if len(restored) > 10 else ''}): "
                          f"kept, not downloaded again", folder=folder.name)


def hold_deletions(uow: UnitOfWork, side: StoreSide, folder, expunged: list[int], live: int | None,
                   contradiction: str | None) -> list[int]:
    """Rules G1-G2: the expunges to carry out now (all, or none while they are held); the folder's
    status says when they are held, and goes back to "ok" when nothing is."""
    s = uow.connection
    if expunged and live is None:
        live = live_count(s, folder.id)
    why = rules.held_reason(len(expunged), live or 0, contradiction, side.allow_mass_delete)
    if why is not None and contradiction is None:  # G2: decided once every folder was read
        side.mass[folder.id] = (folder.name, expunged, live)
        return []
    if why is None:
        if folder.status == "held":
            repo.update_folder(s, folder.id, status="ok", status_reason=None)
        return expunged
    _hold(uow, side, folder.id, folder.name, why)
    return []


def _hold(uow: UnitOfWork, side: StoreSide, folder_id: int, name: str, why: str) -> None:
    repo.update_folder(uow.connection, folder_id, status="held", status_reason=why)
    side.ledger.audit(uow, "deletions_held", why, folder=name)
    side.ledger.set_aside(f"folder {name!r}: {why}")


def settle_mass(uow: UnitOfWork, side: StoreSide, links: list, gmail_labels: dict | None = None) -> None:
    """Rule G2, once every folder was read: of a folder's mass of expunges, those whose bodies
    arrived in another folder in this run (``links``, as link_deferred takes them) are moves (rule
    N2), and on Gmail (``gmail_labels``: folder id -> its label) those still in another folder (All
    Mail: a label taken away, rules N7, N8) are not losses either: they are tombstoned; the rest are tombstoned too when they are no longer a mass, or allowed,
    and held otherwise. Until this transaction nothing of them was changed, so a crash before it
    deletes nothing."""
    if not side.mass:
        return
    s = uow.connection
    arrived = {sha for *_, sha in links}
    for folder_id, (name, uids, live) in side.mass.items():
        rows = repo.live_placements_for(s, folder_id, uids)
        kept = set() if gmail_labels is None else gmail.kept_elsewhere(s, side, folder_id,
                                                                      {p.body_sha256 for p in rows.values()})
        moved = [u for u, p in rows.items() if p.body_sha256 in arrived or p.body_sha256 in kept]
        rest = sorted(set(rows) - set(moved))
        why = rules.held_reason(len(rest), live, None, side.allow_mass_delete)
        gone = moved if why else moved + rest
        if gone:
            side.ledger.add(expunged=repo.tombstone(s, folder_id, gone, side.run_id))
            if gmail_labels is not None and gmail_labels.get(folder_id):  # rule N8
                gmail.drop_label_task(uow, side, [rows[u].body_sha256 for u in gone], gmail_labels[folder_id], False)
        if why:
            _hold(uow, side, folder_id, name, why)
        else:
            repo.update_folder(s, folder_id, status="ok", status_reason=None)
    side.mass.clear()
    uow.commit()


def folder_failed(uow: UnitOfWork, folder_id: int, why: str | None) -> None:
    """Show why a folder failed in this run (status "error", synced again next run), or, with
    ``why`` None, that it synced again. A folder held or set aside keeps that status."""
    fo = tables.folders.c
    values = {"status": "error", "status_reason": why} if why else {"status": "ok", "status_reason": None}
    uow.connection.execute(update(tables.folders).where(fo.id == folder_id, fo.status.in_(("ok", "error")))
                           .values(**values))
    uow.commit()


def folder_uids(uow: UnitOfWork, account_id: int, raw_name: str) -> tuple[int | None, set[int]]:
    """(UIDVALIDITY, live UIDs) of a folder as the store knows it."""
    f = tables.folders.c
    row = uow.connection.execute(select(f.id, f.uidvalidity).where(f.account_id == account_id,
                                                                    f.raw_name == raw_name)).one_or_none()
    if row is None:
        return None, set()
    return row.uidvalidity, set(repo.uid_flags(uow.connection, row.id))


# -- rows -----------------------------------------------------------------------------------------------


def placement_values(ledger: RunLedger, folder_id: int, item, digest: str, flags: str | None = None) -> tuple:
    """A new placement from its FETCH item, in repo.PLACEMENT_COLUMNS order; its base flags are
    its flags (``flags``: their text, when the caller has it already). download._download_packed
    builds the same tuple in line. Pure (the ledger only hears of a date that had to be replaced)."""
    from mailsync.imap.responses import parse_internaldate

    if flags is None:
        flags = rules.flags_text(item.flags or ())
    try:
        idate = parse_internaldate(item.internaldate)
    except ProtocolError as exc:
        idate = substitute_date(ledger, None, item, item.body or item.header_fields or b"", exc)
    return (folder_id, item.uid, digest, flags, flags, item.modseq, idate,
            item.size if item.size is not None else len(item.body or b""))


def placement_row(ledger: RunLedger, folder_id: int, item, digest: str) -> dict:
    return dict(zip(repo.PLACEMENT_COLUMNS, placement_values(ledger, folder_id, item, digest)))


def substitute_date(ledger, folder: str | None, item, raw: bytes, exc: ProtocolError) -> str:
    """A message whose INTERNALDATE is not a date (31 February) is kept: its Date: header, or
    the epoch, stands in for it, and the run's notes (``ledger``) say so."""
    from mailsync.sync.message import date_header

    when = date_header(raw) or "1970-01-01T00:00:00+00:00"
    where = f"folder {folder!r} " if folder else ""
    ledger.note(f"{where}UID {item.uid}: {exc}; stored with the date {when} instead")
    return when


def adopt_unsettled(s, folder_id: int, rows: list[dict]) -> list[dict]:
    """A local append/move whose answer was lost (no APPENDUID/COPYUID, no Message-ID) shows up as a
    new UID with the same body: give our placement that UID instead of adding a second one."""
    waiting = {}
    pl = tables.placements.c
    for pid, sha in s.execute(repo.built_once(lambda: select(pl.id, pl.body_sha256).where(
            pl.folder_id == bindparam("_folder"), pl.uid.is_(None))), {"_folder": folder_id}):
        waiting.setdefault(sha, []).append(pid)
    if not waiting:
        return rows
    rest = []
    for row in rows:
        ids = waiting.get(row["body_sha256"])
        if ids:
            s.execute(update(tables.placements).where(pl.id == ids.pop(0))
                      .values(uid=row["uid"], base_flags=row["flags"], flags=row["flags"]))
        else:
            rest.append(row)
    return rest


def newest_local_change(s, placement_id: int, since) -> bool:
    """For conflict = "newest": was the pending local change made after the server was last read?"""
    when = repo.newest_flag_change_at(s, placement_id)
    if when is None:
        return False
    if when.tzinfo is None and since.tzinfo is not None:
        since = since.replace(tzinfo=None)
    elif since.tzinfo is None and when.tzinfo is not None:
        when = when.replace(tzinfo=None)
    return when > since


def changed_values(row, **values) -> dict:
    """Of ``values`` (column: new value), those that differ from what ``row`` holds."""
    return {k: v for k, v in values.items() if getattr(row, k) != v}
