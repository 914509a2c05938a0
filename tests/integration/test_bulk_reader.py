"""The first-sync bulk reader (ImapConnection.fetch_all_messages with ``into``) against a scripted
fake server, for what Dovecot does not send: responses of unusual shapes mixed with the usual one,
unsolicited responses in the middle, and a connection that drops inside a literal or says BYE.
The usual shape itself is covered against the real Dovecot by every first sync (test_sync_pull)."""

from __future__ import annotations

import socket
import threading

import pytest

from mailsync.config.model import AccountConfig, SecretRef
from mailsync.errors import ConnectError, ProtocolError
from mailsync.imap.connection import connect


class ScriptedServer:
    """Answers LOGIN, CAPABILITY, LIST and STATUS (one folder, INBOX), SELECT/EXAMINE, NOOP and LOGOUT;
    a UID FETCH gets ``fetch_reply``, then (unless ``cut`` is set, which closes the connection
    instead) ``<tag> OK``."""

    def __init__(self, fetch_reply: bytes, *, cut: bool = False, status: bytes = b"OK", exists: int = 4) -> None:
        self.fetch_reply, self.cut, self.status, self.exists = fetch_reply, cut, status, exists
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            f = conn.makefile("rb")
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1] fake ready\r\n")
            for line in f:
                tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                cmd = rest.split(b" ")[0].upper()
                if cmd == b"LOGIN":
                    conn.sendall(tag + b" OK [CAPABILITY IMAP4rev1] logged in\r\n")
                elif cmd == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
                elif cmd in (b"SELECT", b"EXAMINE"):
                    conn.sendall(b"* %d EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 99] n\r\n" % self.exists
                                 + tag + b" OK [READ-ONLY] done\r\n")
                elif rest.upper().startswith(b"UID FETCH"):
                    conn.sendall(self.fetch_reply)
                    if self.cut:
                        return
                    conn.sendall(tag + b" " + self.status + b" done\r\n")
                elif cmd == b"LIST":
                    conn.sendall(b'* LIST (\\HasNoChildren) "/" INBOX\r\n' + tag + b" OK done\r\n")
                elif cmd == b"STATUS":
                    conn.sendall(b"* STATUS INBOX (MESSAGES %d UIDNEXT 99 UIDVALIDITY 7)\r\n" % self.exists
                                 + tag + b" OK done\r\n")
                elif cmd == b"NOOP":
                    conn.sendall(tag + b" OK done\r\n")
                elif cmd == b"LOGOUT":
                    conn.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                    return
                else:
                    conn.sendall(tag + b" BAD unknown\r\n")

    def close(self) -> None:
        self.sock.close()


def _account(port: int) -> AccountConfig:
    return AccountConfig(name="fake", host="127.0.0.1", port=port, tls="none", username="u",
                         password=SecretRef("literal", "p"), timeout=5)


def _msg(n: int) -> bytes:
    return (b"Message-ID: <%d@x>\r\n\r\n" % n) + b"body %d " % n * (n + 3)


DATE = b'"17-Jul-1996 02:44:25 -0700"'


def _usual(seq: int, uid: int, body: bytes) -> bytes:
    return (b"* %d FETCH (UID %d FLAGS (\\Seen) INTERNALDATE %s RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\n"
            % (seq, uid, DATE, len(body), len(body), body))


class Arena:
    """A stand-in for the engine's pack batch: one buffer, each literal read at the next slot."""

    def __init__(self) -> None:
        self.buf = bytearray(1 << 16)
        self.pos = 0
        self.asked: list[int] = []

    def into(self, n: int) -> memoryview:
        self.asked.append(n)
        view = memoryview(self.buf)[self.pos:self.pos + n]
        self.pos += n
        return view


