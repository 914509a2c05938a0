"""Adopting a Maildir another program wrote: mbsync (Debian's isync) syncs the test Dovecot into a
Maildir, then mailsync is pointed at that Maildir. Nothing is downloaded twice (the bodies come
from the files, found again by Message-ID and size, then SHA-256), no file is written again, and
flag changes made in the Maildir since mbsync's last run (its .mbsyncstate is the base) reach the
server."""

from __future__ import annotations

import email
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from helpers import account_entry, client_for, password_var, run_cli, write_config
from mailsync.testing.corpus import load_into, read_corpus
from maildir_support import _maildir_dir, read_maildir, server_view

REPO = Path(__file__).resolve().parents[2]

needs_mbsync = pytest.mark.skipif(shutil.which("mbsync") is None,
                                  reason="mbsync is not installed (scripts/test installs Debian's isync)")


def run_mbsync(user, root: Path, where: Path) -> None:
    """mbsync, both ways, every folder, into the Maildir++ ``root`` (INBOX the root, folders .A.B)."""
    rc = where / "mbsyncrc"
    rc.write_text(f"IMAPAccount acc\nHost {user.host}\nPort {user.imap_port}\nUser {user.name}\n"
                  f"Pass {user.password}\nSSLType None\nAuthMechs LOGIN\n\n"
                  f"IMAPStore far\nAccount acc\n\n"
                  f"MaildirStore near\nInbox {root}\nSubFolders Maildir++\n\n"
                  f"Channel ch\nFar :far:\nNear :near:\nPatterns *\nCreate Both\nSyncState *\n")
    proc = subprocess.run(["mbsync", "-c", str(rc), "-a", "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def files_of(root: Path) -> dict[str, tuple[int, int]]:
    """unique part of each message file -> (inode, mtime_ns): a file written again has another inode."""
    out = {}
    for p in root.rglob("*"):
        if p.parent.name in ("cur", "new") and p.is_file():
            st = p.stat()
            out[p.name.split(":")[0]] = (st.st_ino, st.st_mtime_ns)
    return out


def mbsync_maildir(user, where: Path, messages) -> Path:
    """``messages`` on the server, and mbsync's Maildir of them at ``where``/Mail."""
    load_into(user.server, user.name, messages)
    user.server.force_resync(user.name)
    root = where / "Mail"
    root.mkdir()
    run_mbsync(user, root, where)
    return root


def flag_one(root: Path) -> str:
    """Flag a message of INBOX as a client does (its file renamed into cur/ with an F); its Message-ID."""
    f = next(p for p in sorted((root / "new").iterdir()) + sorted((root / "cur").iterdir())
             if "F" not in p.name.partition(":2,")[2])
    unique, _, info = f.name.partition(":2,")
    flagged = root / "cur" / f"{unique}:2,{''.join(sorted(info + 'F'))}"
    os.rename(f, flagged)
    return email.message_from_bytes(flagged.read_bytes())["Message-ID"]


@needs_mbsync
def test_a_maildir_written_by_mbsync_is_adopted_without_downloading_again(tmp_path, imap_user):
    corpus = read_corpus(REPO / "fixtures" / "corpus")
    messages = [m for m in corpus if m.folder == "INBOX"][:12] + [m for m in corpus if m.folder != "INBOX"][:12]
    root = mbsync_maildir(imap_user, tmp_path, messages)
    before = files_of(root)
    assert before and all(",U=" in u for u in before)
    # after mbsync's last run: a flag changed in the Maildir (by a client) and one on the server
    flagged_mid = flag_one(root)
    c = client_for(imap_user)
    try:
        c.select_folder("INBOX")
        answered = c.search("ALL")[0]
        answered_mid = c.fetch([answered], ["ENVELOPE"])[answered][b"ENVELOPE"].message_id.decode()
        c.add_flags([answered], [b"\\Answered"])
    finally:
        c.logout()
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db",
                       [account_entry(imap_user, "acc", maildir=str(root))])
    env = {password_var("acc"): imap_user.password, "MAILSYNC_LOG": "debug"}
    proc = run_cli("sync", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "adopting the Maildir" in proc.stderr and "0.0 MB" in proc.stderr.splitlines()[0], proc.stderr
    # no body downloaded: the store holds each message once, the one taken from its file (the bytes
    # the server has: mbsync's X-TUID header out, CRLF line ends)
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT count(*) FROM bodies").fetchone()[0] == len(messages)
    again = run_cli("sync", config=cfg, env=env)
    assert again.returncode == 0 and "renamed" not in again.stderr and "recorded" not in again.stderr, again.stderr
    after = files_of(root)
    assert set(after) == set(before)
    assert all(after[u][0] == before[u][0] for u in before), "a file was written again"
    server = server_view(imap_user)
    assert sum(sum(v.values()) for v in server.values()) == len(messages)
    # the files are mbsync's (LF lines, its X-TUID header, its mtimes): their flags are the server's
    flags = lambda c: sorted(sorted(f) for (_s, f, _t), n in c.items() for _ in range(n))  # noqa: E731
    for folder, held in server.items():
        assert flags(read_maildir(_maildir_dir(root, folder, "maildir++"))) == flags(held), folder
    # the flag set in the Maildir after mbsync's last run reached the server, the server's \\Answered
    # reached the file's name
    c = client_for(imap_user)
    try:
        c.select_folder("INBOX", readonly=True)
        got = {d[b"ENVELOPE"].message_id.decode(): set(f.decode() for f in d[b"FLAGS"])
               for d in c.fetch(c.search("ALL"), ["ENVELOPE", "FLAGS"]).values()}
    finally:
        c.logout()
    assert "\\Flagged" in got[flagged_mid] and "\\Answered" in got[answered_mid]
    (answered_file,) = [p for p in (root / "cur").iterdir()
                        if email.message_from_bytes(p.read_bytes())["Message-ID"] == answered_mid]
    assert "R" in answered_file.name.split(":2,")[1]


@needs_mbsync
def test_kill_9_at_every_point_of_an_adoption_converges(tmp_path, dovecot):
    """MAILSYNC_CRASH_AFTER=N kills the adopting sync at its Nth crash point; the rerun must leave
    every file of mbsync's Maildir in place and none beside it, nothing appended to the server, and
    the flag changed in the Maildir on the server, for every N until a run gets through."""
    corpus = read_corpus(REPO / "fixtures" / "corpus")
    messages = [m for m in corpus if m.folder == "INBOX"][:4] + [m for m in corpus if m.folder != "INBOX"][:4]
    points = set()
    for n in range(1, 60):
        where = tmp_path / str(n)
        where.mkdir()
        user = dovecot.new_user(f"adopt{n}-{os.getpid()}-{tmp_path.name[-8:]}".replace("_", "")[:40], f"pw-{n}")
        root = mbsync_maildir(user, where, messages)
        mid = flag_one(root)
        before = files_of(root)
        cfg = write_config(where / "c.toml", f"sqlite:///{where}/s.db", [account_entry(user, "acc", maildir=str(root))])
        env = {password_var("acc"): user.password}
        crashed = run_cli("sync", "--quiet", config=cfg, env=dict(env, MAILSYNC_CRASH_AFTER=str(n)))
        if crashed.returncode == 0:
            break
        assert crashed.returncode == 99, crashed.stderr
        points.add(re.search(r"crash point \d+ \((.*)\) reached", crashed.stderr).group(1))
        proc = run_cli("sync", config=cfg, env=env)
        assert proc.returncode == 0, proc.stderr
        assert files_of(root).keys() == before.keys(), n
        server = server_view(user)
        assert sum(sum(v.values()) for v in server.values()) == len(messages), n
        c = client_for(user)
        try:
            c.select_folder("INBOX", readonly=True)
            (uid,) = c.search(["HEADER", "Message-ID", mid])
            assert b"\\Flagged" in c.fetch([uid], ["FLAGS"])[uid][b"FLAGS"], n
        finally:
            c.logout()
    else:
        pytest.fail("the sync never got through")
    assert "mirror adopted" in points, points


needs_offlineimap = pytest.mark.skipif(shutil.which("offlineimap") is None,
                                       reason="offlineimap is not installed (scripts/test installs offlineimap3)")


@needs_offlineimap
def test_a_maildir_written_by_offlineimap_is_adopted_without_downloading_again(tmp_path, imap_user):
    """OfflineIMAP (Debian's offlineimap3) with sep = / writes the fs layout (INBOX, Archive/2024),
    folder names in modified UTF-7. It keeps no flags mailsync reads: the server's flags win."""
    corpus = read_corpus(REPO / "fixtures" / "corpus")
    messages = [m for m in corpus if m.folder == "INBOX"][:8] + [m for m in corpus if m.folder != "INBOX"][:12]
    load_into(imap_user.server, imap_user.name, messages)
    imap_user.server.force_resync(imap_user.name)
    root = tmp_path / "Mail"
    root.mkdir()
    rc = tmp_path / "offlineimaprc"
    rc.write_text(f"[general]\naccounts = acc\nmetadata = {tmp_path}/meta\n\n[Account acc]\nlocalrepository = near\n"
                  f"remoterepository = far\n\n[Repository near]\ntype = Maildir\nlocalfolders = {root}\nsep = /\n\n"
                  f"[Repository far]\ntype = IMAP\nremotehost = {imap_user.host}\nremoteport = {imap_user.imap_port}\n"
                  f"remoteuser = {imap_user.name}\nremotepass = {imap_user.password}\nssl = no\nstarttls = no\n")
    proc = subprocess.run(["offlineimap", "-c", str(rc), "-u", "quiet", "-o"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    before = files_of(root)
    assert len(before) == len(messages) and all(",U=" in u for u in before), sorted(before)
    c = client_for(imap_user)
    try:
        c.select_folder("INBOX")
        answered = c.search("ALL")[0]
        answered_mid = c.fetch([answered], ["ENVELOPE"])[answered][b"ENVELOPE"].message_id.decode()
        c.add_flags([answered], [b"\\Answered"])  # after OfflineIMAP's run
    finally:
        c.logout()
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db",
                       [account_entry(imap_user, "acc", maildir=str(root), maildir_layout="fs")])
    env = {password_var("acc"): imap_user.password}
    proc = run_cli("sync", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "adopting the Maildir" in proc.stderr and "0.0 MB" in proc.stderr.splitlines()[0], proc.stderr
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT count(*) FROM bodies").fetchone()[0] == len(messages)
    # a file OfflineIMAP changed (it re-serialises MIME parts: a blank line after a closing
    # boundary) is not the server's message by content: it is replaced by the server's copy, once
    after = files_of(root)
    replaced = set(before) - set(after)
    assert len(replaced) <= 2 and all(after[u][0] == before[u][0] for u in set(before) & set(after))
    if replaced:
        assert f"{len(replaced)} file(s) of the adopted Maildir held their message as the other program changed" \
            in proc.stderr, proc.stderr
    assert len(after) == len(messages)
    flags = lambda c: sorted(sorted(f) for (_s, f, _t), n in c.items() for _ in range(n))  # noqa: E731
    for folder, held in server_view(imap_user).items():
        assert flags(read_maildir(_maildir_dir(root, folder, "fs"))) == flags(held), folder
    (answered_file,) = [p for p in (root / "INBOX" / "cur").iterdir()
                        if email.message_from_bytes(p.read_bytes())["Message-ID"] == answered_mid]
    assert "R" in answered_file.name.split(":2,")[1]
    again = run_cli("sync", config=cfg, env=env)
    assert again.returncode == 0 and "renamed" not in again.stderr and "recorded" not in again.stderr, again.stderr
