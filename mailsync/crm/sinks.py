"""Sink transports: how a batch of envelopes reaches a webhook or a JSON Lines file.

Owns: the wire format and the I/O of each sink type, and the mapping of every failure to an Outcome
(delivered / retry after a delay / permanent), once, here at the boundary.
  webhook  one HTTP POST per batch (``requests``, kept alive between requests; HTTPS_PROXY,
           HTTP_PROXY and NO_PROXY apply, a proxy tunnelling https with CONNECT). Body: the
           envelope, or ``{"records": [envelope, ...]}`` when batch_size > 1. Headers:
           ``X-Mailsync-Timestamp: UNIX``, ``X-Mailsync-Signature: sha256=HEX`` where HEX is
           HMAC-SHA256(secret, TIMESTAMP + "." + BODY), ``Idempotency-Key`` (the envelope's key, or for
           a batch a hash of its keys), plus the sink's ``headers``. 2xx: delivered. 408, 425, 429, 5xx,
           timeouts, refused or closed connections: retry (a Retry-After, in seconds or as an HTTP date,
           is honoured). Other statuses (400, 401, 404 ...): permanent, straight to the dead letters.
  jsonl    one envelope per line appended to the file, flushed and fsynced before the rows count as
           delivered. A crash between the write and the outbox commit would repeat lines: on its first
           write the transport reads the file's tail and skips envelopes whose key is already there.
  hubspot, salesforce, bottlecrm  in their own modules (hubspot.py, salesforce.py, bottlecrm.py),
           made here; what they share (the ids a delivery needs, an activity's contact delivered
           first, the mapped values sent) is CrmTransport and fields().
Envelope: ``{"idempotency_key", "op": "upsert"|"delete", "type", "id", "sink", "data"}`` (``data``:
the record after the sink's field mapping; null for a delete).
Must not: touch the store (the worker in outbox.py settles rows), or decide retries' timing beyond
reporting Retry-After.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from mailsync.crm.domains import company_name
from mailsync.crm.mapping import apply_mapping
from mailsync.crm.records import company_id
from mailsync.crm.settings import SinkSettings

__all__ = ["CrmTransport", "JsonlTransport", "Outcome", "WebhookTransport", "make_transport", "outcome_of_status", "sign"]

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
    # CRM sinks: record id -> (the CRM's id, a contact's company id) learnt, or None: forget it;
    # kept even when the outcome is a failure (the objects made before it exist)
    refs: Mapping[str, tuple[str, str | None] | None] | None = None

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
        self.verify: str | bool = str(sink.ca_file) if sink.ca_file else True
        self.session: requests.Session | None = None

    def _session(self) -> requests.Session:
        if self.session is None:
            # trust_env (the default): HTTPS_PROXY / HTTP_PROXY / NO_PROXY and REQUESTS_CA_BUNDLE apply,
            # as with every other HTTP client on the machine; the pool keeps the connection alive
            self.session = requests.Session()
        return self.session

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

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
                   **self.sink.headers}
        try:
            resp = self._session().post(self.sink.url, data=body, headers=headers, timeout=self.sink.timeout,
                                        verify=self.verify, allow_redirects=False)
            resp.content  # read the answer so the connection goes back to the pool
            status = resp.status_code
            retry_after = _retry_after(resp.headers.get("Retry-After"), self.clock())
        except requests.RequestException as exc:
            self.close()
            kind = "timed out" if isinstance(exc, requests.Timeout) else _reason(exc)
            return Outcome(False, error=f"{self.sink.url}: {kind}"[:500])
        return outcome_of_status(status, retry_after)


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests error, named: what a reader can act on."""
    seen = exc
    while seen.__cause__ is not None or (seen.args and isinstance(seen.args[0], BaseException)):
        seen = seen.__cause__ if seen.__cause__ is not None else seen.args[0]
    return f"{exc.__class__.__name__}: {seen}"


def outcome_of_status(status: int, retry_after: float | None, detail: str = "") -> Outcome:
    """2xx delivered; 408, 425, 429, 5xx retried (with the Retry-After given); anything else permanent."""
    suffix = f": {detail}" if detail else ""
    if 200 <= status < 300:
        return Outcome.delivered(status)
    if status in RETRY_STATUSES:
        return Outcome(False, retry_after=retry_after, error=f"HTTP {status}{suffix}"[:500], status=status)
    return Outcome(False, permanent=True, error=f"HTTP {status} (not retried){suffix}"[:500], status=status)


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


Ref = tuple[str, str | None]  # a CRM's id of a record, and of a contact's company


