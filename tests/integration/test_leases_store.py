"""The lease table on a real PostgreSQL (mailsync.store.lease_repo): claims never overlap, an expired
lease is taken over with a new generation, and the fence refuses the writes of a worker whose lease
was taken over, in the same transaction, so nothing of them is committed."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text

from mailsync.errors import ConfigError
from mailsync.store import lease_repo
from mailsync.store import repositories as repo
from mailsync.store.db import open_store
from mailsync.store.lease_repo import Fence, LeaseLost
from mailsync.store.tables import placements, sync_runs
from mailsync.store.uow import UnitOfWork
from mailsync.sync.engine import sync_account
from twoway_support import account_for


@pytest.fixture
def pg_store(postgres):
    import secrets

    s = open_store(postgres.create_database(f"leases_{secrets.token_hex(4)}"))
    yield s
    s.dispose()


def make_accounts(store, n: int) -> list[int]:
    with UnitOfWork(store) as uow:
        ids = [repo.account_id(uow.connection, f"acct{i}", "127.0.0.1", f"u{i}") for i in range(n)]
        lease_repo.offer(uow.connection, ids)
        uow.commit()
    return ids


def claim(store, worker: str, ids, want: int, ttl: float = 30.0) -> dict[int, int]:
    with store.engine.begin() as conn:
        lease_repo.register(conn, worker, "h", 1, None, ttl)
        return lease_repo.claim(conn, worker, ids, want, ttl)


def test_concurrent_claims_never_take_the_same_account(pg_store):
    ids = make_accounts(pg_store, 300)
    got: dict[str, dict[int, int]] = {}
    start = threading.Barrier(6)

    def worker(name: str) -> None:
        start.wait()
        mine: dict[int, int] = {}
        for _ in range(10):
            mine.update(claim(pg_store, name, ids, 10))
        got[name] = mine

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken = [a for mine in got.values() for a in mine]
    assert len(taken) == len(set(taken)) == 300  # all taken, none twice
    with pg_store.engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT account_id, worker FROM account_leases")).all())
    assert all(rows[a] == name for name, mine in got.items() for a in mine)


def test_an_expired_lease_is_taken_over_with_a_new_generation(pg_store):
    (a,) = make_accounts(pg_store, 1)
    assert claim(pg_store, "old", [a], 1, ttl=0.5) == {a: 1}
    assert claim(pg_store, "new", [a], 1) == {}  # held
    time.sleep(0.7)
    assert claim(pg_store, "new", [a], 1) == {a: 2}
    with pg_store.engine.begin() as conn:
        assert lease_repo.beat(conn, "old", 30.0) == {}  # the old worker's heartbeat renews nothing
        assert lease_repo.beat(conn, "new", 30.0) == {a: 2}


def test_release_and_retire_free_the_accounts_at_once(pg_store):
    ids = make_accounts(pg_store, 4)
    assert len(claim(pg_store, "a", ids, 4)) == 4
    with pg_store.engine.begin() as conn:
        assert lease_repo.release(conn, "a", ids[:2]) == 2
        assert lease_repo.release(conn, "b", ids[2:]) == 0  # not b's
    assert set(claim(pg_store, "b", ids, 4)) == set(ids[:2])
    with pg_store.engine.begin() as conn:
        assert lease_repo.retire(conn, "a") == 2
        st = lease_repo.state(conn)
    assert [w.id for w in st.workers] == ["b"]
    assert {l.worker for l in st.leases.values()} == {"b", None}


def test_the_fence_refuses_a_commit_after_a_takeover_and_writes_nothing(pg_store):
    (a,) = make_accounts(pg_store, 1)
    (gen,) = claim(pg_store, "paused", [a], 1, ttl=0.3).values()
    fence = Fence(a, "acct0", "paused", gen)
    with UnitOfWork(pg_store, fence=fence) as uow:  # the lease holds: the write goes in
        run = repo.start_run(uow.connection, a)
        uow.commit()
    time.sleep(0.5)
    assert claim(pg_store, "other", [a], 1) == {a: gen + 1}
    with pytest.raises(LeaseLost, match="taken over by worker other at generation 2"):
        with UnitOfWork(pg_store, fence=fence) as uow:
            repo.start_run(uow.connection, a)
            repo.finish_run(uow.connection, run, status="ok", error=None)
            uow.commit()
    with pg_store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sync_runs)).scalar() == 1
        assert conn.execute(select(sync_runs.c.status).where(sync_runs.c.id == run)).scalar() == "running"


def test_the_health_row_of_an_account_taken_over_is_not_written_by_the_paused_worker(pg_store):
    """The watch daemon's health rows (mailsync.push.health) go through the same fence: a worker
    paused past its lease and resumed does not overwrite, as it lets the account go, the row of the
    worker that took the account over; rows of accounts it still holds are written in the same batch."""
    from mailsync.push.health import AccountHealth, HealthStore

    lost, kept = make_accounts(pg_store, 2)
    gens = claim(pg_store, "paused", [lost, kept], 2, ttl=0.3)
    paused = HealthStore(pg_store, pid=111)
    rows = {a: AccountHealth(f"acct{i}", a, connected=True, mode="NOTIFY",
                             fence=Fence(a, f"acct{i}", "paused", gens[a])) for i, a in enumerate((lost, kept))}
    paused.write(list(rows.values()))
    time.sleep(0.5)
    assert claim(pg_store, "other", [lost], 1) == {lost: gens[lost] + 1}
    with pg_store.engine.begin() as conn:  # the paused worker's own renewal, for the account it keeps
        lease_repo.register(conn, "paused", "h", 1, None, 30.0)
        conn.execute(text("UPDATE account_leases SET expires_at = now() + interval '30 seconds' "
                          "WHERE account_id = :a"), {"a": kept})
    other = HealthStore(pg_store, pid=222)
    other.write([AccountHealth("acct0", lost, connected=True, mode="IDLE",
                               fence=Fence(lost, "acct0", "other", gens[lost] + 1))])
    for r in rows.values():  # resumed: it lets both go, "not connected"; only the one it holds is written
        r.set(connected=False, connections=0)
    paused.write(list(rows.values()))
    with pg_store.engine.connect() as conn:
        got = {a: (pid, connected, mode) for a, pid, connected, mode in conn.execute(
            text("SELECT account_id, daemon_pid, connected, mode FROM watch_state"))}
    assert got == {lost: (222, True, "IDLE"), kept: (111, False, "NOTIFY")}


def test_a_channel_run_under_a_lost_lease_queues_nothing(pg_store, dovecot):
    """The watch worker runs an account's whole run_sync inside ``fenced(its lease)``: the other
    writers of that run, here the channel run that follows the source's sync, commit through the
    same fence without carrying it, and a worker whose lease was taken over queues nothing."""
    import secrets

    from mailsync.channel.run import run_channel
    from mailsync.config.model import ChannelConfig
    from mailsync.store.uow import fenced
    from twoway_support import sync

    a = dovecot.new_user("fa" + secrets.token_hex(4), "pa")
    b = dovecot.new_user("fb" + secrets.token_hex(4), "pb")
    dovecot.load(a.name, [("INBOX", f"Message-ID: <f{i}@x>\r\nSubject: {i}\r\n\r\nhi\r\n".encode(), "")
                          for i in range(3)])
    acc_a, acc_b = account_for(a, "a"), account_for(b, "b")
    sync(pg_store, acc_a)
    sync(pg_store, acc_b)
    with UnitOfWork(pg_store) as uow:
        ida = repo.account_id(uow.connection, "a", acc_a.host, acc_a.username)
        lease_repo.offer(uow.connection, [ida])
        uow.commit()
    (gen,) = claim(pg_store, "paused", [ida], 1, ttl=0.3).values()
    time.sleep(0.5)
    assert claim(pg_store, "other", [ida], 1) == {ida: gen + 1}
    channel = ChannelConfig(name="c", source="a", dest="b")

    def queued() -> int:
        with pg_store.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM pending_ops")).scalar()

    with fenced(Fence(ida, "a", "paused", gen)):
        with pytest.raises(LeaseLost, match="taken over by worker other"):
            run_channel(pg_store, channel)
    assert queued() == 0
    with fenced(Fence(ida, "a", "other", gen + 1)):  # the worker holding the lease: queued
        assert run_channel(pg_store, channel).copies == 3
    assert queued() == 3


def test_a_claim_skips_a_lease_whose_fence_is_held_by_a_commit_in_progress(pg_store):
    """Checked but not yet committed: the row is locked until the commit, so a claim cannot slip in
    between the check and the commit; it skips the row and takes it next time."""
    (a,) = make_accounts(pg_store, 1)
    (gen,) = claim(pg_store, "slow", [a], 1, ttl=0.3).values()
    time.sleep(0.5)  # expired, but the fence is taken before anyone claims
    with pg_store.engine.connect() as conn:
        with conn.begin():
            Fence(a, "acct0", "slow", gen)(conn)
            assert claim(pg_store, "other", [a], 1) == {}  # skipped (locked), not waited for
            repo.start_run(conn, a)
        assert claim(pg_store, "other", [a], 1) == {a: gen + 1}


def test_a_sync_under_a_lost_lease_does_not_touch_the_server_or_the_store(pg_store, imap_user):
    raw = b"From: a@example.org\r\nMessage-ID: <fence1@example.org>\r\nSubject: x\r\n\r\nbody\r\n"
    imap_user.server.load(imap_user.name, [("INBOX", raw, ())])
    acc = account_for(imap_user, "fenced")
    with UnitOfWork(pg_store) as uow:
        a = repo.account_id(uow.connection, acc.name, acc.host, acc.username)
        lease_repo.offer(uow.connection, [a])
        uow.commit()
    (gen,) = claim(pg_store, "me", [a], 1).values()
    ok = sync_account(pg_store, acc, fence=Fence(a, acc.name, "me", gen))
    assert ok.ok, ok.error
    imap_user.server.load(imap_user.name, [("INBOX", raw.replace(b"fence1", b"fence2"), ())])
    with pg_store.engine.begin() as conn:
        lease_repo.release(conn, "me", [a])
    assert claim(pg_store, "other", [a], 1) == {a: gen + 1}
    with pg_store.engine.connect() as conn:
        before = (conn.execute(select(func.count()).select_from(placements)).scalar(),
                  conn.execute(select(func.count()).select_from(sync_runs)).scalar())
    stale = sync_account(pg_store, acc, fence=Fence(a, acc.name, "me", gen))
    assert not stale.ok and "taken over by worker other" in stale.error
    with pg_store.engine.connect() as conn:
        after = (conn.execute(select(func.count()).select_from(placements)).scalar(),
                 conn.execute(select(func.count()).select_from(sync_runs)).scalar())
    assert after == before == (1, 1)


def test_worker_mode_is_refused_on_sqlite_naming_the_fix(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    from mailsync.push.worker import WorkerDaemon

    with pytest.raises(ConfigError) as err:
        WorkerDaemon(store, [])
    assert "needs a PostgreSQL store" in str(err.value) and "postgresql+psycopg://" in err.value.hint
    store.dispose()


def test_postgresql_stores_notify_each_queued_local_change_new_or_migrated(postgres):
    """The pending_ops trigger: made by create_schema for a new store, and by the migration for an
    older one; a LISTEN sees the account id of each change at its commit."""
    import secrets

    import psycopg

    from mailsync.store.db import create_store_engine, migrate
    from mailsync.store.tables import LOCAL_CHANGES_CHANNEL

    new_url = postgres.create_database(f"notify_new_{secrets.token_hex(3)}")
    old_url = postgres.create_database(f"notify_old_{secrets.token_hex(3)}")
    engine = create_store_engine(old_url)
    migrate(engine, "0015_headers_only_maxsize")  # the revision before the leases
    engine.dispose()
    for url in (new_url, old_url):
        store = open_store(url)
        (a,) = make_accounts(store, 1)
        dbname = url.rsplit("/", 1)[1]
        with psycopg.connect(postgres.dsn(dbname), autocommit=True) as listener:
            listener.execute(f"LISTEN {LOCAL_CHANGES_CHANNEL}")
            with store.engine.begin() as conn:
                conn.execute(text("INSERT INTO pending_ops (account_id, kind, args, state, attempts, created_at) "
                                  "VALUES (:a, 'flags', '{}', 'pending', 0, now())"), {"a": a})
            notes = list(listener.notifies(timeout=2.0, stop_after=1))
        assert [n.payload for n in notes] == [str(a)], url
        store.dispose()


def test_rows_of_workers_gone_for_an_hour_are_forgotten(pg_store):
    with pg_store.engine.begin() as conn:
        lease_repo.register(conn, "old", "h", 1, None, 30.0)
        lease_repo.register(conn, "recent", "h", 2, None, 30.0)
        conn.execute(text("UPDATE watch_workers SET heartbeat_at = now() - interval '2 hours' WHERE id = 'old'"))
        assert lease_repo.forget_dead(conn) == 1
        assert [w for (w,) in conn.execute(text("SELECT id FROM watch_workers"))] == ["recent"]


def test_a_worker_session_stalled_inside_a_fenced_transaction_is_ended_within_a_lease_ttl(pg_store, postgres):
    """A worker's store sessions carry idle_in_transaction_session_timeout = lease_ttl
    (lease_repo.end_stalled_transactions): a session that took the fence's FOR SHARE lock and then
    went silent (a worker cut off, or frozen) is ended by PostgreSQL, and another worker can take
    the lease row over; an engine without it keeps the row locked."""
    (a,) = make_accounts(pg_store, 1)
    assert claim(pg_store, "old", [a], 1, ttl=1.0) == {a: 1}
    stalled = open_store(pg_store.url)
    lease_repo.end_stalled_transactions(stalled.engine, 1.0)
    try:
        conn = stalled.engine.connect()
        conn.execute(text("SELECT generation FROM account_leases WHERE account_id = :a FOR SHARE"), {"a": a})

        def locked() -> bool:
            with pg_store.engine.connect() as other:
                return other.execute(text("SELECT account_id FROM account_leases WHERE account_id = :a "
                                          "FOR UPDATE SKIP LOCKED"), {"a": a}).first() is None

        assert locked()  # the silent session holds the fence's lock
        deadline = time.monotonic() + 5
        while locked() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not locked()  # ended by the server within about a lease_ttl
        assert claim(pg_store, "new", [a], 1) == {a: 2}
        with pytest.raises(Exception):
            conn.execute(text("SELECT 1"))  # the stalled session is gone
        conn.invalidate()
    finally:
        stalled.dispose()
