"""`mailsync crm ...` through the CLI, after a real sync: listings, exports, preview with a field
mapping, the outbox, erasure, and config errors (exit 2, naming key, value and fix)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from crm_support import OWN
from helpers import account_entry, password_var, run_cli, write_config
from mailsync.crm.records import CONTACT_FIELDS
from mailsync.testing.corpus import load_into
from mailsync.testing.crm_corpus import generate_crm_corpus

MAPPING = """
[crm.sink.fields.contact]
mail = { from = "email", transform = "upper" }
full_name = { join = ["first_name", "last_name"] }
since = { from = "first_seen", transform = "date:%d.%m.%Y" }
score = false
"""


@pytest.fixture(scope="module")
def crm_corpus():
    return generate_crm_corpus(1)


@pytest.fixture
def synced(tmp_path, imap_user, crm_corpus):
    messages, truth = crm_corpus
    load_into(imap_user.server, imap_user.name, messages)
    cfg = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path}/store.db",
                       [account_entry(imap_user, "acc", identities=[OWN])])
    sink = tmp_path / "records.jsonl"
    with open(cfg, "a") as fh:
        fh.write(f'\n[crm]\n[[crm.sink]]\nname = "file"\ntype = "jsonl"\npath = {json.dumps(str(sink))}\n' + MAPPING)
    env = {password_var("acc"): imap_user.password}
    proc = run_cli("sync", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "crm: full run" in proc.stderr and "crm: delivered" in proc.stderr
    return cfg, env, sink, truth


def test_listings_and_exports(synced):
    cfg, env, _, truth = synced
    contacts = json.loads(run_cli("crm", "contacts", "--json", config=cfg, env=env, check=True).stdout)
    assert sorted(c["address"] for c in contacts) == sorted(c["address"] for c in truth["contacts"])
    assert all("score_now" in c and c["score_now"] <= c["score"] for c in contacts if c["score"] > 0)
    table = run_cli("crm", "contacts", config=cfg, env=env, check=True).stdout
    assert "ADDRESS" in table.splitlines()[0] and "Jürgen Groß" in table and "undeliverable" in table
    companies = json.loads(run_cli("crm", "companies", "--json", config=cfg, env=env, check=True).stdout)
    assert sorted(c["domain"] for c in companies) == sorted(c["domain"] for c in truth["companies"])
    activities = json.loads(run_cli("crm", "activities", "--json", config=cfg, env=env, check=True).stdout)
    assert len(activities) == len(truth["activities"]) and all(a["subject"] is None for a in activities)

    lines = run_cli("crm", "export", "--format", "jsonl", config=cfg, env=env, check=True).stdout.splitlines()
    types = [json.loads(x)["type"] for x in lines]
    assert types.count("contact") == len(contacts) and types.count("activity") == len(activities)
    text = run_cli("crm", "export", "--format", "csv", config=cfg, env=env, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(CONTACT_FIELDS) and len(rows) == len(contacts)
    bad = run_cli("crm", "export", "--format", "csv", "--records", "all", config=cfg, env=env)
    assert bad.returncode == 2 and "--records contacts" in bad.stderr


def test_preview_applies_the_mapping(synced):
    cfg, env, sink, _ = synced
    payloads = json.loads(run_cli("crm", "preview", "--sink", "file", "--limit", "2", config=cfg, env=env,
                                  check=True).stdout)
    contacts = [p["data"] for p in payloads if p["type"] == "contact"]
    assert len(contacts) == 2 and len(payloads) == 6
    for c in contacts:
        assert c["mail"] == c["mail"].upper() and "email" not in c and "score" not in c
        assert c["full_name"] and len(c["since"].split(".")) == 3
    delivered = [json.loads(x) for x in sink.read_text().splitlines()]
    assert all("mail" in e["data"] and "score" not in e["data"] for e in delivered if e["type"] == "contact")
    missing = run_cli("crm", "preview", "--sink", "nope", config=cfg, env=env)
    assert missing.returncode == 2 and "file" in missing.stderr


def test_outbox_and_forget(synced):
    cfg, env, sink, _ = synced
    assert "outbox empty" in run_cli("crm", "outbox", config=cfg, env=env, check=True).stdout
    proc = run_cli("crm", "forget", "Priya.Raman@Brightwave.example", config=cfg, env=env, check=True)
    assert "forgot a contact" in proc.stderr
    contacts = json.loads(run_cli("crm", "contacts", "--json", config=cfg, env=env, check=True).stdout)
    assert "priya.raman@brightwave.example" not in {c["address"] for c in contacts}
    status = json.loads(run_cli("crm", "outbox", "--json", config=cfg, env=env, check=True).stdout)
    assert status["sinks"]["file"]["pending"] > 10
    run_cli("crm", "outbox", "--retry", config=cfg, env=env, check=True)  # delivers what is pending too
    deletes = [json.loads(x) for x in sink.read_text().splitlines() if '"op":"delete"' in x]
    assert {d["type"] for d in deletes} == {"contact", "activity"} and all(d["data"] is None for d in deletes)
    assert "priya.raman" not in "".join(json.dumps(d) for d in deletes)
    again = run_cli("sync", config=cfg, env=env, check=True)  # nothing comes back
    assert "priya.raman@brightwave.example" not in run_cli("crm", "contacts", config=cfg, env=env, check=True).stdout
    assert "no record changes" in again.stderr


def test_config_errors_and_no_crm(tmp_path, imap_user):
    cfg = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path}/store.db", [account_entry(imap_user, "acc")])
    proc = run_cli("crm", "contacts", config=cfg)
    assert proc.returncode == 2 and "[crm]" in proc.stderr
    with open(cfg, "a") as fh:
        fh.write('\n[crm]\n[[crm.sink]]\nname = "x"\ntype = "jsonl"\npath = "x.jsonl"\n[crm.sink.fields.contact]\n'
                 'mail = "emial"\n')
    proc = run_cli("sync", config=cfg, env={password_var("acc"): imap_user.password})
    assert proc.returncode == 2
    assert "fields.contact.mail" in proc.stderr and "emial" in proc.stderr and '"email"' in proc.stderr
