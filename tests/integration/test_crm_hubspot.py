"""The HubSpot sink, driven by hubspot-api-client's own request code against a local server that answers
as HubSpot's CRM API does (tests/hubspot_server.py): every contact once by email, every company once by
domain, every activity one logged email tied to its contact and company -- through 502s, 429s and
changes made whose answer was lost; `crm forget` erases the contact in HubSpot; a refused token stops the
sink without losing a record."""

from __future__ import annotations

import json

import pytest

from crm_support import crm_settings, stored_records
from helpers import account_entry, run_cli, write_config
from hubspot_server import HubSpotServer
from mailsync.crm.outbox import Worker, outbox_summary
from mailsync.crm.pipeline import Pipeline
from mailsync.store.db import open_store
from mailsync.testing.crm_corpus import generate_crm_corpus, load_into_store

TOKEN = "pat-na1-test-token"


@pytest.fixture(scope="module")
def crm_corpus():
    return generate_crm_corpus(1)


@pytest.fixture
def token_env(monkeypatch):
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def _sink(url: str, **kw) -> dict:
    return {"name": "hs", "type": "hubspot", "url": url, "token": "env:HUBSPOT_TOKEN", "timeout": 5,
            "rate_limit": 1000, "backoff": 0.02, "max_backoff": 0.2, "max_attempts": 60, **kw}


def _check_hubspot_holds(srv: HubSpotServer, records: dict, kept_companies: frozenset = frozenset()) -> None:
    """HubSpot holds each record once, keyed and linked as the sink promises (and the companies
    ``kept_companies`` that mailsync no longer has: a sink leaves companies in HubSpot)."""
    contacts = srv.objects["contacts"]
    by_email = {p["email"]: oid for oid, p in contacts.items()}
    assert len(by_email) == len(contacts)  # unique emails (the server enforces it too)
    assert set(by_email) == {c["address"] for c in records["contacts"].values()}
    for c in records["contacts"].values():
        props = contacts[by_email[c["address"]]]
        assert props.get("firstname") == c.get("first_name") or (not c.get("first_name") and "firstname" not in props)
    companies = srv.objects["companies"]
    by_domain = {}
    for oid, p in companies.items():
        assert p["domain"] not in by_domain, f"company {p['domain']} twice"
        by_domain[p["domain"]] = oid
    assert set(by_domain) == {c["domain"] for c in records["companies"].values()} | kept_companies
    for c in records["contacts"].values():
        if c.get("company_domain"):
            assert srv.contact_companies[by_email[c["address"]]] == {by_domain[c["company_domain"]]}
    emails = srv.objects["emails"]
    contact_of = {c["id"]: c for c in records["contacts"].values()}
    seen = set()
    for eid, props in emails.items():
        links = srv.email_links[eid]
        (cid,) = links["contacts"]
        email = contacts[cid]["email"]
        seen.add((email, props["hs_timestamp"], props["hs_email_direction"], props.get("hs_email_status")))
        contact = next((c for c in contact_of.values() if c["address"] == email), None)
        if contact and contact.get("company_domain"):
            assert links.get("companies") == {by_domain[contact["company_domain"]]}
    expected = {(a["contact_address"], a["timestamp"], "INCOMING_EMAIL" if a["direction"] == "in" else "EMAIL",
                 "BOUNCED" if a["kind"] == "bounce" else "SENT") for a in records["activities"].values()}
    assert seen == expected
    # one logged email per activity, none twice (activities of one message, contact and direction share one)
    assert len(emails) == len(expected) >= len(records["activities"]) - 3


def test_records_land_once_through_faults_and_reruns(tmp_path, crm_corpus, token_env):
    messages, _ = crm_corpus
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", messages)
    with HubSpotServer(TOKEN, seed=7, failure_rate=0.25, max_failures=36) as srv:
        settings = crm_settings(tmp_path, {"sink": [_sink(srv.url)]})
        Pipeline(store, settings).run()
        result = Worker(store, settings).run(deadline=180)
        assert result.dead == 0 and result.pending == 0, (result.summary(), outbox_summary(store)["dead"][:3])
        assert srv.failures["done-then-500"] >= 5 and srv.failures["502"] >= 5 and srv.failures["429"] >= 5
        records = stored_records(store)
        assert len(records["activities"]) > 100 and len(records["companies"]) > 5
        _check_hubspot_holds(srv, records)
        before = {k: dict(v) for k, v in srv.objects.items()}
        # everything sent again (a rebuild with the sink new, as after a lost store): nothing doubles
        Pipeline(store, crm_settings(tmp_path, {"sink": [_sink(srv.url, name="hs2")]})).run()
        settings2 = crm_settings(tmp_path, {"sink": [_sink(srv.url, name="hs2")]})
        again = Worker(store, settings2).run(deadline=180)
        assert again.dead == 0 and again.delivered == sum(len(v) for v in records.values())
        assert {k: set(v) for k, v in srv.objects.items()} == {k: set(v) for k, v in before.items()}
        _check_hubspot_holds(srv, records)
    store.dispose()


