"""What a two-way channel does with the pairs it made, decided without I/O: their state in, actions out.

A two-way channel keeps one folder set of account A ("from") and one of account B ("to") holding
the same messages: new messages are copied both ways (plan.plan_copy, run once per direction),
and for every pair (a message of A and its counterpart in B, linked in channel_pairs) a change
made on either side since the pair's last agreed state reaches the other side.

Owns: the rules below, for pairs and for the channel's folders. Must not: read or write the store
(run.py does), or speak IMAP (each account's sync sends what run.py queues in its journal).

Rules for a pair (each side: its folder, its UID, its flags; the pair: the agreed flags and the
agreed folder of each side, by folder id, so a folder rename is not a move):
  T1  A side waiting for the server (no UID: an APPEND or a MOVE still queued) makes the pair wait.
  T2  Both sides gone: the pair is dropped.
  T3  One side gone (deleted there, or its folder gone): with delete = "propagate" the other side is
      deleted too; with delete = "none" it stays, and so does the pair, so that the survivor is
      never copied back to the side that deleted it (loop-free).
  T4  Flags are merged per flag against the agreed flags: a flag one side changed takes that
      side's value; a flag neither changed keeps the agreed one; both sides changing one flag can
      only have changed it the same way. With no agreed flags yet (a pair found already there, or
      one a copy or mirror channel made), the merge is the union: a flag set on either side stays.
  T5  Moves: a side whose folder is not the agreed one was moved (by a client of that side); the
      other side is moved to the counterpart folder (a MOVE, never a delete and a new copy). Both
      moved: if they agree, nothing to do; if not, A wins (B follows A).
  T6  With nothing waiting, the pair's agreed state becomes what both sides now hold (written in
      the same transaction as the actions that bring them there, never before them).
  T7  A guard no peer has: deletions T3 would pass on into one folder of a side, more than
      MASS_DELETE of them and more than half the pairs whose survivor is in that folder (a folder
      gone by mistake, a server that lost a mailbox), are held: the pairs stay as they are, the run
      says so, and `mailsync sync --allow-deletions` lets them through.
  \\Recent is never merged (a session flag, RFC 3501).

  T0  Before all of these, a side that is gone whose message (its SHA-256) is held, unpaired, in a
      selected folder of that side again (a client deleted and re-added it, a rename the engine could
      not tell from a new folder, a UIDVALIDITY change) is that placement now: the pair follows it,
      and T5 sees a move where T3 would have seen a deletion.

Rules for the folders (channel_folders: an A folder, its B folder, the names they had when agreed):
  G1  A selected folder of A with no row: its mapped B folder is created when missing, and the
      two are recorded; in two-way, the same for a folder of B whose counterpart A name is selected.
  G2  A row whose A folder was renamed (its name is not the agreed one) and whose B folder was not:
      the B folder is renamed to the new name's counterpart; and the other way round in two-way.
      Both renamed to names that do not correspond: A wins.
  G3  A row with either folder gone: nothing (folder deletions are not passed on; the messages in
      it are, by T3), and the row stays, so that the survivor is not created again on the other side.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

SESSION_FLAGS = frozenset({"\\Recent"})
MASS_DELETE = 50  # rule T7


@dataclass(frozen=True)
class Side:
    """One placement of a pair as the store has it now."""

    folder_id: int | None  # None: gone (deleted, or its folder gone)
    folder: str | None  # decoded name
    uid: int | None  # None: waiting for the server
    flags: str = ""


@dataclass(frozen=True)
class PairNow:
    pair_id: int
    a: Side
    b: Side
    agreed_flags: str | None = None
    agreed_a: int | None = None  # folder ids
    agreed_b: int | None = None


@dataclass(frozen=True)
class SideAction:
    side: str  # "a" | "b"
    kind: str  # "flags" | "move" | "delete"
    folder: str
    uid: int
    pair_id: int
    to_folder: str | None = None  # move
    add: tuple[str, ...] = ()  # flags
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Agreement:
    pair_id: int
    flags: str
    a_folder: int
    b_folder: int


@dataclass
class PairPlan:
    actions: list[SideAction] = field(default_factory=list)
    agreements: list[Agreement] = field(default_factory=list)
    drops: list[int] = field(default_factory=list)  # pair ids
    held: list[tuple[str, str, int, int]] = field(default_factory=list)  # T7: (side, folder, deletions, pairs there)


def _flags(text: str | None) -> set[str]:
    return set((text or "").split()) - SESSION_FLAGS


def merge_flags(a: str, b: str, agreed: str | None) -> set[str]:
    """Rule T4."""
    fa, fb = _flags(a), _flags(b)
    if agreed is None:
        return fa | fb
    base = _flags(agreed)
    merged = set()
    for flag in fa | fb | base:
        in_base = flag in base
        in_a, in_b = flag in fa, flag in fb
        value = in_a if in_a != in_base else in_b
        if value:
            merged.add(flag)
    return merged


def _flag_action(side: str, s: Side, want: set[str], pair_id: int) -> SideAction | None:
    have = _flags(s.flags)
    if have == want:
        return None
    assert s.folder is not None and s.uid is not None
    return SideAction(side, "flags", s.folder, s.uid, pair_id, add=tuple(sorted(want - have)),
                      remove=tuple(sorted(have - want)))


def plan_pairs(pairs: Sequence[PairNow], a_to_b: Callable[[str], str], b_to_a: Callable[[str], str], *,
               propagate: bool, allow_mass_delete: bool = False) -> PairPlan:
    """Rules T1-T7. ``a_to_b(A folder)`` is its B counterpart's name, ``b_to_a`` the other way."""
    plan = _plan_pairs(pairs, a_to_b, b_to_a, propagate=propagate)
    if allow_mass_delete:
        return plan
    population: Counter = Counter()
    for p in pairs:
        population.update((side, s.folder) for side, s in (("a", p.a), ("b", p.b)) if s.folder is not None)
    too_many = held_deletions([((a.side, a.folder), a.pair_id) for a in plan.actions if a.kind == "delete"],
                              population)
    held = {a.pair_id for a in plan.actions if a.kind == "delete" and (a.side, a.folder) in too_many}
    plan.held += [(side, folder, n, there) for (side, folder), (n, there) in sorted(too_many.items())]
    if held:
        plan.actions = [a for a in plan.actions if a.pair_id not in held]
        plan.drops = [d for d in plan.drops if d not in held]
    return plan


