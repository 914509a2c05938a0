"""The live two-way Maildir mirror (an account's `maildir` key) against the test Dovecot, through the
CLI: `mailsync sync` writes the store into the Maildir and sends what a mail client changed there
to the server. Clients: Python's mailbox.Maildir and notmuch (Debian's package, renaming files for
its tags with maildir.synchronize_flags). The yardstick is a second IMAP client's view of the
server, per folder: each message's SHA-256, flags (keywords too) and INTERNALDATE."""

from __future__ import annotations

import hashlib
import json
import mailbox
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from helpers import account_entry, client_for, password_var, run_cli, write_config
from mailsync.testing.corpus import load_into, read_corpus
from maildir_support import _maildir_dir, _notmuch, needs_notmuch, read_maildir, server_view

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus():
    return read_corpus(REPO / "fixtures" / "corpus")


def some(corpus, inbox: int, others: int):
    return [m for m in corpus if m.folder == "INBOX"][:inbox] + [m for m in corpus if m.folder != "INBOX"][:others]


def _setup(tmp_path, user, store_url, messages, layout="maildir++"):
    load_into(user.server, user.name, messages)
    user.server.force_resync(user.name)
    root = tmp_path / "Mail"
    cfg = write_config(tmp_path / "c.toml", store_url,
                       [account_entry(user, "acc", maildir=str(root), maildir_layout=layout)])
    return cfg, {password_var("acc"): user.password}, root


def _sync(cfg, env, *extra, ok=True):
    proc = run_cli("sync", *extra, config=cfg, env=env)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def mirror_view(root: Path, layout: str, folders) -> dict[str, Counter]:
    out = {}
    for folder in folders:
        path = _maildir_dir(root, folder, layout)
        got = read_maildir(path) if (path / "cur").is_dir() else Counter()
        if got:
            out[folder] = got
    return out


def assert_mirrored(user, root, layout="maildir++"):
    """The Maildir holds exactly what the server holds, folder by folder; no file twice."""
    server = server_view(user)
    mirror = mirror_view(root, layout, set(server) | _maildir_folders(root, layout))
    for folder in set(server) | set(mirror):
        got, want = mirror.get(folder, Counter()), server.get(folder, Counter())
        assert got == want, (folder, sorted(got - want), sorted(want - got))
    uniques = [p.name.split(":")[0] for p in root.rglob("*") if p.parent.name in ("cur", "new")]
    assert len(uniques) == len(set(uniques))
    return server


def _on_server(user, folder: str, message_id: str) -> list[frozenset]:
    """The flags of each copy of the message with ``message_id`` in the server's ``folder``."""
    c = client_for(user)
    try:
        c.select_folder(folder, readonly=True)
        uids = c.search(["HEADER", "Message-ID", message_id])
        return [frozenset(f.decode() for f in d[b"FLAGS"] if f != b"\\Recent")
                for d in c.fetch(uids, ["FLAGS"]).values()]
    finally:
        c.logout()


def _maildir_folders(root: Path, layout: str) -> set[str]:
    out = set()
    for cur in root.rglob("cur"):
        rel = cur.parent.relative_to(root)
        if layout == "fs":
            out.add(str(rel))
        else:
            out.add("INBOX" if str(rel) == "." else str(rel)[1:].replace(".", "/"))
    return out


