"""The Salesforce sink, driven by simple-salesforce's own request code against a local HTTPS server that
answers as Salesforce's REST API does (tests/salesforce_server.py): every contact one Contact, every
company one Account, every activity one email Task linked to both -- with and without an External ID
field, through 503s and changes whose answer was lost; `crm forget` deletes the Contact and its Tasks;
an expired session is renewed from a cmd: token source."""

from __future__ import annotations

import pytest

from crm_support import crm_settings, stored_records
from mailsync.crm.outbox import Worker, outbox_summary
from mailsync.crm.pipeline import Pipeline
from mailsync.store.db import open_store
from mailsync.testing.crm_corpus import generate_crm_corpus, load_into_store
from salesforce_server import SalesforceServer

TOKEN = "00D5g000004abcd!AQ4AQtesttoken"


@pytest.fixture(scope="module")
def crm_corpus():
    return generate_crm_corpus(1)


@pytest.fixture
def token_env(monkeypatch):
    monkeypatch.setenv("SF_TOKEN", TOKEN)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def _sink(srv: SalesforceServer, **kw) -> dict:
    return {"name": "sf", "type": "salesforce", "url": srv.url, "token": "env:SF_TOKEN", "ca_file": str(srv.cert_file),
            "timeout": 5, "backoff": 0.02, "max_backoff": 0.2, "max_attempts": 60, **kw}


def _check_salesforce_holds(srv: SalesforceServer, records: dict, kept_accounts: frozenset = frozenset()) -> None:
    contacts = srv.objects["Contact"]
    by_email: dict[str, str] = {}
    for oid, c in contacts.items():
        assert c["Email"] not in by_email, f"Contact {c['Email']} twice"
        by_email[c["Email"]] = oid
    assert set(by_email) == {c["address"] for c in records["contacts"].values()}
    accounts = srv.objects["Account"]
    by_site: dict[str, str] = {}
    for oid, a in accounts.items():
        assert a["Website"] not in by_site, f"Account {a['Website']} twice"
        by_site[a["Website"]] = oid
    assert set(by_site) == {c["domain"] for c in records["companies"].values()} | kept_accounts
    for c in records["contacts"].values():
        sf = contacts[by_email[c["address"]]]
        assert sf["LastName"] == (c.get("last_name") or c["address"].split("@")[0])
        assert sf.get("AccountId") == (by_site[c["company_domain"]] if c.get("company_domain") else None)
    tasks = srv.objects["Task"]
    assert len(tasks) == len(records["activities"])  # one Task per activity, none twice
    marks = {t["Description"].rsplit("\n", 1)[-1]: t for t in tasks.values()}
    assert len(marks) == len(tasks)
    for a in records["activities"].values():
        t = marks[f"[mailsync {a['id']}]"]
        assert t["TaskSubtype"] == "Email" and t["Status"] == "Completed" and t["ActivityDate"] == a["timestamp"][:10]
        assert t["WhoId"] == by_email[a["contact_address"]]
        assert t.get("WhatId") == contacts[t["WhoId"]].get("AccountId")


@pytest.mark.parametrize("external_id", [None, "Mailsync_Id__c"])
def test_records_land_once_through_faults_and_reruns(tmp_path, crm_corpus, token_env, external_id):
    messages, _ = crm_corpus
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", messages)
    with SalesforceServer(tmp_path / "tls", TOKEN, seed=5, failure_rate=0.25, max_failures=40,
                          external_id_field=external_id) as srv:
        extra = {"external_id_field": external_id} if external_id else {}
        settings = crm_settings(tmp_path, {"sink": [_sink(srv, **extra)]})
        Pipeline(store, settings).run()
        result = Worker(store, settings).run(deadline=180)
        assert result.dead == 0 and result.pending == 0, (result.summary(), outbox_summary(store)["dead"][:3])
        assert srv.failures["done-then-500"] >= 10 and srv.failures["503"] >= 10
        records = stored_records(store)
        _check_salesforce_holds(srv, records)
        if external_id:
            assert {o[external_id] for o in srv.objects["Task"].values()} == set(records["activities"])
        before = {k: set(v) for k, v in srv.objects.items()}
        # every record sent again through a new sink (no ids known): found, not made twice
        settings2 = crm_settings(tmp_path, {"sink": [_sink(srv, name="sf2", **extra)]})
        Pipeline(store, settings2).run()
        again = Worker(store, settings2).run(deadline=180)
        assert again.dead == 0 and again.delivered == sum(len(v) for v in records.values())
        assert {k: set(v) for k, v in srv.objects.items()} == before
        _check_salesforce_holds(srv, records)
    store.dispose()


