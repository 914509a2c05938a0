"""The CRM pipeline on a real store (SQLite and PostgreSQL): incremental runs in any order, with flag
changes and expunges, equal a rebuild and the ground truth; the blocklist and erasure; the outbox is
written in the same transaction as the records."""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import delete, func, inspect, select, text

from crm_support import crm_settings, diff, project_stored, project_truth, stored_records
from mailsync.crm.models import CrmForgotten, CrmMark, CrmOutbox
from mailsync.crm.pipeline import Pipeline
from mailsync.store.db import open_store
from mailsync.store.models import Placement
from mailsync.store.uow import UnitOfWork
from mailsync.testing.crm_corpus import generate_crm_corpus, load_into_store


@pytest.fixture(scope="module")
def crm_corpus():
    return generate_crm_corpus(1)


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.dispose()


def test_incremental_in_random_order_equals_rebuild_and_truth(tmp_path, store, crm_corpus):
    messages, truth = crm_corpus
    settings = crm_settings(tmp_path, {"sink": [{"name": "file", "type": "jsonl", "path": str(tmp_path / "o.jsonl")}]})
    pipe = Pipeline(store, settings)
    rng = random.Random(7)
    order = list(messages)
    rng.shuffle(order)
    i = 0
    incremental_runs = 0
    while i < len(order):
        n = rng.randint(1, 60)
        load_into_store(store, "acc", order[i:i + n])
        i += n
        incremental_runs += not pipe.run().full
        if rng.random() < 0.4:  # another client toggles \Answered and expunges a copy
            with UnitOfWork(store) as uow:
                ids = uow.session.scalars(select(Placement.id)).all()
                for pid in rng.sample(ids, min(4, len(ids))):
                    p = uow.session.get(Placement, pid)
                    p.flags = " ".join(sorted(set(p.flags.split()) ^ {"\\Answered"}))
                uow.session.execute(delete(Placement).where(Placement.id == rng.choice(ids)))
                uow.commit()
            incremental_runs += not pipe.run().full
    assert incremental_runs >= 5
    # put the server's state back to the corpus: the toggled flags and expunged copies return
    with UnitOfWork(store) as uow:
        uow.session.execute(delete(Placement))
        uow.commit()
    load_into_store(store, "acc", messages)
    pipe.run()
    before = stored_records(store)
    got = project_stored(before)
    expected = project_truth(truth, got["activities"])
    assert got == expected, diff(got, expected)

    queued = _count(store, CrmOutbox)
    result = pipe.run(rebuild=True)
    assert not result.changes and result.queued == 0
    assert stored_records(store) == before
    assert _count(store, CrmOutbox) == queued
    # a run with nothing new reads nothing and changes nothing
    again = pipe.run()
    assert (again.full, again.parsed, again.messages, sum(again.changes.values())) == (False, 0, 0, 0)


def _count(store, model) -> int:
    with UnitOfWork(store) as uow:
        return uow.session.scalar(select(func.count()).select_from(model))


def test_blocklist_removes_and_restores(tmp_path, store, crm_corpus):
    messages, _ = crm_corpus
    load_into_store(store, "acc", messages)
    sink = [{"name": "file", "type": "jsonl", "path": str(tmp_path / "o.jsonl")}]
    Pipeline(store, crm_settings(tmp_path, {"sink": sink})).run()
    full = stored_records(store)
    blocked = crm_settings(tmp_path, {"sink": sink, "blocklist": ["nina.kraus@umbrella.example", "@hztech.example"]})
    result = Pipeline(store, blocked).run()
    assert not result.full  # only the addresses the entries match are derived again
    now = stored_records(store)
    gone = {"nina.kraus@umbrella.example", "li.na@hztech.example", "l.wang@hztech.example"}
    assert set(full["contacts"]) - set(now["contacts"]) == gone
    assert not any(a["contact_address"] in gone for a in now["activities"].values())
    assert "hztech.example" not in now["companies"] and "umbrella.example" not in now["companies"]
    assert result.changes["contact:delete"] == 3 and result.changes["company:delete"] == 2
    with UnitOfWork(store) as uow:
        ops = set(uow.session.execute(select(CrmOutbox.record_type, CrmOutbox.op)
                                      .where(CrmOutbox.op == "delete")).all())
    assert ops == {("contact", "delete"), ("company", "delete"), ("activity", "delete")}
    Pipeline(store, crm_settings(tmp_path, {"sink": sink})).run()  # unblocked: derived again, identically
    assert stored_records(store) == full


