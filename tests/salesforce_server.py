"""A stand-in for Salesforce's REST API on https://127.0.0.1, for the Salesforce sink's tests: a real
HTTPS server (simple-salesforce speaks only https) that answers the endpoints the sink calls as
Salesforce documents them -- sObject create (201 {id, success, errors}), update (204), upsert by an
External ID field (201 created / 200 updated), delete (204), SOQL query ({totalSize, done, records}),
errors as [{"message", "errorCode"}] -- and enforces what the sink relies on: a bearer session,
known fields, required fields (Contact.LastName, Account.Name), references that exist, unique
External IDs.

Its SOQL is the subset the sink writes: SELECT f, ... FROM Obj WHERE a = 'x' AND b = 2024-01-01
[ORDER BY f] [LIMIT n]. Faults, seeded and bounded: 503 before doing anything, and "done-then-500"
(the change made, the answer lost).
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from tls_support import make_certificate, server_context
from webhook_server import JsonHandler, LocalHttpServer

FIELDS = {
    "Contact": {"Email", "FirstName", "LastName", "AccountId", "Title", "Phone", "Description"},
    "Account": {"Name", "Website", "Industry", "Description"},
    "Task": {"Subject", "Description", "ActivityDate", "WhoId", "WhatId", "Status", "TaskSubtype", "Type", "Priority"},
}
REQUIRED = {"Contact": ("LastName",), "Account": ("Name",), "Task": ()}
PREFIX = {"Contact": "003", "Account": "001", "Task": "00T"}
REFERENCES = {"AccountId": "Account", "WhoId": "Contact", "WhatId": "Account"}


class SalesforceServer(LocalHttpServer):
    def __init__(self, folder: Path, token: str, *, seed: int = 0, failure_rate: float = 0.0,
                 max_failures: int = 10_000, external_id_field: str | None = None) -> None:
        self.tokens = {token}
        self.rng = random.Random(seed)
        self.failure_rate = failure_rate
        self.max_failures = max_failures
        self.ext = external_id_field  # an External ID field on every object, when the org has one
        self.lock = threading.Lock()
        self.objects: dict[str, dict[str, dict]] = {k: {} for k in FIELDS}
        self.deleted: dict[str, list[str]] = {k: [] for k in FIELDS}
        self.calls: Counter = Counter()
        self.failures: Counter = Counter()
        self.unauthorized = 0
        self.counter = 0
        self.cert_file, key_file = make_certificate(folder)
        self.tls = server_context(self.cert_file, key_file)
        self._listen(self._handler())

    # -- the org's behaviour (under the lock) ------------------------------------------------------

    def _fields(self, sobject: str) -> set[str]:
        return FIELDS[sobject] | ({self.ext} if self.ext else set())

    def _validate(self, sobject: str, values: dict, *, creating: bool) -> tuple[int, list] | None:
        for name in values:
            if name not in self._fields(sobject):
                return 400, [{"message": f"No such column '{name}' on sobject of type {sobject}",
                              "errorCode": "INVALID_FIELD", "fields": []}]
        if creating:
            missing = [f for f in REQUIRED[sobject] if not values.get(f)]
            if missing:
                return 400, [{"message": f"Required fields are missing: [{', '.join(missing)}]",
                              "errorCode": "REQUIRED_FIELD_MISSING", "fields": missing}]
        for name, target in REFERENCES.items():
            if name in values and values[name] not in self.objects[target]:
                return 400, [{"message": f"{name}: id value of incorrect type: {values[name]}",
                              "errorCode": "MALFORMED_ID", "fields": [name]}]
        return None

    def _create(self, sobject: str, values: dict) -> tuple[int, object]:
        bad = self._validate(sobject, values, creating=True)
        if bad:
            return bad
        self.counter += 1
        oid = f"{PREFIX[sobject]}5g{self.counter:010d}AAA"  # 18 characters, as Salesforce ids are
        self.objects[sobject][oid] = dict(values)
        return 201, {"id": oid, "success": True, "errors": []}

    def query(self, soql: str) -> tuple[int, object]:
        m = re.fullmatch(r"SELECT (.+?) FROM (\w+)(?: WHERE (.+?))?(?: ORDER BY \w+)?(?: LIMIT (\d+))?", soql.strip())
        if not m or m.group(2) not in FIELDS:
            return 400, [{"message": f"unexpected SOQL: {soql}", "errorCode": "MALFORMED_QUERY"}]
        wanted = [f.strip() for f in m.group(1).split(",")]
        sobject, where, limit = m.group(2), m.group(3), m.group(4)
        conds = []
        for part in re.split(r" AND ", where or "") if where else []:
            c = re.fullmatch(r"(\w+) = (?:'((?:[^'\\]|\\.)*)'|(\S+))", part.strip())
            if not c or c.group(1) not in self._fields(sobject) | {"Id"}:
                return 400, [{"message": f"unexpected condition: {part}", "errorCode": "MALFORMED_QUERY"}]
            value = c.group(2) if c.group(2) is not None else c.group(3)
            conds.append((c.group(1), re.sub(r"\\(.)", r"\1", value)))
        rows = [(oid, o) for oid, o in self.objects[sobject].items()
                if all(str(oid if f == "Id" else o.get(f)) == v for f, v in conds)]
        if limit:
            rows = rows[:int(limit)]
        records = [{"attributes": {"type": sobject, "url": f"/services/data/v59.0/sobjects/{sobject}/{oid}"},
                    **{f: (oid if f == "Id" else o.get(f)) for f in wanted}} for oid, o in rows]
        return 200, {"totalSize": len(records), "done": True, "records": records}

    def handle(self, method: str, path: str, query: dict, doc: object) -> tuple[int, object]:
        m = re.fullmatch(r"/services/data/v(\d+\.\d)/(.*)", path)
        if not m:
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
        rest = m.group(2).rstrip("/")
        if rest == "query" and method == "GET":
            return self.query(query.get("q", [""])[0])
        parts = [unquote(p) for p in rest.split("/")]
        if parts[0] != "sobjects" or len(parts) < 2 or parts[1] not in FIELDS:
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
        sobject = parts[1]
        store = self.objects[sobject]
        if len(parts) == 2 and method == "POST":
            return self._create(sobject, doc)
        if len(parts) == 3:
            oid = parts[2]
            if oid not in store:
                return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
            if method == "PATCH":
                bad = self._validate(sobject, doc, creating=False)
                if bad:
                    return bad
                store[oid].update(doc)
                return 204, None
            if method == "DELETE":
                del store[oid]
                self.deleted[sobject].append(oid)
                return 204, None
            if method == "GET":
                return 200, {"attributes": {"type": sobject}, "Id": oid, **store[oid]}
        if len(parts) == 4 and method == "PATCH":  # upsert by External ID
            field, value = parts[2], parts[3]
            if field != self.ext:
                return 404, [{"errorCode": "NOT_FOUND", "message": f"Provided external ID field does not exist or is not accessible: {field}"}]
            if field in doc:
                return 400, [{"errorCode": "INVALID_FIELD", "message": f"The field {field} is the upsert key; leave it out of the body"}]
            hits = [oid for oid, o in store.items() if o.get(field) == value]
            if len(hits) > 1:
                return 300, [{"errorCode": "MULTIPLE_CHOICES", "message": "more than one record"}]
            if hits:
                bad = self._validate(sobject, doc, creating=False)
                if bad:
                    return bad
                store[hits[0]].update(doc)
                return 200, {"id": hits[0], "success": True, "errors": [], "created": False}
            status, answer = self._create(sobject, {**doc, field: value})
            if status == 201:
                answer["created"] = True
            return status, answer
        return 405, [{"errorCode": "METHOD_NOT_ALLOWED", "message": f"{method} not allowed"}]

    def _handler(self):
        server = self

        class Handler(JsonHandler):
            content_type = "application/json;charset=UTF-8"

            def _any(self) -> None:
                raw = self._body()
                url = urlsplit(self.path)
                with server.lock:
                    server.calls[f"{self.command} {url.path.split('/services/data/')[-1][:40]}"] += 1
                    auth = self.headers.get("Authorization", "")
                    if not auth.startswith("Bearer ") or auth[7:] not in server.tokens:
                        server.unauthorized += 1
                        self._reply(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
                        return
                    mode = "ok"
                    if sum(server.failures.values()) < server.max_failures and server.rng.random() < server.failure_rate:
                        mode = server.rng.choice(("503", "done-then-500"))
                        server.failures[mode] += 1
                    if mode == "503":
                        self._reply(503, [{"message": "Server unavailable", "errorCode": "SERVER_UNAVAILABLE"}])
                        return
                    try:
                        doc = json.loads(raw) if raw else None
                    except ValueError:
                        self._reply(400, [{"message": "JSON parser error", "errorCode": "JSON_PARSER_ERROR"}])
                        return
                    status, answer = server.handle(self.command, url.path, parse_qs(url.query), doc)
                    if mode == "done-then-500" and status < 300:
                        self._reply(500, [{"message": "An unexpected error occurred", "errorCode": "UNKNOWN_EXCEPTION"}])
                        return
                self._reply(status, answer)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

        return Handler
