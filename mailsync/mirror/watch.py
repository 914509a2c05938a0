"""Noticing a mail client's change in a live Maildir mirror as it happens: inotify, for `mailsync watch`.

Owns: ``watch_maildir`` (the inotify watches on the mirror's folder directories and their cur/ and
new/, through asyncinotify; a burst of events coalesced into one call of ``changed``; the watches
made again when a folder is made, renamed or removed) and ``inotify_available``. Must not: sync,
read the store, or decide what changed (the sync's scan does, mailsync.mirror.live_scan).

inotify is the fast path; the daemon keeps comparing maildir_signature (mailsync.mirror.live) as
the net, every few seconds with inotify and five times a second without it (not Linux, asyncinotify
not installed, or the kernel's inotify limits reached: ``watch_maildir`` then returns False).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("mailsync.mirror")

COALESCE = 0.02  # seconds of quiet after an event before ``changed`` is called (a client's burst)

try:  # Linux only; the daemon polls without it
    from asyncinotify import Inotify, Mask
except (ImportError, OSError):  # pragma: no cover - not Linux
    Inotify = Mask = None


def inotify_available() -> bool:
    return Inotify is not None


def folder_dirs(root: Path, layout: str) -> list[Path]:
    """The directories to watch: the root and every Maildir folder under it (a directory with a
    cur/), then the cur/ and new/ of each."""
    out: list[Path] = []
    if not root.is_dir():
        return out
    out.append(root)
    if layout == "maildir++":
        try:
            with os.scandir(root) as it:
                out += [Path(e.path) for e in it if e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
        except OSError:
            pass
    else:
        for base, dirs, _files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in ("cur", "new", "tmp")]
            if base != str(root):
                out.append(Path(base))
    return out + [d / sub for d in list(out) for sub in ("cur", "new") if (d / sub).is_dir()]


async def watch_maildir(root: Path, layout: str, changed: Callable[[], None],
                        stopping: Callable[[], bool]) -> bool:
    """Call ``changed()`` whenever a file or folder in the Maildir at ``root`` is added, renamed or
    removed, until ``stopping()`` (checked after each event and once a second). False at once
    when inotify cannot be used here."""
    if Inotify is None:
        return False
    try:
        inotify = Inotify()
    except OSError as exc:
        log.warning("inotify is not available (%s): the Maildir at %s is polled", exc, root)
        return False
    files = Mask.MOVED_TO | Mask.MOVED_FROM | Mask.CREATE | Mask.DELETE | Mask.ATTRIB
    folders = Mask.CREATE | Mask.DELETE | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.ONLYDIR | Mask.DELETE_SELF

    def rewatch() -> bool:
        for w in list(inotify.watches):
            try:
                inotify.rm_watch(w)
            except OSError:
                pass  # its directory went: the kernel dropped it already
        try:
            for d in folder_dirs(root, layout):
                inotify.add_watch(d, files if d.name in ("cur", "new") else folders)
        except FileNotFoundError:
            return True  # a folder went meanwhile: watched again on the next event
        except OSError as exc:  # ENOSPC: the kernel's max_user_watches reached
            log.warning("cannot watch the Maildir at %s with inotify (%s): it is polled", root, exc)
            return False
        return True

    with inotify:
        if not rewatch():
            return False
        while not stopping():
            try:
                event = await asyncio.wait_for(inotify.get(), 1.0)
            except asyncio.TimeoutError:
                if not inotify.watches and root.is_dir():  # the root came back (a disk mounted again)
                    rewatch()
                continue
            tree = event.watch is None or event.watch.path.name not in ("cur", "new")
            while True:  # the rest of the burst
                try:
                    more = await asyncio.wait_for(inotify.get(), COALESCE)
                except asyncio.TimeoutError:
                    break
                tree = tree or more.watch is None or more.watch.path.name not in ("cur", "new")
            if tree and not rewatch():
                return False
            changed()
    return True
