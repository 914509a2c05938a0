"""mailsync.mirror.watch: the kernel's inotify (through asyncinotify) tells of a mail client's
rename, new file, deletion and new folder in a real Maildir on disk."""

from __future__ import annotations

import asyncio
import mailbox
import os
import shutil

import pytest

from mailsync.mirror.watch import inotify_available, watch_maildir

pytestmark = pytest.mark.skipif(not inotify_available(), reason="inotify is Linux only")


async def _changes(root, layout, steps):
    """Run watch_maildir while ``steps`` (each a function changing the Maildir) are made one by one;
    after each, wait for ``changed`` (5 s at most). Returns how many steps were seen."""
    seen = asyncio.Event()
    stop = False
    task = asyncio.ensure_future(watch_maildir(root, layout, seen.set, lambda: stop))
    await asyncio.sleep(0.2)  # the watches are in place
    got = 0
    for step in steps:
        seen.clear()
        step()
        try:
            await asyncio.wait_for(seen.wait(), 5)
            got += 1
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(0.1)  # the burst is over
    stop = True
    assert await asyncio.wait_for(task, 3) is True
    return got


@pytest.mark.parametrize("layout", ["maildir++", "fs"])
def test_renames_new_files_deletions_and_new_folders_are_seen(tmp_path, layout):
    root = tmp_path / "Mail"
    if layout == "fs":
        root.mkdir()
    inbox = mailbox.Maildir(root / ("" if layout == "maildir++" else "INBOX"), factory=None, create=True)
    inbox.add(b"From: a@example.org\r\n\r\nhi\r\n")
    (path,) = (root / ("" if layout == "maildir++" else "INBOX") / "new").iterdir()
    sub = root / (".Projects" if layout == "maildir++" else "Projects")

    def flag():
        os.rename(path, path.parent.parent / "cur" / (path.name.split(":")[0] + ":2,FS"))

    def new_folder():
        mailbox.Maildir(sub, factory=None, create=True)

    def file_in_new_folder():  # seen only if the new folder was watched when it appeared
        mailbox.Maildir(sub, factory=None, create=False).add(b"From: b@example.org\r\n\r\nnew\r\n")

    def remove_folder():
        shutil.rmtree(sub)

    steps = [flag, new_folder, file_in_new_folder, remove_folder]
    assert asyncio.run(_changes(root, layout, steps)) == len(steps)


def test_without_a_maildir_it_waits_and_a_missing_inotify_is_false(tmp_path, monkeypatch):
    import mailsync.mirror.watch as W

    monkeypatch.setattr(W, "Inotify", None)
    assert asyncio.run(W.watch_maildir(tmp_path, "maildir++", lambda: None, lambda: False)) is False
