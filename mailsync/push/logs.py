"""Structured logs for the daemon: one line per event, as text (key=value) or JSON.

Owns: the two formatters, `event()` (an event name plus fields), and the last line of defence
against secrets: every password or token the daemon resolves is registered here and replaced by
*** in any record, whichever logger wrote it. Must not: decide what is logged (callers do) or
write anywhere but the handler's stream (stderr for `mailsync watch`).

    log = logging.getLogger("mailsync.push")
    event(log, "connected", account="work", mode="NOTIFY", connections=1)
    -> 2025-01-05T10:00:00.123Z INFO mailsync.push connected account=work mode=NOTIFY connections=1
    -> {"ts": "2025-01-05T10:00:00.123Z", "level": "INFO", "logger": "mailsync.push",
        "event": "connected", "account": "work", "mode": "NOTIFY", "connections": 1}
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from typing import Any

_MAX_SECRETS = 4096
_secrets: deque[str] = deque()
_secret_set: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret so that no log line can carry it (the most recent 4096 are kept)."""
    if not value or len(value) < 4:  # too short to scrub without mangling ordinary words
        return
    with _lock:
        if value in _secret_set:
            return
        _secrets.append(value)
        _secret_set.add(value)
        while len(_secrets) > _MAX_SECRETS:
            _secret_set.discard(_secrets.popleft())


def scrub(text: str) -> str:
    if not _secret_set:
        return text
    with _lock:
        known = list(_secret_set)
    for s in known:
        if s in text:
            text = text.replace(s, "***")
    return text


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log event `name` with `fields` (values: str, int, float, bool or None)."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


def _ts(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


def _text_value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:.3f}".rstrip("0").rstrip(".")
    s = str(v)
    if not s or any(c in s for c in ' "=\n\t'):
        return json.dumps(s, ensure_ascii=False)
    return s


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        line = f"{_ts(record)} {record.levelname} {record.name} {record.getMessage()}"
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += " exception=" + json.dumps(self.formatException(record.exc_info))
        return scrub(line)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _ts(record), "level": record.levelname, "logger": record.name,
                               "event": record.getMessage()}
        for k, v in (getattr(record, "fields", None) or {}).items():
            out[k] = v if isinstance(v, (int, float, bool)) or v is None else str(v)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(out, ensure_ascii=False))


def setup(fmt: str = "text", level: int = logging.INFO, stream=None) -> logging.Handler:
    """Route every mailsync log record to `stream` (stderr) in `fmt`, one line each."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level >= logging.INFO else logging.INFO)
    return handler
