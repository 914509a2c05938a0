"""parse_message over many bodies at once: in this process, or on every core for large batches.

Owns: the worker pool (fork, garbage collection frozen in the parent and off in the workers) and
the order of results. Parsing is pure, so results do not depend on where it ran.
Must not: touch the store (facts.py reads the bodies and writes the facts), or parse by itself
(headers.parse_message does).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mailsync.crm.headers import MessageFacts, header_section, parse_message

__all__ = ["Parser"]


def _parse_chunk(items: list[tuple[str, bytes]]) -> list[tuple[str, MessageFacts]]:
    return [(sha, parse_message(head)) for sha, head in items]


def _forked_init() -> None:  # pragma: no cover - runs in the parse workers
    import gc

    gc.disable()  # short-lived workers: no collections that would copy the parent's pages


class Parser:
    """parse_message over many bodies: in this process for small batches, on every core (fork) for
    large ones. Results do not depend on which: parsing is pure."""

    PARALLEL_FROM = 3000

    def __init__(self, total: int) -> None:
        self.pool = None
        cores = os.cpu_count() or 1
        if total >= self.PARALLEL_FROM and cores > 1 and os.name == "posix":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            try:
                import gc

                gc.freeze()  # the parent's objects stay out of the workers' collections (no copy-on-write)
                self.pool = ProcessPoolExecutor(max_workers=min(cores, 8), initializer=_forked_init,
                                                mp_context=multiprocessing.get_context("fork"))
            except (OSError, ValueError):  # pragma: no cover - no fork: parse here
                self.pool = None

    def __enter__(self) -> "Parser":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            import gc

            self.pool.shutdown(cancel_futures=True)
            gc.unfreeze()

    def submit(self, items: list[tuple[str, bytes]]) -> Callable[[], dict[str, MessageFacts]]:
        """Start parsing; the returned function waits for (or, without workers, does) the work."""
        if self.pool is None or len(items) < 500:
            return lambda: dict(_parse_chunk(items))
        items = [(sha, header_section(head)) for sha, head in items]  # ship headers only
        size = max(100, len(items) // (4 * (os.cpu_count() or 1)))
        futures = [self.pool.submit(_parse_chunk, items[i:i + size]) for i in range(0, len(items), size)]

        def result() -> dict[str, MessageFacts]:
            out: dict[str, MessageFacts] = {}
            for f in futures:
                out.update(f.result())
            return out

        return result

    def parse(self, items: list[tuple[str, bytes]]) -> dict[str, MessageFacts]:
        return self.submit(items)()
