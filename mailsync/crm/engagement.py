"""Engagement: counts, reply rate and latency, deliverability, consent, and a score with time decay.

Owns: turning one contact's activities into its engagement fields, and a company's contacts into the
company's. The stored score is "as of" the last activity (score_as_of), so records are a pure
function of the mail and never change by themselves; :func:`current_score` decays it to "now" with a
clock the caller injects (the CLI passes the wall clock, tests a fixed one).
Weights: reply 5, email_received 3, answered 2, email_sent 1, auto_reply 0, soft bounce -1,
hard bounce -5, unsubscribe -10; each decays by half every ``half_life_days`` (default 90).
Deliverability walks the events in time order: a hard bounce makes the address undeliverable, a soft
one soft-bouncing (unless already undeliverable), mail from the address (including an auto-reply)
makes it ok again. Consent: the latest opt-out or opt-in wins; "unknown" when there was none.
Must not: touch the store, the network, or read the clock itself.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence

from mailsync.crm.records import company_id, iso, parse_iso

__all__ = ["WEIGHTS", "company_engagement", "contact_engagement", "current_score", "decay"]

WEIGHTS = {"reply": 5.0, "email_received": 3.0, "answered": 2.0, "email_sent": 1.0, "auto_reply": 0.0,
           "unsubscribe": -10.0}
BOUNCE_WEIGHTS = {"soft": -1.0, "hard": -5.0}
INBOUND = ("email_received", "reply")


def decay(age_seconds: float, half_life_days: float) -> float:
    return 0.5 ** (max(0.0, age_seconds) / (half_life_days * 86400.0))


def _weight(a: dict) -> float:
    if a["kind"] == "bounce":
        return BOUNCE_WEIGHTS.get(a.get("bounce_type") or "", 0.0)
    return WEIGHTS.get(a["kind"], 0.0)


def contact_engagement(activities: Sequence[dict], consent_events: Iterable[tuple[int, str, str | None]],
                       half_life_days: float) -> dict:
    """``activities``: one contact's activity records; ``consent_events``: (ts, "opted_out" |
    "subscribed", message_id)."""
    acts = sorted(activities, key=lambda a: (a["timestamp"], a["kind"], a["id"]))
    ts = [parse_iso(a["timestamp"]) for a in acts]
    by_kind: dict[str, list[int]] = {}
    for a, t in zip(acts, ts):
        by_kind.setdefault(a["kind"], []).append(t)
    sent = by_kind.get("email_sent", [])
    inbound = sorted(by_kind.get("email_received", []) + by_kind.get("reply", []))
    replies = by_kind.get("reply", [])
    latencies = [a["latency_seconds"] for a in acts if a["kind"] == "reply" and a["latency_seconds"] is not None]

    state, state_at = "ok", None
    for a, t in zip(acts, ts):
        if a["kind"] == "bounce":
            if a["bounce_type"] == "hard":
                state, state_at = "undeliverable", t
            elif a["bounce_type"] == "soft" and state != "undeliverable":
                state, state_at = "soft_bouncing", t
        elif a["kind"] in ("email_received", "reply", "auto_reply", "unsubscribe") and state != "ok":
            state, state_at = "ok", t

    consent, consent_at, consent_source = "unknown", None, None
    for t, what, source in sorted(consent_events, key=lambda e: (e[0], e[1], e[2] or "")):
        consent, consent_at, consent_source = what, t, source

    as_of = max(ts) if ts else None
    score = 0.0
    if as_of is not None:
        for a, t in zip(acts, ts):
            score += _weight(a) * decay(as_of - t, half_life_days)
    return {
        "first_seen": iso(min(ts)) if ts else None,
        "last_seen": iso(as_of),
        "sent_count": len(sent),
        "received_count": len(inbound),
        "reply_count": len(replies),
        "auto_reply_count": len(by_kind.get("auto_reply", [])),
        "bounce_count": len(by_kind.get("bounce", [])),
        "last_contacted": iso(max(sent)) if sent else None,
        "last_outbound": iso(max(sent)) if sent else None,
        "last_inbound": iso(max(inbound)) if inbound else None,
        "reply_rate": round(min(1.0, len(replies) / len(sent)), 4) if sent else None,
        "median_reply_latency_seconds": float(statistics.median(latencies)) if latencies else None,
        "deliverability": state,
        "deliverability_at": iso(state_at),
        "consent": consent,
        "consent_at": iso(consent_at),
        "consent_source": consent_source,
        "score": round(score, 4),
        "score_as_of": iso(as_of),
    }


def company_engagement(domain: str, name: str, contacts: Sequence[dict], latencies: Iterable[float],
                       half_life_days: float) -> dict:
    """A company record from its contacts' records and the reply latencies of its contacts."""
    def dates(field: str) -> list[str]:
        return [c[field] for c in contacts if c.get(field)]

    sent = sum(c["sent_count"] for c in contacts)
    replies = sum(c["reply_count"] for c in contacts)
    lat = sorted(latencies)
    as_of_list = dates("score_as_of")
    as_of = max(as_of_list) if as_of_list else None
    score = 0.0
    if as_of is not None:
        ref = parse_iso(as_of)
        for c in sorted(contacts, key=lambda c: c["id"]):
            if c.get("score_as_of"):
                score += c["score"] * decay(ref - parse_iso(c["score_as_of"]), half_life_days)
    return {
        "id": company_id(domain),
        "domain": domain,
        "name": name,
        "contact_count": len(contacts),
        "first_seen": min(dates("first_seen")) if dates("first_seen") else None,
        "last_seen": max(dates("last_seen")) if dates("last_seen") else None,
        "sent_count": sent,
        "received_count": sum(c["received_count"] for c in contacts),
        "reply_count": replies,
        "reply_rate": round(min(1.0, replies / sent), 4) if sent else None,
        "median_reply_latency_seconds": float(statistics.median(lat)) if lat else None,
        "last_inbound": max(dates("last_inbound")) if dates("last_inbound") else None,
        "last_outbound": max(dates("last_outbound")) if dates("last_outbound") else None,
        "undeliverable_contacts": sum(1 for c in contacts if c["deliverability"] == "undeliverable"),
        "opted_out_contacts": sum(1 for c in contacts if c["consent"] == "opted_out"),
        "score": round(score, 4),
        "score_as_of": as_of,
    }


def current_score(record: dict, now: Callable[[], float] | float, half_life_days: float) -> float:
    """The record's score decayed from its ``score_as_of`` to ``now`` (a clock or a timestamp)."""
    t = now() if callable(now) else now
    as_of = parse_iso(record.get("score_as_of"))
    if as_of is None:
        return 0.0
    return round(record["score"] * decay(t - as_of, half_life_days), 4)
