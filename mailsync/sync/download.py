"""Downloads: new messages read off the socket and committed by the store worker in batches.

Owns: the download loops (a list of UIDs, _download; a whole folder straight into pack batches,
_download_packed, rule D4) and the store tasks that commit what they read (rules C1, C3), as
Downloads, a mixin of engine.AccountSync whose state it shares (the account, the result, the store
worker, the pack writer). Must not: decide what to download (plan.py and engine._sync_folder do), or
touch flags and tombstones of messages already stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from mailsync.errors import ProtocolError
from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.store.uow import UnitOfWork
from mailsync.store.worker import PackWriter, StoreWorker
from mailsync.sync import crash
from mailsync.sync import plan as rules
from mailsync.sync.message import message_id, message_id_at, sha256_hex

if TYPE_CHECKING:
    from mailsync.imap.connection import ImapConnection

BATCH_BYTES = 16 * 1024 * 1024  # a batch is committed at batch_size messages or this many bytes


class Downloads:
    """The download half of a sync (see the module's docstring)."""

    def _download(self, conn: ImapConnection, db: StoreWorker, folder_id: int, name: str, uids: list[int] | None,
                  ahead: str | None = None, info=None) -> None:
        """Read messages off the socket here; the store worker commits them in batches.
        ``uids`` None: every message of the folder as SELECT described it (``info``; rule D4);
        ``ahead`` as in _sync_folder."""
        wanted = set(uids) if uids is not None else None
        within = rules.WholeFolder(info.exists, info.uidnext) if info is not None else None
        batch: list = []
        nbytes = 0
        limit = self.account.batch_size
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
                          self._placement_row(folder_id, item, digest)))
            nbytes += len(body)
            if len(batch) >= limit or nbytes >= BATCH_BYTES:
                db.submit(self._commit_batch, folder_id, name, batch, nbytes)
                batch, nbytes = [], 0
                self._check_stop()  # after the batch was handed over: it is committed on the way out
        if batch:
            db.submit(self._commit_batch, folder_id, name, batch, nbytes)

    def _download_packed(self, conn: ImapConnection, db: StoreWorker, folder_id: int, name: str, ahead: str | None = None,
                         info=None) -> None:
        """Rule D4 into a store with pack files, without copying a message: each literal is read
        straight into the pack batch it will be written from (packs.PackBatch), hashed there, and
        its record header put in front of it. A full batch goes to the pack writer (one request to
        the disk); the store worker commits the rows of the batches written so far when rule C3
        says so (_commit_written)."""
        from mailsync.imap.responses import parse_internaldate as iso_date
        from mailsync.store.packs import HEADER

        packs = self.store.packs
        if self._writer is None:
            self._writer = PackWriter(packs)
        writer = self._writer
        limit = self.account.batch_size
        batch = packs.new_batch(BATCH_BYTES)
        bodies: list[tuple] = []  # (sha256, size, message_id, offset in the batch)
        places: list[tuple] = []  # placement rows (repo.PLACEMENT_COLUMNS)
        nbytes = 0
        writes: list[tuple] = []  # (Future of (pack, start), bodies, places): written or being, not committed
        unsaved = unsaved_bytes = 0  # their messages and bytes (rule C3)
        since = time.monotonic()
        sha256 = hashlib.sha256
        known_flags: dict[tuple[str, ...] | None, str] = {}
        within = rules.WholeFolder(info.exists, info.uidnext) if info is not None else None  # rule G3

        def hand_over(last: bool = False) -> None:
            nonlocal batch, bodies, places, nbytes, writes, unsaved, unsaved_bytes, since
            full, batch = batch, packs.new_batch(BATCH_BYTES)  # `batch` is never one handed over
            if full.count:
                count, size = len(places), nbytes
                writes.append((writer.submit(full, lambda: self.observer.messages_stored(
                    self.account.name, name, count, size)), bodies, places))
                unsaved, unsaved_bytes = unsaved + count, unsaved_bytes + size
            else:
                packs.recycle(full)
            bodies, places, nbytes = [], [], 0
            if writes and (last or self._stopping()
                           or rules.commit_due(unsaved, unsaved_bytes, time.monotonic() - since, limit)):
                db.submit(self._commit_written, folder_id, name, writes, unsaved_bytes)
                writes, unsaved, unsaved_bytes, since = [], 0, 0, time.monotonic()

        def into(n: int) -> memoryview:
            nonlocal batch
            if not batch.fits(n):
                if batch.count:
                    hand_over()
                if not batch.fits(n):  # a message larger than a batch: a batch of its own
                    packs.recycle(batch)
                    batch = packs.new_batch(HEADER.size + n)
            return batch.slot(n)

        if not self._bulk_checkpoints:  # until the end of the run (see run())
            db.submit(bulk_checkpoints_task, True, small=True)
            self._bulk_checkpoints = True
        try:
            for item in conn.fetch_all_messages(into=into, ahead=ahead):
                if item.body is None or item.uid is None or item.internaldate is None:
                    self._asked_for(item, name)  # False for an unsolicited FETCH; raises without INTERNALDATE
                    continue
                if within is not None and not within.take(item.seq, item.uid):
                    continue
                body = item.body
                n = len(body)
                digest = sha256(body).digest()
                if type(body) is memoryview:  # read into its slot: the next record of the batch
                    offset = batch.add(n, digest)
                else:  # a response of an unusual shape: copied in
                    into(n)
                    offset = batch.put(body, digest)
                sha = digest.hex()
                flags = known_flags.get(item.flags)
                if flags is None:  # a folder's messages share few flag sets
                    flags = known_flags[item.flags] = rules.flags_text(item.flags or ())
                bodies.append((sha, n, message_id_at(batch.buf, offset, offset + n), offset))
                # _placement_values, written out: this loop runs once per message of a first sync
                try:
                    idate = iso_date(item.internaldate)
                except ProtocolError as exc:  # one bad date costs that date, not the message
                    idate = self._substitute_date(name, item, bytes(body), exc)
                places.append((folder_id, item.uid, sha, flags, flags, item.modseq, idate,
                               n if item.size is None else item.size))
                nbytes += n
                if len(places) >= limit or batch.used >= BATCH_BYTES:
                    hand_over()
                    self._check_stop()  # after the batch was handed over: it is committed on the way out
        except BaseException:
            packs.recycle(batch)  # what it holds was not handed over: read again next time
            if writes:  # what was handed over is committed on the way out, when the worker can
                with contextlib.suppress(Exception):
                    db.submit(self._commit_written, folder_id, name, writes, unsaved_bytes)
            raise
        hand_over(last=True)
        packs.recycle(batch)

    def _commit_written(self, uow: UnitOfWork, folder_id: int, name: str, writes: list[tuple],
                        nbytes: int) -> None:
        """On the store worker: once the pack writer has written these batches of _download_packed
        (durable, or the write's error raised here), insert their rows and move the folder's
        download mark, in one transaction (rules C1, C3). Rule D4 downloads only into a folder
        without placements, so no unsettled local append can be waiting for these UIDs
        (_adopt_unsettled has nothing to do)."""
        rows: list[tuple] = []
        placed: list[tuple] = []
        for written, bodies, places in writes:
            pack, start = written.result()
            rows += [(sha, size, mid, pack, start + off) for sha, size, mid, off in bodies]
            placed += places
        crash.point("packs written")
        s = uow.connection
        repo.add_packed_bodies(s, rows)
        repo.add_placement_rows(s, placed)
        self._batch_done(uow, folder_id, name, max(r[1] for r in placed), len(placed), nbytes, report=False)

    def _asked_for(self, item, name: str, wanted: set[int] | None = None) -> bool:
        """Is this FETCH item one of the messages being downloaded (in ``wanted``, when given)? Not an
        unsolicited FETCH (a flag change). ProtocolError for a message without its INTERNALDATE."""
        if item.body is None or item.uid is None or (wanted is not None and item.uid not in wanted):
            return False
        if item.internaldate is None:
            raise ProtocolError(f"account '{self.account.name}': FETCH of UID {item.uid} in {name!r} "
                                f"came without its INTERNALDATE")
        return True

    def _placement_values(self, folder_id: int, item, digest: str, flags: str | None = None) -> tuple:
        """A new placement from its FETCH item, in repo.PLACEMENT_COLUMNS order; its base flags are
        its flags (``flags``: their text, when the caller has it already). _download_packed builds
        the same tuple in line."""
        from mailsync.imap.responses import parse_internaldate

        if flags is None:
            flags = rules.flags_text(item.flags or ())
        try:
            idate = parse_internaldate(item.internaldate)
        except ProtocolError as exc:
            idate = self._substitute_date(None, item, item.body or item.header_fields or b"", exc)
        return (folder_id, item.uid, digest, flags, flags, item.modseq, idate,
                item.size if item.size is not None else len(item.body or b""))

    def _placement_row(self, folder_id: int, item, digest: str) -> dict:
        return dict(zip(repo.PLACEMENT_COLUMNS, self._placement_values(folder_id, item, digest)))

    def _adopt_unsettled(self, s, folder_id: int, rows: list[dict]) -> list[dict]:
        """A local append/move whose answer was lost (no APPENDUID/COPYUID, no Message-ID) shows up as a
        new UID with the same body: give our placement that UID instead of adding a second one."""
        waiting = {}
        pl = tables.placements.c
        for pid, sha in s.execute(select(pl.id, pl.body_sha256).where(pl.folder_id == folder_id, pl.uid.is_(None))):
            waiting.setdefault(sha, []).append(pid)
        if not waiting:
            return rows
        rest = []
        for row in rows:
            ids = waiting.get(row["body_sha256"])
            if ids:
                s.execute(update(tables.placements).where(pl.id == ids.pop(0))
                          .values(uid=row["uid"], base_flags=row["flags"], flags=row["flags"]))
            else:
                rest.append(row)
        return rest

    def _commit_batch(self, uow: UnitOfWork, folder_id: int, name: str, batch: list, nbytes: int) -> None:
        """On the store worker: one batch's bodies (to a pack first, where the store has packs), its
        placements and the folder's download mark, in one transaction (rule C1)."""
        s = uow.connection
        repo.store_bodies(s, [b for b, _ in batch])
        rows = [r for _, r in batch]
        repo.add_placements(s, self._adopt_unsettled(s, folder_id, rows))
        self._batch_done(uow, folder_id, name, max(r["uid"] for r in rows), len(batch), nbytes)

    def _batch_done(self, uow: UnitOfWork, folder_id: int, name: str, top_uid: int, count: int,
                    nbytes: int, report: bool = True) -> None:
        """The end of a batch's transaction: the folder's download mark moves to ``top_uid``, commit.
        ``report``: tell the observer (False when it was told as the bodies were written)."""
        repo.advance_fetched_uid(uow.connection, folder_id, top_uid)
        uow.commit()
        crash.point("batch committed")
        self.result.add(new_messages=count)
        if report:
            self.observer.messages_stored(self.account.name, name, count, nbytes)


def bulk_checkpoints_task(uow: UnitOfWork, on: bool) -> None:
    from mailsync.store.db import bulk_checkpoints

    bulk_checkpoints(uow.connection, on)
