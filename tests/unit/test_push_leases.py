"""The balancing rules of `mailsync watch --worker` (mailsync.push.leases): quotas, and the plan of
one lease round, as tables; then many rounds of several workers against an in-memory lease table
that claims the way the database does, with workers joining, leaving and dying."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsync.push.leases import Lease, WorkerInfo, imbalance, plan_round, quotas


@pytest.mark.parametrize("workers, n, expected", [
    ([WorkerInfo("a"), WorkerInfo("b"), WorkerInfo("c")], 10, {"a": 4, "b": 3, "c": 3}),
    ([WorkerInfo("c"), WorkerInfo("a"), WorkerInfo("b")], 10, {"a": 4, "b": 3, "c": 3}),  # order of ids
    ([WorkerInfo("a"), WorkerInfo("b")], 0, {"a": 0, "b": 0}),
    ([WorkerInfo("a"), WorkerInfo("b")], 1, {"a": 1, "b": 0}),
    ([WorkerInfo("a", 2), WorkerInfo("b"), WorkerInfo("c")], 10, {"a": 2, "b": 4, "c": 4}),  # cap: shared out
    ([WorkerInfo("a", 2), WorkerInfo("b", 3)], 10, {"a": 2, "b": 3}),  # not enough room: 5 left unheld
    ([WorkerInfo("a", 0), WorkerInfo("b")], 3, {"a": 0, "b": 3}),
    ([], 5, {}),
])
def test_quotas(workers, n, expected):
    assert quotas(workers, n) == expected


@given(caps=st.lists(st.one_of(st.none(), st.integers(0, 40)), min_size=1, max_size=12), n=st.integers(0, 300))
def test_quotas_share_everything_that_fits_and_evenly(caps, n):
    workers = [WorkerInfo(f"w{i:02}", c) for i, c in enumerate(caps)]
    q = quotas(workers, n)
    room = sum(10**9 if c is None else c for c in caps)
    assert sum(q.values()) == min(n, room)
    for w in workers:
        assert 0 <= q[w.id] <= (w.max_accounts if w.max_accounts is not None else n)
    uncapped = [q[w.id] for w in workers if w.max_accounts is None or q[w.id] < w.max_accounts]
    if uncapped:  # those not at their cap differ by one at most
        assert max(uncapped) - min(uncapped) <= 1


NOW = 1000.0


def lease(a, worker, gen=1, expires=NOW + 10, acquired=NOW - 5):
    return Lease(a, worker, gen, expires, acquired)


def test_a_new_worker_claims_up_to_its_share_of_free_and_expired_accounts():
    leases = {1: lease(1, "a"), 2: lease(2, "a"), 3: lease(3, "dead", expires=NOW - 1), 4: lease(4, None)}
    plan = plan_round("b", [WorkerInfo("a")], leases, [1, 2, 3, 4, 5, 6], NOW)
    assert plan.quota == 3
    assert plan.want == 3
    assert set(plan.claim) == {3, 4, 5, 6}  # never 1 or 2: held by a live worker (Q3)
    assert plan.release == () and plan.lost == ()


def test_with_only_its_own_rows_a_worker_leaves_the_choice_of_free_accounts_to_the_claim():
    mine = {1: lease(1, "b")}
    plan = plan_round("b", [WorkerInfo("a"), WorkerInfo("b")], mine, range(1, 7), NOW, believed={1: 1},
                      only_mine=True)
    assert (plan.quota, plan.want, plan.claim, plan.held) == (3, 2, (), {1})


def test_a_worker_over_its_share_releases_idle_and_recent_accounts_first():
    leases = {a: lease(a, "a", acquired=NOW - 100 + a) for a in range(1, 7)}
    plan = plan_round("a", [WorkerInfo("a"), WorkerInfo("b")], leases, range(1, 7), NOW, busy={6})
    assert plan.quota == 3
    assert plan.release == (3, 4, 5)  # 6 is the most recent but syncing: kept
    assert plan.claim == () and plan.want == 0


def test_lost_accounts_are_those_taken_over_or_of_another_generation():
    leases = {1: lease(1, "a", gen=3), 2: lease(2, "b", gen=5), 3: lease(3, "a", gen=8), 4: lease(4, "a", expires=NOW)}
    plan = plan_round("a", [WorkerInfo("a"), WorkerInfo("b")], leases, [1, 2, 3, 4], NOW,
                      believed={1: 3, 2: 4, 3: 7, 4: 1})
    assert plan.lost == (2, 3, 4)  # 2: another's; 3: claimed again since (a pause); 4: expired
    assert plan.held == {1, 3}


def test_accounts_no_longer_configured_are_not_held():
    leases = {1: lease(1, "a"), 9: lease(9, "a")}
    plan = plan_round("a", [WorkerInfo("a")], leases, [1], NOW, believed={1: 1, 9: 1})
    assert plan.lost == (9,) and plan.held == {1}


class Table:
    """The lease table, claimed the way lease_repo does: only rows free or expired, generation + 1."""

    def __init__(self, accounts):
        self.rows = {a: Lease(a, None, 0) for a in accounts}

    def claim(self, me, candidates, want, now, ttl):
        got = {}
        for a in candidates:
            if len(got) == want:
                break
            row = self.rows[a]
            if not row.held_at(now):
                self.rows[a] = Lease(a, me, row.generation + 1, now + ttl, now)
                got[a] = row.generation + 1
        return got

    def release(self, me, ids, now):
        for a in ids:
            row = self.rows[a]
            if row.worker == me:
                self.rows[a] = Lease(a, None, row.generation, now, row.acquired_at)

    def renew(self, me, now, ttl):
        for a, row in self.rows.items():
            if row.worker == me and row.held_at(now):
                self.rows[a] = Lease(a, me, row.generation, now + ttl, row.acquired_at)


def run_rounds(seed, n_accounts=200, ttl=3.0):
    """Workers join, leave (releasing) and die (silently) over many rounds; after each round at
    most one live worker holds an account, and after the churn stops the share converges."""
    rnd = random.Random(seed)
    table = Table(range(n_accounts))
    alive = {f"w{i}": {} for i in range(3)}  # worker -> believed {account: generation}
    now = 0.0
    heartbeats = {w: now for w in alive}
    names = iter(range(3, 1000))  # a worker's id is new for every start

    def round_of(w):
        live = [WorkerInfo(x) for x, t in heartbeats.items() if now - t < ttl]
        table.renew(w, now, ttl)
        heartbeats[w] = now
        plan = plan_round(w, live, table.rows, range(n_accounts), now, believed=alive[w])
        for a in plan.lost:
            del alive[w][a]
        table.release(w, plan.release, now)
        for a in plan.release:
            alive[w].pop(a, None)
        alive[w].update(table.claim(w, plan.claim, plan.want, now, ttl))

    for step in range(60):
        now += 1.0
        if step < 40:
            r = rnd.random()
            if r < 0.1:
                name = f"w{next(names)}"
                alive[name], heartbeats[name] = {}, now
            elif r < 0.15 and len(alive) > 1:
                gone = rnd.choice(sorted(alive))
                table.release(gone, list(alive.pop(gone)), now)
                heartbeats.pop(gone)
            elif r < 0.2 and len(alive) > 1:
                dead = rnd.choice(sorted(alive))
                alive.pop(dead)  # its leases stay until they expire; its heartbeat ages
        for w in rnd.sample(sorted(alive), len(alive)):
            round_of(w)
        owners: dict[int, list[str]] = {}
        for w, mine in alive.items():
            for a, gen in mine.items():
                row = table.rows[a]
                if row.worker == w and row.generation == gen and row.held_at(now):
                    owners.setdefault(a, []).append(w)
        assert all(len(ws) == 1 for ws in owners.values()), owners
    live = {w: 0 for w in alive}
    for w, mine in alive.items():
        live[w] = len(mine)
    q = quotas([WorkerInfo(w) for w in alive], n_accounts)
    assert imbalance(live, q) == 0, (live, q)
    assert sum(live.values()) == n_accounts


@pytest.mark.parametrize("seed", range(20))
def test_many_rounds_with_churn_never_double_hold_and_converge(seed):
    run_rounds(seed)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 120))
def test_rounds_converge_for_any_count(seed, n):
    run_rounds(seed, n_accounts=n)