def test_every_shape_is_read_and_usual_bodies_land_in_place():
    m1, m2, m3, m4 = _msg(1), _msg(2), _msg(3), _msg(4)
    reply = b"".join([
        _usual(1, 10, m1),
        b"* 3 EXISTS\r\n",  # unsolicited, between messages
        b"* 9 FETCH (FLAGS (\\Deleted))\r\n",  # an unsolicited flag change
        # the items in another order (the general item reader of the bulk path)
        b"* 2 FETCH (RFC822.SIZE %d FLAGS () UID 11 INTERNALDATE %s BODY[] {%d}\r\n%s)\r\n"
        % (len(m2), DATE, len(m2), m2),
        # an item after the literal: ResponseParser decides, the body still read in place
        b"* 3 FETCH (UID 12 FLAGS () INTERNALDATE %s RFC822.SIZE %d BODY[] {%d}\r\n%s MODSEQ (9))\r\n"
        % (DATE, len(m3), len(m3), m3),
        # the body first: not the usual first line, so a bytes object of its own
        b"* 4 FETCH (BODY[] {%d}\r\n%s UID 13 FLAGS (\\Flagged) INTERNALDATE %s RFC822.SIZE %d)\r\n"
        % (len(m4), m4, DATE, len(m4)),
    ])
    server = ScriptedServer(reply)
    conn = connect(_account(server.port), "p")
    try:
        conn.select("INBOX", readonly=True)
        arena = Arena()
        items = list(conn.fetch_all_messages(into=arena.into))
        assert [(i.seq, i.uid, i.flags, i.modseq) for i in items] == [
            (1, 10, ("\\Seen",), None), (9, None, ("\\Deleted",), None), (2, 11, (), None), (3, 12, (), 9),
            (4, 13, ("\\Flagged",), None)]
        assert [bytes(i.body) if i.body is not None else None for i in items] == [m1, None, m2, m3, m4]
        assert [type(i.body) for i in items if i.body is not None] == [memoryview, memoryview, memoryview, bytes]
        assert arena.asked == [len(m1), len(m2), len(m3)]
        assert bytes(arena.buf[:len(m1)]) == m1
        assert conn.bodies_fetched == 4 and not conn.broken
        conn.noop()  # the stream is still in step
    finally:
        conn.logout()
        server.close()


def test_a_drop_inside_a_literal_is_a_connect_error():
    body = _msg(5)
    reply = _usual(1, 1, body) + (b"* 2 FETCH (UID 2 FLAGS () INTERNALDATE %s RFC822.SIZE 500 BODY[] {500}\r\n"
                                  % DATE) + b"only part of it"
    server = ScriptedServer(reply, cut=True)
    conn = connect(_account(server.port), "p")
    try:
        conn.select("INBOX", readonly=True)
        got = []
        with pytest.raises(ConnectError, match=r"dropped inside a 500-byte literal while fetching messages"):
            for item in conn.fetch_all_messages(into=Arena().into):
                got.append(bytes(item.body))
        assert got == [body]  # what came whole was handed out
        with pytest.raises(ConnectError):  # the server is gone: so is the connection
            conn.noop()
    finally:
        server.close()


@pytest.mark.parametrize("tail,error,match", [
    (b"* BYE server shutting down\r\n", ConnectError, "said BYE while fetching messages: server shutting down"),
    (b"* 1 FETCH (UID x)\r\n", ProtocolError, "UID"),
])
def test_bye_and_malformed_responses_mid_fetch(tail, error, match):
    server = ScriptedServer(_usual(1, 1, _msg(1)) + tail, cut=True)
    conn = connect(_account(server.port), "p")
    try:
        conn.select("INBOX", readonly=True)
        with pytest.raises(error, match=match):
            list(conn.fetch_all_messages(into=Arena().into))
    finally:
        server.close()


def test_a_refused_fetch_is_a_protocol_error():
    server = ScriptedServer(b"", status=b"NO [SERVERBUG] cannot")
    conn = connect(_account(server.port), "p")
    try:
        conn.select("INBOX", readonly=True)
        with pytest.raises(ProtocolError, match="fetching messages failed: NO"):
            list(conn.fetch_all_messages(into=Arena().into))
    finally:
        conn.logout()
        server.close()


