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
