"""Downloads: new messages read off the socket and committed by the store worker in batches.

Owns: the download loops (a list of UIDs, _download; a whole folder straight into pack batches,
_download_packed with download_packed.PackedDownload, rule D4), as Downloads, a mixin of
engine.AccountSync whose account, run ledger, store worker and pack writer it uses; what they read
is committed by store_tasks.commit_batch and commit_written on the store worker (rules C1, C3). Must not: decide what to download (plan.py and engine._sync_folder do), or
touch flags and tombstones of messages already stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailsync.errors import ProtocolError, Throttled
from mailsync.store import repositories as repo
from mailsync.store.uow import UnitOfWork
from mailsync.store.worker import PackWriter, StoreWorker
from mailsync.sync import store_tasks
from mailsync.sync.gmail import with_label
from mailsync.sync import plan as rules
from mailsync.sync.message import message_id, sha256_hex

if TYPE_CHECKING:
    from mailsync.sync.session import ImapSession

BATCH_BYTES = 16 * 1024 * 1024  # a batch is committed at batch_size messages or this many bytes


class Downloads:
    """The download half of a sync (see the module's docstring)."""

    def _download(self, conn: ImapSession, db: StoreWorker, folder_id: int, name: str, uids: list[int] | None,
                  ahead: str | None = None, info=None) -> None:
        """Read messages off the socket here; the store worker commits them in batches.
        ``uids`` None: every message of the folder as SELECT described it (``info``; rule D4);
        ``ahead`` as in _sync_folder."""
        wanted = set(uids) if uids is not None else None
        within = rules.WholeFolder(info.exists, info.uidnext) if info is not None else None
        batch: list = []
        gm: list = []  # Gmail: (X-GM-MSGID, X-GM-THRID, SHA-256, labels) of the batch's bodies (gmail.py)
        limit = self.account.batch_size
        try:
            self._read_batches(conn, db, folder_id, name, uids, ahead, wanted, within, batch, gm, limit)
        except Throttled:  # every message read so far is whole: committed, so the resumed sync skips them
            if batch:
                db.submit(store_tasks.commit_batch, self.side, folder_id, name, batch, sum(b[0].size for b in batch),
                          gm)
            raise

    def _read_batches(self, conn, db, folder_id, name, uids, ahead, wanted, within, batch: list, gm: list,
                      limit: int) -> None:
        """_download's loop; ``batch`` (and ``gm``, its Gmail ids) holds what was read and not handed
        over yet."""
        nbytes = 0
        for item in (conn.fetch_all_messages(ahead=ahead) if uids is None else conn.fetch_messages(uids)):
            if not self._asked_for(item, name, wanted) or (within is not None and not within.take(item.seq, item.uid)):
                continue
            if wanted is not None:
                wanted.discard(item.uid)  # a second answer for one UID is not a second message (rule G3)
            # Hashed and turned into rows here, not on the store worker: measured, this thread has
            # the slack (it waits on the server) and the worker's job stays short.
            body = item.body
            digest = sha256_hex(body)
            batch.append((repo.NewBody(digest, len(body), message_id(body), body),
                          store_tasks.placement_row(self.ledger, folder_id, item, digest)))
            if item.gm_msgid is not None:  # Gmail leaves the folder's own label out (gmail.py)
                gm.append((item.gm_msgid, item.gm_thrid, digest, with_label(item.gm_labels, self._gmail_label(folder_id))))
            nbytes += len(body)
            if len(batch) >= limit or nbytes >= BATCH_BYTES:
                db.submit(store_tasks.commit_batch, self.side, folder_id, name, list(batch), nbytes, list(gm))
                batch.clear()
                gm.clear()
                nbytes = 0
                self._check_stop()  # after the batch was handed over: it is committed on the way out
        if batch:
            db.submit(store_tasks.commit_batch, self.side, folder_id, name, list(batch), nbytes, list(gm))
            batch.clear()
            gm.clear()

    def _download_packed(self, conn: ImapSession, db: StoreWorker, folder_id: int, name: str, ahead: str | None = None,
                         info=None) -> None:
        """Rule D4 into a store with pack files, without copying a message (download_packed.py)."""
        from mailsync.sync.download_packed import PackedDownload

        if self._writer is None:
            self._writer = PackWriter(self.store.packs, stage=self.mirror_stage.put if self.mirror_stage else None)
        if not self._bulk_checkpoints:  # until the end of the run (see run())
            db.submit(bulk_checkpoints_task, True, small=True)
            self._bulk_checkpoints = True
        run = PackedDownload(self, db, folder_id, name, info)
        try:
            for item in conn.fetch_all_messages(into=run.into, ahead=ahead):
                if run.take(item):
                    self._check_stop()  # after the batch was handed over: it is committed on the way out
        except Throttled:  # every message read so far is whole: committed, so the resumed sync skips them
            run.finish()
            raise
        except BaseException:
            run.abandon()
            raise
        run.finish()

    def _asked_for(self, item, name: str, wanted: set[int] | None = None) -> bool:
        """Is this FETCH item one of the messages being downloaded (in ``wanted``, when given)? Not an
        unsolicited FETCH (a flag change). ProtocolError for a message without its INTERNALDATE."""
        if item.body is None or item.uid is None or (wanted is not None and item.uid not in wanted):
            return False
        if item.internaldate is None:
            raise ProtocolError(f"account '{self.account.name}': FETCH of UID {item.uid} in {name!r} "
                                f"came without its INTERNALDATE")
        return True


def bulk_checkpoints_task(uow: UnitOfWork, on: bool) -> None:
    from mailsync.store.db import bulk_checkpoints

    bulk_checkpoints(uow.connection, on)