def test_a_first_sync_stores_bodies_of_every_shape_in_the_pack(tmp_path):
    """The engine's side of the same mix (rule D4 into a SQLite store with packs): bodies read in
    place and bodies that came as bytes objects (copied into the batch) all land in the pack with
    rows that point at them, and read back intact."""
    import hashlib

    from mailsync.store import repositories as repo
    from mailsync.store.db import open_store
    from mailsync.store.uow import UnitOfWork
    from mailsync.sync.engine import sync_account

    m = [_msg(i) for i in range(1, 6)]
    reply = b"".join([
        _usual(1, 10, m[0]),
        b"* 2 FETCH (BODY[] {%d}\r\n%s UID 11 FLAGS (\\Flagged) INTERNALDATE %s RFC822.SIZE %d)\r\n"
        % (len(m[1]), m[1], DATE, len(m[1])),
        b"* 9 FETCH (FLAGS (\\Deleted))\r\n",
        b"* 3 FETCH (UID 12 FLAGS () INTERNALDATE %s RFC822.SIZE %d BODY[] {%d}\r\n%s MODSEQ (9))\r\n"
        % (DATE, len(m[2]), len(m[2]), m[2]),
        _usual(4, 13, m[3]),
        b"* 5 FETCH (RFC822 {%d}\r\n%s UID 14 FLAGS () INTERNALDATE %s)\r\n" % (len(m[4]), m[4], DATE),
    ])
    server = ScriptedServer(reply, exists=5)
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        result = sync_account(store, _account(server.port))
        assert result.ok, result.error
        assert result.new_messages == 5
        with UnitOfWork(store) as uow:
            rows = sorted((r.uid, r.flags, r.sha256, r.size) for r in repo.export_rows(uow.session))
            assert rows == [(10 + i, ["\\Flagged"] if i == 1 else (["\\Seen"] if i in (0, 3) else []),
                             hashlib.sha256(raw).hexdigest(), len(raw)) for i, raw in enumerate(m)]
            for raw in m:
                assert repo.read_body(uow.session, hashlib.sha256(raw).hexdigest()) == raw
        assert store.packs is not None and sum(1 for _ in store.packs.records(1)) == 5
    finally:
        store.dispose()
        server.close()


def test_a_first_sync_cut_short_keeps_what_it_wrote(tmp_path, monkeypatch):
    """Rule C3 on the way out: pack batches written and not yet committed when the connection
    drops (here: one batch per message, no commit due) are committed before the sync reports the
    error, so the next sync does not download them again."""
    import hashlib

    from mailsync.store import repositories as repo
    from mailsync.store.db import open_store
    from mailsync.store.uow import UnitOfWork
    from mailsync.sync import download
    from mailsync.sync.engine import sync_account

    monkeypatch.setattr(download, "BATCH_BYTES", 1)  # every message fills a pack batch of its own
    m = [_msg(i) for i in range(1, 4)]
    reply = b"".join(_usual(i + 1, 20 + i, raw) for i, raw in enumerate(m)) + (
        b"* 4 FETCH (UID 23 FLAGS () INTERNALDATE %s RFC822.SIZE 900 BODY[] {900}\r\n" % DATE) + b"cut"
    server = ScriptedServer(reply, cut=True)
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        result = sync_account(store, _account(server.port))
        assert not result.ok and "dropped inside a 900-byte literal" in result.error
        with UnitOfWork(store) as uow:
            rows = sorted((r.uid, r.sha256) for r in repo.export_rows(uow.session))
            assert rows == [(20 + i, hashlib.sha256(raw).hexdigest()) for i, raw in enumerate(m)]
            for raw in m:
                assert repo.read_body(uow.session, hashlib.sha256(raw).hexdigest()) == raw
            assert repo.get_folder(uow.session, 1).fetched_uid == 22  # the download mark moved with them
        assert sum(1 for _ in store.packs.records(1)) == 3
    finally:
        store.dispose()
        server.close()


def test_a_first_sync_asked_to_stop_commits_what_it_handed_over(tmp_path, monkeypatch):
    """The watch daemon shutting down mid first sync (should_stop): the batch handed over when the
    stop is seen is committed with everything written before it, although no commit was due
    (rule C3), and the run ends with the stop, not an error of its own."""
    import hashlib

    from mailsync.store import repositories as repo
    from mailsync.store.db import open_store
    from mailsync.store.uow import UnitOfWork
    from mailsync.sync import download
    from mailsync.sync.engine import AccountSync

    monkeypatch.setattr(download, "BATCH_BYTES", 1)  # a pack batch per message
    m = [_msg(i) for i in range(1, 6)]
    server = ScriptedServer(b"".join(_usual(i + 1, 30 + i, raw) for i, raw in enumerate(m)), exists=5)
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    asked = []

    def should_stop() -> bool:  # asked before each folder, then at each hand-over
        asked.append(1)
        return len(asked) > 3

    try:
        result = AccountSync(store, _account(server.port), should_stop=should_stop).run()
        assert not result.ok and "sync stopped" in result.error
        with UnitOfWork(store) as uow:
            rows = sorted((r.uid, r.sha256) for r in repo.export_rows(uow.session))
        assert 0 < len(rows) < 5
        assert rows == [(30 + i, hashlib.sha256(raw).hexdigest()) for i, raw in enumerate(m[:len(rows)])]
        assert sum(1 for _ in store.packs.records(1)) == len(rows)  # nothing written and left uncommitted
    finally:
        store.dispose()
        server.close()
