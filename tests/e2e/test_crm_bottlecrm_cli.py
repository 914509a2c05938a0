"""`mailsync sync` into a real BottleCRM (tests/bottlecrm_server.py) and the `crm` commands around it, as
an admin would run them: the sync delivers contacts, accounts and email interactions; `crm preview`
shows what the sink sends with the sink's field mapping; `crm forget` and `crm outbox --retry` delete
the contact in the CRM, with its interactions; a second sync changes nothing there. And a sync killed
(SIGKILL) while it delivers: the next one leaves every record in the CRM once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from bottlecrm_server import check_crm_holds
from crm_support import OWN, stored_records
from helpers import REPO, account_entry, password_var, run_cli, write_config
from mailsync.store.db import open_store
from mailsync.testing.corpus import load_into
from mailsync.testing.crm_corpus import generate_crm_corpus

MAPPING = """
[crm.sink.fields.contact]
title = "display_name"
last_name = false
[crm.sink.fields.activity]
subject = { from = "kind", transform = "upper" }
"""


def _held(crm) -> dict:
    return {"contacts": {r["email"]: r for r in crm.rows("contacts")},
            "accounts": {r["website"]: r["id"] for r in crm.rows("accounts")},
            "interactions": sorted(r["id"] for r in crm.rows("interaction"))}


def _configure(tmp_path, imap_user, bottlecrm, messages, mapping: str = "") -> tuple:
    load_into(imap_user.server, imap_user.name, messages)
    cfg = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path}/store.db",
                       [account_entry(imap_user, "acc", identities=[OWN])])
    with open(cfg, "a") as fh:
        fh.write(f'\n[crm]\n[[crm.sink]]\nname = "bottle"\ntype = "bottlecrm"\nurl = "{bottlecrm.url}"\n'
                 f'token = "env:BOTTLECRM_TOKEN"\n' + mapping)
    return cfg, {password_var("acc"): imap_user.password, "BOTTLECRM_TOKEN": bottlecrm.token}


def test_sync_preview_and_forget_into_bottlecrm(tmp_path, imap_user, bottlecrm):
    messages, _ = generate_crm_corpus(1)
    cfg, env = _configure(tmp_path, imap_user, bottlecrm, messages[:120], MAPPING)
    proc = run_cli("sync", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "crm: delivered" in proc.stderr and bottlecrm.token not in proc.stderr + proc.stdout

    contacts = json.loads(run_cli("crm", "contacts", "--json", config=cfg, env=env, check=True).stdout)
    activities = json.loads(run_cli("crm", "activities", "--json", config=cfg, env=env, check=True).stdout)
    held = _held(bottlecrm)
    assert set(held["contacts"]) == {c["address"] for c in contacts} and len(contacts) >= 10
    assert len(held["interactions"]) == len(activities)
    for c in contacts:
        row = held["contacts"][c["address"]]
        assert row["title"] == (c["display_name"] or None) and row["last_name"] == "-"  # the mapping: no last name
        assert (row["account_id"] is not None) == bool(c["company_domain"])
    subjects = {r["subject"] for r in bottlecrm.rows("interaction")}
    assert subjects == {a["kind"].upper() for a in activities}

    payloads = json.loads(run_cli("crm", "preview", "--sink", "bottle", "--limit", "2", config=cfg, env=env,
                                  check=True).stdout)
    by_type = {p["type"]: p for p in payloads}
    assert set(by_type) == {"contact", "company", "activity"} and len(payloads) == 6
    assert set(by_type["contact"]["data"]) == {"first_name", "title"}  # only what the sink sends
    assert by_type["activity"]["data"]["subject"] == by_type["activity"]["record"]["kind"].upper()
    assert set(by_type["company"]["data"]) == {"name"}

    victim = max(contacts, key=lambda c: c["sent_count"] + c["received_count"])
    crm_id = held["contacts"][victim["address"]]["id"]
    assert bottlecrm.server.rows("SELECT id FROM interaction WHERE contact_id = ?", crm_id)
    forgot = run_cli("crm", "forget", victim["address"], config=cfg, env=env, check=True)
    assert "forgot a contact" in forgot.stderr
    retry = run_cli("crm", "outbox", "--retry", config=cfg, env=env, check=True)  # delivers the deletions
    assert "crm: delivered" in retry.stderr
    assert not bottlecrm.server.rows("SELECT id FROM contacts WHERE id = ?", crm_id)
    assert not bottlecrm.server.rows("SELECT id FROM interaction WHERE contact_id = ?", crm_id)
    status = json.loads(run_cli("crm", "outbox", "--json", config=cfg, env=env, check=True).stdout)
    assert status["sinks"].get("bottle", {}).get("pending", 0) == 0 and not status["dead"]

    before = _held(bottlecrm)
    again = run_cli("sync", config=cfg, env=env, check=True)
    assert "no record changes" in again.stderr
    assert _held(bottlecrm) == before and victim["address"] not in before["contacts"]


def test_a_sync_killed_while_it_delivers_leaves_every_record_once(tmp_path, imap_user, bottlecrm):
    messages, _ = generate_crm_corpus(1)
    cfg, env = _configure(tmp_path, imap_user, bottlecrm, messages[:100])
    proc = subprocess.Popen([sys.executable, "-m", "mailsync", "--config", str(cfg), "sync", "--quiet"],
                            env={**os.environ, **env, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(bottlecrm.rows("interaction")) < 25 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "delivery finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    records = stored_records(store)
    assert len(bottlecrm.rows("interaction")) < len(records["activities"])  # killed with work left
    again = run_cli("sync", "--quiet", config=cfg, env=env)
    assert again.returncode == 0, again.stderr
    status = json.loads(run_cli("crm", "outbox", "--json", config=cfg, env=env, check=True).stdout)
    assert status["sinks"].get("bottle", {}).get("pending", 0) == 0 and not status["dead"]
    check_crm_holds(bottlecrm, stored_records(store))  # each record once, none lost
    store.dispose()
