"""A first sync's download of a whole folder into pack files (rule D4), without copying a message.

Owns: the loop's state for one folder: the pack batch being filled (each literal is read straight
into it by the connection, through ``into``), the rows of its messages, the batches handed to the
pack writer and not yet committed, and when the store worker commits them (rule C3, through
store_tasks.commit_written). Must not: decide what to download (engine._sync_folder and plan.py
do), read the socket itself, or touch the store except through the StoreWorker.
"""

from __future__ import annotations

import contextlib
import hashlib
import time

from mailsync.errors import ProtocolError
from mailsync.imap.responses import parse_internaldate
from mailsync.store.packs import HEADER
from mailsync.sync import plan as rules
from mailsync.sync import store_tasks
from mailsync.sync import download
from mailsync.sync.message import message_id_at


class PackedDownload:
    """One folder's download: ``into(n)`` gives the connection the slot for the next n-byte literal,
    ``take(item)`` records the message read there (True when a full batch was handed over, so the
    caller may stop), ``finish()`` hands over the rest, ``abandon()`` commits what was handed over
    and drops what was not (it is read again next time)."""

    def __init__(self, sync, db, folder_id: int, name: str, info) -> None:
        self.sync, self.db = sync, db
        self.folder_id, self.name = folder_id, name
        self.packs = sync.store.packs
        self.writer = sync._writer
        self.limit = sync.account.batch_size
        self.batch = self.packs.new_batch(download.BATCH_BYTES)  # never one handed over
        self.bodies: list[tuple] = []  # (sha256, size, message_id, offset in the batch)
        self.places: list[tuple] = []  # placement rows (repo.PLACEMENT_COLUMNS)
        self.nbytes = 0
        self.writes: list[tuple] = []  # (Future of (pack, start), bodies, places): written or being, not committed
        self.unsaved = self.unsaved_bytes = 0  # their messages and bytes (rule C3)
        self.since = time.monotonic()
        self.known_flags: dict[tuple[str, ...] | None, str] = {}  # a folder's messages share few flag sets
        self.within = rules.WholeFolder(info.exists, info.uidnext) if info is not None else None  # rule G3

    def into(self, n: int) -> memoryview:
        if not self.batch.fits(n):
            if self.batch.count:
                self.hand_over()
            if not self.batch.fits(n):  # a message larger than a batch: a batch of its own
                self.packs.recycle(self.batch)
                self.batch = self.packs.new_batch(HEADER.size + n)
        return self.batch.slot(n)

    def take(self, item) -> bool:
        if item.body is None or item.uid is None or item.internaldate is None:
            self.sync._asked_for(item, self.name)  # False for an unsolicited FETCH; raises without INTERNALDATE
            return False
        if self.within is not None and not self.within.take(item.seq, item.uid):
            return False
        body = item.body
        n = len(body)
        digest = hashlib.sha256(body).digest()
        if type(body) is memoryview:  # read into its slot: the next record of the batch
            offset = self.batch.add(n, digest)
        else:  # a response of an unusual shape: copied in
            self.into(n)
            offset = self.batch.put(body, digest)
        sha = digest.hex()
        flags = self.known_flags.get(item.flags)
        if flags is None:
            flags = self.known_flags[item.flags] = rules.flags_text(item.flags or ())
        self.bodies.append((sha, n, message_id_at(self.batch.buf, offset, offset + n), offset))
        # store_tasks.placement_values, written out: this runs once per message of a first sync
        try:
            idate = parse_internaldate(item.internaldate)
        except ProtocolError as exc:  # one bad date costs that date, not the message
            idate = store_tasks.substitute_date(self.sync.ledger, self.name, item, bytes(body), exc)
        self.places.append((self.folder_id, item.uid, sha, flags, flags, item.modseq, idate,
                            n if item.size is None else item.size))
        self.nbytes += n
        if len(self.places) >= self.limit or self.batch.used >= download.BATCH_BYTES:
            self.hand_over()
            return True
        return False

    def hand_over(self, last: bool = False) -> None:
        """The full batch to the pack writer; its rows to the store worker when rule C3 says so."""
        full, self.batch = self.batch, self.packs.new_batch(download.BATCH_BYTES)
        sync = self.sync
        if full.count:
            count, size, name = len(self.places), self.nbytes, self.name
            self.writes.append((self.writer.submit(full, lambda: sync.observer.messages_stored(
                sync.account.name, name, count, size), self.bodies), self.bodies, self.places))
            self.unsaved, self.unsaved_bytes = self.unsaved + count, self.unsaved_bytes + size
        else:
            self.packs.recycle(full)
        self.bodies, self.places, self.nbytes = [], [], 0
        if self.writes and (last or sync._stopping() or rules.commit_due(
                self.unsaved, self.unsaved_bytes, time.monotonic() - self.since, self.limit)):
            self.db.submit(store_tasks.commit_written, sync.side, self.folder_id, self.name, self.writes, self.unsaved_bytes)
            self.writes, self.unsaved, self.unsaved_bytes, self.since = [], 0, 0, time.monotonic()

    def finish(self) -> None:
        self.hand_over(last=True)
        self.packs.recycle(self.batch)

    def abandon(self) -> None:
        self.packs.recycle(self.batch)  # what it holds was not handed over: read again next time
        if self.writes:  # what was handed over is committed on the way out, when the worker can
            with contextlib.suppress(Exception):
                self.db.submit(store_tasks.commit_written, self.sync.side, self.folder_id, self.name, self.writes, self.unsaved_bytes)