def fields(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """A CRM sink's mapped values, without the empty ones (they would blank what a person filled in)."""
    return {k: v for k, v in (data or {}).items() if v is not None and v != ""}


def _innermost(exc: BaseException) -> str:
    """The innermost error a requests exception wraps (a TLS failure's reason), shortened."""
    while exc.args and isinstance(exc.args[0], BaseException):
        exc = exc.args[0]
    return str(exc)[:200]


class CrmTransport:
    """What the CRM sinks' transports share. A subclass keeps ``sink``, and per delivery ``_learnt``
    (record id -> Ref learnt, or None: forget it) and ``_contacts`` (the records of contacts an
    activity names that the CRM does not have yet), and has ``_upsert_contact(env, refs)``."""

    sink: SinkSettings
    _learnt: dict[str, Ref | None]
    _contacts: dict[str, dict]

    def ref_ids(self, envelopes: Sequence[dict]) -> list[str]:
        """The records whose CRM ids these envelopes need: their own, and for a contact its
        company, for an activity its contact."""
        ids = []
        for env in envelopes:
            ids.append(env["id"])
            rec = env.get("record") or {}
            if env["type"] == "contact" and rec.get("company_domain"):
                ids.append(company_id(rec["company_domain"]))
            elif env["type"] == "activity" and rec.get("contact_id"):
                ids.append(rec["contact_id"])
        return ids

    def send(self, envelopes: Sequence[dict], refs: Mapping[str, Ref] | None = None,
             contacts: Mapping[str, dict] | None = None) -> Outcome:
        """Deliver one envelope. ``refs``: the CRM ids known of the records it names; ``contacts``:
        the records of contacts its activity names that the CRM does not have yet."""
        (env,) = envelopes
        self._learnt = {}
        self._contacts = dict(contacts or {})
        return self._deliver(env, dict(refs or {}))

    def _deliver(self, env: dict, refs: dict) -> Outcome:
        raise NotImplementedError

    def _unexpected(self, crm: str, env: dict, exc: Exception) -> Outcome:
        """An answer that could not be read: this record retries, the rest go on."""
        logging.getLogger(f"mailsync.crm.{self.sink.type}").warning(
            "%s sink %s: unexpected answer for %s %s: %s", self.sink.type, self.sink.name, env["type"], env["id"],
            exc.__class__.__name__)
        return Outcome(False, error=f"{crm}: unexpected answer: {exc.__class__.__name__}: {exc}"[:500],
                       refs=self._learnt)

    def _request_failed(self, crm: str, exc: requests.RequestException) -> Outcome:
        """A request that got no answer: retried; a TLS failure stops the sink (configuration, not weather)."""
        if isinstance(exc, requests.exceptions.SSLError):
            from mailsync.errors import TLSVerifyError

            raise TLSVerifyError(f"{crm} {self.sink.url}: the TLS connection failed: {_innermost(exc)}",
                                 hint="check the url, or point ca_file at the CA that signs the server's "
                                      "certificate; the records stay queued") from None
        kind = "timed out" if isinstance(exc, requests.Timeout) else exc.__class__.__name__
        return Outcome(False, error=f"{crm} {self.sink.url}: {kind}"[:500], refs=self._learnt)

    # deletions: (the CRM's kind of a contact's object, of an activity's) for _delete(kind, env, refs)
    deleted_kinds: tuple[str, str] = ("", "")

    def _delete(self, kind: str, env: dict, refs: dict) -> None:
        raise NotImplementedError

    def _delete_contact(self, env: dict, refs: dict) -> None:
        self._delete(self.deleted_kinds[0], env, refs)

    def _delete_activity(self, env: dict, refs: dict) -> None:
        self._delete(self.deleted_kinds[1], env, refs)

    def _delete_company(self, env: dict, refs: dict) -> None:
        self._learnt[env["id"]] = None  # the company stays in the CRM (people there may own it); only our link goes

    # upserts (HubSpot has its own): _account(domain, values, known) and _contact(record, values,
    # known, account) write an object and return its id; a company made when its contact comes
    # first is named as its company record will be, in account_name_field
    account_name_field = ""

    def _account(self, domain: str, values: dict, known: Ref | None) -> str:
        raise NotImplementedError

    def _contact(self, record: Mapping[str, Any], values: dict, known: Ref | None, account: str | None) -> str:
        raise NotImplementedError

    def _upsert_company(self, env: dict, refs: dict) -> None:
        oid = self._account(env["record"]["domain"], fields(env["data"]), refs.get(env["id"]))
        self._learnt[env["id"]] = (oid, None)

    def _upsert_contact(self, env: dict, refs: dict) -> None:
        rec = env["record"]
        account = None
        domain = rec.get("company_domain")
        if domain:
            key = company_id(domain)
            account = self._account(domain, {self.account_name_field: company_name(domain)}, refs.get(key))
            self._learnt[key] = (account, None)
        oid = self._contact(rec, fields(env["data"]), refs.get(env["id"]), account)
        self._learnt[env["id"]] = (oid, account)

    def _contact_first(self, rec: Mapping[str, Any], refs: dict) -> Ref:
        """The CRM ids (contact, company) of an activity's contact, which is delivered whole first
        when the CRM does not have it yet (or bare, by its address, when its record is gone)."""
        known = refs.get(rec.get("contact_id") or "")
        if known is not None:
            return known
        record = self._contacts.get(rec.get("contact_id") or "")
        if record is None:
            record = {"id": rec["contact_id"], "address": rec["contact_address"]}
        data = apply_mapping(record, self.sink.fields.get("contact", ()), passthrough=False)
        self._upsert_contact({"id": record["id"], "type": "contact", "record": record, "data": data}, refs)
        return self._learnt[record["id"]]  # type: ignore[return-value]  # just learnt: never None


def make_transport(sink: SinkSettings, *, clock: Callable[[], float], sleep: Callable[[float], None] = time.sleep):
    """The transport of a sink; a secret or token is resolved here (CredentialError if it cannot be)."""
    from mailsync.auth.secrets import resolve_secret

    if sink.type == "webhook":
        assert sink.secret is not None
        return WebhookTransport(sink, resolve_secret(sink.secret), clock=clock)
    if sink.type == "hubspot":
        from mailsync.crm.hubspot import HubSpotTransport

        assert sink.secret is not None
        return HubSpotTransport(sink, resolve_secret(sink.secret), clock=clock, sleep=sleep)
    if sink.type == "bottlecrm":
        from mailsync.crm.bottlecrm import BottleCrmTransport

        assert sink.secret is not None
        return BottleCrmTransport(sink, resolve_secret(sink.secret), clock=clock)
    if sink.type == "salesforce":
        from mailsync.crm.salesforce import SalesforceTransport

        assert sink.secret is not None
        return SalesforceTransport(sink, lambda: resolve_secret(sink.secret), clock=clock)
    return JsonlTransport(sink)
