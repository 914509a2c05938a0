"""Edge cases of the engine on every server (Dovecot, Cyrus, Courier), each a known defect today.

Every parametrization that fails with today's engine is marked ``xfail(strict=True)`` with the
defect as its reason: the mark goes when the fix lands (a fixed case then XPASSes and fails the run
until its mark is removed). Cases that pass today carry no mark.
"""

from __future__ import annotations

import time

import pytest

from helpers import client_for, mailbox, server_kind, server_snapshot
from mailsync.changes import LocalChanges
from mailsync.store.db import open_store
from mailsync.store.models import AuditEvent, PendingOp
from mailsync.store.uow import UnitOfWork
from twoway_support import account_for, assert_agree, msg, sync

FOLDER_IDENTITY = pytest.mark.xfail(strict=True, reason="folder identity by UIDVALIDITY alone")
HALF_FLAG_PUSH = pytest.mark.xfail(
    strict=True, reason="a flag change that adds and removes sends two UNCHANGEDSINCE stores with one modseq: "
                        "the second is refused (MODIFIED) and lands a sync later")
NOOP_FLAG_PENDING = pytest.mark.xfail(strict=True, reason="a queued flag change that changes nothing never settles")
NEGATIVE_COUNTS = pytest.mark.xfail(strict=True, reason="the sync summary counts moves out of a vanished folder "
                                                        "as negative expunges")


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/store.db")
    yield s
    s.dispose()


def _open_ops(store) -> list[tuple[str, str]]:
    with UnitOfWork(store) as uow:
        ops = uow.session.query(PendingOp).filter(PendingOp.state.in_(("pending", "sent")))
        return [(op.kind, op.state) for op in ops]


@pytest.mark.parametrize("server_user", ["dovecot", pytest.param("cyrus", marks=FOLDER_IDENTITY),
                                         pytest.param("courier", marks=FOLDER_IDENTITY)], indirect=True)
def test_a_folder_replaced_within_its_second_is_not_taken_for_a_rename(server_user, store):
    """Another client makes folder A, the sync sees it, and within the same second B is made (with
    other mail) and A deleted. B shares A's UIDVALIDITY on Cyrus and Courier (one per second): it must
    not inherit A's placements (today the store maps B's UIDs to A's message). Dovecot's values
    differ. On Courier this is how a wrong mapping comes about (its RENAME gives a new UIDVALIDITY)."""
    user = server_user
    a, b = mailbox(user, "Alpha"), mailbox(user, "Beta")
    account = account_for(user)
    sync(store, account)
    for _attempt in range(5):
        while time.time() % 1 > 0.2:  # start at the top of a second
            time.sleep(0.02)
        second = int(time.time())
        c = client_for(user)
        c.create_folder(a)
        c.append(a, msg(1, extra="alpha"))
        old = c.folder_status(a, ["UIDVALIDITY"])[b"UIDVALIDITY"]
        sync(store, account)
        c.create_folder(b)
        in_time = int(time.time()) == second  # A seen by a sync, and B made, within one second
        c.append(b, msg(2, extra="beta"))
        c.append(b, msg(3, extra="beta"))
        new = c.folder_status(b, ["UIDVALIDITY"])[b"UIDVALIDITY"]
        c.delete_folder(a)  # 2 s on Courier
        c.logout()
        if in_time:
            break
        c = client_for(user)
        c.delete_folder(b)
        c.logout()
        sync(store, account)
    else:
        raise AssertionError("could not sync and replace a folder within one second")
    shared = old == new
    sync(store, account)
    assert_agree(store, user)
    with UnitOfWork(store) as uow:
        assert "folder_renamed" not in [e.kind for e in uow.session.query(AuditEvent).all()]
    assert shared or server_kind(user) == "dovecot"  # the case the test is about did happen


@pytest.mark.parametrize("server_user", [pytest.param("dovecot", marks=HALF_FLAG_PUSH),
                                         pytest.param("cyrus", marks=HALF_FLAG_PUSH), "courier"], indirect=True)
def test_one_flag_change_that_adds_and_removes_lands_whole(server_user, store):
    user = server_user
    inbox = mailbox(user, "INBOX")
    user.server.load(user.name, [("INBOX", msg(1, extra="flags"), "\\Seen")])
    account = account_for(user)
    sync(store, account)
    LocalChanges(store).flag("acc", inbox, 1, add=["\\Flagged"], remove=["\\Seen"])
    sync(store, account)
    assert server_snapshot(user)[inbox]["messages"][1][0] == ["\\Flagged"]
    with UnitOfWork(store) as uow:
        assert "modified" not in [e.kind for e in uow.session.query(AuditEvent).all()]
    assert _open_ops(store) == []


@pytest.mark.parametrize("server_user", [pytest.param("dovecot", marks=NOOP_FLAG_PENDING),
                                         pytest.param("cyrus", marks=NOOP_FLAG_PENDING),
                                         pytest.param("courier", marks=NOOP_FLAG_PENDING)], indirect=True)
def test_a_flag_change_that_changes_nothing_settles_at_once(server_user, store):
    user = server_user
    inbox = mailbox(user, "INBOX")
    user.server.load(user.name, [("INBOX", msg(1, extra="noop"), "\\Seen")])
    account = account_for(user)
    sync(store, account)
    LocalChanges(store).flag("acc", inbox, 1, add=["\\Seen"])
    sync(store, account)
    assert _open_ops(store) == []
    assert server_snapshot(user)[inbox]["messages"][1][0] == ["\\Seen"]


@pytest.mark.parametrize("server_user", ["dovecot", "cyrus", pytest.param("courier", marks=NEGATIVE_COUNTS)],
                         indirect=True)
def test_counts_after_a_server_rename_are_never_negative(server_user, store):
    user = server_user
    user.server.load(user.name, [("Projects", msg(i, extra="cnt")) for i in range(4)])
    account = account_for(user)
    sync(store, account)
    c = client_for(user)
    c.rename_folder(mailbox(user, "Projects"), mailbox(user, "Projekte"))
    c.logout()
    result = sync(store, account)
    assert_agree(store, user)
    counts = {k: getattr(result, k) for k in ("new_messages", "flag_changes", "expunged", "bodies_downloaded", "moves",
                                               "pushed", "conflicts")}
    assert all(v >= 0 for v in counts.values()), counts
