"""ImapConnection.bulk_ahead against the real Dovecot: a first sync sends the next folder's SELECT
and UID FETCH 1:* while it still reads the current folder's messages. The pipelined answers are
read by the select() and fetch_all_messages() that follow, or, when the sync goes another way,
read and dropped before the next command, so the connection stays in step."""

from __future__ import annotations

import hashlib

import pytest

from mailsync.errors import ProtocolError
from mailsync.imap.connection import connect
from twoway_support import account_for


def _msg(folder: str, i: int) -> bytes:
    return (f"Message-ID: <{folder}.{i}@example.org>\r\nSubject: {folder} {i}\r\n\r\n".encode()
            + f"body of {folder} {i}\r\n".encode() * (50 + 40 * i))


@pytest.fixture
def three_folders(imap_user):
    imap_user.server.load(imap_user.name, [(f, _msg(f, i)) for f in ("A", "B", "C") for i in range(30)])
    return imap_user


def _read_all(conn) -> list[str]:
    return [hashlib.sha256(bytes(item.body)).hexdigest() for item in conn.fetch_all_messages()]


def _expected(folder: str) -> list[str]:
    return [hashlib.sha256(_msg(folder, i)).hexdigest() for i in range(30)]


def test_the_next_folder_is_read_from_what_was_sent_ahead(three_folders):
    conn = connect(account_for(three_folders), three_folders.password)
    try:
        conn.select("A")
        got_a = []
        for item in conn.fetch_all_messages():
            if not got_a:  # the FETCH of A is out: B's commands follow it
                conn.bulk_ahead("B")
            got_a.append(hashlib.sha256(bytes(item.body)).hexdigest())
        sent = conn.commands
        info = conn.select("B")  # read, not sent
        assert info.exists == 30
        assert _read_all(conn) == _expected("B")
        assert conn.commands == sent  # nothing more went out for B
        assert got_a == _expected("A")
        conn.noop()
        assert not conn.broken
    finally:
        conn.logout()


def test_a_fetch_sends_the_next_folder_behind_it(three_folders):
    """fetch_all_messages(ahead=...): the next folder's SELECT and FETCH go out right behind this
    FETCH, chained from folder to folder as a first sync does."""
    conn = connect(account_for(three_folders), three_folders.password)
    try:
        conn.select("A")
        assert [hashlib.sha256(bytes(i.body)).hexdigest() for i in conn.fetch_all_messages(ahead="B")] == _expected("A")
        sent = conn.commands
        assert conn.select("B").exists == 30
        assert [hashlib.sha256(bytes(i.body)).hexdigest() for i in conn.fetch_all_messages(ahead="C")] == _expected("B")
        assert conn.commands == sent + 2  # only C's SELECT and FETCH went out, behind B's FETCH
        assert conn.select("C").exists == 30 and _read_all(conn) == _expected("C")
        assert conn.commands == sent + 2
    finally:
        conn.logout()


@pytest.mark.parametrize("other", ["select another folder", "noop"])
def test_what_was_sent_ahead_and_not_taken_is_dropped(three_folders, other):
    conn = connect(account_for(three_folders), three_folders.password)
    try:
        conn.select("A")
        for _ in conn.fetch_all_messages():
            conn.bulk_ahead("B")
        if other == "noop":
            conn.noop()
            assert conn.selected == "B"  # the server did select it
        conn.select("C")
        assert _read_all(conn) == _expected("C")
    finally:
        conn.logout()


def test_a_folder_sent_ahead_that_cannot_be_selected(three_folders):
    """Its SELECT fails (NO) and its FETCH with it (no folder selected): the select() that reads
    them says so, as a select without pipelining would, and the connection goes on."""
    conn = connect(account_for(three_folders), three_folders.password)
    try:
        conn.select("A")
        for _ in conn.fetch_all_messages():
            conn.bulk_ahead("Gone")
        with pytest.raises(ProtocolError, match="Gone"):
            conn.select("Gone")
        conn.select("B")
        assert _read_all(conn) == _expected("B")
        assert not conn.broken
    finally:
        conn.logout()


