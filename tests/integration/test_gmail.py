"""Gmail (X-GM-EXT-1) against the fake Gmail (tests/gmail_server.py): one message in many folders is
downloaded once, its labels are kept and follow the server, and a kill -9 mid first sync leaves
each message once after a rerun."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from gmail_server import ALL_MAIL, GmailServer
from helpers import REPO, export_via_cli, write_config
from hostile_support import account, stored
from mailsync.store import gmail_repo, tables
from mailsync.store.db import open_store
from mailsync.store.uow import UnitOfWork
from mailsync.sync.engine import sync_account

LABELS = ("Work", "Family", "Receipts")


def body(n: int, size: int = 200) -> bytes:
    return (b"Message-ID: <g%d@gmail.test>\r\nSubject: message %d\r\n\r\n" % (n, n)) + (b"line %d\r\n" % n) * size


@pytest.fixture
def gmail():
    srv = GmailServer(labels=LABELS).start()
    yield srv
    srv.stop()


def shared_corpus(srv: GmailServer, n: int = 30) -> dict[int, bytes]:
    """``n`` messages spread over INBOX and the 3 labels, most in two or three of them (and all
    in All Mail); X-GM-MSGID -> body."""
    out = {}
    for i in range(1, n + 1):
        labels = {LABELS[i % 3], LABELS[(i + 1) % 3]} if i % 4 else {LABELS[i % 3]}
        if i % 2:
            labels.add("\\Inbox")
        out[srv.add_mail(body(i), labels=sorted(labels), flags=("\\Seen",) if i % 5 == 0 else ())] = body(i)
    return out


def sync(store, srv, **kw):
    return sync_account(store, account(srv, name="gm", **kw))


def every_folder(srv: GmailServer) -> list[str]:
    return [f.raw_name.decode() for f in srv.folders.values() if b"Noselect" not in f.list_flags.encode()]


def server_view(srv: GmailServer) -> dict[str, dict[int, str]]:
    with srv.lock:
        return {name: {m.uid: hashlib.sha256(m.body).hexdigest() for m in srv.folders[name.encode()].messages}
                for name in every_folder(srv)}


def store_view(store, srv: GmailServer) -> dict[str, dict[int, str]]:
    return {name: {uid: sha for uid, (_flags, sha) in stored(store, name, "gm").items()} for name in every_folder(srv)}


def labels_in_store(store) -> dict[int, list[str]]:
    g = tables.gmail_messages.c
    with UnitOfWork(store) as uow:
        return {int(m): gmail_repo.labels_list(t) for m, t in uow.connection.execute(select(g.msgid, g.labels))}


def test_first_sync_downloads_each_gmail_message_once_and_a_rerun_nothing(gmail, store):
    mail = shared_corpus(gmail)
    views = server_view(gmail)
    copies = sum(len(v) for v in views.values())
    assert copies >= 2.5 * len(mail)  # the corpus does share messages between folders

    r = sync(store, gmail)
    assert r.ok, r.error
    assert store_view(store, gmail) == views  # every copy placed, in every folder
    assert gmail.bodies_sent == len(mail)
    assert dict(gmail.downloads) == {msgid: 1 for msgid in mail}
    assert gmail.body_bytes == sum(len(b) for b in mail.values())
    assert r.bodies_downloaded == len(mail)
    assert labels_in_store(store) == {m: sorted(g.labels) for m, g in gmail.mail.items()}

    sent = gmail.body_bytes
    again = sync(store, gmail)
    assert again.ok, again.error
    assert gmail.body_bytes == sent and again.bodies_downloaded == 0
    assert store_view(store, gmail) == views


def test_a_message_labelled_later_is_placed_not_downloaded(gmail, store):
    mail = shared_corpus(gmail, 6)
    assert sync(store, gmail).ok
    sent = gmail.bodies_sent
    msgid = next(iter(mail))
    gmail.set_labels(msgid, gmail.mail[msgid].labels | {"Receipts", "Work", "Family"})
    new = gmail.add_mail(body(100), labels=("\\Inbox", "Work"))

    r = sync(store, gmail)
    assert r.ok, r.error
    assert gmail.bodies_sent == sent + 1 and gmail.downloads[new] == 1  # only the new message's body
    assert store_view(store, gmail) == server_view(gmail)
    assert labels_in_store(store)[msgid] == sorted(gmail.mail[msgid].labels)


def test_label_changes_on_the_server_reach_the_store(gmail, store):
    mail = shared_corpus(gmail, 8)
    assert sync(store, gmail).ok
    a, b = list(mail)[:2]
    gmail.set_labels(a, {"Receipts", "Muy Importante"})  # a new label (its folder appears too)
    gmail.set_labels(b, set())  # archived: in All Mail alone
    r = sync(store, gmail)
    assert r.ok, r.error
    assert labels_in_store(store)[a] == ["Muy Importante", "Receipts"]
    assert labels_in_store(store)[b] == []
    assert store_view(store, gmail) == server_view(gmail)
    assert stored(store, "Muy Importante", "gm")  # the new label's folder holds the message
    assert gmail.bodies_sent == len(mail)  # nothing downloaded again for it


def test_a_label_changed_in_all_mail_alone_is_seen_by_the_condstore_delta(gmail, store):
    """A label that has no folder synced here (the account syncs All Mail only) still reaches the
    store: the label change moves the message's MODSEQ, and the CHANGEDSINCE listing carries labels."""
    mail = shared_corpus(gmail, 4)
    assert sync(store, gmail, folders=[ALL_MAIL]).ok
    msgid = list(mail)[0]
    gmail.set_labels(msgid, gmail.mail[msgid].labels | {"Later"})
    assert sync(store, gmail, folders=[ALL_MAIL]).ok
    assert "Later" in labels_in_store(store)[msgid]
    assert any(c.startswith("UID FETCH") and "CHANGEDSINCE" in c and "X-GM-LABELS" in c for c in gmail.log)


