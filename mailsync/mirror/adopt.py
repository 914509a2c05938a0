"""Adopting a Maildir another program wrote (mbsync, OfflineIMAP) as an account's live mirror.

Owns: what an adoption reads from the Maildir before the first sync: every message file's bytes
put into the store's bodies (so that the sync links the server's messages to them by Message-ID and
size, rule "have_bodies" of mailsync.sync.engine, and downloads none of them again), the files
by (folder, SHA-256) for the first write to take over instead of writing new ones, and the flags
mbsync last agreed for each file (its ``.mbsyncstate``: the base against which a flag changed in
the Maildir since mbsync's last run is sent to the server). ``parse_mbsyncstate`` and ``near_uid``
are pure. Must not: write or rename message files, record local changes, or speak IMAP.

OfflineIMAP keeps no flags per file that mailsync reads: the files' own flags are the base, so the
server's flags win where the two differ on the first sync.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from pathlib import Path

from mailsync.mirror import maildir
from mailsync.store import repositories as repo
from mailsync.store.uow import UnitOfWork
from mailsync.sync.message import message_id

_NEAR_UID = re.compile(r",U=(\d+)")
_BATCH_BYTES = 32 << 20
LONE_LF = re.compile(rb"(?<!\r)\n")  # a line end without its CR (IMAP wants CRLF)
_TUID = re.compile(rb"^X-TUID: [^\n]*\n", re.MULTILINE)


def near_uid(unique: str) -> int | None:
    """The UID mbsync (``,U=N``) or OfflineIMAP (``,U=N,FMD5=...``) put in a file name."""
    m = _NEAR_UID.search(unique)
    return int(m.group(1)) if m else None


def parse_mbsyncstate(text: str) -> dict[int, frozenset[str]]:
    """near UID -> the flags mbsync last agreed for it, from a ``.mbsyncstate`` (header lines, a
    blank line, then ``FAR NEAR FLAGS`` per pair; a pair without a near UID (0) is skipped)."""
    out: dict[int, frozenset[str]] = {}
    _head, _sep, body = text.partition("\n\n")
    for line in body.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit() or parts[1] == "0":
            continue
        letters = parts[2] if len(parts) > 2 else ""
        out[int(parts[1])] = frozenset(maildir.LETTER_FLAGS[c] for c in letters if c in maildir.LETTER_FLAGS)
    return out


def base_flags(folder_dir: Path, uniques) -> dict[str, frozenset[str]]:
    """unique part -> mbsync's last agreed flags, for the files of one Maildir folder that its
    ``.mbsyncstate`` names; {} without one."""
    state = folder_dir / ".mbsyncstate"
    try:
        table = parse_mbsyncstate(state.read_text("utf-8", "replace")) if state.is_file() else {}
    except OSError:
        return {}
    out = {}
    for u in uniques:
        uid = near_uid(u)
        if uid is not None and uid in table:
            out[u] = table[uid]
    return out


def seed_bodies(store, paths: list[Path]) -> tuple[dict[tuple[Path, str], tuple[str, str | None]], int]:
    """Every message file at ``paths`` into the store's bodies (skipped when stored already), in
    batches, as the server holds it (server_form; the file itself is left as it is). Returns
    ({(the file's folder directory, unique part): (SHA-256, Message-ID)}, bytes read)."""
    hashes: dict[tuple[Path, str], tuple[str, str | None]] = {}
    batch: list[repo.NewBody] = []
    size = total = 0

    def flush() -> None:
        nonlocal size
        if batch:
            with UnitOfWork(store) as uow:
                repo.store_bodies(uow.connection, batch)
                uow.commit()
            batch.clear()
            size = 0

    for p in paths:
        try:
            raw = p.read_bytes()
        except OSError:
            continue  # gone meanwhile (a client): it is not adopted
        raw = server_form(raw)
        sha = hashlib.sha256(raw).hexdigest()
        mid = message_id(raw)
        hashes[(p.parent.parent, maildir.split_name(p.name)[0])] = (sha, mid)
        batch.append(repo.NewBody(sha, len(raw), mid, raw))
        size += len(raw)
        total += len(raw)
        if size >= _BATCH_BYTES:
            flush()
    flush()
    return hashes, total


def server_form(raw: bytes) -> bytes:
    """The message as the server holds it, from another program's file: CRLF line ends (mbsync
    writes LF) and without the ``X-TUID`` header mbsync adds to the files it writes."""
    head, sep, body = raw.partition(b"\n\n") if b"\r\n\r\n" not in raw[:1 << 16] else (raw, b"", b"")
    if sep:
        head = _TUID.sub(b"", head + b"\n")[:-1]
    return LONE_LF.sub(b"\r\n", head + sep + body)


def message_files(folder_dirs: list[Path]) -> list[Path]:
    """The message files in cur/ and new/ of each folder directory, mailsync's own left out."""
    out = []
    for d in folder_dirs:
        for sub in ("cur", "new"):
            try:
                with os.scandir(d / sub) as it:
                    out += [Path(e.path) for e in it if not e.name.startswith(".")
                            and maildir.file_key(e.name) is None and e.is_file()]
            except OSError:
                continue
    return out


def by_content(hashes, disk, folder_dir) -> dict[tuple[str, str], list]:
    """(folder path, SHA-256) -> the DiskFiles holding that message there (live_plan's input)."""
    out: dict[tuple[str, str], list] = defaultdict(list)
    for f in disk:
        known = hashes.get((folder_dir(f.folder), f.unique))
        if known is not None:
            out[(f.folder, known[0])].append(f)
    return out


def superseded(left, writes, hashes, folder_dir, message_ids: dict[str, str | None]) -> list:
    """The files of ``left`` (another program's files that no message matched by content) whose
    message mailsync writes anew in the same folder: the one file and the one message there with
    that Message-ID. Such a file holds the message as the other program changed it (OfflineIMAP
    re-serialises MIME parts); the server's bytes replace it. ``message_ids``: SHA-256 -> Message-ID
    of the messages written."""
    files: dict[tuple[str, str], list] = defaultdict(list)
    for f in left:
        mid = hashes.get((folder_dir(f.folder), f.unique), (None, None))[1]
        if mid:
            files[(f.folder, mid)].append(f)
    written: dict[tuple[str, str], int] = defaultdict(int)
    for w in writes:
        mid = message_ids.get(w.message.sha256)
        if mid:
            written[(w.folder, mid)] += 1
    return [fs[0] for key, fs in files.items() if len(fs) == 1 and written.get(key) == 1]
