"""The executor: gathers the views (server via mailsync.imap, store via repositories), asks
plan.py what to do, and does it with the commit discipline the rules require.

Owns: the order of I/O in a sync, the transaction boundaries, and the journal of local changes.
Must not: make decisions that belong in plan.py, or format output (it reports to a SyncObserver).

Threads: this thread speaks IMAP; every store access goes through one StoreWorker (its own thread
and connection), in submission order. Downloads overlap reading and writing, and a folder's
checkpoint task always runs after the batches it covers. A first sync into pack files has a third
thread, the PackWriter, which writes the pack batches; the store worker's commit waits for the
writes it covers (rule C3).

Order of one account's sync:
  1. record a sync run (audit log) and commit, so even a crash leaves a trace;
  2. connect; push the journal of local operations in order (folder ops, appends, moves, deletes):
     each is marked "sent" and committed before its command goes out, and settled from the server's
     answer (APPENDUID, COPYUID) or, after a crash, by looking at the server (rules in _settle_*);
  3. LIST (with LIST-STATUS: one round trip for every folder's counters); plan folders (create,
     rename by UIDVALIDITY, drop = tombstone); skip folders whose counters did not move (rule D1);
  4. per folder: SELECT (QRESYNC or CONDSTORE); UIDVALIDITY rule (re-match, V1); read what changed
     (D2/D3), or, for a folder never read, the whole of it with one FETCH (D4: into a SQLite store
     each message is read straight into its pack batch, _download_packed; the next such folder's
     SELECT and FETCH are sent while it is read, ImapConnection.bulk_ahead); in one store task:
     tombstone expunged placements, merge flags (T1/T2), commit; push
     merged flags with UNCHANGEDSINCE (T3) and record the answer; recognise new messages already in
     the store by (Message-ID, size) (N1), download the rest in batches (each committed with its
     placements and the folder's download mark); then commit UIDNEXT/HIGHESTMODSEQ as read at SELECT
     (C1), after the links of step 5 when a folder has any;
     A listing of the whole folder that contradicts the SELECT is read again, and its deletions held
     when it still does (G1); tombstones of UIDs listed again are lifted (M4); a mass of deletions
     waits for step 5 (G2). These checks live in guards.ServerChecks.
  5. decide the held mass deletions, knowing which of them arrived in another folder (moves, G2);
     link recognised messages: a tombstone of this run with the same body is moved (N2), else a new
     placement shares the body; expire tombstones of earlier runs; drop unreferenced bodies; finish
     the run (ok or failed, with the error) and commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailsync.auth.login import open_connection
from mailsync.config.model import AccountConfig
from mailsync.errors import ConnectError, FolderMissing, MailsyncError, ProtocolError
from mailsync.imap import utf7
from mailsync.store import repositories as repo
from mailsync.store.db import Store
from mailsync.store.tables import utcnow
from mailsync.store.uow import UnitOfWork
from mailsync.store.worker import PackWriter, StoreWorker
from mailsync.sync import crash, guards
from mailsync.sync import plan as rules
from mailsync.sync.message import message_id
from mailsync.sync.download import Downloads, bulk_checkpoints_task
from mailsync.sync.journal_push import JournalPush
from mailsync.sync.undo import settle_orphaned_flag_changes

if TYPE_CHECKING:
    from mailsync.imap.connection import ImapConnection

log = logging.getLogger("mailsync.sync")


class SyncObserver:
    """Progress callbacks; the default does nothing. The CLI passes a rich progress display.
    Called from the sync thread and from the store worker's thread."""

    def account_started(self, account: str) -> None: ...
    def folder_started(self, account: str, folder: str, new: int) -> None: ...
    def messages_stored(self, account: str, folder: str, count: int, nbytes: int) -> None: ...
    def folder_done(self, account: str, folder: str) -> None: ...
    def account_done(self, result: "AccountResult") -> None: ...