@pytest.mark.parametrize("layout", ["maildir++", "fs"])
def test_first_sync_writes_the_mirror_and_server_changes_follow(tmp_path, imap_user, store_url, corpus, layout):
    cfg, env, root = _setup(tmp_path, imap_user, store_url, some(corpus, 30, 30), layout)
    _sync(cfg, env)
    before = assert_mirrored(imap_user, root, layout)
    assert sum(sum(c.values()) for c in before.values()) == 60
    # unseen messages are in new/, the rest in cur/
    for p in root.rglob("*"):
        if p.parent.name == "new":
            assert ":2," not in p.name
    assert _sync(cfg, env).returncode == 0  # nothing changed: nothing to do
    c = client_for(imap_user)
    try:
        c.select_folder("INBOX")
        uids = sorted(c.search("ALL"))
        assert len(uids) >= 4
        c.add_flags(uids[0], [b"\\Flagged", b"$Work"])
        c.remove_flags(uids[1], [b"\\Seen"])
        c.add_flags(uids[1], [b"\\Answered"])
        moved_sha = hashlib.sha256(c.fetch([uids[2]], ["BODY.PEEK[]"])[uids[2]][b"BODY[]"]).hexdigest()
        c.move([uids[2]], "Archive")
        c.add_flags(uids[3], [b"\\Deleted"])
        c.expunge()
        c.append("Archive", b"From: a@example.org\r\nMessage-ID: <new-on-server@example.org>\r\n\r\nnew\r\n",
                 flags=[b"\\Seen"])
        c.create_folder("Projects")
        c.append("Projects", b"From: a@example.org\r\nMessage-ID: <in-projects@example.org>\r\n\r\np\r\n")
    finally:
        c.logout()
    moved = [p for p in root.rglob("*") if moved_sha in p.name]
    assert len(moved) == 1
    inode = moved[0].stat().st_ino
    _sync(cfg, env)
    assert_mirrored(imap_user, root, layout)
    moved_now = [p for p in root.rglob("*") if p.parent.name in ("cur", "new")
                 and hashlib.sha256(p.read_bytes()).hexdigest() == moved_sha]
    assert len(moved_now) == 1 and moved_now[0].stat().st_ino == inode  # renamed, not written again
    assert moved_now[0].parent.parent == _maildir_dir(root, "Archive", layout)
    # a folder renamed and one deleted on the server
    c = client_for(imap_user)
    try:
        c.rename_folder("Projects", "Done")
    finally:
        c.logout()
    _sync(cfg, env)
    assert_mirrored(imap_user, root, layout)
    assert not _maildir_dir(root, "Projects", layout).exists()
    c = client_for(imap_user)
    try:
        c.delete_folder("Done")
    finally:
        c.logout()
    _sync(cfg, env)
    assert_mirrored(imap_user, root, layout)
    assert not _maildir_dir(root, "Done", layout).exists()


def test_client_changes_reach_the_server(tmp_path, imap_user, corpus):
    cfg, env, root = _setup(tmp_path, imap_user, f"sqlite:///{tmp_path}/s.db", some(corpus, 10, 10))
    _sync(cfg, env)
    assert_mirrored(imap_user, root)
    inbox = mailbox.Maildir(root, factory=None, create=False)
    keys = sorted(inbox.keys())
    assert len(keys) >= 4
    # a flag change (the file renamed), a deleted file, a file moved to another folder, a new file
    old = Path(root) / inbox._toc[keys[0]]  # as a client does: the file renamed, its info changed
    os.rename(old, root / "cur" / (old.name.split(":")[0] + ":2,FS"))
    inbox._refresh()
    deleted = hashlib.sha256(inbox.get_bytes(keys[1])).hexdigest()
    inbox.remove(keys[1])
    src = Path(root) / inbox._toc[keys[2]]
    moved = hashlib.sha256(src.read_bytes()).hexdigest()
    archive = _maildir_dir(root, "Archive", "maildir++")
    os.rename(src, archive / "cur" / src.name)
    new = mailbox.MaildirMessage(b"From: c@example.org\r\nMessage-ID: <from-the-client@example.org>\r\n"
                                 b"Subject: dropped in\r\n\r\nhello\r\n")
    new.set_subdir("cur")
    new.set_flags("S")
    mailbox.Maildir(archive, factory=None, create=False).add(new)
    proc = _sync(cfg, env)
    assert "4 client change(s) recorded" in proc.stderr
    server = assert_mirrored(imap_user, root)
    everything = Counter()
    for c in server.values():
        everything.update(sha for sha, _f, _t in c)
    assert deleted not in everything
    assert moved in {sha for sha, _f, _t in server["Archive"]} and moved not in {sha for sha, _f, _t in server["INBOX"]}
    assert _on_server(imap_user, "Archive", "from-the-client@example.org") == [frozenset({"\\Seen"})]
    assert _on_server(imap_user, "INBOX", "from-the-client@example.org") == []
    flagged_sha = hashlib.sha256(inbox.get_bytes(keys[0])).hexdigest()
    assert [f for sha, f, _t in server["INBOX"] if sha == flagged_sha] == [frozenset({"\\Seen", "\\Flagged"})]
    # nothing twice: a second sync changes nothing on either side
    files = sorted(str(p) for p in root.rglob("*") if p.parent.name in ("cur", "new"))
    _sync(cfg, env)
    assert server_view(imap_user) == server
    assert sorted(str(p) for p in root.rglob("*") if p.parent.name in ("cur", "new")) == files


