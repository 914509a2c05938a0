"""The Maildir fingerprint the no-change sync trusts (mailsync.mirror.snapshot): any change a mail
client can make -- a rename in cur/ (a flag), a file moved from new/ to cur/, a new file, a deleted
one, a folder made or removed, dovecot-keywords rewritten, even a directory's mtime set back --
made right after the fingerprint was taken, shows; and no fingerprint is taken when a directory
changed in the file system's current tick (its timestamps could not tell a later change)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailsync.mirror import snapshot


def _maildir(root: Path, layout: str = "maildir++") -> list[str]:
    folders = ["", ".Archive", ".Work"] if layout == "maildir++" else ["INBOX", "Archive", "Work/Sub"]
    for f in folders:
        for sub in ("cur", "new", "tmp"):
            (root / f / sub).mkdir(parents=True, exist_ok=True)
        (root / f / "cur" / "1.a.host:2,S").write_bytes(b"m1")
        (root / f / "new" / "2.b.host").write_bytes(b"m2")
    (root / folders[0] / "dovecot-keywords").write_text("0 $Work\n")
    return folders


def _old(root: Path) -> None:
    """Every directory's times a second back, as if written before this sync (a utime changes ctime
    to now, so the probe's tick must come after: wait for the clock to move past them)."""
    for p in [root, *root.rglob("*")]:
        os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns - 1_000_000_000))
    now = max(p.stat().st_ctime_ns for p in [root, *root.rglob("*")])  # the last utime's tick
    probe = next(root.rglob("tmp")) / "tick"  # in a tmp/, which the fingerprint does not cover
    while True:  # the file system's clock past every ctime just set (a new file each time: an
        probe.write_bytes(b"")  # empty file truncated again keeps its times)
        ticked = probe.stat().st_ctime_ns > now
        probe.unlink()
        if ticked:
            break


@pytest.mark.parametrize("layout", ["maildir++", "fs"])
def test_a_maildir_nobody_touched_is_unchanged(tmp_path, layout):
    folders = _maildir(tmp_path, layout)
    _old(tmp_path)
    fp = snapshot.take(tmp_path, layout, folders)
    assert fp is not None
    assert snapshot.unchanged(tmp_path, layout, fp)
    assert snapshot.unchanged(tmp_path, layout, fp)  # reading changes nothing
    assert not snapshot.unchanged(tmp_path, "fs" if layout == "maildir++" else "maildir++", fp)


def _rename_flag(root):
    os.rename(root / ".Work" / "cur" / "1.a.host:2,S", root / ".Work" / "cur" / "1.a.host:2,FS")


def _new_to_cur(root):
    os.rename(root / ".Archive" / "new" / "2.b.host", root / ".Archive" / "cur" / "2.b.host:2,S")


def _new_file(root):
    (root / ".Archive" / "new" / "3.c.host").write_bytes(b"m3")


def _deleted(root):
    (root / "cur" / "1.a.host:2,S").unlink()


def _mkdir(root):
    (root / ".Fresh").mkdir()


def _cur_in_a_plain_dir(root):  # a directory that was not a folder becomes one
    (root / ".Plain" / "cur").mkdir()


def _rmdir(root):
    for sub in ("cur", "new", "tmp"):
        for p in (root / ".Work" / sub).iterdir():
            p.unlink()
        (root / ".Work" / sub).rmdir()
    (root / ".Work").rmdir()


def _keywords_in_place(root):
    with open(root / "dovecot-keywords", "a") as f:
        f.write("1 $Other\n")


def _mtime_set_back(root):
    cur = root / ".Work" / "cur"
    before = cur.stat()
    os.rename(cur / "1.a.host:2,S", cur / "1.a.host:2,RS")
    os.utime(cur, ns=(before.st_atime_ns, before.st_mtime_ns))  # as rsync -t or touch -d would
    assert cur.stat().st_mtime_ns == before.st_mtime_ns


@pytest.mark.parametrize("change", [_rename_flag, _new_to_cur, _new_file, _deleted, _mkdir, _cur_in_a_plain_dir,
                                    _rmdir, _keywords_in_place, _mtime_set_back])
def test_a_client_change_right_after_the_fingerprint_shows(tmp_path, change):
    folders = _maildir(tmp_path)
    (tmp_path / ".Plain").mkdir()
    _old(tmp_path)
    fp = snapshot.take(tmp_path, "maildir++", folders)
    assert fp is not None and snapshot.unchanged(tmp_path, "maildir++", fp)
    change(tmp_path)  # at once: in the same tick of a coarse clock, if the file system has one
    assert not snapshot.unchanged(tmp_path, "maildir++", fp)


def test_a_folder_made_deep_in_an_fs_layout_shows(tmp_path):
    folders = _maildir(tmp_path, "fs")
    (tmp_path / "Lists").mkdir()  # not a folder: a directory holding folders
    _old(tmp_path)
    fp = snapshot.take(tmp_path, "fs", folders)
    assert fp is not None
    (tmp_path / "Lists" / "Python" / "cur").mkdir(parents=True)
    assert not snapshot.unchanged(tmp_path, "fs", fp)


def test_no_fingerprint_when_a_directory_changed_in_the_current_tick(tmp_path, monkeypatch):
    """The rule that makes coarse timestamps safe: every ctime recorded is older than the probe's."""
    folders = _maildir(tmp_path)
    _old(tmp_path)
    newest = max(os.stat(tmp_path / p).st_ctime_ns for p in snapshot._paths(tmp_path, "maildir++", folders)
                 if (tmp_path / p).exists())  # the newest ctime the fingerprint records
    dev = os.stat(tmp_path).st_dev
    monkeypatch.setattr(snapshot, "_probe", lambda root, folders: (dev, newest))  # "now" is that ctime's tick
    assert snapshot.take(tmp_path, "maildir++", folders) is None
    monkeypatch.setattr(snapshot, "_probe", lambda root, folders: (dev, newest + 1))
    assert snapshot.take(tmp_path, "maildir++", folders) is not None
    monkeypatch.setattr(snapshot, "_probe", lambda root, folders: (dev + 1, newest + 1))  # another file system
    assert snapshot.take(tmp_path, "maildir++", folders) is None


def test_a_maildir_just_written_has_no_fingerprint(tmp_path):
    """Written this very moment (the mirror's own write, a client's change): on a file system with
    coarse timestamps the probe shares their tick, on a fine one it does not; either way a change
    made after the fingerprint shows."""
    folders = _maildir(tmp_path)
    fp = snapshot.take(tmp_path, "maildir++", folders)
    if fp is not None:
        _rename_flag(tmp_path)
        assert not snapshot.unchanged(tmp_path, "maildir++", fp)


def test_without_a_tmp_directory_there_is_no_fingerprint(tmp_path):
    (tmp_path / "cur").mkdir()
    (tmp_path / "new").mkdir()
    assert snapshot.take(tmp_path, "maildir++", [""]) is None
    assert snapshot.take(tmp_path / "missing", "maildir++", [""]) is None
    assert not snapshot.unchanged(tmp_path, "maildir++", "not json")


def test_the_probe_leaves_nothing_behind(tmp_path):
    folders = _maildir(tmp_path)
    _old(tmp_path)
    snapshot.take(tmp_path, "maildir++", folders)
    assert list((tmp_path / "tmp").iterdir()) == []
