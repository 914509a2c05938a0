"""Sink transports: how a batch of envelopes reaches a webhook or a JSON Lines file.

Owns: the wire format and the I/O of each sink type, and the mapping of every failure to an Outcome
(delivered / retry after a delay / permanent), once, here at the boundary.
  webhook  one HTTP POST per batch (``http.client``, kept alive between requests). Body: the
           envelope, or ``{"records": [envelope, ...]}`` when batch_size > 1. Headers:
           ``X-Mailsync-Timestamp: UNIX``, ``X-Mailsync-Signature: sha256=HEX`` where HEX is
           HMAC-SHA256(secret, TIMESTAMP + "." + BODY), ``Idempotency-Key`` (the envelope's key, or for
           a batch a hash of its keys), plus the sink's ``headers``. 2xx: delivered. 408, 425, 429, 5xx,
           timeouts, refused or closed connections: retry (a Retry-After, in seconds or as an HTTP date,
           is honoured). Other statuses (400, 401, 404 ...): permanent, straight to the dead letters.
  jsonl    one envelope per line appended to the file, flushed and fsynced before the rows count as
           delivered. A crash between the write and the outbox commit would repeat lines: on its first
           write the transport reads the file's tail and skips envelopes whose key is already there.
Envelope: ``{"idempotency_key", "op": "upsert"|"delete", "type", "id", "sink", "data"}`` (``data``:
the record after the sink's field mapping; null for a delete).
Must not: touch the store (the worker in outbox.py settles rows), or decide retries' timing beyond
reporting Retry-After.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import http.client
import json
import os
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mailsync.crm.settings import SinkSettings

__all__ = ["JsonlTransport", "Outcome", "WebhookTransport", "make_transport", "sign"]

USER_AGENT = "mailsync-crm/1"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504}) | frozenset(range(520, 530))
_TAIL = 8 * 1024 * 1024  # bytes of a jsonl file read back for keys already written


@dataclass(frozen=True)
class Outcome:
    ok: bool
    permanent: bool = False
    retry_after: float | None = None  # seconds the sink asked us to wait
    error: str | None = None
    status: int | None = None

    @classmethod
    def delivered(cls, status: int | None = None) -> "Outcome":
        return cls(True, status=status)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value a receiver recomputes: ``sha256=`` HMAC(secret, ts + "." + body)."""
    return "sha256=" + hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


class WebhookTransport:
    def __init__(self, sink: SinkSettings, secret: str, *, clock: Callable[[], float]) -> None:
        self.sink = sink
        self.secret = secret.encode("utf-8")
        self.clock = clock
        parts = urlsplit(sink.url or "")
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.conn: http.client.HTTPConnection | None = None
        self.context: ssl.SSLContext | None = None
        if self.https:
            self.context = ssl.create_default_context(cafile=str(sink.ca_file) if sink.ca_file else None)

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:
            if self.https:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.sink.timeout,
                                                   context=self.context)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.sink.timeout)
            conn.connect()
            # one request per batch, answered before the next: Nagle's algorithm would only add delay
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn = conn
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def body_of(self, envelopes: Sequence[dict]) -> tuple[bytes, str]:
        if self.sink.batch_size > 1:
            body = json.dumps({"records": list(envelopes)}, ensure_ascii=False, separators=(",", ":"))
            key = hashlib.sha256("\n".join(e["idempotency_key"] for e in envelopes).encode()).hexdigest()[:32]
        else:
            (env,) = envelopes
            body = json.dumps(env, ensure_ascii=False, separators=(",", ":"))
            key = env["idempotency_key"]
        return body.encode("utf-8"), key

    def send(self, envelopes: Sequence[dict]) -> Outcome:
        body, key = self.body_of(envelopes)
        ts = str(int(self.clock()))
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Idempotency-Key": key,
                   "X-Mailsync-Timestamp": ts, "X-Mailsync-Signature": sign(self.secret, ts, body),
                   "Connection": "keep-alive", **self.sink.headers}
        try:
            conn = self._connection()
            conn.request("POST", self.path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
            retry_after = _retry_after(resp.getheader("Retry-After"), self.clock())
            if resp.will_close:
                self.close()
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            self.close()
            kind = "timed out" if isinstance(exc, (socket.timeout, TimeoutError)) else exc.__class__.__name__
            return Outcome(False, error=f"{self.sink.url}: {kind}: {exc}"[:500])
        if 200 <= status < 300:
            return Outcome.delivered(status)
        if status in RETRY_STATUSES:
            return Outcome(False, retry_after=retry_after, error=f"HTTP {status}", status=status)
        return Outcome(False, permanent=True, error=f"HTTP {status} (not retried)", status=status)


class JsonlTransport:
    def __init__(self, sink: SinkSettings) -> None:
        self.sink = sink
        self.path = Path(sink.path or "crm.jsonl")
        self._written: set[str] | None = None

    def _tail_keys(self) -> set[str]:
        keys: set[str] = set()
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as fh:
                fh.seek(max(0, size - _TAIL))
                data = fh.read()
        except FileNotFoundError:
            return keys
        for line in data.splitlines():
            try:
                keys.add(json.loads(line)["idempotency_key"])
            except (ValueError, KeyError, TypeError):
                continue
        return keys

    def send(self, envelopes: Sequence[dict]) -> Outcome:
        try:
            if self._written is None:
                self._written = self._tail_keys()
            lines = [json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in envelopes
                     if e["idempotency_key"] not in self._written]
            if lines:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write("".join(lines))
                    fh.flush()
                    os.fsync(fh.fileno())
            self._written.update(e["idempotency_key"] for e in envelopes)
        except OSError as exc:
            return Outcome(False, error=f"{self.path}: {exc.strerror or exc}")
        return Outcome.delivered()

    def close(self) -> None:
        pass


def make_transport(sink: SinkSettings, *, clock: Callable[[], float]):
    """The transport of a sink; a webhook's secret is resolved here (CredentialError if it cannot be)."""
    if sink.type == "webhook":
        from mailsync.auth.secrets import resolve_secret

        assert sink.secret is not None
        return WebhookTransport(sink, resolve_secret(sink.secret), clock=clock)
    return JsonlTransport(sink)
