"""mailsync.service.run_sync on a real Dovecot and store: each account's sync, then the CRM step; the
options the watch daemon runs it with (no CRM after a failed sync, none while stopping)."""

import threading

from crm_support import stored_records
from mailsync.config.loader import config_from_mapping
from mailsync.service import run_sync
from mailsync.store.db import open_store

SENT = (b"From: Me <me@example.org>\r\nTo: Ada Client <ada@client-company.example>\r\n"
        b"Message-ID: <out1@example.org>\r\nSubject: offer\r\nDate: Mon, 2 Feb 2026 10:00:00 +0000\r\n\r\nhi\r\n")


def _config(tmp_path, user, *, password: str, crm: bool = True):
    doc = {"store": {"url": f"sqlite:///{tmp_path}/s.db"},
           "account": [{"name": "acc", "host": user.host, "port": user.imaps_port, "username": user.name,
                        "password": password, "ca_file": str(user.ca_file), "identities": ["me@example.org"]}]}
    if crm:
        doc["crm"] = {"enabled": True}
    return config_from_mapping(doc, path=tmp_path / "c.toml")


def _contacts(store) -> set[str]:
    return set(stored_records(store)["contacts"])


def test_sync_then_crm(tmp_path, imap_user):
    imap_user.server.load(imap_user.name, [("Sent", SENT, "\\Seen")])
    config = _config(tmp_path, imap_user, password=imap_user.password)
    store = open_store(config.store.url)
    lines: list[str] = []
    seen = []
    try:
        outcome = run_sync(config, store, after_account=lambda r: seen.append(r.account) or ["h"], report=lines.append)
        assert outcome.failed == [] and [r.account for r in outcome.results] == ["acc"] and seen == ["acc"]
        assert outcome.hook_failures == ["h"]
        assert outcome.results[0].new_messages == 1
        assert _contacts(store) == {"ada@client-company.example"}  # the CRM step ran after the sync
        assert len(lines) == 1 and lines[0].startswith("crm: full run")
        assert run_sync(config, store, quiet=True, report=lines.append).failed == [] and len(lines) == 1
    finally:
        store.dispose()


def test_no_crm_table_no_crm_step(tmp_path, imap_user):
    imap_user.server.load(imap_user.name, [("Sent", SENT, "\\Seen")])
    config = _config(tmp_path, imap_user, password=imap_user.password, crm=False)
    store = open_store(config.store.url)
    lines: list[str] = []
    try:
        assert run_sync(config, store, report=lines.append).failed == []
        assert lines == [] and _contacts(store) == set()
    finally:
        store.dispose()


def test_a_failed_sync_and_the_crm_step(tmp_path, imap_user):
    config = _config(tmp_path, imap_user, password="wrong-password")
    store = open_store(config.store.url)
    lines: list[str] = []
    try:
        # as the daemon runs it: no CRM step after a failed sync, nor once asked to stop
        outcome = run_sync(config, store, crm_after_failure=False, report=lines.append)
        assert outcome.failed == ["acc"] and not outcome.results[0].ok and lines == []
        stopped = threading.Event()
        stopped.set()
        assert run_sync(config, store, should_stop=stopped.is_set, report=lines.append).failed == ["acc"]
        assert lines == []
        # as `mailsync sync` runs it: the CRM step runs over what the store holds all the same
        assert run_sync(config, store, report=lines.append).failed == ["acc"]
        assert len(lines) == 1 and lines[0].startswith("crm: full run")
    finally:
        store.dispose()


def test_an_unexpected_crm_error_goes_to_the_handler(tmp_path, imap_user, monkeypatch):
    config = _config(tmp_path, imap_user, password=imap_user.password)
    store = open_store(config.store.url)
    caught: list[Exception] = []

    def boom(*args, **kw):
        raise RuntimeError("extraction crashed")

    monkeypatch.setattr("mailsync.service.crm_step", boom)
    try:
        outcome = run_sync(config, store, on_crm_error=caught.append)
        assert outcome.results[0].ok and outcome.failed == [] and [str(e) for e in caught] == ["extraction crashed"]
    finally:
        store.dispose()
