"""mailsync.mirror.writer on a real file system: what a rerun finds, what a crash leaves behind."""

from __future__ import annotations

import hashlib
import mailbox
import os
from datetime import datetime, timezone

import pytest

from mailsync.errors import MailsyncError
from mailsync.mirror import maildir
from mailsync.mirror.writer import MaildirFolder, MboxFile, index_path

RAW = b"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n"
SHA = hashlib.sha256(RAW).hexdigest()


def test_maildir_delivery_and_what_a_rerun_sees(tmp_path):
    box = MaildirFolder(tmp_path / ".Work", maildirplusplus_child=True)
    p1 = box.deliver(RAW, SHA, 0, ["\\Seen", "$Label1"], 1_600_000_000)
    p2 = box.deliver(RAW, SHA, 1, [], 1_600_000_001)
    box.close()
    assert p1.parent.name == "cur" and p1.name.endswith(":2,Sa") and p2.parent.name == "new" and ":" not in p2.name
    assert p1.read_bytes() == RAW and int(p1.stat().st_mtime) == 1_600_000_000
    assert (tmp_path / ".Work" / "dovecot-keywords").read_text() == "0 $Label1\n"
    assert (tmp_path / ".Work" / "maildirfolder").exists() and not list((tmp_path / ".Work" / "tmp").iterdir())
    os.rename(p1, p1.with_name(p1.name.replace(":2,Sa", ":2,FSa")))  # a client flags it
    os.rename(p2, p2.parent.parent / "cur" / (p2.name + ":2,S"))  # and reads the other
    (tmp_path / ".Work" / "tmp" / "leftover").write_bytes(b"half")  # a crash mid-write
    again = MaildirFolder(tmp_path / ".Work", maildirplusplus_child=True)
    assert again.present == {maildir.FileKey(SHA, 0), maildir.FileKey(SHA, 1)}
    assert again.keywords.letters() == {"$Label1": "a"}
    assert sorted(m.get_flags() for m in mailbox.Maildir(tmp_path / ".Work", create=False)) == ["FSa", "S"]


def test_more_than_26_keywords_are_left_out_and_named(tmp_path):
    box = MaildirFolder(tmp_path / "m")
    path = box.deliver(RAW, SHA, 0, [f"k{i}" for i in range(28)], 1)
    box.close()
    assert len(box.dropped_keywords) == 2 and len(maildir.split_name(path.name)[1]) == 2 + 26


def test_mbox_rerun_cuts_an_unrecorded_tail_and_refuses_a_changed_file(tmp_path):
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    path = tmp_path / "INBOX.mbox"
    box = MboxFile(path)
    box.append(RAW, SHA, 0, ["\\Seen"], when)
    box.close()
    good = path.read_bytes()
    assert index_path(path).read_text() == f"{SHA} 0 {len(good)}\n"
    with open(path, "ab") as f:  # an export killed after writing, before its index caught up
        f.write(b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: half")
    box = MboxFile(path)
    assert box.truncated > 0 and box.present == {maildir.FileKey(SHA, 0)}
    box.close()
    assert path.read_bytes() == good
    path.write_bytes(good[:-5])  # another program shortened it
    with pytest.raises(MailsyncError, match="another program changed it"):
        MboxFile(path)
    other = tmp_path / "other.mbox"
    other.write_bytes(good)
    with pytest.raises(MailsyncError, match="did not write"):
        MboxFile(other)


def test_an_unwritable_place_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(MailsyncError, match="cannot prepare the Maildir folder .*file/sub"):
        MaildirFolder(tmp_path / "file" / "sub")
