"""The integration core on every server: Dovecot 2.3, Cyrus IMAP 3.6 and Courier-IMAP 5.0, on SQLite.

Each test runs once per server (the `server_user` fixture). The yardstick is a second IMAP client:
after a sync the store's placements (folder, UIDVALIDITY, UID, flags, size, SHA-256) must equal what
that client reads. The servers differ where it matters: Cyrus hands out MAILBOXIDs and one UIDVALIDITY
per second; Courier has no CONDSTORE, MOVE or LIST-STATUS, keeps folders under "INBOX." with "."
between levels, and also hands out one UIDVALIDITY per second.
"""

from __future__ import annotations

import secrets
import time

import pytest

from helpers import client_for, mailbox, server_kind, server_snapshot
from mailsync.changes import LocalChanges
from mailsync.store.models import AuditEvent
from mailsync.store.uow import UnitOfWork
from twoway_support import account_for, assert_agree, msg, store_snapshot, sync
from watch_support import OtherClient, RunningDaemon, message, stored_flags, wait_until

def _move_on_server(c, uids, dest: str) -> None:
    """Another client moves messages: MOVE where offered, else COPY + \\Deleted + UID EXPUNGE."""
    if c.has_capability("MOVE"):
        c.move(uids, dest)
    else:
        c.copy(uids, dest)
        c.delete_messages(uids)
        c.uid_expunge(uids)


def _bodies(user, folder: str) -> dict[int, str]:
    return {uid: m[2] for uid, m in server_snapshot(user)[folder]["messages"].items()}


def test_first_sync_equals_the_server_and_a_second_changes_nothing(server_user, store):
    user = server_user
    user.server.load(user.name, [("INBOX", msg(i, extra="core"), flags) for i, flags in enumerate(
        ["", "\\Seen", "\\Seen \\Flagged", "$Label1", "\\Answered \\Seen $Forwarded"])]
        + [("Archive/2024", msg(10 + i, extra="core")) for i in range(3)]
        + [("Sent", msg(20, extra="core"), "\\Seen"), ("Entwürfe", msg(21, extra="core"), "\\Draft")])
    account = account_for(user)
    first = sync(store, account)
    server = assert_agree(store, user)
    assert first.new_messages == first.bodies_downloaded == 10
    assert set(server) == {mailbox(user, n) for n in ("INBOX", "Archive/2024", "Sent", "Entwürfe")}
    assert any("$Forwarded" in m[0] for m in server[mailbox(user, "INBOX")]["messages"].values())

    again = sync(store, account)
    assert (again.new_messages, again.flag_changes, again.expunged, again.bodies_downloaded, again.moves,
            again.pushed) == (0, 0, 0, 0, 0, 0)
    assert store_snapshot(store) == server


def test_changes_on_the_server_between_syncs_reach_the_store(server_user, store):
    user = server_user
    inbox, archive = mailbox(user, "INBOX"), mailbox(user, "Archive")
    user.server.load(user.name, [("INBOX", msg(i, extra="srv"), "\\Seen" if i % 2 else "") for i in range(6)]
                     + [("Archive", msg(50, extra="srv"))])
    account = account_for(user)
    sync(store, account)
    moved = _bodies(user, inbox)[5]

    c = client_for(user)
    c.select_folder(inbox)
    c.add_flags([1], [b"\\Flagged", b"$Important"])
    c.remove_flags([2], [b"\\Seen"])
    c.delete_messages([3])
    c.uid_expunge([3]) if c.has_capability("UIDPLUS") else c.expunge()
    _move_on_server(c, [5], archive)
    c.append(inbox, msg(60, extra="srv-new"), flags=[b"\\Seen"])
    c.logout()

    result = sync(store, account)
    snapshot = assert_agree(store, user)
    assert result.bodies_downloaded == 1 and result.new_messages >= 1  # the new mail only: the move is not a download
    assert result.moves == 1, result.notes
    assert moved in {m[2] for m in snapshot[archive]["messages"].values()}
    assert sorted(snapshot[inbox]["messages"][1][0]) == ["$Important", "\\Flagged"]
    assert 3 not in snapshot[inbox]["messages"] and 5 not in snapshot[inbox]["messages"]
    again = sync(store, account)
    assert (again.new_messages, again.flag_changes, again.expunged, again.bodies_downloaded) == (0, 0, 0, 0)


def test_local_changes_reach_the_server(server_user, store):
    user = server_user
    inbox, projects = mailbox(user, "INBOX"), mailbox(user, "Projects")
    user.server.load(user.name, [("INBOX", msg(i, extra="loc")) for i in range(5)]
                     + [("Projects", msg(9, extra="loc"))])
    account = account_for(user)
    sync(store, account)
    before = _bodies(user, inbox)
    changes = LocalChanges(store)
    changes.flag("acc", inbox, 1, add=["\\Flagged", "$Label2"])
    changes.move("acc", inbox, 2, projects)
    changes.delete("acc", inbox, 3)
    changes.append("acc", mailbox(user, "Sent"), msg(20, extra="loc-appended"), flags=["\\Seen"])
    changes.mkdir("acc", mailbox(user, "Projects/Neu"))
    result = sync(store, account)
    assert result.pushed >= 5, result.notes
    snapshot = assert_agree(store, user)
    after = server_snapshot(user)
    assert mailbox(user, "Projects/Neu") in after
    inbox_bodies = {m[2] for m in after[inbox]["messages"].values()}
    assert before[2] not in inbox_bodies and before[3] not in inbox_bodies
    assert before[2] in {m[2] for m in after[projects]["messages"].values()}
    assert before[3] not in {m[2] for f in after.values() for m in f["messages"].values()}
    assert sorted(after[inbox]["messages"][1][0]) == ["$Label2", "\\Flagged"]
    assert [m[0] for m in snapshot[mailbox(user, "Sent")]["messages"].values()] == [["\\Seen"]]
    again = sync(store, account)
    assert (again.new_messages, again.pushed, again.bodies_downloaded) == (0, 0, 0)


