"""mailsync.channel.two_way (rules T1-T6, G1-G3 and the two-way pairing), without servers."""

from __future__ import annotations

import itertools

import pytest

from mailsync.channel.plan import SourceMessage
from mailsync.channel.two_way import (FolderNow, FolderRow, Holdings, PairNow, Side, merge_flags, plan_folders,
                                      plan_pairs, plan_side_copies)

A_TO_B = {"INBOX": "INBOX", "Archive": "Old", "Work": "Work"}
B_TO_A = {v: k for k, v in A_TO_B.items()}


def _plan(pairs, propagate=True):
    return plan_pairs(pairs, A_TO_B.__getitem__, B_TO_A.__getitem__, propagate=propagate)


def _side(fid, folder, uid, flags=""):
    return Side(fid, folder, uid, flags)


GONE = Side(None, None, None, "")


@pytest.mark.parametrize("a, b, agreed, want", [
    ("\\Seen", "", "", "\\Seen"),  # A's change
    ("", "\\Flagged", "", "\\Flagged"),  # B's change
    ("\\Seen", "\\Flagged", "", "\\Flagged \\Seen"),  # one each
    ("", "\\Seen", "\\Seen", ""),  # A removed it, B kept it: removed
    ("", "", "\\Seen", ""),  # both removed it
    ("$Work \\Seen", "\\Seen", "\\Seen", "$Work \\Seen"),  # a keyword added on A
    ("\\Seen", "", None, "\\Seen"),  # no agreed state yet: the union
    ("\\Seen \\Recent", "\\Seen", "\\Seen", "\\Seen"),  # \\Recent never merged
])
def test_flags_are_merged_per_flag_against_the_agreed_state(a, b, agreed, want):
    assert " ".join(sorted(merge_flags(a, b, agreed))) == want


def test_merge_has_no_conflicts_and_agrees_with_each_sides_change_on_every_flag_combination():
    """Every combination of agreed/A/B values of two flags: a side's change always survives, and
    a flag neither changed keeps its agreed value (T4)."""
    flags = ["\\Seen", "\\Flagged"]
    for bits in itertools.product([0, 1], repeat=6):
        agreed = {f for f, on in zip(flags, bits[0:2]) if on}
        a = {f for f, on in zip(flags, bits[2:4]) if on}
        b = {f for f, on in zip(flags, bits[4:6]) if on}
        merged = merge_flags(" ".join(a), " ".join(b), " ".join(agreed))
        for f in flags:
            if (f in a) != (f in agreed):
                assert (f in merged) == (f in a)
            elif (f in b) != (f in agreed):
                assert (f in merged) == (f in b)
            else:
                assert (f in merged) == (f in agreed)


def test_flag_changes_on_both_sides_reach_the_other_and_the_agreement_follows():
    p = PairNow(1, _side(10, "INBOX", 5, "\\Seen"), _side(20, "INBOX", 7, "\\Flagged"), "", 10, 20)
    plan = _plan([p])
    assert [(x.side, x.kind, x.uid, x.add, x.remove) for x in plan.actions] == [
        ("a", "flags", 5, ("\\Flagged",), ()), ("b", "flags", 7, ("\\Seen",), ())]
    assert [(g.flags, g.a_folder, g.b_folder) for g in plan.agreements] == [("\\Flagged \\Seen", 10, 20)]


def test_a_pair_in_step_does_nothing_and_writes_nothing():
    p = PairNow(1, _side(10, "INBOX", 5, "\\Seen"), _side(20, "INBOX", 7, "\\Seen"), "\\Seen", 10, 20)
    plan = _plan([p])
    assert (plan.actions, plan.agreements, plan.drops) == ([], [], [])


def test_a_move_on_either_side_is_followed_by_a_move_on_the_other():
    a_moved = PairNow(1, _side(11, "Archive", 5), _side(20, "INBOX", 7), "", 10, 20)
    b_moved = PairNow(2, _side(10, "INBOX", 6), _side(21, "Old", 8), "", 10, 20)
    both_agree = PairNow(3, _side(11, "Archive", 9), _side(21, "Old", 9), "", 10, 20)
    both_differ = PairNow(4, _side(11, "Archive", 12), _side(22, "Work", 13), "", 10, 20)  # A wins
    plan = _plan([a_moved, b_moved, both_agree, both_differ])
    assert [(x.pair_id, x.side, x.kind, x.folder, x.to_folder) for x in plan.actions] == [
        (1, "b", "move", "INBOX", "Old"), (2, "a", "move", "INBOX", "Archive"), (4, "b", "move", "Work", "Old")]
    assert [(g.pair_id, g.a_folder, g.b_folder) for g in plan.agreements] == [(3, 11, 21)]  # moved pairs wait


def test_deletions_pass_on_with_propagate_and_the_pair_stays_without():
    a_gone = PairNow(1, GONE, _side(20, "INBOX", 7), "", 10, 20)
    b_gone = PairNow(2, _side(10, "INBOX", 5), GONE, "", 10, 20)
    both = PairNow(3, GONE, GONE, "", 10, 20)
    plan = _plan([a_gone, b_gone, both])
    assert [(x.pair_id, x.side, x.kind, x.uid) for x in plan.actions] == [(1, "b", "delete", 7), (2, "a", "delete", 5)]
    assert plan.drops == [1, 2, 3]
    kept = _plan([a_gone, b_gone, both], propagate=False)
    assert (kept.actions, kept.drops) == ([], [3])  # the survivors stay paired: never copied back


