"""The daemon's health per account, kept in memory and written to the store (`watch_state`), and the
report `mailsync status` shows from it.

Owns: the AccountHealth record, writing it (batched: only rows that changed, one transaction), the
heartbeat, and turning a row back into the status report (with "is the daemon still running?").
Must not: decide anything about push or sync; runs on the daemon's store thread, never on the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select, update

from mailsync.store import repositories as repo
from mailsync.store.db import Store
from mailsync.store.models import PendingOp, WatchState, utcnow
from mailsync.store.uow import UnitOfWork

#: Seconds between heartbeats; a heartbeat older than STALE_AFTER means the daemon is gone.
HEARTBEAT = 10.0
STALE_AFTER = 3 * HEARTBEAT + 5


@dataclass
class AccountHealth:
    """What `status` shows for one account (the columns of watch_state)."""

    account: str
    account_id: int
    connected: bool = False
    mode: str | None = None
    connections: int = 0
    last_event_at: datetime | None = None
    last_event: str | None = None
    last_sync_at: datetime | None = None
    lag_seconds: float | None = None
    pending_since: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failing: str | None = None
    dirty: bool = field(default=True, compare=False)
    # a watch worker's lease (mailsync.store.lease_repo.Fence): the row is written only while it holds
    fence: object | None = field(default=None, compare=False, repr=False)

    def set(self, **values) -> None:
        for k, v in values.items():
            if getattr(self, k) != v:
                setattr(self, k, v)
                self.dirty = True

    def error(self, message: str) -> None:
        self.set(last_error=message[:2000], last_error_at=utcnow())


_COLUMNS = [f.name for f in fields(AccountHealth) if f.name not in ("account", "account_id", "dirty", "fence")]


class HealthStore:
    """Blocking; called on the daemon's store thread."""

    def __init__(self, store: Store, pid: int) -> None:
        self.store = store
        self.pid = pid
        self.started_at = utcnow()

    def ensure_accounts(self, accounts) -> dict[str, int]:
        """The accounts' ids, their rows made where missing. Several workers sharing a PostgreSQL
        store start at once: one's insert may lose to another's (a unique violation, raised once
        the other committed), and the second try finds the rows."""
        from sqlalchemy.exc import IntegrityError

        for attempt in range(3):
            try:
                with UnitOfWork(self.store) as uow:
                    ids = {a.name: repo.account_id(uow.connection, a.name, a.host, a.username) for a in accounts}
                    uow.commit()
                return ids
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def write(self, rows: list[AccountHealth], *, heartbeat: bool = True, stopped: bool = False) -> None:
        """Upsert `rows`; `stopped`: the daemon's last write (status then says it is not running).
        A row with a fence (a watch worker's lease) is left out when the lease is not this worker's
        any more: the worker that took the account over writes it (checked in this transaction,
        the lease row locked until the commit, as a sync's writes are)."""
        if not rows:
            return
        now = utcnow()
        with UnitOfWork(self.store) as uow:
            s = uow.session
            rows = [r for r in rows if r.fence is None or _holds(r.fence, uow.connection)]
            existing = {w.account_id: w for w in s.scalars(
                select(WatchState).where(WatchState.account_id.in_([r.account_id for r in rows])))}
            for r in rows:
                w = existing.get(r.account_id)
                if w is None:
                    w = WatchState(account_id=r.account_id)
                    s.add(w)
                for name in _COLUMNS:
                    setattr(w, name, getattr(r, name))
                w.daemon_pid, w.started_at = (None if stopped else self.pid), self.started_at
                if heartbeat:
                    w.heartbeat_at = now
            uow.commit()

    def heartbeat(self) -> None:
        with UnitOfWork(self.store) as uow:
            uow.session.execute(update(WatchState).where(WatchState.daemon_pid == self.pid)
                                .values(heartbeat_at=utcnow()))
            uow.commit()

    def max_pending_op(self) -> int:
        """The newest pending_ops id (one indexed look-up: the daemon asks 5 times a second)."""
        with self.store.engine.connect() as conn:  # Core, not a Session: a fifth of the CPU
            return conn.execute(select(func.max(PendingOp.id))).scalar() or 0

    def accounts_with_ops_after(self, op_id: int) -> set[int]:
        with UnitOfWork(self.store) as uow:
            return set(uow.session.scalars(select(PendingOp.account_id).where(
                PendingOp.id > op_id, PendingOp.state == "pending").distinct()))


def _holds(fence, conn) -> bool:
    from mailsync.store.lease_repo import LeaseLost

    try:
        fence(conn)
    except LeaseLost:
        return False
    return True


def _aware(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:  # SQLite drops the zone; the store writes UTC
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


def _iso(dt: datetime | None) -> str | None:
    dt = _aware(dt)
    return dt.isoformat() if dt is not None else None


def watch_report(session, account_id: int, *, now: datetime | None = None) -> dict | None:
    """The `watch` entry of `mailsync status` for one account, or None when no daemon ever watched it.

    ``daemon``: "running" (heartbeat fresh) or "stopped"; ``connected`` is only true while it runs.
    ``lag_seconds``: while changes wait to be synced, how long the oldest has waited; otherwise
    the delay from event to stored of the last sync."""
    w = session.get(WatchState, account_id)
    if w is None:
        return None
    now = now or utcnow()
    beat = _aware(w.heartbeat_at)
    running = beat is not None and now - beat < timedelta(seconds=STALE_AFTER) and w.daemon_pid is not None
    pending = _aware(w.pending_since)
    lag = (now - pending).total_seconds() if (pending is not None and running) else w.lag_seconds
    return {
        "daemon": "running" if running else "stopped",
        "pid": w.daemon_pid,
        "connected": bool(w.connected) and running,
        "mode": w.mode,
        "connections": w.connections if running else 0,
        "last_event": _iso(w.last_event_at),
        "last_event_reason": w.last_event,
        "last_sync": _iso(w.last_sync_at),
        "lag_seconds": None if lag is None else round(lag, 3),
        "last_error": w.last_error,
        "last_error_at": _iso(w.last_error_at),
        "failing": w.failing,
        "heartbeat": _iso(beat),
    }


def render_watch(w: dict) -> list[str]:
    """Lines for the text form of `mailsync status`."""
    if w["daemon"] != "running":
        head = f"watch: daemon not running (last seen {w['heartbeat'] or 'never'})"
    else:
        state = "connected" if w["connected"] else "NOT connected"
        head = f"watch: {state}, push mode {w['mode'] or '-'}, {w['connections']} connection(s)"
    lines = [head]
    lag = w["lag_seconds"]
    lines.append(f"  last event {w['last_event'] or 'never'}"
                 + (f" ({w['last_event_reason']})" if w["last_event_reason"] else "")
                 + f"; last successful sync {w['last_sync'] or 'never'}"
                 + (f"; lag {lag:.2f} s" if lag is not None else ""))
    if w["failing"]:
        lines.append(f"  FAILING: {w['failing']} (retried slowly)")
    if w["last_error"]:
        lines.append(f"  last error at {w['last_error_at']}: {w['last_error']}")
    return ["  " + line for line in lines]
