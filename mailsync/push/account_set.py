"""Changing the accounts of a running watch daemon: stopping one, and taking a reloaded config.

Owns: WatchDaemon.stop_watching (push closed, the running sync stopped at a step boundary, the kept
connection closed, the health row written) and WatchDaemon.reconfigure (removed and changed accounts
stopped, new and changed ones started, the others untouched), as a base class of the daemon. Must
not: read the config (mailsync.push.reload does) or decide what changed (mailsync.push.reload_plan
does); a watch worker (mailsync.push.worker) overrides _accounts_changed to go through its leases.
"""

from __future__ import annotations

import asyncio

from mailsync.config.model import AccountConfig, Config
from mailsync.push.settings import watched


class AccountSet:
    """Mixed into WatchDaemon: uses its watchers, account_tasks, settings, health_store, _db and
    start_watching."""

    async def stop_watching(self, name: str) -> None:
        """Stop watching an account: push closed, a running sync stopped at its next step boundary
        and waited for (cut after the shutdown grace), its kept connection closed, its health row
        written (not connected)."""
        w = self.watchers.get(name)
        if w is None:
            return
        w.dropped = True
        w._wake.set()
        tasks = self.account_tasks.pop(w.name, [])
        for t in tasks[:1] + tasks[2:]:
            t.cancel()
        if w._retry is not None:
            w._retry.cancel()
        if tasks:
            await asyncio.gather(*tasks[:1], *tasks[2:], return_exceptions=True)
            done, pending = await asyncio.wait(tasks[1:2], timeout=self.settings.shutdown_grace)
            if pending:
                w.conn.cut()
                await asyncio.wait(pending, timeout=1.0)
                for t in pending:
                    t.cancel()
        if w.conn.holding:
            await asyncio.get_running_loop().run_in_executor(None, w.conn.close)
        w.health.set(connected=False, connections=0)
        if self.watchers.get(w.name) is w:
            del self.watchers[w.name]
        try:
            await self._db(self.health_store.write, [w.health])
        except Exception:  # written again by whoever watches it next; the health loop logs store errors
            pass

    async def reconfigure(self, config: Config, accounts: list[AccountConfig], plan) -> None:
        """Take a reloaded config (mailsync.push.reload): ``accounts`` are the ones to watch from
        now on, ``plan`` (mailsync.push.reload_plan.ReloadPlan) what changed. Removed and changed
        accounts are stopped first, then the new and changed ones started; the others go on
        untouched. The next syncs (and their CRM step) read the new config."""
        self._accounts_leaving(plan)
        await asyncio.gather(*(self.stop_watching(n) for n in (*plan.remove, *(a.name for a in plan.restart))))
        self.config = config
        self.accounts = [a for a in accounts if watched(a)]
        starting = [*plan.add, *plan.restart]
        ids = await self._db(self.health_store.ensure_accounts, starting) if starting else {}
        await self._accounts_changed(plan, ids)

    def _accounts_leaving(self, plan) -> None:
        """Before the removed and changed accounts are stopped (a worker forgets them here, so that
        no lease round starts them again meanwhile)."""

    async def _accounts_changed(self, plan, ids: dict[str, int]) -> None:
        """Start watching the new and changed accounts (a worker, mailsync.push.worker, offers
        them for lease instead and restarts only those it holds)."""
        for a in (*plan.add, *plan.restart):
            if not self.stopping:
                self.start_watching(a, ids[a.name])
        await self._db(self.health_store.write, [self.watchers[a.name].health for a in (*plan.add, *plan.restart)
                                                 if a.name in self.watchers])
