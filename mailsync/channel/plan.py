"""What a copy channel does, decided without I/O: store state in, plan out.

Owns: the folder map (an explicit ``[channel.map]`` entry; else the folder of the same special use;
else INBOX to INBOX; else the same name with the hierarchy delimiter and the personal namespace
prefix of the destination), which source messages already have their copy (paired before, or the
destination folder holds the same body, or the same Message-ID and size), and which need one.
Must not: read or write the store or a server (run.py does), or decide anything about flags after
the copy (a copy channel copies a message once, with its flags and date at that moment).

Rules:
  C1  A source message is copied once: a pair (channel, source placement) is never made twice.
  C2  Before a copy, the destination folder is searched for the message: the same body (SHA-256),
      else the same Message-ID and size; found, it is paired and nothing is appended.
  C3  Two source messages with one body that map to one folder make one copy (both are paired to it).
  C4  A destination folder that does not exist is created first (mkdir), by the mapped name.
Mirror (mode = "mirror": the destination follows the source), for each pair whose copy is on the
destination server (it has its UID):
  C5  the source message gone (expunged, or its folder gone): with delete = "propagate" the copy is
      deleted, and the pair with it; with delete = "none" the copy stays.
  C6  the source message in another folder (a move there; rule N2 keeps its identity): the copy is
      moved to that folder's mapped destination (a MOVE, never a delete and a new copy).
  C7  else, flags that differ: the copy gets the source's flags (a change the destination's own
      clients made to a mirrored copy is undone, as "mirror" means).
A copy still waiting for its APPEND is left for the next run; a copy deleted on the destination is
not made again (C1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mailsync.sync.plan import folder_selected


@dataclass(frozen=True)
class SourceMessage:
    placement_id: int
    folder: str  # decoded name
    sha256: str
    message_id: str | None
    size: int
    flags: str
    internaldate: str | None


@dataclass(frozen=True)
class Folder:
    name: str
    delimiter: str | None = None
    special_use: str | None = None


@dataclass
class DestMessages:
    """What one destination folder holds (its live placements, copies still waiting included)."""

    by_sha: dict[str, int] = field(default_factory=dict)  # body -> placement id
    by_key: dict[tuple[str, int], int] = field(default_factory=dict)  # (Message-ID, size) -> placement id


@dataclass(frozen=True)
class Copy:
    src: SourceMessage
    folder: str  # the destination folder's decoded name


@dataclass
class ChannelPlan:
    mkdirs: list[str] = field(default_factory=list)  # destination folders to create first (C4)
    pairs: list[tuple[int, int, str]] = field(default_factory=list)  # (source id, dest placement id, sha) C2
    copies: list[Copy] = field(default_factory=list)
    same: list[tuple[int, str, str]] = field(default_factory=list)  # (source id, dest folder, sha): shares a copy (C3)
    folder_map: dict[str, str] = field(default_factory=dict)  # source folder -> destination folder, as used


def _delimiter(folders: Iterable[Folder]) -> str | None:
    seen = Counter(f.delimiter for f in folders if f.delimiter)
    return seen.most_common(1)[0][0] if seen else None


def _prefix(folders: Sequence[Folder], delimiter: str | None) -> str:
    """The personal namespace prefix a server puts before every folder but INBOX ("INBOX." on Courier
    and some Cyrus set-ups), told by every other folder having it; "" otherwise."""
    if not delimiter:
        return ""
    others = [f.name for f in folders if f.name.upper() != "INBOX"]
    prefix = "INBOX" + delimiter
    return prefix if others and all(n.startswith(prefix) for n in others) else ""


def map_folder(name: str, source: Sequence[Folder], dest: Sequence[Folder], explicit: Mapping[str, str]) -> str:
    """The destination folder for source folder ``name`` (see the module's rules)."""
    if name in explicit:
        return explicit[name]
    if name.upper() == "INBOX":
        return "INBOX"
    src = next((f for f in source if f.name == name), Folder(name))
    if src.special_use:
        match = next((f.name for f in dest if f.special_use == src.special_use), None)
        if match is not None:
            return match
    s_delim, d_delim = src.delimiter or _delimiter(source), _delimiter(dest)
    s_prefix, d_prefix = _prefix(source, s_delim), _prefix(dest, d_delim)
    rest = name[len(s_prefix):] if s_prefix and name.startswith(s_prefix) else name
    parts = rest.split(s_delim) if s_delim else [rest]
    return d_prefix + (d_delim or s_delim or "/").join(parts)


def plan_copy(messages: Sequence[SourceMessage], source: Sequence[Folder], dest: Sequence[Folder],
              holdings: Mapping[str, DestMessages], *, include: Sequence[str] = ("*",), exclude: Sequence[str] = (),
              explicit: Mapping[str, str] | None = None) -> ChannelPlan:
    """``messages``: the source's live messages not paired yet (C1); ``holdings``: each destination
    folder's messages, by its decoded name."""
    plan = ChannelPlan()
    explicit = explicit or {}
    existing = {f.name for f in dest}
    made: set[tuple[str, str]] = set()  # (dest folder, sha) of the copies planned (C3)
    selected: dict[str, bool] = {}  # per folder, not per message
    for m in messages:
        chosen = selected.get(m.folder)
        if chosen is None:
            chosen = selected[m.folder] = folder_selected(m.folder, include, exclude)
        if not chosen:
            continue
        target = plan.folder_map.get(m.folder)
        if target is None:
            target = plan.folder_map[m.folder] = map_folder(m.folder, source, dest, explicit)
        if target not in existing and target not in plan.mkdirs:
            plan.mkdirs.append(target)
        held = holdings.get(target)
        found = None
        if held is not None:
            found = held.by_sha.get(m.sha256)
            if found is None and m.message_id:
                found = held.by_key.get((m.message_id, m.size))
        if found is not None:
            plan.pairs.append((m.placement_id, found, m.sha256))
            continue
        if (target, m.sha256) in made:
            plan.same.append((m.placement_id, target, m.sha256))
            continue
        made.add((target, m.sha256))
        plan.copies.append(Copy(m, target))
    return plan


@dataclass(frozen=True)
class PairState:
    """A pair as the store has it now: the source message (None when it is gone) and its copy."""

    pair_id: int
    src_folder: str | None  # None: the source message is gone
    src_flags: str
    dest_folder: str | None  # None: the copy is gone from the destination
    dest_uid: int | None  # None: the copy waits for its APPEND
    dest_flags: str


@dataclass(frozen=True)
class MirrorAction:
    kind: str  # "delete" | "move" | "flags"
    folder: str  # the copy's destination folder (decoded)
    uid: int
    pair_id: int
    to_folder: str | None = None  # move: where to
    add: tuple[str, ...] = ()  # flags
    remove: tuple[str, ...] = ()


def plan_mirror(pairs: Sequence[PairState], target: Callable[[str], str], *, propagate: bool) -> list[MirrorAction]:
    """Rules C5-C7; ``target(source folder)`` is the destination folder it maps to."""
    out: list[MirrorAction] = []
    for p in pairs:
        if p.dest_folder is None or p.dest_uid is None:
            continue
        if p.src_folder is None:
            if propagate:
                out.append(MirrorAction("delete", p.dest_folder, p.dest_uid, p.pair_id))
            continue
        where = target(p.src_folder)
        if where != p.dest_folder:
            out.append(MirrorAction("move", p.dest_folder, p.dest_uid, p.pair_id, to_folder=where))
            continue
        have, want = set(p.dest_flags.split()), set(p.src_flags.split())
        if have != want:
            out.append(MirrorAction("flags", p.dest_folder, p.dest_uid, p.pair_id,
                                    add=tuple(sorted(want - have)), remove=tuple(sorted(have - want))))
    return out