def test_mass_delete_from_the_maildir_is_held_until_allowed(tmp_path, imap_user):
    """60 messages in Archive, 55 files deleted at once (an unmounted disk looks the same): nothing
    is deleted on the server, status says why, --allow-deletions lets them through."""
    for i in range(60):
        imap_user.server.write_message(imap_user.name, "Archive", b"From: b@example.org\r\nMessage-ID: <bulk-%d@example.org>"
                                       b"\r\n\r\nbody %d\r\n" % (i, i), "\\Seen", 1600000000 + i)
    cfg, env, root = _setup(tmp_path, imap_user, f"sqlite:///{tmp_path}/s.db", [])
    _sync(cfg, env)
    archive = mailbox.Maildir(root / ".Archive", factory=None, create=False)
    keys = sorted(archive.keys())
    assert len(keys) == 60
    for key in keys[:55]:
        archive.remove(key)
    proc = _sync(cfg, env, ok=False)
    assert proc.returncode == 1
    assert "55 of the 60 messages of Maildir folder '.Archive' vanished" in proc.stderr
    assert "--allow-deletions" in proc.stderr
    assert len(_all_on_server(imap_user, "Archive")) == 60
    status = run_cli("status", config=cfg, env=env)
    assert "Maildir deletions HELD: 55 of the 60" in status.stdout, status.stdout
    js = json.loads(run_cli("status", "--json", config=cfg, env=env).stdout)
    (acc,) = js["accounts"]
    assert acc["maildir"]["held"] == [{"folder": ".Archive", "deletions": 55, "reason": acc["maildir"]["held"][0]["reason"]}]
    # held, not forgotten: still held on the next sync, and the files are not written back
    assert _sync(cfg, env, ok=False).returncode == 1
    assert len(archive.keys()) == 5 and len(_all_on_server(imap_user, "Archive")) == 60
    _sync(cfg, env, "--allow-deletions")
    assert len(_all_on_server(imap_user, "Archive")) == 5
    assert_mirrored(imap_user, root)
    assert "HELD" not in run_cli("status", config=cfg, env=env).stdout
    # 50 or fewer at once are ordinary deletions
    for key in sorted(archive.keys())[:3]:
        archive.remove(key)
    _sync(cfg, env)
    assert len(_all_on_server(imap_user, "Archive")) == 2


def _all_on_server(user, folder: str) -> list[int]:
    c = client_for(user)
    try:
        c.select_folder(folder, readonly=True)
        return c.search("ALL")
    finally:
        c.logout()


def test_a_missing_maildir_or_folder_deletes_nothing(tmp_path, imap_user, corpus):
    cfg, env, root = _setup(tmp_path, imap_user, f"sqlite:///{tmp_path}/s.db", some(corpus, 5, 10))
    _sync(cfg, env)
    before = server_view(imap_user)
    away = tmp_path / "elsewhere"
    os.rename(root, away)  # an unmounted disk
    proc = _sync(cfg, env, ok=False)
    assert proc.returncode == 1 and "is missing" in proc.stderr and "nothing was sent" in proc.stderr
    assert server_view(imap_user) == before
    root.mkdir()  # an empty mount point
    proc = _sync(cfg, env, ok=False)
    assert proc.returncode == 1 and "none of the Maildir folders" in proc.stderr
    assert server_view(imap_user) == before
    root.rmdir()
    os.rename(away, root)  # back: nothing was lost meanwhile
    _sync(cfg, env)
    assert server_view(imap_user) == before
    # one folder's directory gone while others are there reads as a client's rmdir: see
    # test_a_folder_removed_in_the_maildir_is_removed_on_the_server (held when it took many messages)