def held_deletions(deletions: Sequence[tuple[object, int]], population: Mapping[object, int]
                   ) -> dict[object, tuple[int, int]]:
    """Rule T7: of ``deletions`` (folder key, pair id), the folders that would lose more than
    MASS_DELETE messages and more than half of the ``population`` (pairs with a message there):
    folder key -> (deletions, population)."""
    count = Counter(key for key, _pair in deletions)
    return {key: (n, population.get(key, 0)) for key, n in count.items()
            if n > MASS_DELETE and n * 2 > population.get(key, 0)}


def _plan_pairs(pairs: Sequence[PairNow], a_to_b: Callable[[str], str], b_to_a: Callable[[str], str], *,
                propagate: bool) -> PairPlan:
    plan = PairPlan()
    for p in pairs:
        if (p.agreed_flags is not None and p.a.flags == p.b.flags == p.agreed_flags and p.a.uid is not None
                and p.b.uid is not None and p.a.folder_id == p.agreed_a and p.b.folder_id == p.agreed_b):
            continue  # in step, as the store writes flags (sorted): the common case, decided at no cost
        a_gone, b_gone = p.a.folder_id is None, p.b.folder_id is None
        if a_gone and b_gone:
            plan.drops.append(p.pair_id)  # T2
            continue
        if a_gone or b_gone:  # T3
            survivor, side = (p.b, "b") if a_gone else (p.a, "a")
            if propagate and survivor.uid is not None:
                assert survivor.folder is not None
                plan.actions.append(SideAction(side, "delete", survivor.folder, survivor.uid, p.pair_id))
                plan.drops.append(p.pair_id)
            continue
        if p.a.uid is None or p.b.uid is None:
            continue  # T1
        assert p.a.folder is not None and p.b.folder is not None
        merged = merge_flags(p.a.flags, p.b.flags, p.agreed_flags)
        for side, s in (("a", p.a), ("b", p.b)):
            action = _flag_action(side, s, merged, p.pair_id)
            if action is not None:
                plan.actions.append(action)
        a_moved = p.agreed_a is not None and p.a.folder_id != p.agreed_a
        b_moved = p.agreed_b is not None and p.b.folder_id != p.agreed_b
        want_b = a_to_b(p.a.folder)
        if b_moved and not a_moved and b_to_a(p.b.folder) != p.a.folder:  # T5: B's client moved it
            plan.actions.append(SideAction("a", "move", p.a.folder, p.a.uid, p.pair_id,
                                           to_folder=b_to_a(p.b.folder)))
            continue  # agreed once the move is settled (T1 then T6)
        if want_b != p.b.folder and not (b_moved and not a_moved):  # A moved, or both and A wins
            plan.actions.append(SideAction("b", "move", p.b.folder, p.b.uid, p.pair_id, to_folder=want_b))
            continue
        agreement = Agreement(p.pair_id, " ".join(sorted(merged)), p.a.folder_id, p.b.folder_id)  # T6
        if (agreement.flags, agreement.a_folder, agreement.b_folder) != (
                " ".join(sorted(_flags(p.agreed_flags))) if p.agreed_flags is not None else None,
                p.agreed_a, p.agreed_b):
            plan.agreements.append(agreement)
    return plan


