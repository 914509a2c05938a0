"""Unit of work: one connection, one transaction, committed or rolled back by the caller.

Owns: the transaction's lifecycle. Repositories (repositories.py) take the connection (or the
session) from here and never commit themselves.

``uow.connection`` is for Core statements: the sync engine uses nothing else, so a sync never
imports the ORM. ``uow.session`` is an ORM Session on that same connection and in that same
transaction, made (and sqlalchemy.orm imported) on first use, for the code that works with mapped
objects. ``commit()`` flushes the session, if there is one, and commits both.

``fence`` (a watch worker's sync of a leased account, mailsync.store.lease_repo.Fence) is called on
the connection in the transaction, right before its commit: it raises, and nothing is committed,
when the account's lease was taken over by another worker since this one claimed it. ``fenced(f)``
makes ``f`` the fence of every UnitOfWork opened on this thread (this context) inside the block that
names none: the watch worker runs an account's whole run_sync so, and the other writers of that run
(the CRM step, channel runs, the Maildir mirror's store writes) are fenced by the account's lease
without each of them carrying it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from mailsync.errors import StoreError
from mailsync.store.db import Store

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


_AMBIENT_FENCE: contextvars.ContextVar[Callable[[Connection], None] | None] = contextvars.ContextVar(
    "mailsync_fence", default=None)


@contextlib.contextmanager
def fenced(fence: Callable[[Connection], None] | None) -> Iterator[None]:
    """Inside the block, a UnitOfWork made without a fence on this thread gets ``fence``."""
    token = _AMBIENT_FENCE.set(fence)
    try:
        yield
    finally:
        _AMBIENT_FENCE.reset(token)


class UnitOfWork:
    """``with UnitOfWork(store) as uow: ...; uow.commit()`` — anything not committed is rolled back."""

    connection: Connection

    def __init__(self, store: Store, *, bind: Connection | None = None,
                 fence: Callable[[Connection], None] | None = None) -> None:
        self.store = store
        self.bind = bind  # a connection the caller holds open (e.g. the sync's StoreWorker)
        self.fence = fence if fence is not None else _AMBIENT_FENCE.get()
        self._session: Session | None = None

    def __enter__(self) -> "UnitOfWork":
        self.connection = self.store.engine.connect() if self.bind is None else self.bind
        # repositories.packs_of finds the pack files here, for the session too (None: bodies in the database)
        self.connection.info["packs"] = self.store.packs
        return self

    @property
    def session(self) -> "Session":
        if self._session is None:
            from sqlalchemy.orm import Session

            # control_fully: the session's commit and rollback are those of this connection's
            # transaction, whether Core statements began it or the session does.
            self._session = Session(bind=self.connection, expire_on_commit=False,
                                    join_transaction_mode="control_fully")
        return self._session

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._session is not None:
                try:
                    self._session.rollback()
                finally:
                    self._session.close()
        finally:
            try:
                if self.connection.in_transaction():
                    self.connection.rollback()
            finally:
                if self.bind is None:
                    self.connection.close()

    def commit(self) -> None:
        try:
            if self.fence is not None:
                if self._session is not None:
                    self._session.flush()
                if self.connection.in_transaction():  # in the transaction, so it holds until the commit
                    self.fence(self.connection)
            if self._session is not None:
                self._session.commit()  # flushes; commits the transaction it joined or began
            if self.connection.in_transaction():  # Core statements since (or without) the session's
                self.connection.commit()
        except (SQLAlchemyError, StoreError) as e:
            if self._session is not None:
                self._session.rollback()
            if self.connection.in_transaction():
                self.connection.rollback()
            if isinstance(e, StoreError):
                raise
            raise StoreError(f"could not commit to the store: {e.__class__.__name__}: {str(e).splitlines()[0]}") from e