@needs_notmuch
def test_notmuch_reads_the_mirror_and_its_tags_reach_the_server(tmp_path, imap_user, corpus):
    cfg, env, root = _setup(tmp_path, imap_user, f"sqlite:///{tmp_path}/s.db", some(corpus, 15, 15))
    _sync(cfg, env)
    server = assert_mirrored(imap_user, root)
    _notmuch(root, tmp_path, "new")
    files = [f for f in _notmuch(root, tmp_path, "search", "--output=files", "*").split("\n") if f]
    assert len(files) == sum(sum(c.values()) for c in server.values())
    unread = _notmuch(root, tmp_path, "search", "--output=messages", "tag:unread").split()
    assert unread, "the corpus has unseen messages"
    target = unread[0]  # "id:<message-id>"
    _notmuch(root, tmp_path, "tag", "+flagged", "-unread", "--", target)
    proc = _sync(cfg, env)
    assert "1 client change(s) recorded" in proc.stderr
    folder = next(f for f in server if _on_server(imap_user, f, target[3:]))
    assert _on_server(imap_user, folder, target[3:]) == [frozenset({"\\Flagged", "\\Seen"})]
    assert_mirrored(imap_user, root)
    # and back: a flag removed on the server reaches notmuch through the file's new name
    c = client_for(imap_user)
    try:
        c.select_folder(folder)
        c.remove_flags(c.search(["HEADER", "Message-ID", target[3:]]), [b"\\Flagged"])
    finally:
        c.logout()
    _sync(cfg, env)
    _notmuch(root, tmp_path, "new")
    tags = _notmuch(root, tmp_path, "search", "--output=tags", "--", target).split()
    assert "flagged" not in tags and "unread" not in tags


def _fresh(dovecot, tmp_path, n, messages):
    user = dovecot.new_user(f"crash{n}-{os.getpid()}-{len(messages)}-{tmp_path.name[-8:]}".replace("_", "")[:40],
                            "pw-" + str(n))
    where = tmp_path / str(n)
    where.mkdir()
    return (user, *_setup(where, user, f"sqlite:///{where}/s.db", messages))


def test_kill_9_at_every_point_of_a_first_mirror_write_converges(tmp_path, dovecot, corpus):
    """MAILSYNC_CRASH_AFTER=N kills the sync at its Nth crash point (os._exit, as kill -9 would);
    a rerun must give the server's state with no file twice, for every N until a run gets through."""
    messages = some(corpus, 4, 6)
    points = set()
    for n in range(1, 60):
        user, cfg, env, root = _fresh(dovecot, tmp_path, n, messages)
        crashed = run_cli("sync", "--quiet", config=cfg, env=dict(env, MAILSYNC_CRASH_AFTER=str(n)))
        if crashed.returncode == 0:
            break
        assert crashed.returncode == 99, crashed.stderr
        points.add(re.search(r"crash point \d+ \((.*)\) reached", crashed.stderr).group(1))
        _sync(cfg, env)
        assert_mirrored(user, root)
    else:
        pytest.fail("the sync never got through")
    assert {"mirror files written"} <= points


def test_kill_9_at_every_point_of_a_client_change_push_converges(tmp_path, dovecot, corpus):
    """A flag change, a delete, a move and a new file in the Maildir, then a sync killed at its Nth
    crash point and a rerun: every change reaches the server once (the new file exactly once), and
    the Maildir equals the server, for every N until a run gets through."""
    messages = some(corpus, 6, 4)
    points = set()
    for n in range(1, 80):
        user, cfg, env, root = _fresh(dovecot, tmp_path, n, messages)
        _sync(cfg, env)
        inbox = mailbox.Maildir(root, factory=None, create=False)
        keys = sorted(inbox.keys())
        first = Path(root) / inbox._toc[keys[0]]
        os.rename(first, root / "cur" / (first.name.split(":")[0] + ":2,FS"))
        inbox._refresh()
        inbox.remove(keys[1])
        src = Path(root) / inbox._toc[keys[2]]
        os.rename(src, root / ".Archive" / "cur" / src.name)
        (root / "new" / "1700000000.M1P1.client").write_bytes(
            b"From: c@example.org\r\nMessage-ID: <once@example.org>\r\n\r\nonce\r\n")
        crashed = run_cli("sync", "--quiet", config=cfg, env=dict(env, MAILSYNC_CRASH_AFTER=str(n)))
        if crashed.returncode == 0:
            break
        assert crashed.returncode == 99, crashed.stderr
        points.add(re.search(r"crash point \d+ \((.*)\) reached", crashed.stderr).group(1))
        _sync(cfg, env)
        server = assert_mirrored(user, root)
        assert _on_server(user, "INBOX", "once@example.org") == [frozenset()], n
        assert sum(sum(c.values()) for c in server.values()) == len(messages) - 1 + 1, n
    else:
        pytest.fail("the sync never got through")
    assert {"mirror flags recorded", "mirror delete recorded", "mirror move recorded", "mirror append claimed",
            "mirror append recorded", "append sent", "append answered", "move sent", "delete sent"} <= points, points


