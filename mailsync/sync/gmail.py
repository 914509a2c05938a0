r"""Gmail (capability X-GM-EXT-1): one message shown in many folders crosses the network once.

Gmail keeps a message once, with labels, and shows it in the folder of each label and in
[Gmail]/All Mail, each time under a UID of that folder. Rule N5: before the new UIDs of a folder
are downloaded, one FETCH lists them with X-GM-MSGID (and X-GM-THRID, X-GM-LABELS, and what a
placement needs but its body); those whose X-GM-MSGID the store holds a body for become placements
of that body (linked in step 5 with rule N1's links, so a label moved is a move, rule N2); only the
rest is downloaded, and each downloaded body's X-GM-MSGID is recorded in the transaction of its
batch (store_tasks.commit_batch), so a crash never leaves an id naming a body not committed, and a
rerun places what the interrupted run had downloaded instead of downloading it again. Labels follow
every listing that carries them (a CONDSTORE delta lists what changed), with the label of the
folder read put back: Gmail's X-GM-LABELS leaves it out (folder_label, with_label).

Rule N7: on Gmail, archiving (taking \Inbox away) or removing a label from many messages at once
empties much of a folder while every message stays in All Mail; the mass-deletion guard (rule G2)
counts a message still in another folder of the account as kept, like a move, so such a delta is
applied instead of held.

Rule N8: a message expunged from a label's folder has lost that label (Gmail shows a message in a
label's folder exactly while it has the label), so the store drops it then, without waiting for a
listing that carries the labels.

Rule N6: local deletes (mailsync delete, a mirror's deleted file) do what the user meant on Gmail,
where an expunge removes a label, not a message: a delete in a label's folder (INBOX, Sent and the
user's labels too) is sent as usual (\Deleted and UID EXPUNGE) and takes that label away, the
message staying in All Mail and its other labels; a delete in [Gmail]/All Mail (special-use \All),
which Gmail would only archive, moves the message into the \Trash folder, which is how Gmail deletes
a message (from every label; Gmail empties its Trash after 30 days).

And a local label change (mailsync label, journal.LabelChange) is pushed with UID STORE
+X-GM-LABELS / -X-GM-LABELS, guarded as a delete; sent twice after a crash, it changes nothing more.

Owns: those steps, as GmailSync, a mixin of engine.AccountSync (its store worker, run ledger and
deferred links), and the store tasks they submit. Must not: parse IMAP (mailsync.imap does), write
the store but through the StoreWorker, or decide anything for servers without X-GM-EXT-1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailsync.imap.responses import format_uid_set
from mailsync.store import gmail_repo
from mailsync.store.uow import UnitOfWork
from mailsync.sync import crash

if TYPE_CHECKING:
    from mailsync.store.worker import StoreWorker
    from mailsync.sync.session import ImapSession
    from mailsync.sync.store_tasks import StoreSide, SyncFolder

CAPABILITY = "X-GM-EXT-1"


def is_gmail(conn) -> bool:
    return conn.has(CAPABILITY)


# special-use of a [Gmail] folder -> the system label that puts a message in it (Google's LIST transcript)
_SYSTEM_LABELS = {"\\Sent": "\\Sent", "\\Drafts": "\\Draft", "\\Important": "\\Important",
                  "\\Flagged": "\\Starred", "\\Trash": "\\Trash", "\\Junk": "\\Spam"}


def folder_label(raw_name: str, special_use: str | None) -> str | None:
    """The label a Gmail folder shows (pure): \\Inbox for INBOX, the system label of a special-use
    folder, None for All Mail (\\All), else the folder's own name (as the server names it)."""
    if raw_name.upper() == "INBOX":
        return "\\Inbox"
    if special_use == "\\All":
        return None
    return _SYSTEM_LABELS.get(special_use or "", raw_name)


def with_label(labels: tuple[str, ...] | None, label: str | None) -> tuple[str, ...] | None:
    """Gmail's X-GM-LABELS leaves out the label of the folder selected: it is put back (pure)."""
    if labels is None or label is None or label in labels:
        return labels
    return labels + (label,)


def labels_of(items, label: str | None = None) -> dict[int, tuple[str, ...]]:
    """X-GM-MSGID -> X-GM-LABELS of the FETCH items that carry both, with the label of the folder
    they were read in (``label``, see folder_label) (pure)."""
    return {it.gm_msgid: with_label(it.gm_labels, label) for it in items
            if it.gm_msgid is not None and it.gm_labels is not None}


def split_known(listing: dict, known: dict[int, str], wanted: list[int] | None) -> tuple[list[tuple[int, str]], list[int]]:
    """Rule N5, pure: of the ``wanted`` UIDs (None: every UID listed), those whose X-GM-MSGID has a
    stored body -> (UID, body SHA-256) to place, and the UIDs left to download, both in UID order.
    A UID the listing left out is downloaded (the download's FETCH decides whether it is there)."""
    uids = sorted(listing) if wanted is None else sorted(wanted)
    place, fetch = [], []
    for uid in uids:
        item = listing.get(uid)
        sha = known.get(item.gm_msgid) if item is not None and item.gm_msgid is not None else None
        if sha is not None:
            place.append((uid, sha))
        else:
            fetch.append(uid)
    return place, fetch


