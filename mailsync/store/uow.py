"""Unit of work: one Session, one transaction, committed or rolled back by the caller.

Owns: the session lifecycle. Repositories (repositories.py) take the session from here and never
commit themselves.
"""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mailsync.errors import StoreError
from mailsync.store.db import Store


class UnitOfWork:
    """``with UnitOfWork(store) as uow: ...; uow.commit()`` — anything not committed is rolled back."""

    session: Session

    def __init__(self, store: Store, *, bind: Connection | None = None) -> None:
        self.store = store
        self.bind = bind  # a connection the caller holds open (e.g. the sync's StoreWorker)

    def __enter__(self) -> "UnitOfWork":
        self.session = self.store.sessions() if self.bind is None else self.store.sessions(bind=self.bind)
        # repositories.store_bodies / read_body find the pack files here (None: bodies in the database)
        self.session.info["packs"] = self.store.packs
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.session.rollback()
        finally:
            self.session.close()

    def commit(self) -> None:
        try:
            self.session.commit()
        except SQLAlchemyError as e:
            self.session.rollback()
            raise StoreError(f"could not commit to the store: {e.__class__.__name__}: {str(e).splitlines()[0]}") from e
