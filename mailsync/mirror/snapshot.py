"""A fingerprint of a live Maildir mirror's directories, proving that no mail client changed it.

Owns: ``take`` (the fingerprint taken by a scan before it lists the Maildir, or None when it would
prove nothing) and ``unchanged`` (the Maildir is as that fingerprint says). The no-change sync
(mailsync.sync.quick) uses them to end without the mirror's scan: a scan that found nothing
records its fingerprint (live_scan.py, live.py), and a later sync whose fingerprint still holds
would find nothing either. Must not: import SQLAlchemy (the no-change sync does without it), read
the store, or write in the Maildir anything but its probe file in a tmp/ (the root's, else a folder's: no
mail client reads tmp/, and the watch daemon does not watch it).

What is fingerprinted: every directory a scan lists or walks to find folders (the root; for
maildir++ each ``.NAME`` directory in it; for fs every directory below it but cur/, new/, tmp/),
the cur/ and new/ of each mirrored folder, and each folder's ``dovecot-keywords``: device, inode,
mtime and ctime (a client's rename, new file, deletion, mkdir or rmdir changes its directory's
mtime and ctime; a rename within cur/ too; ``touch -d`` can set an mtime back, never a ctime).

Why it is safe: timestamps are coarse (a kernel tick, a second, two on FAT), so a change made in
the same tick as the listing could leave a directory's times as they were. A fingerprint is
therefore taken only when every ctime in it is older than the probe, a file made just before the
first stat, whose ctime is "now" by the file system's own clock and granularity: any later change
then gets a ctime at least the probe's, so it differs from the one recorded (git's "racy" rule).
When a directory changed in the probe's own tick, or lies on another file system (a symlinked
folder: another clock), there is no fingerprint and the next sync scans.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["mirror_root", "take", "unchanged"]

_PROBE = ".mailsync-probe"  # in the root's tmp/
KEYWORDS_FILE = "dovecot-keywords"  # (maildir.KEYWORDS_FILE)


def mirror_root(account) -> tuple[Path, str] | None:
    """(root, layout) of the account's Maildir mirror, or None when it has none."""
    root = account.mirror.maildir
    return None if root is None else (Path(root), account.mirror.maildir_layout or "maildir++")


def _dirs(root: Path, layout: str) -> list[str]:
    """The directories a scan looks at to find folders (relative to the root, "" for it)."""
    out = [""]
    if layout == "maildir++":
        with os.scandir(root) as it:
            out += sorted(e.name for e in it if e.name.startswith(".") and e.is_dir())
        return out
    for base, dirs, _files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("cur", "new", "tmp"))
        if base != str(root):
            out.append(os.path.relpath(base, root))
    return out


def _paths(root: Path, layout: str, folders: Iterable[str]) -> list[str]:
    paths = _dirs(root, layout)
    for folder in sorted(set(folders)):
        base = f"{folder}/" if folder else ""
        paths += [base + "cur", base + "new", base + KEYWORDS_FILE]
    return paths


def _stat(root: Path, path: str) -> list[int] | None:
    try:
        st = os.stat(root / path if path else root)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _probe(root: Path, folders: list[str]) -> tuple[int, int] | None:
    """(device, ctime) of a file made now in a Maildir tmp/ (then removed): the file system's "now"."""
    tmp = next((d for d in [root / "tmp"] + [root / f / "tmp" for f in folders if f] if d.is_dir()), None)
    if tmp is None:
        return None
    path = tmp / f"{_PROBE}.{os.getpid()}"
    try:
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)
    except OSError:
        return None
    return st.st_dev, st.st_ctime_ns


def take(root: Path, layout: str, folders: Iterable[str]) -> str | None:
    """The fingerprint of the Maildir at ``root`` with the mirrored ``folders`` (paths relative to
    the root), to be taken *before* the scan lists them; None when it could prove nothing (a
    directory changed in this very tick, one on another file system, the root unreadable)."""
    folders = sorted(set(folders))
    probe = _probe(root, folders)
    if probe is None:
        return None
    device, now = probe
    try:
        stats = {p: _stat(root, p) for p in _paths(root, layout, folders)}
    except OSError:
        return None
    for st in stats.values():
        if st is not None and (st[0] != device or st[3] >= now):
            return None
    return json.dumps({"layout": layout, "stats": stats}, sort_keys=True, separators=(",", ":"))


def unchanged(root: Path, layout: str, fingerprint: str) -> bool:
    """Is the Maildir at ``root`` as ``fingerprint`` (from ``take``) recorded it? Each recorded path
    is stat'ed again; a new folder shows as its parent's changed times."""
    try:
        doc = json.loads(fingerprint)
        if doc["layout"] != layout:
            return False
        return all(_stat(root, path) == st for path, st in doc["stats"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False