@pytest.mark.parametrize("multiappend", [True, False])
def test_appends_go_without_a_round_trip_each_and_answer_in_order(three_folders, multiappend):
    """send_appends/read_appends against Dovecot: with MULTIAPPEND one command, else one APPEND each,
    all literals non-synchronizing (LITERAL+); two tickets in flight are read in order; the UIDs the
    APPENDUIDs give hold the messages sent, in order; a folder that is not there refuses every one."""
    conn = connect(account_for(three_folders), three_folders.password)
    try:
        assert conn.has("LITERAL+") and conn.has("MULTIAPPEND")
        if not multiappend:
            conn.capabilities = conn.capabilities - {"MULTIAPPEND"}
        msgs = [(_msg("new", i), ["\\Seen"] if i % 2 else [], "07-Dec-2026 10:00:0%d +0000" % i) for i in range(5)]
        sent = conn.commands
        first = conn.send_appends("A", msgs[:3])
        second = conn.send_appends("A", msgs[3:])
        assert conn.commands - sent == (2 if multiappend else 5)
        answers = conn.read_appends(first) + conn.read_appends(second)
        validity = conn.select("A", readonly=True).uidvalidity
        assert [a[0] for a in answers] == [validity] * 5
        uids = [a[1] for a in answers]
        assert uids == sorted(uids) and len(set(uids)) == 5
        got = {uid: (hashlib.sha256(bytes(it.body)).hexdigest(), it.flags) for uid, it in
               ((it.uid, it) for it in conn.fetch_messages(uids))}
        assert [got[u][0] for u in uids] == [hashlib.sha256(m[0]).hexdigest() for m in msgs]
        assert ["\\Seen" in got[u][1] for u in uids] == [bool(i % 2) for i in range(5)]
        refused = conn.read_appends(conn.send_appends("No such folder", msgs[:2]))
        assert all(getattr(r, "status", None) == "NO" for r in refused) and len(refused) == 2
        assert not conn.broken and conn.select("B").exists == 30  # and the connection goes on
    finally:
        conn.logout()


# --- rule D6: a delta sync's SELECT with the headers of the UIDs it will find new ---------------

def _sends(conn) -> list[bytes]:
    """Record every write on the connection's wire from now on."""
    sent: list[bytes] = []
    original = conn.wire.send

    def send(data: bytes) -> None:
        sent.append(bytes(data))
        original(data)

    conn.wire.send = send
    return sent


def test_select_with_headers_sends_both_in_one_write(three_folders):
    conn = connect(account_for(three_folders), three_folders.password)
    try:
        sent = _sends(conn)
        info, headers = conn.select_with_headers("B", qresync=None, uid_from=26)
        assert info.exists == 30 and conn.selected == "B"
        assert sorted(headers) == [26, 27, 28, 29, 30]
        assert all(h.header_fields.startswith(b"Message-ID: <B.") and h.size and h.flags is not None
                   for h in headers.values())
        assert len(sent) == 1 and b" SELECT " in sent[0] and b" UID FETCH 26:* " in sent[0]
        # past the last UID, n:* answers the last message (RFC 3501 6.4.8): that is not a new one
        info, headers = conn.select_with_headers("C", qresync=None, uid_from=31)
        assert info.exists == 30 and headers == {}
        conn.noop()
        assert not conn.broken
    finally:
        conn.logout()


def test_a_refused_select_with_headers_leaves_the_connection_in_step(three_folders):
    conn = connect(account_for(three_folders), three_folders.password)
    try:
        conn.select("A")
        with pytest.raises(ProtocolError) as caught:
            conn.select_with_headers("Nowhere", qresync=None, uid_from=1)
        assert "Nowhere" in str(caught.value)
        assert not conn.broken and conn.selected is None
        info, headers = conn.select_with_headers("A", qresync=None, uid_from=30)
        assert info.exists == 30 and sorted(headers) == [30]
    finally:
        conn.logout()


def test_a_delta_sync_reads_new_mail_with_one_write_per_folder_and_links_a_moved_message(three_folders, store):
    """New mail in two folders and a message moved from A into C, then a delta sync: each changed
    folder's SELECT went out with its header FETCH in one write, the moved message was recognised
    by its headers (linked, not downloaded again), and the store holds what a second client sees."""
    from helpers import client_for, nonempty, server_snapshot
    from mailsync.sync.engine import sync_account
    from twoway_support import store_snapshot

    account = account_for(three_folders)
    assert sync_account(store, account).ok
    with client_for(three_folders) as c:
        c.select_folder("A")
        c.move(c.search(["HEADER", "Message-ID", "<A.3@example.org>"]), "C")
        for f in ("A", "B"):
            c.append(f, _msg(f, 100))
    conn = connect(account, three_folders.password)
    sent = _sends(conn)
    result = sync_account(store, account, connect=lambda acc: conn)
    assert result.ok, result.error
    assert result.new_messages == 3 and result.bodies_downloaded == 2 and result.moves == 1
    for f in ("A", "B", "C"):
        selects = [w for w in sent if b" SELECT " + f.encode() in w or b' SELECT "' + f.encode() + b'"' in w]
        assert len(selects) == 1 and b" UID FETCH 31:* " in selects[0], sent
    assert store_snapshot(store) == nonempty(server_snapshot(three_folders))
