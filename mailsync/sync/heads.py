"""Messages larger than max_size: held by their header section, their bodies fetched later.

  H1  With max_size, a new message LARGER than it (and, with max_age, SINCE the day max_age ago:
      rule A1 still leaves older mail out) is not downloaded: one UID FETCH of BODY.PEEK[HEADER]
      with what a placement needs (UID FLAGS INTERNALDATE RFC822.SIZE [MODSEQ] [Gmail's ids])
      gives it its placement, committed in batches like downloads (rule C1), pointing at a bodies
      row that holds the header section alone (mailsync.store.headers_only). Its flags merge and
      are pushed, it moves and is deleted, like any other message: all of that needs no body.
  H2  Such a message is recognised like any other before anything is read (rule N1 by Message-ID
      and size, rule N5 by X-GM-MSGID): one whose whole body the store holds is placed on it.
  H3  A folder whose last sync ran under other limits (max_size raised or removed) downloads the
      bodies of its messages held by their headers that the limits now allow, each stored
      content-addressed and named instead of the header section (headers_only.complete) in the
      transaction of its batch; `mailsync show` does the same for one message, on demand.

Owns: those steps, as Heads, a mixin of engine.AccountSync (its account, store worker and run
ledger), and the store task that completes bodies. Must not: decide what a limit allows (limits.py
does) or write the store but through the StoreWorker.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from mailsync.errors import ProtocolError
from mailsync.store import headers_only
from mailsync.store.uow import UnitOfWork
from mailsync.sync import crash, store_tasks
from mailsync.sync.gmail import with_label
from mailsync.sync.limits import since_criterion
from mailsync.sync.message import message_id

if TYPE_CHECKING:
    from mailsync.store.worker import StoreWorker
    from mailsync.sync.session import ImapSession

BATCH_BYTES = 16 * 1024 * 1024  # bodies completed in one transaction, at most (one message may be larger)


def larger_criteria(max_age: int | None, max_size: int, now: datetime) -> str:
    """Rule H1 (pure): the SEARCH criteria of the messages held by their headers."""
    return f"LARGER {max_size}" + (f" {since_criterion(max_age, now)}" if max_age is not None else "")


class Heads:
    """The max_size half of a sync (see the module's docstring)."""

    def _larger_new(self, conn: ImapSession, uids: list[int] | None) -> list[int]:
        """Rule H1: of ``uids`` (None: every message of the selected folder), those to hold by their
        header section; none without max_size."""
        acc = self.account
        if acc.max_size is None or (uids is not None and not uids):
            return []
        found = conn.uid_search(larger_criteria(acc.max_age, acc.max_size, datetime.now(timezone.utc)))
        if uids is None:
            return sorted(found)
        found = set(found)
        return [u for u in uids if u in found]

    def _download_heads(self, conn: ImapSession, db: StoreWorker, folder_id: int, name: str, uids: list[int]) -> None:
        """Rule H1: placements of ``uids`` on their header sections, committed in batches."""
        wanted = set(uids)
        batch: list = []
        gm: list = []
        nbytes = 0
        for item in conn.fetch_heads(uids):
            if item.uid is None or item.uid not in wanted or item.header_fields is None:
                continue  # an unsolicited FETCH (a flag change), or a second answer for one UID
            wanted.discard(item.uid)
            if item.internaldate is None or item.size is None:
                raise ProtocolError(f"account '{self.account.name}': FETCH of UID {item.uid} in {name!r} came "
                                    f"without its {'INTERNALDATE' if item.internaldate is None else 'RFC822.SIZE'}")
            head = bytes(item.header_fields)
            body = headers_only.new_head(head, item.size, message_id(head))
            batch.append((body, store_tasks.placement_row(self.ledger, folder_id, item, body.sha256)))
            if item.gm_msgid is not None:
                gm.append((item.gm_msgid, item.gm_thrid, body.sha256,
                           with_label(item.gm_labels, self._gmail_label(folder_id))))
            nbytes += len(head)
            if len(batch) >= self.account.batch_size:
                db.submit(store_tasks.commit_batch, self.side, folder_id, name, list(batch), nbytes, list(gm))
                batch.clear()
                gm.clear()
                nbytes = 0
                self._check_stop()
        if batch:
            db.submit(store_tasks.commit_batch, self.side, folder_id, name, list(batch), nbytes, list(gm))
        if uids:
            self.ledger.note(f"folder {name!r}: {len(uids) - len(wanted)} message(s) larger than max_size "
                             f"({self.account.max_size} bytes) held by their headers; `mailsync show` fetches a body")

    def _complete_heads(self, conn: ImapSession, db: StoreWorker, folder_id: int, name: str) -> None:
        """Rule H3: the bodies of the folder's messages held by their headers that max_size allows now."""
        max_size = self.account.max_size
        waiting = db.call(lambda uow: headers_only.waiting(uow.connection, folder_id, max_size))
        if not waiting:
            return
        done: list[tuple[str, bytes]] = []
        nbytes = 0
        for item in conn.fetch_messages(sorted(waiting)):
            if item.uid not in waiting or item.body is None:
                continue
            done.append((waiting.pop(item.uid), bytes(item.body)))
            nbytes += len(item.body)
            if nbytes >= BATCH_BYTES:
                db.submit(complete_task, self.side, name, list(done))
                done.clear()
                nbytes = 0
                self._check_stop()
        if done:
            db.submit(complete_task, self.side, name, list(done))


def complete_task(uow: UnitOfWork, side: store_tasks.StoreSide, name: str, done: list[tuple[str, bytes]]) -> None:
    """Rule H3 on the store worker: each (header key, whole message) completed, in one transaction."""
    s = uow.connection
    n = 0
    for key, raw in done:
        known = headers_only.key_of(s, key)
        if known is None:  # completed meanwhile (mailsync show), or gone
            continue
        headers_only.complete(s, key, raw, known[1] or message_id(raw))
        n += 1
    uow.commit()
    crash.point("bodies completed")
    if n:
        side.ledger.note(f"folder {name!r}: {n} body(ies) of message(s) held by their headers downloaded "
                         f"(within max_size now)")
