"""Helpers for the CRM tests: run the pure extractor over corpus messages, and put records and the
generator's ground truth into the same comparable shape."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Sequence

from mailsync.crm.extract import Copy, ExtractSettings, combine, extract_all, thread_ids
from mailsync.crm.headers import parse_message
from mailsync.crm.identity import folder_role
from mailsync.crm.jwz import thread_id_of
from mailsync.testing.corpus import CorpusMessage

OWN = "me@mailsync.test"
CONTACT_FIELDS = ("address", "email", "display_name", "company_domain", "first_seen", "last_seen", "sent_count",
                  "received_count", "reply_count", "auto_reply_count", "bounce_count", "last_contacted",
                  "last_inbound", "median_reply_latency_seconds", "deliverability", "consent", "typo_suggestion",
                  "loop_guarded")
COMPANY_FIELDS = ("domain", "contact_count", "sent_count", "received_count", "reply_count", "first_seen", "last_seen")
ACTIVITY_FIELDS = ("kind", "message_id", "timestamp", "latency_seconds", "bounce_type", "unsubscribe_source",
                   "in_reply_to", "original_message_id")


def extract_messages(messages: Sequence[CorpusMessage], settings: ExtractSettings | None = None, *,
                     identities: Iterable[str] = (OWN,), share: str = "metadata", policy: str = "sent",
                     salt: bytes = b"test-salt", forgotten=lambda a: False):
    """(records, companies) of messages, as the pipeline would derive them from a store."""
    facts, copies = {}, collections.defaultdict(list)
    for m in messages:
        f = parse_message(m.raw, preview=share == "everything")
        facts[f.key] = f
        copies[f.key].append(Copy(folder_role(None, m.folder), "\\Draft" in m.flags, "\\Answered" in m.flags,
                                  int(m.internaldate), share, policy))
    tids = thread_ids((f, f.date if f.date is not None else min(c.internaldate for c in copies[k]))
                      for k, f in facts.items())
    inputs = [combine(facts[k], copies[k], tids[k]) for k in facts]
    return extract_all(inputs, settings or ExtractSettings(), identities=identities, salt=salt, forgotten=forgotten)


def project(contacts: Iterable[dict], companies: Iterable[dict], activities: Iterable[dict]) -> dict:
    """Records reduced to what the ground truth states (ids and scores are checked elsewhere)."""
    acts = {}
    for a in activities:
        key = (a["contact_address"], a["kind"], a["message_id"], a["timestamp"])
        assert key not in acts, f"duplicate activity {key}"
        acts[key] = {**{k: a[k] for k in ACTIVITY_FIELDS}, "contact": a["contact_address"], "thread_id": a["thread_id"]}
    return {"contacts": {c["address"]: {k: c[k] for k in CONTACT_FIELDS} for c in contacts},
            "companies": {c["domain"]: {k: c[k] for k in COMPANY_FIELDS} for c in companies},
            "activities": acts}


def project_truth(truth: dict, got_activities: dict | None = None) -> dict:
    """The truth in project()'s shape. A truth activity whose thread has no root Message-ID (a message
    without one, or the second of two sharing one) takes the thread id found, which
    check_own_threads() then requires to be unique to its message."""
    acts = {}
    for a in truth["activities"]:
        key = (a["contact"], a["kind"], a["message_id"], a["timestamp"])
        entry = {**{k: a[k] for k in ACTIVITY_FIELDS}, "contact": a["contact"]}
        if a["thread_root"] is not None:
            entry["thread_id"] = thread_id_of(a["thread_root"])
        else:
            entry["thread_id"] = (got_activities or {}).get(key, {}).get("thread_id")
        acts[key] = entry
    return {"contacts": {c["address"]: {k: c[k] for k in CONTACT_FIELDS} for c in truth["contacts"]},
            "companies": {c["domain"]: dict(c) for c in truth["companies"]},
            "activities": acts}


def check_own_threads(truth: dict, got: dict) -> None:
    """Activities the truth puts in a thread of their own share their thread id with no other message."""
    by_thread = collections.defaultdict(set)
    for (contact, kind, mid, ts), a in got["activities"].items():
        by_thread[a["thread_id"]].add((mid, ts))
    for a in truth["activities"]:
        if a["thread_root"] is None:
            tid = got["activities"][(a["contact"], a["kind"], a["message_id"], a["timestamp"])]["thread_id"]
            assert by_thread[tid] == {(a["message_id"], a["timestamp"])}, (a, by_thread[tid])


def diff(got: dict, expected: dict) -> str:
    """A readable difference of two projections (empty when equal)."""
    lines = []
    for part in ("contacts", "companies", "activities"):
        g, e = got[part], expected[part]
        for k in sorted(set(g) | set(e), key=str):
            if g.get(k) != e.get(k):
                lines.append(f"{part} {k}: got {json.dumps(g.get(k), default=str)} expected "
                             f"{json.dumps(e.get(k), default=str)}")
    return "\n".join(lines[:40])


def crm_settings(tmp_path, crm: dict | None = None, accounts: Iterable[str] = ("acc",), **account_keys):
    """CrmSettings as the loader would make them, for accounts named ``accounts``."""
    from pathlib import Path

    from mailsync.config.loader import config_from_mapping
    from mailsync.crm.settings import CrmSettings

    doc = {"account": [{"name": n, "host": "localhost", "username": "u", "password": "x",
                        "identities": [OWN], **account_keys} for n in accounts],
           "crm": crm or {"enabled": True}}
    return CrmSettings.from_config(config_from_mapping(doc, path=Path(tmp_path) / "config.toml"))


def stored_records(store) -> dict:
    """{"contacts": {address: record}, "companies": {domain: record}, "activities": {id: record}}."""
    from sqlalchemy import select

    from mailsync.crm.models import CrmActivity, CrmCompany, CrmContact
    from mailsync.store.uow import UnitOfWork

    with UnitOfWork(store) as uow:
        s = uow.session
        return {"contacts": {a: json.loads(d) for a, d in s.execute(select(CrmContact.address, CrmContact.data))},
                "companies": {a: json.loads(d) for a, d in s.execute(select(CrmCompany.domain, CrmCompany.data))},
                "activities": {a: json.loads(d) for a, d in s.execute(select(CrmActivity.id, CrmActivity.data))}}


def project_stored(records: dict) -> dict:
    return project(records["contacts"].values(), records["companies"].values(), records["activities"].values())
