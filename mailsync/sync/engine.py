"""The executor: gathers the views (server via mailsync.imap, store via repositories), asks
plan.py what to do, and does it with the commit discipline the rules require.

Owns: the order of I/O in a sync and the transaction boundaries. Must not: make decisions that
belong in plan.py, or format output (it reports to a SyncObserver).

Order of one account's sync:
  1. record a sync run (audit log) and commit, so even a crash leaves a trace;
  2. resolve the password, connect, LIST; plan folders; create/update/drop folder rows; commit;
  3. per folder: SELECT; UIDVALIDITY rule; UID FETCH 1:* (UID FLAGS); plan messages;
     apply expunges and flag changes and commit; download new messages in batches, each batch
     committed with its bodies, placements and the folder's `fetched_uid`; then commit the folder's
     UIDNEXT/HIGHESTMODSEQ (rule C1);
  4. drop bodies no placement refers to; finish the run (ok or failed, with the error) and commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailsync.config.model import AccountConfig
from mailsync.errors import ConnectError, MailsyncError, ProtocolError
from mailsync.store import repositories as repo
from mailsync.store.db import Store, bulk_write_connection
from mailsync.store.models import Folder, utcnow
from mailsync.store.uow import UnitOfWork
from mailsync.sync import plan as P
from mailsync.sync.message import message_id, sha256_hex

log = logging.getLogger("mailsync.sync")

BATCH_BYTES = 16 * 1024 * 1024  # a batch is committed at batch_size messages or this many bytes
MAX_BATCHES_IN_FLIGHT = 2


class SyncObserver:
    """Progress callbacks; the default does nothing. The CLI passes a rich progress display."""

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


def _connect_default(account: AccountConfig):
    from mailsync.auth.secrets import resolve_secret
    from mailsync.imap.connection import connect

    if account.password is None:
        raise MailsyncError(f"account '{account.name}': no password source configured",
                            hint="set password = \"env:NAME\" (or cmd:, keyring:) for the account")
    return connect(account, resolve_secret(account.password))


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
            conn = self._connect(acc)
            self._sync_folders(conn)
        except MailsyncError as exc:
            self.result.ok = False
            self.result.error = str(exc)
        except Exception as exc:  # a bug must not take other accounts down; it is reported as one
            log.exception("account %s: unexpected error", acc.name)
            self.result.ok = False
            self.result.error = f"account '{acc.name}': internal error {exc.__class__.__name__}: {exc}"
        finally:
            if conn is not None:
                self.result.bytes_fetched = conn.bytes_fetched
                conn.logout()
        self.result.seconds = time.monotonic() - t0
        self._finish_run()
        self.observer.account_done(self.result)
        return self.result

    def _finish_run(self) -> None:
        r = self.result
        with UnitOfWork(self.store) as uow:
            if r.ok:
                repo.delete_orphan_bodies(uow.session)
            from mailsync.store.models import SyncRun

            run = uow.session.get_one(SyncRun, self.run_id)
            run.folders, run.new_messages, run.flag_changes = r.folders, r.new_messages, r.flag_changes
            run.expunged, run.bytes_fetched = r.expunged, r.bytes_fetched
            run.notes = "\n".join(r.notes) or None
            repo.finish_run(run, status="ok" if r.ok else "failed", error=r.error)
            uow.commit()

    # -- folders ------------------------------------------------------------------------------

    def _sync_folders(self, conn) -> None:
        acc = self.account
        remote = [f for f in conn.list_folders()
                  if f.selectable and P.folder_selected(f.name, acc.folders, acc.exclude)]
        remote_views = [P.FolderView(f.raw_name, f.name, f.delimiter, f.special_use) for f in remote]
        with UnitOfWork(self.store) as uow:
            rows = {f.raw_name: f for f in repo.folders_of(uow.session, self.account_id)}
            local_views = {n: P.FolderView(f.raw_name, f.name, f.delimiter, f.special_use) for n, f in rows.items()}
            fplan = P.plan_folders(remote_views, local_views)
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
        folder_errors = []
        for raw in fplan.sync:
            try:
                self._sync_folder(conn, ids[raw])
                self.result.folders += 1
            except ProtocolError as exc:  # one bad folder does not stop the others
                folder_errors.append(str(exc))
        if folder_errors:
            raise ProtocolError("; ".join(folder_errors))

    def _sync_folder(self, conn, folder_id: int) -> None:
        with UnitOfWork(self.store) as uow:
            folder = repo.get_folder(uow.session, folder_id)
            raw_name, name = folder.raw_name, folder.name
            if folder.status == "aside":
                self.result.notes.append(f"folder {name!r} skipped: {folder.status_reason}")
                return
            info = conn.select(raw_name, readonly=True)
            decision = P.decide_uidvalidity(folder.uidvalidity, info.uidvalidity,
                                            repo.count_placements(uow.session, folder_id))
            if decision.action == "aside":
                folder.status, folder.status_reason = "aside", decision.reason
                uow.commit()
                self.result.notes.append(f"folder {name!r}: {decision.reason}")
                return
            if decision.action == "adopt":
                folder.uidvalidity, folder.uidnext, folder.highestmodseq, folder.fetched_uid = (
                    info.uidvalidity, None, None, 0)
                uow.commit()
            remote = conn.uid_flags() if info.exists else {}
            local = repo.uid_flags(uow.session, folder_id)
            mplan = P.plan_messages(remote, local)
            if mplan.expunged or mplan.flags:
                repo.remove_placements(uow.session, folder_id, mplan.expunged)
                repo.set_flags(uow.session, folder_id, mplan.flags)
                uow.commit()
                self.result.expunged += len(mplan.expunged)
                self.result.flag_changes += len(mplan.flags)
        self.observer.folder_started(self.account.name, name, len(mplan.new))
        if mplan.new:
            self._download(conn, folder_id, name, mplan.new)
        with UnitOfWork(self.store) as uow:
            folder = repo.get_folder(uow.session, folder_id)
            folder.uidnext, folder.highestmodseq = info.uidnext, info.highestmodseq
            folder.last_synced_at = utcnow()
            uow.commit()
        self.observer.folder_done(self.account.name, name)

    # -- messages -----------------------------------------------------------------------------

    def _download(self, conn, folder_id: int, name: str, uids: list[int]) -> None:
        """Read messages off the socket here; hash and commit them in one writer thread.

        The two overlap: socket reads, hashing and SQLite all release the GIL. At most
        MAX_BATCHES_IN_FLIGHT batches wait for the writer, which bounds memory. Batches are committed
        in order, so `fetched_uid` only grows; whatever happens to the reader, every batch handed to
        the writer is committed (or its error raised) before this returns.
        """
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        wanted = set(uids)
        batch: list = []
        nbytes = 0
        limit = self.account.batch_size
        in_flight: deque = deque()
        with bulk_write_connection(self.store) as bind, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailsync-writer") as writer:
            try:
                for item in conn.fetch_messages(uids):
                    if item.uid not in wanted:  # an unsolicited FETCH (e.g. a flag change) is not ours
                        continue
                    if item.body is None or item.internaldate is None:
                        raise ProtocolError(f"account '{self.account.name}': FETCH of UID {item.uid} in "
                                            f"{name!r} came without its body or INTERNALDATE")
                    batch.append(item)
                    nbytes += len(item.body)
                    if len(batch) >= limit or nbytes >= BATCH_BYTES:
                        in_flight.append(writer.submit(self._commit_batch, bind, folder_id, name, batch, nbytes))
                        batch, nbytes = [], 0
                        while len(in_flight) >= MAX_BATCHES_IN_FLIGHT:
                            in_flight.popleft().result()
                if batch:
                    in_flight.append(writer.submit(self._commit_batch, bind, folder_id, name, batch, nbytes))
            finally:
                errors = []
                while in_flight:
                    try:
                        in_flight.popleft().result()
                    except BaseException as exc:  # keep draining: later batches may still commit
                        errors.append(exc)
                if errors:
                    raise errors[0]

    def _commit_batch(self, bind, folder_id: int, name: str, batch: list, nbytes: int) -> None:
        from mailsync.imap.responses import parse_internaldate

        bodies = []
        rows = []
        for item in batch:
            digest = sha256_hex(item.body)
            bodies.append(repo.NewBody(sha256=digest, size=len(item.body), message_id=message_id(item.body),
                                       data=item.body))
            rows.append((item, digest))
        with UnitOfWork(self.store, bind=bind) as uow:
            repo.store_bodies(uow.session, bodies)
            repo.add_placements(uow.session, [
                {"folder_id": folder_id, "uid": item.uid, "body_sha256": digest,
                 "flags": P.flags_text(item.flags or ()), "modseq": item.modseq,
                 "internaldate": parse_internaldate(item.internaldate),
                 "size": item.size if item.size is not None else len(item.body)}
                for item, digest in rows])
            folder = repo.get_folder(uow.session, folder_id)
            folder.fetched_uid = max(folder.fetched_uid or 0, max(item.uid for item in batch))
            uow.commit()
        self.result.new_messages += len(batch)
        self.observer.messages_stored(self.account.name, name, len(batch), nbytes)


def sync_account(store: Store, account: AccountConfig, **kw) -> AccountResult:
    return AccountSync(store, account, **kw).run()
