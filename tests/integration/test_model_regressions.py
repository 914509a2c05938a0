"""Short, explicit sequences found by the model-based test (test_model.py), kept as plain tests.

A defect found and not yet fixed is marked xfail (strict) here and listed in test_model.OPEN_DEFECTS,
which steers the model around it until the fix lands; then the mark and the OPEN_DEFECTS line go
together.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from helpers import client_for, mailbox
from mailsync.changes import LocalChanges
from mailsync.store import tables
from mailsync.store.uow import UnitOfWork
from twoway_support import account_for, assert_agree, msg, store_snapshot, sync


def pending(store) -> list[tuple]:
    o = tables.pending_ops.c
    with UnitOfWork(store) as uow:
        return uow.connection.execute(select(o.kind, o.args).where(o.state.in_(("pending", "sent")))).all()


def flags_on_server(user, folder: str) -> dict[int, set[str]]:
    c = client_for(user)
    try:
        c.select_folder(folder, readonly=True)
        return {uid: {f.decode() for f in d[b"FLAGS"]} - {"\\Recent"}
                for uid, d in c.fetch(c.search("ALL"), ["FLAGS"]).items()}
    finally:
        c.logout()


@pytest.fixture(params=["full", "no-unselect"])
def leaving_user(request, dovecot, dovecot_factory):
    import secrets

    server = dovecot if request.param == "full" else dovecot_factory(remove_capabilities=("UNSELECT",))
    return server.new_user(f"lv{secrets.token_hex(4)}", "pw-" + secrets.token_hex(4))


def test_local_delete_of_a_folder_the_sync_had_selected(leaving_user, store):
    """A local delete in folder A, then a local rmdir of A: the sync selects A for the delete, then
    deletes A. Dovecot answers the next command with BYE ("Selected mailbox was deleted") unless the
    client left A first: the sync failed, and every sync after it until the journal was empty."""
    c = client_for(leaving_user)
    c.create_folder("A")
    for i in range(2):
        c.append("A", msg(i))
    c.append("INBOX", msg(9))
    c.logout()
    account = account_for(leaving_user)
    sync(store, account)
    changes = LocalChanges(store)
    changes.delete("acc", "A", 1)
    changes.rmdir("acc", "A")
    changes.append("acc", "INBOX", msg(10))
    sync(store, account)
    assert pending(store) == []
    assert "A" not in assert_agree(store, leaving_user)
    assert len(store_snapshot(store)["INBOX"]["messages"]) == 2


def test_flag_change_that_changes_nothing_settles(server_user, store):
    c = client_for(server_user)
    c.append("INBOX", msg(1))
    c.logout()
    account = account_for(server_user)
    sync(store, account)
    LocalChanges(store).flag("acc", "INBOX", 1, remove=["\\Seen"])  # it is not \Seen
    sync(store, account)
    assert pending(store) == []


def test_flag_change_on_a_message_moved_on_the_server_settles(server_user, store):
    c = client_for(server_user)
    c.create_folder(mailbox(server_user, "A"))
    for i in range(2):
        c.append("INBOX", msg(i))
    account = account_for(server_user)
    sync(store, account)
    LocalChanges(store).flag("acc", "INBOX", 1, add=["$Label1"])
    c.select_folder("INBOX")
    if c.has_capability("MOVE"):
        c.move([1], mailbox(server_user, "A"))
    else:  # Courier: the way a client without MOVE moves
        c.copy([1], mailbox(server_user, "A"))
        c.delete_messages([1])
        c.expunge()
    c.logout()
    sync(store, account)
    assert_agree(store, server_user)
    assert pending(store) == []


def test_flag_change_then_local_move_keeps_the_flags(server_user, store):
    c = client_for(server_user)
    c.create_folder(mailbox(server_user, "A"))
    c.append("INBOX", msg(1))
    c.logout()
    account = account_for(server_user)
    sync(store, account)
    changes = LocalChanges(store)
    changes.flag("acc", "INBOX", 1, add=["\\Flagged"])
    changes.move("acc", "INBOX", 1, mailbox(server_user, "A"))
    sync(store, account)
    assert_agree(store, server_user)
    assert [f for f in flags_on_server(server_user, mailbox(server_user, "A")).values()] == [{"\\Flagged"}]


def test_local_rename_of_a_folder_the_sync_had_selected(leaving_user, store):
    """As above, with a local rename of the selected folder's parent."""
    c = client_for(leaving_user)
    for name in ("A", "A/b"):
        c.create_folder(name)
        c.append(name, msg(len(name)))
    c.logout()
    account = account_for(leaving_user)
    sync(store, account)
    changes = LocalChanges(store)
    changes.delete("acc", "A/b", 1)
    changes.rename("acc", "A", "C")
    changes.append("acc", "INBOX", msg(10))
    sync(store, account)
    assert pending(store) == []
    assert set(assert_agree(store, leaving_user)) == {"C", "INBOX"}


