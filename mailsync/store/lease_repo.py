"""The lease table's statements (PostgreSQL): workers' heartbeats, claims, releases, and the fence.

Owns: every read and write of watch_workers and account_leases (tables.py), and ``Fence``, the
check a sync of a leased account runs in the transaction of each of its writes. Must not: decide
which accounts to claim or give back (mailsync.push.leases does, from what ``state`` returns), run
loops or commit: each function takes the caller's connection, inside the caller's transaction.

PostgreSQL only: a claim is ``SELECT ... FOR UPDATE SKIP LOCKED`` (workers claiming at the same time
never wait on each other and never take the same row), and every time is the database's ``now()``,
so the machines' clocks do not matter. The fence is ``SELECT ... FOR SHARE`` on the account's lease
row: held until the sync's commit, it makes a claim by another worker (an UPDATE of that row) wait
for the commit, or the commit see the claim and fail; either way nothing is written under a lease
that was taken over (a worker paused past its lease by a GC pause or SIGSTOP, say).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, text

from mailsync.errors import ConfigError, StoreError
from mailsync.push.leases import Lease, WorkerInfo


class LeaseLost(StoreError):
    """The account's lease is another worker's now (or of a newer generation): nothing was written."""


def require_postgresql(dialect: str, url: str) -> None:
    """Workers share accounts through the store: a SQLite file cannot be (a ConfigError: exit 2)."""
    if dialect != "postgresql":
        raise ConfigError(f"`mailsync watch --worker` needs a PostgreSQL store; [store] url is {url!r} ({dialect})",
                         hint="point [store] url at a PostgreSQL database shared by the workers, e.g. "
                              "postgresql+psycopg://mailsync@db.example.com/mailsync (pip install "
                              "'mailsync[postgres]'), or run `mailsync watch` without --worker")


def end_stalled_transactions(engine, lease_ttl: float) -> None:
    """Make PostgreSQL end a session of ``engine`` that keeps a transaction open without a word for
    a whole ``lease_ttl`` (``idle_in_transaction_session_timeout``, set on each new connection; the
    pooled ones are dropped so that every connection has it). The fence holds its FOR SHARE lock until
    the sync's commit: a worker cut off from the store (or frozen) between the two would otherwise
    keep the lease row locked until the kernel gives up on its TCP connection, and no other worker
    could take the account over (a claim skips locked rows). Such a session's worker has lost its
    leases anyway: it stops watching at 0.8 lease_ttl without a renewal."""
    from sqlalchemy import event

    ms = max(1000, int(lease_ttl * 1000))

    def on_connect(dbapi_connection, _record) -> None:
        cur = dbapi_connection.cursor()
        try:
            cur.execute(f"SET idle_in_transaction_session_timeout = {ms}")
        finally:
            cur.close()
        dbapi_connection.commit()

    event.listen(engine, "connect", on_connect)
    engine.dispose()


def db_now(conn: Connection) -> float:
    return float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar())


def register(conn: Connection, worker: str, host: str, pid: int, max_accounts: int | None, ttl: float) -> None:
    conn.execute(text(
        "INSERT INTO watch_workers (id, host, pid, max_accounts, lease_ttl, started_at, heartbeat_at) "
        "VALUES (:id, :host, :pid, :max, :ttl, now(), now()) "
        "ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), max_accounts = :max, lease_ttl = :ttl"),
        {"id": worker, "host": host, "pid": pid, "max": max_accounts, "ttl": ttl})


def offer(conn: Connection, account_ids: Iterable[int]) -> None:
    """Make sure each account has a lease row (free when new)."""
    ids = sorted(set(account_ids))
    if ids:
        conn.execute(text("INSERT INTO account_leases (account_id, generation) "
                          "SELECT unnest(CAST(:ids AS integer[])), 0 ON CONFLICT (account_id) DO NOTHING"),
                     {"ids": ids})


def beat(conn: Connection, worker: str, ttl: float) -> dict[int, int]:
    """The worker's heartbeat, and its leases renewed for ``ttl`` seconds: account id -> generation
    of every lease renewed. It never waits on a row lock: a row another worker is claiming (its
    lease expired) is not ours any more; one a sync of ours holds for its commit (the fence) is
    renewed in the next round. Statements that wait on nothing cannot deadlock."""
    conn.execute(text("UPDATE watch_workers SET heartbeat_at = now() WHERE id = :id"), {"id": worker})
    rows = conn.execute(text(
        "UPDATE account_leases SET expires_at = now() + make_interval(secs => :ttl) "
        "WHERE account_id IN (SELECT account_id FROM account_leases WHERE worker = :id "
        "  FOR NO KEY UPDATE SKIP LOCKED) AND worker = :id RETURNING account_id, generation"),
        {"id": worker, "ttl": ttl})
    return {a: g for a, g in rows}


@dataclass(frozen=True)
class LeaseState:
    now: float
    workers: list[WorkerInfo]  # the live ones (heartbeat younger than their lease_ttl)
    leases: dict[int, Lease]  # those asked for (see state)


def state(conn: Connection, worker: str | None = None) -> LeaseState:
    """The database's clock, the live workers, and the lease rows: every one, or (``worker``) only
    those in that worker's name, which is all a round needs (its claim finds free rows in SQL):
    with 10,000 accounts, reading every row in every round of every worker was most of its cost."""
    now = db_now(conn)
    workers = [WorkerInfo(w, m) for w, m in conn.execute(text(
        "SELECT id, max_accounts FROM watch_workers "
        "WHERE heartbeat_at > now() - make_interval(secs => lease_ttl) ORDER BY id"))]
    where, args = ("", {}) if worker is None else (" WHERE worker = :id", {"id": worker})
    leases = {a: Lease(a, w, g, None if e is None else float(e), None if q is None else float(q))
              for a, w, g, e, q in conn.execute(text(
                  "SELECT account_id, worker, generation, extract(epoch FROM expires_at), "
                  "extract(epoch FROM acquired_at) FROM account_leases" + where), args)}
    return LeaseState(now, workers, leases)


def claim(conn: Connection, worker: str, candidates: Iterable[int], want: int, ttl: float) -> dict[int, int]:
    """Take up to ``want`` of ``candidates`` that are free or expired; account id -> new generation.
    Rows another transaction has locked (another worker claiming, a sync's fence) are skipped."""
    ids = list(candidates)
    if want <= 0 or not ids:
        return {}
    rows = conn.execute(text(
        "WITH c AS (SELECT l.account_id FROM account_leases l "
        "  JOIN unnest(CAST(:ids AS integer[])) AS mine(id) ON mine.id = l.account_id "
        "  WHERE l.worker IS NULL OR l.expires_at IS NULL OR l.expires_at <= now() "
        "  ORDER BY md5(l.account_id::text || :id) LIMIT :want FOR UPDATE OF l SKIP LOCKED) "
        "UPDATE account_leases l SET worker = :id, generation = l.generation + 1, acquired_at = now(), "
        "  expires_at = now() + make_interval(secs => :ttl) "
        "FROM c WHERE l.account_id = c.account_id RETURNING l.account_id, l.generation"),
        {"ids": ids, "id": worker, "want": want, "ttl": ttl})
    return {a: g for a, g in rows}


def release(conn: Connection, worker: str, account_ids: Iterable[int]) -> int:
    """Give accounts back at once (free for the next claim); returns how many were still ours."""
    ids = sorted(set(account_ids))
    if not ids:
        return 0
    return conn.execute(text(
        "UPDATE account_leases SET worker = NULL, expires_at = now() "
        "WHERE worker = :id AND account_id = ANY(CAST(:ids AS integer[]))"), {"id": worker, "ids": ids}).rowcount


def retire(conn: Connection, worker: str) -> int:
    """A worker leaving: every lease it holds given back, its row deleted."""
    n = conn.execute(text("UPDATE account_leases SET worker = NULL, expires_at = now() WHERE worker = :id"),
                     {"id": worker}).rowcount
    conn.execute(text("DELETE FROM watch_workers WHERE id = :id"), {"id": worker})
    return n


def forget_dead(conn: Connection, older_than: float = 3600.0) -> int:
    """Delete the rows of workers whose heartbeat stopped long ago (their leases expired with it)."""
    return conn.execute(text("DELETE FROM watch_workers WHERE heartbeat_at < now() - make_interval(secs => :s)"),
                        {"s": older_than}).rowcount


@dataclass(frozen=True)
class Fence:
    """The fencing token of one account's lease: ``fence(conn)`` in a transaction raises LeaseLost
    unless the lease is still ``worker``'s at ``generation``, and locks the row until the commit."""

    account_id: int
    account: str
    worker: str
    generation: int

    def __call__(self, conn: Connection) -> None:
        row = conn.execute(text("SELECT worker, generation FROM account_leases WHERE account_id = :a FOR SHARE"),
                           {"a": self.account_id}).first()
        if row is None or row[0] != self.worker or row[1] != self.generation:
            holder = "nobody" if row is None or row[0] is None else f"worker {row[0]}"
            raise LeaseLost(f"account '{self.account}': this worker's lease (generation {self.generation}) was "
                            f"taken over by {holder}"
                            + ("" if row is None else f" at generation {row[1]}") + "; nothing was written",
                            hint="nothing to do: the worker holding the account syncs it")


def report(conn: Connection) -> list[dict]:
    """For `mailsync workers`: every worker row with its accounts, lease ages and sync lag."""
    workers = {w: {"worker": w, "host": h, "pid": p, "max_accounts": m, "lease_ttl": t,
                   "started_at": s.isoformat() if s else None, "heartbeat_age": round(float(age), 3),
                   "alive": bool(alive), "accounts": []}
               for w, h, p, m, t, s, age, alive in conn.execute(text(
                   "SELECT id, host, pid, max_accounts, lease_ttl, started_at, "
                   "extract(epoch FROM now() - heartbeat_at), heartbeat_at > now() - make_interval(secs => lease_ttl) "
                   "FROM watch_workers ORDER BY id"))}
    unheld = {"worker": None, "host": None, "pid": None, "max_accounts": None, "lease_ttl": None,
              "started_at": None, "heartbeat_age": None, "alive": False, "accounts": []}
    for name, worker, gen, age, left, last_sync, lag, pending in conn.execute(text(
            "SELECT a.name, l.worker, l.generation, extract(epoch FROM now() - l.acquired_at), "
            "extract(epoch FROM l.expires_at - now()), w.last_sync_at, w.lag_seconds, "
            "extract(epoch FROM now() - w.pending_since) "
            "FROM account_leases l JOIN accounts a ON a.id = l.account_id "
            "LEFT JOIN watch_state w ON w.account_id = l.account_id ORDER BY a.name")):
        held = worker is not None and left is not None and float(left) > 0
        entry = {"account": name, "generation": gen,
                 "lease_age": None if age is None or not held else round(float(age), 3),
                 "expires_in": None if not held else round(float(left), 3),
                 "last_sync": last_sync.isoformat() if last_sync else None,
                 "lag_seconds": round(float(pending), 3) if pending is not None else lag}
        target = workers.get(worker) if held else None
        (target or unheld)["accounts"].append(entry)
    return list(workers.values()) + ([unheld] if unheld["accounts"] else [])
