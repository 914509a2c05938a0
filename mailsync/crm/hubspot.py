"""The HubSpot sink: CRM records into HubSpot as contacts, companies and logged emails.

Owns: how a record becomes HubSpot objects, through the public API of ``hubspot-api-client``
(the CRM v3 objects and v4 associations endpoints), and the mapping of HubSpot's answers to an
Outcome, here at the boundary:
  contact   upserted by email (batch upsert with idProperty=email: a retry finds what the first
            try made), then associated with its company (found or made as below); the email
            property is always the contact's address (mailsync's canonical form, the key of the
            contact and of its activities), not a mapped field
  company   the object this sink made or found before (crm_sink_refs), else searched by domain
            (search-before-create), else created; then updated with the mapped properties
  activity  an email engagement (``hs_email_direction`` EMAIL or INCOMING_EMAIL, ``hs_email_status``
            SENT or BOUNCED) associated with its contact and the contact's company (a contact not in
            HubSpot yet -- its own row waits for a retry -- is upserted first, whole); before one is
            created, an email of the same contact with the same hs_timestamp and direction is looked
            for, so a retry after a lost answer updates it instead of logging a second one (HubSpot's
            emails have no property of ours to key by; two activities of one message, contact and
            direction -- a reply that also unsubscribes -- are so logged as one email)
  deletion  a contact (``crm forget``) is erased with HubSpot's GDPR delete, an activity's email
            archived; a company is left alone (people in HubSpot may own it), only our link to it goes
Answers: 2xx delivered; 429 waits (Retry-After, else the window HubSpot's policyName names: 1 s,
10 s) and pauses the sink; 5xx, timeouts and connection failures retry; 401/403 stop the sink
with a CredentialError (rows stay pending: fix the token, nothing goes dead); other 4xx are
permanent (dead letters, with HubSpot's message). The token is never logged or put in an error.
The client honours HTTPS_PROXY/NO_PROXY (read here: its own transport does not).
Must not: touch the store (the worker keeps the ids learnt, ``Outcome.refs``), retry by itself
(the client's own retries are off), or import the client at module level (start-up stays short).
A TLS failure (certificate) stops the sink like a refused token: it is configuration, not weather.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from mailsync.crm.records import company_id
from mailsync.crm.settings import SinkSettings
from mailsync.crm.sinks import CrmTransport, Outcome, Ref, RETRY_STATUSES, _retry_after
from mailsync.errors import CredentialError, TLSVerifyError

log = logging.getLogger("mailsync.crm.hubspot")

__all__ = ["HubSpotTransport", "email_properties", "properties"]

CONTACT_TO_COMPANY = "companies"
EMAIL_TO_CONTACT = 198  # HUBSPOT_DEFINED association type ids (email -> contact, email -> company)
EMAIL_TO_COMPANY = 186
POLICY_WAIT = {"SECONDLY": 1.0, "TEN_SECONDLY_ROLLING": 10.0, "MINUTELY": 60.0}


def properties(data: Mapping[str, Any] | None) -> dict[str, str]:
    """HubSpot property values are strings; an empty value is left out (it would blank a field a
    person filled in HubSpot)."""
    out = {}
    for k, v in (data or {}).items():
        if v is None or v == "":
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def email_properties(record: Mapping[str, Any], data: Mapping[str, Any] | None) -> dict[str, str]:
    """The properties of an activity's email engagement: the mapped ones, and those HubSpot needs."""
    props = properties(data)
    inbound = record.get("direction") == "in"
    props.setdefault("hs_timestamp", record["timestamp"])
    props["hs_email_direction"] = "INCOMING_EMAIL" if inbound else "EMAIL"
    props["hs_email_status"] = "BOUNCED" if record.get("kind") == "bounce" else "SENT"
    return props


def epoch_ms(value: str) -> str:
    """An ISO 8601 time (or epoch milliseconds) as the epoch milliseconds a search compares."""
    if value.isdigit():
        return value
    return str(int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000))