def test_a_folder_recreated_with_the_same_mail_is_reapproved_without_download(server_user, store):
    user = server_user
    keep = mailbox(user, "Keep")
    mail = [("Keep", msg(i, extra="uv"), "\\Seen" if i % 2 else "") for i in range(6)]
    user.server.load(user.name, mail)
    account = account_for(user)
    sync(store, account)
    old = server_snapshot(user)[keep]["uidvalidity"]
    c = client_for(user)
    c.delete_folder(keep)
    c.logout()
    time.sleep(1.1)  # Cyrus and Courier take UIDVALIDITY from the clock in seconds
    user.server.load(user.name, mail)
    assert server_snapshot(user)[keep]["uidvalidity"] != old
    result = sync(store, account)
    assert result.bodies_downloaded == 0, result.notes
    assert_agree(store, user)
    with UnitOfWork(store) as uow:
        kinds = [e.kind for e in uow.session.query(AuditEvent).all()]
    assert "uidvalidity_rematched" in kinds


def _tree_in_one_second(user) -> dict[str, list[bytes]]:
    """P, P/a and P/b made by another client within one second, with 3, 2 and 1 messages. On a server
    that hands out one UIDVALIDITY per second the three share it (retried until they do)."""
    contents = {"P": [msg(i, extra="tree-p") for i in range(3)], "P/a": [msg(10 + i, extra="tree-a") for i in range(2)],
                "P/b": [msg(20, extra="tree-b")]}
    for _attempt in range(5):
        c = client_for(user)
        while time.time() % 1 > 0.5:  # start early in a second
            time.sleep(0.05)
        for name in contents:
            c.create_folder(mailbox(user, name))
        c.logout()
        snap = server_snapshot(user)
        validities = {snap[mailbox(user, n)]["uidvalidity"] for n in contents}
        if len(validities) == 1 or server_kind(user) == "dovecot":
            break
        c = client_for(user)
        for name in reversed(list(contents)):
            c.delete_folder(mailbox(user, name))
        c.logout()
    else:
        raise AssertionError("could not make three folders within one second")
    c = client_for(user)
    for name, raws in contents.items():
        for raw in raws:
            c.append(mailbox(user, name), raw)
    c.logout()
    return contents


def test_a_tree_made_within_one_second_and_renamed_on_the_server(server_user, store):
    """The wrong-message delete: after a server RENAME of P (with P/a, P/b made in the same second),
    the store must map each UID to its own message, and a local delete of Q UID 1 must expunge
    exactly that message. Cyrus keeps a folder's UIDVALIDITY through RENAME, so Q, Q/a and Q/b carry
    the value P, P/a and P/b shared: UIDVALIDITY alone cannot tell them apart; Courier gives renamed
    folders a new UIDVALIDITY (the engine then sees a delete and new folders, and finds the moves by
    content), and Dovecot's values are distinct."""
    user = server_user
    _tree_in_one_second(user)
    account = account_for(user)
    sync(store, account)
    assert_agree(store, user)
    c = client_for(user)
    c.rename_folder(mailbox(user, "P"), mailbox(user, "Q"))
    c.logout()
    sync(store, account)
    assert_agree(store, user)

    q = mailbox(user, "Q")
    before = server_snapshot(user)
    chosen = before[q]["messages"][1][2]
    LocalChanges(store).delete("acc", q, 1)
    sync(store, account)
    after = server_snapshot(user)
    assert sorted(after[q]["messages"]) == sorted(set(before[q]["messages"]) - {1})
    for name, folder in before.items():
        expected = {uid: m for uid, m in folder["messages"].items() if (name, uid) != (q, 1)}
        assert after[name]["messages"] == expected, f"{name} changed beyond the one chosen message"
    assert chosen not in {m[2] for f in after.values() for m in f["messages"].values()}
    assert_agree(store, user)


@pytest.fixture(params=["dovecot", "cyrus", "courier"])
def idle_user(request, dovecot_factory):
    """A fresh user on a server whose push the watch daemon takes through IDLE: Cyrus and Courier as
    they are, Dovecot without NOTIFY (it would be preferred)."""
    server = (dovecot_factory(remove_capabilities=("NOTIFY",)) if request.param == "dovecot"
              else request.getfixturevalue(request.param))
    return server.new_user(f"idle{secrets.token_hex(4)}", "pw-" + secrets.token_hex(4))


def test_the_watch_daemon_wakes_on_new_mail_through_idle(idle_user, store):
    user = idle_user
    inbox = mailbox(user, "INBOX")
    # a poll interval far beyond the limit below: only IDLE can bring the mail in time
    account = account_for(user, "acc", extra={"poll_interval": 60})
    other = OtherClient(user)
    try:
        with RunningDaemon(store, [account]) as d:
            d.wait_connected()
            assert str(d.watcher("acc").health.mode) == "IDLE", d.watcher("acc").health
            for n in range(2):
                raw, mid = message(n, tag=f"idle-{server_kind(user)}")
                t0 = other.append(inbox, raw)
                wait_until(lambda: stored_flags(store, "acc", mid) is not None, 5.0,
                           f"{server_kind(user)}: the APPEND to arrive through IDLE")
                assert time.monotonic() - t0 <= 5.0
    finally:
        other.close()
    assert_agree(store, user)