@dataclass
class AccountResult:
    account: str
    ok: bool = True
    error: str | None = None
    folders: int = 0
    new_messages: int = 0
    flag_changes: int = 0
    expunged: int = 0
    bytes_fetched: int = 0
    bodies_downloaded: int = 0
    moves: int = 0
    pushed: int = 0
    conflicts: int = 0
    commands: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Folders this run could not sync in full, each with its reason (held deletions, a name that
    # cannot be used, UIDVALIDITY set aside): the rest synced, so ``ok`` stays; the CLI exits 1.
    set_aside: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        if self.ok:
            self.ok, self.error = False, message

    def add(self, **counts: int) -> None:
        """Add to the counters. Both of a sync's threads count (the IMAP thread, and the store
        worker in the transactions it runs), so an update is made under a lock, never as a bare
        ``+=`` that a thread switch could lose."""
        with _counting:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


_counting = threading.Lock()


@dataclass
class _Folder:
    """One folder to sync, as the store knows it."""

    id: int
    raw_name: str
    name: str
    status: str
    reason: str | None
    checkpoint: rules.FolderCheckpoint
    pending: bool  # local flag changes waiting to be pushed
    placements: bool = True  # False: the folder holds none (see rule D4)


@dataclass
class _Delta:
    """What one store task decided for one folder."""

    new: list[int] = field(default_factory=list)
    # (uid, +flags, -flags, the server's modseq, the merged flags) of each push (rule T3)
    pushes: list[tuple[int, tuple[str, ...], tuple[str, ...], int | None, tuple[str, ...]]] = field(
        default_factory=list)
    have_bodies: bool = False
    skipped: str | None = None


class SyncInterrupted(MailsyncError):
    """The caller asked the sync to stop (the watch daemon shutting down); raised between steps, after
    the step in progress was committed, so the next sync resumes from there."""


class AccountSync(Downloads, JournalPush, guards.ServerChecks):
    """One two-way delta sync of an account.

    For the watch daemon (mailsync.push), two optional hooks; without them nothing changes:
    ``should_stop()`` is asked between steps (before each local change, each folder, each batch)
    and, when true, the run ends with SyncInterrupted; ``release(conn, clean)`` is called instead of
    ``conn.logout()`` so a caller can keep a healthy connection open for the next run (``clean`` is
    False when the run ended with an error), and per-run counters then count this run only.
    """

    def __init__(self, store: Store, account: AccountConfig, *, observer: SyncObserver | None = None,
                 connect: Callable[[AccountConfig], object] = open_connection,
                 should_stop: Callable[[], bool] | None = None,
                 release: Callable[[object, bool], None] | None = None,
                 allow_mass_delete: bool = False) -> None:
        self.store = store
        self.allow_mass_delete = allow_mass_delete  # rule G2: apply deletions of most of a folder
        self.account = account
        self.observer = observer or SyncObserver()
        self._connect = connect
        self._should_stop = should_stop
        self._release = release
        self._conn_base = (0, 0, 0)  # a reused connection's counters when this run got it
        self.result = AccountResult(account=account.name)
        self._deferred_links: list[tuple[int, int, object, str]] = []  # (folder_id, uid, item, sha)
        self._deferred_complete: list[tuple[int, str, object]] = []
        self._orphans: set[str] = set()  # bodies whose placements were removed in this run
        self._expunged: set[int] = set()  # placements tombstoned as expunged in this run (counted so)
        self._bodies_before_run = False
        self._pending_flags: dict[int, set[int]] = {}  # folder id -> placements with flag changes to push
        self._bulk_checkpoints = False  # the store worker's connection checkpoints in bulk (first syncs)
        self._writer: PackWriter | None = None  # writes first syncs' pack batches (_download_packed)
        self._contradicted: dict[int, str] = {}  # folder id -> why its listing was not believed (rule G1)
        self._mass: dict[int, tuple[str, list[int], int]] = {}  # folder id -> (name, UIDs, live): rule G2
        self._carried: dict[int, dict[int, rules.ServerMessage]] = {}  # rule N3: folder id -> uid -> server's flags

    # -- entry point --------------------------------------------------------------------------

    def run(self) -> AccountResult:
        t0 = time.monotonic()
        acc = self.account
        self.observer.account_started(acc.name)
        with UnitOfWork(self.store) as uow:
            self.account_id = repo.account_id(uow.connection, acc.name, acc.host, acc.username)
            self.run_id = repo.start_run(uow.connection, self.account_id)
            uow.commit()
            # With no body in the store before this run, no new message can be one we already have:
            # the first sync skips the (Message-ID, size) look-up (rule N1) and just downloads.
            self._bodies_before_run = repo.has_bodies(uow.connection)
        conn = None
        try:
            with StoreWorker(self.store) as db:
                clean = False
                try:
                    conn = self._connect(acc)
                    self._conn_base = (conn.bytes_fetched, conn.bodies_fetched, conn.commands)
                    self._push_ops(conn, db)
                    self._pull(conn, db)
                    db.call(self._settle_mass)
                    db.call(self._link_deferred)
                    self._push_carried(conn, db)
                    for folder_id, name, info in self._deferred_complete:
                        db.submit(self._complete_folder, folder_id, name, info, small=True)
                    db.drain()
                    db.call(self._cleanup)
                    clean = True
                finally:
                    if self._writer is not None:  # every pack write ends before the store worker's last task
                        self._writer.close()
                    if self._bulk_checkpoints:  # back to short checkpoints (a failed worker runs nothing more)
                        with contextlib.suppress(Exception):
                            db.call(bulk_checkpoints_task, False)
                    if conn is not None:
                        if self._release is not None:
                            self._release(conn, clean)
                        else:
                            conn.logout()
        except MailsyncError as exc:
            self.result.fail(str(exc))
        except Exception as exc:  # a bug must not take other accounts down; it is reported as one
            from mailsync.store.db import store_damage

            damaged = store_damage(exc, self.store.url)
            if damaged is not None:
                self.result.fail(f"account '{acc.name}': {damaged}")
            else:
                log.exception("account %s: unexpected error", acc.name)
                self.result.fail(f"account '{acc.name}': internal error {exc.__class__.__name__}: {exc}")
        if self.result.ok and (self._orphans or self.result.expunged or self.result.moves or self.result.pushed):
            self._compact()
        if conn is not None:
            self.result.bytes_fetched = conn.bytes_fetched - self._conn_base[0]
            self.result.bodies_downloaded = conn.bodies_fetched - self._conn_base[1]
            self.result.commands = conn.commands - self._conn_base[2]
        self.result.seconds = time.monotonic() - t0
        self._finish_run()
        self.observer.account_done(self.result)
        return self.result

    def _compact(self) -> None:
        """Bodies may have died in this run (expunges, moves, pushed deletes): give pack space back
        when enough of a pack is dead (see mailsync.store.compaction). A failure here is logged and
        does not fail the sync: no data is at stake, only disk space."""
        if self.store.packs is None:
            return
        from mailsync.store import compaction

        try:
            done = compaction.compact(self.store)
        except (MailsyncError, OSError) as exc:
            log.warning("account %s: compacting the body packs failed: %s", self.account.name, exc)
            return
        if done.packs:
            self.result.notes.append(f"compacted {done.packs} body pack(s): {done.moved} live bytes moved")

    def _stopping(self) -> bool:
        return self._should_stop is not None and self._should_stop()

    def _check_stop(self) -> None:
        if self._stopping():
            raise SyncInterrupted(f"account '{self.account.name}': sync stopped at a step boundary (shutting down); "
                                  f"the next sync resumes from the last committed step")

    def _finish_run(self) -> None:
        r = self.result
        with UnitOfWork(self.store) as uow:
            repo.finish_run(uow.connection, self.run_id, status="ok" if r.ok else "failed", error=r.error,
                            folders=r.folders, new_messages=r.new_messages, flag_changes=r.flag_changes,
                            expunged=r.expunged, bytes_fetched=r.bytes_fetched,
                            bodies_downloaded=r.bodies_downloaded, moves=r.moves, pushed=r.pushed,
                            conflicts=r.conflicts,
                            notes="\n".join(r.notes + [f"SET ASIDE: {w}" for w in r.set_aside]) or None)
            uow.commit()

    def _audit(self, uow: UnitOfWork, kind: str, detail: str, *, folder: str | None = None,
               uid: int | None = None) -> None:
        repo.add_audit_event(uow.connection, self.account_id, self.run_id, kind, detail, folder=folder, uid=uid)
        self.result.notes.append(f"{kind}: {folder + ': ' if folder else ''}{detail}")

    # -- server -> store: folders -------------------------------------------------------------

    def _pull(self, conn: ImapConnection, db: StoreWorker) -> None:
        acc = self.account
        remote = [f for f in conn.list_folders()
                  if f.selectable and rules.folder_selected(f.name, acc.folders, acc.exclude)]
        for why in conn.unlisted:  # names that cannot be used: set aside, the rest goes on
            self.result.set_aside.append(f"a folder was set aside: {why}")
        if conn.condstore and not conn.has("LIST-STATUS"):
            remote = [_with_status(f, *self._status(conn, f)) for f in remote]
        elif not conn.has("LIST-STATUS"):
            known = db.call(self._known_folder_names)
            remote = [f if f.raw_name in known else _with_status(f, *self._status(conn, f)) for f in remote]
        renames = self._identify_renames(conn, db, remote)
        folders = db.call(self._apply_folder_plan, remote, renames)
        status = {f.raw_name: f.status for f in remote}
        folder_errors = []
        unchanged = {f.id for f in folders if f.status != "aside"
                     and rules.folder_unchanged(f.checkpoint, status.get(f.raw_name), f.pending or f.status == "held")}
        todo = [f for f in folders if f.status != "aside" and f.id not in unchanged]
        # each download of a whole folder (rule D4, when its SELECT says there is nothing to compare)
        # sends the next one's SELECT and FETCH ahead (bulk_ahead)
        ahead = {a.id: b.raw_name for a, b in zip(todo, todo[1:])
                 if rules.download_whole("full", has_placements=b.placements, bodies_before_run=self._bodies_before_run)
                 and (status.get(b.raw_name) or {}).get("MESSAGES")}
        for folder in folders:
            self._check_stop()
            if folder.status == "aside":
                self.result.set_aside.append(f"folder {folder.name!r} skipped: {folder.reason}")
                continue
            if folder.id in unchanged:
                self.result.add(folders=1)
                continue
            try:
                with _naming(folder.name, acc.name):
                    self._sync_folder(conn, db, folder, ahead.get(folder.id))
            except ProtocolError as exc:  # one bad folder does not stop the others
                if conn.broken:
                    raise
                if isinstance(exc, FolderMissing) and not folder.placements:
                    # Listed, yet not there (deleted since the LIST; Dovecot lists the deleted parent of
                    # other folders so, every time): the store holds no mail of it, so nothing is at
                    # stake and the run is not failed for it; `status` shows why it is empty.
                    self.result.notes.append(f"folder {folder.name!r} is listed but cannot be selected "
                                             f"({exc}): it holds no mail here and is left out")
                    db.submit(self._folder_failed, folder.id, f"listed but cannot be selected: {exc}", small=True)
                    continue
                folder_errors.append(str(exc))
                db.submit(self._folder_failed, folder.id, str(exc), small=True)
                continue
            if folder.status == "error":
                db.submit(self._folder_failed, folder.id, None, small=True)
        if folder_errors:
            raise ProtocolError("; ".join(folder_errors))

    def _known_folder_names(self, uow: UnitOfWork) -> set[str]:
        return {f.raw_name for f in repo.folders_of(uow.connection, self.account_id)}

    def _identify_renames(self, conn: ImapConnection, db: StoreWorker, remote) -> dict[str, int]:
        """Rule F4: {new raw name: id of the known folder it is, renamed}. MAILBOXIDs settle a pair
        at no cost; a pair that only shares UIDVALIDITY is checked by reading a sample of the known
        folder's UIDs in the new folder (one EXAMINE and one FETCH per candidate pair)."""
        known = db.call(lambda uow: repo.folders_of(uow.connection, self.account_id))
        listed = {f.raw_name for f in remote}
        known_names = {f.raw_name for f in known}
        vanished = [f for f in known if f.raw_name not in listed]
        fresh = [f for f in remote if f.raw_name not in known_names]
        if not vanished or not fresh:
            return {}
        with_messages = db.call(lambda uow: {f.id for f in vanished if repo.has_placements(uow.connection, f.id)})
        ids = {f.raw_name: f.mailboxid for f in fresh}
        if conn.has("OBJECTID") and any(f.mailboxid for f in vanished):
            # The listing does not carry MAILBOXID (Cyrus 3.6 answers it in STATUS with garbage):
            # EXAMINE says it, for each new folder, when a vanished one has an id to compare with.
            for raw in ids:
                ids[raw] = ids[raw] or conn.select(raw, readonly=True).mailboxid
        certain, to_check = rules.rename_candidates(
            [rules.FolderIdentity(f.raw_name, (f.status or {}).get("UIDVALIDITY"), ids[f.raw_name]) for f in fresh],
            [rules.FolderIdentity(f.id, f.uidvalidity, f.mailboxid, f.id in with_messages) for f in vanished])
        checked: dict[tuple, bool] = {}
        for new_raw, folder_id in to_check:
            sample = db.call(lambda uow, fid=folder_id: repo.placement_keys(
                uow.connection, fid, rules.sample_uids(list(repo.uid_flags(uow.connection, fid)))))
            found = {}
            if sample:
                conn.select(new_raw, readonly=True)
                found = {uid: (message_id(it.header_fields or b""), it.size)
                         for uid, it in conn.fetch_headers(sample).items()}
            checked[(new_raw, folder_id)] = rules.sample_agrees(sample, found)
        renames = rules.decide_renames(certain, checked)
        for new_raw, folder_id in to_check:
            if checked[(new_raw, folder_id)] and renames.get(new_raw) != folder_id:
                self.result.notes.append(f"folder {utf7.decode(new_raw)!r}: more than one known folder could "
                                         f"be it (a rename?); synced as a new folder, its messages linked, "
                                         f"not downloaded again")
        return renames

    def _apply_folder_plan(self, uow: UnitOfWork, remote, renames: dict[str, int]) -> list[_Folder]:
        """Rules F1/F2 plus renames (``renames``: new raw name -> the known folder's id, rule F4).
        Dropped folders are tombstoned with their placements (rule N2)."""
        s = uow.connection
        rows = {f.raw_name: f for f in repo.folders_of(s, self.account_id, gone=True)}
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
            self._audit(uow, "folder_renamed", f"renamed on the server from {renamed.name!r}", folder=v.name)
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
                folder_id = repo.add_folder(s, self.account_id, v.raw_name, v.name, v.delimiter, v.special_use)
                if v.raw_name in mailboxids:
                    repo.update_folder(s, folder_id, mailboxid=mailboxids[v.raw_name])
                created.add(v.raw_name)
        for v in fplan.update:
            repo.update_folder(s, live[v.raw_name].id, name=v.name, delimiter=v.delimiter, special_use=v.special_use)
        for raw, mailboxid in mailboxids.items():
            row = live.get(raw)
            if row is not None and row.mailboxid != mailboxid:  # learnt, or the server gave it a new one
                repo.update_folder(s, row.id, mailboxid=mailboxid)
        for raw in fplan.drop:
            row = live.get(raw)
            if row is None:  # renamed above
                continue
            repo.update_folder(s, row.id, status="gone", status_reason=f"gone from the server (run {self.run_id})")
            repo.tombstone_folder(s, row.id, self.run_id)
            self._audit(uow, "folder_gone", "gone from the server: its messages are kept one run as tombstones",
                        folder=row.name)
        uow.commit()
        self._pending_flags = repo.pending_flag_placements(s, self.account_id)
        pending = set(self._pending_flags)
        out = []
        by_raw = {f.raw_name: f for f in repo.folders_of(s, self.account_id)}
        for raw in fplan.sync:
            f = by_raw.get(raw)
            if f is None:
                continue
            # only a folder never completed can be empty of placements and downloaded whole (rule D4)
            placements = f.messages is not None or (raw not in created and repo.has_placements(s, f.id))
            out.append(_Folder(f.id, f.raw_name, f.name, f.status, f.status_reason,
                               rules.FolderCheckpoint(f.uidvalidity, f.uidnext, f.highestmodseq, f.messages),
                               f.id in pending, placements))
        return out

    # -- server -> store: one folder ----------------------------------------------------------

    def _sync_folder(self, conn: ImapConnection, db: StoreWorker, folder: _Folder, ahead: str | None = None) -> None:
        """``ahead``: the next folder to sync, when it is a first-sync download too (rule D4): its
        commands are sent while this folder's messages are read."""
        cp = folder.checkpoint
        qres = (cp.uidvalidity, cp.highestmodseq) if (cp.uidvalidity and cp.highestmodseq) else None
        info = conn.select(folder.raw_name, qresync=qres)
        if rules.decide_uidvalidity(cp.uidvalidity, info.uidvalidity, cp.messages or 0).action == "aside":
            if not self._rematch(conn, db, folder, info):  # rule V1 may still re-approve it
                return
            # re-approved: compared in full from here (the QRESYNC data of this SELECT was for the
            # old UIDVALIDITY, so the server sent none)
            cp = rules.FolderCheckpoint(info.uidvalidity, None, None, None)
            folder = dataclasses.replace(folder, status="ok", reason=None, checkpoint=cp, pending=True)
        mode, reason = rules.delta_mode(qresync=conn.qresync and qres is not None, condstore=conn.condstore,
                                    stored_modseq=cp.highestmodseq if cp.uidvalidity == info.uidvalidity else None,
                                    current_modseq=info.highestmodseq, nomodseq=info.nomodseq)
        if rules.download_whole(mode, bodies_before_run=self._bodies_before_run, has_placements=folder.placements):
            # nothing to compare: the worker adopts UIDVALIDITY while this thread reads on
            db.submit(self._adopt_whole, folder.id, folder.name, info, reason, small=True)
            self.observer.folder_started(self.account.name, folder.name, info.exists or 0)
            if info.exists:
                if self.store.packs is not None:
                    self._download_packed(conn, db, folder.id, folder.name, ahead, info)
                else:
                    self._download(conn, db, folder.id, folder.name, None, ahead, info)
            db.submit(self._complete_folder, folder.id, folder.name, info, small=True)
            return
        if mode == "qresync":
            changed, vanished, full = dict(info.changed), list(info.vanished), False
        elif mode == "condstore":
            changed = (conn.uid_flags("1:*", changedsince=cp.highestmodseq)
                       if info.highestmodseq != cp.highestmodseq else {})
            vanished, full = None, False  # worked out against the store below
        else:
            changed, vanished, full = (self._listing(conn, folder, info, conn.uid_flags) if info.exists else {}), None, True
        listed = None  # the UIDs the server listed, when it listed more than `changed` (rule M4)
        if mode == "qresync":
            vanished, listed = self._qresync_checked(conn, db, folder, info, changed, vanished)
        if mode == "condstore":
            local = db.call(lambda uow: set(repo.uid_flags(uow.connection, folder.id)))
            new_count = sum(1 for u in changed if u not in local)
            if info.exists != len(local) + new_count:
                server_uids = set(self._listing(conn, folder, info, lambda: conn.uid_search("ALL"))) \
                    if info.exists else set()
                vanished = sorted(local - server_uids)
                listed = server_uids
            else:
                vanished = []
        delta: _Delta = db.call(self._reconcile, folder.id, info, changed, vanished, full, reason,
                                listed, self._contradicted.pop(folder.id, None))
        if delta.skipped:
            self.result.notes.append(f"folder {folder.name!r}: {delta.skipped}")
            return
        if delta.pushes:
            self._push_flags(conn, db, folder, delta.pushes)
        self.observer.folder_started(self.account.name, folder.name, len(delta.new))
        deferred = False
        if delta.new:
            to_download = delta.new
            if delta.have_bodies:
                headers = rules.only_asked(conn.fetch_headers(delta.new), delta.new)
                keys = {uid: (message_id(it.header_fields or b""), it.size) for uid, it in headers.items()}
                known = db.call(lambda uow: repo.bodies_by_message_id(
                    uow.connection, [k for k in keys.values() if k[0] and k[1] is not None]))
                linked = {uid for uid, k in keys.items() if k in known}
                for uid in sorted(linked):
                    self._deferred_links.append((folder.id, uid, headers[uid], known[keys[uid]]))
                deferred = bool(linked)
                to_download = [u for u in delta.new if u not in linked]
            if to_download:
                self._download(conn, db, folder.id, folder.name, to_download)
        if deferred:
            self._deferred_complete.append((folder.id, folder.name, info))
        else:
            db.submit(self._complete_folder, folder.id, folder.name, info, small=True)

    def _reconcile(self, uow: UnitOfWork, folder_id: int, info, changed: dict, vanished, full: bool,
                   reason: str | None, listed: set[int] | None = None, contradiction: str | None = None) -> _Delta:
        """Rule F3 (adopt), then the plan of rules M1-M3 and T1-T3 (plan.plan_messages) carried out:
        tombstones, flag updates, conflicts to the audit log; commits. Pushes are left to the caller."""
        s = uow.connection
        folder = repo.get_folder(s, folder_id)
        if reason:
            self._audit(uow, "full_comparison", reason, folder=folder.name)
        if folder.uidvalidity != info.uidvalidity:  # adopt (rule F3: no live placements)
            self._orphans.update(repo.drop_server_placements(s, folder_id))
            repo.adopt_uidvalidity(s, folder_id, info.uidvalidity)  # `folder` is not read for these after
        self._restore_tombstones(uow, folder, changed if listed is None else listed)  # rule M4
        if full:
            local = repo.live_placements(s, folder_id)
        else:  # only what changed, and what we changed: the cost follows change (rule D2)
            local = repo.live_placements_for(s, folder_id, list(changed) + list(vanished or ()),
                                             self._pending_flags.get(folder_id, ()))
        policy = self.account.conflict
        # Only an unagreed placement can conflict (T2), and only conflict = "newest" asks when its
        # local change was made: that look-up is done for those alone.
        view = {uid: rules.LocalMessage(p.flags, p.base_flags, p.modseq, bool(
                    policy == "newest" and p.base_flags is None and folder.last_synced_at is not None
                    and _newest_local_change(s, p.id, folder.last_synced_at)))
                for uid, p in local.items()}
        plan = rules.plan_messages(view, {uid: rules.ServerMessage(it.flags or (), it.modseq) for uid, it in changed.items()},
                               vanished=vanished, full=full, policy=policy)
        plan.expunged = self._hold_deletions(uow, folder, plan.expunged, len(local) if full else None,
                                             contradiction)  # rules G1-G2
        if plan.expunged:
            repo.tombstone(s, folder_id, plan.expunged, self.run_id)
            self._expunged.update(local[uid].id for uid in plan.expunged)
            self.result.add(expunged=len(plan.expunged))
        repo.update_placements(s, ((local[uid].id, _changed(local[uid], flags=flags, base_flags=base, modseq=modseq))
                                   for uid, (flags, base, modseq) in plan.updates.items()))
        self.result.add(flag_changes=plan.flag_changes)
        for uid, flag, on_server, on_local, kept in plan.conflicts:
            self.result.add(conflicts=1)
            self._audit(uow, "conflict", f"flag {flag}: server {'has' if on_server else 'lacks'} it, "
                        f"local {'has' if on_local else 'lacks'} it, no agreed base; "
                        f"settled by conflict = {policy!r}: {'kept' if kept else 'dropped'}",
                        folder=folder.name, uid=uid)
        # A queued change that changes nothing (+\\Seen on a read message; +X then -X) settles now:
        # the placement agrees with the server already (rule T4).
        pending = self._pending_flags.get(folder_id, set())
        settled = [local[uid].id for uid in plan.settled]
        settled += [p.id for p in local.values() if p.id in pending and p.flags == p.base_flags]
        if settled:
            repo.settle_flag_ops(s, settled)
        delta = _Delta(new=plan.new, pushes=[(uid, add, remove, modseq, tuple(plan.updates[uid][0].split()))
                                             for uid, add, remove, modseq in plan.pushes])
        if delta.new:
            delta.have_bodies = self._bodies_before_run
        uow.commit()
        crash.point("folder reconciled")
        return delta

    def _adopt_whole(self, uow: UnitOfWork, folder_id: int, name: str, info, reason: str | None) -> None:
        """_reconcile for a folder downloaded whole (rule D4): it has no placements, so there is
        nothing to compare, tombstone or set aside; rule F3 adopts the server's UIDVALIDITY."""
        if reason:
            self._audit(uow, "full_comparison", reason, folder=name)
        repo.adopt_uidvalidity(uow.connection, folder_id, info.uidvalidity)
        uow.commit()
        crash.point("folder reconciled")

    def _push_flags(self, conn: ImapConnection, db: StoreWorker, folder: _Folder, pushes) -> None:
        """Rule T3: one STORE per change under UNCHANGEDSINCE; record what the server answered."""
        groups: dict[tuple, list[int]] = {}
        for uid, add, remove, modseq, result in pushes:
            replace = bool(add and remove and modseq is not None and conn.condstore)
            groups.setdefault((add, remove, modseq, result if replace else None), []).append(uid)
        answered: dict[int, object] = {}
        refused: set[int] = set()
        for (add, remove, modseq, result), uids in groups.items():
            steps = [("FLAGS", result)] if result is not None else [("+FLAGS", add), ("-FLAGS", remove)]
            for op, flags in steps:
                if not flags and op != "FLAGS":
                    continue
                fetched, modified = conn.uid_store(uids, op, flags, unchangedsince=modseq)
                crash.point("flags stored")
                answered.update(fetched)
                refused.update(modified)
        db.submit(self._record_flag_pushes, folder.id, folder.name, [p[0] for p in pushes], answered, refused)

    def _record_flag_pushes(self, uow: UnitOfWork, folder_id: int, name: str, uids: list[int],
                            answered: dict, refused: set[int]) -> None:
        s = uow.connection
        local = repo.live_placements(s, folder_id)
        done, changes = [], []
        for uid in uids:
            p = local.get(uid)
            if p is None:
                continue
            if uid in refused:  # MODIFIED: the server changed it meanwhile; re-read and re-merge next run
                self._audit(uow, "modified", "the server changed the flags meanwhile: merged again next sync",
                            folder=name, uid=uid)
                changes.append((p.id, _changed(p, modseq=None)))
                continue
            item = answered.get(uid)
            modseq = p.modseq
            if item is not None and item.flags is not None:
                server = rules.flags_text(item.flags)
                if server != p.flags:  # someone else's change landed between our merge and STORE
                    changes.append((p.id, _changed(p, base_flags=server)))
                    continue
                modseq = item.modseq or p.modseq
            changes.append((p.id, _changed(p, base_flags=p.flags, modseq=modseq)))
            done.append(p.id)
            self.result.add(pushed=1)
        repo.update_placements(s, changes)
        if done:
            repo.settle_flag_ops(s, done)
        uow.commit()

    def _complete_folder(self, uow: UnitOfWork, folder_id: int, name: str, info) -> None:
        repo.mark_folder_synced(uow.connection, folder_id, info.uidnext, info.highestmodseq, info.exists, utcnow(),
                                info.mailboxid)
        uow.commit()
        crash.point("folder complete")
        self.result.add(folders=1)
        self.observer.folder_done(self.account.name, name)

    # -- UIDVALIDITY ----------------------------------------------------------------------------

    def _rematch(self, conn: ImapConnection, db: StoreWorker, folder: _Folder, info) -> bool:
        """Rule V1: find the folder's known messages again by (Message-ID, size), download nothing.
        True when the folder was re-approved (its placements have their new UIDs)."""
        uids = conn.uid_search("ALL") if info.exists else []
        headers = conn.fetch_headers(uids) if uids else {}
        return db.call(self._apply_rematch, folder.id, info, headers)

    def _apply_rematch(self, uow: UnitOfWork, folder_id: int, info, headers: dict) -> bool:
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
            self._audit(uow, "uidvalidity_aside", why, folder=folder.name)
            self.result.set_aside.append(f"folder {folder.name!r}: {why}")
            uow.commit()
            return False
        lost = [(pid, sha) for pid, sha, _mid, _size in rows if pid not in matches]
        self._orphans.update(sha for _, sha in lost)
        repo.rematch_placements(s, folder_id, matches, [pid for pid, _ in lost])
        repo.update_folder(s, folder_id, uidvalidity=info.uidvalidity, uidnext=None, highestmodseq=None, fetched_uid=0)
        self._audit(uow, "uidvalidity_rematched", f"UIDVALIDITY changed from {old} to {info.uidvalidity}: "
                    f"{found} of {known} known messages found again by Message-ID and size; nothing downloaded",
                    folder=folder.name)
        uow.commit()
        return True

    # -- messages -----------------------------------------------------------------------------

    def _link_deferred(self, uow: UnitOfWork) -> None:
        """Rules N1/N2 for the new UIDs recognised by (Message-ID, size), after every folder was read."""
        if not self._deferred_links:
            return
        s = uow.connection
        shas = sorted({sha for *_, sha in self._deferred_links})
        tombs: dict[str, list[int]] = {}
        local: dict[int, tuple[str, str | None]] = {}  # tombstone -> (flags, base) with a local change
        for pid, sha, flags, base in repo.run_tombstones(s, self.account_id, self.run_id, shas):
            tombs.setdefault(sha, []).append(pid)
            if flags != base:
                local[pid] = (flags, base)
        moves: list[tuple[int, dict]] = []
        rows_by_folder: dict[int, list[dict]] = {}
        for folder_id, uid, item, sha in self._deferred_links:
            row = self._placement_row(folder_id, item, sha)
            t = tombs.get(sha)
            if t:
                pid = t.pop(0)
                moves.append((pid, {"folder_id": folder_id, "uid": uid, "tombstone_run": None,
                                    "flags": row["flags"], "base_flags": row["flags"], "modseq": row["modseq"],
                                    "internaldate": row["internaldate"], "size": row["size"]}))
                if pid in local:  # a local flag change follows the message to its new folder (rule N3)
                    flags, base = local[pid]
                    moves[-1][1].update(flags=flags, base_flags=base)
                    self._carried.setdefault(folder_id, {})[uid] = rules.ServerMessage(
                        tuple(row["flags"].split()), row["modseq"])
                self.result.add(moves=1)
                if pid in self._expunged:  # counted as expunged in this run; a dropped folder's were not
                    self.result.add(expunged=-1)
            else:
                rows_by_folder.setdefault(folder_id, []).append(row)
            self.result.add(new_messages=1)
        repo.update_placements(s, moves)
        for folder_id, rows in rows_by_folder.items():
            repo.add_placements(s, self._adopt_unsettled(s, folder_id, rows))
        uow.commit()
        crash.point("links committed")

    def _push_carried(self, conn: ImapConnection, db: StoreWorker) -> None:
        """Rule N3's second half: merge each carried flag change with the flags the server gave the
        moved message (T1/T2) and push the result (T3), in this run, like any folder's pushes."""
        for folder_id, server in self._carried.items():
            folder, pushes = db.call(self._merge_carried, folder_id, server)
            if pushes:
                conn.select(folder.raw_name)
                self._push_flags(conn, db, folder, pushes)

    def _merge_carried(self, uow: UnitOfWork, folder_id: int, server: dict) -> tuple[_Folder, list]:
        s = uow.connection
        f = repo.get_folder(s, folder_id)
        local = repo.live_placements_for(s, folder_id, list(server))
        plan = rules.plan_messages({uid: rules.LocalMessage(p.flags, p.base_flags, p.modseq) for uid, p in local.items()},
                               {uid: m for uid, m in server.items() if uid in local}, vanished=[], full=False,
                               policy=self.account.conflict)
        repo.update_placements(s, ((local[uid].id, _changed(local[uid], flags=flags, base_flags=base, modseq=modseq))
                                   for uid, (flags, base, modseq) in plan.updates.items()))
        if plan.settled:
            repo.settle_flag_ops(s, [local[uid].id for uid in plan.settled])
        uow.commit()
        folder = _Folder(f.id, f.raw_name, f.name, f.status, f.status_reason, None, False, True)
        return folder, [(uid, add, remove, modseq, tuple(plan.updates[uid][0].split()))
                        for uid, add, remove, modseq in plan.pushes]

    def _cleanup(self, uow: UnitOfWork) -> None:
        """Expire tombstones of earlier runs (rule N2) and folders gone before this run; settle flag
        changes left without a message (rule L4)."""
        s = uow.connection
        if settle_orphaned_flag_changes(s, self.account_id):
            self.result.notes.append("a flag change waited on a message removed on the server since: dropped")
        self._orphans.update(repo.expire_tombstones(s, self.account_id, self.run_id))
        repo.delete_orphan_bodies(s, self._orphans)
        repo.drop_empty_gone_folders(s, self.account_id)
        uow.commit()


@contextlib.contextmanager
def _naming(folder: str, account: str):
    """An IMAP error raised while a folder is synced names the account and the folder (a FETCH
    that went wrong deep in a download otherwise says neither)."""
    try:
        yield
    except (ProtocolError, ConnectError) as exc:
        if f"{folder!r}" in exc.message and f"'{account}'" in exc.message:
            raise
        text = exc.message
        if text.startswith(f"account '{account}': "):
            text = text[len(f"account '{account}': "):]
        named = type(exc)(f"account '{account}': folder {folder!r}: {text}", hint=exc.hint)
        named.__dict__.update({k: v for k, v in exc.__dict__.items() if k not in ("message", "hint")})
        raise named from exc


def _with_status(folder, status: dict, mailboxid: str | None = None):
    from dataclasses import replace

    return replace(folder, status=status, mailboxid=mailboxid or folder.mailboxid)


def _newest_local_change(s, placement_id: int, since) -> bool:
    """For conflict = "newest": was the pending local change made after the server was last read?"""
    when = repo.newest_flag_change_at(s, placement_id)
    if when is None:
        return False
    if when.tzinfo is None and since.tzinfo is not None:
        since = since.replace(tzinfo=None)
    elif since.tzinfo is None and when.tzinfo is not None:
        when = when.replace(tzinfo=None)
    return when > since


def _changed(row, **values) -> dict:
    """Of ``values`` (column: new value), those that differ from what ``row`` holds."""
    return {k: v for k, v in values.items() if getattr(row, k) != v}



def sync_account(store: Store, account: AccountConfig, **kw) -> AccountResult:
    return AccountSync(store, account, **kw).run()
