"""Edge cases of the engine on every server (Dovecot, Cyrus, Courier), each one a defect found
there: a folder replaced within its second taken for a rename (Cyrus, Courier), a flag change that
adds and removes landing half (Dovecot, Cyrus: CONDSTORE), a flag change that changes nothing never
settling (all three), negative counts after a server rename (Courier).
"""

from __future__ import annotations

import secrets
import time

from helpers import client_for, mailbox, server_kind, server_snapshot
from mailsync.changes import LocalChanges
from mailsync.store.models import AuditEvent, PendingOp
from mailsync.store.uow import UnitOfWork
from twoway_support import account_for, assert_agree, msg, sync

def _one_seen_message_synced(user, store, extra: str):
    """INBOX holds one \\Seen message (its body marked ``extra``), synced into ``store``: the
    server's name of INBOX, and the account."""
    inbox = mailbox(user, "INBOX")
    user.server.load(user.name, [("INBOX", msg(1, extra=extra), "\\Seen")])
    account = account_for(user)
    sync(store, account)
    return inbox, account


def _open_ops(store) -> list[tuple[str, str]]:
    with UnitOfWork(store) as uow:
        ops = uow.session.query(PendingOp).filter(PendingOp.state.in_(("pending", "sent")))
        return [(op.kind, op.state) for op in ops]


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


def test_one_flag_change_that_adds_and_removes_lands_whole(server_user, store):
    user = server_user
    inbox, account = _one_seen_message_synced(user, store, "flags")
    LocalChanges(store).flag("acc", inbox, 1, add=["\\Flagged"], remove=["\\Seen"])
    sync(store, account)
    assert server_snapshot(user)[inbox]["messages"][1][0] == ["\\Flagged"]
    with UnitOfWork(store) as uow:
        assert "modified" not in [e.kind for e in uow.session.query(AuditEvent).all()]
    assert _open_ops(store) == []


def test_a_flag_change_that_changes_nothing_settles_at_once(server_user, store):
    user = server_user
    inbox, account = _one_seen_message_synced(user, store, "noop")
    LocalChanges(store).flag("acc", inbox, 1, add=["\\Seen"])
    sync(store, account)
    assert _open_ops(store) == []
    assert server_snapshot(user)[inbox]["messages"][1][0] == ["\\Seen"]


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


def test_mailboxid_keeps_a_renamed_folder_whose_content_cannot_tell(cyrus, store):
    """Cyrus offers OBJECTID: a renamed folder is known by its MAILBOXID (read at SELECT/EXAMINE,
    since its STATUS answer for it is unusable), even where content is no evidence: an empty folder
    sharing its UIDVALIDITY with a sibling made in the same second. Its store row is kept (same id,
    an audit event says renamed), not dropped and made again."""
    from sqlalchemy import select

    from mailsync.store import tables

    user = cyrus.new_user(f"mbid{secrets.token_hex(3)}", "pw")
    c = client_for(user)
    c.create_folder("E1")
    c.create_folder("E2")
    c.logout()
    account = account_for(user)
    sync(store, account)
    with UnitOfWork(store) as uow:
        f = tables.folders.c
        before = dict(uow.connection.execute(select(f.name, f.id)).all())
        ids = dict(uow.connection.execute(select(f.name, f.mailboxid)).all())
    assert ids["E1"] and ids["E2"] and ids["E1"] != ids["E2"]  # learnt from SELECT
    c = client_for(user)
    c.rename_folder("E1", "F1")
    c.logout()
    sync(store, account)
    with UnitOfWork(store) as uow:
        after = dict(uow.connection.execute(select(f.name, f.id)).all())
        kinds = [e.kind for e in uow.session.scalars(select(AuditEvent).where(AuditEvent.folder == "F1"))]
    assert after["F1"] == before["E1"] and "E1" not in after and after["E2"] == before["E2"]
    assert "folder_renamed" in kinds
    assert_agree(store, user)


def test_deletions_held_as_a_mass_are_applied_when_allowed(server_user, store):
    """Another client expunges 6 of 8 messages: the sync holds them (rule G2) and keeps the folder
    where it was; `--allow-deletions` then applies them, on a QRESYNC server too, whose next SELECT
    no longer names those UIDs as vanished (the checkpoint moved past them with the held run)."""
    from mailsync.sync.engine import sync_account

    user = server_user
    inbox = mailbox(user, "INBOX")
    user.server.load(user.name, [("INBOX", msg(i, extra="mass"), "") for i in range(8)])
    account = account_for(user)
    sync(store, account)
    c = client_for(user)
    c.select_folder(inbox)
    uids = sorted(c.search("ALL"))
    c.delete_messages(uids[:6])
    c.expunge()
    c.logout()
    held = sync(store, account)
    assert held.expunged == 0 and held.set_aside and "INBOX" in held.set_aside[0], held
    again = sync(store, account)  # still held, still nothing lost
    assert again.expunged == 0 and again.set_aside, again
    allowed = sync_account(store, account, allow_mass_delete=True)
    assert allowed.ok and allowed.expunged == 6 and not allowed.set_aside, allowed
    assert_agree(store, user)
