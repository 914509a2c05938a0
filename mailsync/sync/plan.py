"""The sync rules, in one place, as pure functions: views in, plans out.

Owns: every decision about what a sync does. Must not: do I/O (no sockets, no store); engine.py
gathers the views and carries the plans out.

Server -> store rules (this is the full-comparison path; delta paths reach the same plans):
  F1  A folder is synced when its decoded name matches an `folders` pattern and no `exclude`
      pattern (fnmatch, case-sensitive; INBOX matched case-insensitively), and it is selectable.
  F2  A folder known locally but no longer listed (or no longer selected) is dropped from the store
      with its placements: the server is the source of truth in this direction.
  F3  A folder whose UIDVALIDITY changed while it holds placements is put aside (status "aside"):
      nothing is deleted and nothing downloaded until the change is resolved. A folder with no
      placements simply adopts the new UIDVALIDITY.
  M1  A UID on the server and not in the store is new: its message is downloaded.
  M2  A UID in the store and not on the server was expunged: its placement is removed.
  M3  A UID on both sides with different flags takes the server's flags (\\Recent never stored).
  C1  Checkpoints never move ahead of data: `fetched_uid` moves with each committed batch; UIDNEXT
      and HIGHESTMODSEQ move only in the transaction that completes the folder, and only to the
      values read at SELECT, before the listing that the folder's data came from.
  C2  Every step is idempotent: a rerun after a crash recomputes the plan from what was committed,
      and placements are unique by (folder, uid), so nothing is duplicated.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


def folder_selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Rule F1 (name part)."""

    def match(pattern: str) -> bool:
        if pattern.upper() == "INBOX" or name.upper() == "INBOX":
            return name.upper() == pattern.upper() or fnmatch.fnmatchcase(name.upper(), pattern.upper())
        return fnmatch.fnmatchcase(name, pattern)

    return any(match(p) for p in include) and not any(match(p) for p in exclude)


@dataclass(frozen=True)
class FolderView:
    """A folder as one side sees it."""

    raw_name: str
    name: str
    delimiter: str | None = None
    special_use: str | None = None


@dataclass(frozen=True)
class FolderPlan:
    create: tuple[FolderView, ...] = ()
    update: tuple[FolderView, ...] = ()  # known folders whose metadata (name, special-use) changed
    drop: tuple[str, ...] = ()  # raw names (rule F2)
    sync: tuple[str, ...] = ()  # raw names, in order


def plan_folders(remote: Iterable[FolderView], local: Mapping[str, FolderView]) -> FolderPlan:
    """Rules F1 (given the already-filtered remote list) and F2."""
    remote = list(remote)
    remote_names = {f.raw_name for f in remote}
    create = tuple(f for f in remote if f.raw_name not in local)
    update = tuple(f for f in remote if f.raw_name in local and local[f.raw_name] != f)
    drop = tuple(sorted(n for n in local if n not in remote_names))
    # INBOX first, then by name: the folder people look at first is ready first.
    order = sorted(remote_names, key=lambda n: (n.upper() != "INBOX", n))
    return FolderPlan(create=create, update=update, drop=drop, sync=tuple(order))


@dataclass(frozen=True)
class UidvalidityDecision:
    action: str  # "keep" | "adopt" | "aside"
    reason: str | None = None


def decide_uidvalidity(stored: int | None, current: int, placements: int) -> UidvalidityDecision:
    """Rule F3."""
    if stored == current:
        return UidvalidityDecision("keep")
    if stored is None or placements == 0:
        return UidvalidityDecision("adopt")
    return UidvalidityDecision(
        "aside", f"UIDVALIDITY changed from {stored} to {current}; the folder is set aside, nothing was deleted")


@dataclass
class MessagePlan:
    new: list[int] = field(default_factory=list)  # sorted UIDs to download (M1)
    expunged: list[int] = field(default_factory=list)  # sorted UIDs to remove (M2)
    flags: dict[int, str] = field(default_factory=dict)  # uid -> new flags text (M3)

    @property
    def empty(self) -> bool:
        return not (self.new or self.expunged or self.flags)


def flags_text(flags: Iterable[str]) -> str:
    """The stored form of a flag set: sorted, unique, space-separated, without \\Recent."""
    return " ".join(sorted({f for f in flags if f.lower() != "\\recent"}))


def plan_messages(remote: Mapping[int, Iterable[str]], local: Mapping[int, str]) -> MessagePlan:
    """Rules M1-M3: remote uid -> flags, local uid -> stored flags text."""
    plan = MessagePlan()
    for uid in sorted(remote):
        if uid not in local:
            plan.new.append(uid)
        else:
            text = flags_text(remote[uid])
            if text != local[uid]:
                plan.flags[uid] = text
    plan.expunged = sorted(uid for uid in local if uid not in remote)
    return plan
