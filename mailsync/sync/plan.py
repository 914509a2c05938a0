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
  C3  A whole-folder download (D4) into pack files writes each pack batch as it fills, and commits
      the rows of the batches written so far (with the download mark, C1) once `batch_size`
      messages, COMMIT_BYTES or COMMIT_SECONDS have gone by since its last commit, when it stops,
      and at the folder's end. A crash in between costs a re-download of what was not committed,
      never a row without its body (commit_due).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


def folder_selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Rule F1 (name part). A pattern equal to the name matches it, whatever its glob characters say
    (Gmail's "[Gmail]/All Mail" is otherwise the class [Gmail] followed by "/All Mail")."""

    def match(pattern: str) -> bool:
        if pattern == name:
            return True
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


# --- folder identity (which new folder is a known folder renamed) ---------------------------------
#
#  F4  A folder listed under a new name is a known folder that vanished from the list, renamed, only
#      on evidence that names one pair for certain, strongest first:
#        (a) both carry a MAILBOXID (RFC 8474) and the two are equal; different MAILBOXIDs rule a pair
#            out, whatever else agrees;
#        (b) they share UIDVALIDITY and a sample of the known folder's messages (SAMPLE_SIZE UIDs,
#            spread over the folder) is found at the same UIDs of the new one with the same
#            Message-ID and size. UIDVALIDITY alone is no evidence: RFC 3501 makes it unique per name
#            over time, not across folders, and Cyrus and Courier give every folder made in the same
#            second the same value.
#      A new folder with more than one such partner, or a known folder claimed by more than one new
#      folder, is not a rename: it is synced as a new folder (its messages are recognised by rule
#      N1 and linked, not downloaded again) and the vanished one is dropped (F2). Never a guess.

SAMPLE_SIZE = 8


@dataclass(frozen=True)
class FolderIdentity:
    """What identifies a folder across a rename: its name, UIDVALIDITY and MAILBOXID (either may be
    unknown), and for a known folder whether it holds placements (evidence for rule F4 b)."""

    key: object  # raw name of a listed folder, or the store's folder id of a known one
    uidvalidity: int | None
    mailboxid: str | None = None
    has_messages: bool = False


def rename_candidates(listed: Sequence[FolderIdentity], vanished: Sequence[FolderIdentity]
                      ) -> tuple[dict[object, object], list[tuple[object, object]]]:
    """Rule F4: (pairs certain by MAILBOXID as {listed key: vanished key}, pairs that need the
    content sample of F4 b, as (listed key, vanished key))."""
    certain: dict[object, object] = {}
    to_check: list[tuple[object, object]] = []
    for new in listed:
        for old in vanished:
            if new.mailboxid and old.mailboxid:
                if new.mailboxid == old.mailboxid:
                    certain[new.key] = old.key
                continue
            if new.uidvalidity is not None and new.uidvalidity == old.uidvalidity and old.has_messages:
                to_check.append((new.key, old.key))
    return certain, to_check


def sample_uids(uids: Sequence[int], size: int = SAMPLE_SIZE) -> list[int]:
    """Up to ``size`` of ``uids`` spread over them (first and last included), for rule F4 b."""
    uids = sorted(uids)
    if len(uids) <= size:
        return uids
    step = (len(uids) - 1) / (size - 1)
    return sorted({uids[round(i * step)] for i in range(size)})


def sample_agrees(known: Mapping[int, tuple[str | None, int]], found: Mapping[int, tuple[str | None, int]]) -> bool:
    """Rule F4 b: every sampled UID of the known folder holds, in the new folder, a message with the
    same (Message-ID, size). An empty sample is no evidence."""
    return bool(known) and all(found.get(uid) == key for uid, key in known.items())


def decide_renames(certain: Mapping[object, object], checked: Mapping[tuple[object, object], bool]
                   ) -> dict[object, object]:
    """Rule F4: {listed key: vanished key} of the renames to apply, each side in at most one pair."""
    pairs = dict(certain)
    agreed = [pair for pair, ok in checked.items() if ok and pair[0] not in certain
              and pair[1] not in certain.values()]
    for new, old in agreed:
        if sum(1 for n, _ in agreed if n == new) == 1 and sum(1 for _, o in agreed if o == old) == 1:
            pairs[new] = old
    claimed: dict[object, int] = {}
    for old in pairs.values():
        claimed[old] = claimed.get(old, 0) + 1
    return {new: old for new, old in pairs.items() if claimed[old] == 1}


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


def flags_text(flags: Iterable[str]) -> str:
    """The stored form of a flag set: sorted, unique, space-separated, without \\Recent."""
    return " ".join(sorted({f for f in flags if f.lower() != "\\recent"}))


@dataclass(frozen=True)
class LocalMessage:
    """A live placement as the planner sees it."""

    flags: str  # the local view (flags text)
    base: str | None  # the flags last agreed with the server; None: never agreed (after a re-match)
    modseq: int | None
    local_newer: bool = False  # for conflict = "newest": the local change came after the last sync


@dataclass(frozen=True)
class ServerMessage:
    flags: tuple[str, ...]
    modseq: int | None = None


@dataclass
class MessagePlan:
    """What one folder's reconcile does (rules M1-M3, T1-T3)."""

    new: list[int] = field(default_factory=list)  # sorted UIDs to download (M1)
    expunged: list[int] = field(default_factory=list)  # sorted UIDs to remove (M2)
    # uid -> (flags, base flags, modseq) to store: the server's flags (M3) or a merge (T1/T2)
    updates: dict[int, tuple[str, str, int | None]] = field(default_factory=dict)
    pushes: list[tuple[int, tuple[str, ...], tuple[str, ...], int | None]] = field(default_factory=list)  # T3
    settled: list[int] = field(default_factory=list)  # local changes the server already has: nothing to push
    conflicts: list[tuple[int, str, bool, bool, bool]] = field(default_factory=list)  # uid, flag, server, local, kept
    flag_changes: int = 0  # placements whose flags the server changed (M3)

    @property
    def empty(self) -> bool:
        return not (self.new or self.expunged or self.updates or self.pushes or self.settled)


def plan_messages(local: Mapping[int, LocalMessage], server: Mapping[int, ServerMessage], *,
                  vanished: Iterable[int] | None = None, full: bool = True, policy: str = "server") -> MessagePlan:
    """Rules M1-M3 and T1-T3 for one folder.

    ``local``: the live placements to consider, by UID. ``server``: the UIDs the server reported with
    their flags: every message (``full``), or only those changed since the checkpoint (delta modes,
    where ``vanished`` lists the expunged UIDs)."""
    plan = MessagePlan()
    gone = set(local) - set(server) if full else set(vanished or ()) & set(local)
    plan.expunged = sorted(gone)
    for uid in sorted(local):
        if uid in gone:
            continue
        mine, theirs = local[uid], server.get(uid)
        local_change = mine.base is None or mine.flags != mine.base
        if theirs is None and (not local_change or mine.base is None):
            continue  # nothing new from the server; an unagreed change waits for the server's flags
        if theirs is not None:
            server_flags = set(flags_text(theirs.flags).split())
            modseq = theirs.modseq
        else:
            server_flags, modseq = set(mine.base.split()), mine.modseq
        if not local_change:  # M3
            text = flags_text(server_flags)
            if text != mine.flags:
                plan.flag_changes += 1
            if (text, text, modseq) != (mine.flags, mine.base, mine.modseq):
                plan.updates[uid] = (text, text, modseq)
            continue
        local_flags = mine.flags.split()
        merge = merge_flags(server_flags, None if mine.base is None else mine.base.split(), local_flags,
                            policy=policy, local_newer=mine.local_newer)  # T1, T2
        for flag in merge.conflicts:
            plan.conflicts.append((uid, flag, flag in server_flags, flag in local_flags, flag in merge.result))
        add, remove = merge.push(server_flags)
        plan.updates[uid] = (flags_text(merge.result), flags_text(server_flags), modseq)
        if add or remove:
            plan.pushes.append((uid, tuple(add), tuple(remove), modseq))  # T3
        else:
            plan.settled.append(uid)
    plan.new = sorted(u for u in server if u not in local)  # M1
    return plan


# --- delta detection (issue: cost follows change) ------------------------------------------------
#
#  D1  A folder is not selected at all when LIST-STATUS/STATUS shows the same UIDVALIDITY, UIDNEXT,
#      MESSAGES and HIGHESTMODSEQ as at the end of its last sync, and it has no pending local change.
#      (All four are checkpoints taken at SELECT; comparing them costs nothing per message.)
#      Without HIGHESTMODSEQ a flag change is invisible in STATUS, so such folders are always selected.
#  D2  Mode per folder: "qresync" (SELECT with QRESYNC: VANISHED (EARLIER) + changed FETCHes) when the
#      server offers QRESYNC and a checkpoint exists; "condstore" (CHANGEDSINCE + UID set comparison)
#      when it offers CONDSTORE; otherwise "full" (UID/FLAGS of every message).
#  D3  HIGHESTMODSEQ lower than stored, NOMODSEQ, or no stored checkpoint: "full", noted in the audit log.
#  D4  A folder in "full" mode that holds no placements at all, in a store that held no bodies when
#      the run began (a first sync), is downloaded whole with one UID FETCH 1:* that brings flags with
#      the bodies: there is nothing to compare, and no body to recognise (rule N1), so the UID/FLAGS
#      listing would only be read to learn that every UID is new.
#  D5  A full comparison (a server without CONDSTORE, like Microsoft 365's) plans only the UIDs where
#      the two sides differ: on one side only, flags or MODSEQ not as the store last agreed them, or a
#      local change waiting (flags != base). The rest would plan to nothing (rule M3 with nothing
#      new), so the store reads three columns of them, not whole placements (full_candidates).
#  D6  A folder whose listing shows UIDNEXT past the checkpoint's, in a store that held bodies when the
#      run began, is selected with the headers of its UIDs from the checkpoint's UIDNEXT on asked for
#      in the same write (pipelined, RFC 3501 5.5): those are the UIDs rule M1 will find new, and rule
#      N1 reads their headers anyway, so the server answers both while the store reconciles the
#      folder, one round trip instead of two. Only for the UIDVALIDITY the checkpoint knows (a new
#      one makes the headers useless: they are dropped), without download limits (rule A1 picks
#      the UIDs first) and not on Gmail (rule N5 lists by X-GM-MSGID first).


def full_candidates(local: Mapping[int, tuple[str, str | None, int | None]],
                    server: Mapping[int, object]) -> tuple[list[int], list[int]]:
    """Rule D5. ``local``: uid -> (flags, base_flags, modseq) of the folder's live placements;
    ``server``: uid -> its FETCH item (``flags``, ``modseq``), every message of the folder. Returns
    (the UIDs on the server to plan, the UIDs gone from it)."""
    texts: dict[tuple, str] = {}  # flag lists repeat: each is put in order once
    plan = []
    for uid, item in server.items():
        mine = local.get(uid)
        if mine is None:
            plan.append(uid)
            continue
        flags, base, modseq = mine
        key = item.flags or ()
        text = texts.get(key)
        if text is None:
            text = texts[key] = flags_text(key)
        if flags != base or text != flags or item.modseq != modseq:
            plan.append(uid)
    return plan, [uid for uid in local if uid not in server]


@dataclass(frozen=True)
class FolderCheckpoint:
    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None
    messages: int | None  # EXISTS at the SELECT of the last completed sync of the folder


def folder_unchanged(stored: FolderCheckpoint, status: Mapping[str, int] | None, pending: bool) -> bool:
    """Rule D1."""
    if pending or not status or stored.highestmodseq is None or "HIGHESTMODSEQ" not in status:
        return False
    return (status.get("UIDVALIDITY") == stored.uidvalidity and status.get("UIDNEXT") == stored.uidnext
            and status.get("MESSAGES") == stored.messages and status["HIGHESTMODSEQ"] == stored.highestmodseq)


def headers_ahead_from(stored: FolderCheckpoint | None, status: Mapping[str, int] | None) -> int | None:
    """Rule D6: the first UID whose headers to ask for with the SELECT, or None (none ahead)."""
    if stored is None or stored.uidnext is None or stored.uidvalidity is None or not status:
        return None
    if status.get("UIDVALIDITY") != stored.uidvalidity or (status.get("UIDNEXT") or 0) <= stored.uidnext:
        return None
    return stored.uidnext


def delta_mode(*, qresync: bool, condstore: bool, stored_modseq: int | None, current_modseq: int | None,
               nomodseq: bool) -> tuple[str, str | None]:
    """Rules D2-D3: (mode, reason for falling back to "full" or None)."""
    if not (qresync or condstore):
        return "full", None
    if nomodseq or current_modseq is None:
        return "full", "the server keeps no MODSEQ for this folder (NOMODSEQ): full comparison"
    if stored_modseq is None:
        return "full", None  # first sync of the folder: nothing to compare against yet
    if current_modseq < stored_modseq:
        return "full", (f"HIGHESTMODSEQ went backwards ({stored_modseq} -> {current_modseq}): "
                        f"full comparison")
    return ("qresync" if qresync else "condstore"), None


COMMIT_BYTES = 256 * 1024 * 1024
COMMIT_SECONDS = 2.0


def commit_due(messages: int, nbytes: int, seconds: float, batch_size: int) -> bool:
    """Rule C3: is it time to commit ``messages`` downloaded, written and not yet committed
    (``nbytes`` of them, the first ``seconds`` ago)? Each commit rewrites the index pages its rows
    touched, and the keys (SHA-256, Message-ID) are random, so late in a large folder a commit costs
    about as much as its inserts: measured on a 20,000-message first sync, the commits took
    0.24-0.29 s at one per 500 messages and 0.03-0.04 s at one per 2,000."""
    return messages >= batch_size or nbytes >= COMMIT_BYTES or seconds >= COMMIT_SECONDS


def download_whole(mode: str, *, has_placements: bool, bodies_before_run: bool) -> bool:
    """Rule D4."""
    return mode == "full" and not has_placements and not bodies_before_run


# --- flags, both ways (issue: two-way sync) -------------------------------------------------------
#
#  T1  Flags merge per flag against the base (the flags last agreed with the server): a flag changed on
#      one side only takes that side's value; changed on both sides, the two agree (a flag is a bit).
#  T2  With no base (never agreed, e.g. after a UIDVALIDITY re-match), a flag that differs between the
#      sides is a conflict, settled by the account's policy: "server", "local", or "newest" (the local
#      change wins when it was made after the server's value was last seen). Every conflict is logged.
#  T3  The merged flags are pushed with UNCHANGEDSINCE the server's MODSEQ, one STORE per change: a
#      change that both adds and removes is one FLAGS replace of the merged set (two STOREs under one
#      MODSEQ would see the second refused, the first having raised it), else +FLAGS or -FLAGS.
#      Without CONDSTORE there is no UNCHANGEDSINCE, and +FLAGS then -FLAGS leave flags that other
#      clients set meanwhile alone. A MODIFIED answer leaves the change pending, to be re-read and
#      re-merged (never overwritten).
#  T4  A queued flag change whose placement agrees with its base (it changed nothing, or was undone)
#      is settled at once: nothing is pushed, and it no longer keeps its folder from rule D1.


@dataclass(frozen=True)
class FlagMerge:
    result: frozenset[str]
    conflicts: tuple[str, ...] = ()

    def push(self, server: Iterable[str]) -> tuple[list[str], list[str]]:
        """(+FLAGS, -FLAGS) that take the server from `server` to the result."""
        s = set(server)
        return sorted(self.result - s), sorted(s - self.result)


def merge_flags(server: Iterable[str], base: Iterable[str] | None, local: Iterable[str], *,
                policy: str = "server", local_newer: bool = False) -> FlagMerge:
    """Rules T1-T2."""
    s, l = set(server), set(local)
    s.discard("\\Recent")
    l.discard("\\Recent")
    if base is None:
        conflicts = tuple(sorted(s ^ l))
        if policy == "local" or (policy == "newest" and local_newer):
            return FlagMerge(frozenset(l), conflicts)
        return FlagMerge(frozenset(s), conflicts)
    b = set(base)
    result = set()
    for f in s | b | l:
        in_s, in_b, in_l = f in s, f in b, f in l
        keep = in_s if in_l == in_b else in_l
        if keep:
            result.add(f)
    return FlagMerge(frozenset(result))


# --- moves and UIDVALIDITY (issue: never download a body twice) --------------------------------------
#
#  V1  A UIDVALIDITY change is re-approved when at least 80% of the folder's known messages are found
#      again by (Message-ID, size), or all of them when it knew fewer than 20; their placements take
#      the new UIDs and nothing is downloaded. Otherwise the folder is set aside (rule F3).
#  N1  A new UID whose (Message-ID, size) names a body already in the store gets a placement to that
#      body, without a download. A placement tombstoned in this run (expunged elsewhere) with that body
#      is moved instead (rule N2), keeping its identity.
#  N2  Expunged placements are tombstoned for one run, then deleted: a message that left one folder and
#      arrived in another is a move, in whichever order the two folders are synced.
#  N3  A local flag change not yet pushed follows its message when another client moves it: it is
#      merged with the flags of the moved copy (T1/T2) and pushed there in the same run (T3).
#  N5  On Gmail (X-GM-EXT-1), before a folder's new UIDs are downloaded (its first sync too), their
#      X-GM-MSGIDs are listed; a UID whose X-GM-MSGID names a body already stored is linked as in N1
#      (N2 included), so a message shown in many label folders and All Mail is downloaded once.
#  N6  On Gmail a local delete in a label's folder expunges there (Gmail takes the label away, the
#      message stays in All Mail); a local delete in All Mail (\All) moves it into \Trash, which is
#      how Gmail deletes a message (an expunge there would only archive it). mailsync.sync.gmail.
#  N7  On Gmail, of a mass of expunges (G2), a message still in another folder of the account (All
#      Mail) is kept, like a move: archiving many messages at once is not held as a mass deletion.
#  N8  On Gmail, a message expunged from a label's folder loses that label in the store.


def uidvalidity_rematch_accepted(known: int, found: int) -> bool:
    """Rule V1."""
    if known == 0:
        return True
    if known < 20:
        return found == known
    return found * 5 >= known * 4


# --- a server's listing is evidence, not an order (issue: a misbehaving server never costs mail) ----
#
#  M4  A UID the server lists whose placement was tombstoned (rule N2) is that message again: UIDs
#      are never reused within a UIDVALIDITY, so the tombstone is lifted, keeping the placement's
#      body, flags and queued local changes. It is neither downloaded again nor skipped.
#  G1  A listing of the whole folder (UID FETCH 1:* or UID SEARCH ALL) that contradicts the
#      folder's own counters read at SELECT (listing_contradiction) is read once more; when the
#      second reading contradicts them too, nothing of the folder is expunged in this run (new
#      messages and flags are still taken) and the folder is shown as "held" with the reason.
#  G2  A sync that would expunge more than MASS_DELETE_SHARE of a folder's live placements, and at
#      least MASS_DELETE_MIN of them, at once is held the same way (after the re-reading of G1,
#      when the listing still says so), until the user allows it (`mailsync sync --allow-deletions`).
#      A held folder fails the account's sync, so that scripts notice.
#  G3  Only what was asked for is taken from a FETCH: a message of a whole-folder download (D4)
#      whose sequence number is beyond EXISTS or whose UID is at or above UIDNEXT (as read at SELECT)
#      was not asked for; an answer for a UID not in the UID set asked for is not one either; a
#      second answer for the same UID is counted and stored once (the first).

MASS_DELETE_SHARE = 0.5
MASS_DELETE_MIN = 5


def listing_contradiction(uids: Iterable[int], exists: int, uidnext: int | None,
                          exists_now: int | None = None) -> str | None:
    """Rule G1: why a listing of the whole folder cannot be the folder SELECT described, or None.
    UIDs at or above UIDNEXT may be messages that arrived after the SELECT; those below it must be
    exactly EXISTS many. ``exists_now``: the count as the connection heard it after the listing
    (EXISTS, EXPUNGE and VANISHED sent meanwhile, when another client changed the folder): a
    listing of exactly that many messages agrees too."""
    uids = set(uids)
    if exists_now is not None and len(uids) == exists_now:
        return None
    below = len(uids) if uidnext is None else sum(1 for u in uids if u < uidnext)
    if below != exists:
        return (f"the server listed {below} message(s) below UIDNEXT {uidnext} where its EXISTS says {exists}"
                if uidnext is not None else f"the server listed {below} message(s) where its EXISTS says {exists}")
    return None


def mass_deletion(expunged: int, live: int) -> bool:
    """Rule G2."""
    return expunged >= MASS_DELETE_MIN and expunged > live * MASS_DELETE_SHARE


def held_reason(expunged: int, live: int, contradiction: str | None, allowed: bool) -> str | None:
    """Rules G1-G2: why the ``expunged`` of ``live`` placements are not removed in this run, or None."""
    if not expunged:
        return None
    if contradiction:
        return (f"{expunged} deletion(s) held: {contradiction}, twice; nothing is deleted until the "
                f"server's listing and counters agree")
    if mass_deletion(expunged, live) and not allowed:
        return (f"{expunged} of {live} messages gone from the server at once; held, nothing deleted. "
                f"If they were really deleted there, run: mailsync sync --allow-deletions")
    return None


class WholeFolder:
    """Rule G3 for a whole-folder download: ``take(seq, uid)`` is True once for each message the
    SELECT's EXISTS and UIDNEXT allow."""

    __slots__ = ("exists", "uidnext", "seen")

    def __init__(self, exists: int, uidnext: int | None) -> None:
        self.exists, self.uidnext = exists, uidnext
        self.seen: set[int] = set()

    def take(self, seq: int, uid: int) -> bool:
        if seq > self.exists or (self.uidnext is not None and uid >= self.uidnext) or uid in self.seen:
            return False
        self.seen.add(uid)
        return True


def only_asked(items: Mapping[int, object], uids: Iterable[int]) -> dict[int, object]:
    """Rule G3: the answers (by UID) for the UIDs asked for."""
    asked = set(uids)
    return {uid: it for uid, it in items.items() if uid in asked}
