"""The BottleCRM sink: CRM records into a self-hosted BottleCRM (django-crm) as contacts, accounts and
logged emails, through its REST API (``/api/``, a personal access token as the bearer).

Owns: how a record becomes BottleCRM objects, the requests that make them, and the mapping of
BottleCRM's answers to an Outcome, here at the boundary:
  contact   found by the one we made before (crm_sink_refs), else by email (``GET /api/contacts/
            ?email=``, the address compared whole, case aside: BottleCRM keeps one contact per email),
            then updated (PATCH), else created (POST); ``email`` is always the contact's address
            (mailsync's canonical form, the key), ``account`` its company's account (found or made as
            below). A new contact needs both names: the local part and "-" stand in for unknown ones
            (an update never sends them, so names typed in BottleCRM stay)
  company   an account: the one we made before, else the one BottleCRM's own duplicate check
            (``POST /api/accounts/duplicates/``) pairs with the domain (its website), or an account
            of the same name without a website, else created; ``website`` is always
            https://DOMAIN; ``name`` (the company's name, else its domain) is given when the account
            is made and never changed after: BottleCRM keeps one account per name, so a name another
            domain's account holds gets the domain added, "Acme (acme.co.uk)"
  activity  an interaction of kind email (direction inbound/outbound) on the contact (a contact not
            in BottleCRM yet -- its own row waits for a retry -- is upserted first, whole); the
            contact's account shows it through the contact (BottleCRM's API logs an interaction on
            one record). Its body ends with a ``[mailsync ID]`` marker line: before one is logged,
            the contact's interactions are read for it (once per contact while deliveries succeed,
            again after any that failed), so a retry after a lost answer updates the one the first
            try made instead of logging a second
  deletion  a contact (``crm forget``) is deleted, and BottleCRM deletes the interactions logged on
            it; an activity's interaction is deleted; an account is left alone (people in BottleCRM
            may own it), only our link to it goes
Answers: 2xx delivered; 401/403 stop the sink with a CredentialError (rows stay pending: fix the
token or its scopes, nothing goes dead); 429 waits for Retry-After (the duplicate check allows
120 a minute) and pauses the sink; 408, 5xx, timeouts and refused connections retry; 400 and
other 4xx are permanent (dead letters, with BottleCRM's field errors). The token is never logged
or put in an error. Requests go through ``requests``: HTTPS_PROXY/NO_PROXY apply.
Must not: touch the store (the worker keeps the ids learnt, ``Outcome.refs``), retry by itself, or
import BottleCRM (it is a server we speak HTTP to).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import requests

from mailsync.crm.records import iso, parse_iso
from mailsync.crm.settings import SinkSettings
from mailsync.crm.sinks import USER_AGENT, CrmTransport, Outcome, Ref, RETRY_STATUSES, _retry_after, fields
from mailsync.errors import CredentialError, TLSVerifyError

log = logging.getLogger("mailsync.crm.bottlecrm")

__all__ = ["BottleCrmTransport", "contact_fields", "interaction_fields", "marker", "website"]

PAGE = 200  # interactions read a page at a time (BottleCRM's largest)
UNKNOWN_NAME = "-"
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def marker(activity_id: str) -> str:
    """The line an interaction's body ends with: how a retry finds the one an earlier try made."""
    return f"[mailsync {activity_id}]"


def website(domain: str) -> str:
    return f"https://{domain}"


def contact_fields(record: Mapping[str, Any], data: Mapping[str, Any] | None, *, new: bool) -> dict[str, Any]:
    """A contact's fields: the mapped ones and its address; for a new contact, names that stand in
    for unknown ones (BottleCRM requires both)."""
    address = record.get("address") or record["contact_address"]
    values = {**fields(data), "email": address}
    if new:
        values.setdefault("first_name", address.split("@", 1)[0][:255])
        values.setdefault("last_name", UNKNOWN_NAME)
    return values


