"""The model behind tests/integration/test_model.py, on its own: what it expects of a quiet sync
(so that a wrong engine fails the model test, and a right one does not)."""

from __future__ import annotations

from model_support import ANYWHERE, Expectation, LocalOp, Seen, ServerView, check, expect, merge_flags

F = frozenset


def view(**where: tuple[str, int, str]) -> ServerView:
    """token=(folder, uid, "flag flag")"""
    msgs = {t: [Seen(f, u, F(fl.split()))] for t, (f, u, fl) in where.items()}
    folders = {"INBOX", "A"} | {s[0].folder for s in msgs.values()}
    return ServerView(folders, "/", msgs)


def expect_after(before: ServerView, ops, **kw) -> Expectation:
    agreed = {t: (s[0].folder, s[0].uid) for t, s in before.messages.items()}
    base = {t: s[0].flags for t, s in before.messages.items()}
    args = dict(agreed=agreed, base_flags=base, appended_flags={}, server_flagged=set(), interrupted=False)
    args.update(kw)
    return expect(before, ops, **args)


def test_a_local_delete_removes_exactly_the_message_it_named():
    before = view(t1=("INBOX", 1, ""), t2=("INBOX", 2, ""))
    exp = expect_after(before, [LocalOp("delete", "t1", "INBOX", 1)])
    assert exp.allowed == {"t1": {None}, "t2": {"INBOX"}}
    assert check(exp, view(t2=("INBOX", 2, ""))) == []
    assert check(exp, view(t1=("INBOX", 1, ""))) == ["t1 at INBOX/1, expected in ['None'] (local: ['delete INBOX/1'])",
                                                     "t2 lost, expected in ['INBOX'] (local: [])"]


def test_a_delete_whose_message_moved_on_the_server_may_land_or_not():
    before = view(t1=("A", 7, ""))  # the store named INBOX/1
    exp = expect_after(before, [LocalOp("delete", "t1", "INBOX", 1)], agreed={"t1": ("INBOX", 1)})
    assert exp.allowed["t1"] == {"A", None}


def test_a_rename_takes_the_subtree_and_a_duplicate_is_caught():
    before = view(t1=("P", 1, ""), t2=("P/a", 1, ""))
    exp = expect_after(before, [LocalOp("rename", folder="P", dest="Q")])
    assert exp.allowed == {"t1": {"Q"}, "t2": {"Q/a"}}
    after = view(t1=("Q", 1, ""), t2=("Q/a", 1, ""))
    assert check(exp, after) == []
    after.messages["t2"].append(Seen("Q", 2, F()))
    assert check(exp, after) == ["t2 duplicated: [('Q/a', 1), ('Q', 2)]"]


def test_an_append_into_a_folder_gone_from_the_server_must_survive_somewhere():
    exp = expect_after(view(), [LocalOp("append", "t9", "Gone")], appended_flags={"t9": F()})
    assert exp.allowed["t9"] == {"Gone", ANYWHERE}
    assert check(exp, view(t9=("INBOX", 1, ""))) == []
    assert check(exp, view()) == ["t9 lost, expected in ['*', 'Gone'] (local: ['append Gone'])"]


def test_flags_merge_per_flag_with_the_server_winning_a_conflict():
    assert merge_flags(F(), F({"\\Seen"}), F({"\\Flagged"})) == {"\\Seen", "\\Flagged"}
    assert merge_flags(F({"\\Seen"}), F(), F({"\\Seen", "$L"})) == {"$L"}
    before = view(t1=("INBOX", 1, "\\Seen"))
    exp = expect_after(before, [LocalOp("flags", "t1", "INBOX", 1, add=F({"\\Flagged"}), remove=F({"\\Seen"}))],
                       base_flags={"t1": F({"\\Seen"})})
    assert exp.flags["t1"] == {"\\Flagged"}
    assert check(exp, view(t1=("INBOX", 1, "\\Seen"))) != []


def test_a_change_an_interrupted_sync_may_have_sent_may_land_or_not():
    before = view(t1=("A", 1, ""))  # the rename was pushed, then another client made a new A
    exp = expect_after(before, [LocalOp("rename", folder="A", dest="L", maybe_sent=True)])
    assert exp.allowed["t1"] == {"A", "L"}
