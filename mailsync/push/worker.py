"""`mailsync watch --worker`: one of many watch daemons sharing a PostgreSQL store's accounts.

Owns: the worker's lease rounds (heartbeat, renew, read the table, plan, claim, release), starting
and stopping the watch of an account as its lease is won or lost, each watched account's fence,
and handing every lease back on shutdown. Must not: decide the balance (mailsync.push.leases does,
purely), write SQL (mailsync.store.lease_repo does), or watch or sync an account itself (the
WatchDaemon's AccountWatcher does, unchanged).

One round every ``lease_ttl / 3`` seconds (the first one that long after start: workers started
together register first, so the first one up does not claim everything only to give most of it
back), on a thread of its own, in one transaction:
  1. heartbeat, and renew this worker's leases (lease_repo.beat): what comes back is what it holds;
  2. read the live workers and the leases, and plan (leases.plan_round);
  3. stop watching what was lost (taken over after a pause: its sync's writes fail on the fence);
  4. give the surplus back: stop watching first (the sync in progress stops at a step boundary and
     is waited for), then release, so no two workers ever sync an account at once;
  5. claim free and expired accounts up to the quota (SKIP LOCKED), and start watching them: the
     connect is followed by the catch-up delta sync, as after any reconnect.
A worker that cannot reach the store for a whole lease_ttl stops watching everything it holds
before its leases can expire (``deadline``), so it never syncs an account another worker may have.
On SIGTERM (request_stop) the daemon's shutdown runs, then every lease is released at once.

A reloaded config (mailsync.push.reload; `mailsync workers reload` NOTIFYs every worker): removed
accounts are forgotten, stopped and their leases given back; new ones are offered for lease and a
round runs at once; changed ones this worker holds are restarted under the same lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mailsync.config.model import AccountConfig
from mailsync.push import logs
from mailsync.push.daemon import WatchDaemon
from mailsync.push.leases import plan_round
from mailsync.push.notify import LocalChangeListener
from mailsync.store import lease_repo
from mailsync.store.lease_repo import Fence

log = logging.getLogger("mailsync.push")

DEFAULT_LEASE_TTL = 30.0
DEADLINE = 0.8  # of a lease_ttl without a renewal: stop watching everything held
NET_POLL = 2.0  # seconds between looks at pending_ops while LISTEN brings local changes at once


@dataclass(frozen=True)
class WorkerSettings:
    lease_ttl: float = DEFAULT_LEASE_TTL
    max_accounts: int | None = None
    worker_id: str | None = None  # default host:pid:random

    @property
    def round_every(self) -> float:
        return self.lease_ttl / 3


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class WorkerDaemon(WatchDaemon):
    """A WatchDaemon that watches only the accounts it holds leases for."""

    def __init__(self, store, accounts, *, worker: WorkerSettings | None = None, **kw) -> None:
        lease_repo.require_postgresql(store.dialect, store.engine.url.render_as_string(hide_password=True))
        super().__init__(store, accounts, **kw)
        self.worker = worker or WorkerSettings()
        lease_repo.end_stalled_transactions(store.engine, self.worker.lease_ttl)
        self.worker_id = self.worker.worker_id or new_worker_id()
        self.ids: dict[str, int] = {}
        self.by_id: dict[int, AccountConfig] = {}
        self.held: dict[int, int] = {}  # account id -> generation, as this worker believes
        self.rounds = 0
        self.claimed = self.released = self.lost = 0  # counters, for logs and tests
        self._last_beat = time.monotonic()  # when the last successful round began (monotonic)
        # the rounds' own thread: a stalled store connection must not stop the deadline (below), and
        # health writes queued on the daemon's store thread must not delay a renewal
        self.lease_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailsync-leases")
        self._round_task: asyncio.Task | None = None
        self.listener: LocalChangeListener | None = None
        self._leaving: list[tuple[int, str]] = []  # removed by a reload, held: released once stopped

    async def _leases_db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.lease_pool, fn, *args)

    # -- start and stop -------------------------------------------------------------------------

    async def _begin(self, ids: dict[str, int]) -> None:
        self.ids = dict(ids)
        self.by_id = {ids[a.name]: a for a in self.accounts}
        await self._leases_db(self._register)
        logs.event(log, "worker", id=self.worker_id, lease_ttl=self.worker.lease_ttl,
                   max_accounts=self.worker.max_accounts, accounts=len(self.by_id))
        loop = asyncio.get_running_loop()
        self.listener = LocalChangeListener(
            self.store, lambda account_id: loop.call_soon_threadsafe(self._local_change, account_id),
            on_config=lambda: loop.call_soon_threadsafe(self._reload_asked)).start()
        # no claim in the first round_every: workers started together see each other first, instead
        # of the first one up claiming everything and giving most of it back a round later

    def _reload_asked(self) -> None:
        """`mailsync workers reload` (a NOTIFY on mailsync.push.notify.CONFIG_CHANNEL)."""
        if self.reloader is not None:
            self.reloader.request("NOTIFY (mailsync workers reload)")

    def _local_change(self, account_id: int) -> None:
        account = self.by_id.get(account_id)
        w = self.watchers.get(account.name) if account is not None else None
        if w is not None and account_id in self.held:
            w.wake("local change queued (NOTIFY)", kind="local")

    def _local_poll(self) -> float:
        """The poll of pending_ops is the net while LISTEN is up (mailsync.push.notify)."""
        listening = self.listener is not None and self.listener.listening.is_set()
        return max(NET_POLL, self.settings.local_poll) if listening else self.settings.local_poll

    def _more_helpers(self) -> list[asyncio.Task]:
        return [asyncio.create_task(self._lease_loop(), name="leases"),
                asyncio.create_task(self._deadline_loop(), name="lease-deadline")]

    async def _shutdown(self, helpers) -> None:
        if self._round_task is not None:
            self._round_task.cancel()
        if self.listener is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.listener.stop)
        await super()._shutdown(helpers)
        try:  # every lease back at once: the other workers take the accounts in their next round
            for name in self.watchers:
                logs.event(log, "lease_given_back", account=name, why="stopping")
            n = await asyncio.wait_for(self._leases_db(self._retire), 2.0)
            logs.event(log, "leases_released", worker=self.worker_id, accounts=n)
        except Exception as exc:
            logs.event(log, "store_error", logging.WARNING, doing="releasing the leases",
                       error=f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        finally:
            self.lease_pool.shutdown(wait=False)

    def held_names(self) -> list[str]:
        """The accounts this worker holds (any thread: a copy of the dict is taken first)."""
        return [acc.name for a in list(self.held) if (acc := self.by_id.get(a)) is not None]

    def release_now(self) -> int:
        """Give every lease back, from any thread: the last thing the CLI's forced exit does when
        the shutdown overran its deadline. The process ends right after, so no sync of it can run
        on; a commit racing this one is refused by its fence (the leases are nobody's)."""
        return self._retire()

    # -- blocking, on the store thread ----------------------------------------------------------

    def _register(self) -> None:
        with self.store.engine.begin() as conn:
            lease_repo.register(conn, self.worker_id, socket.gethostname(), os.getpid(),
                                self.worker.max_accounts, self.worker.lease_ttl)
            lease_repo.offer(conn, self.by_id)
            lease_repo.forget_dead(conn)  # rows of workers gone for an hour (killed: no retire)

    def _retire(self) -> int:
        with self.store.engine.begin() as conn:
            return lease_repo.retire(conn, self.worker_id)

    def _plan(self, busy: set[int], accounts: dict[int, AccountConfig], believed: dict[int, int]):
        """``accounts`` and ``believed``: copies taken on the loop (a reload may change them meanwhile)."""
        ttl = self.worker.lease_ttl
        with self.store.engine.begin() as conn:
            lease_repo.register(conn, self.worker_id, socket.gethostname(), os.getpid(),
                                self.worker.max_accounts, ttl)  # a heartbeat (and back, if reaped)
            lease_repo.beat(conn, self.worker_id, ttl)
            st = lease_repo.state(conn, self.worker_id)
            plan = plan_round(self.worker_id, st.workers, st.leases, accounts, st.now,
                              believed=believed, busy=busy, only_mine=True)
            got = {}
            if plan.want:
                got = lease_repo.claim(conn, self.worker_id, accounts, plan.want, ttl)
        adopt = {a: st.leases[a].generation for a in plan.held if a not in believed and a not in plan.release}
        return plan, {**adopt, **got}

    def _offer(self, ids: list[int]) -> None:
        with self.store.engine.begin() as conn:
            lease_repo.offer(conn, ids)

    def _release(self, ids: list[int]) -> int:
        with self.store.engine.begin() as conn:
            return lease_repo.release(conn, self.worker_id, ids)

    # -- a reloaded config (WatchDaemon.reconfigure) ----------------------------------------------

    def _accounts_leaving(self, plan) -> None:
        """Removed accounts are forgotten before they are stopped (no round claims them again), and
        changed ones take their new settings; the leases of removed ones held are given back once
        they are stopped (_accounts_changed)."""
        self._leaving = []
        for name in plan.remove:
            a = self.ids.pop(name, None)
            if a is None:
                continue
            self.by_id.pop(a, None)
            if self.held.pop(a, None) is not None:
                self._leaving.append((a, name))
        for account in plan.restart:
            if account.name in self.ids:
                self.by_id[self.ids[account.name]] = account

    async def _accounts_changed(self, plan, ids: dict[str, int]) -> None:
        """Give back the removed accounts' leases, offer the new accounts for lease and run a round
        at once (it claims up to this worker's new quota), restart the changed ones it holds."""
        leaving, self._leaving = self._leaving, []
        if leaving:
            for _, name in leaving:
                logs.event(log, "lease_given_back", account=name, why="removed from the config")
            self.released += await self._leases_db(self._release, [a for a, _ in leaving])
        for account in (*plan.add, *plan.restart):
            self.ids[account.name] = ids[account.name]
            self.by_id[ids[account.name]] = account
        if plan.add:
            await self._leases_db(self._offer, [ids[a.name] for a in plan.add])
        for account in plan.restart:
            gen = self.held.get(ids[account.name])
            if gen is not None and not self.stopping:
                self._watch(ids[account.name], gen)
        if not self.stopping and (self._round_task is None or self._round_task.done()):
            self._round_task = asyncio.create_task(self._round(), name="lease-round")

    # -- the rounds ------------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        """A round every round_every seconds; a round that does not come back (the store stalled)
        is not waited for beyond that (the deadline loop watches the time meanwhile)."""
        while not self.stopping:
            await self.sleep(self.worker.round_every)
            if self.stopping:
                return
            if self._round_task is None or self._round_task.done():
                self._round_task = asyncio.create_task(self._round(), name="lease-round")
            await asyncio.wait({self._round_task}, timeout=self.worker.round_every)

    async def _deadline_loop(self) -> None:
        """Wake at the deadline of the last renewal, whatever the rounds are doing."""
        while not self.stopping:
            due = self._last_beat + self.worker.lease_ttl * DEADLINE - time.monotonic()
            if due > 0:
                await self.sleep(min(due + 0.01, self.worker.round_every))
                continue
            await self._check_deadline()
            await self.sleep(self.worker.round_every / 4)

    async def _check_deadline(self) -> None:
        """No round has renewed the leases for most of a TTL: they may expire before the next one
        can, and another worker take the accounts. Stop watching all of them now (a sync in progress
        stops at its next step boundary; its commits are fenced anyway)."""
        if self.held and time.monotonic() - self._last_beat >= self.worker.lease_ttl * DEADLINE:
            logs.event(log, "leases_abandoned", logging.WARNING, accounts=len(self.held),
                       why=f"no lease renewal for {time.monotonic() - self._last_beat:.1f} s "
                           f"(lease_ttl {self.worker.lease_ttl:g} s): the store unreachable, or this process paused")
            held, self.held = list(self.held), {}
            for a in held:
                logs.event(log, "lease_given_back", account=self.by_id[a].name, why="store unreachable")
            await asyncio.gather(*(self._unwatch(a) for a in held))

    async def _round(self) -> None:
        t0 = time.monotonic()
        busy = {self.ids[n] for n, w in self.watchers.items() if w.syncing and n in self.ids}
        try:
            plan, won = await self._leases_db(self._plan, busy, dict(self.by_id), dict(self.held))
        except Exception as exc:  # the store is unreachable: the deadline lets everything go in time
            logs.event(log, "store_error", logging.WARNING, doing="renewing the leases",
                       error=f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return
        if time.monotonic() - t0 > self.worker.lease_ttl * DEADLINE:  # came back too late to count on
            return
        self._last_beat = t0
        self.rounds += 1
        if self.stopping:
            return
        gone = [a for a in won if a not in self.by_id]  # removed from the config while the round ran
        if gone:
            won = {a: g for a, g in won.items() if a in self.by_id}
            await self._leases_db(self._release, gone)
        for a in plan.lost:
            if a not in self.by_id:
                continue
            self.lost += 1
            logs.event(log, "lease_lost", logging.WARNING, account=self.by_id[a].name)
            self.held.pop(a, None)
            await self._unwatch(a)
        if plan.release:
            await asyncio.gather(*(self._unwatch(a) for a in plan.release))
            for a in plan.release:
                self.held.pop(a, None)
                if a in self.by_id:
                    logs.event(log, "lease_given_back", account=self.by_id[a].name, why="rebalance")
            n = await self._leases_db(self._release, list(plan.release))
            self.released += n
            logs.event(log, "leases_given_back", accounts=len(plan.release), quota=plan.quota)
        for a, gen in won.items():
            if self.stopping:
                break
            self.held[a] = gen
            self.claimed += 1
            logs.event(log, "lease_claimed", account=self.by_id[a].name, generation=gen)
            self._watch(a, gen)
        if won:
            logs.event(log, "leases_claimed", accounts=len(won), quota=plan.quota, holding=len(self.held))

    def _watch(self, account_id: int, generation: int) -> None:
        account = self.by_id[account_id]
        old = self.watchers.get(account.name)
        if old is not None and not old.dropped:  # still watched (adopted again): a new fence only
            old.fence = old.health.fence = Fence(account_id, account.name, self.worker_id, generation)
            return
        w = self.start_watching(account, account_id)
        w.fence = w.health.fence = Fence(account_id, account.name, self.worker_id, generation)  # syncs, health rows

    async def _unwatch(self, account_id: int) -> None:
        """Stop watching an account (WatchDaemon.stop_watching)."""
        account = self.by_id.get(account_id)
        if account is not None:
            await self.stop_watching(account.name)
