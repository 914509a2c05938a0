"""The bottlecrm sink against a real BottleCRM (django-crm from PyPI, under gunicorn on 127.0.0.1,
tests/bottlecrm_server.py): every contact one BottleCRM contact linked to its company's account, every
company one account, every activity one email interaction on its contact -- checked in the CRM's own
database and through its API; through 503s and changes whose answer was lost; again with no ids
known (found, never made twice); a CRM that is down (retries, dead letters, then delivered by
`crm outbox --retry`'s path); `crm forget` deleting the contact and its interactions; a refused token,
a field the CRM refuses, a message dated in the future; HTTPS with the sink's ca_file, and a
certificate that does not verify."""

from __future__ import annotations

import pytest

from bottlecrm_server import LossyProxy, check_crm_holds, hex_id
from crm_support import crm_settings, stored_records
from mailsync.crm.bottlecrm import marker
from mailsync.crm.outbox import Worker, outbox_summary, retry_dead
from mailsync.crm.pipeline import Pipeline
from mailsync.crm.records import parse_iso
from mailsync.store.db import open_store
from mailsync.testing.crm_corpus import generate_crm_corpus, load_into_store

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(scope="module")
def crm_messages():
    return generate_crm_corpus(1)[0]


@pytest.fixture
def crm(bottlecrm, monkeypatch):
    monkeypatch.setenv("BOTTLECRM_TOKEN", bottlecrm.token)
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return bottlecrm


@pytest.fixture
def store(tmp_path, crm_messages):
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", crm_messages[:90])
    yield store
    store.dispose()


def _sink(url: str, **kw) -> dict:
    return {"name": "bottle", "type": "bottlecrm", "url": url, "token": "env:BOTTLECRM_TOKEN", "timeout": 10,
            "backoff": 0.02, "max_backoff": 0.2, "max_attempts": 30, **kw}


def test_records_land_once_through_faults_and_reruns(tmp_path, crm, store):
    with LossyProxy(crm.url, seed=7, failure_rate=0.3, max_failures=40) as proxy:
        settings = crm_settings(tmp_path, {"sink": [_sink(proxy.url)]})
        Pipeline(store, settings).run()
        result = Worker(store, settings).run(deadline=240)
    assert result.dead == 0 and result.pending == 0, (result.summary(), outbox_summary(store)["dead"][:3])
    assert proxy.failures["done-then-lost"] >= 5 and proxy.failures["503"] >= 5, proxy.failures
    records = stored_records(store)
    assert len(records["contacts"]) >= 10 and len(records["companies"]) >= 5 and len(records["activities"]) >= 20
    held = check_crm_holds(crm, records)
    # the CRM's API shows the same: a contact's interactions, an account's contacts
    some = next(c for c in records["contacts"].values() if c.get("company_domain"))
    row = held["contacts"][some["address"]]
    api_contact = crm.get(f"contacts/{_dashed(row['id'])}/")["contact_obj"]
    assert api_contact["email"] == some["address"] and hex_id(api_contact["account"]) == row["account_id"]
    logged = crm.get("interactions/", contact=_dashed(row["id"]))["interactions"]
    assert {i["body"].rsplit("\n", 1)[-1] for i in logged} == {
        marker(a["id"]) for a in records["activities"].values() if a["contact_address"] == some["address"]}
    # every record sent again by a sink that knows no ids: each found, none made twice
    before = {k: {key: r["id"] for key, r in v.items()} for k, v in held.items()}
    settings2 = crm_settings(tmp_path, {"sink": [_sink(crm.url, name="bottle2")]})
    Pipeline(store, settings2).run()
    again = Worker(store, settings2).run(deadline=240)
    assert again.dead == 0 and again.delivered == sum(len(v) for v in records.values()), again.summary()
    after = check_crm_holds(crm, records)
    assert {k: {key: r["id"] for key, r in v.items()} for k, v in after.items()} == before


