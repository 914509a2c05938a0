"""The shapes of CRM records: field names per record type, ids, timestamps, content digests.

Owns: the field lists of contact, company and activity records (sinks, the field mapping and the CLI
rely on them: adding a field is fine, renaming one breaks sink mappings), the id scheme (contacts and
activities: HMAC-SHA256 under the installation's salt, so an id reveals nothing about the address;
companies: SHA-256 of the domain), the salted hash that ``crm forget`` keeps, ISO 8601 timestamps
(UTC, ``Z``), and the digest that tells whether a record changed.
Must not: touch the store, the network or the clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone

__all__ = [
    "ACTIVITY_FIELDS", "ACTIVITY_KINDS", "COMPANY_FIELDS", "CONTACT_FIELDS", "DATE_FIELDS", "RECORD_TYPES",
    "activity_id", "company_id", "contact_id", "digest", "forget_hash", "iso", "parse_iso",
]

RECORD_TYPES = ("contact", "company", "activity")
ACTIVITY_KINDS = ("email_sent", "email_received", "reply", "bounce", "auto_reply", "unsubscribe", "answered")

CONTACT_FIELDS = (
    "id", "address", "email", "display_name", "first_name", "last_name", "company_domain",
    "first_seen", "last_seen", "sent_count", "received_count", "reply_count", "auto_reply_count",
    "bounce_count", "last_contacted", "last_inbound", "last_outbound", "reply_rate",
    "median_reply_latency_seconds", "deliverability", "deliverability_at", "consent", "consent_at",
    "consent_source", "score", "score_as_of", "address_valid", "address_problem", "typo_suggestion",
    "loop_guarded",
)
COMPANY_FIELDS = (
    "id", "domain", "name", "contact_count", "first_seen", "last_seen", "sent_count", "received_count",
    "reply_count", "reply_rate", "median_reply_latency_seconds", "last_inbound", "last_outbound",
    "undeliverable_contacts", "opted_out_contacts", "score", "score_as_of",
)
ACTIVITY_FIELDS = (
    "id", "kind", "contact_id", "contact_address", "message_id", "thread_id", "timestamp", "direction",
    "visibility", "subject", "body_preview", "in_reply_to", "latency_seconds", "bounce_type", "bounce_status",
    "bounce_diagnostic", "original_message_id", "unsubscribe_source",
)
FIELDS = {"contact": CONTACT_FIELDS, "company": COMPANY_FIELDS, "activity": ACTIVITY_FIELDS}
DATE_FIELDS = {
    "contact": ("first_seen", "last_seen", "last_contacted", "last_inbound", "last_outbound",
                "deliverability_at", "consent_at", "score_as_of"),
    "company": ("first_seen", "last_seen", "last_inbound", "last_outbound", "score_as_of"),
    "activity": ("timestamp",),
}


def _mac(salt: bytes, text: str) -> str:
    return hmac.new(salt, text.encode("utf-8"), hashlib.sha256).hexdigest()


def contact_id(salt: bytes, address: str) -> str:
    return "c_" + _mac(salt, "contact\0" + address)[:24]


def activity_id(salt: bytes, message_key: str, address: str, kind: str) -> str:
    return "a_" + _mac(salt, f"activity\0{message_key}\0{address}\0{kind}")[:24]


def company_id(domain: str) -> str:
    return "co_" + hashlib.sha256(domain.encode("utf-8")).hexdigest()[:20]


def forget_hash(salt: bytes, address: str) -> str:
    """What `crm forget` keeps of an address: enough to recognise it again, nothing to read back."""
    return _mac(salt, "forget\0" + address)


def iso(ts: int | float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str | None) -> int | None:
    if not text:
        return None
    return int(datetime.fromisoformat(text).timestamp())  # "...Z" is UTC (Python >= 3.11)


def canonical_json(record: dict) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def digest(record: dict) -> str:
    return hashlib.sha256(canonical_json(record).encode("utf-8")).hexdigest()[:32]