def relinks(gone: Sequence[tuple[int, str, str]], free: Mapping[tuple[str, str], list[int]]
            ) -> list[tuple[int, str, int]]:
    """Rule T0: ``gone`` (pair id, side, SHA-256) of the sides gone, ``free`` (side, SHA-256) ->
    unpaired placements of that side; each placement given to one pair. (pair id, side, placement id)."""
    out = []
    for pair_id, side, sha in gone:
        ids = free.get((side, sha))
        if ids:
            out.append((pair_id, side, ids.pop(0)))
    return out


@dataclass(frozen=True)
class FolderNow:
    """A folder of one side as the store has it (live ones only)."""

    folder_id: int
    name: str


@dataclass(frozen=True)
class FolderRow:
    row_id: int
    a_id: int
    b_id: int
    a_name: str  # as agreed
    b_name: str


@dataclass
class FolderPlan:
    mkdirs: list[tuple[str, str]] = field(default_factory=list)  # (side, name) to create there (G1)
    links: list[tuple[str, str]] = field(default_factory=list)  # (A name, B name) to record once both exist
    renames: list[tuple[str, str, str, int]] = field(default_factory=list)  # (side, old, new, row id) G2
    agreed_names: list[tuple[int, str, str]] = field(default_factory=list)  # (row id, A name, B name)


