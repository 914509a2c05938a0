"""The journal of local changes: one frozen dataclass per kind of change, and its stored form.

Owns: what each local operation carries (the names and UIDs it acts on, as they were when it was
made) and how it is written to and read from a pending_ops row (``kind`` + JSON ``args``). Must not:
touch the store or the server; LocalChanges (mailsync.changes) writes entries, the engine carries
them out (one push function per kind) and mailsync.sync.undo puts the store back when the server
refuses one.

Folder names are the server's raw names (modified UTF-7) as they were when the change was made:
the journal is pushed in order, so a change made before a local rename names the old folder and
reaches it before the rename does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Union

from mailsync.errors import StoreError


@dataclass(frozen=True)
class FlagChange:
    """Flags added to and removed from one message (its placement is the entry's placement)."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Move:
    """The message at ``src_uid`` of ``src_folder`` moved to ``dest_folder`` (the placement waits
    there for its new UID)."""

    src_folder: str
    src_uid: int
    dest_folder: str


@dataclass(frozen=True)
class Delete:
    """The message at ``uid`` of ``folder_name`` deleted; ``message_id`` and ``size`` are what the UID
    must still hold when the delete goes out (journals written before they existed lack them)."""

    folder_name: str
    uid: int
    message_id: str | None = None
    size: int | None = None

    @property
    def expected(self) -> tuple[str | None, int] | None:
        return None if self.size is None else (self.message_id, self.size)


@dataclass(frozen=True)
class Append:
    """A new message (the entry's placement, with its body) put into ``folder_name``."""

    folder_name: str


@dataclass(frozen=True)
class Mkdir:
    folder_name: str


@dataclass(frozen=True)
class Rmdir:
    folder_name: str


@dataclass(frozen=True)
class Rename:
    old: str
    new: str


@dataclass(frozen=True)
class LabelChange:
    """Gmail labels (X-GM-LABELS) added to and removed from the message at ``uid`` of
    ``folder_name`` (the entry's placement); Gmail accounts only."""

    folder_name: str
    uid: int
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


Operation = Union[FlagChange, Move, Delete, Append, Mkdir, Rmdir, Rename, LabelChange]

KINDS: dict[str, type] = {"flags": FlagChange, "move": Move, "delete": Delete, "append": Append,
                          "mkdir": Mkdir, "rmdir": Rmdir, "rename": Rename, "labels": LabelChange}
_KIND_OF = {cls: kind for kind, cls in KINDS.items()}


@dataclass(frozen=True)
class Entry:
    """One journal row as the engine reads it."""

    id: int
    state: str  # pending | sent (done and failed rows are not read back)
    placement_id: int | None
    folder_id: int | None
    op: Operation

    @property
    def kind(self) -> str:
        return kind_of(self.op)


def kind_of(op: Operation) -> str:
    return _KIND_OF[type(op)]


def encode(op: Operation) -> tuple[str, str]:
    """(kind, args JSON) for a pending_ops row."""
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(op).items() if v is not None}
    return kind_of(op), json.dumps(args, sort_keys=True)


def decode(kind: str, args: str, *, op_id: int | None = None) -> Operation:
    """The operation a pending_ops row holds. A row this version cannot read (an unknown kind,
    missing or unknown fields, broken JSON) is a damaged store: StoreError naming the row."""
    where = f"local change #{op_id}" if op_id is not None else "a local change"
    cls = KINDS.get(kind)
    try:
        data = json.loads(args or "{}")
        if cls is None or not isinstance(data, dict):
            raise ValueError(f"unknown kind {kind!r}" if cls is None else "its arguments are not an object")
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{where} in the store cannot be read ({exc})",
                         hint="the store was written by a newer mailsync (run that version), or is damaged "
                              "(restore it from a backup)") from exc