def test_kill_9_while_server_changes_are_renamed_into_the_maildir_converges(tmp_path, dovecot, corpus):
    """A flag change and a move made on the server, then a sync killed at each crash point up to
    and after the mirror's renames: the rerun neither sends the half-renamed file back as a client
    change nor leaves a file twice."""
    messages = some(corpus, 3, 0)
    points = set()
    for n in range(1, 60):
        user, cfg, env, root = _fresh(dovecot, tmp_path, n, messages)
        _sync(cfg, env)
        c = client_for(user)
        try:
            c.select_folder("INBOX")
            uids = sorted(c.search("ALL"))
            c.add_flags(uids[0], [b"\\Flagged"])
            c.remove_flags(uids[0], [b"\\Seen"])
            c.move(uids[1], "Archive")
        finally:
            c.logout()
        want = server_view(user)
        crashed = run_cli("sync", "--quiet", config=cfg, env=dict(env, MAILSYNC_CRASH_AFTER=str(n)))
        if crashed.returncode == 0:
            break
        assert crashed.returncode == 99, crashed.stderr
        points.add(re.search(r"crash point \d+ \((.*)\) reached", crashed.stderr).group(1))
        _sync(cfg, env)
        assert assert_mirrored(user, root) == want, n
    else:
        pytest.fail("the sync never got through")
    assert "mirror file renamed" in points, points


def test_watch_sends_a_client_flag_change_within_seconds(tmp_path, imap_user, corpus):
    """Under `mailsync watch`, a flag change made by renaming a file in the Maildir reaches the
    server without a manual sync (the daemon notices the Maildir changed), and a server change
    reaches the Maildir."""
    from watch_support import Daemon
    from watch_support import wait_until

    cfg, env, root = _setup(tmp_path, imap_user, f"sqlite:///{tmp_path}/s.db", some(corpus, 5, 0))
    _sync(cfg, env)
    daemon = Daemon(cfg, env, tmp_path)
    try:
        daemon.wait_for("synced", account="acc", timeout=30)
        lags = []
        for letters in ("FS", "S", "FS"):
            cur = sorted((root / "cur").iterdir()) + sorted((root / "new").iterdir())
            src = cur[0]
            mid = mailbox.MaildirMessage(src.read_bytes())["Message-ID"].strip("<>")
            t0 = time.monotonic()
            os.rename(src, root / "cur" / (src.name.split(":")[0] + ":2," + letters))
            want = frozenset({"\\Seen", "\\Flagged"} if "F" in letters else {"\\Seen"})
            wait_until(lambda: _on_server(imap_user, "INBOX", mid) == [want], 15, f"{mid} {letters} on the server",
                       interval=0.05)
            lags.append(time.monotonic() - t0)
        c = client_for(imap_user)
        try:
            c.select_folder("INBOX")
            c.add_flags(c.search("ALL"), [b"\\Answered"])
        finally:
            c.logout()
        wait_until(lambda: all(":2," in p.name and "R" in p.name.split(":2,")[1]
                               for p in (root / "cur").iterdir()) and not any((root / "new").iterdir()),
                   15, "the server's flags in the Maildir", interval=0.05)
        print(f"client flag change -> server, seconds: {[round(x, 3) for x in lags]}")
        assert sorted(lags)[1] < 3.0
    finally:
        daemon.stop()
    assert_mirrored(imap_user, root)


needs_neomutt = pytest.mark.skipif(shutil.which("neomutt") is None or shutil.which("tmux") is None,
                                   reason="neomutt and tmux are not installed (scripts/test installs them)")


class Tmux:
    """A program in a detached tmux session, driven by send-keys and read by capture-pane."""

    def __init__(self, tmp_path: Path, command: list[str], env: dict) -> None:
        self.name = f"ms{os.getpid()}{tmp_path.name[-6:]}".replace(".", "")
        self.socket = str(tmp_path / "tmux.sock")
        self.env = env
        subprocess.run(["tmux", "-S", self.socket, "new-session", "-d", "-s", self.name, "-x", "160", "-y", "40",
                        *command], check=True, env=env)

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "-S", self.socket, "send-keys", "-t", self.name, *keys], check=True, env=self.env)

    def screen(self) -> str:
        return subprocess.run(["tmux", "-S", self.socket, "capture-pane", "-p", "-t", self.name],
                              capture_output=True, text=True, env=self.env).stdout

    def wait(self, text: str, timeout: float = 15) -> str:
        from watch_support import wait_until

        wait_until(lambda: text in self.screen(), timeout, f"{text!r} on the screen:\n{self.screen()}", interval=0.1)
        return self.screen()

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-S", self.socket, "has-session", "-t", self.name], capture_output=True,
                              env=self.env).returncode == 0

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, env=self.env)


