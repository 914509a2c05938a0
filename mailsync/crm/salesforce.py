"""The Salesforce sink: CRM records into Salesforce as Contacts, Accounts and completed email Tasks.

Owns: how a record becomes Salesforce objects, through ``simple-salesforce``'s public API (the REST
sObject and query endpoints, an access token as the session id), and the mapping of Salesforce's
answers to an Outcome, here at the boundary. Two ways to key objects:
  external_id_field set  (an External ID text field, e.g. Mailsync_Id__c, on Contact, Account and
            Task): every object is upserted by mailsync's record id -- Salesforce's own idempotent
            upsert (PATCH .../sobjects/Contact/Mailsync_Id__c/c_...)
  not set   query-then-upsert: the object this sink made before (crm_sink_refs), else a Contact by
            Email, an Account by Website (the company's domain), a Task of the contact, day and
            subtype Email whose Description ends with the activity's marker line, else created
  contact   Email (always the contact's address, mailsync's canonical form: the key), FirstName,
            LastName (Salesforce requires one: the address's local part when the name is unknown),
            AccountId of its company's Account (found or made as above)
  company   an Account (Name: the company's name, else its domain; Website: the domain)
  activity  a Task: TaskSubtype Email, Status Completed, WhoId the contact, WhatId its Account (a
            contact not in Salesforce yet -- its own row waits for a retry -- is upserted first, whole)
  deletion  a Contact (``crm forget``) and a Task are deleted; an Account is left alone (people in
            Salesforce may own it), only our link to it goes
Answers: 2xx delivered; 401 (expired session): the token is resolved again once (a cmd: source can
fetch a fresh one), then the sink stops with a CredentialError and the rows stay pending; 403
REQUEST_LIMIT_EXCEEDED waits (the org's API limit), other 403s stop the sink (permissions); 400
and other 4xx are permanent (dead letters, with Salesforce's errorCode and message); 5xx, 429,
timeouts and connection failures retry. The token is never logged or put in an error. Requests
go through ``requests``, so HTTPS_PROXY/NO_PROXY apply.
Must not: touch the store (the worker keeps the ids learnt, ``Outcome.refs``), or import the
client at module level (start-up stays short).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import requests

from mailsync.crm.records import company_id
from mailsync.crm.settings import SinkSettings
from mailsync.crm.sinks import CrmTransport, Outcome, Ref, RETRY_STATUSES, fields
from mailsync.errors import CredentialError, TLSVerifyError

log = logging.getLogger("mailsync.crm.salesforce")

__all__ = ["SalesforceTransport", "marker", "task_fields"]

LIMIT_WAIT = 3600.0  # REQUEST_LIMIT_EXCEEDED: the org's rolling 24-hour API limit


def marker(activity_id: str) -> str:
    """The line a Task's Description ends with: how a retry finds the Task an earlier try made."""
    return f"[mailsync {activity_id}]"


def task_fields(record: Mapping[str, Any], data: Mapping[str, Any] | None) -> dict[str, Any]:
    values = fields(data)
    kind = str(record.get("kind", "email")).replace("_", " ")
    values.setdefault("Subject", f"Email ({kind})")
    values["Subject"] = str(values["Subject"])[:255]
    text = str(values.get("Description") or "")
    values["Description"] = (text + "\n\n" if text else "") + marker(record["id"])
    values["TaskSubtype"] = "Email"
    values["Status"] = "Completed"
    return values


class _Session(requests.Session):
    """A requests session whose ``ca_file`` wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (which a
    plain session lets override its own ``verify``); proxies from the environment still apply."""

    def __init__(self, ca_file: str | None) -> None:
        super().__init__()
        self.ca_file = ca_file

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.ca_file:
            settings["verify"] = self.ca_file
        return settings


