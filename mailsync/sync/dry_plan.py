"""What `mailsync sync --dry-run` reports: the plan of one sync of an account, as data.

Owns: the shape of the dry run's report (per account, per journal entry, per folder) and its JSON
form. Must not: gather anything (dry_run.py does) or format text (the CLI does).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OpPlan:
    """One journal entry and what the sync would do with it."""

    id: int
    kind: str
    state: str  # as the journal has it: pending | sent
    what: str  # the change, in words
    sends: list[str] = field(default_factory=list)  # the IMAP commands it would send
    outcome: str = "done"  # done (counted as pushed) | failed
    why: str | None = None  # why it fails, or why nothing is sent


@dataclass
class FolderPlan:
    """What the sync would do in one folder."""

    name: str
    action: str = "sync"  # sync | unchanged | new | empty (made by the journal) | aside
    mode: str | None = None  # qresync | condstore | full | whole (rule D4)
    reason: str | None = None  # a fallback to the full comparison, a set-aside, a rematch
    downloads: list[tuple[int, int]] = field(default_factory=list)  # (UID, size): rule M1
    linked: list[int] = field(default_factory=list)  # new UIDs whose body the store has (N1): no download
    heads: list[int] = field(default_factory=list)  # new UIDs larger than max_size: by their headers (H1)
    completed: list[int] = field(default_factory=list)  # of the downloads, bodies of messages held so (H3)
    moved_in: list[int] = field(default_factory=list)  # of those, messages that left another folder (N2)
    expunged: list[int] = field(default_factory=list)  # UIDs whose placements go (M2)
    held: str | None = None  # why its deletions are held (G1, G2)
    flag_changes: int = 0  # placements taking the server's flags (M3)
    # (UID, +, -) of each flag push (T3); UID None: a message a local move brings here, its UID not known yet
    pushes: list[tuple[int | None, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    conflicts: list[tuple[int, str, bool]] = field(default_factory=list)  # (UID, flag, kept): T2
    settled: int = 0  # queued flag changes the server already agrees with (T4)

    @property
    def download_bytes(self) -> int:
        return sum(size for _, size in self.downloads)


@dataclass
class AccountPlan:
    """A sync of one account, as it would run now. The counters are those AccountResult would show."""

    account: str
    ok: bool = True
    error: str | None = None
    ops: list[OpPlan] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # folders new in the store (rule F2)
    dropped: list[str] = field(default_factory=list)  # folders gone from the server: dropped (F2)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old, new): rule F4
    folders_plan: list[FolderPlan] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    folders: int = 0
    new_messages: int = 0
    downloads: int = 0  # bodies: of new messages, and of messages held by their headers (rule H3)
    download_bytes: int = 0
    heads: int = 0  # new messages larger than max_size, placed by their headers (rule H1)
    completed: int = 0  # of the downloads, bodies of messages held by their headers (rule H3)
    flag_changes: int = 0
    expunged: int = 0
    moves: int = 0
    pushed: int = 0
    conflicts: int = 0

    def as_dict(self) -> dict:
        return {
            "account": self.account, "ok": self.ok, "error": self.error,
            "folders": self.folders, "new_messages": self.new_messages, "downloads": self.downloads,
            "download_bytes": self.download_bytes, "headers_only": self.heads, "completed": self.completed,
            "flag_changes": self.flag_changes, "expunged": self.expunged,
            "moved": self.moves, "pushed": self.pushed, "conflicts": self.conflicts,
            "folders_created": self.created, "folders_dropped": self.dropped,
            "folders_renamed": [{"from": a, "to": b} for a, b in self.renamed],
            "set_aside": self.set_aside, "notes": self.notes,
            "local_changes": [{"id": o.id, "kind": o.kind, "state": o.state, "change": o.what, "sends": o.sends,
                               "outcome": o.outcome, "why": o.why} for o in self.ops],
            "folder_plans": [{
                "folder": f.name, "action": f.action, "mode": f.mode, "reason": f.reason,
                "downloads": [{"uid": u, "size": s} for u, s in f.downloads], "download_bytes": f.download_bytes,
                "linked": f.linked, "headers_only": f.heads, "completed": f.completed, "moved_in": f.moved_in, "expunged": f.expunged, "held": f.held, "flag_changes": f.flag_changes,
                "flag_pushes": [{"uid": u, "add": list(a), "remove": list(r)} for u, a, r in f.pushes],
                "conflicts": [{"uid": u, "flag": fl, "kept": k} for u, fl, k in f.conflicts],
                "settled": f.settled} for f in self.folders_plan],
        }
