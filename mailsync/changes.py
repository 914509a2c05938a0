"""Local changes: the Python API behind `mailsync flag|move|delete|append|mkdir|rmdir|rename`.

Owns: recording a local change — the local state it changes and its journal entry (a
mailsync.sync.journal operation in a pending_ops row), in one transaction — so the next sync (or the
watch daemon) pushes it. Must not: speak IMAP (the sync
engine settles pending operations) or decide merges (plan.py does).

    changes = LocalChanges(store)
    changes.flag("work", "INBOX", 42, add=["\\Seen"], remove=["\\Flagged"])
    changes.move("work", "INBOX", 42, "Archive")
    changes.append("work", "Sent", raw_bytes, flags=["\\Seen"])

Every method returns the id of the pending operation. Given a unit of work (``LocalChanges(store,
uow=uow)``), the changes join its transaction and the caller commits them together (a channel
queues thousands at a time); without one, each change is its own transaction. Errors are ConfigError-free MailsyncErrors
naming the account, folder and UID that were not found, and what to do instead.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select

from mailsync.errors import MailsyncError
from mailsync.imap import utf7
from mailsync.store import repositories as repo
from mailsync.store.db import Store
from mailsync.store.models import Account, Folder, PendingOp, Placement, utcnow
from mailsync.store.uow import UnitOfWork
from mailsync.sync import journal
from mailsync.sync.message import message_id, sha256_hex
from mailsync.sync.plan import flags_text

_FLAG = re.compile(r"^(\\(Seen|Answered|Flagged|Deleted|Draft)|[^\s\\(){%*\"\]]+)$", re.IGNORECASE)
_SYSTEM = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}


class ChangeError(MailsyncError):
    """A local change that cannot be recorded (unknown account, folder or UID; a bad flag)."""

    exit_code = 2


def normalise_flag(flag: str) -> str:
    if not _FLAG.match(flag):
        raise ChangeError(f"{flag!r} is not a valid IMAP flag",
                          hint="use a system flag (\\Seen \\Answered \\Flagged \\Deleted \\Draft) or a keyword "
                               "such as $Label1 (no spaces, quotes or parentheses)")
    return _SYSTEM.get(flag.lower(), flag)


def split_changes(specs: list[str], what: str, example: str) -> tuple[list[str], list[str]]:
    """["+A", "-B"] -> (added, removed), for flags and Gmail labels alike; ``what`` and ``example``
    name them in the error."""
    add, remove = [], []
    for spec in specs:
        if len(spec) < 2 or spec[0] not in "+-":
            raise ChangeError(f"{what} change {spec!r} must start with + (add) or - (remove)", hint=f"e.g. {example}")
        (add if spec[0] == "+" else remove).append(spec[1:])
    return add, remove


def parse_flag_changes(specs: list[str]) -> tuple[list[str], list[str]]:
    """["+\\Seen", "-\\Flagged", "+$Label"] -> (add, remove)."""
    add, remove = split_changes(specs, "flag", "mailsync flag work INBOX 42 +\\\\Seen -\\\\Flagged")
    add, remove = [normalise_flag(f) for f in add], [normalise_flag(f) for f in remove]
    both = set(add) & set(remove)
    if both:
        raise ChangeError(f"flag {sorted(both)[0]!r} is both added and removed")
    return add, remove


MAX_APPEND_BYTES = 256 << 20  # a larger file is not a message any server takes
_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")  # RFC 5322 field name, then the colon


def check_message(head: bytes) -> None:
    """ChangeError unless ``head`` (the start of a file) looks like an RFC 5322 message: a header
    field first, and no NUL byte in the header block."""
    block = head.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    if not _FIELD.match(head):
        raise ChangeError("the file is not a mail message: it does not start with a header field (like 'From: ...')",
                          hint="append an RFC 5322 message, e.g. a .eml file saved by a mail client")
    if b"\0" in block:
        raise ChangeError("the file is not a mail message: its header holds NUL bytes (a binary file?)",
                          hint="append an RFC 5322 message, e.g. a .eml file saved by a mail client")


def read_message_file(path, limit: int = MAX_APPEND_BYTES) -> bytes:
    """The message in ``path``, read in chunks: what is not a message is refused from its first
    64 KiB, and nothing larger than ``limit`` is read whole (an endless input ends at the limit)."""
    chunks, size = [], 0
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 16)
                if not chunk:
                    break
                if not chunks:
                    check_message(chunk)
                size += len(chunk)
                if size > limit:
                    raise ChangeError(f"{path}: larger than {limit >> 20} MiB; refusing to append it",
                                      hint="is it really one message? (an endless input such as /dev/zero?)")
                chunks.append(chunk)
    except OSError as exc:
        raise ChangeError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return b"".join(chunks)


def ensure_message_id(raw: bytes) -> bytes:
    """Give a message without a Message-ID one, so a crash between APPEND and its answer can be
    settled by searching for it (the message is stored exactly as it will be appended)."""
    if message_id(raw):
        return raw
    nl = b"\r\n" if b"\r\n" in raw[:2000] else b"\n"
    mid = f"<{int(time.time())}.{secrets.token_hex(8)}@mailsync.invalid>".encode()
    return b"Message-ID: " + mid + nl + raw


class LocalChanges:
    def __init__(self, store: Store, *, uow: UnitOfWork | None = None) -> None:
        self.store = store
        self._shared = uow  # the caller's transaction, committed by the caller

    @contextmanager
    def _work(self) -> Iterator[UnitOfWork]:
        if self._shared is not None:
            yield self._shared
        else:
            with UnitOfWork(self.store) as uow:
                yield uow

    # -- lookups ----------------------------------------------------------------------------------

    def _account(self, uow: UnitOfWork, name: str) -> Account:
        acc = repo.find_account(uow.session, name)
        if acc is None:
            raise ChangeError(f"no account {name!r} in the store", hint="run mailsync sync once for it first")
        return acc

    def _folder(self, uow: UnitOfWork, acc: Account, name: str) -> Folder:
        folder = uow.session.scalars(select(Folder).where(Folder.account_id == acc.id, Folder.name == name,
                                                          Folder.status != "gone")).one_or_none()
        if folder is None:
            known = ", ".join(f.name for f in repo.folders_of(uow.session, acc.id) if f.status != "gone")
            raise ChangeError(f"account {acc.name!r} has no folder {name!r}", hint=f"folders: {known or '(none)'}")
        return folder

    def _placement(self, uow: UnitOfWork, acc: Account, folder: Folder, uid: int) -> Placement:
        p = uow.session.scalars(select(Placement).where(Placement.folder_id == folder.id, Placement.uid == uid,
                                                        Placement.tombstone_run.is_(None))).one_or_none()
        if p is None:
            raise ChangeError(f"account {acc.name!r} folder {folder.name!r} has no message with UID {uid}",
                              hint="list them with: mailsync export messages --folder NAME")
        return p

    def _op(self, uow: UnitOfWork, acc: Account, change: journal.Operation, *, folder: Folder | None = None,
            placement: Placement | None = None, state: str = "pending") -> int:
        kind, args = journal.encode(change)
        op = PendingOp(account_id=acc.id, kind=kind, folder_id=folder.id if folder else None,
                       placement_id=placement.id if placement else None, args=args,
                       state=state, attempts=0, created_at=utcnow())
        uow.session.add(op)
        uow.session.flush()
        if self._shared is None:
            uow.commit()
        return op.id

    # -- changes ----------------------------------------------------------------------------------

    def flag(self, account: str, folder: str, uid: int, *, add=(), remove=()) -> int:
        add = [normalise_flag(f) for f in add]
        remove = [normalise_flag(f) for f in remove]
        with self._work() as uow:
            acc = self._account(uow, account)
            f = self._folder(uow, acc, folder)
            p = self._placement(uow, acc, f, uid)
            current = set(p.flags.split())
            p.flags = flags_text((current | set(add)) - set(remove))
            change = journal.FlagChange(tuple(add), tuple(remove))
            if p.flags != p.base_flags:
                return self._op(uow, acc, change, folder=f, placement=p)
            # The message is back where the server has it (a change that changes nothing, or one
            # that undoes a queued one): nothing is left to push, so nothing stays pending.
            now = utcnow()
            for op in uow.session.scalars(select(PendingOp).where(
                    PendingOp.placement_id == p.id, PendingOp.kind == "flags", PendingOp.state == "pending")):
                op.state, op.updated_at = "done", now
            return self._op(uow, acc, change, folder=f, placement=p, state="done")

    def label(self, account: str, folder: str, uid: int, *, add=(), remove=()) -> int:
        """Gmail labels added and removed (pushed with UID STORE +X-GM-LABELS / -X-GM-LABELS); the
        store's labels of the message change at once, and the sync after the push confirms them."""
        from mailsync.store import gmail_repo

        add, remove = tuple(add), tuple(remove)
        if not add and not remove:
            raise ChangeError("no label to add or remove", hint="e.g. mailsync label gmail INBOX 42 +Work -Later")
        with UnitOfWork(self.store) as uow:
            acc = self._account(uow, account)
            f = self._folder(uow, acc, folder)
            p = self._placement(uow, acc, f, uid)
            if not gmail_repo.change_labels(uow.session, acc.id, p.body_sha256, add, remove):
                raise ChangeError(f"account {account!r}: the message at {folder!r} UID {uid} has no Gmail labels "
                                  f"in the store", hint="labels exist on Gmail accounts (X-GM-EXT-1) only; "
                                  "use mailsync flag for keywords on other servers")
            return self._op(uow, acc, journal.LabelChange(f.raw_name, uid, add, remove), folder=f, placement=p)

    def move(self, account: str, folder: str, uid: int, dest: str) -> int:
        with self._work() as uow:
            acc = self._account(uow, account)
            src = self._folder(uow, acc, folder)
            dst = self._folder(uow, acc, dest)
            if src.id == dst.id:
                raise ChangeError(f"cannot move a message to the folder it is in ({folder!r})")
            p = self._placement(uow, acc, src, uid)
            p.folder_id, p.uid = dst.id, None
            return self._op(uow, acc, journal.Move(src.raw_name, uid, dst.raw_name), folder=dst, placement=p)

    def delete(self, account: str, folder: str, uid: int) -> int:
        with self._work() as uow:
            acc = self._account(uow, account)
            f = self._folder(uow, acc, folder)
            p = self._placement(uow, acc, f, uid)
            sha = p.body_sha256
            # what the UID must still hold on the server when the delete goes out (the engine checks)
            mid, size = repo.placement_keys(uow.session, f.id, [uid])[uid]
            # a flag change still waiting for this message has nothing left to act on (rule L4)
            for op in uow.session.scalars(select(PendingOp).where(
                    PendingOp.placement_id == p.id, PendingOp.kind == "flags",
                    PendingOp.state.in_(("pending", "sent")))):
                op.state, op.updated_at = "done", utcnow()
            uow.session.delete(p)
            uow.session.flush()
            repo.delete_orphan_bodies(uow.session, [sha])
            return self._op(uow, acc, journal.Delete(f.raw_name, uid, mid, size), folder=f)

    def append(self, account: str, folder: str, raw: bytes, *, flags=(), internaldate: str | None = None) -> int:
        flags = [normalise_flag(x) for x in flags]
        if not raw.strip():
            raise ChangeError("refusing to append an empty message")
        check_message(raw[:1 << 16])
        raw = ensure_message_id(raw)
        with self._work() as uow:
            acc = self._account(uow, account)
            f = self._folder(uow, acc, folder)
            digest = sha256_hex(raw)
            repo.store_bodies(uow.session, [repo.NewBody(digest, len(raw), message_id(raw), raw)])
            from datetime import datetime, timezone

            idate = internaldate or datetime.now(timezone.utc).replace(microsecond=0).isoformat()
            p = Placement(folder_id=f.id, uid=None, body_sha256=digest, flags=flags_text(flags), base_flags=None,
                          modseq=None, internaldate=idate, size=len(raw))
            uow.session.add(p)
            uow.session.flush()
            return self._op(uow, acc, journal.Append(f.raw_name), folder=f, placement=p)

    def mkdir(self, account: str, name: str) -> int:
        with self._work() as uow:
            acc = self._account(uow, account)
            existing = uow.session.scalars(select(Folder).where(Folder.account_id == acc.id, Folder.name == name)
                                           ).one_or_none()
            if existing is not None and existing.status != "gone":
                raise ChangeError(f"account {account!r} already has a folder {name!r}")
            raw = utf7.encode(name)
            if existing is None:
                existing = Folder(account_id=acc.id, name=name, raw_name=raw, delimiter=None, fetched_uid=0, status="ok")
                uow.session.add(existing)
            else:
                existing.status = "ok"
            uow.session.flush()
            return self._op(uow, acc, journal.Mkdir(raw), folder=existing)

    def rmdir(self, account: str, name: str) -> int:
        with self._work() as uow:
            acc = self._account(uow, account)
            f = self._folder(uow, acc, name)
            if f.name.upper() == "INBOX":
                raise ChangeError("INBOX cannot be deleted")
            raw = f.raw_name
            shas = list(uow.session.scalars(select(Placement.body_sha256).where(Placement.folder_id == f.id)))
            uow.session.delete(f)
            uow.session.flush()
            repo.delete_orphan_bodies(uow.session, shas)
            return self._op(uow, acc, journal.Rmdir(raw))

    def rename(self, account: str, old: str, new: str) -> int:
        with self._work() as uow:
            acc = self._account(uow, account)
            f = self._folder(uow, acc, old)
            if uow.session.scalars(select(Folder).where(Folder.account_id == acc.id, Folder.name == new)).first():
                raise ChangeError(f"account {account!r} already has a folder {new!r}")
            old_raw, old_name = f.raw_name, f.name
            f.name, f.raw_name = new, utf7.encode(new)
            # The server renames the folders below it too (RFC 3501 6.3.5): so does the store, now,
            # so that the next sync finds each of them under its new name.
            delimiter = f.delimiter or next((o.delimiter for o in repo.folders_of(uow.session, acc.id)
                                            if o.delimiter), None)
            if delimiter:
                for child in uow.session.scalars(select(Folder).where(
                        Folder.account_id == acc.id, Folder.id != f.id,
                        Folder.raw_name.startswith(old_raw + delimiter, autoescape=True))):
                    child.raw_name = f.raw_name + child.raw_name[len(old_raw):]
                    child.name = new + child.name[len(old_name):]
            return self._op(uow, acc, journal.Rename(old_raw, f.raw_name), folder=f)
