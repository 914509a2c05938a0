"""Who should sync which account: the balancing rules of `mailsync watch --worker`, as pure functions.

Owns: the fair share of each live worker (quotas), and, for one worker, the plan of one lease round:
which accounts it has lost, which it should try to claim, which it should give back. State in, plan
out: no clock, no database, no I/O (mailsync.store.lease_repo reads the state and carries the plan
out; mailsync.push.worker runs the rounds). Must not: import the store or the daemon.

The rules, the same in every worker so that they agree without talking to each other:
  Q1 The live workers (heartbeat younger than their TTL) share the accounts: each gets
     floor(N / W), the first N mod W of them in the order of their ids one more; a worker's
     ``max_accounts`` caps its share, and what it cannot take is shared among the others the same
     way (water-filling). Every worker computes the same quotas from the same table.
  Q2 A lease is held while it has not expired (the database's clock decides). An expired lease is
     free, whoever held it: a dead worker's accounts are taken over once its leases expire.
  Q3 A worker under its quota claims free accounts, up to the quota. It never takes a lease another
     worker holds: a worker over its quota gives accounts back (Q4) and they are then free.
  Q4 A worker over its quota releases the surplus at once, choosing accounts that are not syncing
     first, then the most recently acquired (the least settled).
  Q5 An account this worker believes it holds but the table says is another's, or of another
     generation, is lost: the worker stops watching it at once (its writes would be refused anyway,
     lease_repo.Fence).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as the table shows it. ``max_accounts`` None: no cap."""

    id: str
    max_accounts: int | None = None


@dataclass(frozen=True)
class Lease:
    """One account's lease row: ``worker`` None when free; times are seconds on the database clock."""

    account_id: int
    worker: str | None
    generation: int
    expires_at: float | None = None
    acquired_at: float | None = None

    def held_at(self, now: float) -> bool:
        """Rule Q2."""
        return self.worker is not None and self.expires_at is not None and self.expires_at > now


@dataclass(frozen=True)
class RoundPlan:
    """What one worker does in one lease round."""

    quota: int
    lost: tuple[int, ...] = ()  # stop watching at once (Q5)
    claim: tuple[int, ...] = ()  # free accounts to try, in order of preference (Q3)
    want: int = 0  # how many of ``claim`` to take at most
    release: tuple[int, ...] = ()  # give back now (Q4)
    held: frozenset[int] = field(default_factory=frozenset)  # what the table says this worker holds


def quotas(workers: Iterable[WorkerInfo], accounts: int) -> dict[str, int]:
    """Rule Q1: each live worker's share of ``accounts``; sums to min(accounts, total capacity)."""
    unique = {w.id: w for w in workers}.values()
    share = {w.id: 0 for w in unique}
    left = max(0, accounts)
    # the smallest caps first: a worker whose cap is below an even share takes its cap, and the rest
    # is shared among the others; those left all have room for an even share plus one
    rest = sorted(unique, key=lambda w: (w.max_accounts is None, w.max_accounts or 0, w.id))
    while rest and rest[0].max_accounts is not None and rest[0].max_accounts <= left // len(rest):
        share[rest[0].id] = rest[0].max_accounts
        left -= rest[0].max_accounts
        rest.pop(0)
    if rest:
        base, extra = divmod(left, len(rest))
        for i, w in enumerate(sorted(rest, key=lambda w: w.id)):
            share[w.id] = base + (1 if i < extra else 0)
    return share


def plan_round(me: str, workers: Sequence[WorkerInfo], leases: Mapping[int, Lease], accounts: Collection[int],
               now: float, *, believed: Mapping[int, int] | None = None,
               busy: Collection[int] = (), only_mine: bool = False) -> RoundPlan:
    """The plan of one round for worker ``me``.

    ``workers``: the live workers (``me`` is counted even if its heartbeat is not in yet);
    ``leases``: account id -> lease row (an account with no row is free); ``accounts``: the accounts
    to share; ``believed``: account id -> generation this worker thinks it holds; ``busy``: accounts
    of this worker with a sync running (released last, Q4). ``only_mine``: ``leases`` holds this
    worker's rows only (the others' are not read); ``claim`` is then left empty and the caller
    claims ``want`` of the free rows among ``accounts`` itself (lease_repo.claim does, in SQL).
    """
    pool = set(accounts)
    live = list(workers)
    if all(w.id != me for w in live):
        live.append(WorkerInfo(me))
    quota = quotas(live, len(pool)).get(me, 0)
    held = {a: l for a, l in leases.items() if a in pool and l.worker == me and l.held_at(now)}
    believed = dict(believed or {})
    lost = tuple(sorted(a for a, gen in believed.items()
                        if a not in held or held[a].generation != gen))
    surplus = len(held) - quota
    release: tuple[int, ...] = ()
    want = 0
    claim: tuple[int, ...] = ()
    if surplus > 0:
        busy_set = set(busy)
        order = sorted(held.values(), key=lambda l: (l.account_id in busy_set, -(l.acquired_at or 0.0), -l.account_id))
        release = tuple(sorted(l.account_id for l in order[:surplus]))
    elif surplus < 0:
        want = -surplus
        if not only_mine:
            free = [a for a in pool if a not in leases or not leases[a].held_at(now)]
            claim = tuple(_spread(free, me))
    return RoundPlan(quota=quota, lost=lost, claim=claim, want=want, release=release, held=frozenset(held))


def _spread(free: Iterable[int], me: str) -> list[int]:
    """Free accounts in an order of this worker's own, so that workers claiming at the same moment
    mostly try different rows (the database skips the rows another claim has locked anyway)."""
    salt = sum(me.encode()) * 2654435761
    return sorted(free, key=lambda a: ((a * 2654435761) ^ salt) & 0xFFFFFFFF)


def imbalance(held: Mapping[str, int], quota: Mapping[str, int]) -> int:
    """How many accounts are not where rule Q1 would put them (0: balanced)."""
    return sum(abs(held.get(w, 0) - q) for w, q in quota.items()) // 2 + sum(
        n for w, n in held.items() if w not in quota)
