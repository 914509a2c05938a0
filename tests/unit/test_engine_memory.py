"""The engine driven by an in-memory IMAP session (tests/memory_session.py) instead of a socket: a first
sync, a delta after another client's changes, local changes pushed, and a sync with nothing to do,
each checked against the server model and the store. The same behaviour is tested against Dovecot,
Cyrus and Courier in tests/integration; this shows the ImapSession contract is all the engine needs."""

from __future__ import annotations

import pytest

from mailsync.changes import LocalChanges
from mailsync.config.model import AccountConfig
from mailsync.store import repositories as repo
from mailsync.store.db import open_store
from mailsync.store.uow import UnitOfWork
from mailsync.sync.engine import AccountSync
from memory_session import MemoryServer, MemorySession


def _msg(i: int) -> bytes:
    return (f"Message-ID: <m{i}@example.org>\r\nFrom: a@example.org\r\nSubject: {i}\r\n\r\n"
            f"body {i}\r\n").encode()


@pytest.fixture
def world(tmp_path):
    server = MemoryServer()
    for i in range(1, 6):
        server.add("INBOX", _msg(i), ["\\Seen"] if i % 2 else [])
    server.add("Archive", _msg(10))
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    sessions: list[MemorySession] = []

    def sync():
        session = MemorySession(server)
        sessions.append(session)
        account = AccountConfig(name="acc", host="memory", username="u")
        return AccountSync(store, account, connect=lambda acc: session).run(), session

    yield server, store, sync
    store.dispose()


def flags_of(store, folder: str) -> dict[int, frozenset[str]]:
    with UnitOfWork(store) as uow:
        return {r.uid: frozenset(r.flags) for r in repo.export_rows(uow.session) if r.folder == folder}


def server_flags(server, folder: str) -> dict[int, frozenset[str]]:
    return {uid: flags for uid, (flags, _) in server.truth(folder).items()}


def test_first_sync_then_delta_then_nothing(world):
    server, store, sync = world
    result, session = sync()
    assert result.ok, result.error
    assert result.new_messages == 6 and session.bodies_fetched == 6
    assert flags_of(store, "INBOX") == server_flags(server, "INBOX")
    assert flags_of(store, "Archive") == server_flags(server, "Archive")

    # another client: a flag change, a new message, an expunge
    server.set_flags("INBOX", 2, {"\\Flagged"})
    new_uid = server.add("INBOX", _msg(6))
    server.expunge("INBOX", 3)
    result, session = sync()
    assert result.ok, result.error
    assert (result.new_messages, result.flag_changes, result.expunged) == (1, 1, 1)
    assert session.bodies_fetched == 1  # only the new message's body crossed
    assert flags_of(store, "INBOX") == server_flags(server, "INBOX") and new_uid in flags_of(store, "INBOX")
    assert session.log.count("SELECT") == 1  # Archive did not move: not selected (rule D1)

    result, session = sync()
    assert result.ok and session.log == ["LIST"]  # nothing changed: one LIST-STATUS


def test_local_changes_reach_the_server_merged_with_another_clients(world):
    server, store, sync = world
    assert sync()[0].ok
    changes = LocalChanges(store)
    changes.flag("acc", "INBOX", 1, add=["\\Flagged"])
    changes.flag("acc", "INBOX", 4, add=["\\Seen"])
    server.set_flags("INBOX", 4, {"$Important"})  # another client changed it meanwhile: T1/T2 merge
    changes.move("acc", "INBOX", 5, "Archive")
    result, session = sync()
    assert result.ok, result.error
    assert "\\Flagged" in server_flags(server, "INBOX")[1]
    assert server_flags(server, "INBOX")[4] == {"\\Seen", "$Important"}  # both changes kept
    assert 5 not in server.truth("INBOX") and any(b == _msg(5) for _, b in server.truth("Archive").values())
    assert flags_of(store, "INBOX") == server_flags(server, "INBOX")
    assert flags_of(store, "Archive") == server_flags(server, "Archive")
    assert session.bodies_fetched == 0  # the moved message's body was not downloaded again
    result, session = sync()
    assert result.ok and result.pushed == 0 and session.bodies_fetched == 0
