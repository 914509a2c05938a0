"""Running a two-way channel (and the folder step of a mirror channel): two_way.py's plans carried
out in the store, what each side must do left to that side's journal.

Owns: three steps, each in its own transactions and each planned again from the store on every
run, so a kill -9 between any two leaves the rest for the next run:
  1. folders (rules G1-G3): folders created and renamed on the side that lacks them, and linked;
  2. new messages both ways (C1, C2, C4): paired with what the other side holds, else copied there
     (the copy a placement waiting for its APPEND, the pair made in the same transaction, so a copy
     is never copied back);
  3. pairs (T1-T6): flags merged, moves followed, deletions passed on, as local changes of the
     side that must change, in the same transaction as the agreed state they lead to.
Must not: speak IMAP (each account's sync sends its journal), or decide (two_way.py does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailsync.channel.plan import Folder, SourceMessage, map_folder
from mailsync.channel.two_way import (FolderNow, FolderRow, Holdings, PairNow, Side, plan_folders, plan_pairs,
                                      plan_side_copies, relinks)
from mailsync.config.model import ChannelConfig
from mailsync.imap import utf7
from mailsync.store import channel_repo as repo_ch
from mailsync.store import repositories as repo
from mailsync.store.db import Store
from mailsync.store.uow import UnitOfWork
from mailsync.sync import crash, journal
from mailsync.sync.plan import folder_selected

BATCH = 1000  # copies, or pair actions, per transaction


@dataclass
class Sides:
    """Both accounts' live folders and the maps between them, links first (channel_folders)."""

    a_id: int
    b_id: int
    a_rows: list
    b_rows: list
    rows: list[FolderRow]
    a_to_b: Callable[[str], str]  # the links first, then the folder map: for messages
    b_to_a: Callable[[str], str]
    map_ab: Callable[[str], str]  # the folder map alone: what a renamed folder's counterpart is called
    map_ba: Callable[[str], str]


def read_sides(c, channel: ChannelConfig, a_id: int, b_id: int) -> Sides:
    a_rows = [r for r in repo.folders_of(c, a_id) if r.status != "gone"]
    b_rows = [r for r in repo.folders_of(c, b_id) if r.status != "gone"]
    a_folders = [Folder(r.name, r.delimiter, r.special_use) for r in a_rows]
    b_folders = [Folder(r.name, r.delimiter, r.special_use) for r in b_rows]
    rows = [FolderRow(*r) for r in repo_ch.folder_rows(c, channel.name)]
    a_names, b_names = {r.id: r.name for r in a_rows}, {r.id: r.name for r in b_rows}
    linked = [(a_names[r.a_id], b_names[r.b_id]) for r in rows if r.a_id in a_names and r.b_id in b_names]
    ab, ba = dict(linked), {b: a for a, b in linked}
    inverse = {v: k for k, v in channel.folder_map.items()}

    def map_ab(name: str) -> str:
        return map_folder(name, a_folders, b_folders, channel.folder_map)

    def map_ba(name: str) -> str:
        return map_folder(name, b_folders, a_folders, inverse)

    return Sides(a_id, b_id, a_rows, b_rows, rows, lambda name: ab.get(name) or map_ab(name),
                 lambda name: ba.get(name) or map_ba(name), map_ab, map_ba)


def _selected(channel: ChannelConfig) -> Callable[[str], bool]:
    return lambda name: folder_selected(name, channel.folders, channel.exclude)


def run_folders(store: Store, channel: ChannelConfig, a_id: int, b_id: int, result, *, apply: bool = True) -> None:
    """Step 1 (G1-G3), for mirror and two-way channels."""
    from mailsync.changes import ChangeError, LocalChanges

    two_way = channel.mode == "two-way"
    with UnitOfWork(store) as uow:
        c = uow.connection
        s = read_sides(c, channel, a_id, b_id)
        plan = plan_folders([FolderNow(r.id, r.name) for r in s.a_rows], [FolderNow(r.id, r.name) for r in s.b_rows],
                            s.rows, s.map_ab, s.map_ba, _selected(channel), two_way=two_way)
        if not (plan.mkdirs or plan.renames or plan.links or plan.agreed_names):
            return
        account = {"a": channel.source, "b": channel.dest}
        if not apply:
            for side, name in plan.mkdirs:
                (result.folders if side == "b" else result.folders_back).append(name)
            result.renamed += [f"{account[side]}: {old} -> {new}" for side, old, new, _row in plan.renames]
            return
        changes = LocalChanges(store, uow=uow)
        for side, name in plan.mkdirs:
            try:
                changes.mkdir(account[side], name)
            except ChangeError as exc:  # made by a sync since the plan was read: linked below all the same
                result.skipped.append(str(exc))
                continue
            (result.folders if side == "b" else result.folders_back).append(name)
        names = {"a": {r.name for r in s.a_rows}, "b": {r.name for r in s.b_rows}}
        for side, old, new, _row in sorted(plan.renames, key=lambda r: len(r[1])):
            # a parent's rename took its children along (RFC 3501 6.3.5): theirs is done already
            if old in names[side] and new not in names[side]:
                try:
                    changes.rename(account[side], old, new)
                except ChangeError as exc:
                    result.skipped.append(str(exc))
                    continue
                result.renamed.append(f"{account[side]}: {old} -> {new}")
            names[side] = {r.name for r in repo.folders_of(c, s.a_id if side == "a" else s.b_id)
                           if r.status != "gone"}
        a_ids = {r.name: r.id for r in repo.folders_of(c, a_id) if r.status != "gone"}
        b_ids = {r.name: r.id for r in repo.folders_of(c, b_id) if r.status != "gone"}
        repo_ch.link_folders(c, channel.name, [(a_ids[a], b_ids[b], a, b) for a, b in plan.links
                                               if a in a_ids and b in b_ids])
        repo_ch.agree_folder_names(c, plan.agreed_names)
        uow.commit()
        crash.point("channel folders queued")