class HubSpotTransport(CrmTransport):
    def __init__(self, sink: SinkSettings, token: str, *, clock: Callable[[], float],
                 sleep: Callable[[float], None] = time.sleep) -> None:
        import requests.utils
        import urllib3
        from hubspot import HubSpot
        from hubspot.crm.associations.v4.exceptions import ApiException as AssocError
        from hubspot.crm.companies.exceptions import ApiException as CompanyError
        from hubspot.crm.contacts.exceptions import ApiException as ContactError
        from hubspot.crm.objects.emails.exceptions import ApiException as ObjectError

        self.sink = sink
        self.clock = clock
        self.sleep = sleep
        self.api_errors = (ContactError, CompanyError, ObjectError, AssocError)
        self.net_errors = (urllib3.exceptions.HTTPError, OSError)
        options: dict[str, Any] = {"access_token": token, "host": sink.url,
                                   "retry": urllib3.util.Retry(total=0, connect=0, read=0, redirect=0, status=0)}
        scheme = "https" if (sink.url or "").startswith("https:") else "http"
        proxy = requests.utils.get_environ_proxies(sink.url or "").get(scheme)
        if proxy:
            options["proxy"] = proxy
        if sink.ca_file:
            options["ssl_ca_cert"] = str(sink.ca_file)
        self.client = HubSpot(**options)
        self.timeout = sink.timeout
        self._learnt: dict[str, Ref | None] = {}
        self._contacts: dict[str, dict] = {}

    def close(self) -> None:
        pass

    # -- what the worker asks ------------------------------------------------------------------

    def _deliver(self, env: dict, refs: dict) -> Outcome:
        try:
            getattr(self, f"_{env['op']}_{env['type']}")(env, refs)
        except self.api_errors as exc:
            return self._failed(exc)
        except self.net_errors as exc:
            kind = "timed out" if "timed out" in str(exc).lower() else exc.__class__.__name__
            return Outcome(False, error=f"HubSpot {self.sink.url}: {kind}"[:500], refs=self._learnt)
        except CredentialError:
            raise
        except Exception as exc:  # an answer that could not be read: this record retries, the rest go on
            return self._unexpected("HubSpot", env, exc)
        return Outcome(True, status=200, refs=self._learnt)

    def _failed(self, exc) -> Outcome:
        status = int(exc.status or 0)
        headers = dict(exc.headers or {})
        try:
            body = json.loads(exc.body or b"{}")
        except (TypeError, ValueError):
            body = {}
        body = body if isinstance(body, dict) else {}
        message = str(body.get("message") or exc.reason or "")[:300]
        if status in (401, 403):
            raise CredentialError(f"HubSpot refused the token (HTTP {status}): {message}",
                                  hint="check the sink's token (a private app access token with the crm.objects "
                                       "contacts and companies read/write scopes); the records stay queued")
        if status == 0:  # the client's own wrapping of a TLS failure
            raise TLSVerifyError(f"HubSpot {self.sink.url}: the TLS connection failed: {message}",
                                 hint="check the url, or point ca_file at the CA that signs the server's certificate; "
                                      "the records stay queued")
        retry_after = _retry_after(headers.get("Retry-After") or headers.get("retry-after"), self.clock())
        if status == 429 and retry_after is None:
            retry_after = POLICY_WAIT.get(str(body.get("policyName", "")).upper(), 10.0)
        detail = f"{body.get('category', '')}: {message}".strip(": ")
        if status in RETRY_STATUSES:
            return Outcome(False, retry_after=retry_after, error=f"HubSpot HTTP {status}: {detail}"[:500],
                           status=status, refs=self._learnt)
        return Outcome(False, permanent=True, error=f"HubSpot HTTP {status} (not retried): {detail}"[:500],
                       status=status, refs=self._learnt)

    # -- upserts --------------------------------------------------------------------------------

    def _contact_by_email(self, address: str, props: dict[str, str]) -> str:
        from hubspot.crm.contacts import (BatchInputSimplePublicObjectBatchInputUpsert,
                                          SimplePublicObjectBatchInputUpsert)

        props = {**props, "email": address}  # the key: mailsync's address, whatever the mapping says
        batch = BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[SimplePublicObjectBatchInputUpsert(id_property="email", id=address, properties=props)])
        answer = self.client.crm.contacts.batch_api.upsert(batch, _request_timeout=self.timeout)
        results = getattr(answer, "results", None) or []
        if not results:  # a batch answer with errors instead of the contact
            raise ValueError(f"the contact upsert returned no contact ({getattr(answer, 'errors', None)})")
        return str(results[0].id)

    def _company(self, domain: str, props: dict[str, str], known: Ref | None) -> str:
        from hubspot.crm.companies import (Filter, FilterGroup, PublicObjectSearchRequest, SimplePublicObjectInput,
                                           SimplePublicObjectInputForCreate)
        from hubspot.crm.companies.exceptions import NotFoundException

        api = self.client.crm.companies
        if known is not None:
            try:
                if props:
                    api.basic_api.update(known[0], SimplePublicObjectInput(properties=props),
                                         _request_timeout=self.timeout)
                return known[0]
            except NotFoundException:  # deleted in HubSpot: found or made again below
                pass
        search = PublicObjectSearchRequest(
            filter_groups=[FilterGroup(filters=[Filter(property_name="domain", operator="EQ", value=domain)])],
            properties=["domain"], limit=1)
        found = api.search_api.do_search(search, _request_timeout=self.timeout).results
        if found:
            coid = str(found[0].id)
            if props:
                api.basic_api.update(coid, SimplePublicObjectInput(properties=props), _request_timeout=self.timeout)
            return coid
        made = api.basic_api.create(SimplePublicObjectInputForCreate(properties={"domain": domain, **props}),
                                    _request_timeout=self.timeout)
        return str(made.id)

    def _upsert_company(self, env: dict, refs: dict) -> None:
        rec = env["record"]
        coid = self._company(rec["domain"], properties(env["data"]), refs.get(env["id"]))
        self._learnt[env["id"]] = (coid, None)

    def _upsert_contact(self, env: dict, refs: dict) -> None:
        rec = env["record"]
        cid = self._contact_by_email(rec["address"], properties(env["data"]))
        coid = None
        domain = rec.get("company_domain")
        if domain:
            key = company_id(domain)
            coid = self._company(domain, {}, refs.get(key))
            self._learnt[key] = (coid, None)
            self.client.crm.associations.v4.basic_api.create_default(
                "contacts", cid, CONTACT_TO_COMPANY, coid, _request_timeout=self.timeout)
        self._learnt[env["id"]] = (cid, coid)

    def _upsert_activity(self, env: dict, refs: dict) -> None:
        from hubspot.crm.objects.emails import (AssociationSpec, Filter, FilterGroup, PublicAssociationsForObject,
                                                PublicObjectId, PublicObjectSearchRequest, SimplePublicObjectInput,
                                                SimplePublicObjectInputForCreate)
        from hubspot.crm.objects.emails.exceptions import NotFoundException

        rec = env["record"]
        props = email_properties(rec, env["data"])
        cid, coid = self._contact_first(rec, refs)
        api = self.client.crm.objects.emails
        known = refs.get(env["id"])
        if known is not None:
            try:
                api.basic_api.update(known[0], SimplePublicObjectInput(properties=props), _request_timeout=self.timeout)
                self._learnt[env["id"]] = known
                return
            except NotFoundException:
                pass
        search = PublicObjectSearchRequest(filter_groups=[FilterGroup(filters=[
            Filter(property_name="associations.contact", operator="EQ", value=cid),
            Filter(property_name="hs_timestamp", operator="EQ", value=epoch_ms(props["hs_timestamp"])),
            Filter(property_name="hs_email_direction", operator="EQ", value=props["hs_email_direction"])])],
            properties=["hs_timestamp", "hs_email_direction"], limit=1)
        found = api.search_api.do_search(search, _request_timeout=self.timeout).results
        if found:  # made by an earlier try whose answer was lost
            eid = str(found[0].id)
            api.basic_api.update(eid, SimplePublicObjectInput(properties=props), _request_timeout=self.timeout)
        else:
            links = [PublicAssociationsForObject(to=PublicObjectId(id=cid), types=[
                AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=EMAIL_TO_CONTACT)])]
            if coid:
                links.append(PublicAssociationsForObject(to=PublicObjectId(id=coid), types=[
                    AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=EMAIL_TO_COMPANY)]))
            made = api.basic_api.create(SimplePublicObjectInputForCreate(properties=props, associations=links),
                                        _request_timeout=self.timeout)
            eid = str(made.id)
        self._learnt[env["id"]] = (eid, None)

    # -- deletions ------------------------------------------------------------------------------

    def _delete_contact(self, env: dict, refs: dict) -> None:
        from hubspot.crm.contacts import PublicGdprDeleteInput
        from hubspot.crm.contacts.exceptions import NotFoundException

        known = refs.get(env["id"])
        if known is None:
            log.info("hubspot sink %s: no HubSpot contact known for %s; nothing to erase", self.sink.name, env["id"])
        else:
            try:
                self.client.crm.contacts.basic_api.purge(PublicGdprDeleteInput(object_id=known[0]),
                                                         _request_timeout=self.timeout)
            except NotFoundException:
                pass  # already gone
        self._learnt[env["id"]] = None

    def _delete_activity(self, env: dict, refs: dict) -> None:
        from hubspot.crm.objects.emails.exceptions import NotFoundException

        known = refs.get(env["id"])
        if known is not None:
            try:
                self.client.crm.objects.emails.basic_api.archive(known[0], _request_timeout=self.timeout)
            except NotFoundException:
                pass
        self._learnt[env["id"]] = None
