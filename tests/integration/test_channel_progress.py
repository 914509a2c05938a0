"""A long copy shows its progress: the destination's sync reports the channel's APPENDs as they are
answered (SyncObserver.messages_sent, framed by folder_started/folder_done), against Dovecot."""

from __future__ import annotations

from mailsync.channel.run import run_channel
from mailsync.config.model import ChannelConfig
from mailsync.store.db import open_store
from mailsync.sync.engine import sync_account
from mailsync.sync.result import SyncObserver
from twoway_support import account_for, sync


class Recorder(SyncObserver):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def folder_started(self, account, folder, new):
        self.events.append(("started", account, folder, new))

    def messages_stored(self, account, folder, count, nbytes):
        self.events.append(("stored", account, folder, count))

    def messages_sent(self, account, label, count, nbytes):
        self.events.append(("sent", account, label, count, nbytes))

    def folder_done(self, account, folder):
        self.events.append(("done", account, folder))


def test_the_copies_appends_are_shown_as_they_are_answered(tmp_path, dovecot):
    a = dovecot.new_user("cpa" + tmp_path.name[-8:], "pa")
    b = dovecot.new_user("cpb" + tmp_path.name[-8:], "pb")
    raws = [f"Message-ID: <p{i}@x>\r\nSubject: {i}\r\n\r\n{'x' * (100 + i)}\r\n".encode() for i in range(450)]
    dovecot.load(a.name, [("INBOX", r, "") for r in raws])
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        acc_a, acc_b = account_for(a, "a"), account_for(b, "b")
        sync(store, acc_a)
        sync(store, acc_b)
        ran = run_channel(store, ChannelConfig(name="c", source="a", dest="b"))
        assert ran.copies == 450
        seen = Recorder()
        result = sync_account(store, acc_b, observer=seen)
        assert result.ok, result.error
    finally:
        store.dispose()
    sending = [e for e in seen.events if e[2] == "INBOX (sending)"]
    assert sending[0] == ("started", "b", "INBOX (sending)", 450) and sending[-1] == ("done", "b", "INBOX (sending)")
    sent = [e for e in sending if e[0] == "sent"]
    assert len(sent) >= 3  # batches of 200: shown as each is answered, not once at the end
    assert sum(e[3] for e in sent) == 450 and sum(e[4] for e in sent) == sum(len(r) for r in raws)
    assert not [e for e in seen.events if e[0] == "stored" and "sending" in e[2]]  # not new mail (hooks)