def _messages(rows) -> list[SourceMessage]:
    return [SourceMessage(pid, folder, sha, mid, size, flags or "", idate)
            for pid, folder, sha, mid, size, flags, idate in rows]


def _holdings(rows, paired: set[int]) -> tuple[Holdings, dict[int, str]]:
    held, shas = Holdings(), {}
    for folder, pid, sha, mid, size in rows:
        if pid not in paired:
            held.add(folder, pid, sha, mid, size)
            shas[pid] = sha
    return held, shas


def run_copies(store: Store, channel: ChannelConfig, a_id: int, b_id: int, result, *, apply: bool = True) -> None:
    """Step 2: new messages of either side paired with, or copied to, the other side."""
    with UnitOfWork(store) as uow:
        c = uow.connection
        s = read_sides(c, channel, a_id, b_id)
        selected = _selected(channel)
        new_a = _messages(repo_ch.unpaired_messages(c, channel.name, a_id, side="src"))
        new_b = _messages(repo_ch.unpaired_messages(c, channel.name, b_id, side="dest"))
        if not new_a and not new_b:
            return  # nothing new on either side: the rest of this step reads nothing
        folder_a, folder_b = repo_ch.folder_ids(c, a_id), repo_ch.folder_ids(c, b_id)
        held_a, sha_a = _holdings(repo_ch.held_messages(c, a_id), repo_ch.paired_ids(c, channel.name, "src"))
        held_b, sha_b = _holdings(repo_ch.held_messages(c, b_id), repo_ch.paired_ids(c, channel.name, "dest"))
        ab = plan_side_copies(new_a, s.a_to_b, selected, held_b, {r.name for r in s.b_rows})
        held_a.used.update(m.placement_id for m in new_a)  # paired or copied now: not B's to pair with
        new_b = [m for m in new_b if m.placement_id not in held_b.used]
        ba = plan_side_copies(new_b, s.b_to_a, lambda name: selected(s.b_to_a(name)), held_a,
                              {r.name for r in s.a_rows})
        result.copies, result.copies_back = len(ab.copies), len(ba.copies)
        result.paired = len(ab.pairs) + len(ba.pairs)
        result.folders += [f for f in ab.mkdirs if f not in result.folders]
        result.folders_back += [f for f in ba.mkdirs if f not in result.folders_back]
        if not apply:
            return
        if ab.mkdirs or ba.mkdirs:
            from mailsync.changes import LocalChanges

            changes = LocalChanges(store, uow=uow)
            for name in ab.mkdirs:
                changes.mkdir(channel.dest, name)
            for name in ba.mkdirs:
                changes.mkdir(channel.source, name)
        # found already there (C2): no agreed state yet, the first merge is the union (T4)
        repo_ch.add_pairs(c, channel.name, [(a, b, sha_a[a], None, folder_a.get(a), folder_b.get(b), sha_b[b])
                                            for a, b in ab.pairs])
        repo_ch.add_pairs(c, channel.name, [(a, b, sha_a[a], None, folder_a.get(a), folder_b.get(b), sha_b[b])
                                            for b, a in ba.pairs])
        uow.commit()
        _queue_copies(c, uow, channel.name, b_id, ab.copies, folder_a, src_is_a=True)
        _queue_copies(c, uow, channel.name, a_id, ba.copies, folder_b, src_is_a=False)


def _queue_copies(c, uow: UnitOfWork, channel: str, account_id: int, copies: list, origin: dict[int, int], *,
                  src_is_a: bool) -> None:
    """Copies into ``account_id``, a batch per transaction: each copy's placement, its journal entry
    and its pair, whose agreed state is the flags copied (T4) and the two folders, written together
    (C1). ``origin``: the copied placements' folder ids."""
    if not copies:
        return
    folders = {r.name: r for r in repo.folders_of(c, account_id) if r.status != "gone"}
    kind = journal.kind_of(journal.Append(""))
    for i in range(0, len(copies), BATCH):
        batch = copies[i:i + BATCH]
        args = [journal.encode(journal.Append(folders[folder].raw_name or utf7.encode(folder)))[1]
                for _m, folder in batch]
        ids = repo_ch.add_copies(c, account_id, [(folders[folder].id, m.sha256, m.flags, m.internaldate, m.size)
                                                 for m, folder in batch], kind, args)
        repo_ch.add_pairs(c, channel, [
            (m.placement_id, pid, m.sha256, m.flags, origin.get(m.placement_id), folders[f].id) if src_is_a
            else (pid, m.placement_id, m.sha256, m.flags, folders[f].id, origin.get(m.placement_id))
            for (m, f), pid in zip(batch, ids)])
        uow.commit()
        crash.point("channel copies queued")


