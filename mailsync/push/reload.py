"""Reloading a running watch daemon's config: on SIGHUP, on a NOTIFY (`mailsync workers reload`),
and when the config file changes.

Owns: noticing a change of the file (its size, mtime, ctime and inode, looked at every ``poll``
seconds: one stat), reading the new config off the event loop, refusing one that does not load or
cannot be taken while running (the old one goes on, and the log says why), and handing the plan
(mailsync.push.reload_plan) to the daemon (WatchDaemon.reconfigure). Must not: decide what changed
(reload_plan does) or start and stop accounts itself (the daemon does).

Requests that arrive while a reload runs are folded into one more reload after it. A file seen
changing is read once it has been still for SETTLE seconds, and read again if it changed while it
was read, so that a file half written is not taken for a config with fewer accounts. A refused file
is logged once; it is read again when it changes again, or on the next SIGHUP or NOTIFY.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from mailsync.config.model import Config
from mailsync.errors import MailsyncError
from mailsync.push import logs
from mailsync.push.reload_plan import ReloadPlan, check_reloadable, plan_reload, watched_accounts

log = logging.getLogger("mailsync.push")

CONFIG_POLL = 1.0  # seconds between looks at the config file
SETTLE = 0.2  # a changed file is read once it has not changed for this long ...
SETTLE_TRIES = 15  # ... or after this many looks


def file_signature(path: Path) -> tuple | None:
    """What changes when the file is edited, replaced or touched; None when it cannot be seen."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class ConfigReloader:
    """``asyncio.create_task(reloader.run())`` beside the daemon; ``request(why)`` from the loop."""

    def __init__(self, daemon, config: Config, *, names: Sequence[str] = (), poll: float = CONFIG_POLL,
                 load: Callable[[Path], Config] | None = None,
                 on_config: Callable[[Config, Config], object] | None = None) -> None:
        from mailsync.config.loader import load_config

        self.daemon = daemon
        self.config = config
        self.path = Path(config.path) if config.path is not None else None
        self.names = tuple(names)
        self.poll = poll
        self.load = load or load_config
        self.on_config = on_config  # (old, new), run in a thread after the accounts changed (the hooks)
        self.signature = file_signature(self.path) if self.path is not None else None
        self.reloads = 0  # applied, for tests
        self._asked = asyncio.Event()
        self._why: list[str] = []

    def request(self, why: str) -> None:
        """Reload as soon as the one running (if any) is done."""
        self._why.append(why)
        self._asked.set()

    async def run(self) -> None:
        while not self.daemon.stopping:
            if self.poll > 0:
                try:
                    await asyncio.wait_for(self._asked.wait(), self.poll)
                except TimeoutError:
                    pass
            else:
                await self._asked.wait()
            if self.daemon.stopping:
                return
            if not self._asked.is_set():
                now = file_signature(self.path) if self.path is not None else None
                if now == self.signature or now is None:
                    continue
                await self._settled(now)
                self._why.append("the config file changed")
            self._asked.clear()
            why, self._why = ", ".join(dict.fromkeys(self._why)), []
            await self.reload(why)

    async def _settled(self, seen: tuple) -> None:
        """Wait until the file has stopped changing (an editor or a deploy tool writing it in
        several steps), at most a few seconds."""
        for _ in range(SETTLE_TRIES):
            await asyncio.sleep(SETTLE)
            now = file_signature(self.path)
            if now == seen or now is None:
                return
            seen = now

    async def reload(self, why: str) -> ReloadPlan | None:
        """Read the config and apply it; None when it was refused (the old one goes on)."""
        if self.path is None:
            return None
        try:
            for _ in range(SETTLE_TRIES):
                signature = file_signature(self.path)
                new = await asyncio.to_thread(self.load, self.path)
                if file_signature(self.path) == signature:
                    break
                await self._settled(file_signature(self.path))  # written to while it was read: again
            check_reloadable(self.config, new)
        except MailsyncError as exc:
            self.signature = signature  # not read again until it changes again (or SIGHUP / NOTIFY)
            logs.event(log, "config_refused", logging.ERROR, path=str(self.path), why=why, error=exc.message,
                       hint=exc.hint, kept="the config loaded before")
            return None
        except Exception as exc:  # a bug in the loader: the daemon goes on with the old config
            self.signature = signature
            log.exception("reading the config file %s", self.path)
            logs.event(log, "config_refused", logging.ERROR, path=str(self.path), why=why,
                       error=f"internal error {exc.__class__.__name__}: {exc}", kept="the config loaded before")
            return None
        self.signature = signature
        old = self.config
        accounts = watched_accounts(new, self.names)
        plan = plan_reload(self.daemon.accounts, accounts)
        if self.names and any(n not in {a.name for a in new.accounts} for n in self.names):
            gone = [n for n in self.names if n not in {a.name for a in new.accounts}]
            logs.event(log, "config_account_missing", logging.WARNING, accounts=",".join(gone),
                       why="named by --account, no longer in the config: not watched")
        await self.daemon.reconfigure(new, accounts, plan)
        self.config = new
        self.reloads += 1
        if self.on_config is not None:
            try:
                await asyncio.to_thread(self.on_config, old, new)
            except Exception as exc:
                logs.event(log, "config_hooks_failed", logging.WARNING, error=f"{exc.__class__.__name__}: {exc}")
        logs.event(log, "config_reloaded", path=str(self.path), why=why, accounts=len(accounts), **plan.summary())
        if not accounts:
            logs.event(log, "config_no_accounts", logging.WARNING, path=str(self.path),
                       why="the config names no account to watch: the daemon waits for one")
        return plan