@needs_neomutt
def test_neomutt_flags_deletes_and_moves_and_the_server_follows(tmp_path, imap_user):
    subjects = ["alpha", "bravo", "charlie", "delta"]
    for i, subject in enumerate(subjects):
        imap_user.server.write_message(
            imap_user.name, "INBOX", b"From: n@example.org\r\nTo: me@example.org\r\nSubject: %s\r\n"
            b"Message-ID: <%s@example.org>\r\nDate: Mon, 1 Jan 2024 10:0%d:00 +0000\r\n\r\n%s\r\n"
            % (subject.encode(), subject.encode(), i, subject.encode()), "\\Seen", 1704103200 + 60 * i)
    cfg, env, root = _setup(tmp_path, imap_user, f"sqlite:///{tmp_path}/s.db", [])
    _sync(cfg, env)
    rc = tmp_path / "neomuttrc"
    rc.write_text(f'set mbox_type=Maildir\nset folder="{root}"\nset spoolfile="{root}"\nset sort=date-sent\n'
                  "set delete=yes\nset confirmappend=no\nset move=no\nset mark_old=no\nset wait_key=no\n"
                  "set index_format=\"%4C %Z %s\"\nset help=no\n")
    home = tmp_path / "home"
    home.mkdir()
    term = Tmux(tmp_path, ["neomutt", "-n", "-F", str(rc)], dict(os.environ, HOME=str(home), TERM="xterm"))
    try:
        term.wait("alpha")
        term.keys("=")  # the first message (neomutt opens on the last)
        term.keys("F")  # flag alpha; the cursor moves on to bravo (resolve)
        term.wait("!")
        term.keys("d")  # delete bravo; the cursor moves on to charlie
        term.keys("s")  # save charlie into Archive (neomutt copies it there and deletes it here)
        term.wait("Save to mailbox")
        term.keys("C-u", "=.Archive", "Enter")
        time.sleep(0.5)
        term.keys("q")
        for _ in range(50):
            if not term.alive():
                break
            time.sleep(0.1)
        assert not term.alive(), term.screen()
    finally:
        term.close()
    _sync(cfg, env)
    assert _on_server(imap_user, "INBOX", "alpha@example.org") == [frozenset({"\\Seen", "\\Flagged"})]
    assert _on_server(imap_user, "INBOX", "bravo@example.org") == []
    assert _on_server(imap_user, "INBOX", "charlie@example.org") == []
    assert _on_server(imap_user, "Archive", "charlie@example.org") == [frozenset({"\\Seen"})]
    assert _on_server(imap_user, "INBOX", "delta@example.org") == [frozenset({"\\Seen"})]
    assert_mirrored(imap_user, root)


@pytest.mark.parametrize("layout", ["maildir++", "fs"])
def test_a_folder_made_in_the_maildir_is_made_on_the_server_with_its_messages(tmp_path, imap_user, corpus, layout):
    cfg, env, root = _setup(tmp_path, imap_user, f"sqlite:///{tmp_path}/s.db", some(corpus, 3, 0), layout)
    _sync(cfg, env)
    made = _maildir_dir(root, "Projects/2025", layout)
    made.parent.mkdir(parents=True, exist_ok=True)
    box = mailbox.Maildir(made, factory=None, create=True)  # as a client makes a folder
    if layout == "maildir++":
        (made / "maildirfolder").write_bytes(b"")
    msg = mailbox.MaildirMessage(b"From: c@example.org\nMessage-ID: <in-a-new-folder@example.org>\n\nhi\n")
    msg.set_subdir("cur")
    msg.set_flags("F")
    box.add(msg)
    _sync(cfg, env)
    assert _on_server(imap_user, "Projects/2025", "in-a-new-folder@example.org") == [frozenset({"\\Flagged"})]
    assert_mirrored(imap_user, root, layout)
    _sync(cfg, env)  # nothing twice
    assert _on_server(imap_user, "Projects/2025", "in-a-new-folder@example.org") == [frozenset({"\\Flagged"})]
    assert_mirrored(imap_user, root, layout)


