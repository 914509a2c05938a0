"""The executor: gathers the views (server via mailsync.imap, store via repositories), asks
plan.py what to do, and does it with the commit discipline the rules require.

Owns: the order of I/O in a sync and the transaction boundaries. Must not: make decisions that
belong in plan.py, or format output (it reports to a SyncObserver).

Threads: this thread speaks IMAP; every store access goes through one StoreWorker (its own thread
and connection), in submission order. Downloads therefore overlap reading and writing, and a
folder's checkpoint task always runs after the batches it covers.

Order of one account's sync:
  1. record a sync run (audit log) and commit, so even a crash leaves a trace;
  2. resolve the password, connect, LIST; plan folders; create/update/drop folder rows;
  3. per folder: SELECT; UID FETCH 1:* (UID FLAGS); in one store task: the UIDVALIDITY rule, the
     message plan, expunges and flag changes committed; then download new messages in batches, each
     committed with its bodies, placements and the folder's `fetched_uid`; then commit the folder's
     UIDNEXT/HIGHESTMODSEQ as read at SELECT (rule C1);
  4. drop bodies no placement refers to; finish the run (ok or failed, with the error) and commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailsync.config.model import AccountConfig
from mailsync.errors import MailsyncError, ProtocolError
from mailsync.store import repositories as repo
from mailsync.store.db import Store
from mailsync.store.models import Folder, SyncRun, utcnow
from mailsync.store.uow import UnitOfWork
from mailsync.store.worker import StoreWorker
from mailsync.sync import plan as P
from mailsync.sync.message import message_id, sha256_hex

log = logging.getLogger("mailsync.sync")

BATCH_BYTES = 16 * 1024 * 1024  # a batch is committed at batch_size messages or this many bytes


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
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, message: str) -> None:
        if self.ok:
            self.ok, self.error = False, message


def _connect_default(account: AccountConfig):
    from mailsync.auth.secrets import resolve_secret
    from mailsync.imap.connection import connect

    if account.password is None:
        raise MailsyncError(f"account '{account.name}': no password source configured",
                            hint="set password = \"env:NAME\" (or cmd:, keyring:) for the account")
    return connect(account, resolve_secret(account.password))


@dataclass(frozen=True)
class _FolderWork:
    """What the store decided for one folder, handed back to the sync thread."""

    name: str
    new: list[int]
    skipped: str | None = None  # why the folder is not synced this time


class AccountSync:
    def __init__(self, store: Store, account: AccountConfig, *, observer: SyncObserver | None = None,
                 connect: Callable[[AccountConfig], object] = _connect_default) -> None:
        self.store = store
        self.account = account
        self.observer = observer or SyncObserver()
        self._connect = connect
        self.result = AccountResult(account=account.name)

    # -- entry point --------------------------------------------------------------------------

    def run(self) -> AccountResult:
        t0 = time.monotonic()
        acc = self.account
        self.observer.account_started(acc.name)
        with UnitOfWork(self.store) as uow:
            account_row = repo.get_or_create_account(uow.session, acc.name, acc.host, acc.username)
            run = repo.start_run(uow.session, account_row.id)
            uow.commit()
            self.account_id, self.run_id = account_row.id, run.id
        conn = None
        try:
            with StoreWorker(self.store) as db:
                try:
                    conn = self._connect(acc)
                    self._sync_folders(conn, db)
                finally:
                    if conn is not None:
                        conn.logout()
        except MailsyncError as exc:
            self.result.fail(str(exc))
        except Exception as exc:  # a bug must not take other accounts down; it is reported as one
            log.exception("account %s: unexpected error", acc.name)
            self.result.fail(f"account '{acc.name}': internal error {exc.__class__.__name__}: {exc}")
        if conn is not None:
            self.result.bytes_fetched = conn.bytes_fetched
        self.result.seconds = time.monotonic() - t0
        self._finish_run()
        self.observer.account_done(self.result)
        return self.result

    def _finish_run(self) -> None:
        r = self.result
        with UnitOfWork(self.store) as uow:
            if r.ok:
                repo.delete_orphan_bodies(uow.session)
            run = uow.session.get_one(SyncRun, self.run_id)
            run.folders, run.new_messages, run.flag_changes = r.folders, r.new_messages, r.flag_changes
            run.expunged, run.bytes_fetched = r.expunged, r.bytes_fetched
            run.notes = "\n".join(r.notes) or None
            repo.finish_run(run, status="ok" if r.ok else "failed", error=r.error)
            uow.commit()

    # -- folders ------------------------------------------------------------------------------

    def _sync_folders(self, conn, db: StoreWorker) -> None:
        acc = self.account
        remote = [P.FolderView(f.raw_name, f.name, f.delimiter, f.special_use) for f in conn.list_folders()
                  if f.selectable and P.folder_selected(f.name, acc.folders, acc.exclude)]
        order, ids = db.call(self._apply_folder_plan, remote)
        folder_errors = []
        for raw in order:
            try:
                self._sync_folder(conn, db, ids[raw], raw)
            except ProtocolError as exc:  # one bad folder does not stop the others
                if getattr(conn, "broken", False):
                    raise
                folder_errors.append(str(exc))
        if folder_errors:
            raise ProtocolError("; ".join(folder_errors))

    def _apply_folder_plan(self, uow: UnitOfWork, remote: list[P.FolderView]):
        rows = {f.raw_name: f for f in repo.folders_of(uow.session, self.account_id)}
        local = {n: P.FolderView(f.raw_name, f.name, f.delimiter, f.special_use) for n, f in rows.items()}
        fplan = P.plan_folders(remote, local)
        for v in fplan.create:
            uow.session.add(Folder(account_id=self.account_id, raw_name=v.raw_name, name=v.name,
                                   delimiter=v.delimiter, special_use=v.special_use, fetched_uid=0, status="ok"))
        for v in fplan.update:
            row = rows[v.raw_name]
            row.name, row.delimiter, row.special_use = v.name, v.delimiter, v.special_use
        for raw in fplan.drop:
            uow.session.delete(rows[raw])
            self.result.notes.append(f"folder {rows[raw].name!r} is gone from the server: dropped")
        uow.commit()
        ids = {f.raw_name: f.id for f in repo.folders_of(uow.session, self.account_id)}
        return fplan.sync, ids

    def _sync_folder(self, conn, db: StoreWorker, folder_id: int, raw_name: str) -> None:
        info = conn.select(raw_name, readonly=True)
        remote = conn.uid_flags() if info.exists else {}
        work: _FolderWork = db.call(self._reconcile, folder_id, info, remote)
        if work.skipped:
            self.result.notes.append(f"folder {work.name!r}: {work.skipped}")
            return
        self.observer.folder_started(self.account.name, work.name, len(work.new))
        if work.new:
            self._download(conn, db, folder_id, work.name, work.new)
        db.submit(self._complete_folder, folder_id, work.name, info)

    def _reconcile(self, uow: UnitOfWork, folder_id: int, info, remote) -> _FolderWork:
        """Rules F3 and M1-M3 for one folder; commits expunges and flag changes."""
        folder = repo.get_folder(uow.session, folder_id)
        if folder.status == "aside":
            return _FolderWork(folder.name, [], skipped=f"skipped: {folder.status_reason}")
        decision = P.decide_uidvalidity(folder.uidvalidity, info.uidvalidity,
                                        repo.count_placements(uow.session, folder_id))
        if decision.action == "aside":
            folder.status, folder.status_reason = "aside", decision.reason
            uow.commit()
            return _FolderWork(folder.name, [], skipped=decision.reason)
        if decision.action == "adopt":
            folder.uidvalidity, folder.uidnext, folder.highestmodseq, folder.fetched_uid = (
                info.uidvalidity, None, None, 0)
        mplan = P.plan_messages(remote, repo.uid_flags(uow.session, folder_id))
        repo.remove_placements(uow.session, folder_id, mplan.expunged)
        repo.set_flags(uow.session, folder_id, mplan.flags)
        uow.commit()
        self.result.expunged += len(mplan.expunged)
        self.result.flag_changes += len(mplan.flags)
        return _FolderWork(folder.name, mplan.new)

    def _complete_folder(self, uow: UnitOfWork, folder_id: int, name: str, info) -> None:
        folder = repo.get_folder(uow.session, folder_id)
        folder.uidnext, folder.highestmodseq = info.uidnext, info.highestmodseq
        folder.last_synced_at = utcnow()
        uow.commit()
        self.result.folders += 1
        self.observer.folder_done(self.account.name, name)

    # -- messages -----------------------------------------------------------------------------

    def _download(self, conn, db: StoreWorker, folder_id: int, name: str, uids: list[int]) -> None:
        """Read messages off the socket here; the store worker hashes and commits them in batches."""
        wanted = set(uids)
        batch: list = []
        nbytes = 0
        limit = self.account.batch_size
        for item in conn.fetch_messages(uids):
            if item.uid not in wanted:  # an unsolicited FETCH (e.g. a flag change) is not ours
                continue
            if item.body is None or item.internaldate is None:
                raise ProtocolError(f"account '{self.account.name}': FETCH of UID {item.uid} in {name!r} "
                                    f"came without its body or INTERNALDATE")
            batch.append((item, sha256_hex(item.body)))
            nbytes += len(item.body)
            if len(batch) >= limit or nbytes >= BATCH_BYTES:
                db.submit(self._commit_batch, folder_id, name, batch, nbytes)
                batch, nbytes = [], 0
        if batch:
            db.submit(self._commit_batch, folder_id, name, batch, nbytes)

    def _commit_batch(self, uow: UnitOfWork, folder_id: int, name: str, batch: list, nbytes: int) -> None:
        from mailsync.imap.responses import parse_internaldate

        bodies = []
        placements = []
        for item, digest in batch:
            bodies.append(repo.NewBody(sha256=digest, size=len(item.body), message_id=message_id(item.body),
                                       data=item.body))
            placements.append({"folder_id": folder_id, "uid": item.uid, "body_sha256": digest,
                               "flags": P.flags_text(item.flags or ()), "modseq": item.modseq,
                               "internaldate": parse_internaldate(item.internaldate),
                               "size": item.size if item.size is not None else len(item.body)})
        repo.store_bodies(uow.session, bodies)
        repo.add_placements(uow.session, placements)
        folder = repo.get_folder(uow.session, folder_id)
        folder.fetched_uid = max(folder.fetched_uid or 0, max(item.uid for item, _ in batch))
        uow.commit()
        self.result.new_messages += len(batch)
        self.observer.messages_stored(self.account.name, name, len(batch), nbytes)


def sync_account(store: Store, account: AccountConfig, **kw) -> AccountResult:
    return AccountSync(store, account, **kw).run()
