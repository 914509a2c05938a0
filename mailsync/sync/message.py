"""Facts read from a raw message without parsing it whole: its Message-ID and SHA-256.

Owns: cheap header scanning. Must not: do I/O. Malformed messages never raise here: a message
without a readable Message-ID simply has none.
"""

from __future__ import annotations

import hashlib
import re

_MSGID = re.compile(rb"(?im)^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)")


def header_block(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    return raw if end < 0 else raw[: end + 2]


def message_id(raw: bytes) -> str | None:
    head = header_block(raw)
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