def test_rate_limit_429_is_honoured(tmp_path, crm_corpus, token_env):
    messages, _ = crm_corpus
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", messages[:40])
    with HubSpotServer(TOKEN, rate_limit=(15, 1.0)) as srv:  # 15 calls a second, 429 beyond
        settings = crm_settings(tmp_path, {"sink": [_sink(srv.url)]})
        Pipeline(store, settings).run()
        result = Worker(store, settings).run(deadline=120)
        assert result.dead == 0 and result.pending == 0, result.summary()
        assert srv.rate_limited >= 1  # the limit was hit ...
        calls = sum(srv.calls.values())
        assert srv.rate_limited <= calls // 4  # ... and the sink waited instead of hammering it
        _check_hubspot_holds(srv, stored_records(store))
    store.dispose()


def test_429_without_retry_after_waits_for_the_policy_window(tmp_path, crm_corpus, token_env):
    from mailsync.crm.sinks import make_transport

    with HubSpotServer(TOKEN, rate_limit=(2, 10.0), retry_after=None) as srv:  # a company: search + create
        settings = crm_settings(tmp_path, {"sink": [_sink(srv.url)]})
        transport = make_transport(settings.sink("hs"), clock=lambda: 0.0)
        env = {"idempotency_key": "k", "op": "upsert", "type": "company", "id": "co_1", "sink": "hs",
               "data": {"domain": "acme.example", "name": "Acme"}, "record": {"domain": "acme.example"}}
        first = transport.send([env], refs={})
        assert first.ok, first
        second = transport.send([dict(env, id="co_2", record={"domain": "b.example"})], refs={})
        assert not second.ok and second.status == 429 and second.retry_after == 10.0 and not second.permanent


def test_an_unreadable_answer_fails_that_record_only(tmp_path, token_env):
    from mailsync.crm.sinks import make_transport

    with HubSpotServer(TOKEN) as srv:
        srv.garbled.add("/crm/v3/objects/contacts/batch/upsert")
        transport = make_transport(crm_settings(tmp_path, {"sink": [_sink(srv.url)]}).sink("hs"), clock=lambda: 0.0)
        contact = {"idempotency_key": "k1", "op": "upsert", "type": "contact", "id": "c_1", "sink": "hs",
                   "data": {"firstname": "Jane"}, "record": {"id": "c_1", "address": "jane@acme.example"}}
        bad = transport.send([contact], refs={})
        assert not bad.ok and not bad.permanent and "unexpected answer" in bad.error  # retried later, no crash
        company = {"idempotency_key": "k2", "op": "upsert", "type": "company", "id": "co_1", "sink": "hs",
                   "data": {"name": "Acme"}, "record": {"domain": "acme.example"}}
        assert transport.send([company], refs={}).ok  # the next record goes on
        srv.garbled.clear()
        assert transport.send([contact], refs={}).ok


