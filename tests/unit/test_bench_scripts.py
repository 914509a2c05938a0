"""The pure parts of the benchmark scripts: the trace's attribution of answers to commands, and the
snapshots and message counts `scripts/bench compare` checks every tool's store with."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    sys.modules[name] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


trace = _load("trace_sync", ROOT / "scripts" / "trace-sync")
sys.path.insert(0, str(ROOT / "scripts"))
compare = _load("bench_compare", ROOT / "scripts" / "bench_compare.py")


def test_trace_attributes_pipelined_answers_in_order_and_skips_literals():
    stream = {
        "peer": "x",
        "sent": [(1.000, 'A1 SELECT "Box"', 0), (1.000, "A2 UID FETCH 1:* (BODY.PEEK[])", 0),
                 (1.100, "A3 LOGOUT", 0)],
        "recv": [(1.010, b"* 2 EXISTS\r\nA1 OK [READ-WRITE] done\r\n"),
                 (1.030, b"* 1 FETCH (UID 1 BODY[] {13}\r\nA2 OK fake\r\n\r\n)\r\n"),
                 (1.050, b"* 2 FETCH (UID 2 BODY[] {3}\r\nabc)\r\nA2 OK fetched\r\n"),
                 (1.120, b"* BYE\r\nA3 OK bye\r\n")],
    }
    a1, a2, a3 = trace.analyse(stream)["commands"]
    assert (a1["first_byte"], a1["done"], a1["folder"]) == (1.010, 1.010, "Box")
    # A2's answer starts after A1's tagged line; the "A2 OK" inside the literal is not its end
    assert (a2["first_byte"], a2["done"], a2["folder"], a2["verb"]) == (1.030, 1.050, "Box", "UID FETCH")
    assert a2["result"].startswith("A2 OK fetched")
    assert (a3["first_byte"], a3["done"]) == (1.120, 1.120)


def test_trace_hides_credentials():
    stream = {"peer": "x", "sent": [(0.0, "L1 LOGIN bench secret", 0)], "recv": [(0.01, b"L1 OK in\r\n")]}
    (login,) = trace.analyse(stream)["commands"]
    assert "secret" not in login["command"]


def _write(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_clone_tree_links_message_files_and_copies_the_rest(tmp_path):
    src = tmp_path / "src"
    _write(src / "Maildir" / "cur" / "1.host:2,S", "message")
    _write(src / "Maildir" / "dovecot.index", "index")
    dst = tmp_path / "dst"
    _write(dst / "stale", "left from before")
    compare.clone_tree(src, dst)
    assert not (dst / "stale").exists()
    assert os.path.samefile(src / "Maildir" / "cur" / "1.host:2,S", dst / "Maildir" / "cur" / "1.host:2,S")
    copied = dst / "Maildir" / "dovecot.index"
    assert copied.read_text() == "index" and not os.path.samefile(src / "Maildir" / "dovecot.index", copied)
    copied.write_text("changed")  # an index rewritten in place must not change the snapshot
    assert (src / "Maildir" / "dovecot.index").read_text() == "index"
    old = 1_600_000_000_000_000_000
    os.utime(src / "Maildir" / "cur", ns=(old, old))
    os.utime(src / "Maildir", ns=(old, old + 5))
    compare.clone_tree(src, dst)
    assert (dst / "Maildir" / "cur").stat().st_mtime_ns == old  # a restore is not a change to the folder
    assert (dst / "Maildir").stat().st_mtime_ns == old + 5
    compare.clone_tree(src, tmp_path / "full", link_maildir=False)
    assert not os.path.samefile(src / "Maildir" / "cur" / "1.host:2,S", tmp_path / "full" / "Maildir" / "cur" / "1.host:2,S")


def test_maildir_counts_both_layouts(tmp_path):
    dove = tmp_path / "dovecot"
    _write(dove / "cur" / "1.a:2,S")
    (dove / "new").mkdir()
    _write(dove / ".Bulk00" / "cur" / "2.a:2,FS")
    _write(dove / ".Bulk00" / "cur" / "3.a:2,")
    _write(dove / ".Bulk00" / "new" / "4.a")
    _write(dove / ".Empty" / "cur" / ".keep-out")  # a file, so the folder has one message
    (dove / ".Empty" / "new").mkdir()
    (dove / ".None" / "cur").mkdir(parents=True)
    (dove / ".None" / "new").mkdir()
    assert compare.maildir_counts(dove, dovecot_layout=True) == {
        "INBOX": (1, 1, 0), "Bulk00": (3, 1, 1), "Empty": (1, 0, 0)}
    plain = tmp_path / "plain"
    _write(plain / "INBOX" / "cur" / "1.a:2,F")
    (plain / "INBOX" / "new").mkdir()
    _write(plain / "Bulk00" / "new" / "2.a")
    (plain / "Bulk00" / "cur").mkdir()
    assert compare.maildir_counts(plain, dovecot_layout=False) == {"INBOX": (1, 0, 1), "Bulk00": (1, 0, 0)}
