"""JWZ threading (https://www.jwz.org/doc/threading.html) over Message-ID, In-Reply-To, References.

Owns: the container tree of steps 1-4 of the algorithm (id table, reference chains linked without
loops and without overriding an earlier link, the message's own parent taken from its last
reference, empty containers pruned with a lone child promoted to the root), and the thread id of a
message: ``t_`` + the first 20 hex digits of SHA-256 of the root container's Message-ID. Subject
gathering (step 5) is left out on purpose: it merges unrelated conversations that share a subject
("Quick question"), which a CRM timeline must not do.
A message without a Message-ID, and the second of two messages sharing one, get a container of
their own (``<KEY@mailsync.invalid>``). The result is order-independent for consistent References;
callers pass messages in a canonical order (date, key) so that conflicting chains resolve the same
way in an incremental run and in a rebuild.
Must not: touch the store, the network or the clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["synthetic_id", "thread", "thread_id_of"]


def thread_id_of(root_id: str) -> str:
    return "t_" + hashlib.sha256(root_id.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def synthetic_id(key: str) -> str:
    return f"<{key}@mailsync.invalid>"


class _Container:
    __slots__ = ("id", "key", "parent", "children")

    def __init__(self, id_: str) -> None:
        self.id = id_
        self.key: str | None = None
        self.parent: _Container | None = None
        self.children: list[_Container] = []


def _is_ancestor(a: _Container, b: _Container) -> bool:
    """True when ``a`` is ``b`` or one of its ancestors."""
    node: _Container | None = b
    while node is not None:
        if node is a:
            return True
        node = node.parent
    return False


def _set_parent(child: _Container, parent: _Container | None) -> None:
    if child.parent is parent:
        return
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    if parent is not None:
        parent.children.append(child)


def _has_message(c: _Container, memo: dict[int, bool]) -> bool:
    got = memo.get(id(c))
    if got is None:
        got = c.key is not None or any(_has_message(k, memo) for k in c.children)
        memo[id(c)] = got
    return got


def thread(messages: Iterable[tuple[str, str | None, tuple[str, ...]]]) -> dict[str, str]:
    """``messages``: (key, message_id or None, parent ids oldest first) in canonical order.
    Returns key -> root id (a Message-ID, possibly of a message not in the set)."""
    table: dict[str, _Container] = {}

    def get(id_: str) -> _Container:
        c = table.get(id_)
        if c is None:
            c = table[id_] = _Container(id_)
        return c

    own: dict[str, _Container] = {}
    for key, mid, parents in messages:
        c = get(mid) if mid else None
        if c is None or c.key is not None:  # no id, or a duplicate id: a container of its own
            c = get(synthetic_id(key))
        c.key = key
        own[key] = c
        prev: _Container | None = None
        for ref in parents:
            rc = get(ref)
            if prev is not None and rc.parent is None and not _is_ancestor(rc, prev):
                _set_parent(rc, prev)
            prev = rc
        if prev is not None and prev is not c and not _is_ancestor(c, prev):
            _set_parent(c, prev)
        elif not parents:
            pass  # JWZ would cut an existing parent link here; keeping it is order-independent
    memo: dict[int, bool] = {}
    roots: dict[int, str] = {}
    out: dict[str, str] = {}
    for key, c in own.items():
        top = c
        while top.parent is not None:
            top = top.parent
        root = roots.get(id(top))
        if root is None:
            node = top
            while node.key is None:  # prune: an empty root with one live subtree gives way to it
                live = [k for k in node.children if _has_message(k, memo)]
                if len(live) != 1:
                    break
                node = live[0]
            root = roots[id(top)] = node.id
        out[key] = root
    return out