class SalesforceTransport(CrmTransport):
    deleted_kinds = ("Contact", "Task")  # an Account stays in Salesforce; only our link to it goes
    account_name_field = "Name"

    def __init__(self, sink: SinkSettings, token: Callable[[], str], *, clock: Callable[[], float]) -> None:
        from simple_salesforce import exceptions as sfe

        self.sink = sink
        self.token = token
        self.clock = clock
        self.sfe = sfe
        self.session = _Session(str(sink.ca_file) if sink.ca_file else None)  # HTTPS_PROXY / NO_PROXY apply
        self.ext = sink.external_id_field
        self._sf = None
        self._learnt: dict[str, Ref | None] = {}
        self._contacts: dict[str, dict] = {}

    def _client(self):
        if self._sf is None:
            from simple_salesforce import Salesforce

            self._sf = Salesforce(instance_url=self.sink.url, session_id=self.token(), version=self.sink.api_version,
                                  session=self.session)
        return self._sf

    def close(self) -> None:
        self.session.close()

    def _deliver(self, env: dict, refs: dict) -> Outcome:
        action = getattr(self, f"_{env['op']}_{env['type']}")
        for attempt in (1, 2):
            try:
                action(env, {**refs, **{k: v for k, v in self._learnt.items() if v is not None}})
                return Outcome(True, status=200, refs=self._learnt)
            except self.sfe.SalesforceExpiredSession:
                self._sf = None  # the token is resolved again: a cmd: source may hand a fresh one
                if attempt == 2:
                    raise CredentialError(
                        f"Salesforce refused the token for {self.sink.url} (HTTP 401, session expired or invalid)",
                        hint="give the sink a current access token (token = \"cmd:...\" can fetch a fresh one each "
                             "time); the records stay queued") from None
            except self.sfe.SalesforceError as exc:
                return self._failed(exc)
            except requests.RequestException as exc:
                return self._request_failed("Salesforce", exc)
            except (CredentialError, TLSVerifyError):
                raise
            except Exception as exc:  # an answer that could not be read: this record retries, the rest go on
                return self._unexpected("Salesforce", env, exc)
        raise AssertionError("unreachable")

    def _failed(self, exc) -> Outcome:
        status = int(getattr(exc, "status", 0) or 0)
        content = getattr(exc, "content", None)
        first = content[0] if isinstance(content, list) and content and isinstance(content[0], dict) else {}
        code = str(first.get("errorCode", ""))
        detail = f"{code}: {first.get('message', '')}".strip(": ") or str(content)[:200]
        if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
            return Outcome(False, retry_after=LIMIT_WAIT, error=f"Salesforce HTTP 403: {detail}"[:500], status=status,
                           refs=self._learnt)
        if status == 403:
            raise CredentialError(f"Salesforce refused the request (HTTP 403): {detail}",
                                  hint="the token's user needs create/edit/delete on Contact, Account and Task; "
                                       "the records stay queued")
        if status in RETRY_STATUSES:
            return Outcome(False, error=f"Salesforce HTTP {status}: {detail}"[:500], status=status, refs=self._learnt)
        return Outcome(False, permanent=True, error=f"Salesforce HTTP {status} (not retried): {detail}"[:500],
                       status=status, refs=self._learnt)

    # -- finding and writing objects --------------------------------------------------------------

    def _query_id(self, soql: str, *args: Any) -> str | None:
        from simple_salesforce import format_soql

        found = self._client().query(format_soql(soql, *args))["records"]
        return found[0]["Id"] if found else None

    def _write(self, sobject: str, record_id: str, values: dict, known: Ref | None,
               find: Callable[[], str | None]) -> str:
        """Upsert one object: by the external id field when there is one, else the known object,
        else the one ``find`` finds, else a new one. Returns its Id."""
        api = getattr(self._client(), sobject)
        if self.ext:
            from simple_salesforce import format_external_id

            answer = api.upsert(format_external_id(self.ext, record_id), values, raw_response=True)
            body = answer.json() if answer.content else {}
            if body.get("id"):
                return body["id"]
            return self._query_id(f"SELECT Id FROM {sobject} WHERE {self.ext} = {{}} LIMIT 1", record_id)
        if known is not None:
            try:
                api.update(known[0], values)
                return known[0]
            except self.sfe.SalesforceResourceNotFound:  # deleted in Salesforce: found or made again
                pass
        oid = find()
        if oid is not None:
            api.update(oid, values)
            return oid
        return api.create(values)["id"]

    def _account(self, domain: str, values: dict, known: Ref | None) -> str:
        values = {"Website": domain, **values}
        values.setdefault("Name", domain)
        return self._write("Account", company_id(domain), values, known,
                           lambda: self._query_id("SELECT Id FROM Account WHERE Website = {} ORDER BY CreatedDate "
                                                  "LIMIT 1", domain))

    def _contact(self, record: Mapping[str, Any], values: dict, known: Ref | None, account: str | None) -> str:
        address = record.get("address") or record["contact_address"]
        values = {**values, "Email": address}  # the key: mailsync's address, whatever the mapping says
        values.setdefault("LastName", record.get("last_name") or address.split("@", 1)[0])
        if account:
            values["AccountId"] = account
        return self._write("Contact", record.get("id") or record["contact_id"], values, known,
                           lambda: self._query_id("SELECT Id FROM Contact WHERE Email = {} ORDER BY CreatedDate "
                                                  "LIMIT 1", address))

    def _upsert_activity(self, env: dict, refs: dict) -> None:
        rec = env["record"]
        contact = self._contact_first(rec, refs)
        values = task_fields(rec, env["data"])
        values["WhoId"] = contact[0]
        if contact[1]:
            values["WhatId"] = contact[1]
        tag = marker(env["id"])

        def find() -> str | None:
            from simple_salesforce import format_soql

            soql = "SELECT Id, Description FROM Task WHERE WhoId = {} AND TaskSubtype = 'Email'"
            args: list[Any] = [contact[0]]
            try:
                day = date.fromisoformat(str(values.get("ActivityDate")))
            except ValueError:
                day = None
            if day is not None:
                soql += " AND ActivityDate = {}"
                args.append(day)
            found = self._client().query_all(format_soql(soql, *args))["records"]
            return next((t["Id"] for t in found if str(t.get("Description") or "").endswith(tag)), None)

        oid = self._write("Task", env["id"], values, refs.get(env["id"]), find)
        self._learnt[env["id"]] = (oid, None)

    def _delete(self, sobject: str, env: dict, refs: dict) -> None:
        known = refs.get(env["id"])
        oid = known[0] if known else None
        if oid is None and self.ext:
            oid = self._query_id(f"SELECT Id FROM {sobject} WHERE {self.ext} = {{}} LIMIT 1", env["id"])
        if oid is None:
            log.info("salesforce sink %s: no %s known for %s; nothing to delete", self.sink.name, sobject, env["id"])
        else:
            try:
                getattr(self._client(), sobject).delete(oid)
            except self.sfe.SalesforceResourceNotFound:
                pass  # already gone
        self._learnt[env["id"]] = None