def test_a_folder_removed_in_the_maildir_is_removed_on_the_server(tmp_path, imap_user, corpus):
    """A client moves one message out of Archive, then removes the folder: the move reaches the
    server, then the folder is removed there. A folder that vanished with more than 50 messages is
    held (status says why) until --allow-deletions."""
    for i in range(55):
        imap_user.server.write_message(imap_user.name, "Old", b"From: b@example.org\r\nMessage-ID: <old-%d@example.org>"
                                       b"\r\n\r\nbody %d\r\n" % (i, i), "\\Seen", 1600000000 + i)
    cfg, env, root = _setup(tmp_path, imap_user, f"sqlite:///{tmp_path}/s.db", some(corpus, 3, 0))
    imap_user.server.write_message(imap_user.name, "Archive", b"From: b@example.org\r\nMessage-ID: <keep@example.org>"
                                   b"\r\n\r\nkeep\r\n", "\\Seen", 1600000000)
    imap_user.server.write_message(imap_user.name, "Archive", b"From: b@example.org\r\nMessage-ID: <drop@example.org>"
                                   b"\r\n\r\ndrop\r\n", "\\Seen", 1600000000)
    imap_user.server.force_resync(imap_user.name)
    _sync(cfg, env)
    archive = root / ".Archive"
    keep = next(p for p in (archive / "cur").iterdir() if b"keep@" in p.read_bytes())
    os.rename(keep, root / "cur" / keep.name)
    shutil.rmtree(archive)
    proc = _sync(cfg, env)
    assert "Archive" not in server_view(imap_user)
    assert _on_server(imap_user, "INBOX", "keep@example.org") == [frozenset({"\\Seen"})]
    assert "folder 'Archive' is removed on the server, with the 1 message(s)" in proc.stderr
    assert_mirrored(imap_user, root)
    # a folder that vanished with many messages is held
    shutil.rmtree(root / ".Old")
    proc = _sync(cfg, env, ok=False)
    assert proc.returncode == 1 and "Maildir folder '.Old' vanished with its 55 messages" in proc.stderr
    assert len(_all_on_server(imap_user, "Old")) == 55
    assert "Maildir deletions HELD: Maildir folder '.Old' vanished" in run_cli("status", config=cfg, env=env).stdout
    _sync(cfg, env, "--allow-deletions")
    assert "Old" not in server_view(imap_user)
    assert "HELD" not in run_cli("status", config=cfg, env=env).stdout
    assert_mirrored(imap_user, root)
    _sync(cfg, env)  # nothing left to do
    assert_mirrored(imap_user, root)


def test_a_move_with_a_flag_change_reaches_the_server_in_one_sync(tmp_path, imap_user, corpus):
    cfg, env, root = _setup(tmp_path, imap_user, f"sqlite:///{tmp_path}/s.db", some(corpus, 3, 3))
    _sync(cfg, env)
    src = sorted((root / "new").iterdir())[0] if any((root / "new").iterdir()) else sorted((root / "cur").iterdir())[0]
    mid = mailbox.MaildirMessage(src.read_bytes())["Message-ID"].strip("<>")
    os.rename(src, root / ".Archive" / "cur" / (src.name.split(":")[0] + ":2,FRS"))  # moved, flagged, answered, seen
    _sync(cfg, env)
    assert _on_server(imap_user, "INBOX", mid) == []
    assert _on_server(imap_user, "Archive", mid) == [frozenset({"\\Seen", "\\Flagged", "\\Answered"})]
    assert_mirrored(imap_user, root)


def test_more_keywords_than_letters_do_not_rename_files_every_sync(tmp_path, imap_user):
    imap_user.server.write_message(imap_user.name, "INBOX", b"From: b@example.org\r\nMessage-ID: <kw@example.org>"
                                   b"\r\n\r\nkw\r\n", "\\Seen", 1600000000)
    cfg, env, root = _setup(tmp_path, imap_user, f"sqlite:///{tmp_path}/s.db", [])
    c = client_for(imap_user)
    try:
        c.select_folder("INBOX")
        c.add_flags(c.search("ALL"), [f"$kw{i:02d}".encode() for i in range(30)])
    finally:
        c.logout()
    _sync(cfg, env)
    (name,) = [p.name for p in (root / "cur").iterdir()]
    assert len(name.split(":2,")[1]) == 1 + 26  # S and the 26 keyword letters
    for _ in range(2):
        proc = _sync(cfg, env)
        assert "renamed" not in proc.stderr, proc.stderr
        assert [p.name for p in (root / "cur").iterdir()] == [name]


