"""The watch daemon: every configured account kept in step, in one process, on one asyncio loop.

Owns: per account, the push supervisor (connect, choose NOTIFY/IDLE/poll, run the sessions,
reconnect with jittered backoff, mark refused credentials as failing and retry them slowly), the
sync loop (wake-ups coalesced into delta syncs run in a thread pool), the connection budget, and
the sync connection kept open between syncs; for the daemon as a whole, noticing local changes,
health rows, heartbeat and shutdown. Must not: speak IMAP itself (client.py / protocol.py do),
decide what a sync changes (mailsync.sync), or parse the CLI.

Wake-ups and syncs. Every wake-up (a push event, a changed poll, a local change, the catch-up after
a (re)connect, a retry) sets the account's wake flag. The sync loop runs one AccountSync when the
flag is set; wake-ups that arrive while it runs set the flag again, so a burst of events costs at
most one more sync, and nothing that happened after a sync started is ever left unsynced. The
pushed data is never used: a sync always asks the server (DESIGN.md: never trust pushed data).

Ordering against loss: after a (re)connect the catch-up sync is woken only once every push
connection of the account is live (IDLE accepted, NOTIFY SET answered, first poll listed), so a
change is either before that sync started (the sync sees it) or after the push went live (a push or
poll sees it).

Budget (max_connections, default 4). Push takes at most max_connections - 1 connections and the sync
one, all through one asyncio.Semaphore per account. With max_connections = 1 there is no push
connection: the daemon runs the delta sync every poll_interval (its LIST-STATUS is the poll).

Local changes: a 200 ms poll of ``SELECT max(id) FROM pending_ops`` (the primary key index: one
page read) on the daemon's store thread. Chosen over a signal from the CLI (a pid file and SIGUSR1,
a socket, PostgreSQL LISTEN) because it needs no rendezvous, sees changes made by any writer
(`mailsync flag`, the Python API, another machine sharing a PostgreSQL store), cannot be lost when
the daemon restarts, and costs about 5 tiny queries a second whatever the number of accounts. An
account's live Maildir mirror is watched with inotify (mailsync.mirror.watch), its directories'
mtimes compared as the net every MAILDIR_NET seconds (five times a second where inotify is missing;
mailsync.push.maildir_wakes).

Faults. A session that fails (EOF, reset, BYE, no answer to DONE/NOOP within response_timeout,
garbage) closes every push connection of the account; it reconnects after a jittered exponential
delay (settings.backoff), reset once a connection stayed up for `stable_after`. Refused credentials
(AuthError, CredentialError) mark the account failing with the reason and use the slow policy
(settings.auth_backoff). A failed sync is retried on its own policy. Accounts never wait on each
other: each has its own tasks, and syncs share a pool of `sync_threads` threads.

Accounts come and go while it runs (mailsync.push.account_set, from a reloaded config: SIGHUP or a
changed file, mailsync.push.reload). Memory a burst of syncs freed goes back to the system once
they are quiet (mailsync.push.memory).

Shutdown (request_stop, from SIGTERM/SIGINT): stop taking wake-ups, ask running syncs to stop at
their next step boundary (AccountSync should_stop: the step in progress is committed), close push
connections with DONE/LOGOUT, give the syncs `shutdown_grace` seconds and then cut their sockets,
write the health rows (not connected), return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import partial

from mailsync.config.model import AccountConfig, Config
from mailsync.errors import AuthError, CredentialError, MailsyncError, Throttled, TokenError
from mailsync.push import logs, memory
from mailsync.push.account_set import AccountSet
from mailsync.push.backoff import Backoff
from mailsync.push.client import PushClient, credentials_for
from mailsync.push.clock import Clock, SystemClock
from mailsync.push.health import AccountHealth, HealthStore
from mailsync.push.kept_connection import SyncConnection, quick_logout
from mailsync.push.listener import Ended, run_session
from mailsync.push.maildir_wakes import inotify_wakes, look_at_mirrors
from mailsync.push.metrics import Metrics
from mailsync.push.protocol import Fail, Mode, PushSession, Ready, Refused, Wake, choose_mode, plan_sessions
from mailsync.push.settings import WatchSettings, account_timing, watched
from mailsync.store.db import Store
from mailsync.store.uow import fenced
from mailsync.sync import pacing

log = logging.getLogger("mailsync.push")


def _is_credential_error(exc: BaseException) -> bool:
    return isinstance(exc, AuthError) or (isinstance(exc, CredentialError) and not isinstance(exc, TokenError))


def _throttle_in(account: str, reason: str | None) -> Throttled | None:
    """The Throttled error a push connection's end stands for (a BYE or refusal whose words say
    the server throttles, mailsync.imap.throttle), or None."""
    if not reason:
        return None
    from mailsync.imap.throttle import untagged_throttle

    words = reason.split("BYE: ", 1)[1] if "BYE: " in reason else reason
    return untagged_throttle(account, "BYE", words, "watching for changes")


def _now_utc() -> datetime:
    return datetime.now(timezone.utc)


# -- one account --------------------------------------------------------------------------------


class AccountWatcher:
    def __init__(self, daemon: "WatchDaemon", account: AccountConfig, account_id: int) -> None:
        self.daemon = daemon
        self.account = account
        self.name = account.name
        self.settings = daemon.settings
        self.clock = daemon.clock
        self.timing = account_timing(account, daemon.settings)
        self.health = AccountHealth(account.name, account_id)
        daemon.metrics.add_account(account.name)
        self.permits = asyncio.Semaphore(account.max_connections)
        self.budget = max(0, account.max_connections - 1)  # one connection is always left for the sync
        self.open_connections = 0  # push + sync, for tests of the budget
        self.max_open = 0
        self.conn = SyncConnection(daemon.settings.reuse_connections, daemon.settings.reuse_idle)
        self._sync_permit = False
        self._wake = asyncio.Event()
        self._pending_since: float | None = None  # clock time of the oldest wake-up not yet synced
        self._pending_wall: datetime | None = None
        self._ready: set[int] = set()
        self._sessions = 0
        self._connected_at: float | None = None
        self._retry: asyncio.Task | None = None
        self.syncing = False
        self.maildir_seen: tuple | None = None  # the Maildir mirror's signature when its last sync began
        self.maildir_inotify = False  # inotify watches the mirror (mailsync.mirror.watch): the poll is the net
        self.maildir_net_at = 0.0  # with inotify: clock time of the next signature comparison
        self.last_sync_clock: float | None = None  # monotonic time of the last successful sync
        self.attempts: deque[float] = deque(maxlen=200)  # clock times of connection attempts (tests)
        self.retry_at: float | None = None  # while waiting to reconnect: when
        self.sync_count = 0
        self.fence = None  # a watch worker's lease (mailsync.store.lease_repo.Fence), checked on each commit
        self.dropped = False  # a worker gave the account up: its sync stops at the next step boundary

    # -- wake-ups -----------------------------------------------------------------------------

    def wake(self, reason: str, kind: str = "push") -> None:
        if self.daemon.stopping or self.dropped:
            return
        now = self.clock.now()
        if self._pending_since is None:
            self._pending_since, self._pending_wall = now, _now_utc()
        if kind != "catchup" and kind != "retry":
            self.health.set(last_event_at=_now_utc(), last_event=f"{kind}: {reason}"[:500])
        self.health.set(pending_since=self._pending_wall)
        self.daemon.metrics.events.labels(self.name, kind).inc()
        logs.event(log, "wake", logging.DEBUG if kind in ("catchup", "retry") else logging.INFO,
                   account=self.name, kind=kind, reason=reason)
        self._wake.set()

    def _on_action(self, index: int, action: Wake | Ready) -> None:
        if isinstance(action, Wake):
            self.wake(action.reason, action.kind)
            return
        self._ready.add(index)
        if len(self._ready) == self._sessions and self._connected_at is None:
            self._connected_at = self.clock.now()
            self.health.set(connected=True, failing=None)
            self.daemon.metrics.connected.labels(self.name).set(1)
            self.daemon.metrics.failing.labels(self.name).set(0)
            logs.event(log, "connected", account=self.name, mode=str(self.health.mode), connections=self._sessions)
            self.wake("catch-up after (re)connect", kind="catchup")

    # -- budget -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _permit(self):
        await self.permits.acquire()
        self.open_connections += 1
        self.max_open = max(self.max_open, self.open_connections)
        try:
            yield
        finally:
            self.open_connections -= 1
            self.permits.release()

    # -- push ---------------------------------------------------------------------------------

    async def supervise(self) -> None:
        refused: set[str] = set()
        backoff = Backoff(self.settings.backoff)
        auth_backoff = Backoff(self.settings.auth_backoff)
        while not self.daemon.stopping:
            self._ready, self._sessions, self._connected_at = set(), 0, None
            reason, credentials, throttled = None, False, None
            try:
                ended = await self._generation(refused)
                if isinstance(ended.action, Refused) and ended.action.what != "EXAMINE":
                    refused.add(ended.action.what)  # advertised but refused: not tried again
                    logs.event(log, "push_refused", logging.WARNING, account=self.name, what=ended.action.what,
                               reason=ended.action.reason, next_mode=str(choose_mode(
                                   ("NOTIFY", "IDLE"), refused=refused)))
                    self._disconnected()
                    continue
                # a refused EXAMINE (the folder went away since LIST): plan again after a backoff delay
                reason = ended.action.reason
                throttled = _throttle_in(self.name, reason)
                self.conn.discard()
                if getattr(ended.action, "silent", False):  # a sync on this path would hang until its timeout
                    self.conn.cut()
            except asyncio.CancelledError:
                self._disconnected()
                raise
            except MailsyncError as exc:
                reason, credentials = str(exc), _is_credential_error(exc)
                throttled = exc if isinstance(exc, Throttled) else None
                self.conn.discard()
            except Exception as exc:  # a bug: reported, and the account retried like a network fault
                log.exception("account %s: internal error in the push supervisor", self.name)
                reason = f"internal error {exc.__class__.__name__}: {exc}"
            stable = (self._connected_at is not None
                      and self.clock.now() - self._connected_at >= self.settings.stable_after)
            self._disconnected()
            if self.daemon.stopping:
                break
            if credentials:
                delay = auth_backoff.next_delay()
                self.health.set(failing=reason[:2000])
                self.health.error(reason)
                self.daemon.metrics.failing.labels(self.name).set(1)
                logs.event(log, "credentials_refused", logging.WARNING, account=self.name, reason=reason,
                           retry_in=round(delay, 1))
            else:
                auth_backoff.reset()
                if stable:
                    backoff.reset()
                delay = backoff.next_delay()
                if throttled is not None:  # too many connections, say: not sooner than the server asks
                    delay = max(delay, pacing.resume_at(throttled, backoff.attempt - 1, time.time()) - time.time())
                self.health.error(reason or "connection ended")
                self.daemon.metrics.reconnects.labels(self.name).inc()
                logs.event(log, "disconnected", logging.WARNING, account=self.name, reason=reason,
                           retry_in=round(delay, 2))
            self.retry_at = self.clock.now() + delay
            await self.daemon.sleep(delay)
            self.retry_at = None

    def _disconnected(self) -> None:
        if self.health.connected or self.health.connections:
            self.health.set(connected=False, connections=0)
        self.daemon.metrics.connected.labels(self.name).set(0)

    async def _generation(self, refused: set[str]) -> Ended:
        """Open the account's push connections, run them until one ends; returns how it ended."""
        self.attempts.append(self.clock.now())
        creds = await credentials_for(self.account)
        clients: list[PushClient] = []
        sessions: list[PushSession] = []
        tasks: list[asyncio.Task] = []
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._permit())
            first = await PushClient.open(self.account, creds, timeout=self.settings.connect_timeout)
            clients.append(first)
            try:
                mode = choose_mode(first.capabilities, refused=refused)
                listing = await first.list_folders() if mode is Mode.IDLE else []
                a = self.account
                plans = plan_sessions(mode, first.capabilities, listing, watch=a.push.watch,
                                      budget=self.budget, include=a.folders, exclude=a.exclude)
                if plans:
                    sessions = [PushSession(p, self.timing) for p in plans]
                    for _ in plans[1:]:
                        await stack.enter_async_context(self._permit())
                        clients.append(await PushClient.open(self.account, creds,
                                                             timeout=self.settings.connect_timeout))
                    self._sessions = len(sessions)
                    self.health.set(mode=str(plans[0].mode), connections=len(clients))
                    for i, (c, s) in enumerate(zip(clients, sessions)):
                        tasks.append(asyncio.create_task(
                            run_session(c, s, self.clock, lambda act, i=i: self._on_action(i, act)),
                            name=f"push-{self.name}-{i}"))
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    return next(iter(done)).result()
            finally:
                for t in tasks:
                    t.cancel()
                for t in tasks:
                    with contextlib.suppress(BaseException):
                        await t
                goodbyes = [s.closing() for s in sessions] + [b"WZ LOGOUT\r\n"] * (len(clients) - len(sessions))
                await asyncio.gather(*(c.close(g, timeout=0.5) for c, g in zip(clients, goodbyes)),
                                     return_exceptions=True)
        # no connection to spare for push (max_connections = 1): the probe connection is closed
        return await self._poll_by_sync()

    async def _poll_by_sync(self) -> Ended:
        """No connection to spare for push: the delta sync itself polls, every poll_interval."""
        self.health.set(mode=str(Mode.POLL), connections=0, connected=True)
        logs.event(log, "polling", account=self.name, interval=self.timing.poll_interval,
                   why="max_connections leaves no connection for push")
        self._connected_at = self.clock.now()
        backoff = Backoff(self.settings.auth_backoff)
        while not self.daemon.stopping:
            self.wake("poll interval", kind="poll")
            delay = backoff.next_delay() if self.health.failing else self.timing.poll_interval
            if not self.health.failing:
                backoff.reset()
            await self.daemon.sleep(delay)
        return Ended(Fail("stopping"))

    # -- sync ---------------------------------------------------------------------------------

    async def sync_loop(self) -> None:
        retry = Backoff(self.settings.sync_retry)
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            if self.daemon.stopping or self.dropped:
                return
            self._wake.clear()
            since, since_wall = self._pending_since, self._pending_wall
            self._pending_since = self._pending_wall = None
            if not self._sync_permit:
                await self.permits.acquire()
                self._sync_permit = True
                self.open_connections += 1
                self.max_open = max(self.max_open, self.open_connections)
            self.syncing = True
            self.daemon.syncs_running += 1
            try:
                result = await loop.run_in_executor(self.daemon.sync_pool, self._sync_blocking)
            finally:
                self.syncing = False
                self.daemon.syncs_running -= 1
                self.daemon.work_done += 1
                self.daemon.last_work_end = self.clock.now()
                if not self.conn.holding:
                    self._sync_permit = False
                    self.open_connections -= 1
                    self.permits.release()
            self.sync_count += 1
            self.daemon.metrics.record_sync(self.name, result)
            now = self.clock.now()
            if result.ok:
                retry.reset()
                if self._retry is not None:
                    self._retry.cancel()
                    self._retry = None
                self.last_sync_clock = time.monotonic()
                lag = (now - since) if since is not None else None
                self.health.set(last_sync_at=_now_utc(), pending_since=self._pending_wall)
                if lag is not None:
                    self.health.set(lag_seconds=round(lag, 4))
                if self.health.failing and self._connected_at is not None:
                    self.health.set(failing=None)
                logs.event(log, "synced", account=self.name, seconds=round(result.seconds, 3),
                           lag=None if lag is None else round(lag, 3), new=result.new_messages,
                           flags=result.flag_changes, pushed=result.pushed, expunged=result.expunged,
                           commands=result.commands)
                continue
            # failed: the changes it was for are still waiting
            if since is not None and (self._pending_since is None or since < self._pending_since):
                self._pending_since, self._pending_wall = since, since_wall
            self.health.set(pending_since=self._pending_wall)
            if self.daemon.stopping:  # interrupted at a step boundary: the next start resumes
                return
            self.health.error(result.error or "sync failed")
            exc = self.conn.connect_error
            if exc is not None and _is_credential_error(exc):
                self.health.set(failing=str(exc)[:2000])
                self.daemon.metrics.failing.labels(self.name).set(1)
                logs.event(log, "sync_failed", logging.WARNING, account=self.name, error=result.error,
                           retry="with the push connection (credentials)")
                continue  # the supervisor retries the login slowly, and its catch-up syncs again
            delay = retry.next_delay()
            if result.throttled_until is not None:  # the server named its wait (or a quota's reset): not sooner
                delay = max(delay, result.throttled_until - time.time())
            logs.event(log, "sync_failed", logging.WARNING, account=self.name, error=result.error,
                       retry_in=round(delay, 2), throttled=result.throttled_until is not None)
            if self._retry is None or self._retry.done():
                self._retry = asyncio.create_task(self._retry_after(delay))

    def sweep(self):
        """Give back the kept sync connection (and its place in the budget) once it idled too long;
        returns it, to be logged out off the loop."""
        conn = self.conn.take_stale()
        if conn is not None and self._sync_permit and not self.syncing:
            self._sync_permit = False
            self.open_connections -= 1
            self.permits.release()
        return conn

    async def _retry_after(self, delay: float) -> None:
        await self.daemon.sleep(delay)
        if not self.daemon.stopping:
            self.wake("retry after a failed sync", kind="retry")

    def _sync_blocking(self):
        from mailsync.service import run_sync

        stop = self.daemon.stop_flag
        crashed: list[Exception] = []

        def after_sync_failed(exc: Exception) -> None:  # the sync itself succeeded: report, never stop
            crashed.append(exc)
            logs.event(log, "after_sync_failed", logging.WARNING, account=self.name, error=str(exc)[:500])

        if self.account.mirror.maildir is not None:  # taken before the mirror's scan (mailsync.mirror.live): a
            # client's change during this sync wakes the next one (the mirror's own writes wake one
            # more, which finds nothing to do)
            from mailsync.mirror.live import maildir_signature

            self.maildir_seen = maildir_signature(self.account)
        # sync, then (after a successful one, unless stopping) the CRM step, one account at a time
        try:
            with fenced(self.fence):  # a worker's lease fences the run's other writers too (CRM, channels, mirror)
                outcome = run_sync(self.daemon.config, self.daemon.store, accounts=[self.account], quiet=True,
                                   crm_after_failure=False, crm_lock=self.daemon.after_sync_lock,
                                   on_crm_error=after_sync_failed, connect=self.conn.connect,
                                   release=self.conn.release, channels_push=False, fence=self.fence,
                                   should_stop=lambda: stop.is_set() or self.dropped,
                                   wait_throttled=False)
        except Exception as exc:  # a bug around the sync must not end this account's sync loop: a failed
            # sync, retried with its backoff like any other
            from mailsync.sync.result import AccountResult

            log.exception("account %s: unexpected error around its sync", self.name)
            return AccountResult(self.name, ok=False, error=f"internal error: {type(exc).__name__}: {exc}"[:500])
        result = outcome.results[0]
        if result.ok and self.daemon.after_sync is not None and not stop.is_set() and not crashed:
            with self.daemon.after_sync_lock:
                try:
                    self.daemon.after_sync(self.daemon.store)
                except Exception as exc:
                    after_sync_failed(exc)
        return result