def test_export_shows_gmail_labels(gmail, store, tmp_path):
    mail = shared_corpus(gmail, 5)
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 'store.db'}", [gmail_entry(gmail)])
    assert sync(store, gmail).ok
    rows = export_via_cli(cfg)
    assert rows and all("gmail" in r for r in rows)
    for r in rows:
        g = gmail.mail[int(r["gmail"]["msgid"])]
        assert r["gmail"]["labels"] == sorted(g.labels)
        assert r["gmail"]["thrid"] == str(g.thrid)
        assert r["sha256"] == hashlib.sha256(g.body).hexdigest()
    assert {int(r["gmail"]["msgid"]) for r in rows} == set(mail)


def gmail_entry(srv: GmailServer) -> dict:
    return {"name": "gm", "host": srv.host, "port": srv.port, "tls": "none", "allow_plaintext": True,
            "username": "u", "password": "env:MS_GMAIL_PW", "timeout": 5}


@pytest.mark.parametrize("crash_at", ["batch committed", "batch committed:3", "folder complete:2",
                                      "links committed"])
def test_kill_9_mid_first_sync_then_a_rerun_has_each_message_once(gmail, tmp_path, crash_at):
    mail = shared_corpus(gmail, 40)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    cfg = write_config(tmp_path / "c.toml", url, [dict(gmail_entry(gmail), batch_size=5)])
    env = dict(os.environ, MS_GMAIL_PW="p", PYTHONPATH=str(REPO), MAILSYNC_CRASH_AT=crash_at)
    proc = subprocess.run([sys.executable, "-m", "mailsync", "--config", str(cfg), "sync", "--quiet"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 99 and "crash point" in proc.stderr, proc.stderr
    s = open_store(url)
    try:
        with UnitOfWork(s) as uow:  # the bodies the killed run committed, with their X-GM-MSGIDs
            committed = len(gmail_repo.known_bodies(uow.connection, 1, mail))
    finally:
        s.dispose()
    before = gmail.bodies_sent

    env.pop("MAILSYNC_CRASH_AT")
    proc = subprocess.run([sys.executable, "-m", "mailsync", "--config", str(cfg), "sync", "--quiet"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = export_via_cli(cfg, {"MS_GMAIL_PW": "p"})
    keys = [(r["folder"], r["uid"]) for r in rows]
    assert len(keys) == len(set(keys))  # no duplicate placement
    s = open_store(url)
    try:
        assert store_view(s, gmail) == server_view(gmail)  # nothing lost, each copy once
        assert labels_in_store(s) == {m: sorted(g.labels) for m, g in gmail.mail.items()}
    finally:
        s.dispose()
    # the rerun downloads exactly the bodies the killed run had not committed, each once
    assert gmail.bodies_sent - before == len(mail) - committed
    assert 0 < committed or crash_at != "links committed"


def test_a_local_delete_in_a_label_folder_takes_that_label_away_only(gmail, store):
    """Rule N6: on Gmail an expunge in a label's folder removes the label; the message stays in
    All Mail and its other folders, and nothing is downloaded again."""
    from mailsync.changes import LocalChanges

    mail = shared_corpus(gmail, 8)
    assert sync(store, gmail).ok
    msgid = next(m for m, g in gmail.mail.items() if {"Work", "\\Inbox"} <= g.labels)
    before = set(gmail.mail[msgid].labels)
    LocalChanges(store).delete("gm", "Work", gmail.where(msgid)["Work"])
    r = sync(store, gmail)
    assert r.ok, r.error
    assert gmail.mail[msgid].labels == before - {"Work"}
    assert set(gmail.where(msgid)) == {"INBOX", ALL_MAIL} | (before - {"Work", "\\Inbox"})
    assert store_view(store, gmail) == server_view(gmail)
    assert labels_in_store(store)[msgid] == sorted(before - {"Work"})
    assert gmail.bodies_sent == len(mail)


def test_a_local_delete_in_all_mail_moves_the_message_to_trash(gmail, store):
    """Rule N6: Gmail only archives what is expunged from All Mail; deleting there means deleting,
    so the message goes to [Gmail]/Trash (and leaves every label), placed there without a download."""
    from mailsync.changes import LocalChanges

    from gmail_server import TRASH

    mail = shared_corpus(gmail, 8)
    assert sync(store, gmail).ok
    msgid = next(m for m, g in gmail.mail.items() if len(g.labels) >= 2)
    LocalChanges(store).delete("gm", ALL_MAIL, gmail.where(msgid)[ALL_MAIL])
    r = sync(store, gmail)
    assert r.ok, r.error
    assert gmail.mail[msgid].labels == {"\\Trash"} and set(gmail.where(msgid)) == {TRASH}
    assert any(c.startswith("UID MOVE") and "Trash" in c for c in gmail.log)
    assert store_view(store, gmail) == server_view(gmail)
    assert stored(store, TRASH, "gm")  # the trashed message, placed on the body held
    assert gmail.bodies_sent == len(mail)


def test_a_delete_in_all_mail_reaches_trash_when_trash_is_not_synced(gmail, store):
    from mailsync.changes import LocalChanges

    from gmail_server import SPAM, TRASH

    shared_corpus(gmail, 4)
    assert sync(store, gmail, exclude=[TRASH, SPAM]).ok
    msgid = next(iter(gmail.mail))
    LocalChanges(store).delete("gm", ALL_MAIL, gmail.where(msgid)[ALL_MAIL])
    r = sync(store, gmail, exclude=[TRASH, SPAM])
    assert r.ok, r.error
    assert set(gmail.where(msgid)) == {TRASH}
    synced = {k: v for k, v in store_view(store, gmail).items() if k not in (TRASH, SPAM)}
    assert synced == {k: v for k, v in server_view(gmail).items() if k not in (TRASH, SPAM)}


def test_a_local_label_change_is_pushed_with_store_x_gm_labels(gmail, store):
    from mailsync.changes import LocalChanges

    mail = shared_corpus(gmail, 8)
    assert sync(store, gmail).ok
    msgid = next(m for m, g in gmail.mail.items() if "Work" in g.labels and "Receipts" not in g.labels)
    want = (gmail.mail[msgid].labels | {"Receipts", "Muy Importante"}) - {"Work"}
    LocalChanges(store).label("gm", ALL_MAIL, gmail.where(msgid)[ALL_MAIL], add=["Receipts", "Muy Importante"],
                              remove=["Work"])
    assert labels_in_store(store)[msgid] == sorted(want)  # the store shows it at once
    r = sync(store, gmail)
    assert r.ok, r.error
    assert gmail.mail[msgid].labels == want
    assert any(c.startswith("UID STORE") and '+X-GM-LABELS (Receipts "Muy Importante")' in c for c in gmail.log)
    assert store_view(store, gmail) == server_view(gmail)  # in Receipts now, out of Work
    assert labels_in_store(store)[msgid] == sorted(want)
    assert gmail.bodies_sent == len(mail)


def test_a_label_change_is_refused_where_the_store_knows_no_gmail_message(store, tmp_path):
    from hostile_server import HostileServer
    from hostile_support import fill

    from mailsync.changes import ChangeError, LocalChanges

    srv = HostileServer(capabilities=("UIDPLUS",)).start()
    try:
        srv.add_folder("INBOX")
        fill(srv, 2)
        assert sync(store, srv).ok
        with pytest.raises(ChangeError, match="no Gmail labels"):
            LocalChanges(store).label("gm", "INBOX", 1, add=["Work"])
    finally:
        srv.stop()


def test_kill_9_after_a_label_change_was_sent_then_a_rerun_settles_it(gmail, tmp_path):
    shared_corpus(gmail, 6)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    cfg = write_config(tmp_path / "c.toml", url, [gmail_entry(gmail)])
    env = dict(os.environ, MS_GMAIL_PW="p", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "mailsync", "--config", str(cfg)]
    assert subprocess.run(cmd + ["sync", "--quiet"], env=env, capture_output=True, timeout=120).returncode == 0
    msgid = next(m for m, g in gmail.mail.items() if "\\Inbox" in g.labels)
    uid = gmail.where(msgid)["INBOX"]
    proc = subprocess.run(cmd + ["label", "gm", "INBOX", str(uid), "+Later", "-\\Inbox"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(cmd + ["sync", "--quiet"], env=dict(env, MAILSYNC_CRASH_AT="labels sent"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 99, proc.stderr
    proc = subprocess.run(cmd + ["sync", "--quiet"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Later" in gmail.mail[msgid].labels and "\\Inbox" not in gmail.mail[msgid].labels
    s = open_store(url)
    try:
        assert store_view(s, gmail) == server_view(gmail)
        assert labels_in_store(s)[msgid] == sorted(gmail.mail[msgid].labels)
        o = tables.pending_ops.c
        with UnitOfWork(s) as uow:
            assert uow.connection.execute(select(o.kind, o.state)).all() == [("labels", "done")]
    finally:
        s.dispose()


def test_the_dry_run_shows_gmail_deletes_and_label_changes_as_the_sync_sends_them(gmail, store):
    from mailsync.changes import LocalChanges
    from mailsync.sync.dry_run import dry_run

    from gmail_server import TRASH

    shared_corpus(gmail, 6)
    assert sync(store, gmail).ok
    a, b = list(gmail.mail)[:2]
    changes = LocalChanges(store)
    ua, ub = gmail.where(a)[ALL_MAIL], gmail.where(b)[ALL_MAIL]
    ops = {"delete": changes.delete("gm", ALL_MAIL, ua), "labels": changes.label("gm", ALL_MAIL, ub, add=["Later"])}
    plan = dry_run(store, account(gmail, name="gm"))
    assert plan.ok, plan.error
    sends = {op.id: op.sends for op in plan.ops}
    assert sends[ops["delete"]] == [f'UID MOVE {ua} {TRASH}']
    assert sends[ops["labels"]] == [f"UID STORE {ub} +X-GM-LABELS (Later)"]
    log = len(gmail.log)
    assert sync(store, gmail).ok
    sent = gmail.log[log:]
    assert f'UID MOVE {ua} "{TRASH}"' in sent and f"UID STORE {ub} +X-GM-LABELS (Later)" in sent


def test_archiving_most_of_inbox_at_once_is_applied_not_held(gmail, store):
    """Rule N7: archiving (\\Inbox taken away) 8 of 10 messages empties most of INBOX, but every
    message stays in All Mail: not a mass deletion to hold. With All Mail not synced, the same
    delta is held as before (the guard still protects what the store would lose)."""
    from hostile_support import folder_state

    ids = [gmail.add_mail(body(i), labels=("\\Inbox",)) for i in range(10)]
    assert sync(store, gmail).ok
    for m in ids[:8]:
        gmail.set_labels(m, set())
    r = sync(store, gmail)
    assert r.ok and not r.set_aside, (r.error, r.set_aside)
    assert folder_state(store, "INBOX", "gm") == ("ok", None)
    assert store_view(store, gmail) == server_view(gmail)
    assert len(stored(store, ALL_MAIL, "gm")) == 10


def test_a_mass_archive_is_held_when_all_mail_is_not_synced(gmail, store):
    from hostile_support import folder_state

    ids = [gmail.add_mail(body(i), labels=("\\Inbox",)) for i in range(10)]
    assert sync(store, gmail, exclude=[ALL_MAIL]).ok
    for m in ids[:8]:
        gmail.set_labels(m, set())
    r = sync(store, gmail, exclude=[ALL_MAIL])
    assert r.set_aside and folder_state(store, "INBOX", "gm")[0] == "held"
    assert len(stored(store, "INBOX", "gm")) == 10  # nothing deleted


def test_the_dry_run_plans_a_gmail_sync_as_the_sync_does_it(gmail, store):
    """The dry run asks rules N5 and N7 the same questions: a first sync's downloads (each
    X-GM-MSGID once) and placements, then a mass archive applied, not held."""
    from mailsync.sync.dry_run import dry_run

    mail = shared_corpus(gmail, 12)
    acc = account(gmail, name="gm")
    plan = dry_run(store, acc)
    r = sync(store, gmail)
    assert plan.ok and r.ok, (plan.error, r.error)
    assert plan.downloads == r.bodies_downloaded == len(mail)
    assert plan.new_messages == r.new_messages == sum(len(v) for v in server_view(gmail).values())
    inbox = [m for m, g in gmail.mail.items() if "\\Inbox" in g.labels]
    for m in inbox:
        gmail.set_labels(m, gmail.mail[m].labels - {"\\Inbox"})
    plan = dry_run(store, acc)
    r = sync(store, gmail)
    assert plan.ok and r.ok, (plan.error, r.error)
    assert not plan.set_aside and not r.set_aside
    assert plan.expunged == r.expunged == len(inbox) and plan.downloads == r.bodies_downloaded == 0


def test_export_mbox_writes_gmail_labels_as_takeout_does(gmail, store, tmp_path):
    import mailbox

    from helpers import run_cli

    shared_corpus(gmail, 5)
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path / 'store.db'}", [gmail_entry(gmail)])
    assert sync(store, gmail).ok
    run_cli("export", "mbox", str(tmp_path / "out"), config=cfg, check=True)
    box = mailbox.mbox(str(next((tmp_path / "out").rglob("All Mail.mbox"))))
    by_id = {g.body.split(b"\r\n")[0].split(b": ")[1].decode(): g for g in gmail.mail.values()}
    assert len(box) == len(gmail.mail)
    for msg in box:
        g = by_id[msg["Message-ID"]]
        want = ",".join(sorted(x.lstrip("\\") for x in g.labels)) if g.labels else None
        assert msg.get("X-Gmail-Labels") == want


def test_labels_are_whole_without_all_mail_though_gmail_leaves_the_folders_own_out(gmail, store):
    """Gmail's X-GM-LABELS leaves out the label of the folder selected: the sync adds it back
    (\\Inbox for INBOX, the folder's name for a label's folder), so that the labels are whole
    whichever folders are synced, All Mail or not, and in whatever order."""
    mail = shared_corpus(gmail, 12)
    assert sync(store, gmail, exclude=[ALL_MAIL]).ok
    assert labels_in_store(store) == {m: sorted(g.labels) for m, g in gmail.mail.items() if g.labels}
    m = next(iter(mail))
    gmail.set_labels(m, gmail.mail[m].labels | {"Family"})
    assert sync(store, gmail, exclude=[ALL_MAIL]).ok
    assert labels_in_store(store)[m] == sorted(gmail.mail[m].labels)


@pytest.mark.parametrize("label_modseq", [True, False])
def test_a_label_taken_away_reaches_the_store_whether_or_not_gmail_moves_modseq(store, label_modseq):
    """Rule N8: a message gone from a label's folder has lost that label, also when the label
    change leaves the message's MODSEQ alone in All Mail (archiving included, rule N7's mass)."""
    srv = GmailServer(labels=LABELS, label_modseq=label_modseq).start()
    try:
        ids = [srv.add_mail(body(i), labels=("\\Inbox", "Work")) for i in range(10)]
        assert sync(store, srv).ok
        srv.set_labels(ids[0], {"\\Inbox"})  # one label taken away
        for m in ids[2:]:  # most of INBOX archived at once
            srv.set_labels(m, {"Work"})
        r = sync(store, srv)
        assert r.ok and not r.set_aside, (r.error, r.set_aside)
        assert labels_in_store(store) == {m: sorted(g.labels) for m, g in srv.mail.items()}
        assert store_view(store, srv) == server_view(srv)
    finally:
        srv.stop()


def test_max_size_holds_a_large_gmail_message_by_its_headers_in_every_label_and_downloads_its_body_once_later(
        gmail, store):
    """max_size (issue 23) on Gmail: a large message shown in three folders gets its row in each by
    one header section (placed by X-GM-MSGID, rule N5), no body crosses the network; once max_size
    is raised, its body is downloaded once and every placement names it."""
    big = body(1, 3000)  # about 30 KB
    msgid = gmail.add_mail(big, labels=["\\Inbox", "Work", "Family"])
    gmail.add_mail(body(2), labels=["Work"])
    r = sync(store, gmail, max_size=10_000)
    assert r.ok, r.error
    assert gmail.downloads[msgid] == 0 and gmail.bodies_sent == 1
    held = {name: uids for name, uids in store_view(store, gmail).items() if uids}
    key = hashlib.sha256(big).hexdigest()
    places = [sha for uids in held.values() for sha in uids.values() if sha != hashlib.sha256(body(2)).hexdigest()]
    assert len(places) == 4 and len(set(places)) == 1 and places[0].startswith("h")  # INBOX, Work, Family, All Mail
    assert labels_in_store(store)[msgid] == ["Family", "Work", "\\Inbox"]
    r = sync(store, gmail, max_size=100_000)
    assert r.ok, r.error
    assert gmail.downloads[msgid] == 1  # once, for its four folders
    assert store_view(store, gmail) == server_view(gmail)
    assert key in {sha for uids in store_view(store, gmail).values() for sha in uids.values()}
