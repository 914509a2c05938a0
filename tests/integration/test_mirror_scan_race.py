"""A mail client's rename while the Maildir mirror's scan lists a folder, against Dovecot.

readdir is not atomic with another process's rename: POSIX leaves unspecified whether an entry
added or removed during the listing is returned, and on ext4 a renamed file can be missing under
both its names. Seen under `watch` (a flag change read as a deletion, the message deleted on the
server). Here the first listing of the folder's cur/ is made to miss the renamed file, as a real
race can: the scan must look again, and the server must get the flag change, not a deletion."""

from __future__ import annotations

import dataclasses
import os
import secrets

from helpers import client_for
from mailsync.config.model import MirrorSettings
from mailsync.mirror import live_state
from mailsync.mirror.live import sync_with_mirror
from mailsync.store.db import open_store
from mailsync.sync.engine import sync_account
from twoway_support import account_for


def test_a_rename_the_first_listing_missed_is_a_flag_change_not_a_deletion(tmp_path, dovecot, monkeypatch):
    user = dovecot.new_user("race" + secrets.token_hex(3), "pw")
    dovecot.load(user.name, [("INBOX", f"Message-ID: <r{i}@x>\r\nSubject: {i}\r\n\r\n{i}\r\n".encode(), "\\Seen")
                             for i in range(5)])
    root = tmp_path / "Mail"
    acc = dataclasses.replace(account_for(user), mirror=MirrorSettings(maildir=root, maildir_layout="maildir++"))
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        def sync():
            result, _mirror = sync_with_mirror(store, acc, lambda stage=None: sync_account(store, acc, mirror_stage=stage))
            assert result.ok, result.error
            return result

        sync()
        sync()  # the first writes the mirror; the second finds it in step
        victim = sorted((root / "cur").iterdir())[2]
        unique, _, info = victim.name.partition(":2,")
        renamed = root / "cur" / f"{unique}:2,F{info}"
        os.rename(victim, renamed)  # the client flags it

        real, listings = os.scandir, []

        class Missing:
            """The first listing of cur/ without the renamed file (caught between its two names)."""

            def __init__(self, path):
                self.it = real(path)

            def __enter__(self):
                return (e for e in self.it.__enter__() if e.name != renamed.name)

            def __exit__(self, *exc):
                return self.it.__exit__(*exc)

        def scandir(path):
            if str(path) == str(root / "cur") and not listings:
                listings.append(path)
                return Missing(path)
            return real(path)

        monkeypatch.setattr(live_state.os, "scandir", scandir)
        result = sync()
        assert listings, "the race was not staged"
        assert result.pushed == 1
        c = client_for(user)
        c.select_folder("INBOX", readonly=True)
        flags = {bytes(f) for d in c.fetch(c.search("ALL"), ["FLAGS"]).values() for f in d[b"FLAGS"]}
        count = len(c.search("ALL"))
        flagged = c.search(["FLAGGED"])
        c.logout()
        assert count == 5 and len(flagged) == 1, (count, flagged)  # nothing deleted; the flag arrived
        assert b"\\Flagged" in flags
    finally:
        store.dispose()
