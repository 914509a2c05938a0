"""The body of one message held by its headers (larger than max_size), fetched when asked for:
what `mailsync show` does for such a message.

  H4  The message is named by (account, folder, UID) as the store knows it. The folder is opened
      read-only (EXAMINE, nothing changes on the server: BODY.PEEK); it must still have the
      UIDVALIDITY the store holds, and the UID must still hold that message (its RFC822.SIZE and
      Message-ID those of the header section held), else nothing is stored and the error says to
      sync. The whole message is stored content-addressed like any body and named instead of the
      header section everywhere (mailsync.store.headers_only.complete), in one transaction: a
      crash before its commit leaves the header section, a second show reads the body locally,
      and a sync fetching it meanwhile (rule H3) makes this one store nothing more.

Owns: that fetch and its checks. Must not: print, or hold the store's session across the IMAP
conversation (the caller's store is used in two short units of work).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from mailsync.config.model import AccountConfig
from mailsync.errors import MailsyncError
from mailsync.store import headers_only, tables
from mailsync.store.uow import UnitOfWork
from mailsync.sync.message import message_id


def _held(store, account: str, folder: str, uid: int):
    a, f, p = tables.accounts.c, tables.folders.c, tables.placements.c
    with UnitOfWork(store) as uow:
        row = uow.connection.execute(
            select(f.raw_name, f.uidvalidity, p.body_sha256, p.size).join(tables.accounts, a.id == f.account_id)
            .join(tables.placements, p.folder_id == f.id)
            .where(a.name == account, f.name == folder, p.uid == uid, p.tombstone_run.is_(None))).one_or_none()
        known = headers_only.key_of(uow.connection, row.body_sha256) if row is not None else None
    return row, known


def fetch_body(store, account: AccountConfig, folder: str, uid: int,
               connect: Callable[[AccountConfig], object] | None = None) -> bytes:
    """Rule H4: the whole message ``account``/``folder``/``uid`` held by its headers, fetched from the
    server and stored; the stored body when it was fetched meanwhile. MailsyncError naming the
    problem and the fix."""
    if connect is None:
        from mailsync.auth.login import open_connection as connect
    where = f"{account.name}/{folder} UID {uid}"
    row, known = _held(store, account.name, folder, uid)
    if row is None:
        raise MailsyncError(f"no message with UID {uid} in {account.name}/{folder} in the store",
                            hint="run mailsync sync if it is new")
    if known is None:  # fetched meanwhile
        from mailsync.store import repositories as repo

        with UnitOfWork(store) as uow:
            return repo.read_body(uow.connection, row.body_sha256)
    size, mid = known
    conn = connect(account)
    try:
        info = conn.select(row.raw_name, readonly=True)
        if row.uidvalidity is not None and info.uidvalidity != row.uidvalidity:
            raise MailsyncError(f"message {where}: the folder's UIDVALIDITY changed on the server since the last "
                                f"sync ({row.uidvalidity} -> {info.uidvalidity}): its UIDs name other messages now",
                                hint="run mailsync sync, then look the message up again")
        found = [it for it in conn.fetch_messages([uid]) if it.uid == uid and it.body is not None]
    finally:
        conn.logout()
    if not found:
        raise MailsyncError(f"message {where} is no longer on the server (expunged since the last sync?): "
                            f"its body cannot be fetched", hint="run mailsync sync")
    raw = bytes(found[0].body)
    if (found[0].size is not None and found[0].size != size) or (mid and message_id(raw) != mid):
        raise MailsyncError(f"message {where}: the server's message at that UID is not the one the store "
                            f"holds the headers of (size or Message-ID differ); nothing was stored",
                            hint="run mailsync sync, then look the message up again")
    with UnitOfWork(store) as uow:
        if headers_only.key_of(uow.connection, row.body_sha256) is not None:
            headers_only.complete(uow.connection, row.body_sha256, raw, mid or message_id(raw))
        uow.commit()
    return raw
