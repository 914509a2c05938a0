"""`mailsync show` and `mailsync export maildir|mbox` against the test Dovecot, read back by real
readers: Python's mailbox.Maildir and mailbox.mbox, and notmuch (Debian's package) with
maildir.synchronize_flags. The yardstick is a second IMAP client's view of the server: per folder,
each message's SHA-256, flags (keywords too) and INTERNALDATE."""

from __future__ import annotations

import hashlib
import json
import mailbox
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from helpers import account_entry, client_for, damage_stored_body, password_var, run_cli, write_config
from maildir_support import _maildir_dir, _notmuch, needs_notmuch, read_maildir, server_view
from mailsync.testing.corpus import load_into, read_corpus

REPO = Path(__file__).resolve().parents[2]
FROM_LINES = (b"From: q@example.org\r\nMessage-ID: <from-lines@example.org>\r\nSubject: quoting\r\n\r\n"
              b"From the start\r\n>From once\r\n>>From twice\r\nFromage\r\nlast line without newline")


@pytest.fixture(scope="module")
def corpus():
    return read_corpus(REPO / "fixtures" / "corpus")


def _synced(tmp_path, imap_user, store_url, corpus):
    load_into(imap_user.server, imap_user.name, corpus)
    imap_user.server.write_message(imap_user.name, "INBOX", FROM_LINES, "\\Seen $Label1", 1600000000)
    imap_user.server.force_resync(imap_user.name)
    cfg = write_config(tmp_path / "c.toml", store_url, [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    return cfg, env


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.parent.name in ("cur", "new")}


NOTMUCH_TAGS = {"D": "draft", "F": "flagged", "P": "passed", "R": "replied"}


def _messages(node):
    """The messages of a `notmuch show --format=json` thread (nested lists of [message, replies])."""
    if isinstance(node, dict):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _messages(item)


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@needs_notmuch
@pytest.mark.parametrize("layout", ["maildir++", "fs"])
def test_export_maildir_reads_back_in_python_and_notmuch(tmp_path, imap_user, store_url, corpus, layout):
    cfg, env = _synced(tmp_path, imap_user, store_url, corpus)
    server = server_view(imap_user)
    out = tmp_path / "Mail"
    proc = run_cli("export", "maildir", str(out), "--account", "acc", "--layout", layout, config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    total = sum(sum(c.values()) for c in server.values())
    assert proc.stdout == "" and f"exported {total} message(s)" in proc.stderr

    # Python's Maildir: per folder, the same messages (bytes), flags, keywords and INTERNALDATE
    for folder, want in server.items():
        assert read_maildir(_maildir_dir(out, folder, layout)) == want, folder
    if layout == "maildir++":
        assert sorted(mailbox.Maildir(out, create=False).list_folders()) == sorted(
            f.replace("/", ".") for f in server if f != "INBOX")
    assert any(k for c in server.values() for (_s, f, _t) in c for k in f if not k.startswith("\\"))

    # notmuch: every file indexed, counts per folder, and its tags (from the file names, one message
    # per Message-ID, flags the union of its files') equal the server's flags
    _notmuch(out, tmp_path, "new")
    files = [f for f in _notmuch(out, tmp_path, "search", "--output=files", "*").split("\n") if f]
    assert sorted(os.path.relpath(f, out) for f in files) == sorted(_files(out))
    per_dir = Counter(str(Path(f).parent.parent) for f in files)
    assert per_dir == {str(_maildir_dir(out, folder, layout)): sum(c.values()) for folder, c in server.items()}
    shown = json.loads(_notmuch(out, tmp_path, "show", "--format=json", "--body=false", "--entire-thread=false", "*"))
    checked = 0
    for thread in shown:
        for msg in _messages(thread):
            letters = set("".join(f.rpartition(":2,")[2] if ":2," in f else "" for f in msg["filename"]))
            want_tags = {tag for letter, tag in NOTMUCH_TAGS.items() if letter in letters}
            if "S" not in letters:
                want_tags.add("unread")
            got_tags = set(msg["tags"]) & (set(NOTMUCH_TAGS.values()) | {"unread"})
            assert got_tags == want_tags, msg["filename"]
            checked += 1
    assert checked == len({m["id"] for t in shown for m in _messages(t)}) > 200
    assert sum(per_dir.values()) == total

    # a rerun adds nothing, even after notmuch renamed a file (a flag change in the client)
    _notmuch(out, tmp_path, "tag", "+flagged", "id:from-lines@example.org")
    before = _files(out)
    again = run_cli("export", "maildir", str(out), "--account", "acc", "--layout", layout, config=cfg, env=env)
    assert again.returncode == 0, again.stderr
    assert "exported 0 message(s)" in again.stderr and f"{total} already there" in again.stderr
    assert _files(out) == before

    # a message added on the server, synced, then exported: exactly one new file, in its folder
    new = b"From: n@example.org\r\nMessage-ID: <late@example.org>\r\nSubject: late\r\n\r\nlate\r\n"
    imap_user.server.write_message(imap_user.name, "Archive/2024", new, "\\Flagged", 1700000000)
    imap_user.server.force_resync(imap_user.name)
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    third = run_cli("export", "maildir", str(out), "--account", "acc", "--layout", layout, config=cfg, env=env)
    assert third.returncode == 0 and "exported 1 message(s)" in third.stderr
    added = _files(out) - before
    assert len(added) == 1
    (path,) = added
    assert _sha(out / path) == hashlib.sha256(new).hexdigest()
    assert Path(out / path).parent.parent == _maildir_dir(out, "Archive/2024", layout)
    assert path.endswith(":2,F") and int((out / path).stat().st_mtime) == 1700000000


def test_export_maildir_of_all_accounts_goes_under_account_directories(tmp_path, imap_user, store_url, corpus):
    cfg, env = _synced(tmp_path, imap_user, store_url, corpus[:20])
    out = tmp_path / "Mail"
    proc = run_cli("export", "maildir", str(out), "--folder", "INBOX", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    assert read_maildir(out / "acc") == server_view(imap_user)["INBOX"]
    assert sorted(p.name for p in out.iterdir()) == ["acc"]


def _unstatus(data: bytes) -> bytes:
    """The message without the Status/X-Status/X-Keywords fields of its header (the export writes its
    own there)."""
    ends = [i + n for i, n in ((data.find(b"\r\n\r\n"), 2), (data.find(b"\n\n"), 1)) if i >= 0]
    cut = min(ends) if ends else len(data)
    head = re.sub(rb"(?im)^(status|x-status|x-keywords):.*\n(?:[ \t].*\n)*", b"", data[:cut])
    return head + data[cut:]


def read_mbox(path: Path) -> Counter:
    """(sha256 of the message without the status fields, flags) per message, read with Python's mailbox.mbox."""
    box = mailbox.mbox(path, factory=None, create=False)
    out = Counter()
    for key in box.keys():
        msg = box.get_message(key)
        py = set(msg.get_flags())
        flags = {f for f, letter in (("\\Seen", "R"), ("\\Answered", "A"), ("\\Flagged", "F"), ("\\Deleted", "D"))
                 if letter in py}
        if "T" in (msg.get("X-Status") or ""):
            flags.add("\\Draft")
        flags.update((msg.get("X-Keywords") or "").split())
        unquoted = re.sub(rb"^>(>*From )", rb"\1", box.get_bytes(key), flags=re.MULTILINE)  # mboxrd
        out[(hashlib.sha256(_unstatus(unquoted)).hexdigest(), frozenset(flags))] += 1
    return out


def _without_status(user_view: dict[str, Counter], corpus_raw: dict[str, bytes]) -> dict[str, Counter]:
    """The server's view, each message's SHA-256 taken after removing its own status fields."""
    out = {}
    for folder, c in user_view.items():
        out[folder] = Counter()
        for (sha, flags, _t), n in c.items():
            raw = corpus_raw[sha]
            if not raw.endswith(b"\n"):  # mbox cannot tell a last line without a newline: it gains one
                raw += b"\n"
            out[folder][(hashlib.sha256(_unstatus(raw)).hexdigest(), flags)] += n
    return out


def test_export_mbox_reads_back_in_python(tmp_path, imap_user, store_url, corpus):
    cfg, env = _synced(tmp_path, imap_user, store_url, corpus)
    raw: dict[str, bytes] = {}
    want = _without_status(server_view(imap_user, raw), raw)
    out = tmp_path / "mbox"
    proc = run_cli("export", "mbox", str(out), "--account", "acc", config=cfg, env=env)
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    for folder, expected in want.items():
        assert read_mbox(out / f"{folder}.mbox") == expected, folder
    # mboxrd: the body's From lines come back as they were, and the From line carries the INTERNALDATE
    inbox = (out / "INBOX.mbox").read_bytes()
    assert b"\r\n>From the start\r\n>>From once\r\n>>>From twice\r\nFromage\r\n" in inbox
    assert b"\nFrom MAILER-DAEMON Sun Sep 13 12:26:40 2020\n" in b"\n" + inbox

    size = {p: p.stat().st_size for p in out.rglob("*.mbox")}
    again = run_cli("export", "mbox", str(out), "--account", "acc", config=cfg, env=env)
    assert again.returncode == 0 and "exported 0 message(s)" in again.stderr
    assert {p: p.stat().st_size for p in out.rglob("*.mbox")} == size

    # one folder into one file; a rerun after an interrupted write cuts the stray tail and adds nothing twice
    single = tmp_path / "inbox.mbox"
    one = run_cli("export", "mbox", str(single), "--account", "acc", "--folder", "INBOX", config=cfg, env=env)
    assert one.returncode == 0, one.stderr
    assert read_mbox(single) == want["INBOX"]
    with open(single, "ab") as f:
        f.write(b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: half writ")
    rerun = run_cli("export", "mbox", str(single), "--account", "acc", "--folder", "INBOX", config=cfg, env=env)
    assert rerun.returncode == 0 and "exported 0 message(s)" in rerun.stderr and "cut off" in rerun.stderr
    assert read_mbox(single) == want["INBOX"]

    # an existing file and a selection of many folders: a clear error, nothing written
    many = run_cli("export", "mbox", str(single), "--account", "acc", config=cfg, env=env)
    assert many.returncode == 2 and "one mbox file, for one folder" in many.stderr and "--folder" in many.stderr
    assert "Traceback" not in many.stderr
    foreign = tmp_path / "foreign.mbox"
    foreign.write_bytes(b"From x Thu Jan  1 00:00:00 1970\n\nhi\n\n")
    refused = run_cli("export", "mbox", str(foreign), "--account", "acc", "--folder", "INBOX", config=cfg, env=env)
    assert refused.returncode == 1 and "did not write" in refused.stderr
    assert foreign.read_bytes() == b"From x Thu Jan  1 00:00:00 1970\n\nhi\n\n"


def _bytes_cli(*args: str, config, env) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", "mailsync", "--config", str(config), *args], capture_output=True,
                          env={**os.environ, **env, "PYTHONPATH": str(REPO)}, timeout=120)


def test_show_prints_the_servers_bytes_and_refuses_a_damaged_body(tmp_path, imap_user, store_url):
    msgs = [b"From: a@example.org\r\nMessage-ID: <s%d@example.org>\r\nSubject: %d\r\n\r\n" % (i, i)
            + bytes(range(256)) * 3 + b"\r\nend\r\n" for i in range(1, 4)]
    imap_user.server.load(imap_user.name, msgs)
    cfg = write_config(tmp_path / "c.toml", store_url, [account_entry(imap_user, "acc")])
    env = {password_var("acc"): imap_user.password}
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    c = client_for(imap_user)
    try:
        c.select_folder("INBOX", readonly=True)
        on_server = {uid: d[b"BODY[]"] for uid, d in c.fetch(c.search("ALL"), ["BODY.PEEK[]"]).items()}
    finally:
        c.logout()
    for uid, body in on_server.items():
        proc = _bytes_cli("show", "acc", "INBOX", str(uid), config=cfg, env=env)
        assert proc.returncode == 0, proc.stderr
        assert hashlib.sha256(proc.stdout).hexdigest() == hashlib.sha256(body).hexdigest()
    head = _bytes_cli("show", "acc", "INBOX", "2", "--headers", config=cfg, env=env)
    assert head.stdout == on_server[2][:on_server[2].index(b"\r\n\r\n") + 4]
    missing = _bytes_cli("show", "acc", "INBOX", "99", config=cfg, env=env)
    assert missing.returncode == 1 and b"no message with UID 99 in acc/INBOX" in missing.stderr

    damage_stored_body(store_url, "<s2@example.org>")
    bad = _bytes_cli("show", "acc", "INBOX", "2", config=cfg, env=env)
    assert bad.returncode == 1 and bad.stdout == b""
    assert b"acc/INBOX UID 2" in bad.stderr and b"mailsync verify" in bad.stderr and b"Traceback" not in bad.stderr
    # an export goes on past it: the other two are written, the damaged one named, exit 1
    out = tmp_path / "Mail"
    proc = run_cli("export", "maildir", str(out), "--account", "acc", config=cfg, env=env)
    assert proc.returncode == 1 and "acc/INBOX UID 2" in proc.stderr and "mailsync verify" in proc.stderr
    assert sorted(_sha(str(p)) for p in out.glob("new/*")) == sorted(
        hashlib.sha256(on_server[u]).hexdigest() for u in (1, 3))