def interaction_fields(record: Mapping[str, Any], data: Mapping[str, Any] | None, now: float) -> dict[str, Any]:
    """An activity's interaction: kind email, its direction, the mapped fields, the marker line. A
    time after ``now`` (a message dated in the future) is logged as ``now``: BottleCRM refuses it."""
    values = fields(data)
    kind = str(record.get("kind", "email")).replace("_", " ")
    values["subject"] = str(values.get("subject") or f"Email ({kind})")[:200]
    text = str(values.get("body") or "")
    tag = marker(record["id"])
    values["body"] = (text[:10_000 - len(tag) - 2] + "\n\n" if text else "") + tag
    values.setdefault("occurred_at", record["timestamp"])
    when = parse_iso(str(values["occurred_at"])) if ISO_TIME.fullmatch(str(values["occurred_at"])) else None
    if when is not None and when > now:
        values["occurred_at"] = iso(now)
    values["kind"] = "email"
    values["direction"] = "inbound" if record.get("direction") == "in" else "outbound"
    return values


class _Refused(Exception):
    """An answer other than 2xx: its status, BottleCRM's words, and Retry-After (seconds)."""

    def __init__(self, status: int, detail: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail, self.retry_after = status, detail, retry_after


def _detail(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300]
    if isinstance(body, dict):
        body = body.get("errors") or body.get("detail") or body.get("message") or body
    return (body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, sort_keys=True))[:300]


