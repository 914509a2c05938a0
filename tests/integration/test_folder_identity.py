"""Folder identity against the real Dovecot: a renamed folder tree whose folders share one UIDVALIDITY
(as Cyrus and Courier give every folder made in the same second; here set with `doveadm mailbox
update --uid-validity`) is matched folder by folder, a local delete then expunges exactly the message
it named, and a delete whose UID no longer holds that message is refused before anything is sent.
Also: one flag change that adds and removes lands whole, a change that changes nothing settles at
once, and the summary's counts never go negative.
"""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select, update

from helpers import client_for, server_snapshot
from mailsync.changes import LocalChanges
from mailsync.store import tables
from mailsync.store.models import AuditEvent, PendingOp
from mailsync.store.uow import UnitOfWork
from mailsync.sync.engine import sync_account
from twoway_support import account_for, assert_agree, msg, sync

SAME_UIDVALIDITY = 1700000000


@pytest.fixture
def user(dovecot):
    return dovecot.new_user(f"fid{secrets.token_hex(4)}", "pw-" + secrets.token_hex(4))


def _tree_with_one_uidvalidity(dovecot, user, names=("P", "P/a", "P/b")) -> dict[str, bytes]:
    """Folders `names`, each with its own messages (UID 1 of each is another message), all with the
    same UIDVALIDITY. Returns folder -> the raw message at UID 1."""
    c = client_for(user)
    first = {}
    try:
        for n, name in enumerate(names):
            c.create_folder(name)
            for i in range(3):
                raw = msg(100 * n + i, extra=name.replace("/", "-"))
                c.append(name, raw)
                first.setdefault(name, raw)
    finally:
        c.logout()
    for name in names:
        dovecot.doveadm("mailbox", "update", "-u", user.name, "--uid-validity", str(SAME_UIDVALIDITY), name)
    snap = server_snapshot(user)
    assert {snap[name]["uidvalidity"] for name in names} == {SAME_UIDVALIDITY}
    return first


def _server_rename(user, old: str, new: str) -> None:
    c = client_for(user)
    try:
        c.rename_folder(old, new)
    finally:
        c.logout()


def _one_seen_message_synced(user, store):
    """INBOX holds one \\Seen message, synced into ``store``; the account it was synced with."""
    c = client_for(user)
    c.append("INBOX", msg(1), flags=[b"\\Seen"])
    c.logout()
    account = account_for(user)
    sync(store, account)
    return account


def _messages_of(user, folder: str) -> dict[int, bytes]:
    c = client_for(user)
    try:
        c.select_folder(folder, readonly=True)
        uids = c.search("ALL")
        return {uid: d[b"BODY[]"] for uid, d in c.fetch(uids, ["BODY.PEEK[]"]).items()} if uids else {}
    finally:
        c.logout()


def test_server_rename_of_a_tree_with_one_uidvalidity_maps_every_uid_right(dovecot, user, store):
    first = _tree_with_one_uidvalidity(dovecot, user)
    account = account_for(user)
    sync(store, account)
    assert_agree(store, user)
    _server_rename(user, "P", "Q")
    result = sync(store, account)
    assert_agree(store, user)  # every (folder, UID) holds the message the server has there
    assert result.expunged >= 0 and result.bodies_downloaded == 0
    # and a delete of Q UID 1 removes exactly Q's first message, nothing else
    before = {f: _messages_of(user, f) for f in ("Q", "Q/a", "Q/b")}
    assert before["Q"][1] == first["P"]
    LocalChanges(store).delete("acc", "Q", 1)
    sync(store, account)
    after = {f: _messages_of(user, f) for f in ("Q", "Q/a", "Q/b")}
    assert after["Q"] == {u: m for u, m in before["Q"].items() if u != 1}
    assert after["Q/a"] == before["Q/a"] and after["Q/b"] == before["Q/b"]
    assert_agree(store, user)


def test_local_rename_of_a_tree_renames_the_children_too(dovecot, user, store):
    _tree_with_one_uidvalidity(dovecot, user)
    account = account_for(user)
    sync(store, account)
    LocalChanges(store).rename("acc", "P", "R")
    with UnitOfWork(store) as uow:
        names = set(uow.connection.scalars(select(tables.folders.c.name)))
    assert {"R", "R/a", "R/b"} <= names and not names & {"P", "P/a", "P/b"}
    result = sync(store, account)
    assert result.bodies_downloaded == 0
    assert_agree(store, user)
    assert {"R", "R/a", "R/b"} <= set(server_snapshot(user))


