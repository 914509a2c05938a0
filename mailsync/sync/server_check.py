"""`mailsync verify --server`: does each UID the store knows still hold, on the server, the message
the store says it does? And the repair: re-read a folder whose mapping is wrong.

Owns: the comparison of the store's UID -> (Message-ID, size) with the server's (pure:
compare_mapping), the walk over an account's folders that gathers both sides (one EXAMINE and one
FETCH of headers per folder), and the repair (the folder's placements forgotten, its checkpoints
cleared, then a sync of the account, which finds the bodies again by Message-ID and size without
downloading them). Must not: print, or decide anything a sync decides (the sync engine re-reads).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import delete, select

from mailsync.auth.login import open_connection
from mailsync.config.model import AccountConfig
from mailsync.errors import MailsyncError
from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.store.db import Store
from mailsync.store.uow import UnitOfWork
from mailsync.sync.message import message_id

Key = tuple[str | None, int]  # (Message-ID, size)


@dataclass(frozen=True)
class Mismatch:
    account: str
    folder: str
    uid: int
    store: Key
    server: Key

    def describe(self) -> str:
        return (f"{self.account}/{self.folder} UID {self.uid}: the server holds Message-ID {self.server[0]} "
                f"({self.server[1]} bytes) there; the store says {self.store[0]} ({self.store[1]} bytes)")


@dataclass
class FolderCheck:
    folder: str
    checked: int = 0  # UIDs found on both sides and compared
    behind: int = 0  # UIDs the store knows that the server no longer has (a sync removes them)
    skipped: str | None = None  # why the folder was not compared
    mismatches: list[Mismatch] = field(default_factory=list)


@dataclass
class AccountCheck:
    account: str
    folders: list[FolderCheck] = field(default_factory=list)
    error: str | None = None
    repaired: list[str] = field(default_factory=list)  # folders re-read
    not_repaired: list[str] = field(default_factory=list)  # folders a local change still waits on

    @property
    def mismatches(self) -> list[Mismatch]:
        return [m for f in self.folders for m in f.mismatches]


def compare_mapping(account: str, folder: str, store: Mapping[int, Key], server: Mapping[int, Key]) -> FolderCheck:
    """The store's UID -> (Message-ID, size) against what the server answered for those UIDs."""
    out = FolderCheck(folder)
    for uid, key in sorted(store.items()):
        found = server.get(uid)
        if found is None:
            out.behind += 1
        elif found != key:
            out.mismatches.append(Mismatch(account, folder, uid, key, found))
        else:
            out.checked += 1
    out.checked += len(out.mismatches)
    return out


def check_account(store: Store, account: AccountConfig, *, repair: bool = False,
                  connect=open_connection) -> AccountCheck:
    """Compare every live folder of ``account`` with the server; with ``repair``, re-read each folder
    with a mismatch (see the module docstring). Errors are reported in the result, not raised."""
    result = AccountCheck(account.name)
    try:
        with UnitOfWork(store) as uow:
            acc_id = repo.account_id(uow.connection, account.name, account.host, account.username)
            folders = [f for f in repo.folders_of(uow.connection, acc_id) if f.status == "ok" and f.uidvalidity]
            known = {f.id: repo.placement_keys(uow.connection, f.id, list(repo.uid_flags(uow.connection, f.id)))
                     for f in folders}
            uow.commit()
        conn = connect(account)
        try:
            for f in folders:
                if not known[f.id]:
                    continue
                info = conn.select(f.raw_name, readonly=True)
                if info.uidvalidity != f.uidvalidity:
                    result.folders.append(FolderCheck(f.name, skipped=(
                        f"UIDVALIDITY is {info.uidvalidity} on the server, {f.uidvalidity} in the store: "
                        f"the next sync re-approves the folder")))
                    continue
                server = {uid: (message_id(it.header_fields or b""), it.size)
                          for uid, it in conn.fetch_headers(known[f.id]).items()}
                result.folders.append(compare_mapping(account.name, f.name, known[f.id], server))
        finally:
            conn.logout()
        if repair and result.mismatches:
            _repair(store, account, acc_id, {m.folder for m in result.mismatches}, result)
    except MailsyncError as exc:
        result.error = str(exc)
    return result


def _repair(store: Store, account: AccountConfig, acc_id: int, names: set[str], result: AccountCheck) -> None:
    from mailsync.sync.engine import sync_account

    pl, fo, ops = tables.placements.c, tables.folders.c, tables.pending_ops.c
    with UnitOfWork(store) as uow:
        c = uow.connection
        for folder_id, name in c.execute(select(fo.id, fo.name).where(fo.account_id == acc_id, fo.name.in_(names))):
            waiting = c.scalar(select(ops.id).where(ops.folder_id == folder_id, ops.state.in_(("pending", "sent")))
                               .limit(1))
            if waiting is not None:  # a local change names this folder: it goes out (or fails) first
                result.not_repaired.append(name)
                continue
            c.execute(delete(tables.placements).where(pl.folder_id == folder_id))
            repo.update_folder(c, folder_id, uidvalidity=None, uidnext=None, highestmodseq=None, messages=None,
                               fetched_uid=0)
            result.repaired.append(name)
        uow.commit()
    if result.repaired:
        synced = sync_account(store, account)
        if not synced.ok:
            result.error = f"the folders were reset, but the sync that re-reads them failed: {synced.error}"