# -- the daemon ---------------------------------------------------------------------------------


class WatchDaemon(AccountSet):
    """``await WatchDaemon(store, accounts).run()`` until ``request_stop()``."""

    def __init__(self, store: Store, accounts, *, settings: WatchSettings | None = None,
                 clock: Clock | None = None, metrics: Metrics | None = None, config: Config | None = None,
                 after_sync: Callable[[Store], object] | None = None) -> None:
        self.store = store
        self.config = config  # its [crm] table, if any: each sync is followed by the CRM step (service.run_sync)
        self.accounts = [a for a in accounts if watched(a)]
        self.settings = settings or WatchSettings()
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics(self._last_syncs)
        self.health_store = HealthStore(self.store, os.getpid())
        self.watchers: dict[str, AccountWatcher] = {}
        self.account_tasks: dict[str, list[asyncio.Task]] = {}
        self.stopping = False
        self.stop_flag = threading.Event()  # read by sync threads (AccountSync should_stop)
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self._sleepers: set[asyncio.Future] = set()
        self.sync_pool = ThreadPoolExecutor(max_workers=self.settings.sync_threads, thread_name_prefix="mailsync-sync")
        self.db_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailsync-daemon-db")
        self.started = asyncio.Event()
        # Work to run after each successful sync and its CRM step (the hooks), one at a time.
        self.after_sync = after_sync
        self.after_sync_lock = threading.Lock()
        # memory freed by a burst of syncs goes back to the system once they are quiet (memory.py)
        self.syncs_running = 0
        self.work_done = 0  # syncs finished and kept connections closed (each frees what it held) ...
        self.last_work_end: float | None = None  # ... and when the last of them ended
        self.trim_policy = memory.TrimPolicy()
        self.reloader = None  # a mailsync.push.reload.ConfigReloader, set by the CLI: SIGHUP, file changes

    def _last_syncs(self) -> dict[str, float]:
        return {n: w.last_sync_clock for n, w in self.watchers.items() if w.last_sync_clock is not None}

    async def _db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.db_pool, fn, *args)

    async def sleep(self, seconds: float) -> None:
        """Sleep on the daemon's clock; returns early when the daemon stops."""
        if self.stopping:
            return
        sleeper = asyncio.ensure_future(self.clock.sleep_until(self.clock.now() + seconds))
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({sleeper, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stop.cancel()

    def request_stop(self, why: str = "asked to stop") -> None:
        if not self.stopping:
            logs.event(log, "stopping", why=why)
        self.stopping = True
        self.stop_flag.set()
        self._stop.set()
        for w in self.watchers.values():
            w._wake.set()

    async def run(self) -> None:
        helpers: list[asyncio.Task] = []
        try:
            ids = await self._db(self.health_store.ensure_accounts, self.accounts)
            await self._begin(ids)
            last_op = await self._db(self.health_store.max_pending_op)
            logs.event(log, "started", accounts=len(self.watchers), pid=os.getpid())
            helpers = [asyncio.create_task(self._local_changes(last_op), name="local-changes"),
                       asyncio.create_task(self._health_loop(), name="health"), *self._more_helpers()]
            if self.reloader is not None:
                helpers.append(asyncio.create_task(self.reloader.run(), name="config-reload"))
            self.started.set()
            if not self.stopping:
                await self._stop.wait()
            await self._shutdown(helpers)
        finally:
            for t in helpers + [t for ts in self.account_tasks.values() for t in ts]:
                t.cancel()
            self.sync_pool.shutdown(wait=False, cancel_futures=True)
            self.db_pool.shutdown(wait=False)
            self.metrics.close()
            self._stopped.set()

    async def _begin(self, ids: dict[str, int]) -> None:
        """Start watching: every account (a worker, mailsync.push.worker, starts with those it claims)."""
        for a in self.accounts:
            self.start_watching(a, ids[a.name])
        await self._db(self.health_store.write, [w.health for w in self.watchers.values()])

    def _more_helpers(self) -> list[asyncio.Task]:
        return []

    def _local_poll(self) -> float:
        return self.settings.local_poll

    def start_watching(self, account: AccountConfig, account_id: int) -> AccountWatcher:
        """Add an account: its push supervisor, sync loop (the catch-up sync follows the connect) and
        Maildir watch; account_tasks[name] = [supervisor, sync loop, ...]."""
        w = self.watchers[account.name] = AccountWatcher(self, account, account_id)
        tasks = [asyncio.create_task(w.supervise(), name=f"supervise-{w.name}"),
                 asyncio.create_task(w.sync_loop(), name=f"sync-{w.name}")]
        if account.mirror.maildir is not None:
            tasks.append(asyncio.create_task(inotify_wakes(w, lambda: self.stopping), name=f"maildir-{w.name}"))
        self.account_tasks[account.name] = tasks
        return w

    async def _shutdown(self, helpers) -> None:
        t0 = time.monotonic()
        supervisors = [t for ts in self.account_tasks.values() for t in ts[:1] + ts[2:]]
        syncs = [ts[1] for ts in self.account_tasks.values()]
        for t in supervisors + helpers:
            t.cancel()
        await asyncio.gather(*supervisors, *helpers, return_exceptions=True)
        for w in self.watchers.values():  # a retry timer still waiting
            if w._retry is not None:
                w._retry.cancel()
        _, pending = await asyncio.wait(syncs, timeout=self.settings.shutdown_grace) if syncs else (set(), set())
        if pending:
            busy = [w.name for w in self.watchers.values() if w.syncing]
            logs.event(log, "cutting_syncs", logging.WARNING, accounts=",".join(busy),
                       why=f"not at a step boundary after {self.settings.shutdown_grace:g} s")
            for w in self.watchers.values():
                w.conn.cut()
            _, pending = await asyncio.wait(pending, timeout=1.0)
            for t in pending:
                t.cancel()
        loop = asyncio.get_running_loop()
        closers = [loop.run_in_executor(None, w.conn.close) for w in self.watchers.values() if w.conn.holding]
        if closers:
            await asyncio.wait(closers, timeout=1.0)
        for w in self.watchers.values():
            w.health.set(connected=False, connections=0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._db(partial(self.health_store.write, stopped=True),
                                            [w.health for w in self.watchers.values()]), 1.0)
        logs.event(log, "stopped", seconds=round(time.monotonic() - t0, 3))

    async def _local_changes(self, last: int) -> None:
        """Wake the accounts that have new pending operations (see the module docstring)."""
        while not self.stopping:
            await self.sleep(self._local_poll())
            if self.stopping:
                return
            try:
                newest = await self._db(self.health_store.max_pending_op)
                if newest > last:
                    ids = await self._db(self.health_store.accounts_with_ops_after, last)
                    last = newest
                    for w in list(self.watchers.values()):
                        if w.health.account_id in ids:
                            w.wake("local change queued", kind="local")
                await look_at_mirrors(self.watchers.values(), self.clock.now)
            except MailsyncError as exc:
                logs.event(log, "store_error", logging.WARNING, doing="looking for local changes", error=str(exc))
            except Exception as exc:  # e.g. a locked or briefly unreachable database: try again next time
                logs.event(log, "store_error", logging.WARNING, doing="looking for local changes",
                           error=f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    async def _health_loop(self) -> None:
        """Write changed health rows within half a second; heartbeat every `heartbeat` seconds; close
        sync connections kept open but idle for `reuse_idle`; give the memory a burst of syncs freed
        back to the system once they are quiet (mailsync.push.memory)."""
        next_beat = self.clock.now() + self.settings.heartbeat
        loop = asyncio.get_running_loop()
        while not self.stopping:
            await self.sleep(0.5)
            for w in list(self.watchers.values()):
                stale = w.sweep()
                if stale is not None:
                    loop.run_in_executor(None, quick_logout, stale)
                    self.work_done += 1
                    self.last_work_end = self.clock.now()
            now = self.clock.now()
            if self.trim_policy.due(now, done=self.work_done, running=self.syncs_running,
                                    last_end=self.last_work_end):
                self.trim_policy.done(now, self.work_done)
                loop.run_in_executor(None, memory.trim)
            dirty = [w.health for w in self.watchers.values() if w.health.dirty]
            beat = now >= next_beat
            try:
                if dirty:
                    for h in dirty:
                        h.dirty = False
                    await self._db(self.health_store.write, dirty)
                if beat:
                    next_beat = self.clock.now() + self.settings.heartbeat
                    await self._db(self.health_store.heartbeat)
            except Exception as exc:
                for h in dirty:
                    h.dirty = True
                logs.event(log, "store_error", logging.WARNING, doing="writing health",
                           error=f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
