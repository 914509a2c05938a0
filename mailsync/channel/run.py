"""Running a copy channel: the plan (plan.py) carried out in the store, the copies left to the
destination account's journal.

Owns: reading both accounts' messages, and writing, per batch and in one transaction each, the
destination folders to create, the copies (a placement waiting for its APPEND and the journal entry
that sends it, the body shared in the store: never downloaded or stored twice) and the pairs (rule
C1). The destination's next sync pushes the journal: APPEND, settled by APPENDUID (or found again
by Message-ID after a crash), so a kill -9 anywhere and a rerun leave exactly one copy. Must not:
speak IMAP (the sync does), or decide (plan.py does).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from mailsync.channel.plan import (ChannelPlan, DestMessages, Folder, MirrorAction, PairState, SourceMessage,
                                   map_folder, plan_copy, plan_mirror)
from mailsync.channel.two_way import held_deletions
from mailsync.config.model import ChannelConfig
from mailsync.errors import MailsyncError
from mailsync.imap import utf7
from mailsync.store import channel_repo as repo_ch
from mailsync.store import repositories as repo
from mailsync.store.db import Store
from mailsync.store.uow import UnitOfWork
from mailsync.sync import journal

BATCH = 2000  # copies per transaction


class ChannelError(MailsyncError):
    """A channel that cannot run (an account never synced, say)."""


@dataclass
class ChannelResult:
    channel: str
    source: str = ""
    dest: str = ""
    copies: int = 0  # queued for the destination's journal in this run
    paired: int = 0  # found in the destination already (rule C2), or sharing a copy (C3)
    folders: list[str] = field(default_factory=list)  # destination folders queued for creation
    folder_map: dict[str, str] = field(default_factory=dict)
    mirrored: dict[str, int] = field(default_factory=dict)  # mirror: "flags", "move", "delete" queued
    # two-way: what goes the other way, into the source's journal
    copies_back: int = 0
    folders_back: list[str] = field(default_factory=list)
    mirrored_back: dict[str, int] = field(default_factory=dict)
    renamed: list[str] = field(default_factory=list)  # "account: old -> new" (rule G2)
    # changes left out because a sync changed their message after the plan was read (planned again)
    skipped: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # deletions held by the mass-delete guard (rule T7)

    @property
    def queued(self) -> bool:
        """Something for the destination's journal: its sync must run again to send it."""
        return bool(self.copies or self.folders or self.mirrored or any(r.startswith(f"{self.dest}:")
                                                                        for r in self.renamed))

    @property
    def queued_source(self) -> bool:
        """Something for the source's journal (a two-way channel)."""
        return bool(self.copies_back or self.folders_back or self.mirrored_back
                    or any(r.startswith(f"{self.source}:") for r in self.renamed))

    def summary(self) -> str:
        parts = [f"{self.copies} to copy" if self.copies else "",
                 f"{self.copies_back} to copy back" if self.copies_back else "",
                 f"{self.paired} already there" if self.paired else "",
                 f"{len(self.folders) + len(self.folders_back)} folder(s) to create"
                 if self.folders or self.folders_back else "",
                 f"{len(self.renamed)} folder(s) to rename" if self.renamed else ""]
        parts += [f"{n} {kind}" for kind, n in sorted(self.mirrored.items())]
        parts += [f"{n} {kind} back" for kind, n in sorted(self.mirrored_back.items())]
        parts += [f"HELD: {why} (mailsync sync --allow-deletions lets them through)" for why in self.held]
        if self.skipped:
            parts.append(f"{len(self.skipped)} left for the next run (changed meanwhile: {self.skipped[0]})")
        return ", ".join(p for p in parts if p) or "nothing to do"


def _folders(rows) -> list[Folder]:
    return [Folder(r.name, r.delimiter, r.special_use) for r in rows]


@dataclass
class _Reading:
    """What a channel reads of the store: both accounts, the plan of its copies and mirror actions."""

    source_id: int
    dest_id: int
    dest_rows: list
    plan: ChannelPlan
    actions: list[MirrorAction]
    held: list[str] = field(default_factory=list)


def _account_ids(c, channel: ChannelConfig) -> dict[str, int]:
    ids = {}
    for role, name in (("from", channel.source), ("to", channel.dest)):
        found = repo_ch.account_by_name(c, name)
        if found is None:
            raise ChannelError(f"channel '{channel.name}': account '{name}' ({role}) has never been synced",
                               hint=f"run mailsync sync {name} first")
        ids[role] = found
    return ids


