"""The executor: gathers the views (server via mailsync.imap, store via repositories), asks
plan.py what to do, and does it with the commit discipline the rules require.

Owns: the order of I/O in a sync, the transaction boundaries, and the journal of local changes.
Must not: make decisions that belong in plan.py, or format output (it reports to a SyncObserver).

Threads: this thread speaks IMAP; every store access goes through one StoreWorker (its own thread
and connection), in submission order, as the functions of store_tasks.py: they take values and
return values, keep their own state in a StoreSide this thread never reads, and report through the
run's RunLedger (ledger.py), the one object both threads write. Downloads overlap reading and writing, and a folder's
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
     merged flags with UNCHANGEDSINCE (T3) and record the answer; on Gmail (X-GM-EXT-1) recognise
     new messages by X-GM-MSGID (N5, gmail.py: a folder's first sync too, so a message shown in
     many folders is downloaded once); recognise new messages already in
     the store by (Message-ID, size) (N1), download the rest in batches (each committed with its
     placements and the folder's download mark), those larger than max_size by their header
     section alone (H1, heads.py; after max_size was raised, the bodies it allows now, H3); then
     commit UIDNEXT/HIGHESTMODSEQ as read at SELECT (C1), after the links of step 5 when a folder
     has any;
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
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from mailsync.auth.login import open_connection
from mailsync.config.limits import limits_key
from mailsync.config.model import AccountConfig
from mailsync.errors import ConnectError, FolderMissing, MailsyncError, ProtocolError, Throttled
from mailsync.imap import utf7
from mailsync.store import repositories as repo
from mailsync.store.db import Store
from mailsync.store.uow import UnitOfWork
from mailsync.store.worker import PackWriter, StoreWorker
from mailsync.sync import crash, guards, pacing, store_tasks
from mailsync.sync.gmail import GmailSync, is_gmail
from mailsync.sync.gmail import folder_label as gmail_folder_label
from mailsync.sync import plan as rules
from mailsync.sync.message import message_id
from mailsync.sync.download import Downloads, bulk_checkpoints_task
from mailsync.sync.heads import Heads
from mailsync.sync.journal_push import JournalPush
from mailsync.sync.limits import Limits, record_left_out
from mailsync.sync.ledger import AccountResult, RunLedger, SyncObserver  # noqa: F401 (AccountResult: the API)
from mailsync.sync.store_tasks import Delta, StoreSide, SyncFolder

if TYPE_CHECKING:
    from mailsync.sync.session import ImapSession

log = logging.getLogger("mailsync.sync")


class SyncInterrupted(MailsyncError):
    """The caller asked the sync to stop (the watch daemon shutting down); raised between steps, after
    the step in progress was committed, so the next sync resumes from there."""


class AccountSync(Downloads, Heads, JournalPush, Limits, guards.ServerChecks, GmailSync):
    """One two-way delta sync of an account.

    For the watch daemon (mailsync.push), two optional hooks; without them nothing changes:
    ``should_stop()`` is asked between steps (before each local change, each folder, each batch)
    and, when true, the run ends with SyncInterrupted; ``release(conn, clean)`` is called instead of
    ``conn.logout()`` so a caller can keep a healthy connection open for the next run (``clean`` is
    False when the run ended with an error), and per-run counters then count this run only.
    """

    def __init__(self, store: Store, account: AccountConfig, *, observer: SyncObserver | None = None,
                 connect: Callable[[AccountConfig], ImapSession] = open_connection,
                 should_stop: Callable[[], bool] | None = None,
                 release: Callable[[object, bool], None] | None = None,
                 allow_mass_delete: bool = False, mirror_stage=None, fence=None) -> None:
        self.store = store
        # a watch worker's lease on the account (mailsync.store.lease_repo.Fence): every commit of
        # this sync checks it in its transaction, and fails rather than write under a lost lease
        self.fence = fence if fence is None or fence.account == account.name else None
        self.mirror_stage = mirror_stage  # a live Maildir mirror's files, written as bodies come (mirror.stage)
        self.allow_mass_delete = allow_mass_delete  # rule G2: apply deletions of most of a folder
        self.account = account
        self.observer = observer or SyncObserver()
        self._connect = connect
        self._should_stop = should_stop
        self._release = release
        self._conn_base = (0, 0, 0)  # a reused connection's counters when this run got it
        self.result = AccountResult(account=account.name)
        self.ledger = RunLedger(self.result)  # what both threads write (the store tasks, and this one)
        self.side: StoreSide | None = None  # the store tasks' state: handed to them, never read here
        self._deferred_links: list[tuple[int, int, object, str]] = []  # (folder_id, uid, item, sha)
        self._deferred_complete: list[tuple[int, str, object]] = []
        self._bodies_before_run = False
        self._bulk_checkpoints = False  # the store worker's connection checkpoints in bulk (first syncs)
        self._writer: PackWriter | None = None  # writes first syncs' pack batches (_download_packed)
        self._contradicted: dict[int, str] = {}  # folder id -> why its listing was not believed (rule G1)
        self._carried: dict[int, dict[int, rules.ServerMessage]] = {}  # rule N3: folder id -> uid -> server's flags
        self._gm_folders: dict[int, str | None] = {}  # Gmail: folder id -> its label (gmail.folder_label)
        self._throttles = 0  # throttled runs right before this one (mailsync.sync.pacing)
        self._relimited: set[int] = set()  # folders last synced under other download limits (rule A3)
        self._left_out: dict[int, tuple] = {}  # rule A3: folder id -> (EXISTS, UIDs LARGER than max_size), with limits

    # -- entry point --------------------------------------------------------------------------

    def run(self) -> AccountResult:
        t0 = time.monotonic()
        acc = self.account
        self.observer.account_started(acc.name)
        with self._fence_lost():  # the server is not contacted then
            with UnitOfWork(self.store, fence=self.fence) as uow:
                self.account_id, until, why, self._throttles = repo.account_for_run(uow.connection, acc.name, acc.host,
                                                                                   acc.username)
                if until is not None and until.timestamp() > time.time():  # asked to wait: the server is not contacted
                    uow.commit()
                    return self._still_throttled(until, why, t0)
                self.run_id = repo.start_run(uow.connection, self.account_id)
                uow.commit()
                # With no body in the store before this run, no new message can be one we already have:
                # the first sync skips the (Message-ID, size) look-up (rule N1) and just downloads.
                self._bodies_before_run = self.store.had_bodies or repo.has_bodies(uow.connection)
                self.store.had_bodies = self._bodies_before_run
        if not self.result.ok:
            self.result.seconds = time.monotonic() - t0
            self.observer.account_done(self.result)
            return self.result
        self.ledger.account_id, self.ledger.run_id = self.account_id, self.run_id
        self.side = StoreSide(acc, self.account_id, self.run_id, self.ledger, self.observer,
                              self._bodies_before_run, self.allow_mass_delete)
        conn = None
        try:
            with StoreWorker(self.store, fence=self.fence, lazy=True) as db:
                clean = False
                try:
                    conn = self._connect(acc)
                    self._conn_base = (conn.bytes_fetched, conn.bodies_fetched, conn.commands)
                    self._push_ops(conn, db)
                    self._pull(conn, db)
                    links = list(self._deferred_links)
                    db.call(store_tasks.settle_mass, self.side, links, self._gm_folders if is_gmail(conn) else None)
                    self._carried = db.call(store_tasks.link_deferred, self.side, links)
                    self._push_carried(conn, db)
                    for folder_id, name, info in self._deferred_complete:
                        db.submit(store_tasks.complete_folder, self.side, folder_id, name, info, small=True)
                    if self._left_out:  # rule A3, once every folder's messages are in
                        db.submit(record_left_out, dict(self._left_out), small=True)
                    db.drain()
                    db.call(store_tasks.cleanup, self.side)
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
        except Throttled as exc:  # what was read is committed; the next sync resumes after the wait
            self.result.fail(str(exc))
            self.result.throttled_until = pacing.resume_at(exc, self._throttles, time.time())
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
        if self.result.ok and (self.ledger.orphans() or self.result.expunged or self.result.moves or self.result.pushed):
            self._compact()
        if conn is not None:
            self.result.bytes_fetched = conn.bytes_fetched - self._conn_base[0]
            self.result.bodies_downloaded = conn.bodies_fetched - self._conn_base[1]
            self.result.commands = conn.commands - self._conn_base[2]
        self.result.seconds = time.monotonic() - t0
        with self._fence_lost():  # nothing written then
            self._finish_run()
        self.observer.account_done(self.result)
        return self.result

    @contextlib.contextmanager
    def _fence_lost(self):
        """Under a watch worker's lease, a store error (the fence refusing a commit: another worker
        holds the account now) fails this run; without a fence it is raised as before."""
        try:
            yield
        except MailsyncError as exc:
            if self.fence is None:
                raise
            self.result.fail(str(exc))

    def _still_throttled(self, until, why: str | None, t0: float) -> AccountResult:
        """The run of an account the server asked to wait: nothing is sent to it before ``until``."""
        self.result.fail(f"account '{self.account.name}': not contacted: the server throttled it and mailsync waits "
                         f"until {until:%Y-%m-%d %H:%M:%S} UTC before the next try"
                         + (f" ({why.splitlines()[0]})" if why else ""))
        self.result.throttled_until = until.timestamp()
        self.result.seconds = time.monotonic() - t0
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
            self.ledger.note(f"compacted {done.packs} body pack(s): {done.moved} live bytes moved")

    def _stopping(self) -> bool:
        return self._should_stop is not None and self._should_stop()

    def _check_stop(self) -> None:
        if self._stopping():
            raise SyncInterrupted(f"account '{self.account.name}': sync stopped at a step boundary (shutting down); "
                                  f"the next sync resumes from the last committed step")

    def _finish_run(self) -> None:
        r = self.result
        with UnitOfWork(self.store, fence=self.fence) as uow:
            repo.finish_run(uow.connection, self.run_id, status="ok" if r.ok else "failed", error=r.error,
                            folders=r.folders, new_messages=r.new_messages, flag_changes=r.flag_changes,
                            expunged=r.expunged, bytes_fetched=r.bytes_fetched,
                            bodies_downloaded=r.bodies_downloaded, moves=r.moves, pushed=r.pushed,
                            conflicts=r.conflicts,
                            notes="\n".join(r.notes + [f"SET ASIDE: {w}" for w in r.set_aside]) or None)
            if r.throttled_until is not None:
                repo.set_throttle(uow.connection, self.account_id,
                                  datetime.fromtimestamp(r.throttled_until, timezone.utc), r.error, self._throttles + 1)
            elif self._throttles:  # a run that was not throttled ends the series
                repo.set_throttle(uow.connection, self.account_id, None, None, 0)
            uow.commit()

    # -- server -> store: folders -------------------------------------------------------------

    def _pull(self, conn: ImapSession, db: StoreWorker) -> None:
        acc = self.account
        sent = conn.commands
        remote = [f for f in conn.list_folders(handed=True)  # the quick check's, if it just read one
                  if f.selectable and rules.folder_selected(f.name, acc.folders, acc.exclude)]
        if conn.commands == sent:  # that LIST was sent for this sync: it counts among its commands
            self._conn_base = (*self._conn_base[:2], self._conn_base[2] - 1)
        for why in conn.unlisted:  # names that cannot be used: set aside, the rest goes on
            self.ledger.set_aside(f"a folder was set aside: {why}")
        if conn.condstore and not conn.has("LIST-STATUS"):
            remote = [_with_status(f, *self._status(conn, f)) for f in remote]
        elif not conn.has("LIST-STATUS"):
            known = db.call(store_tasks.known_folder_names, self.side)
            remote = [f if f.raw_name in known else _with_status(f, *self._status(conn, f)) for f in remote]
        rows = db.call(lambda uow: repo.folders_of(uow.connection, self.account_id, gone=True))
        renames = self._identify_renames(conn, db, remote, [f for f in rows if f.status != "gone"])
        # the rows just read, unless identifying a rename asked the server (other writers had time)
        folders = db.call(store_tasks.apply_folder_plan, self.side, remote, renames,
                          None if renames.asked_server else rows)
        if is_gmail(conn):  # folder id -> the label Gmail leaves out of X-GM-LABELS there (gmail.py)
            uses = {f.raw_name: f.special_use for f in remote}
            self._gm_folders = {f.id: gmail_folder_label(f.raw_name, uses.get(f.raw_name)) for f in folders}
        status = {f.raw_name: f.status for f in remote}
        folder_errors = []
        current = limits_key(acc.max_age, acc.max_size)
        self._relimited = {f.id for f in folders if f.limits is not None and f.limits != current}
        unchanged = {f.id for f in folders if f.status != "aside" and f.id not in self._relimited
                     and rules.folder_unchanged(f.checkpoint, status.get(f.raw_name), f.pending or f.status == "held")}
        todo = [f for f in folders if f.status != "aside" and f.id not in unchanged]
        # each download of a whole folder (rule D4, when its SELECT says there is nothing to compare)
        # sends the next one's SELECT and FETCH ahead (bulk_ahead)
        # (not on Gmail: a folder's messages are listed by X-GM-MSGID before any is downloaded, rule N5;
        # not under max_age or max_size, rule A2: the UIDs to download come from a SEARCH)
        ahead = {} if is_gmail(conn) else {a.id: b.raw_name for a, b in zip(todo, todo[1:])
                 if acc.max_age is None and acc.max_size is None
                 and rules.download_whole("full", has_placements=b.placements, bodies_before_run=self._bodies_before_run)
                 and (status.get(b.raw_name) or {}).get("MESSAGES")}
        for folder in folders:
            self._check_stop()
            if folder.status == "aside":
                self.ledger.set_aside(f"folder {folder.name!r} skipped: {folder.reason}")
                continue
            if folder.id in unchanged:
                self.ledger.add(folders=1)
                continue
            try:
                with _naming(folder.name, acc.name):
                    self._sync_folder(conn, db, folder, ahead.get(folder.id), status.get(folder.raw_name))
            except ProtocolError as exc:  # one bad folder does not stop the others
                if conn.broken:
                    raise
                if isinstance(exc, FolderMissing) and not folder.placements:
                    # Listed, yet not there (deleted since the LIST; Dovecot lists the deleted parent of
                    # other folders so, every time): the store holds no mail of it, so nothing is at
                    # stake and the run is not failed for it; `status` shows why it is empty.
                    self.ledger.note(f"folder {folder.name!r} is listed but cannot be selected "
                                             f"({exc}): it holds no mail here and is left out")
                    db.submit(store_tasks.folder_failed, folder.id, f"listed but cannot be selected: {exc}", small=True)
                    continue
                folder_errors.append(str(exc))
                db.submit(store_tasks.folder_failed, folder.id, str(exc), small=True)
                continue
            if folder.status == "error":
                db.submit(store_tasks.folder_failed, folder.id, None, small=True)
        if folder_errors:
            raise ProtocolError("; ".join(folder_errors))

    def _identify_renames(self, conn: ImapSession, db: StoreWorker, remote, known) -> "_Renames":
        """Rule F4: {new raw name: id of the known folder it is, renamed}. MAILBOXIDs settle a pair
        at no cost; a pair that only shares UIDVALIDITY is checked by reading a sample of the known
        folder's UIDs in the new folder (one EXAMINE and one FETCH per candidate pair). ``known``:
        the store's folders not gone. The answer's ``asked_server``: was the server asked (EXAMINE)?"""
        listed = {f.raw_name for f in remote}
        known_names = {f.raw_name for f in known}
        vanished = [f for f in known if f.raw_name not in listed]
        fresh = [f for f in remote if f.raw_name not in known_names]
        if not vanished or not fresh:
            return _Renames()
        with_messages = db.call(lambda uow: {f.id for f in vanished if repo.has_placements(uow.connection, f.id)})
        ids = {f.raw_name: f.mailboxid for f in fresh}
        asked = bool(conn.has("OBJECTID") and any(f.mailboxid for f in vanished))
        if asked:
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
        renames = _Renames(rules.decide_renames(certain, checked))
        renames.asked_server = asked or bool(to_check)
        for new_raw, folder_id in to_check:
            if checked[(new_raw, folder_id)] and renames.get(new_raw) != folder_id:
                self.ledger.note(f"folder {utf7.decode(new_raw)!r}: more than one known folder could "
                                         f"be it (a rename?); synced as a new folder, its messages linked, "
                                         f"not downloaded again")
        return renames

    # -- server -> store: one folder ----------------------------------------------------------

    def _sync_folder(self, conn: ImapSession, db: StoreWorker, folder: SyncFolder, ahead: str | None = None,
                     status: dict | None = None) -> None:
        """``ahead``: the next folder to sync, when it is a first-sync download too (rule D4): its
        commands are sent while this folder's messages are read. ``status``: the folder's counters
        as the listing gave them (rule D6)."""
        cp = folder.checkpoint
        qres = (cp.uidvalidity, cp.highestmodseq) if (cp.uidvalidity and cp.highestmodseq) else None
        early = None  # rule D6: UID -> headers, asked for with the SELECT
        uid_from = (rules.headers_ahead_from(cp, status) if self._bodies_before_run and not is_gmail(conn)
                    and self.account.max_age is None and self.account.max_size is None else None)
        if uid_from is not None:
            info, early = conn.select_with_headers(folder.raw_name, qresync=qres, uid_from=uid_from)
            if info.uidvalidity != cp.uidvalidity:
                early = None
        else:
            info = conn.select(folder.raw_name, qresync=qres)
        if rules.decide_uidvalidity(cp.uidvalidity, info.uidvalidity, cp.messages or 0).action == "aside":
            if not self._rematch(conn, db, folder, info):  # rule V1 may still re-approve it
                return
            # re-approved: compared in full from here (the QRESYNC data of this SELECT was for the
            # old UIDVALIDITY, so the server sent none)
            cp = rules.FolderCheckpoint(info.uidvalidity, None, None, None)
            folder = dataclasses.replace(folder, status="ok", reason=None, checkpoint=cp, pending=True)
        relimited = folder.id in self._relimited
        self._count_left_out(conn, folder.id, info.exists, relimited)  # rule A3
        mode, reason = rules.delta_mode(qresync=conn.qresync and qres is not None, condstore=conn.condstore,
                                    stored_modseq=cp.highestmodseq if cp.uidvalidity == info.uidvalidity else None,
                                    current_modseq=info.highestmodseq, nomodseq=info.nomodseq)
        if relimited and mode != "full":  # what a looser limit now allows is in no delta: compare in full once
            mode, reason = "full", "the download limits changed since the last sync: full comparison"
        if rules.download_whole(mode, bodies_before_run=self._bodies_before_run, has_placements=folder.placements):
            # nothing to compare: the worker adopts UIDVALIDITY while this thread reads on
            db.submit(store_tasks.adopt_whole, self.side, folder.id, folder.name, info, reason, small=True)
            self.observer.folder_started(self.account.name, folder.name, info.exists or 0)
            limited = self.account.max_age is not None or self.account.max_size is not None
            if info.exists and is_gmail(conn):  # each X-GM-MSGID's body once (rule N5)
                allowed = self._within_limits(conn, None) if limited else None  # rule A2
                rest, deferred = self._gmail_new(conn, db, folder, allowed) if allowed is None or allowed else ([], False)
                if rest:
                    self._download(conn, db, folder.id, folder.name, rest)
                heads = self._larger_new(conn, None)  # rule H1 (after N5: a body stored is placed)
                if heads:
                    rest, more = self._gmail_new(conn, db, folder, heads)
                    self._download_heads(conn, db, folder.id, folder.name, rest)
                    deferred = deferred or more
                if deferred:
                    self._deferred_complete.append((folder.id, folder.name, info))
                    return
            elif info.exists and limited:  # rule A2
                uids = self._within_limits(conn, None)
                if uids:
                    self._download(conn, db, folder.id, folder.name, uids)
                heads = self._larger_new(conn, None)  # rule H1
                if heads:
                    self._download_heads(conn, db, folder.id, folder.name, heads)
            elif info.exists:
                if self.store.packs is not None:
                    self._download_packed(conn, db, folder.id, folder.name, ahead, info)
                else:
                    self._download(conn, db, folder.id, folder.name, None, ahead, info)
            db.submit(store_tasks.complete_folder, self.side, folder.id, folder.name, info, small=True)
            return
        if mode == "qresync":
            changed, vanished, full = dict(info.changed), list(info.vanished), False
        elif mode == "condstore":
            changed = (conn.uid_flags("1:*", changedsince=cp.highestmodseq)
                       if info.highestmodseq != cp.highestmodseq else {})
            vanished, full = None, False  # worked out against the store below
        else:
            listing = self._listing(conn, folder, info, lambda: self._flags_listing(conn, info)) if info.exists else {}
            changed, vanished, full = listing, None, True
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
        if is_gmail(conn):  # the labels of what changed (a label change moves MODSEQ on Gmail)
            self._gmail_labels(db, changed.values(), folder.id)
        delta: Delta = db.call(store_tasks.reconcile, self.side, folder.id, info, changed, vanished, full, reason,
                                listed, self._contradicted.pop(folder.id, None))
        if delta.skipped:
            self.ledger.note(f"folder {folder.name!r}: {delta.skipped}")
            return
        if delta.expunged and is_gmail(conn):  # rule N8: gone from a label's folder, the label is gone
            self._gmail_left(db, folder.id, delta.expunged)
        if delta.pushes:
            self._push_flags(conn, db, folder, delta.pushes)
        self.observer.folder_started(self.account.name, folder.name, len(delta.new))
        new = self._within_limits(conn, delta.new) if delta.new else delta.new  # rule A1: before anything is read
        heads = self._larger_new(conn, delta.new)  # rule H1
        deferred = self._new_messages(conn, db, folder, new, delta.have_bodies, self._download, early)
        deferred = self._new_messages(conn, db, folder, heads, delta.have_bodies, self._download_heads) or deferred
        if relimited:  # rule H3: the bodies a looser max_size allows now
            self._complete_heads(conn, db, folder.id, folder.name)
        if deferred:
            self._deferred_complete.append((folder.id, folder.name, info))
        else:
            db.submit(store_tasks.complete_folder, self.side, folder.id, folder.name, info, small=True)

    def _new_messages(self, conn: ImapSession, db: StoreWorker, folder: SyncFolder, new: list[int],
                      have_bodies: bool, fetch, early: dict | None = None) -> bool:
        """The ``new`` UIDs of a folder: placed on a body the store holds (rule N5 on Gmail, then
        N1), the rest read by ``fetch`` (_download, or _download_heads for rule H1). Whether
        placements were deferred to step 5."""
        deferred = False
        if not new:
            return deferred
        to_download = new
        if is_gmail(conn):  # rule N5 first: by X-GM-MSGID, then N1 for the rest
            to_download, deferred = self._gmail_new(conn, db, folder, new)
        if have_bodies and to_download:
            headers = rules.only_asked(_headers(conn, to_download, early), to_download)  # early: rule D6
            keys = {uid: (message_id(it.header_fields or b""), it.size) for uid, it in headers.items()}
            known = db.call(lambda uow: repo.bodies_by_message_id(
                uow.connection, [k for k in keys.values() if k[0] and k[1] is not None]))
            linked = {uid for uid, k in keys.items() if k in known}
            for uid in sorted(linked):
                self._deferred_links.append((folder.id, uid, headers[uid], known[keys[uid]]))
            deferred = deferred or bool(linked)
            to_download = [u for u in to_download if u not in linked]
        if to_download:
            fetch(conn, db, folder.id, folder.name, to_download)
        return deferred

    def _push_flags(self, conn: ImapSession, db: StoreWorker, folder: SyncFolder, pushes) -> None:
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
        db.submit(store_tasks.record_flag_pushes, self.side, folder.id, folder.name, [p[0] for p in pushes], answered, refused)

    # -- UIDVALIDITY ----------------------------------------------------------------------------

    def _rematch(self, conn: ImapSession, db: StoreWorker, folder: SyncFolder, info) -> bool:
        """Rule V1: find the folder's known messages again by (Message-ID, size), download nothing.
        True when the folder was re-approved (its placements have their new UIDs)."""
        uids = conn.uid_search("ALL") if info.exists else []
        headers = conn.fetch_headers(uids) if uids else {}
        return db.call(store_tasks.apply_rematch, self.side, folder.id, info, headers)

    # -- messages -----------------------------------------------------------------------------

    def _push_carried(self, conn: ImapSession, db: StoreWorker) -> None:
        """Rule N3's second half: merge each carried flag change with the flags the server gave the
        moved message (T1/T2) and push the result (T3), in this run, like any folder's pushes."""
        for folder_id, server in self._carried.items():
            folder, pushes = db.call(store_tasks.merge_carried, self.side, folder_id, server)
            if pushes:
                conn.select(folder.raw_name)
                self._push_flags(conn, db, folder, pushes)

class _Renames(dict):
    """_identify_renames' answer: new raw name -> id of the known folder it is."""

    asked_server = False  # did identifying them send anything to the server


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


def _headers(conn: ImapSession, uids: list[int], early: dict | None) -> dict:
    """fetch_headers(uids), taking what rule D6 asked for with the SELECT (``early``) from there."""
    if not early:
        return conn.fetch_headers(uids)
    rest = [u for u in uids if u not in early]
    return {**early, **conn.fetch_headers(rest)} if rest else early


def _with_status(folder, status: dict, mailboxid: str | None = None):
    from dataclasses import replace

    return replace(folder, status=status, mailboxid=mailboxid or folder.mailboxid)


def sync_account(store: Store, account: AccountConfig, **kw) -> AccountResult:
    return AccountSync(store, account, **kw).run()
