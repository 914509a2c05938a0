"""The CRM after a real sync from Dovecot: the store's records equal the generator's ground truth,
again after `crm rebuild`, and again after the same messages arrive through a second folder and a
second account (no duplicate activity)."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from crm_support import OWN, check_own_threads, diff, project_stored, project_truth, stored_records
from helpers import account_entry, password_var, run_cli, write_config
from mailsync.crm.models import CrmOutbox
from mailsync.store.db import open_store
from mailsync.store.uow import UnitOfWork
from mailsync.testing.corpus import CorpusMessage, load_into
from mailsync.testing.crm_corpus import generate_crm_corpus


def _config(tmp_path, users: list, sink_path) -> tuple:
    accounts = [account_entry(u, name, identities=[OWN]) for name, u in users]
    cfg = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path}/store.db", accounts)
    with open(cfg, "a") as fh:
        fh.write(f'\n[crm]\n[[crm.sink]]\nname = "file"\ntype = "jsonl"\npath = {json.dumps(str(sink_path))}\n')
    env = {password_var(name): u.password for name, u in users}
    return cfg, env


def _check(store, truth) -> dict:
    records = stored_records(store)
    got = project_stored(records)
    expected = project_truth(truth, got["activities"])
    assert got == expected, diff(got, expected)
    check_own_threads(truth, got)
    assert len(records["activities"]) == len(truth["activities"])
    return records


def _lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_ground_truth_through_sync_rebuild_second_folder_and_second_account(tmp_path, dovecot, imap_user):
    messages, truth = generate_crm_corpus(1)
    load_into(imap_user.server, imap_user.name, messages)
    sink = tmp_path / "records.jsonl"
    cfg, env = _config(tmp_path, [("work", imap_user)], sink)
    proc = run_cli("sync", config=cfg, env=env, check=True)
    assert "crm: full run" in proc.stderr and "crm: delivered" in proc.stderr
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    first = _check(store, truth)
    delivered = _lines(sink)
    assert {(e["type"], e["id"]) for e in delivered} == (
        {("contact", r["id"]) for r in first["contacts"].values()} | {("company", r["id"]) for r in first["companies"].values()}
        | {("activity", r["id"]) for r in first["activities"].values()})

    run_cli("crm", "rebuild", config=cfg, env=env, check=True)
    assert stored_records(store) == first
    with UnitOfWork(store) as uow:
        assert uow.session.scalar(select(func.count()).select_from(CrmOutbox)) == 0  # nothing changed: nothing sent

    # the same messages again in a second folder of the same account
    load_into(imap_user.server, imap_user.name,
              [CorpusMessage("Copies", m.raw, m.flags, m.internaldate, m.kind) for m in messages])
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    assert stored_records(store) == first

    # ... and in a second account
    second = imap_user.server.new_user(imap_user.name + "-b", "pw-b")
    load_into(second.server, second.name, messages)
    cfg, env = _config(tmp_path, [("work", imap_user), ("home", second)], sink)
    run_cli("sync", "--quiet", config=cfg, env=env, check=True)
    assert stored_records(store) == first
    _check(store, truth)
    assert _lines(sink) == delivered  # no record changed, so nothing was sent again
    with UnitOfWork(store) as uow:
        from mailsync.crm.models import CrmSource

        assert uow.session.scalar(select(func.count()).select_from(CrmSource)) == 3 * len(messages)
    store.dispose()


def test_messages_held_by_their_headers_give_their_header_records_then_all_once_their_bodies_come(tmp_path, imap_user):
    """max_size (issue 23): messages larger than it are held by their header section alone; the
    CRM reads what headers say (everything but what only a body says: a bounce's report), and
    once max_size is lifted and their bodies come, the records are those of the whole messages."""
    messages, truth = generate_crm_corpus(1)
    load_into(imap_user.server, imap_user.name, messages)
    sizes = sorted(len(m.raw) for m in messages)
    limit = sizes[len(sizes) // 2]  # half of them held by their headers
    sink = tmp_path / "records.jsonl"
    cfg, env = _config(tmp_path, [("work", imap_user)], sink)
    plain = cfg.read_text()
    cfg.write_text(plain.replace("[crm]", f"max_size = {limit}\n\n[crm]", 1))
    proc = run_cli("sync", config=cfg, env=env, check=True)
    assert "held by their headers" in proc.stderr and "crm: delivered" in proc.stderr
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    try:
        from mailsync.store import tables

        with UnitOfWork(store) as uow:
            held = uow.connection.scalar(select(func.count()).select_from(tables.bodies)
                                         .where(tables.bodies.c.headers_only))
        assert held >= len(messages) // 3
        got = project_stored(stored_records(store))
        expected = project_truth(truth, got["activities"])
        assert set(got["contacts"]) == set(expected["contacts"])
        said_by_headers = {k: v for k, v in expected["activities"].items() if k[1] != "bounce"}
        assert {k: v for k, v in got["activities"].items() if k[1] != "bounce"} == said_by_headers
        assert len(said_by_headers) < len(expected["activities"])  # the corpus has bounces among the large ones
        # max_size lifted: the bodies come, and the records are the whole messages'
        cfg.write_text(plain)
        run_cli("sync", config=cfg, env=env, check=True)
        _check(store, truth)
    finally:
        store.dispose()