def _read(c, channel: ChannelConfig, allow_mass_delete: bool = False) -> _Reading:
    ids = _account_ids(c, channel)
    notes: list[str] = []
    source_rows, dest_rows = repo.folders_of(c, ids["from"]), repo.folders_of(c, ids["to"])
    source, dest = _folders(source_rows), _folders(dest_rows)
    messages = [SourceMessage(pid, folder, sha, mid, size, flags or "", idate)
                for pid, folder, sha, mid, size, flags, idate in repo_ch.unpaired_messages(c, channel.name, ids["from"])]
    holdings: dict[str, DestMessages] = {}
    for folder, pid, sha, mid, size in repo_ch.held_messages(c, ids["to"]) if messages else ():  # none: nothing to look for
        held = holdings.setdefault(folder, DestMessages())
        held.by_sha.setdefault(sha, pid)
        if mid:
            held.by_key.setdefault((mid, size), pid)
    plan = plan_copy(messages, source, dest, holdings, include=channel.folders, exclude=channel.exclude,
                     explicit=channel.folder_map)
    actions: list[MirrorAction] = []
    if channel.mode == "mirror":
        def target(folder: str) -> str:
            return plan.folder_map.get(folder) or map_folder(folder, source, dest, channel.folder_map)

        states = [PairState(*row) for row in repo_ch.pair_states(c, channel.name)]
        actions = plan_mirror(states, target, propagate=channel.delete == "propagate")
        held = held_deletions([(a.folder, a.pair_id) for a in actions if a.kind == "delete"],
                              Counter(p.dest_folder for p in states if p.dest_folder is not None))
        if held and not allow_mass_delete:  # rule T7 holds for a mirror too
            actions = [a for a in actions if not (a.kind == "delete" and a.folder in held)]
            notes = [f"{n} deletion(s) in {channel.dest}'s folder {folder!r} (of the {there} message(s) the channel "
                     f"pairs there) are held: more than half of it at once" for folder, (n, there) in held.items()]
    return _Reading(ids["from"], ids["to"], list(dest_rows), plan, actions, notes)


def _new_result(channel: ChannelConfig) -> ChannelResult:
    return ChannelResult(channel.name, source=channel.source, dest=channel.dest)


def _two_way(store: Store, channel: ChannelConfig, *, apply: bool, allow_mass_delete: bool = False) -> ChannelResult:
    from mailsync.channel import run_two_way as tw

    result = _new_result(channel)
    with UnitOfWork(store) as uow:
        ids = _account_ids(uow.connection, channel)
    tw.run_folders(store, channel, ids["from"], ids["to"], result, apply=apply)
    if apply:
        tw.run_relinks(store, channel, ids["from"], ids["to"])
    tw.run_copies(store, channel, ids["from"], ids["to"], result, apply=apply)
    tw.run_pairs(store, channel, ids["from"], ids["to"], result, apply=apply, allow_mass_delete=allow_mass_delete)
    return result


def preview_channel(store: Store, channel: ChannelConfig, *, allow_mass_delete: bool = False) -> ChannelResult:
    """What run_channel would queue now, changing nothing (for `mailsync sync --dry-run`)."""
    if channel.mode == "two-way":
        return _two_way(store, channel, apply=False, allow_mass_delete=allow_mass_delete)
    with UnitOfWork(store) as uow:
        r = _read(uow.connection, channel, allow_mass_delete)
    result = _new_result(channel)
    result.copies, result.paired = len(r.plan.copies), len(r.plan.pairs) + len(r.plan.same)
    result.folders, result.folder_map = list(r.plan.mkdirs), r.plan.folder_map
    for a in r.actions:
        result.mirrored[a.kind] = result.mirrored.get(a.kind, 0) + 1
    result.held += r.held
    return result


_running: dict[str, threading.Lock] = {}
_running_lock = threading.Lock()


def run_channel(store: Store, channel: ChannelConfig, *, allow_mass_delete: bool = False) -> ChannelResult:
    """Plan the channel and queue what it copies. The caller then syncs the destination account (and,
    for a two-way channel with ``queued_source``, the source).

    One run of a channel at a time in a process (the watch daemon runs a two-way channel after the
    sync of either account, on two threads); another process running it at the same moment is
    stopped by the store's unique pair per source message, and told so: its next run plans again."""
    with _running_lock:
        lock = _running.setdefault(channel.name, threading.Lock())
    from sqlalchemy.exc import IntegrityError

    with lock:
        try:
            return _run_channel(store, channel, allow_mass_delete)
        except IntegrityError as exc:
            raise ChannelError(f"channel '{channel.name}': another process ran this channel at the same time "
                               f"and paired the same message first ({type(exc.orig).__name__})",
                               hint="nothing was lost or copied twice; the next run plans again from the store") from exc


