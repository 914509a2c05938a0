"""SQLite store URLs that need no URL library: "sqlite:///" followed by a path of plain characters.

Owns: recognising such a URL (its database path) and writing one for a path. For these SQLAlchemy's
make_url and URL.create give the same answers (a test compares them); any other URL is left to
SQLAlchemy. Must not: import SQLAlchemy: reading the config and the no-change sync use this so that
a sync with nothing to do never loads it (about 0.25 s of CPU).
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["plain_sqlite_path", "plain_sqlite_url", "resolved_plain_sqlite"]

_PREFIX = "sqlite:///"
_PLAIN = re.compile(r"[A-Za-z0-9_./~+-]+\Z")  # nothing a URL quotes or reads as a separator


def plain_sqlite_path(url: str) -> str | None:
    """The database path of ``sqlite:///PATH`` when PATH is plain (``sqlite:////abs/x.db`` ->
    ``/abs/x.db``, ``sqlite:///rel.db`` -> ``rel.db``), else None."""
    if url.startswith(_PREFIX) and _PLAIN.match(url, len(_PREFIX)):
        return url[len(_PREFIX):]
    return None


def plain_sqlite_url(path: str) -> str | None:
    """``sqlite:///`` + ``path`` when the path is plain, else None."""
    return _PREFIX + path if _PLAIN.match(path) else None


def resolved_plain_sqlite(url: str, base_dir: Path) -> str | None:
    """The config's store URL for a plain ``url`` (None for any other): a relative path (``~``
    expanded) is resolved against ``base_dir``, the config file's folder, as the config loader does
    with any SQLite URL."""
    db = plain_sqlite_path(url)
    if db is None:
        return None
    path = Path(db).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    return url if str(path) == db else plain_sqlite_url(str(path))