def test_a_side_waiting_for_the_server_makes_the_pair_wait():
    waiting = PairNow(1, _side(10, "INBOX", 5, "\\Seen"), _side(20, "INBOX", None, ""), "", 10, 20)
    gone_and_waiting = PairNow(2, GONE, _side(20, "INBOX", None), "", 10, 20)
    plan = _plan([waiting, gone_and_waiting])
    assert (plan.actions, plan.agreements, plan.drops) == ([], [], [])


def test_no_agreed_folders_yet_makes_b_follow_a_when_they_disagree():
    p = PairNow(1, _side(11, "Archive", 5), _side(20, "INBOX", 7), None, None, None)
    plan = _plan([p])
    assert [(x.side, x.kind, x.to_folder) for x in plan.actions] == [("b", "move", "Old")]


def _m(pid, folder, sha, mid=None, size=10):
    return SourceMessage(pid, folder, sha, mid, size, "", None)


def test_new_messages_pair_with_what_the_other_side_holds_each_once_else_are_copied():
    held = Holdings()
    held.add("Old", 100, "s1", "<1@x>", 10)
    held.add("Old", 101, "s2", "<2@x>", 20)
    msgs = [_m(1, "Archive", "s1"), _m(2, "Archive", "s1"),  # two equal messages: one pairs, one is copied
            _m(3, "Archive", "other", "<2@x>", 20),  # by Message-ID and size
            _m(4, "Work", "s4"), _m(5, "Skip", "s5")]
    out = plan_side_copies(msgs, A_TO_B.get, lambda f: f != "Skip", held, {"INBOX", "Old"})
    assert out.pairs == [(1, 100), (3, 101)]
    assert [(m.placement_id, f) for m, f in out.copies] == [(2, "Old"), (4, "Work")]
    assert out.mkdirs == ["Work"]
    assert held.take("Old", "s1", None, 10) is None  # every held message used once


def test_folders_are_created_linked_and_renamed_on_the_side_that_lacks_the_change():
    a = [FolderNow(1, "INBOX"), FolderNow(2, "Archive2"), FolderNow(3, "Work"), FolderNow(4, "Skip")]
    b = [FolderNow(11, "INBOX"), FolderNow(12, "Old"), FolderNow(13, "Private")]
    rows = [FolderRow(1, 1, 11, "INBOX", "INBOX"), FolderRow(2, 2, 12, "Archive", "Old")]  # A renamed Archive
    a_to_b = {"INBOX": "INBOX", "Archive2": "Archive2", "Work": "Work", "Skip": "Skip"}.__getitem__
    b_to_a = {"INBOX": "INBOX", "Old": "Archive", "Private": "Private"}.__getitem__
    plan = plan_folders(a, b, rows, a_to_b, b_to_a, lambda f: f != "Skip", two_way=True)
    assert plan.renames == [("b", "Old", "Archive2", 2)]
    assert plan.mkdirs == [("b", "Work"), ("a", "Private")]
    assert plan.links == [("Work", "Work"), ("Private", "Private")]
    one_way = plan_folders(a, b, rows, a_to_b, b_to_a, lambda f: f != "Skip", two_way=False)
    assert one_way.mkdirs == [("b", "Work")]  # a mirror creates on the destination only


def test_a_rename_on_b_reaches_a_in_two_way_and_is_undone_in_a_mirror():
    a = [FolderNow(2, "Archive")]
    b = [FolderNow(12, "Older")]
    rows = [FolderRow(7, 2, 12, "Archive", "Old")]
    a_to_b = {"Archive": "Old"}.__getitem__
    b_to_a = {"Older": "Archived"}.__getitem__
    assert plan_folders(a, b, rows, a_to_b, b_to_a, lambda f: True, two_way=True).renames == [
        ("a", "Archive", "Archived", 7)]
    assert plan_folders(a, b, rows, a_to_b, b_to_a, lambda f: True, two_way=False).renames == [
        ("b", "Older", "Old", 7)]


def test_a_folder_gone_on_one_side_is_not_created_again():
    rows = [FolderRow(1, 2, 12, "Archive", "Old")]
    plan = plan_folders([], [FolderNow(12, "Old")], rows, str, {"Old": "Archive"}.__getitem__, lambda f: True,
                        two_way=True)
    assert (plan.mkdirs, plan.links, plan.renames) == ([], [], [])


def test_a_mass_of_deletions_into_one_folder_is_held_unless_allowed():
    big = [PairNow(i, GONE, _side(20, "Old", 100 + i), "", 10, 20) for i in range(60)]  # A's Archive vanished
    few = [PairNow(100 + i, GONE, _side(21, "INBOX", 200 + i), "", 11, 21) for i in range(3)]
    kept = [PairNow(200 + i, _side(11, "INBOX", 300 + i), _side(21, "INBOX", 400 + i), "", 11, 21) for i in range(2)]
    plan = _plan(big + few + kept)
    assert plan.held == [("b", "Old", 60, 60)]
    assert sorted(x.uid for x in plan.actions) == [200, 201, 202]  # the few still go
    assert set(plan.drops) == {100, 101, 102}
    allowed = plan_pairs(big + few + kept, A_TO_B.__getitem__, B_TO_A.__getitem__, propagate=True,
                         allow_mass_delete=True)
    assert (len(allowed.actions), allowed.held) == (63, [])
    # half a folder or less, or 50 messages or fewer, is an ordinary day
    half = [PairNow(i, GONE if i < 60 else _side(10, "Archive", i), _side(20, "Old", 100 + i), "", 10, 20)
            for i in range(120)]
    assert _plan(half).held == [] and len(_plan(half).actions) == 60
    assert _plan(big[:50]).held == []