def test_forget_leaves_only_the_hash(tmp_path, store, crm_corpus):
    messages, _ = crm_corpus
    victim = "zoe.angstrom@nordlys.example"
    load_into_store(store, "acc", messages)
    sink = [{"name": "file", "type": "jsonl", "path": str(tmp_path / "o.jsonl")}]
    settings = crm_settings(tmp_path, {"sink": sink}, share="everything")
    pipe = Pipeline(store, settings)
    pipe.run()
    before = stored_records(store)
    assert victim in before["contacts"]
    result = pipe.forget("Zoe.Angstrom@Nordlys.example")
    assert result.contact and result.activities > 5
    after = stored_records(store)
    assert victim not in after["contacts"]
    assert not any(a["contact_address"] == victim for a in after["activities"].values())
    assert after["companies"]["nordlys.example"]["contact_count"] == 1
    # a new message from the address creates nothing; neither does a rebuild
    zoe = next(m for m in messages if m.kind == "html_only")
    fresh = zoe.raw.replace(b"Roadmap preview", b"Roadmap update").replace(b"Message-ID: <", b"Message-ID: <new.")
    from mailsync.testing.corpus import CorpusMessage

    load_into_store(store, "acc", [CorpusMessage("INBOX", fresh, ("\\Seen",), zoe.internaldate + 86400, "plain")])
    pipe.run()
    pipe.run(rebuild=True)
    assert victim not in stored_records(store)["contacts"]
    # no trace of the address in any table (but the mail itself) -- only the hash
    forms = {victim.encode(), b"zoe.angstrom", "Zoë Ångström".encode()}
    _assert_no_trace(store, forms, skip={"bodies"})
    with UnitOfWork(store) as uow:
        assert uow.session.scalars(select(CrmForgotten.hash)).all() == [result.hash]
        kinds = uow.session.execute(text("SELECT kind, detail FROM audit_events")).all()
        assert kinds and all(k == "crm_forget" and result.hash in d for k, d in kinds)
        deletions = uow.session.execute(select(CrmOutbox.record_type, CrmOutbox.payload)
                                        .where(CrmOutbox.op == "delete")).all()
    assert {t for t, _ in deletions} == {"contact", "activity"}
    assert all(set(json.loads(p)) == {"id"} for _, p in deletions)


def _assert_no_trace(store, forms: set[bytes], *, skip: set[str]) -> None:
    with store.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            if table in skip:
                continue
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
                    for form in forms:
                        assert form.lower() not in data.lower(), (table, form, data[:200])


def test_records_and_outbox_commit_together(tmp_path, store, crm_corpus, monkeypatch):
    messages, _ = crm_corpus
    load_into_store(store, "acc", messages)
    settings = crm_settings(tmp_path, {"sink": [{"name": "file", "type": "jsonl", "path": str(tmp_path / "o.jsonl")}]})
    from mailsync.crm import pipeline as P

    def boom(self, changes):
        raise RuntimeError("crash while writing the outbox")

    monkeypatch.setattr(P._Run, "_enqueue", boom)
    with pytest.raises(RuntimeError):
        Pipeline(store, settings).run()
    assert stored_records(store) == {"contacts": {}, "companies": {}, "activities": {}}
    assert _count(store, CrmMark) == 0  # the mark did not move past what was lost
    monkeypatch.undo()
    Pipeline(store, settings).run()
    records = stored_records(store)
    with UnitOfWork(store) as uow:
        queued = set(uow.session.execute(select(CrmOutbox.record_type, CrmOutbox.record_id)).all())
    expected = ({("contact", r["id"]) for r in records["contacts"].values()}
                | {("company", r["id"]) for r in records["companies"].values()}
                | {("activity", r["id"]) for r in records["activities"].values()})
    assert queued == expected


def test_new_sink_gets_a_backfill(tmp_path, store, crm_corpus):
    messages, _ = crm_corpus
    load_into_store(store, "acc", messages[:120])
    Pipeline(store, crm_settings(tmp_path)).run()
    assert _count(store, CrmOutbox) == 0
    settings = crm_settings(tmp_path, {"sink": [{"name": "late", "type": "jsonl", "path": str(tmp_path / "l.jsonl"),
                                                 "records": ["contact"]}]})
    Pipeline(store, settings).run()
    assert _count(store, CrmOutbox) == len(stored_records(store)["contacts"])
