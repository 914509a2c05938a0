"""The pure parts of `sync --dry-run`: the folder names the journal's folder operations leave, and how
a plan is shown (text and JSON)."""

from __future__ import annotations

import json

import pytest

from mailsync.cli.dry_run_cmd import SHOWN, as_json, render
from mailsync.sync.dry_journal import after_folder_ops, apply_folder_ops
from mailsync.sync.dry_plan import AccountPlan, FolderPlan, OpPlan

OPS = [("create", "Neu"), ("rename", "Projects", "Ablage"), ("delete", "Alt"), ("rename", "Ablage", "Akten")]


@pytest.mark.parametrize("name, after", [
    ("Projects", "Akten"),  # renamed twice
    ("Projects/2024", "Akten/2024"),  # the folders below go along
    ("Projectsfoo", "Projectsfoo"),  # a name that only starts alike does not
    ("Alt", None),  # deleted
    ("INBOX", "INBOX"),
])
def test_a_listed_folder_after_the_journal(name, after):
    assert after_folder_ops(name, OPS, "/") == after


def test_the_names_the_journal_leaves():
    names = {"INBOX", "Projects", "Projects/2024", "Alt"}
    assert apply_folder_ops(names, OPS, "/") == {"INBOX", "Akten", "Akten/2024", "Neu"}
    assert apply_folder_ops(names, OPS, None) == {"INBOX", "Akten", "Projects/2024", "Neu"}  # no delimiter known


def _plan() -> AccountPlan:
    inbox = FolderPlan("INBOX", mode="qresync", downloads=[(7, 1200), (8, 300)], expunged=[3], flag_changes=2,
                       pushes=[(4, ("\\Seen",), ("\\Flagged",))], linked=[9], moved_in=[9])
    evil = FolderPlan("Evil\x1b[31m", action="unchanged")
    many = FolderPlan("Big", mode="full", downloads=[(u, 10) for u in range(1, SHOWN + 6)])
    plan = AccountPlan("acc", folders=3, new_messages=SHOWN + 8, downloads=SHOWN + 7, download_bytes=1500 + 10 * (SHOWN + 5),
                       flag_changes=2, expunged=1, moves=1, pushed=2, folders_plan=[inbox, evil, many],
                       renamed=[("Old", "Renamed")], created=["Fresh"], dropped=["Gone"])
    plan.ops = [OpPlan(5, "move", "pending", "move UID 2 from 'INBOX' to 'Archive'", ["UID MOVE 2 Archive"]),
                OpPlan(6, "delete", "sent", "delete UID 6 in 'INBOX'", [], "done", "already gone from the server"),
                OpPlan(7, "move", "pending", "move UID 1 from 'INBOX' to 'X'", [], "failed", "expunged on the server")]
    return plan


def test_the_text_says_what_would_happen_per_folder_and_local_change():
    text = render([_plan()])
    lines = text.splitlines()
    assert lines[0].startswith("acc: a sync would: 3 folders, ")
    assert "  local change #5 (move): move UID 2 from 'INBOX' to 'Archive': sends UID MOVE 2 Archive" in lines
    assert "local change #6 (delete, sent before): delete UID 6 in 'INBOX': already gone from the server" in text
    assert "local change #7 (move): move UID 1 from 'INBOX' to 'X': would fail: expunged on the server" in text
    inbox = next(line for line in lines if line.startswith("  'INBOX'"))
    assert inbox.startswith("  'INBOX' (qresync): download 2 (1,500 bytes): 7, 8; ")
    assert "1 new already in the store, not downloaded: 9 (1 moved here from another folder)" in inbox
    assert "remove 1 expunged on the server: 3" in inbox and "push flags of 1: UID 4 +\\Seen -\\Flagged" in inbox
    assert "folder 'Renamed': renamed on the server from 'Old'" in text and "'Gone': gone from the server" in text
    big = next(line for line in lines if line.startswith("  'Big'"))
    assert big.endswith(f", {SHOWN} ... and 5 more") and f", {SHOWN + 1}" not in big
    assert "\x1b" not in text and "Evil\\x1b[31m" in text  # a server's folder name cannot drive the terminal


def test_the_json_lists_everything():
    doc = json.loads(json.dumps(as_json([_plan(), AccountPlan("down", ok=False, error="login refused")])))
    assert doc["ok"] is False and doc["failed"] == ["down"] and doc["dry_run"] is True
    acc = doc["accounts"][0]
    assert acc["folder_plans"][0]["downloads"] == [{"uid": 7, "size": 1200}, {"uid": 8, "size": 300}]
    assert acc["folder_plans"][0]["flag_pushes"] == [{"uid": 4, "add": ["\\Seen"], "remove": ["\\Flagged"]}]
    assert len(acc["folder_plans"][2]["downloads"]) == SHOWN + 5  # all of them, not cut short
    assert acc["folder_plans"][1]["folder"] == "Evil\x1b[31m"  # the exact name
    assert [o["outcome"] for o in acc["local_changes"]] == ["done", "done", "failed"]
    assert render([AccountPlan("down", ok=False, error="login refused")]) == "down: FAILED: login refused"
