"""Facts read from a raw message without parsing it whole: its Message-ID, Date and SHA-256.

Owns: cheap header scanning. Must not: do I/O. Malformed messages never raise here: a message
without a readable Message-ID simply has none.
"""

from __future__ import annotations

import hashlib
import re

_MSGID = re.compile(rb"(?im)^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)")


def header_block(raw: bytes) -> bytes:
    return _header(raw, 0, len(raw))


def _header(buf, start: int, end: int) -> bytes:
    """The header block of the message at buf[start:end] (bytes, or an mmap: both have find with
    bounds and slice to bytes), up to and including the line end before the blank line."""
    stop = buf.find(b"\r\n\r\n", start, end)
    if stop < 0:
        stop = buf.find(b"\n\n", start, end)
    return buf[start:end] if stop < 0 else buf[start:stop + 2]


def message_id(raw: bytes) -> str | None:
    return message_id_at(raw, 0, len(raw))


def message_id_at(buf, start: int, end: int) -> str | None:
    """The Message-ID of the message at buf[start:end], without copying more than its header."""
    head = _header(buf, start, end)
    low = head.lower()  # find the field with bytes.find, then let the pattern read it from there
    pos = 0 if low.startswith(b"message-id:") else low.find(b"\nmessage-id:") + 1
    if pos == 0 and not low.startswith(b"message-id:"):
        return None
    m = _MSGID.match(head, pos)
    if not m:
        return None
    value = b" ".join(m.group(1).split()).strip()
    if not value:
        return None
    text = value.decode("utf-8", "replace")
    return text[:998]


def sha256_hex(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


_DATE = re.compile(rb"(?im)^date:[ \t]*(.*)")


def date_header(raw: bytes) -> str | None:
    """The Date: header of the message as ISO 8601 (with its offset), or None when it has none
    that parses to a real date."""
    from email.utils import parsedate_to_datetime

    m = _DATE.search(header_block(raw))
    if not m:
        return None
    try:
        when = parsedate_to_datetime(m.group(1).decode("ascii", "replace").strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return when.isoformat()
