"""Real bounces and identity through the CRM pipeline on a store (SQLite and PostgreSQL), and
`mailsync crm identity` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crm_support import OWN, crm_settings, stored_records
from helpers import run_cli, write_config
from mailsync.crm.pipeline import Pipeline
from mailsync.store.db import open_store
from mailsync.testing.bounce_bench import report, run_store
from mailsync.testing.corpus import CorpusMessage
from mailsync.testing.crm_corpus import load_into_store

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "crm"
FLUFL = FIXTURES / "bounces" / "flufl"
T0 = 1420070400


def sent(to: str, mid: str, frm: str = OWN) -> CorpusMessage:
    raw = (f"From: <{frm}>\r\nTo: <{to}>\r\nSubject: Our offer\r\nMessage-ID: {mid}\r\n"
           "Date: Thu, 01 Jan 2015 00:00:00 +0000\r\n\r\nHello.\r\n").encode()
    return CorpusMessage("Sent", raw, ("\\Seen",), float(T0), "plain")


def inbox(raw: bytes) -> CorpusMessage:
    return CorpusMessage("INBOX", raw, ("\\Seen",), float(T0 + 86400), "plain")


def test_bounce_figures_through_the_pipeline(store_url):
    text, total = report(run_store(FLUFL, store_url))
    assert total.recall >= 0.90 and total.precision >= 0.99, text


def test_a_long_text_bounce_is_read_whole(tmp_path, store_url):
    # qmail's failure notice with a 20 kB returned message: the headers alone (the first 8 kB read)
    # say it is a bounce, so the pipeline reads the whole body to find who failed.
    raw = (FLUFL / "qmail_01.txt").read_bytes().rstrip(b"\n") + b"\n" + b"> quoted line of the original\n" * 700
    assert len(raw) > 16 * 1024
    store = open_store(store_url)
    try:
        load_into_store(store, "acc", [sent("userx@example.de", "<o1@mailsync.test>"), inbox(raw)])
        Pipeline(store, crm_settings(tmp_path)).run()
        c = stored_records(store)["contacts"]["userx@example.de"]
    finally:
        store.dispose()
    assert (c["bounce_count"], c["deliverability"]) == (1, "undeliverable")


@pytest.fixture
def identity_store(tmp_path):
    url = f"sqlite:///{tmp_path}/store.db"
    store = open_store(url)
    messages = [sent("joem@example.com", "<o1@mailsync.test>"),
                CorpusMessage("Sent", (FLUFL / "dsn_10.txt").read_bytes(), ("\\Seen",), float(T0), "plain"),
                inbox((FLUFL / "dsn_11.txt").read_bytes())]
    messages += [sent(f"c{i}@client.example", f"<a{i}@mailsync.test>", frm="alex.morgan@mailsync.example")
                 for i in range(3)]
    messages += [sent("d@client.example", "<s1@mailsync.test>", frm="someone@else.example")]
    load_into_store(store, "acc", messages)
    store.dispose()
    cfg = write_config(tmp_path / "config.toml", url,
                       [{"name": "acc", "host": "localhost", "username": "me", "password": "x", "tls": "none",
                         "identities": [OWN]}])
    with open(cfg, "a") as fh:
        fh.write("\n[crm]\nenabled = true\n")
    run_cli("crm", "rebuild", config=cfg, check=True)
    return cfg, url


def test_crm_identity_shows_who_we_are_and_why(identity_store):
    cfg, url = identity_store
    doc = json.loads(run_cli("crm", "identity", "--json", config=cfg, check=True).stdout)
    own = {x["address"]: x["why"] for x in doc["own"]}
    not_own = {x["address"]: x["why"] for x in doc["not_own"]}
    assert own == {OWN: "configured", "alex.morgan@mailsync.example": "3 messages in Sent"}
    assert "not enough evidence" in not_own["someone@else.example"]
    assert "mailer-daemon@example.com" not in own and "example.com" not in doc["work_domains"]
    text = run_cli("crm", "identity", "--account", "acc", config=cfg, check=True).stdout
    assert "US" in text and "configured" in text and "someone@else.example" in text
    bad = run_cli("crm", "identity", "--account", "nope", config=cfg)
    assert bad.returncode == 2 and "no account named 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    store = open_store(url)
    try:
        c = stored_records(store)["contacts"]["joem@example.com"]
    finally:
        store.dispose()
    assert c["deliverability"] == "undeliverable"  # the bounce in Sent did not make the daemon us
