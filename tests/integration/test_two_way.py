"""Two-way sync against the real Dovecot, run as configured, without QRESYNC (CONDSTORE alone), without
CONDSTORE/QRESYNC, and without CONDSTORE/QRESYNC/UIDPLUS/MOVE (the `imap_capability` setting). Same
final state each time.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from helpers import client_for, nonempty, server_snapshot
from mailsync.changes import LocalChanges
from mailsync.store.models import AuditEvent, Folder, PendingOp, Placement
from mailsync.store.uow import UnitOfWork
from twoway_support import (FLAG_TABLE, account_for, apply_table_changes, assert_agree, msg, store_snapshot, sync,
                             table_messages)

VARIANTS = {
    "full": (),
    "no-qresync": ("QRESYNC",),  # CONDSTORE alone: CHANGEDSINCE and UID set comparison
    "no-condstore": ("CONDSTORE", "QRESYNC"),
    "no-uidplus-move": ("CONDSTORE", "QRESYNC", "UIDPLUS", "MOVE"),
}


@pytest.fixture(params=list(VARIANTS))
def server(request, dovecot, dovecot_factory):
    removed = VARIANTS[request.param]
    return dovecot if not removed else dovecot_factory(remove_capabilities=removed)


@pytest.fixture
def user(server, request):
    import secrets

    return server.new_user(f"tw{secrets.token_hex(4)}", "pw-" + secrets.token_hex(4))


def _setup_table(server, user, store, account):
    server.load(user.name, table_messages())
    sync(store, account)
    return apply_table_changes(user, store)


def _check_table(store, user, uids):
    server = server_snapshot(user)["INBOX"]["messages"]
    local = store_snapshot(store)["INBOX"]["messages"]
    for uid, (srv, base, loc, expected) in zip(uids, FLAG_TABLE):
        want = sorted(expected.split())
        assert server[uid][0] == want, f"row server={srv!r} base={base!r} local={loc!r}: server has {server[uid][0]}"
        assert local[uid][0] == want, f"row server={srv!r} base={base!r} local={loc!r}: store has {local[uid][0]}"
    with UnitOfWork(store) as uow:
        left = uow.session.query(PendingOp).filter(PendingOp.state.in_(("pending", "sent"))).count()
    assert left == 0


def test_flag_merge_table_clean_and_idempotent(server, user, store):
    account = account_for(user)
    uids = _setup_table(server, user, store, account)
    sync(store, account)
    _check_table(store, user, uids)
    again = sync(store, account)  # idempotent: nothing left to do
    assert (again.new_messages, again.flag_changes, again.pushed, again.expunged) == (0, 0, 0, 0)
    _check_table(store, user, uids)


def test_local_changes_reach_the_server(server, user, store):
    server.load(user.name, [("INBOX", msg(i)) for i in range(6)] + [("Projects", msg(10))])
    account = account_for(user)
    sync(store, account)
    changes = LocalChanges(store)
    changes.flag("acc", "INBOX", 1, add=["\\Flagged", "$Label2"])
    changes.move("acc", "INBOX", 2, "Projects")
    changes.delete("acc", "INBOX", 3)
    changes.append("acc", "Sent", msg(20, extra="appended"), flags=["\\Seen"])
    changes.append("acc", "INBOX", b"From: x@example.org\r\nSubject: no id\r\n\r\nno message-id here\r\n")
    changes.mkdir("acc", "Projekte/Neu")
    changes.rename("acc", "Projects", "Ablage")
    result = sync(store, account)
    assert result.pushed >= 7, result.notes
    server_view = assert_agree(store, user)
    assert "Ablage" in server_view and "Projects" not in server_snapshot(user)
    assert "Projekte/Neu" in server_snapshot(user)
    # the appended message without a Message-ID got one, and is on the server exactly once
    inbox_subjects = [m for m in server_view["INBOX"]["messages"].values()]
    assert len(inbox_subjects) == 5  # 6 - moved - deleted + the one appended to INBOX
    changes.rmdir("acc", "Projekte/Neu")
    sync(store, account)
    assert "Projekte/Neu" not in server_snapshot(user)
    assert_agree(store, user)
    again = sync(store, account)
    assert (again.new_messages, again.pushed, again.bodies_downloaded) == (0, 0, 0)


def test_changes_by_another_client_while_syncing(server, user, store):
    """A second client appends, flags, moves and expunges at random while syncs run; after it stops
    and one more sync runs, store and server agree exactly."""
    server.load(user.name, [("INBOX", msg(i)) for i in range(40)] + [("Archive", msg(100 + i)) for i in range(10)])
    account = account_for(user)
    sync(store, account)
    stop = threading.Event()
    errors = []

    def other_client():
        rng = random.Random(7)
        c = client_for(user)
        n = 1000
        try:
            while not stop.is_set():
                folder = rng.choice(["INBOX", "Archive"])
                c.select_folder(folder)
                uids = c.search("ALL")
                action = rng.random()
                if action < 0.3 or not uids:
                    n += 1
                    c.append(folder, msg(n), flags=[b"\\Seen"] if rng.random() < 0.5 else [])
                elif action < 0.6:
                    c.add_flags([rng.choice(uids)], [rng.choice([b"\\Seen", b"\\Flagged", b"$Label3"])])
                elif action < 0.7:
                    c.remove_flags([rng.choice(uids)], [b"\\Seen"])
                elif action < 0.85:
                    dest = "Archive" if folder == "INBOX" else "INBOX"
                    c.copy([rng.choice(uids)], dest)  # COPY + expunge: works on every variant
                    c.delete_messages([uids[0]])
                    c.uid_expunge([uids[0]]) if c.has_capability("UIDPLUS") else c.expunge()
                else:
                    c.delete_messages([rng.choice(uids)])
                    c.expunge()
                time.sleep(0.005)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            c.logout()

    t = threading.Thread(target=other_client)
    t.start()
    try:
        deadline = time.monotonic() + 4
        runs = 0
        changes = LocalChanges(store)
        rng = random.Random(3)
        while time.monotonic() < deadline:
            sync(store, account)
            runs += 1
            snap = store_snapshot(store)
            if snap.get("INBOX", {}).get("messages"):
                uid = rng.choice(sorted(snap["INBOX"]["messages"]))
                changes.flag("acc", "INBOX", uid, add=["$Local"])
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    assert runs >= 3
    sync(store, account)
    sync(store, account)  # a pushed local change may need a second run to be seen back
    assert_agree(store, user)


def test_server_move_of_1000_messages_downloads_no_body(server, user, store):
    server.load(user.name, [("INBOX", msg(i, extra="bulk")) for i in range(1000)])
    account = account_for(user)
    sync(store, account)
    with UnitOfWork(store) as uow:
        before = {p.uid for p in uow.session.query(Placement).all()}
        ids_before = {p.id for p in uow.session.query(Placement).all()}
    assert len(before) == 1000
    c = client_for(user)
    c.select_folder("INBOX")
    uids = c.search("ALL")
    if c.has_capability("MOVE"):
        c.move(uids, "Archive")
    else:
        c.copy(uids, "Archive")
        c.delete_messages(uids)
        c.expunge()
    c.logout()
    result = sync(store, account)
    assert result.bodies_downloaded == 0
    assert result.moves == 1000
    assert_agree(store, user)
    with UnitOfWork(store) as uow:
        assert {p.id for p in uow.session.query(Placement).filter(Placement.tombstone_run.is_(None))} \
            == ids_before  # the same placements, moved: their identity (and local metadata) kept


def test_folder_rename_on_server_is_recognised(server, user, store):
    server.load(user.name, [("Projects", msg(i, extra="p")) for i in range(30)])
    account = account_for(user)
    sync(store, account)
    with UnitOfWork(store) as uow:
        fid = uow.session.query(Folder).filter_by(name="Projects").one().id
    c = client_for(user)
    c.rename_folder("Projects", "Projekte")
    c.logout()
    result = sync(store, account)
    assert result.bodies_downloaded == 0
    assert_agree(store, user)
    with UnitOfWork(store) as uow:
        assert uow.session.query(Folder).filter_by(name="Projekte").one().id == fid


def test_folders_created_and_deleted_on_the_server(server, user, store):
    account = account_for(user)
    sync(store, account)
    c = client_for(user)
    c.create_folder("Neu")
    c.append("Neu", msg(1, extra="neu"))
    c.logout()
    sync(store, account)
    assert "Neu" in store_snapshot(store)
    c = client_for(user)
    c.delete_folder("Neu")
    c.logout()
    sync(store, account)
    assert "Neu" not in store_snapshot(store)
    assert_agree(store, user)


def test_no_change_sync_costs_one_command_with_list_status(dovecot, store):
    user = dovecot.new_user("nochange" + str(int(time.time() * 1000) % 100000), "pw")
    dovecot.load(user.name, [(f"F{i}", msg(i, extra=str(i))) for i in range(8)])
    account = account_for(user)
    sync(store, account)
    result = sync(store, account)
    assert result.commands == 1  # LIST "" "*" RETURN (STATUS (...)) and nothing else
    assert result.folders >= 8


def test_delta_with_qresync_reads_only_what_changed(dovecot, store):
    user = dovecot.new_user("delta" + str(int(time.time() * 1000) % 100000), "pw")
    dovecot.load(user.name, [("INBOX", msg(i, extra="d")) for i in range(300)])
    account = account_for(user)
    sync(store, account)
    c = client_for(user)
    c.select_folder("INBOX")
    uids = sorted(c.search("ALL"))
    c.add_flags(uids[:5], [b"\\Flagged"])
    c.delete_messages(uids[5:8])
    c.uid_expunge(uids[5:8])
    c.logout()
    result = sync(store, account)
    assert (result.flag_changes, result.expunged, result.new_messages) == (5, 3, 0)
    assert result.bytes_fetched < 5000  # the changed FETCHes and VANISHED, not 300 messages
    assert_agree(store, user)


def _force_new_uidvalidity(server, user, folder: str) -> None:
    d = server.folder_dir(user.name, folder)
    time.sleep(1.1)  # Dovecot makes UIDVALIDITY from the clock
    (d / "dovecot-uidlist").unlink()
    for index in d.glob("dovecot.index*"):
        index.unlink()
    server.force_resync(user.name)


def test_uidvalidity_change_is_reapproved_without_download(server, user, store):
    server.load(user.name, [("Archive", msg(i, extra="uv")) for i in range(25)])
    account = account_for(user)
    sync(store, account)
    LocalChanges(store).flag("acc", "Archive", 3, add=["\\Flagged"])
    old = server_snapshot(user)["Archive"]["uidvalidity"]
    _force_new_uidvalidity(server, user, "Archive")
    assert server_snapshot(user)["Archive"]["uidvalidity"] != old
    result = sync(store, account)
    assert result.bodies_downloaded == 0
    sync(store, account)
    assert_agree(store, user)
    with UnitOfWork(store) as uow:
        kinds = [e.kind for e in uow.session.query(AuditEvent).all()]
    assert "uidvalidity_rematched" in kinds


def test_folder_replaced_with_different_mail_is_set_aside(server, user, store):
    server.load(user.name, [("Archive", msg(i, extra="old")) for i in range(25)])
    account = account_for(user)
    sync(store, account)
    before = store_snapshot(store)["Archive"]
    d = server.folder_dir(user.name, "Archive")
    for sub in ("cur", "new"):
        for f in (d / sub).iterdir():
            f.unlink()
    _force_new_uidvalidity(server, user, "Archive")
    server.load(user.name, [("Archive", msg(i, extra="new")) for i in range(25)])
    result = sync(store, account)
    assert result.bodies_downloaded == 0
    with UnitOfWork(store) as uow:
        f = uow.session.query(Folder).filter_by(name="Archive").one()
        assert f.status == "aside" and "nothing was deleted" in f.status_reason
    assert store_snapshot(store)["Archive"] == before  # nothing deleted locally
    assert len(server_snapshot(user)["Archive"]["messages"]) == 25  # nor on the server


def test_same_mail_in_a_second_account_is_not_downloaded_again(server, store):
    import secrets

    a = server.new_user(f"twa{secrets.token_hex(4)}", "pw")
    b = server.new_user(f"twb{secrets.token_hex(4)}", "pw")
    mail = [("INBOX", msg(i, extra="shared")) for i in range(30)]
    server.load(a.name, mail)
    server.load(b.name, mail)
    first = sync(store, account_for(a, "a"))
    assert first.bodies_downloaded == 30
    second = sync(store, account_for(b, "b"))
    assert second.bodies_downloaded == 0 and second.new_messages == 30
    assert_agree(store, a, "a")
    assert_agree(store, b, "b")


def test_without_list_status_a_no_change_sync_is_one_status_per_folder(dovecot_factory, store):
    import secrets

    server = dovecot_factory(remove_capabilities=("LIST-STATUS",))
    user = server.new_user(f"nols{secrets.token_hex(4)}", "pw")
    server.load(user.name, [(f"F{i}", msg(i, extra="ls")) for i in range(4)])
    account = account_for(user)
    sync(store, account)
    folders = len(server_snapshot(user))
    result = sync(store, account)
    assert result.commands == 1 + folders  # LIST, then STATUS per folder; no SELECT
    c = client_for(user)
    c.select_folder("F1")
    c.add_flags(c.search("ALL"), [b"\\Flagged"])
    c.logout()
    result = sync(store, account)
    assert result.flag_changes == 1
    assert_agree(store, user)


def test_first_sync_reads_each_folder_with_one_fetch(dovecot, store):
    """Rule D4: in a store with no bodies yet, a folder is read whole with one UID FETCH 1:* (flags
    with the bodies), no UID/FLAGS listing first; the result is the server's state all the same."""
    user = dovecot.new_user("whole" + str(int(time.time() * 1000) % 100000), "pw")
    folders = 6
    dovecot.load(user.name, [(f"F{i % folders}", msg(i, extra=str(i))) for i in range(60)])
    c = client_for(user)
    c.select_folder("F1")
    c.add_flags(c.search("ALL")[:3], [b"\\Flagged", b"$Label1"])
    c.logout()
    result = sync(store, account_for(user))
    assert result.new_messages == 60 and result.bodies_downloaded == 60
    # LIST-STATUS, a SELECT per folder (the empty ones too), and one UID FETCH per folder with mail
    assert result.commands == 1 + result.folders + folders, result
    assert_agree(store, user)