def test_forget_erases_the_contact_in_hubspot(tmp_path, crm_corpus, token_env):
    messages, _ = crm_corpus
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", messages[:80])
    with HubSpotServer(TOKEN) as srv:
        settings = crm_settings(tmp_path, {"sink": [_sink(srv.url)]})
        Pipeline(store, settings).run()
        assert Worker(store, settings).run(deadline=60).dead == 0
        records = stored_records(store)
        victim = max(records["contacts"].values(), key=lambda c: c["sent_count"] + c["received_count"])
        hs_id = next(oid for oid, p in srv.objects["contacts"].items() if p["email"] == victim["address"])
        their_emails = {eid for eid, links in srv.email_links.items() if hs_id in links.get("contacts", ())}
        assert their_emails
        Pipeline(store, settings).forget(victim["address"])
        result = Worker(store, settings).run(deadline=60)
        assert result.dead == 0 and result.pending == 0
        assert srv.purged == [hs_id]  # GDPR delete of that contact
        assert their_emails <= set(srv.archived) and not their_emails & set(srv.objects["emails"])
        assert all(p["email"] != victim["address"] for p in srv.objects["contacts"].values())
        after = stored_records(store)
        gone = {c["domain"] for c in records["companies"].values()} - {c["domain"] for c in after["companies"].values()}
        assert gone <= {victim["company_domain"]}
        _check_hubspot_holds(srv, after, frozenset(gone))
    store.dispose()


def test_a_refused_token_stops_the_sink_and_loses_nothing(tmp_path, crm_corpus, monkeypatch, token_env):
    messages, _ = crm_corpus
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", messages[:20])
    with HubSpotServer(TOKEN) as srv:
        monkeypatch.setenv("HUBSPOT_TOKEN", "a-revoked-token")
        settings = crm_settings(tmp_path, {"sink": [_sink(srv.url)]})
        Pipeline(store, settings).run()
        result = Worker(store, settings).run(deadline=30)
        assert result.delivered == 0 and result.dead == 0 and result.pending > 0
        assert srv.unauthorized == 1  # one refusal stops the sink: no request per record
        assert any("HubSpot refused the token (HTTP 401)" in e for e in result.errors)
        assert not any("a-revoked-token" in e for e in result.errors)
        monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
        result = Worker(store, settings).run(deadline=60)
        assert result.dead == 0 and result.pending == 0
        _check_hubspot_holds(srv, stored_records(store))
    store.dispose()


def test_an_unknown_property_is_a_dead_letter_with_hubspots_message(tmp_path, crm_corpus, token_env):
    messages, _ = crm_corpus
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", messages[:20])
    with HubSpotServer(TOKEN) as srv:
        sink = _sink(srv.url, records=["contact"], fields={"contact": {"favourite_colour": "display_name"}})
        settings = crm_settings(tmp_path, {"sink": [sink]})
        Pipeline(store, settings).run()
        result = Worker(store, settings).run(deadline=30)
        dead = outbox_summary(store)["dead"]
        named = [c for c in stored_records(store)["contacts"].values() if c.get("display_name")]
        assert named and result.dead == len(named)  # contacts without a name send no such property
        assert "HTTP 400 (not retried)" in dead[0]["last_error"] and "favourite_colour" in dead[0]["last_error"]
    store.dispose()


def test_preview_shows_the_hubspot_properties(tmp_path, imap_user, crm_corpus):
    from mailsync.testing.corpus import load_into

    messages, _ = crm_corpus
    load_into(imap_user.server, imap_user.name, messages[:30])
    cfg = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path}/store.db",
                       [account_entry(imap_user, "acc", identities=["me@mailsync.test"])])
    with open(cfg, "a") as fh:
        fh.write('\n[crm]\ndelivery_timeout = 1\n[[crm.sink]]\nname = "hs"\ntype = "hubspot"\ntoken = "env:HUBSPOT_TOKEN"\n'
                 'url = "http://127.0.0.1:9"\n[crm.sink.fields.contact]\nlastname = false\n'
                 'jobtitle = { from = "display_name", transform = "upper" }\n')
    from helpers import password_var

    env = {password_var("acc"): imap_user.password, "HUBSPOT_TOKEN": TOKEN}
    synced = run_cli("sync", "--quiet", config=cfg, env=env, timeout=300)
    assert synced.returncode in (0, 1), synced.stderr  # delivery to port 9 fails; the records are derived
    out = run_cli("crm", "preview", "--sink", "hs", "--limit", "5", config=cfg, env=env)
    assert out.returncode == 0, out.stderr
    payloads = json.loads(out.stdout)
    contacts = [p for p in payloads if p["type"] == "contact"]
    assert contacts
    for p in contacts:
        assert set(p["data"]) == {"firstname", "jobtitle"}  # only mapped properties, lastname dropped
        name = p["record"]["display_name"]
        assert p["data"]["jobtitle"] == (None if name is None else name.upper())
    assert TOKEN not in out.stdout + out.stderr + synced.stderr
