"""The full comparison of a server without CONDSTORE (Microsoft 365 is one) lists every UID's flags
in FETCHes of FLAG_CHUNK UIDs once a folder is larger, against Dovecot with CONDSTORE and QRESYNC
taken away: the store ends equal to the server, and the chunks cover the folder with the last one
ending at "*"."""

from __future__ import annotations

import secrets

from helpers import client_for
from mailsync.imap.connection import ImapConnection
from mailsync.store.db import open_store
from mailsync.sync import guards
from twoway_support import account_for, assert_agree, sync


def test_a_large_folder_is_listed_in_chunks_and_ends_equal_to_the_server(tmp_path, dovecot_factory, monkeypatch):
    server = dovecot_factory(remove_capabilities=("CONDSTORE", "QRESYNC"))
    user = server.new_user("chunk" + secrets.token_hex(3), "pw")
    server.load(user.name, [("INBOX", f"Message-ID: <c{i}@x>\r\nSubject: {i}\r\n\r\n{i}\r\n".encode(), "")
                            for i in range(30)])
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        acc = account_for(user)
        sync(store, acc)
        c = client_for(user)
        c.select_folder("INBOX")
        uids = sorted(c.search("ALL"))
        c.add_flags([uids[0], uids[12], uids[29]], [b"\\Flagged"])  # in the first, second and last chunk
        c.delete_messages([uids[20]])
        c.expunge()
        c.append("INBOX", b"Message-ID: <late@x>\r\nSubject: late\r\n\r\nlate\r\n", flags=[b"\\Seen"])
        c.logout()

        monkeypatch.setattr(guards, "FLAG_CHUNK", 7)
        asked: list[str] = []
        real = ImapConnection.uid_flags

        def recorded(self, uid_set="1:*", **kw):
            asked.append(uid_set)
            return real(self, uid_set, **kw)

        monkeypatch.setattr(ImapConnection, "uid_flags", recorded)
        result = sync(store, acc)
        assert (result.flag_changes, result.expunged, result.new_messages) == (3, 1, 1)
        assert asked == ["1:7", "8:14", "15:21", "22:28", "29:*"], asked  # UIDNEXT 31: UIDs 1-30, then *
        assert_agree(store, user)
    finally:
        store.dispose()