def test_local_rename_onto_a_name_the_server_took_meanwhile(server_user, store):
    """The store's B then holds A's message under A's UIDVALIDITY, is set aside for ever, and a local
    delete of "B 1" would name A's message while UID 1 of the server's B is another."""
    c = client_for(server_user)
    c.create_folder(mailbox(server_user, "A"))
    c.append(mailbox(server_user, "A"), msg(1))
    account = account_for(server_user)
    sync(store, account)
    c.create_folder(mailbox(server_user, "B"))
    c.append(mailbox(server_user, "B"), msg(2))
    c.logout()
    LocalChanges(store).rename("acc", mailbox(server_user, "A"), mailbox(server_user, "B"))
    sync(store, account)
    assert set(assert_agree(store, server_user)) == {mailbox(server_user, "A"), mailbox(server_user, "B")}


def test_local_move_into_a_folder_the_server_deleted_meanwhile(server_user, store):
    """The move fails (no such folder), the store keeps the message in its copy of the deleted
    folder, then drops it with the folder; the source folder's counters did not move, so it is not
    read again: the message stays on the server and is gone from the store for good."""
    c = client_for(server_user)
    c.create_folder(mailbox(server_user, "A"))
    c.append("INBOX", msg(1))
    account = account_for(server_user)
    sync(store, account)
    c.delete_folder(mailbox(server_user, "A"))
    c.logout()
    LocalChanges(store).move("acc", "INBOX", 1, mailbox(server_user, "A"))
    sync(store, account)
    assert "INBOX" in assert_agree(store, server_user)


@pytest.mark.parametrize("where", ["local", "server"])
def test_flag_change_on_a_message_deleted_since_settles(server_user, store, where):
    """The message goes (a local delete after the change, or an expunge on the server): the change
    has nothing left to act on, yet `status` shows it pending for ever."""
    c = client_for(server_user)
    for i in range(2):
        c.append("INBOX", msg(i))
    account = account_for(server_user)
    sync(store, account)
    LocalChanges(store).flag("acc", "INBOX", 1, add=["\\Flagged"])
    if where == "local":
        LocalChanges(store).delete("acc", "INBOX", 1)
    else:
        c.select_folder("INBOX")
        c.delete_messages([1])
        c.expunge()
    c.logout()
    sync(store, account)
    assert_agree(store, server_user)
    assert pending(store) == []


def test_deleted_parent_of_folders_does_not_fail_every_sync(server_user, store):
    """A local rmdir of P (a leaf in the store) after another client made P/a: Dovecot deletes P's
    own mail, then lists P as (\\HasChildren) without \\Noselect, and its SELECT says "Mailbox doesn't
    exist". Each sync after reports the account failed."""
    c = client_for(server_user)
    account = account_for(server_user)
    sync(store, account)
    LocalChanges(store).mkdir("acc", mailbox(server_user, "P"))
    for name in (mailbox(server_user, "P"), mailbox(server_user, "P/a")):
        c.create_folder(name)
        c.append(name, msg(len(name)))
    c.logout()
    LocalChanges(store).rmdir("acc", mailbox(server_user, "P"))
    sync(store, account)
    sync(store, account)
    assert mailbox(server_user, "P/a") in assert_agree(store, server_user)


def test_local_append_into_a_folder_the_server_deleted_meanwhile_is_kept(server_user, store):
    """The APPEND is refused ([TRYCREATE]), the change is marked failed, the folder is dropped with
    the new message in it: a local change lost for good (the same happens after a local rename of
    a folder the server deleted meanwhile, then an append into the renamed folder)."""
    c = client_for(server_user)
    c.create_folder(mailbox(server_user, "A"))
    c.append(mailbox(server_user, "A"), msg(1))
    account = account_for(server_user)
    sync(store, account)
    LocalChanges(store).append("acc", mailbox(server_user, "A"), msg(2))
    c.delete_folder(mailbox(server_user, "A"))
    c.logout()
    sync(store, account)
    sync(store, account)
    kept = [m for f in store_snapshot(store).values() for m in f["messages"].values()]
    assert len(kept) == 1


def test_local_delete_in_a_folder_the_server_renamed_meanwhile(server_user, store):
    """The delete names A/1; A is Q now, so the change fails; the store has dropped the message
    already, the rename is recognised, and the message stays on the server (Q/1) and missing from
    the store for good."""
    c = client_for(server_user)
    c.create_folder(mailbox(server_user, "A"))
    c.append(mailbox(server_user, "A"), msg(1))
    c.append(mailbox(server_user, "A"), msg(2))
    account = account_for(server_user)
    sync(store, account)
    LocalChanges(store).delete("acc", mailbox(server_user, "A"), 1)
    c.rename_folder(mailbox(server_user, "A"), mailbox(server_user, "Q"))
    c.logout()
    sync(store, account)
    assert_agree(store, server_user)