def queue_action(changes, account: str, a, folders: set[str], made: list[str] | None = None) -> None:
    """One planned change of a message (plan.MirrorAction or two_way.SideAction: "flags", "move" or
    "delete") recorded as a local change of ``account``; a move's folder made first when ``folders``
    (the account's, kept up to date here) lacks it, and named in ``made``. ChangeError when the
    message is not where the plan saw it (a sync changed it since)."""
    if a.kind == "flags":
        changes.flag(account, a.folder, a.uid, add=a.add, remove=a.remove)
    elif a.kind == "delete":
        changes.delete(account, a.folder, a.uid)
    else:
        assert a.kind == "move" and a.to_folder is not None
        if a.to_folder not in folders:
            changes.mkdir(account, a.to_folder)
            folders.add(a.to_folder)
            if made is not None:
                made.append(a.to_folder)
        changes.move(account, a.folder, a.uid, a.to_folder)


def run_relinks(store: Store, channel: ChannelConfig, a_id: int, b_id: int) -> None:
    """Rule T0, before new messages are looked for (a placement a pair takes back is not new)."""
    with UnitOfWork(store) as uow:
        c = uow.connection
        gone = []
        for pid, a, b, _agreed, _sa, _sb, sha_a, sha_b in repo_ch.two_way_states(c, channel.name, only_gone=True):
            if a[0] is None:
                gone.append((pid, "a", sha_a))
            if b[0] is None:
                gone.append((pid, "b", sha_b))
        if not gone:
            return
        s = read_sides(c, channel, a_id, b_id)
        selected = _selected(channel)
        free: dict[tuple[str, str], list[int]] = {}
        for side, account_id, column, wanted in (("a", a_id, "src", selected),
                                                 ("b", b_id, "dest", lambda name: selected(s.b_to_a(name)))):
            for m in _messages(repo_ch.unpaired_messages(c, channel.name, account_id, side=column)):
                if wanted(m.folder):
                    free.setdefault((side, m.sha256), []).append(m.placement_id)
        moves = relinks(gone, free)
        if moves:
            repo_ch.relink(c, moves)
            uow.commit()


def run_pairs(store: Store, channel: ChannelConfig, a_id: int, b_id: int, result, *, apply: bool = True,
              allow_mass_delete: bool = False) -> None:
    """Step 3 (T1-T6)."""
    from mailsync.changes import ChangeError, LocalChanges

    with UnitOfWork(store) as uow:
        c = uow.connection
        s = read_sides(c, channel, a_id, b_id)
        states = [PairNow(pid, Side(*a), Side(*b), agreed, sa, sb)
                  for pid, a, b, agreed, sa, sb, *_shas in repo_ch.two_way_states(c, channel.name)]
        plan = plan_pairs(states, s.a_to_b, s.b_to_a, propagate=channel.delete == "propagate",
                          allow_mass_delete=allow_mass_delete)
        account = {"a": channel.source, "b": channel.dest}
        result.held += [f"{n} deletion(s) in {account[side]}'s folder {folder!r} (of the {there} message(s) the "
                        f"channel pairs there) are held: more than half of it at once"
                        for side, folder, n, there in plan.held]
        for a in plan.actions:
            counts = result.mirrored if a.side == "b" else result.mirrored_back
            counts[a.kind] = counts.get(a.kind, 0) + 1
        if not apply or not (plan.actions or plan.agreements or plan.drops):
            return
        changes = LocalChanges(store, uow=uow)
        folders = {"a": {r.name for r in s.a_rows}, "b": {r.name for r in s.b_rows}}
        done, skipped = 0, set()
        for a in plan.actions:
            if a.pair_id in skipped:
                continue
            try:
                queue_action(changes, account[a.side], a, folders[a.side])
            except ChangeError as exc:  # a sync changed the message since the plan was read: planned again next run
                skipped.add(a.pair_id)
                result.skipped.append(str(exc))
                continue
            done += 1
            if done % BATCH == 0:
                uow.commit()
        uow.commit()
        crash.point("channel actions queued")  # the agreed state not written yet: the next run merges again
        repo_ch.drop_pairs(c, [p for p in plan.drops if p not in skipped])
        repo_ch.agree(c, [(g.pair_id, g.flags, g.a_folder, g.b_folder) for g in plan.agreements
                          if g.pair_id not in skipped])
        uow.commit()
