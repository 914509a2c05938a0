"""Reading a Maildir and a server back, for the tests of `export maildir` and the live Maildir
mirror: per folder, each message's SHA-256, flags (keywords too) and INTERNALDATE, as Python's
mailbox.Maildir reads the Maildir and a second IMAP client reads the server; notmuch as a reader."""

from __future__ import annotations

import hashlib
import mailbox
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from helpers import client_for
from mailsync.imap import utf7

LETTERS = {"D": "\\Draft", "F": "\\Flagged", "P": "$Forwarded", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}


def server_view(user, bodies: dict | None = None) -> dict[str, Counter]:
    """folder -> Counter of (sha256, flags, INTERNALDATE as epoch seconds), as a second client reads it;
    ``bodies``: filled with sha256 -> the message's bytes."""
    c = client_for(user)
    c.folder_encode = False
    c.normalise_times = False
    out: dict[str, Counter] = {}
    try:
        for flags, _d, raw in c.list_folders():
            if any(f.lower() in (b"\\noselect", b"\\nonexistent") for f in flags):
                continue
            name = raw.decode() if isinstance(raw, bytes) else raw
            if c.select_folder(name, readonly=True)[b"EXISTS"]:
                got = c.fetch(c.search("ALL"), ["FLAGS", "INTERNALDATE", "BODY.PEEK[]"])
                if bodies is not None:
                    bodies.update((hashlib.sha256(d[b"BODY[]"]).hexdigest(), d[b"BODY[]"]) for d in got.values())
                out[utf7.decode(name)] = Counter(
                    (hashlib.sha256(d[b"BODY[]"]).hexdigest(),
                     frozenset(f.decode() for f in d[b"FLAGS"] if f.lower() != b"\\recent"),
                     int(d[b"INTERNALDATE"].timestamp())) for d in got.values())
    finally:
        c.logout()
    return out


def _maildir_dir(root: Path, folder: str, layout: str) -> Path:
    if layout == "fs":
        return root / folder
    return root if folder == "INBOX" else root / ("." + folder.replace("/", "."))


def read_maildir(path: Path) -> Counter:
    """(sha256, flags, mtime) of each message, read with Python's mailbox.Maildir; keywords through
    the folder's dovecot-keywords (``N KEYWORD`` lines, letter a + N)."""
    kw_file = path / "dovecot-keywords"
    kws = {}
    if kw_file.exists():
        for line in kw_file.read_text().splitlines():
            n, name = line.split(" ", 1)
            kws[chr(ord("a") + int(n))] = name
    md = mailbox.Maildir(path, factory=None, create=False)
    out = Counter()
    for key in md.keys():
        msg = md.get_message(key)
        flags = frozenset(LETTERS[c] if c.isupper() else kws[c] for c in msg.get_flags())
        out[(hashlib.sha256(md.get_bytes(key)).hexdigest(), flags, int(msg.get_date()))] += 1
    return out


def _notmuch(root: Path, tmp_path: Path, *args: str) -> str:
    cfg = tmp_path / "notmuch-config"
    if not cfg.exists():
        cfg.write_text(f"[database]\npath={root}\n[new]\ntags=new\nignore=dovecot-keywords;maildirfolder\n"
                       f"[maildir]\nsynchronize_flags=true\n")
    proc = subprocess.run(["notmuch", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NOTMUCH_CONFIG": str(cfg)})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


needs_notmuch = pytest.mark.skipif(shutil.which("notmuch") is None, reason="notmuch is not installed "
                                   "(scripts/test installs it)")
