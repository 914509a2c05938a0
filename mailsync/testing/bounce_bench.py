"""Bounce recall and precision on a directory of real bounce messages with known answers.

Owns: pairing each bounce file with the mail we would have sent (one \\Sent message to each address
the file is expected to report, and one to every other address written anywhere in the file, so an
address read wrongly out of a bounce lands on a contact and counts against precision), and scoring
the bounce activities the CRM derives from them, per family (the file name's prefix: qmail, exim,
yahoo ...). ``expected.json`` in the directory says, per file, the addresses the bounce names and
whether each failure is "hard" or "soft" (fixtures/crm/bounces/flufl: flufl.bounce's own test data).

  recall     expected (file, address) pairs that got a bounce activity from that file;
  precision  bounce activities that are expected pairs, over all bounce activities;
  kind       expected pairs found with the expected hard/soft type.

Two ways to derive: ``pure`` (headers.parse_message -> extract.extract_all, as tests/crm_support.py
does) and ``store`` (the messages loaded into a store and run through the CRM pipeline).
Must not: touch the network; write anywhere but the temporary store the caller names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mailsync.testing.corpus import CorpusMessage

__all__ = ["Score", "bench_messages", "load_expected", "score", "OWN"]

OWN = "me@mailsync.test"
T0 = 1420070400  # 2015-01-01: the Sent copies are older than any bounce that matters
_ADDR = re.compile(rb"[A-Za-z0-9._%+=-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


@dataclass
class Score:
    expected: int = 0
    found: int = 0  # expected pairs found
    right_kind: int = 0  # ... with the expected hard/soft
    marked: int = 0  # bounce activities
    wrong: list = field(default_factory=list)  # (file, address) marked but not expected
    missed: list = field(default_factory=list)  # (file, address) expected but not marked

    @property
    def recall(self) -> float:
        return self.found / self.expected if self.expected else 1.0

    @property
    def precision(self) -> float:
        return (self.marked - len(self.wrong)) / self.marked if self.marked else 1.0

    def add(self, other: "Score") -> None:
        self.expected += other.expected
        self.found += other.found
        self.right_kind += other.right_kind
        self.marked += other.marked
        self.wrong += other.wrong
        self.missed += other.missed


def load_expected(directory: Path) -> dict[str, dict]:
    return json.loads((Path(directory) / "expected.json").read_text())


def _sent(to: str, n: int) -> CorpusMessage:
    raw = (f"From: Alex Morgan <{OWN}>\r\nTo: <{to}>\r\nSubject: Our offer\r\n"
           f"Message-ID: <bench-{n}@mailsync.test>\r\nDate: Thu, 01 Jan 2015 00:00:00 +0000\r\n"
           "\r\nHello.\r\n").encode()
    return CorpusMessage("Sent", raw, ("\\Seen",), float(T0 + n), "plain")


def bench_messages(directory: Path) -> tuple[list[CorpusMessage], dict[str, str]]:
    """(messages, file of each bounce's raw bytes): every bounce in INBOX, and our Sent copies."""
    directory = Path(directory)
    expected = load_expected(directory)
    messages: list[CorpusMessage] = []
    to: set[str] = set()
    files: dict[str, str] = {}
    for name in sorted(expected):
        raw = (directory / name).read_bytes()
        files[name] = raw
        messages.append(CorpusMessage("INBOX", raw, ("\\Seen",), float(T0 + 86400), "plain"))
        to.update(expected[name]["expected"])
        to.update(a.decode("ascii", "replace").lower().strip(".") for a in _ADDR.findall(raw))
    messages.extend(_sent(a, i) for i, a in enumerate(sorted(to)))
    return messages, files


def score(expected: dict[str, dict], activities: Iterable[dict], key_of_file: dict[str, str],
          message_key_of: dict[str, str]) -> dict[str, Score]:
    """family -> Score. ``key_of_file``: file -> message key; ``message_key_of``: activity id -> key."""
    file_of_key = {k: f for f, k in key_of_file.items()}
    marked: dict[tuple[str, str], str | None] = {}
    for a in activities:
        if a["kind"] != "bounce":
            continue
        f = file_of_key.get(message_key_of.get(a["id"], ""))
        if f is not None:
            marked[(f, a["contact_address"])] = a.get("bounce_type")
    out: dict[str, Score] = {}
    for f, e in expected.items():
        s = out.setdefault(e["family"], Score())
        for addr, kind in e["expected"].items():
            s.expected += 1
            if (f, addr) in marked:
                s.found += 1
                s.right_kind += marked[(f, addr)] == kind
            else:
                s.missed.append((f, addr))
    for (f, addr), _ in marked.items():
        s = out[expected[f]["family"]]
        s.marked += 1
        if addr not in expected[f]["expected"]:
            s.wrong.append((f, addr))
    return out


def run_pure(directory: Path) -> dict[str, Score]:
    from mailsync.crm.extract import Copy, ExtractSettings, combine, extract_all, thread_ids
    from mailsync.crm.headers import parse_message
    from mailsync.crm.identity import folder_role

    messages, files = bench_messages(directory)
    facts, copies = {}, {}
    for m in messages:
        f = parse_message(m.raw)
        facts[f.key] = f
        copies.setdefault(f.key, []).append(Copy(folder_role(None, m.folder), False, False, int(m.internaldate)))
    key_of_file = {name: parse_message(raw).key for name, raw in files.items()}
    tids = thread_ids((f, f.date if f.date is not None else T0) for f in facts.values())
    inputs = [combine(facts[k], copies[k], tids[k]) for k in facts]
    records, _ = extract_all(inputs, ExtractSettings(), identities=(OWN,))
    return score(load_expected(directory), records.activities.values(), key_of_file, records.message_keys)


def run_store(directory: Path, store_url: str) -> dict[str, Score]:
    from pathlib import Path as P

    from sqlalchemy import select

    from mailsync.config.loader import config_from_mapping
    from mailsync.crm.headers import parse_message
    from mailsync.crm.models import CrmActivity
    from mailsync.crm.pipeline import Pipeline
    from mailsync.crm.settings import CrmSettings
    from mailsync.store.db import open_store
    from mailsync.store.uow import UnitOfWork
    from mailsync.testing.crm_corpus import load_into_store

    messages, files = bench_messages(directory)
    key_of_file = {name: parse_message(raw).key for name, raw in files.items()}
    doc = {"store": {"url": store_url},
           "account": [{"name": "acc", "host": "localhost", "username": "u", "password": "x",
                        "identities": [OWN]}],
           "crm": {"enabled": True}}
    settings = CrmSettings.from_config(config_from_mapping(doc, path=P("bench.toml"), mode=None))
    store = open_store(store_url)
    try:
        load_into_store(store, "acc", messages)
        Pipeline(store, settings).run()
        with UnitOfWork(store) as uow:
            rows = uow.session.execute(select(CrmActivity.id, CrmActivity.message_key, CrmActivity.data)).all()
    finally:
        store.dispose()
    activities = [json.loads(d) for _, _, d in rows]
    return score(load_expected(directory), activities, key_of_file, {i: k for i, k, _ in rows})


def report(scores: dict[str, Score]) -> tuple[str, Score]:
    total = Score()
    lines = [f"{'family':<12} {'expected':>8} {'found':>6} {'recall':>7} {'marked':>7} {'wrong':>6} "
             f"{'precision':>9} {'kind ok':>7}"]
    for fam in sorted(scores):
        s = scores[fam]
        total.add(s)
        lines.append(f"{fam:<12} {s.expected:>8} {s.found:>6} {s.recall:>7.1%} {s.marked:>7} {len(s.wrong):>6} "
                     f"{s.precision:>9.1%} {s.right_kind:>7}")
    lines.append(f"{'ALL':<12} {total.expected:>8} {total.found:>6} {total.recall:>7.1%} {total.marked:>7} "
                 f"{len(total.wrong):>6} {total.precision:>9.1%} {total.right_kind:>7}")
    return "\n".join(lines), total
