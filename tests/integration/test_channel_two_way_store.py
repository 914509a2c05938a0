"""A two-way channel's store side against Dovecot, through the Python API: a change a sync made to a
message between the channel's plan and its action (here: LocalChanges refusing the first flag
change, as it does for a message expunged meanwhile) is left for the next run, whose plan makes
it; the pair's agreed state is not written before its change is."""

from __future__ import annotations

from mailsync.changes import ChangeError, LocalChanges
from mailsync.channel.run import run_channel
from mailsync.config.model import ChannelConfig
from mailsync.store.db import open_store
from twoway_support import account_for, sync
from helpers import client_for, server_snapshot


def _msg(tag: str) -> bytes:
    return f"Message-ID: <{tag}@store.example>\r\nSubject: {tag}\r\n\r\n{tag}\r\n".encode()


def test_a_change_refused_meanwhile_is_left_for_the_next_run(tmp_path, dovecot, monkeypatch):
    a = dovecot.new_user("tsa" + tmp_path.name[-8:], "pa")
    b = dovecot.new_user("tsb" + tmp_path.name[-8:], "pb")
    dovecot.load(a.name, [("INBOX", _msg(f"s{i}"), "") for i in range(3)])
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    channel = ChannelConfig(name="tw", source="a", dest="b", mode="two-way", delete="propagate")
    acc_a, acc_b = account_for(a, "a"), account_for(b, "b")
    try:
        sync(store, acc_a)
        sync(store, acc_b)
        assert run_channel(store, channel).copies == 3
        sync(store, acc_b)
        c = client_for(a)
        c.select_folder("INBOX")
        c.add_flags(c.search("ALL"), [b"\\Flagged"])
        c.logout()
        sync(store, acc_a)

        real, refused = LocalChanges.flag, []

        def once(self, *args, **kw):
            if not refused:
                refused.append(args)
                raise ChangeError("account 'b' folder 'INBOX' has no message with UID 1")
            return real(self, *args, **kw)

        monkeypatch.setattr(LocalChanges, "flag", once)
        ran = run_channel(store, channel)
        assert len(ran.skipped) == 1 and ran.mirrored == {"flags": 3}
        sync(store, acc_b)
        flagged = [fl for fl, _s, _h in server_snapshot(b)["INBOX"]["messages"].values()]
        assert sorted(flagged) == [[], ["\\Flagged"], ["\\Flagged"]]
        again = run_channel(store, channel)  # the skipped one is planned again, and made
        assert (again.mirrored, again.skipped) == ({"flags": 1}, [])
        sync(store, acc_b)
        assert [fl for fl, _s, _h in server_snapshot(b)["INBOX"]["messages"].values()] == [["\\Flagged"]] * 3
        assert run_channel(store, channel).summary() == "nothing to do"
    finally:
        store.dispose()
