"""The limits a user sets per account: how old and how large a message may be to be downloaded, how
fast, and how long a sync may wait in place for a throttled server.

Owns: reading ``max_age`` ("90d", "12w", "6m" months of 30 days, "1y", "36h"), ``max_size``
("25MB", "512KB", "1.5GB", bytes as an integer; KB = 1,000 bytes, KiB = 1,024), ``max_download_rate``
(bytes a second: an integer or "200KB/s") and ``throttle_max_wait`` (seconds) from an account's
table, each error naming the key, the value and the fix. Pure parsing functions (parse_age,
parse_size, parse_rate) are tested alone. Must not: read files or apply the limits (mailsync.sync
does).
"""

from __future__ import annotations

import math
import re
from typing import Any

LIMIT_KEYS = ("max_age", "max_size", "max_download_rate", "throttle_max_wait")
DEFAULT_THROTTLE_MAX_WAIT = 900.0  # seconds a sync waits in place for a throttled account before it gives up for now

_AGE_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "k": 10**3, "m": 10**6, "g": 10**9,
               "kib": 2**10, "mib": 2**20, "gib": 2**30}
_AGE = re.compile(r"\s*(\d+)\s*([a-zA-Z]+)\s*")
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_age(text: str) -> int:
    """Seconds of an age like "90d"; ValueError naming what is wrong."""
    m = _AGE.fullmatch(text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _AGE_UNITS:
        raise ValueError("an age is a whole number and a unit: h (hours), d (days), w (weeks), m (months of "
                         "30 days) or y (years), e.g. \"90d\"")
    n = int(m.group(1))
    if n <= 0:
        raise ValueError("the age must be greater than 0")
    return n * _AGE_UNITS[unit]


def parse_size(value: Any) -> int:
    """Bytes of a size like "25MB" (or an integer of bytes); ValueError naming what is wrong."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string such as \"25MB\"")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and math.isfinite(value):
        n = int(value)
    elif isinstance(value, str):
        m = _SIZE.fullmatch(value)
        unit = m.group(2).lower() if m else ""
        if not m or unit not in _SIZE_UNITS:
            raise ValueError("a size is a number and a unit: B, KB, MB, GB (powers of 1,000) or KiB, MiB, GiB "
                             "(powers of 1,024), e.g. \"25MB\"")
        n = int(float(m.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ValueError("a size is a number of bytes or a string such as \"25MB\"")
    if n <= 0:
        raise ValueError("the size must be greater than 0")
    return n


def parse_rate(value: Any) -> int:
    """Bytes a second of a rate like 200000, "200KB/s" or "1MB"; ValueError naming what is wrong."""
    if isinstance(value, str) and value.strip().lower().endswith("/s"):
        value = value.strip()[:-2]
    try:
        return parse_size(value)
    except ValueError:
        raise ValueError("a rate is bytes a second: a number, or a size per second such as \"500KB/s\"") from None


def limits_key(max_age: int | None, max_size: int | None) -> str | None:
    """The download limits as a folder's last sync recorded them (folders.limits): a folder
    synced under other limits than the current ones is compared in full once (what a looser
    limit now allows is downloaded). None without limits."""
    parts = ([f"max_age={max_age}"] if max_age is not None else []) + (
        [f"max_size={max_size}"] if max_size is not None else [])
    return " ".join(parts) or None


def limits(t) -> dict[str, Any]:
    """The limit keys of an account's config Table (mailsync.config.fields.Table), checked."""
    out: dict[str, Any] = {}
    for key, parse, example in (("max_age", parse_age, '"90d"'), ("max_size", parse_size, '"25MB"'),
                                ("max_download_rate", parse_rate, '"500KB/s"')):
        if not t.has(key):
            continue
        value = t.data[key]
        if key == "max_age" and not isinstance(value, str):
            raise t.type_error(key, value, "a string such as \"90d\"", example)
        try:
            out[key] = parse(value)
        except ValueError as exc:
            from mailsync.config.fields import show

            raise t.error(key, f"{exc}; got {show(value)}", f"e.g. {key} = {example}, or remove {key} for no limit")
    if t.has("throttle_max_wait"):
        value = t.data["throttle_max_wait"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            from mailsync.config.fields import show

            raise t.error("throttle_max_wait", f"must be a number of seconds, 0 or more, got {show(value)}",
                          "e.g. throttle_max_wait = 900 (0: never wait in place; the next sync resumes)")
        out["throttle_max_wait"] = float(value)
    return out
