"""Pure planner rules (mailsync.sync.plan): each rule id from the module docstring has cases here."""

import pytest

from mailsync.sync import plan as P


@pytest.mark.parametrize("name,include,exclude,expected", [
    ("INBOX", ["*"], [], True),
    ("inbox", ["INBOX"], [], True),  # INBOX is case-insensitive (RFC 3501)
    ("Junk", ["*"], ["Junk"], False),
    ("Archive/2024", ["Archive*"], [], True),
    ("Archive/2024", ["*"], ["Archive/*"], False),
    ("Sent", ["INBOX"], [], False),
    ("Entwürfe", ["Entw*"], [], True),
    ("junk", ["*"], ["Junk"], True),  # other folders are case-sensitive
])
def test_f1_folder_selection(name, include, exclude, expected):
    assert P.folder_selected(name, include, exclude) is expected


def test_f1_f2_plan_folders_creates_updates_drops_and_orders_inbox_first():
    remote = [P.FolderView("Sent", "Sent", "/", "\\Sent"), P.FolderView("INBOX", "INBOX", "/"),
              P.FolderView("Archiv", "Archiv", "/")]
    local = {"INBOX": P.FolderView("INBOX", "INBOX", "/"), "Sent": P.FolderView("Sent", "Sent", "/", None),
             "Old": P.FolderView("Old", "Old", "/")}
    plan = P.plan_folders(remote, local)
    assert [f.raw_name for f in plan.create] == ["Archiv"]
    assert [f.raw_name for f in plan.update] == ["Sent"]  # special-use learned
    assert plan.drop == ("Old",)
    assert plan.sync == ("INBOX", "Archiv", "Sent")


@pytest.mark.parametrize("stored,current,placements,action", [
    (None, 5, 0, "adopt"),
    (5, 5, 10, "keep"),
    (5, 6, 0, "adopt"),
    (5, 6, 1, "aside"),
])
def test_f3_uidvalidity(stored, current, placements, action):
    d = P.decide_uidvalidity(stored, current, placements)
    assert d.action == action
    if action == "aside":
        assert "nothing was deleted" in d.reason and str(stored) in d.reason and str(current) in d.reason


@pytest.mark.parametrize("remote,local,new,expunged,flags", [
    ({}, {}, [], [], {}),
    ({1: (), 2: ("\\Seen",)}, {}, [1, 2], [], {}),                       # M1
    ({2: ()}, {1: "", 2: ""}, [], [1], {}),                               # M2
    ({1: ("\\Seen", "$Label")}, {1: "\\Seen"}, [], [], {1: "$Label \\Seen"}),  # M3
    ({1: ("\\Recent", "\\Seen")}, {1: "\\Seen"}, [], [], {}),               # \Recent never counts
    ({3: (), 1: ()}, {2: "\\Seen"}, [1, 3], [2], {}),                       # sorted output
])
def test_m_rules(remote, local, new, expunged, flags):
    plan = P.plan_messages(remote, local)
    assert plan.new == new and plan.expunged == expunged and plan.flags == flags
    assert plan.empty is (not new and not expunged and not flags)


def test_c2_plan_is_idempotent_after_applying_it():
    remote = {1: ("\\Seen",), 2: (), 5: ("\\Flagged",)}
    local = {1: "", 3: "\\Seen"}
    plan = P.plan_messages(remote, local)
    applied = {u: f for u, f in local.items() if u not in plan.expunged}
    applied.update(plan.flags)
    applied.update({u: P.flags_text(remote[u]) for u in plan.new})
    assert P.plan_messages(remote, applied).empty


def test_flags_text_is_canonical():
    assert P.flags_text(["\\Seen", "$A", "\\Seen", "\\Recent"]) == "$A \\Seen"
    assert P.flags_text([]) == ""