class BottleCrmTransport(CrmTransport):
    deleted_kinds = ("contacts", "interactions")  # an account stays in BottleCRM; only our link to it goes
    account_name_field = "name"

    def __init__(self, sink: SinkSettings, token: str, *, clock: Callable[[], float]) -> None:
        self.sink = sink
        self.clock = clock
        self.api = f"{sink.url}/api"
        self.verify: str | bool = str(sink.ca_file) if sink.ca_file else True
        self.session = requests.Session()  # trust_env: HTTPS_PROXY / NO_PROXY apply; kept alive
        self.session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT,
                                     "Accept": "application/json"})
        self._learnt: dict[str, Ref | None] = {}
        self._contacts: dict[str, dict] = {}
        # contact id -> {marker line: interaction id} of what it has logged, read once per contact
        # while every delivery succeeds (each activity would otherwise read them all again)
        self._logged: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        self.session.close()

    # -- what the worker asks ------------------------------------------------------------------

    def _deliver(self, env: dict, refs: dict) -> Outcome:
        outcome = self._attempt(env, refs)
        if not outcome.ok:
            self._logged.clear()  # a change may have been made whose answer was lost: read them again
        return outcome

    def _attempt(self, env: dict, refs: dict) -> Outcome:
        try:
            getattr(self, f"_{env['op']}_{env['type']}")(env, refs)
        except _Refused as exc:
            return self._failed(exc)
        except requests.RequestException as exc:
            self.session.close()  # a fresh connection next time
            return self._request_failed("BottleCRM", exc)
        except (CredentialError, TLSVerifyError):
            raise
        except Exception as exc:  # an answer that could not be read: this record retries, the rest go on
            return self._unexpected("BottleCRM", env, exc)
        return Outcome(True, status=200, refs=self._learnt)

    def _failed(self, exc: _Refused) -> Outcome:
        status = exc.status
        if status in (401, 403):
            raise CredentialError(f"BottleCRM {self.sink.url} refused the token (HTTP {status}): {exc.detail}",
                                  hint="give the sink a personal access token (bcrm_pat_...) of an admin of the "
                                       "organization, with the contacts, accounts and interactions read and write "
                                       "scopes (or none: all); the records stay queued")
        if status in RETRY_STATUSES:
            return Outcome(False, retry_after=exc.retry_after, error=f"BottleCRM HTTP {status}: {exc.detail}"[:500],
                           status=status, refs=self._learnt)
        return Outcome(False, permanent=True, error=f"BottleCRM HTTP {status} (not retried): {exc.detail}"[:500],
                       status=status, refs=self._learnt)

    def _call(self, method: str, path: str, *, body: dict | None = None, params: dict | None = None,
              missing_ok: bool = False) -> Any:
        """One request; the JSON answer, None for a 404 when ``missing_ok``; _Refused otherwise."""
        resp = self.session.request(method, f"{self.api}/{path}", json=body, params=params, timeout=self.sink.timeout,
                                    verify=self.verify, allow_redirects=False)
        if 200 <= resp.status_code < 300:
            return resp.json() if resp.content else {}
        if resp.status_code == 404 and missing_ok:
            resp.content  # read, so the connection goes back to the pool
            return None
        raise _Refused(resp.status_code, _detail(resp), _retry_after(resp.headers.get("Retry-After"), self.clock()))

    def _write(self, kind: str, values: dict, known: Ref | None, find: Callable[[], str | None],
               create: dict | None = None) -> str:
        """Update the object we know (gone: found again), else the one ``find`` finds, with
        ``values``; else create one from ``create`` (default: ``values``). Returns its id."""
        for oid in (known[0] if known else None, "find"):
            if oid == "find":
                oid = find()
            if oid is not None and self._call("PATCH", f"{kind}/{oid}/", body=values, missing_ok=True) is not None:
                return oid
        made = self._call("POST", f"{kind}/", body=values if create is None else create)
        if not made.get("id"):
            raise ValueError(f"BottleCRM made one of {kind} but named no id ({made.get('message')!r})")
        return str(made["id"])

    # -- upserts --------------------------------------------------------------------------------

    def _account(self, domain: str, values: dict, known: Ref | None) -> str:
        """The account of a domain. Its name is given when it is made, and never changed after
        (people rename accounts; BottleCRM keeps one per name): a name another company's account
        holds gets the domain added, "Acme (acme.co.uk)"."""
        values = dict(values)
        name = str(values.pop("name", None) or domain)
        values["website"] = website(domain)
        create = {**values, "name": name}

        def find() -> str | None:
            hits = self._call("POST", "accounts/duplicates/", body={"website": values["website"],
                                                                    "name": name})["duplicates"]
            same_site = [h for h in hits if "website" in h.get("matched_on", ())]
            if same_site:
                return str(same_site[0]["id"])
            for hit in hits:
                if str(hit.get("name", "")).lower() == name.lower():
                    other = self._call("GET", f"accounts/{hit['id']}/")["account_obj"].get("website")
                    if not other:  # made by hand, without a website: ours now
                        return str(hit["id"])
                    create["name"] = f"{name} ({domain})"
            return None

        return self._write("accounts", values, known, find, create)

    def _contact(self, record: Mapping[str, Any], mapped: dict, known: Ref | None, account: str | None) -> str:
        values = contact_fields(record, mapped, new=False)
        if account:
            values["account"] = account
        address = values["email"]

        def find() -> str | None:
            found = self._call("GET", "contacts/", params={"email": address, "limit": 50})["results"]
            return next((str(c["id"]) for c in found if str(c.get("email") or "").lower() == address.lower()), None)

        new = {**contact_fields(record, mapped, new=True), **values}
        return self._write("contacts", values, known, find, new)

    def _markers(self, contact: str) -> dict[str, str]:
        """{marker line: interaction id} of the interactions logged on a contact."""
        if contact not in self._logged:
            found: dict[str, str] = {}
            offset = 0
            while True:
                page = self._call("GET", "interactions/", params={"contact": contact, "limit": PAGE, "offset": offset})
                for i in page["interactions"]:
                    found.setdefault(str(i.get("body") or "").rsplit("\n", 1)[-1], str(i["id"]))
                offset += PAGE
                if offset >= int(page.get("count", 0)):
                    break
            self._logged[contact] = found
        return self._logged[contact]

    def _upsert_activity(self, env: dict, refs: dict) -> None:
        rec = env["record"]
        contact = self._contact_first(rec, refs)
        values = interaction_fields(rec, env["data"], self.clock())
        tag = marker(env["id"])
        change = {k: v for k, v in values.items() if k != "kind"}  # the kind is fixed once logged
        oid = self._write("interactions", change, refs.get(env["id"]), lambda: self._markers(contact[0]).get(tag),
                          {**values, "contact": contact[0]})
        if contact[0] in self._logged:
            self._logged[contact[0]][tag] = oid
        self._learnt[env["id"]] = (oid, None)

    # -- deletions ------------------------------------------------------------------------------

    def _delete(self, kind: str, env: dict, refs: dict) -> None:
        self._logged.clear()
        known = refs.get(env["id"])
        if known is None:
            log.info("bottlecrm sink %s: no %s known for %s; nothing to delete", self.sink.name, kind[:-1], env["id"])
        else:
            self._call("DELETE", f"{kind}/{known[0]}/", missing_ok=True)  # a 404: already gone
        self._learnt[env["id"]] = None