_IMPORTED = re.compile(r"^import time:\s+-?\d+ \|\s+-?\d+ \|\s*(\S+)$", re.M)


def _quick_sync(cfg, env) -> bool:
    """One `mailsync sync`; True when it ended at the folder listing (mailsync.sync.quick: neither
    SQLAlchemy nor the engine loaded)."""
    proc = _sync(cfg, dict(env, PYTHONPROFILEIMPORTTIME="1"))
    modules = set(_IMPORTED.findall(proc.stderr))
    assert "mailsync.sync.quick" in modules
    return not any(m.startswith(("sqlalchemy", "mailsync.sync.engine", "mailsync.mirror.live")) for m in modules)


def test_a_no_change_sync_skips_the_scan_and_never_misses_a_client_change(tmp_path, imap_user, corpus):
    """Once a scan found the Maildir as the mirror left it, a sync with nothing to do on either side
    ends at the listing; a client's change made at once after it (in the same tick of the file
    system's clock) is sent by the next sync, whatever the change."""
    cfg, env, root = _setup(tmp_path, imap_user, f"sqlite:///{tmp_path}/s.db", some(corpus, 10, 10))
    _sync(cfg, env)  # the first write
    assert not _quick_sync(cfg, env)  # the scan after a write vouches for the Maildir ...
    assert _quick_sync(cfg, env)  # ... and from then on nothing is scanned while nothing changes
    assert _quick_sync(cfg, env)
    archive = _maildir_dir(root, "Archive", "maildir++")

    def flag(root):
        f = next((root / "cur").iterdir())
        os.rename(f, root / "cur" / (f.name.split(":")[0] + ":2,FS"))
        return f.name.split(":")[0]

    def delete(root):
        f = next((root / "cur").iterdir())
        f.unlink()

    def move(root):
        f = next((root / "cur").iterdir())
        os.rename(f, archive / "cur" / f.name)

    def new_file(root):
        msg = mailbox.MaildirMessage(b"From: c@example.org\r\nMessage-ID: <right-after@example.org>\r\n\r\nhi\r\n")
        mailbox.Maildir(archive, factory=None, create=False).add(msg)

    def new_folder(root):
        made = root / ".Fresh"
        for sub in ("cur", "new", "tmp"):
            (made / sub).mkdir(parents=True)
        (made / "cur" / "1700000000.M1P1.client:2,S").write_bytes(
            b"From: c@example.org\r\nMessage-ID: <in-fresh@example.org>\r\n\r\nfresh\r\n")

    for change in (flag, delete, move, new_file, new_folder):
        assert _quick_sync(cfg, env)
        change(root)  # at once, no pause
        assert not _quick_sync(cfg, env), change.__name__  # the change is seen ...
        assert_mirrored(imap_user, root)  # ... and sent
        assert not _quick_sync(cfg, env)  # the scan after the writes vouches again
    assert _on_server(imap_user, "Archive", "right-after@example.org") == [frozenset()]
    assert _on_server(imap_user, "Fresh", "in-fresh@example.org") == [frozenset({"\\Seen"})]


def test_a_store_changed_without_the_mirror_is_written_at_the_next_sync(tmp_path, imap_user, corpus):
    """The store synced by a config without the account's maildir (as a channel's sync of the
    account also does): the server has nothing new for the next sync, yet the Maildir lacks the
    message, so the sync is no no-change sync and writes it."""
    cfg, env, root = _setup(tmp_path, imap_user, f"sqlite:///{tmp_path}/s.db", some(corpus, 5, 5))
    _sync(cfg, env)
    _sync(cfg, env)
    assert _quick_sync(cfg, env)
    c = client_for(imap_user)
    try:
        c.append("INBOX", b"From: a@example.org\r\nMessage-ID: <behind-its-back@example.org>\r\n\r\nx\r\n")
    finally:
        c.logout()
    plain = write_config(tmp_path / "plain.toml", f"sqlite:///{tmp_path}/s.db", [account_entry(imap_user, "acc")])
    _sync(plain, env)
    assert not _quick_sync(cfg, env)
    assert_mirrored(imap_user, root)
    assert not _quick_sync(cfg, env)
    assert _quick_sync(cfg, env)