def test_a_delete_whose_uid_holds_another_message_is_refused(dovecot, user, store):
    c = client_for(user)
    c.append("INBOX", msg(1))
    c.append("INBOX", msg(2))
    c.logout()
    account = account_for(user)
    sync(store, account)
    # A mapping error (of any origin): the store believes UID 1 holds what UID 2 holds.
    with UnitOfWork(store) as uow:
        pl = tables.placements.c
        rows = {uid: pid for pid, uid in uow.connection.execute(select(pl.id, pl.uid))}
        uow.connection.execute(update(tables.placements).where(pl.id == rows[1]).values(uid=99))
        uow.connection.execute(update(tables.placements).where(pl.id == rows[2]).values(uid=1))
        uow.connection.execute(update(tables.placements).where(pl.id == rows[1]).values(uid=2))
        uow.commit()
    op = LocalChanges(store).delete("acc", "INBOX", 1)  # the user means message 2's body
    result = sync_account(store, account)
    assert set(_messages_of(user, "INBOX")) == {1, 2}  # nothing expunged
    with UnitOfWork(store) as uow:
        failed = uow.session.get(PendingOp, op)
        assert failed.state == "failed"
        assert "UID 1" in failed.error and "not the message" in failed.error
    assert any("UID 1" in n for n in result.notes)


def test_a_flag_change_that_adds_and_removes_lands_whole_in_one_sync(dovecot, user, store):
    account = _one_seen_message_synced(user, store)
    LocalChanges(store).flag("acc", "INBOX", 1, add=["\\Flagged"], remove=["\\Seen"])
    sync(store, account)
    server = server_snapshot(user)["INBOX"]["messages"][1]
    assert server[0] == ["\\Flagged"]
    assert_agree(store, user)
    with UnitOfWork(store) as uow:
        kinds = [e.kind for e in uow.session.scalars(select(AuditEvent))]
        states = [o.state for o in uow.session.scalars(select(PendingOp))]
    assert "modified" not in kinds  # no false "changed on the server meanwhile"
    assert states == ["done"]


@pytest.mark.parametrize("changes", [[(["\\Seen"], [])], [(["\\Flagged"], []), ([], ["\\Flagged"])]],
                         ids=["seen-on-read", "flag-then-unflag"])
def test_a_flag_change_that_changes_nothing_settles_at_once(dovecot, user, store, changes):
    account = _one_seen_message_synced(user, store)
    for add, remove in changes:
        LocalChanges(store).flag("acc", "INBOX", 1, add=add, remove=remove)
    with UnitOfWork(store) as uow:
        assert {o.state for o in uow.session.scalars(select(PendingOp))} == {"done"}
    result = sync(store, account)
    assert result.commands == 1  # LIST-STATUS alone: nothing pending keeps the folder from rule D1
    assert server_snapshot(user)["INBOX"]["messages"][1][0] == ["\\Seen"]


def test_a_stuck_no_op_flag_change_is_settled_by_the_next_sync(dovecot, user, store):
    """A queued change the store already agrees with (left by an older version) settles at the sync."""
    account = _one_seen_message_synced(user, store)
    op = LocalChanges(store).flag("acc", "INBOX", 1, add=["\\Flagged"])
    with UnitOfWork(store) as uow:  # the flag is back without the journal knowing
        uow.connection.execute(update(tables.placements).values(flags="\\Seen"))
        uow.commit()
    sync(store, account)
    with UnitOfWork(store) as uow:
        assert uow.session.get(PendingOp, op).state == "done"
    assert sync(store, account).commands == 1


def test_counts_stay_positive_when_a_dropped_folder_reappears_elsewhere(dovecot, user, store):
    """A folder copied to a new name and deleted (not a rename the server reports as one): its
    messages are moves, and nothing is counted as expunged below zero."""
    c = client_for(user)
    c.create_folder("Old")
    for i in range(4):
        c.append("Old", msg(i, extra="old"))
    c.logout()
    account = account_for(user)
    sync(store, account)
    c = client_for(user)
    c.create_folder("New")
    c.select_folder("Old")
    c.copy(c.search("ALL"), "New")
    c.close_folder()
    c.delete_folder("Old")
    c.logout()
    result = sync(store, account)
    assert result.expunged >= 0 and result.moves == 4 and result.bodies_downloaded == 0
    assert_agree(store, user)