def _run_channel(store: Store, channel: ChannelConfig, allow_mass_delete: bool) -> ChannelResult:
    if channel.mode == "two-way":
        return _two_way(store, channel, apply=True, allow_mass_delete=allow_mass_delete)
    result = _new_result(channel)
    if channel.mode == "mirror":  # folders created and renamed first (rules G1-G3)
        from mailsync.channel import run_two_way as tw

        with UnitOfWork(store) as uow:
            ids = _account_ids(uow.connection, channel)
        tw.run_folders(store, channel, ids["from"], ids["to"], result)
    with UnitOfWork(store) as uow:
        c = uow.connection
        r = _read(c, channel, allow_mass_delete)
        result.held += r.held
        plan, dest_rows = r.plan, r.dest_rows
        result.folder_map = plan.folder_map
        folder_ids = {row.name: row.id for row in dest_rows}
        raws = {row.name: row.raw_name for row in dest_rows}
        delimiter = next((row.delimiter for row in dest_rows if row.delimiter), None)
        for name in plan.mkdirs:  # rule C4: before the copies that go into them
            raw = utf7.encode(name)
            kind, args = journal.encode(journal.Mkdir(raw))
            folder_ids[name] = repo_ch.add_folder_to_create(c, r.dest_id, name, raw, delimiter, kind, args)
            raws[name] = raw
            result.folders.append(name)
        repo_ch.add_pairs(c, channel.name, plan.pairs)
        result.paired += len(plan.pairs)
        uow.commit()
        copied: dict[tuple[str, str], int] = {}
        kind = journal.kind_of(journal.Append(""))
        appends = {folder: journal.encode(journal.Append(raws[folder]))[1]
                   for folder in {c.folder for c in plan.copies}}
        for i in range(0, len(plan.copies), BATCH):
            batch = plan.copies[i:i + BATCH]
            args = [appends[copy.folder] for copy in batch]
            ids = repo_ch.add_copies(c, r.dest_id, [(folder_ids[copy.folder], copy.src.sha256, copy.src.flags,
                                                     copy.src.internaldate, copy.src.size) for copy in batch],
                                     kind, args)
            copied.update({(copy.folder, copy.src.sha256): pid for copy, pid in zip(batch, ids)})
            repo_ch.add_pairs(c, channel.name, [(copy.src.placement_id, pid, copy.src.sha256)
                                                for copy, pid in zip(batch, ids)])
            uow.commit()  # each batch whole: its copies, their journal entries and their pairs (C1)
            result.copies += len(batch)
        same = [(src, copied[(folder, sha)], sha) for src, folder, sha in plan.same]
        repo_ch.add_pairs(c, channel.name, same)  # rule C3
        result.paired += len(same)
        uow.commit()
    _mirror(store, channel, r.actions, {row.name for row in dest_rows} | set(plan.mkdirs), result)
    return result


def _mirror(store: Store, channel: ChannelConfig, actions: list, dest_folders: set[str], result: ChannelResult) -> None:
    """Rules C5-C7 carried out as local changes of the destination (its journal sends them), a batch
    per transaction: a crash between two leaves the rest for the next run (which plans them again
    from the store)."""
    if not actions:
        return
    from mailsync.changes import ChangeError, LocalChanges
    from mailsync.channel.run_two_way import queue_action

    with UnitOfWork(store) as uow:
        changes = LocalChanges(store, uow=uow)
        for i, a in enumerate(actions, 1):
            try:
                queue_action(changes, channel.dest, a, dest_folders, result.folders)
                if a.kind == "delete":
                    repo_ch.drop_pairs(uow.connection, [a.pair_id])
            except ChangeError as exc:  # a sync changed the copy since the plan was read: planned again next run
                result.skipped.append(str(exc))
                continue
            result.mirrored[a.kind] = result.mirrored.get(a.kind, 0) + 1
            if i % BATCH == 0:
                uow.commit()
        uow.commit()


def channel_status(store: Store, channel: ChannelConfig) -> dict:
    with UnitOfWork(store) as uow:
        counts = repo_ch.channel_counts(uow.connection, channel.name)
    return {"channel": channel.name, "from": channel.source, "to": channel.dest, "mode": channel.mode, **counts}
