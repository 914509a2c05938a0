"""A webhook receiver for the CRM delivery tests: a real HTTP server on 127.0.0.1 that checks every
signature, processes each idempotency key once, and fails at random -- 500s, 429 with Retry-After,
timeouts (it answers too late, after processing), and connections closed without an answer.

Failures are drawn from a seeded generator and stop after ``max_failures``, so every test run is
bounded in requests and time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalHttpServer:
    """A real HTTP server on 127.0.0.1 (https when ``tls``, an ssl.SSLContext, is set), serving from a
    thread of its own while in a ``with`` block. A stand-in sets ``tls`` and calls ``_listen`` with
    its request handler class; ``url`` ends with ``url_path``."""

    tls = None
    url_path = ""

    def _listen(self, handler: type[BaseHTTPRequestHandler]) -> None:
        owner = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = super().get_request()
                if owner.tls is not None:
                    sock = owner.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                return sock, addr

        self.server = Server(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}{self.url_path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler answering JSON over HTTP/1.1 keep-alive, quietly (the CRM stand-ins')."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once (no delayed-ACK stalls)
    content_type = "application/json"

    def log_message(self, *args) -> None:
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, doc: object, headers: dict | None = None) -> None:
        body = b"" if doc is None else json.dumps(doc).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if doc is not None:
            self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Receiver(LocalHttpServer):
    url_path = "/hook"

    def __init__(self, secret: str, *, seed: int = 0, failure_rate: float = 0.0, max_failures: int = 10_000,
                 delay: float = 0.0, slow: float = 1.0, tls=None) -> None:
        self.secret = secret.encode()
        self.rng = random.Random(seed)
        self.failure_rate = failure_rate
        self.max_failures = max_failures
        self.delay = delay  # seconds every request takes
        self.slow = slow  # seconds a "timeout" answer takes (longer than the client waits)
        self.lock = threading.Lock()
        self.processed: dict[str, dict] = {}  # idempotency key -> envelope
        self.times_processed: Counter = Counter()
        self.requests = 0
        self.failures: Counter = Counter()
        self.bad_signatures = 0
        self.duplicates = 0
        self.tls = tls  # an ssl.SSLContext: the receiver speaks https
        self._listen(self._handler())

    def _choose(self) -> str:
        with self.lock:
            self.requests += 1
            if sum(self.failures.values()) >= self.max_failures or self.rng.random() >= self.failure_rate:
                return "ok"
            mode = self.rng.choice(("500", "429", "429-date", "timeout", "close", "process-then-500"))
            self.failures[mode] += 1
            return mode

    def _process(self, envelopes: list[dict]) -> None:
        with self.lock:
            for env in envelopes:
                key = env["idempotency_key"]
                if key in self.processed:
                    self.duplicates += 1  # acknowledged, not processed again
                    continue
                self.processed[key] = env
                self.times_processed[key] += 1

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, status: int, headers: dict | None = None) -> None:
                body = b'{"ok": %s}' % (b"true" if status < 300 else b"false")
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:  # the client died mid-request: nothing to check or answer
                    self.close_connection = True
                    return
                ts = self.headers.get("X-Mailsync-Timestamp", "")
                expected = "sha256=" + hmac.new(receiver.secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(expected, self.headers.get("X-Mailsync-Signature", "")) \
                        or abs(time.time() - int(ts or 0)) > 300:
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    self._reply(401)
                    return
                doc = json.loads(body)
                envelopes = doc["records"] if "records" in doc else [doc]
                if "records" not in doc:
                    assert self.headers["Idempotency-Key"] == doc["idempotency_key"]
                if receiver.delay:
                    time.sleep(receiver.delay)
                mode = receiver._choose()
                if mode == "500":
                    self._reply(500)
                elif mode == "429":
                    self._reply(429, {"Retry-After": str(receiver.rng.choice((0, 1)))})
                elif mode == "429-date":
                    from email.utils import formatdate

                    self._reply(429, {"Retry-After": formatdate(time.time() + 1, usegmt=True)})
                elif mode == "timeout":
                    receiver._process(envelopes)
                    time.sleep(receiver.slow)
                    self._reply(200)
                elif mode == "close":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                elif mode == "process-then-500":
                    receiver._process(envelopes)
                    self._reply(503)
                else:
                    receiver._process(envelopes)
                    self._reply(200)

        return Handler
