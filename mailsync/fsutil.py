"""Durable file writes shared by the config, token and store code.

Owns: writing a whole buffer to a descriptor, and fsyncing a directory so that a file created or
renamed in it survives a crash. Must not: choose paths, modes or error messages (callers do).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(directory: Path | str) -> None:
    """Make the directory's entries (a new or renamed file) durable. Raises OSError."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