def plan_folders(a: Sequence[FolderNow], b: Sequence[FolderNow], rows: Sequence[FolderRow],
                 a_to_b: Callable[[str], str], b_to_a: Callable[[str], str], selected: Callable[[str], bool], *,
                 two_way: bool) -> FolderPlan:
    """Rules G1-G3. ``a_to_b`` and ``b_to_a``: the folder map (not the links: a renamed folder's
    counterpart is what the map calls its new name); ``selected(A name)``: the channel's patterns."""
    plan = FolderPlan()
    a_by_id, b_by_id = {f.folder_id: f for f in a}, {f.folder_id: f for f in b}
    a_names, b_names = {f.name for f in a}, {f.name for f in b}
    linked_a, linked_b = {r.a_id for r in rows}, {r.b_id for r in rows}
    for r in rows:
        fa, fb = a_by_id.get(r.a_id), b_by_id.get(r.b_id)
        if fa is None or fb is None:
            continue  # G3
        a_renamed, b_renamed = fa.name != r.a_name, fb.name != r.b_name
        if a_renamed or (b_renamed and not two_way):  # A renamed (A wins a double rename); a mirror's B follows A
            want = a_to_b(fa.name)
            if fb.name != want:
                plan.renames.append(("b", fb.name, want, r.row_id))
                continue
        elif b_renamed:
            want = b_to_a(fb.name)
            if fa.name != want:
                plan.renames.append(("a", fa.name, want, r.row_id))
                continue
        if a_renamed or b_renamed:
            plan.agreed_names.append((r.row_id, fa.name, fb.name))
    planned_b: set[str] = set()
    for f in a:
        if f.folder_id in linked_a or not selected(f.name):
            continue
        target = a_to_b(f.name)
        if target not in b_names and target not in planned_b:
            plan.mkdirs.append(("b", target))
            planned_b.add(target)
        plan.links.append((f.name, target))
    if two_way:
        linked_targets = {t for _, t in plan.links}
        linked_origins = {a_by_id[i].name for i in linked_a if i in a_by_id} | {o for o, _ in plan.links}
        for f in b:
            if f.folder_id in linked_b or f.name in linked_targets:
                continue
            origin = b_to_a(f.name)
            if not selected(origin) or origin in linked_origins:
                continue  # an A folder is linked to one B folder only
            linked_origins.add(origin)
            if origin not in a_names:
                plan.mkdirs.append(("a", origin))
            plan.links.append((origin, f.name))
    return plan


@dataclass
class Holdings:
    """One side's messages a copy could be paired with, by folder: each used once (a two-way pair is
    one message on each side; two equal messages in a folder are two pairs, or two copies)."""

    by_sha: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # folder -> sha -> placement ids
    by_key: dict[str, dict[tuple[str, int], list[int]]] = field(default_factory=dict)
    used: set[int] = field(default_factory=set)

    def add(self, folder: str, placement_id: int, sha: str, message_id: str | None, size: int) -> None:
        self.by_sha.setdefault(folder, {}).setdefault(sha, []).append(placement_id)
        if message_id:
            self.by_key.setdefault(folder, {}).setdefault((message_id, size), []).append(placement_id)

    def take(self, folder: str, sha: str, message_id: str | None, size: int) -> int | None:
        """Rule C2 for a two-way channel: a placement of ``folder`` holding the message, taken."""
        candidates = [self.by_sha.get(folder, {}).get(sha)]
        if message_id:
            candidates.append(self.by_key.get(folder, {}).get((message_id, size)))
        for ids in candidates:
            while ids:
                found = ids.pop(0)
                if found not in self.used:
                    self.used.add(found)
                    return found
        return None


@dataclass
class SideCopies:
    mkdirs: list[str] = field(default_factory=list)  # folders of the other side to create first (C4)
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (this side's id, the other side's id) C2
    copies: list[tuple[object, str]] = field(default_factory=list)  # (message, the other side's folder)


def plan_side_copies(messages: Sequence, target: Callable[[str], str], selected: Callable[[str], bool],
                     other: Holdings, existing: set[str]) -> SideCopies:
    """New messages of one side (plan.SourceMessage each, not paired yet): paired with what the other
    side holds (C2, each held message once), else copied there (C1, C4; no shared copies: C3 is for
    one-way channels only)."""
    out = SideCopies()
    for m in messages:
        if not selected(m.folder):
            continue
        folder = target(m.folder)
        if folder not in existing and folder not in out.mkdirs:
            out.mkdirs.append(folder)
        found = other.take(folder, m.sha256, m.message_id, m.size)
        if found is not None:
            out.pairs.append((m.placement_id, found))
        else:
            out.copies.append((m, folder))
    return out
