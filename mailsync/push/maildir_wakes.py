"""The watch daemon's wake-ups from an account's live Maildir mirror: a mail client's change there
wakes the account's sync.

Owns: watching each mirror with inotify (mailsync.mirror.watch), and the net under it: comparing
each mirror's directory signature with the one its last sync began with, every MAILDIR_NET seconds
(at every local-change poll where inotify is missing). Must not: sync, or read the store; it only
calls an AccountWatcher's wake().
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

MAILDIR_NET = 5.0  # seconds between two looks at a Maildir mirror's directories when inotify watches it


async def inotify_wakes(w, stopping: Callable[[], bool]) -> None:
    """A client's change in ``w``'s Maildir mirror wakes its sync at once (inotify); where inotify
    cannot be used, look_at_mirrors polls."""
    from mailsync.mirror.live import mirror_of
    from mailsync.mirror.watch import watch_maildir

    root, layout = mirror_of(w.account)
    w.maildir_inotify = True
    w.maildir_inotify = await watch_maildir(root, layout, lambda: w.wake("Maildir changed by a client", "local"),
                                            stopping)


async def look_at_mirrors(watchers: Iterable, now: Callable[[], float]) -> None:
    """Wake the accounts whose Maildir mirror a client changed since their last sync began: the net
    under inotify (every MAILDIR_NET seconds), the only way without it."""
    from mailsync.mirror.live import maildir_signature

    for w in list(watchers):
        if w.account.mirror.maildir is None or w.syncing or w.maildir_seen is None:
            continue
        if w.maildir_inotify:
            if now() < w.maildir_net_at:
                continue
            w.maildir_net_at = now() + MAILDIR_NET
        seen = await asyncio.get_running_loop().run_in_executor(None, maildir_signature, w.account)
        if seen != w.maildir_seen:
            w.maildir_seen = seen
            w.wake("Maildir changed by a client", kind="local")
