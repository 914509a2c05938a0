"""A store worker: one thread, one connection, units of work run in the order they were submitted;
and a pack writer: one thread writing a first sync's pack batches.

Owns: the threads and the connection the sync writes through. Must not: decide anything (callers
pass the functions to run or the batches to write) or speak IMAP.

Why: the sync reads the server on one thread and writes the store on another, so socket reads,
hashing, pack-file writes and database writes (all of which release the GIL) overlap. Running every
store access of a sync through this one worker keeps them in order (a folder's checkpoint is
written after its batches) and lets the sync ask the store questions without waiting on a second
connection's locks.

After a task fails, every later task fails too, without running: a checkpoint must never be
written after a batch it covers was lost.

``lazy=True`` (the sync engine's): tasks run on the caller's thread, in order, until the first task
that carries downloaded messages is submitted; only then does the thread start, and that task and
everything after run there. The reads and small writes before a sync's first download have nothing
to overlap, and their hand-offs cost more than they save: measured on a kept connection, one new
message, 8.7 -> 7.3 ms of CPU and 16 -> 9 ms of wall. A batch's write (its pack file's fdatasync:
5-150 ms on a busy disk) still overlaps the reading of the next folder.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from mailsync.errors import StoreError
from mailsync.store.db import Store
from mailsync.store.uow import UnitOfWork

T = TypeVar("T")


class StoreWorker:
    def __init__(self, store: Store, *, max_pending: int = 3, fence: Callable[..., None] | None = None,
                 lazy: bool = False) -> None:
        self.store = store
        self.lazy = lazy  # on the caller's thread until the first download task (see the module's text)
        self.fence = fence  # checked before each commit (UnitOfWork: a watch worker's lease)
        self.max_pending = max_pending
        self._pending: deque[tuple[Future, bool]] = deque()  # (task, small) in the order submitted
        self._failure: BaseException | None = None
        self._stack = contextlib.ExitStack()
        self._conn = None
        self._pool: ThreadPoolExecutor | None = None
        self._entered = False

    def __enter__(self) -> "StoreWorker":
        self._entered = True
        if self.lazy:
            self._open()
        else:
            self._start_thread()
            self._pool.submit(self._open).result()
        return self

    def _start_thread(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailsync-store")

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self.drain()
        finally:
            if self._pool is None:
                self._stack.close()
            else:
                self._pool.submit(self._stack.close).result()
                self._pool.shutdown()

    def _inline(self, fn: Callable[..., T], args: tuple) -> "Future[T]":
        fut: Future = Future()
        try:
            fut.set_result(self._run(fn, args))
        except Exception as exc:  # raised where a thread's task would raise it: at drain or _retire
            fut.set_exception(exc)
        return fut  # (an interrupt, ^C, is raised at once: this is the caller's thread)

    def _open(self) -> None:
        self._conn = self._stack.enter_context(self.store.engine.connect())

    def _run(self, fn: Callable[..., T], args: tuple) -> T:
        if self._failure is not None:
            raise StoreError(f"skipped after an earlier store error: {self._failure}")
        try:
            with UnitOfWork(self.store, bind=self._conn, fence=self.fence) as uow:
                return fn(uow, *args)
        except BaseException as exc:
            self._failure = exc
            raise

    def submit(self, fn: Callable[..., T], *args: Any, small: bool = False) -> "Future[T]":
        """Queue fn(uow, *args). Backpressure: waits while max_pending tasks that carry downloaded
        messages are queued. A ``small`` task (a folder's checkpoint, a setting) neither waits nor
        counts: measured, a first sync's reader spent 10-20 ms waiting to queue such tasks behind
        the commit of the folder before, while the server waited on it."""
        assert self._entered, "use StoreWorker as a context manager"
        if not small:
            if self._pool is None:  # lazy: the first download task starts the thread
                self._start_thread()
        if self._pool is None:
            self._pending.append((self._inline(fn, args), small))
            return self._pending[-1][0]
        if not small:
            while sum(not s for _, s in self._pending) >= self.max_pending:  # a handful queued at most
                self._retire()
        fut = self._pool.submit(self._run, fn, args)
        self._pending.append((fut, small))
        return fut

    def _retire(self) -> None:
        self._pending.popleft()[0].result()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(uow, *args) after everything queued before it, and return its result."""
        assert self._entered, "use StoreWorker as a context manager"
        if self._pool is None:
            return self._run(fn, args)
        return self._pool.submit(self._run, fn, args).result()

    def drain(self) -> None:
        """Wait for every queued task; raise the first error among them."""
        first: BaseException | None = None
        while self._pending:
            try:
                self._retire()
            except BaseException as exc:
                first = first or exc
        if first is not None:
            raise first


class PackWriter:
    """One thread that writes filled pack batches (PackStore.write_batch), in the order given, and
    gives each batch back to the pool once written. The sync's reader hands batches here and the
    store worker's commit waits on their Futures, so the disk's writing overlaps both the reading
    and the database work: measured, the store worker spent 0.36 s of a 20,000-message first sync
    waiting on pack writes, and the reader 0.12-0.17 s waiting on the store worker.

    ``submit`` waits while ``max_pending`` writes are queued, and raises the error of a write that
    failed (so does the commit that waits on it). ``close`` waits for every write."""

    def __init__(self, packs, *, max_pending: int = 3, stage: Callable[[Any, list], None] | None = None) -> None:
        self.packs = packs
        self.max_pending = max_pending
        self._pending: deque[Future] = deque()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailsync-packs")
        # ``stage(buf, records)`` (a live Maildir mirror's, mailsync.mirror.stage) is handed each
        # written batch's bytes on a thread of its own, at most _STAGING batches behind the writes
        self._stage = stage
        self._stager = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailsync-stage") if stage else None
        self._staging = threading.BoundedSemaphore(self._STAGING)

    _STAGING = 3

    def submit(self, batch, written: Callable[[], None] | None = None,
               records: list | None = None) -> "Future[tuple[int, int]]":
        """Queue the write of ``batch``; its Future gives (pack, start) as write_batch does.
        ``written()`` is called on the writer's thread after a successful write; ``records`` (the
        batch's (sha256, size, message id, offset)) go to the stage after it."""
        while self._pending and (self._pending[0].done() or len(self._pending) >= self.max_pending):
            self._pending.popleft().result()
        fut = self._pool.submit(self._write, batch, written, records)
        self._pending.append(fut)
        return fut

    def _write(self, batch, written: Callable[[], None] | None, records: list | None = None) -> tuple[int, int]:
        try:
            where = self.packs.write_batch(batch)
        except BaseException:
            self.packs.recycle(batch)
            raise
        if self._stager is not None and records:
            self._staging.acquire()  # the stage lags: the writes wait, and so the reader
            self._stager.submit(self._staged, batch, records)
        else:
            self.packs.recycle(batch)
        if written is not None:
            written()
        return where

    def _staged(self, batch, records: list) -> None:
        try:
            self._stage(batch.buf, records)
        except Exception:  # the stage is an optimisation: the mirror's write reads the store instead
            pass
        finally:
            self.packs.recycle(batch)
            self._staging.release()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._stager is not None:
            self._stager.shutdown(wait=True)
