"""A stand-in for HubSpot's CRM API on 127.0.0.1, for the HubSpot sink's tests: a real HTTP server
that answers the endpoints the sink calls as HubSpot documents them (paths, JSON shapes, status codes,
error bodies with status/message/category, 429 with policyName), keeps the objects it is sent, and
enforces what HubSpot enforces that the sink relies on: a bearer token, known property names, unique
contact emails, a rate limit per rolling window.

Faults, drawn from a seeded generator and bounded by ``max_failures``: 502 before doing anything,
429 (with Retry-After), and "done-then-500" -- the change is made and the answer says it failed,
which is what makes a sink that is not idempotent log a second object.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter, deque
from datetime import datetime

from webhook_server import JsonHandler, LocalHttpServer

PROPERTIES = {
    "contacts": {"email", "firstname", "lastname", "jobtitle", "company", "phone", "hs_lead_status"},
    "companies": {"domain", "name", "industry", "city"},
    "emails": {"hs_timestamp", "hs_email_direction", "hs_email_status", "hs_email_subject", "hs_email_text",
               "hs_email_html"},
}
STAMP = "2024-01-01T00:00:00.000Z"


def _ms(value: str) -> int:
    if str(value).isdigit():
        return int(value)
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)


class HubSpotServer(LocalHttpServer):
    def __init__(self, token: str, *, seed: int = 0, failure_rate: float = 0.0, max_failures: int = 10_000,
                 rate_limit: tuple[int, float] | None = None, retry_after: str | None = "1") -> None:
        self.token = token
        self.rng = random.Random(seed)
        self.failure_rate = failure_rate
        self.max_failures = max_failures
        self.rate_limit = rate_limit  # (requests, seconds) per rolling window, as HubSpot counts
        self.retry_after = retry_after  # the Retry-After header of a 429 (None: only policyName)
        self.garbled: set[str] = set()  # paths answered 200 with a body that is not what HubSpot sends
        self.lock = threading.Lock()
        self.objects: dict[str, dict[str, dict]] = {"contacts": {}, "companies": {}, "emails": {}}
        self.email_links: dict[str, dict[str, set[str]]] = {}  # email id -> {"contacts": {...}, "companies": {...}}
        self.contact_companies: dict[str, set[str]] = {}
        self.purged: list[str] = []  # GDPR-deleted contact ids
        self.archived: list[str] = []
        self.calls: Counter = Counter()  # "METHOD /path-shape" -> count
        self.failures: Counter = Counter()
        self.rate_limited = 0
        self.unauthorized = 0
        self.times: deque = deque()
        self.next_id = 1000
        self._listen(self._handler())

    # -- the CRM's behaviour (under the lock) ----------------------------------------------------

    def _new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def _object(self, kind: str, oid: str) -> dict:
        return {"id": oid, "properties": dict(self.objects[kind][oid]), "createdAt": STAMP, "updatedAt": STAMP,
                "archived": False}

    def _check_props(self, kind: str, props: dict) -> str | None:
        for name in props:
            if name not in PROPERTIES[kind]:
                return f'Property values were not valid: [{{"isValid":false,"message":"Property \\"{name}\\" does not exist","error":"PROPERTY_DOESNT_EXIST","name":"{name}"}}]'
        return None

    def _matches(self, kind: str, oid: str, f: dict) -> bool:
        name, value = f["propertyName"], str(f["value"])
        if name.startswith("associations."):
            target = {"contact": "contacts", "company": "companies"}[name.split(".", 1)[1]]
            return kind == "emails" and value in self.email_links.get(oid, {}).get(target, set())
        have = self.objects[kind][oid].get(name)
        if have is None:
            return False
        if name == "hs_timestamp":
            return _ms(have) == _ms(value)
        return str(have).lower() == value.lower()

    def handle(self, method: str, path: str, doc: dict | None) -> tuple[int, dict | None]:
        m = re.fullmatch(r"/crm/v3/objects/(contacts|companies|emails)(?:/([^/]+))?(?:/([^/]+))?", path)
        m4 = re.fullmatch(r"/crm/v4/objects/contacts/(\d+)/associations/default/companies/(\d+)", path)
        if m4:
            cid, coid = m4.groups()
            if cid not in self.objects["contacts"] or coid not in self.objects["companies"]:
                return 404, {"status": "error", "message": "one of the objects does not exist", "category": "OBJECT_NOT_FOUND"}
            self.contact_companies.setdefault(cid, set()).add(coid)
            return 200, {"status": "COMPLETE", "startedAt": STAMP, "completedAt": STAMP, "results": [
                {"from": {"id": cid}, "to": {"id": coid},
                 "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}}]}
        if not m:
            return 404, {"status": "error", "message": f"no such endpoint {method} {path}", "category": "NOT_FOUND"}
        kind, a, b = m.groups()
        if method == "POST" and a == "batch" and b == "upsert" and kind == "contacts":
            results = []
            for item in doc["inputs"]:
                if item.get("idProperty") != "email":
                    return 400, {"status": "error", "message": "idProperty must be a unique property", "category": "VALIDATION_ERROR"}
                bad = self._check_props(kind, item.get("properties", {}))
                if bad:
                    return 400, {"status": "error", "message": bad, "category": "VALIDATION_ERROR"}
                email = item["id"].lower()
                found = [i for i, p in self.objects[kind].items() if p.get("email", "").lower() == email]
                oid = found[0] if found else self._new_id()
                self.objects[kind].setdefault(oid, {}).update({**item.get("properties", {}), "email": email})
                results.append({**self._object(kind, oid), "new": not found})
            return 200, {"status": "COMPLETE", "results": results, "startedAt": STAMP, "completedAt": STAMP}
        if method == "POST" and a == "search":
            hits = [oid for oid in self.objects[kind]
                    if any(all(self._matches(kind, oid, f) for f in g.get("filters", []))
                           for g in doc.get("filterGroups", []))]
            limit = int(doc.get("limit", 10))
            return 200, {"total": len(hits), "results": [self._object(kind, oid) for oid in hits[:limit]]}
        if method == "POST" and a == "gdpr-delete" and kind == "contacts":
            oid = str(doc.get("objectId"))
            if oid not in self.objects[kind]:
                return 404, {"status": "error", "message": "resource not found", "category": "OBJECT_NOT_FOUND"}
            del self.objects[kind][oid]
            self.contact_companies.pop(oid, None)
            self.purged.append(oid)
            return 204, None
        if method == "POST" and a is None:
            props = doc.get("properties", {})
            bad = self._check_props(kind, props)
            if bad:
                return 400, {"status": "error", "message": bad, "category": "VALIDATION_ERROR"}
            if kind == "emails" and "hs_timestamp" not in props:
                return 400, {"status": "error", "message": "hs_timestamp is required", "category": "VALIDATION_ERROR"}
            oid = self._new_id()
            self.objects[kind][oid] = dict(props)
            for link in doc.get("associations", []) or []:
                target = link["to"]["id"]
                type_id = link["types"][0]["associationTypeId"]
                to_kind = {198: "contacts", 186: "companies"}.get(type_id)
                if kind != "emails" or to_kind is None or target not in self.objects[to_kind]:
                    del self.objects[kind][oid]
                    return 400, {"status": "error", "message": f"invalid association to {target} (type {type_id})",
                                 "category": "VALIDATION_ERROR"}
                self.email_links.setdefault(oid, {}).setdefault(to_kind, set()).add(target)
            return 201, self._object(kind, oid)
        if a is not None and b is None and method in ("PATCH", "GET", "DELETE"):
            if a not in self.objects[kind]:
                return 404, {"status": "error", "message": "resource not found", "category": "OBJECT_NOT_FOUND"}
            if method == "PATCH":
                bad = self._check_props(kind, doc.get("properties", {}))
                if bad:
                    return 400, {"status": "error", "message": bad, "category": "VALIDATION_ERROR"}
                self.objects[kind][a].update(doc.get("properties", {}))
                return 200, self._object(kind, a)
            if method == "DELETE":
                del self.objects[kind][a]
                self.email_links.pop(a, None)
                self.archived.append(a)
                return 204, None
            return 200, self._object(kind, a)
        return 405, {"status": "error", "message": f"{method} {path} is not supported here", "category": "NOT_FOUND"}

    def _gate(self) -> tuple[str, float]:
        """ok | 429 | 502 | done-then-500, under the lock."""
        now = time.monotonic()
        if self.rate_limit is not None:
            n, window = self.rate_limit
            while self.times and self.times[0] <= now - window:
                self.times.popleft()
            if len(self.times) >= n:
                self.rate_limited += 1
                return "limit", self.times[0] + window - now
            self.times.append(now)
        if sum(self.failures.values()) < self.max_failures and self.rng.random() < self.failure_rate:
            mode = self.rng.choice(("502", "429", "done-then-500"))
            self.failures[mode] += 1
            return mode, 0.0
        return "ok", 0.0

    def _handler(self):
        server = self

        class Handler(JsonHandler):
            content_type = "application/json;charset=utf-8"

            def _any(self) -> None:
                raw = self._body()
                path = self.path.split("?", 1)[0]
                with server.lock:
                    server.calls[f"{self.command} {re.sub(r'/[0-9]+', '/ID', path)}"] += 1
                    if self.headers.get("Authorization") != f"Bearer {server.token}":
                        server.unauthorized += 1
                        self._reply(401, {"status": "error", "category": "INVALID_AUTHENTICATION",
                                          "message": "Authentication credentials not found."})
                        return
                    mode, wait = server._gate()
                    if mode == "limit":
                        headers = {"X-HubSpot-RateLimit-Max": str(server.rate_limit[0]),
                                   "X-HubSpot-RateLimit-Remaining": "0"}
                        if server.retry_after is not None:
                            headers["Retry-After"] = str(max(1, round(wait)))
                        self._reply(429, {"status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING",
                                          "message": "You have reached your ten_secondly_rolling limit."}, headers)
                        return
                    if mode == "502":
                        self._reply(502, {"status": "error", "message": "Bad Gateway", "category": "BAD_GATEWAY"})
                        return
                    if mode == "429":
                        self._reply(429, {"status": "error", "errorType": "RATE_LIMIT", "policyName": "SECONDLY",
                                          "message": "You have reached your secondly limit."},
                                    {"Retry-After": "1"} if server.retry_after is not None else {})
                        return
                    if path in server.garbled:
                        self._reply(200, {"unexpected": True})
                        return
                    try:
                        doc = json.loads(raw) if raw else None
                    except ValueError:
                        self._reply(400, {"status": "error", "message": "Invalid input JSON", "category": "VALIDATION_ERROR"})
                        return
                    status, answer = server.handle(self.command, path, doc)
                    if mode == "done-then-500" and status < 300:
                        self._reply(500, {"status": "error", "message": "internal error", "category": "INTERNAL_ERROR"})
                        return
                self._reply(status, answer)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        return Handler
