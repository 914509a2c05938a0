"""Repository functions over the ``crm_*`` tables that several steps of a CRM run share.

Owns: the SQL those steps have in common -- the run's write lock and the crm_state key/value table,
the ids-in-chunks and bulk-insert helpers, the accounts, the forgotten hashes, and the lookups
between messages, their participants, Message-IDs and references. Every function takes the
caller's Session and returns plain values; none commits.
Must not: decide anything (the steps in sources.py, facts.py, threads.py and derive.py do), write
to the sync engine's tables, or speak to a sink.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from mailsync.crm.models import CrmForgotten, CrmMark, CrmMessage, CrmParticipant, CrmRef, CrmSource, CrmState
from mailsync.store import repositories as repo
from mailsync.store.models import Account

__all__ = ["CHUNK", "State", "account_names", "account_row", "chunks", "delete_messages", "forget_facts",
           "forgotten_hashes", "ids_of", "insert_ignore", "lock", "message_ids", "message_keys", "participants_of",
           "referencing", "salt_of", "sent_from"]

CHUNK = 500  # ids per IN (...) list


def chunks(items: Sequence, n: int = CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def insert_ignore(session: Session, table, rows: list[dict], cols: list[str] | None) -> None:
    """INSERT rows (all with the same keys); with ``cols``, rows whose ``cols`` exist are skipped
    (repositories.insert_rows: many rows per statement, no per-row work in SQLAlchemy)."""
    if rows:
        names = list(rows[0])
        repo.insert_rows(session, table.name, names, [tuple(r[n] for n in names) for r in rows], cols)


class State:
    """crm_state as a dict, written back at the end of the run."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.values = dict(session.execute(select(CrmState.key, CrmState.value)).all())
        self.dirty: set[str] = set()

    def get(self, key: str, default=None):
        raw = self.values.get(key)
        return json.loads(raw) if raw is not None else default

    def set(self, key: str, value) -> None:
        text = json.dumps(value, sort_keys=True)
        if self.values.get(key) != text:
            self.values[key] = text
            self.dirty.add(key)

    def save(self) -> None:
        for key in sorted(self.dirty):
            if self.session.get(CrmState, key) is None:
                self.session.add(CrmState(key=key, value=self.values[key]))
            else:
                self.session.execute(update(CrmState).where(CrmState.key == key).values(value=self.values[key]))
        self.dirty.clear()


def lock(session: Session) -> None:
    """Take the CRM write lock for the transaction (SQLite: the database write lock; PostgreSQL: the
    row lock), so that two runs never interleave."""
    insert_ignore(session, CrmState.__table__, [{"key": "lock", "value": "0"}], ["key"])
    session.execute(update(CrmState).where(CrmState.key == "lock").values(value=str(time.time())))


def salt_of(state: State) -> bytes:
    salt = state.get("salt")
    if salt is None:
        salt = secrets.token_hex(32)
        state.set("salt", salt)
    return bytes.fromhex(salt)


def account_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Account.id, Account.name)).all())


def account_row(session: Session, name: str):
    """(id, username) of the account of this name, or None."""
    return session.execute(select(Account.id, Account.username).where(Account.name == name)).first()


def forgotten_hashes(session: Session) -> set[str]:
    return set(session.scalars(select(CrmForgotten.hash)).all())


def message_keys(session: Session) -> set[str]:
    """Every message the CRM holds facts of."""
    return set(session.scalars(select(CrmMessage.key)).all())


def sent_from(session: Session, account_id: int | None = None) -> dict[str, int]:
    """Who sent the messages in \\Sent folders (crm_messages.from_address) -> how many messages."""
    stmt = (select(CrmMessage.from_address, func.count(func.distinct(CrmMessage.key)))
            .join(CrmSource, CrmSource.message_key == CrmMessage.key)
            .where(CrmSource.role == "sent", CrmSource.draft.is_(False), CrmMessage.from_address.is_not(None))
            .group_by(CrmMessage.from_address))
    if account_id is not None:
        stmt = stmt.where(CrmSource.account_id == account_id)
    return {a: int(n) for a, n in session.execute(stmt)}


def participants_of(session: Session, keys: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for chunk in chunks(sorted(set(keys))):
        out.update(session.scalars(select(CrmParticipant.address).where(CrmParticipant.message_key.in_(chunk))).all())
    return out


def message_ids(session: Session, keys: Sequence[str]) -> set[str]:
    """The Message-IDs of these messages (those that have one)."""
    out: set[str] = set()
    for chunk in chunks(keys):
        out.update(i for i in session.scalars(select(CrmMessage.message_id).where(CrmMessage.key.in_(chunk))).all()
                   if i)
    return out


def ids_of(session: Session, keys: Sequence[str]) -> set[str]:
    """The Message-IDs of these messages and the ids they reference: what they thread through."""
    out = message_ids(session, keys)
    for chunk in chunks(keys):
        out.update(session.scalars(select(CrmRef.ref_id).where(CrmRef.message_key.in_(chunk))).all())
    return out


def referencing(session: Session, keys: set[str]) -> set[str]:
    """The messages that reference one of these."""
    out: set[str] = set()
    for chunk in chunks(sorted(message_ids(session, sorted(keys)))):
        out.update(session.scalars(select(CrmRef.message_key).where(CrmRef.ref_id.in_(chunk))).all())
    return out


def forget_facts(session: Session, state: State) -> dict[str, str | None]:
    """For a rebuild: every source, message fact and mark goes (and the folder roles of the state,
    for this run); returns the thread ids from before, so rows that come back with the same one
    need no update."""
    old_threads = dict(session.execute(select(CrmMessage.key, CrmMessage.thread_id)).all())
    for model in (CrmSource, CrmMessage, CrmParticipant, CrmRef, CrmMark):
        session.execute(delete(model))
    for key in [k for k in state.values if k.startswith("roles:")]:
        state.values.pop(key)
    return old_threads


def delete_messages(session: Session, keys: Sequence[str]) -> None:
    """The facts, participants and references of these messages go."""
    for chunk in chunks(keys):
        for model, col in ((CrmMessage, CrmMessage.key), (CrmParticipant, CrmParticipant.message_key),
                           (CrmRef, CrmRef.message_key)):
            session.execute(delete(model).where(col.in_(chunk)))