class GmailSync:
    """The Gmail steps of a sync (see the module's docstring)."""

    def _gmail_new(self, conn: ImapSession, db: StoreWorker, folder: SyncFolder,
                   uids: list[int] | None) -> tuple[list[int], bool]:
        """Rule N5 for the new ``uids`` of ``folder`` (None: all of it, rule D4). Returns the UIDs
        left to download and whether placements were deferred to step 5."""
        listing = conn.gm_listing("1:*" if uids is None else format_uid_set(uids))
        if uids is not None:
            wanted = set(uids)
            listing = {uid: it for uid, it in listing.items() if uid in wanted}
        ids = [it.gm_msgid for it in listing.values() if it.gm_msgid is not None]
        known = db.call(known_task, self.side, ids) if ids else {}
        place, fetch = split_known(listing, known, uids)
        for uid, sha in place:
            self._deferred_links.append((folder.id, uid, listing[uid], sha))
        self._gmail_labels(db, [listing[uid] for uid, _ in place], folder.id)
        if place:
            self.ledger.note(f"folder {folder.name!r}: {len(place)} Gmail message(s) already stored "
                             f"(by X-GM-MSGID) placed without downloading them again")
        return fetch, bool(place)

    def _push_labels(self, conn: ImapSession, db: StoreWorker, entry, op) -> None:
        """A local label change (journal.LabelChange): UID STORE +X-GM-LABELS / -X-GM-LABELS, guarded
        like a delete; sending it twice (a crash before "done") changes nothing more."""
        from mailsync.errors import ProtocolError
        from mailsync.sync import journal_store

        if not is_gmail(conn):
            raise ProtocolError(f"account '{self.account.name}': the server does not offer Gmail's labels "
                                f"(X-GM-EXT-1): the label change was not sent")
        conn.select(op.folder_name)
        key = db.call(journal_store.placement_key, self.side, entry.placement_id)
        present = self._guard(conn, op.folder_name, op.uid, key, "label change")
        if not present:
            db.call(journal_store.mark, self.side, entry.id, "failed",
                    "the message left the folder on the server before the label change reached it")
            return
        db.call(journal_store.mark, self.side, entry.id, "sent")
        crash.point("labels sent")
        for op_name, labels in (("+X-GM-LABELS", op.add), ("-X-GM-LABELS", op.remove)):
            if labels:  # the pull that follows reads the labels back (the message's MODSEQ moved)
                conn.uid_store_labels([op.uid], op_name, labels)
        db.call(journal_store.mark, self.side, entry.id, "done")

    def _gmail_left(self, db: StoreWorker, folder_id: int, shas: set[str]) -> None:
        """Rule N8: messages expunged from a label's folder lost that label (whether or not Gmail
        moved their MODSEQ in the folders still showing them)."""
        label = self._gmail_label(folder_id)
        if label is not None:
            db.submit(drop_label_task, self.side, sorted(shas), label, small=True)

    def _gmail_trash(self, conn: ImapSession, db: StoreWorker, raw_name: str) -> str | None:
        """Rule N6: the Trash folder to move a message deleted in ``raw_name`` into, when the server
        is Gmail and ``raw_name`` is All Mail (\\All); None otherwise (delete as usual)."""
        if not is_gmail(conn):
            return None
        is_all, trash = db.call(trash_task, self.side, raw_name)
        if is_all and trash is None:  # Trash is not synced here (excluded): the server names it
            trash = next((f.raw_name for f in conn.list_folders(with_status=False) if f.special_use == "\\Trash"), None)
        return trash

    def _gmail_label(self, folder_id: int) -> str | None:
        """The label of a folder of this run (folder_label), from its LIST entry (``_gm_folders``)."""
        return self._gm_folders.get(folder_id)

    def _gmail_labels(self, db: StoreWorker, items, folder_id: int) -> None:
        """The labels the server listed in a folder, for the messages the store knows (the others
        get theirs with their download)."""
        labels = labels_of(items, self._gmail_label(folder_id))
        if labels:
            db.submit(labels_task, self.side, labels, small=True)


# -- store tasks (run on the store worker) -------------------------------------------------------


def known_task(uow: UnitOfWork, side: StoreSide, msgids: list[int]) -> dict[int, str]:
    return gmail_repo.known_bodies(uow.connection, side.account_id, msgids)


def trash_task(uow: UnitOfWork, side: StoreSide, raw_name: str) -> tuple[bool, str | None]:
    """(Is ``raw_name`` the account's \\All folder, the raw name of its \\Trash folder as stored)."""
    from sqlalchemy import select

    from mailsync.store import tables

    f = tables.folders.c
    uses = dict(uow.connection.execute(select(f.raw_name, f.special_use).where(
        f.account_id == side.account_id, f.special_use.in_(("\\All", "\\Trash")))).all())
    if uses.get(raw_name) != "\\All":
        return False, None
    return True, next((name for name, use in uses.items() if use == "\\Trash"), None)


def drop_label_task(uow: UnitOfWork, side: StoreSide, shas: list[str], label: str, commit: bool = True) -> None:
    gmail_repo.drop_label(uow.connection, side.account_id, shas, label)
    if commit:
        uow.commit()


def labels_task(uow: UnitOfWork, side: StoreSide, labels: dict[int, tuple[str, ...]]) -> None:
    gmail_repo.set_labels(uow.connection, side.account_id, labels)
    uow.commit()
    crash.point("labels committed")


def kept_elsewhere(db, side: StoreSide, folder_id: int, shas: set[str]) -> set[str]:
    """Rule N7 (for store_tasks.settle_mass): of ``shas``, the bodies the account still has live in
    another folder than ``folder_id``."""
    return gmail_repo.live_elsewhere(db, side.account_id, folder_id, shas)


def record_rows(uow: UnitOfWork, side: StoreSide, rows: list[tuple]) -> None:
    """In a downloaded batch's transaction (store_tasks.commit_batch): the X-GM-MSGID of each
    body, as (X-GM-MSGID, X-GM-THRID, SHA-256, labels)."""
    gmail_repo.record(uow.connection, side.account_id, rows)
