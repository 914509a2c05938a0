"""The model behind the model-based sync test (tests/integration/test_model.py): which message must
be where after a quiet sync, given what the server held just before it and the local changes queued
since the last quiet sync. Pure (state in, expectation out), plus a second client's view of a server.

Every message the test makes carries a unique token in its Message-ID (<tN.SALT@model.invalid>) and
body, so "nothing lost, nothing duplicated" is a count of tokens, not a guess by content.

The rules it holds the engine to (DESIGN.md, "Two-way rules"), applied to the local changes in the
order they were made, as the engine pushes them:
- a change whose premise still holds on the server (the message is still at the folder and UID the
  store named; the folders it names exist or do not, as needed) must land exactly: a delete removes
  exactly that message, a move puts it in the destination, a rename takes the whole subtree along;
- a change whose premise no longer holds (the server moved, expunged or renamed things meanwhile, or
  an interrupted sync already sent it) may land or not: both outcomes are allowed, nothing else is;
  so may a change an interrupted sync may have sent (the server may have made its premise true
  again since); a message appended locally must survive somewhere even then;
- every message no change touched stays exactly where the server has it;
- flags merge per flag against the base (the flags last agreed), the server winning a conflict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from imapclient import IMAPClient

from mailsync.imap import utf7

from helpers import client_for

TOKEN = re.compile(rb"<(t\d+)\.[0-9a-z]+@model\.invalid>")
ANYWHERE = "*"  # an allowed outcome: present in some folder (not lost), whichever
SPECIAL = ("Sent", "Drafts", "Trash", "Junk", "Archive")


@dataclass(frozen=True)
class Seen:
    """Where a second client sees a message."""

    folder: str
    uid: int
    flags: frozenset[str]


@dataclass
class ServerView:
    folders: set[str]
    delimiter: str
    messages: dict[str, list[Seen]]  # token -> every place it is in (more than one: duplicated)
    strangers: list[tuple[str, int]] = field(default_factory=list)  # (folder, uid) without a token

    def one(self, token: str) -> Seen | None:
        places = self.messages.get(token) or []
        return places[0] if places else None


@dataclass(frozen=True)
class LocalOp:
    """A change queued through LocalChanges, in the terms the model needs."""

    kind: str  # append | move | delete | flags | mkdir | rmdir | rename
    token: str | None = None
    folder: str | None = None  # append: target; move/delete/flags: source; mkdir/rmdir: name; rename: old
    uid: int | None = None
    dest: str | None = None  # move: destination; rename: new name
    add: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()
    maybe_sent: bool = False  # a sync that may have pushed it was killed or cut off since


def make_message(token: str, salt: str, pad: int) -> bytes:
    return (f"From: model@example.org\r\nTo: me@example.org\r\nMessage-ID: <{token}.{salt}@model.invalid>\r\n"
            f"Subject: {token}\r\n\r\nbody of {token}\r\n{'x' * pad}\r\n").encode()


def token_of(data: bytes | None) -> str | None:
    m = TOKEN.search(data or b"")
    return m.group(1).decode() if m else None


def observe(client: IMAPClient) -> ServerView:
    """Every selectable folder and every message in it, read-only (FLAGS and the Message-ID line)."""
    client.folder_encode = False
    view = ServerView(set(), "/", {})
    for flags, delim, raw in client.list_folders():
        if delim:
            view.delimiter = delim.decode() if isinstance(delim, bytes) else delim
        if any(f.lower() in (b"\\noselect", b"\\nonexistent") for f in flags):
            continue
        raw_s = raw.decode() if isinstance(raw, bytes) else raw
        name = utf7.decode(raw_s)
        try:
            info = client.select_folder(raw_s, readonly=True)
        except IMAPClient.Error:  # Dovecot lists a deleted parent of folders as if it still were one
            continue
        view.folders.add(name)
        if not info[b"EXISTS"]:
            continue
        uids = client.search("ALL")
        for uid, data in client.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]).items():
            header = next((v for k, v in data.items() if k.startswith(b"BODY[HEADER")), b"")
            token = token_of(header)
            fl = frozenset(f.decode() for f in data[b"FLAGS"] if f.lower() != b"\\recent")
            if token is None:
                view.strangers.append((name, uid))
            else:
                view.messages.setdefault(token, []).append(Seen(name, uid, fl))
    client.unselect_folder() if client.has_capability("UNSELECT") else None
    return view


def observe_user(user) -> ServerView:
    c = client_for(user)
    try:
        return observe(c)
    finally:
        c.logout()


def in_subtree(folder: str, top: str, delim: str) -> bool:
    return folder == top or folder.startswith(top + delim)


def merge_flags(base: frozenset[str], server: frozenset[str], local: frozenset[str]) -> frozenset[str]:
    """Per flag against the base; when both sides changed a flag differently the server wins."""
    out = set()
    for f in base | server | local:
        b, s, lo = f in base, f in server, f in local
        keep = s if lo == b else lo if s == b else s
        if keep:
            out.add(f)
    return frozenset(out)


@dataclass
class Expectation:
    allowed: dict[str, set[str | None]]  # token -> folders it may end in (None: gone; ANYWHERE)
    flags: dict[str, frozenset[str]]  # token -> its flags after the sync, where the rules decide them
    why: dict[str, list[str]]  # token -> the local changes that decided it (for messages on failure)


def expect(before: ServerView, ops: Iterable[LocalOp], *, agreed: dict[str, tuple[str, int]],
           base_flags: dict[str, frozenset[str]], appended_flags: dict[str, frozenset[str]],
           server_flagged: set[str], interrupted: bool) -> Expectation:
    """What a quiet sync must leave on the server.

    before: the server just before the sync; ops: the local changes queued since the last quiet
    sync, in order; agreed/base_flags: each message's place and flags at that sync;
    appended_flags: the flags of messages appended locally since; server_flagged: tokens whose
    flags another client changed since; interrupted: a sync was killed or cut off since."""
    delim = before.delimiter
    loc: dict[str, tuple[str, int | None] | None] = {
        t: (s[0].folder, s[0].uid) for t, s in before.messages.items() if s}
    folders = set(before.folders)
    alt: dict[str, set[str | None]] = {}
    why: dict[str, list[str]] = {}
    flag_ops: dict[str, list[LocalOp]] = {}

    def loosen(token: str, *outcomes: str | None) -> None:
        alt.setdefault(token, set()).update(outcomes)

    for op in ops:
        if op.token:
            why.setdefault(op.token, []).append(_describe(op))
        t = op.token
        if op.kind == "append":
            if t in before.messages:  # an interrupted sync appended it: the server has had it since
                continue
            loc[t] = (op.folder, None)
            if op.folder not in folders:  # the folder went away on the server: keep it somewhere
                loosen(t, ANYWHERE)
            elif interrupted:  # it may have been appended, then expunged or moved on the server
                loosen(t, None, ANYWHERE)
        elif op.kind == "flags":
            flag_ops.setdefault(t, []).append(op)
        elif op.kind in ("move", "delete"):
            target = op.dest if op.kind == "move" else None
            ok = loc.get(t) == (op.folder, op.uid) and (target is None or target in folders)
            if ok:
                if op.maybe_sent:  # done before the interruption, and a new premise made since
                    loosen(t, loc[t][0])
                loc[t] = (target, None) if target else None
            else:  # the premise is gone: the change may land or not
                cur = loc.get(t)
                loosen(t, cur[0] if cur else None, target)
        elif op.kind == "mkdir":
            folders.add(op.folder)
        elif op.kind == "rmdir":
            inside = [tok for tok, place in loc.items() if place and place[0] == op.folder]
            children = [f for f in folders if f != op.folder and in_subtree(f, op.folder, delim)]
            if op.folder in folders and not children:
                folders.discard(op.folder)
                for tok in inside:
                    if op.maybe_sent:
                        loosen(tok, op.folder)
                    loc[tok] = None
            else:
                for tok in inside:
                    loosen(tok, None, op.folder)
        elif op.kind == "rename":
            old, new = op.folder, op.dest
            moved = {f: new + f[len(old):] for f in folders if in_subtree(f, old, delim)}
            if old in folders and not any(in_subtree(f, new, delim) for f in folders):
                folders.difference_update(moved)
                folders.update(moved.values())
                for tok, place in loc.items():
                    if place and place[0] in moved:
                        if op.maybe_sent:
                            loosen(tok, place[0])
                        loc[tok] = (moved[place[0]], place[1])
            else:
                for tok, place in loc.items():
                    if place and in_subtree(place[0], old, delim):
                        loosen(tok, place[0], new + place[0][len(old):])

    allowed = {t: {place[0] if place else None} | alt.get(t, set()) for t, place in loc.items()}
    flags: dict[str, frozenset[str]] = {}
    for t, place in loc.items():
        if place is None or t in alt:
            continue
        if t in appended_flags:
            if t in server_flagged:  # an interrupted sync appended it, then another client flagged it
                continue
            flags[t] = _apply(appended_flags[t], flag_ops.get(t, ()))
            continue
        seen = before.one(t)
        if seen is None or t not in base_flags:
            continue
        if flag_ops.get(t) and (agreed.get(t) != (seen.folder, seen.uid)
                                or (interrupted and t in server_flagged)):
            continue  # moved on the server under a local flag change, or the base is not known
        base = base_flags[t]
        local = _apply(base, flag_ops.get(t, ()))
        if interrupted and t not in server_flagged:  # what the server gained since is ours, in part
            flags[t] = local if flag_ops.get(t) else seen.flags
        else:
            flags[t] = merge_flags(base, seen.flags, local)
    return Expectation(allowed, flags, why)


def _apply(flags: frozenset[str], ops: Iterable[LocalOp]) -> frozenset[str]:
    out = set(flags)
    for op in ops:
        out = (out | op.add) - op.remove
    return frozenset(out)


def _describe(op: LocalOp) -> str:
    if op.kind == "flags":
        return f"flags {op.folder}/{op.uid} +{sorted(op.add)} -{sorted(op.remove)}"
    if op.kind == "move":
        return f"move {op.folder}/{op.uid} -> {op.dest}"
    if op.kind == "delete":
        return f"delete {op.folder}/{op.uid}"
    return f"{op.kind} {op.folder}"


def check(exp: Expectation, after: ServerView) -> list[str]:
    """Every way the server after the sync breaks the expectation (empty: none)."""
    problems = []
    for t, places in sorted(after.messages.items()):
        if len(places) > 1:
            problems.append(f"{t} duplicated: {[(p.folder, p.uid) for p in places]}")
        if t not in exp.allowed:
            problems.append(f"{t} appeared from nowhere at {places[0].folder}/{places[0].uid}")
    if after.strangers:
        problems.append(f"messages without a model token: {after.strangers}")
    for t, allowed in sorted(exp.allowed.items()):
        seen = after.one(t)
        where = seen.folder if seen else None
        if where in allowed or (where is not None and ANYWHERE in allowed):
            if seen and t in exp.flags and seen.flags != exp.flags[t]:
                problems.append(f"{t} at {where}/{seen.uid} has flags {sorted(seen.flags)}, expected "
                                f"{sorted(exp.flags[t])} (local: {exp.why.get(t, [])})")
            continue
        state = "lost" if seen is None else f"at {where}/{seen.uid}"
        problems.append(f"{t} {state}, expected in {sorted(map(str, allowed))} (local: {exp.why.get(t, [])})")
    return problems