def _dashed(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def test_a_crm_that_is_down_retries_then_dead_letters_then_delivers(tmp_path, crm, store):
    with LossyProxy(crm.url) as gone:  # a port where nothing answers any more
        dead_url = gone.url
    settings = crm_settings(tmp_path, {"sink": [_sink(dead_url, max_attempts=3, timeout=2)]})
    Pipeline(store, settings).run()
    result = Worker(store, settings).run(deadline=60)
    queued = sum(len(v) for v in stored_records(store).values())
    assert result.dead == queued and result.delivered == 0 and result.pending == 0, result.summary()
    dead = outbox_summary(store)["dead"]
    assert dead[0]["attempts"] == 3 and "BottleCRM http://127.0.0.1" in dead[0]["last_error"]
    assert "ConnectionError" in dead[0]["last_error"] and crm.token not in str(dead)
    assert crm.rows("contacts") == []
    # the CRM is back (the same sink, now at its address): the dead letters go out, once each
    assert retry_dead(store) == queued
    back = crm_settings(tmp_path, {"sink": [_sink(crm.url)]})
    again = Worker(store, back).run(deadline=240)
    assert again.dead == 0 and again.pending == 0 and again.delivered == queued, again.summary()
    check_crm_holds(crm, stored_records(store))


def test_forget_deletes_the_contact_and_its_interactions(tmp_path, crm, store):
    settings = crm_settings(tmp_path, {"sink": [_sink(crm.url)]})
    Pipeline(store, settings).run()
    assert Worker(store, settings).run(deadline=240).dead == 0
    records = stored_records(store)
    held = check_crm_holds(crm, records)
    victim = max(records["contacts"].values(), key=lambda c: c["sent_count"] + c["received_count"])
    row = held["contacts"][victim["address"]]
    assert [r for r in crm.rows("interaction") if r["contact_id"] == row["id"]]
    Pipeline(store, settings).forget(victim["address"])
    result = Worker(store, settings).run(deadline=120)
    assert result.dead == 0 and result.pending == 0, result.summary()
    assert victim["address"] not in {r["email"] for r in crm.rows("contacts")}
    assert not crm.server.rows("SELECT id FROM contacts WHERE id = ?", row["id"])
    assert not crm.server.rows("SELECT id FROM interaction WHERE contact_id = ?", row["id"])
    after = stored_records(store)
    gone = {f"https://{c['domain']}" for c in records["companies"].values()} - {
        f"https://{c['domain']}" for c in after["companies"].values()}
    check_crm_holds(crm, after, frozenset(gone))  # accounts are left to the people who own them


def test_a_refused_token_stops_the_sink_and_keeps_the_records(tmp_path, crm, store, monkeypatch):
    monkeypatch.setenv("BOTTLECRM_TOKEN", "bcrm_pat_not-a-token-the-crm-gave")
    settings = crm_settings(tmp_path, {"sink": [_sink(crm.url)]})
    Pipeline(store, settings).run()
    result = Worker(store, settings).run(deadline=30)
    assert result.dead == 0 and result.delivered == 0 and result.pending > 0, result.summary()
    assert any("BottleCRM" in e and "refused the token (HTTP 403)" in e for e in result.errors), result.errors
    assert not any("not-a-token" in e for e in result.errors)
    monkeypatch.setenv("BOTTLECRM_TOKEN", crm.token)  # fixed: the next run delivers them all
    again = Worker(store, settings).run(deadline=240)
    assert again.dead == 0 and again.pending == 0 and again.delivered == result.pending
    check_crm_holds(crm, stored_records(store))


def test_a_field_the_crm_refuses_is_a_dead_letter_with_its_message(tmp_path, crm, store):
    token_file = tmp_path / "token"  # the token from a command this time, as a secret manager hands it
    token_file.write_text(crm.token)
    sink = _sink(crm.url, token=f"cmd:cat {token_file}", records=["contact"],
                 fields={"contact": {"linkedin_url": "display_name"}})
    settings = crm_settings(tmp_path, {"sink": [sink]})
    Pipeline(store, settings).run()
    result = Worker(store, settings).run(deadline=120)
    named = [c for c in stored_records(store)["contacts"].values() if c.get("display_name")]
    assert named and result.dead == len(named), result.summary()
    err = outbox_summary(store)["dead"][0]["last_error"]
    assert "BottleCRM HTTP 400 (not retried)" in err and "linkedin_url" in err and "valid URL" in err
    assert len(crm.rows("contacts")) == len(stored_records(store)["contacts"]) - len(named)  # the others landed


def test_a_message_dated_in_the_future_is_logged_at_the_time_it_is_sent(tmp_path, crm):
    """BottleCRM refuses an interaction more than five minutes ahead; a spam date of 2038 is not a
    reason to lose the activity."""
    import json
    import time

    from mailsync.crm.outbox import envelope
    from mailsync.crm.sinks import make_transport

    sink = crm_settings(tmp_path, {"sink": [_sink(crm.url)]}).sink("bottle")
    contact = {"id": "c_f", "address": "future@dated.example", "first_name": "Fay"}
    act = {"id": "a_f", "kind": "email_received", "direction": "in", "timestamp": "2038-01-19T03:14:08Z",
           "contact_id": "c_f", "contact_address": "future@dated.example", "subject": None, "body_preview": None}
    row = {"op": "upsert", "record_type": "activity", "record_id": "a_f", "idempotency_key": "k",
           "payload": json.dumps(act)}
    transport = make_transport(sink, clock=time.time)
    before = time.time()
    outcome = transport.send([envelope(row, sink)], refs={}, contacts={"c_f": contact})
    transport.close()
    assert outcome.ok, outcome.error
    (logged,) = crm.rows("interaction")
    assert logged["body"] == marker("a_f") and logged["direction"] == "inbound"
    assert before - 2 <= parse_iso(logged["occurred_at"].replace(" ", "T")[:19] + "Z") <= time.time() + 2
    assert [r["email"] for r in crm.rows("contacts")] == ["future@dated.example"]


def test_https_with_the_sinks_ca_file_and_a_certificate_that_does_not_verify(tmp_path, crm, store, monkeypatch):
    from tls_support import make_certificate

    cert, key = make_certificate(tmp_path / "tls")
    url = crm.server.serve_https(cert, key)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    untrusted = crm_settings(tmp_path, {"sink": [_sink(url)]})
    Pipeline(store, untrusted).run()
    result = Worker(store, untrusted).run(deadline=30)
    assert result.dead == 0 and result.delivered == 0 and result.pending > 0, result.summary()
    assert any("BottleCRM https://127.0.0.1" in e and "TLS connection failed" in e for e in result.errors)
    assert crm.rows("contacts") == []
    trusted = crm_settings(tmp_path, {"sink": [_sink(url, ca_file=str(cert))]})  # the same sink, told the CA
    again = Worker(store, trusted).run(deadline=240)
    assert again.dead == 0 and again.pending == 0 and again.delivered == result.pending, again.summary()
    check_crm_holds(crm, stored_records(store))