def test_forget_deletes_the_contact_and_its_tasks(tmp_path, crm_corpus, token_env):
    messages, _ = crm_corpus
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", messages[:80])
    with SalesforceServer(tmp_path / "tls", TOKEN) as srv:
        settings = crm_settings(tmp_path, {"sink": [_sink(srv)]})
        Pipeline(store, settings).run()
        assert Worker(store, settings).run(deadline=60).dead == 0
        records = stored_records(store)
        victim = max(records["contacts"].values(), key=lambda c: c["sent_count"] + c["received_count"])
        sf_id = next(oid for oid, c in srv.objects["Contact"].items() if c["Email"] == victim["address"])
        tasks = {oid for oid, t in srv.objects["Task"].items() if t["WhoId"] == sf_id}
        assert tasks
        Pipeline(store, settings).forget(victim["address"])
        result = Worker(store, settings).run(deadline=60)
        assert result.dead == 0 and result.pending == 0
        assert srv.deleted["Contact"] == [sf_id] and set(srv.deleted["Task"]) == tasks
        after = stored_records(store)
        gone = {c["domain"] for c in records["companies"].values()} - {c["domain"] for c in after["companies"].values()}
        _check_salesforce_holds(srv, after, frozenset(gone))
        assert not srv.deleted["Account"]  # Accounts are left to the people who own them
    store.dispose()


def test_an_expired_session_is_renewed_from_a_cmd_source(tmp_path, crm_corpus, token_env):
    messages, _ = crm_corpus
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", messages[:60])
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    with SalesforceServer(tmp_path / "tls", TOKEN) as srv:
        settings = crm_settings(tmp_path, {"sink": [_sink(srv, token=f"cmd:cat {token_file}")]})
        Pipeline(store, settings).run()
        worker = Worker(store, settings)
        seen = {"n": 0}
        real_sleep = worker.sleep

        class Rotating:  # after a few records the org expires the session and a new token is issued
            def __init__(self, inner):
                self.inner = inner
                self.ref_ids = inner.ref_ids

            def send(self, envelopes, **kw):
                seen["n"] += 1
                if seen["n"] == 10:
                    srv.tokens = {"the-next-token"}
                    token_file.write_text("the-next-token")
                return self.inner.send(envelopes, **kw)

            def close(self):
                self.inner.close()

        from mailsync.crm.sinks import make_transport

        worker._transports["sf"] = Rotating(make_transport(settings.sink("sf"), clock=worker.clock, sleep=real_sleep))
        result = worker.run(deadline=60)
        assert result.dead == 0 and result.pending == 0 and not result.errors, result.summary()
        assert srv.unauthorized == 1  # one refusal, then the fresh token
        _check_salesforce_holds(srv, stored_records(store))
        # a token that stays refused stops the sink: nothing dead, nothing lost, the token not shown
        srv.tokens = {"yet-another"}
        settings3 = crm_settings(tmp_path, {"sink": [_sink(srv, name="sf3", token=f"cmd:cat {token_file}")]})
        Pipeline(store, settings3).run()
        result = Worker(store, settings3).run(deadline=30)
        assert result.dead == 0 and result.pending > 0 and result.delivered == 0
        assert any("Salesforce refused the token" in e for e in result.errors)
        assert not any("the-next-token" in e for e in result.errors)
    store.dispose()


def test_a_bad_field_is_a_dead_letter_with_salesforces_message(tmp_path, crm_corpus, token_env):
    messages, _ = crm_corpus
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", messages[:20])
    with SalesforceServer(tmp_path / "tls", TOKEN) as srv:
        sink = _sink(srv, records=["company"], fields={"company": {"Employees__c": "contact_count"}})
        settings = crm_settings(tmp_path, {"sink": [sink]})
        Pipeline(store, settings).run()
        result = Worker(store, settings).run(deadline=30)
        n = len(stored_records(store)["companies"])
        assert n and result.dead == n
        err = outbox_summary(store)["dead"][0]["last_error"]
        assert "HTTP 400 (not retried)" in err and "INVALID_FIELD" in err and "Employees__c" in err
    store.dispose()
