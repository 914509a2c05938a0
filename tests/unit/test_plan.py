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
    ("[Gmail]/All Mail", ["[Gmail]/All Mail"], [], True),  # a name with glob characters matches itself
    ("[Gmail]/Spam", ["*"], ["[Gmail]/Spam"], False),
    ("G/All Mail", ["[Gmail]/All Mail"], [], True),  # and is still a pattern for other names
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


def _agreed(flags: str) -> P.LocalMessage:
    return P.LocalMessage(flags, flags, None)


@pytest.mark.parametrize("remote,local,new,expunged,flags", [
    ({}, {}, [], [], {}),
    ({1: (), 2: ("\\Seen",)}, {}, [1, 2], [], {}),                       # M1
    ({2: ()}, {1: "", 2: ""}, [], [1], {}),                               # M2
    ({1: ("\\Seen", "$Label")}, {1: "\\Seen"}, [], [], {1: "$Label \\Seen"}),  # M3
    ({1: ("\\Recent", "\\Seen")}, {1: "\\Seen"}, [], [], {}),               # \Recent never counts
    ({3: (), 1: ()}, {2: "\\Seen"}, [1, 3], [2], {}),                       # sorted output
])
def test_m_rules(remote, local, new, expunged, flags):
    plan = P.plan_messages({u: _agreed(f) for u, f in local.items()},
                           {u: P.ServerMessage(tuple(f)) for u, f in remote.items()})
    assert plan.new == new and plan.expunged == expunged
    assert {u: f for u, (f, base, _m) in plan.updates.items()} == flags
    assert all(f == base for f, base, _m in plan.updates.values())  # the server's flags are agreed
    assert plan.flag_changes == len(flags) and not plan.pushes and not plan.conflicts
    assert plan.empty is (not new and not expunged and not flags)


def test_c2_plan_is_idempotent_after_applying_it():
    remote = {1: P.ServerMessage(("\\Seen",)), 2: P.ServerMessage(()), 5: P.ServerMessage(("\\Flagged",))}
    local = {1: _agreed(""), 3: _agreed("\\Seen")}
    plan = P.plan_messages(local, remote)
    applied = {u: m for u, m in local.items() if u not in plan.expunged}
    applied.update({u: P.LocalMessage(f, b, m) for u, (f, b, m) in plan.updates.items()})
    applied.update({u: _agreed(P.flags_text(remote[u].flags)) for u in plan.new})
    assert P.plan_messages(applied, remote).empty


@pytest.mark.parametrize("messages,nbytes,seconds,due", [
    (0, 0, 0.0, False),
    (4999, 10 << 20, 1.0, False),
    (5000, 0, 0.0, True),  # batch_size messages
    (10, P.COMMIT_BYTES, 0.0, True),  # or that many bytes
    (10, 1 << 20, P.COMMIT_SECONDS, True),  # or that long
])
def test_c3_commit_due(messages, nbytes, seconds, due):
    assert P.commit_due(messages, nbytes, seconds, batch_size=5000) is due


def test_delta_mode_sees_only_what_changed():
    """D2: in a delta mode the server reports changed UIDs only; a UID it does not mention is not
    expunged (only `vanished` ones are), and an untouched placement is left alone."""
    local = {1: _agreed("\\Seen"), 2: _agreed(""), 3: _agreed("")}
    plan = P.plan_messages(local, {2: P.ServerMessage(("\\Flagged",), 9), 7: P.ServerMessage(())},
                           vanished=[3, 4], full=False)
    assert plan.expunged == [3] and plan.new == [7]
    assert plan.updates == {2: ("\\Flagged", "\\Flagged", 9)}


def test_t1_local_change_is_merged_and_pushed():
    """T1/T3: local added $Done, the server added \\Flagged meanwhile: both kept, $Done pushed."""
    local = {5: P.LocalMessage("$Done \\Seen", "\\Seen", 3)}
    plan = P.plan_messages(local, {5: P.ServerMessage(("\\Flagged", "\\Seen"), 8)})
    assert plan.updates == {5: ("$Done \\Flagged \\Seen", "\\Flagged \\Seen", 8)}
    assert plan.pushes == [(5, ("$Done",), (), 8)] and not plan.conflicts and not plan.settled


def test_t1_a_local_change_the_server_already_has_is_settled():
    local = {5: P.LocalMessage("\\Seen", "", 3)}
    plan = P.plan_messages(local, {5: P.ServerMessage(("\\Seen",), 8)})
    assert plan.settled == [5] and not plan.pushes
    assert plan.updates == {5: ("\\Seen", "\\Seen", 8)}


def test_t1_pending_change_without_news_from_the_server_merges_against_the_base():
    """Delta mode: the server did not mention the UID, so its flags are the base; the change is pushed."""
    local = {5: P.LocalMessage("\\Answered \\Seen", "\\Seen", 4)}
    plan = P.plan_messages(local, {}, vanished=[], full=False)
    assert plan.pushes == [(5, ("\\Answered",), (), 4)]


@pytest.mark.parametrize("policy,local_newer,kept", [
    ("server", True, False), ("local", False, True), ("newest", True, True), ("newest", False, False),
])
def test_t2_without_a_base_a_difference_is_a_conflict_settled_by_policy(policy, local_newer, kept):
    local = {5: P.LocalMessage("$Mine \\Seen", None, None, local_newer)}
    plan = P.plan_messages(local, {5: P.ServerMessage(("\\Seen",), 2)}, policy=policy)
    assert plan.conflicts == [(5, "$Mine", False, True, kept)]
    assert plan.updates[5] == ("$Mine \\Seen" if kept else "\\Seen", "\\Seen", 2)
    assert plan.pushes == ([(5, ("$Mine",), (), 2)] if kept else [])


def test_t2_an_unagreed_placement_waits_for_the_servers_flags():
    plan = P.plan_messages({5: P.LocalMessage("\\Seen", None, None)}, {}, vanished=[], full=False)
    assert plan.empty


def test_flags_text_is_canonical():
    assert P.flags_text(["\\Seen", "$A", "\\Seen", "\\Recent"]) == "$A \\Seen"
    assert P.flags_text([]) == ""


# --- delta rules D1-D3 ---------------------------------------------------------------------------

CP = P.FolderCheckpoint(uidvalidity=7, uidnext=11, highestmodseq=40, messages=10)
SAME = {"UIDVALIDITY": 7, "UIDNEXT": 11, "MESSAGES": 10, "HIGHESTMODSEQ": 40}


@pytest.mark.parametrize("status,pending,expected", [
    (SAME, False, True),
    (SAME, True, False),                                   # a local change must be pushed
    ({**SAME, "HIGHESTMODSEQ": 41}, False, False),         # a flag changed
    ({**SAME, "UIDNEXT": 12}, False, False),               # a message arrived
    ({**SAME, "MESSAGES": 9}, False, False),               # one was expunged
    ({**SAME, "UIDVALIDITY": 8}, False, False),
    ({k: v for k, v in SAME.items() if k != "HIGHESTMODSEQ"}, False, False),  # no CONDSTORE: must look
    (None, False, False),
])
def test_d1_folder_unchanged(status, pending, expected):
    assert P.folder_unchanged(CP, status, pending) is expected


@pytest.mark.parametrize("kw,mode,fallback", [
    (dict(qresync=True, condstore=True, stored_modseq=5, current_modseq=9, nomodseq=False), "qresync", False),
    (dict(qresync=False, condstore=True, stored_modseq=5, current_modseq=9, nomodseq=False), "condstore", False),
    (dict(qresync=False, condstore=False, stored_modseq=5, current_modseq=9, nomodseq=False), "full", False),
    (dict(qresync=True, condstore=True, stored_modseq=None, current_modseq=9, nomodseq=False), "full", False),
    (dict(qresync=True, condstore=True, stored_modseq=9, current_modseq=5, nomodseq=False), "full", True),
    (dict(qresync=True, condstore=True, stored_modseq=9, current_modseq=None, nomodseq=True), "full", True),
])
def test_d2_d3_delta_mode(kw, mode, fallback):
    got, reason = P.delta_mode(**kw)
    assert got == mode and (reason is not None) is fallback
    if fallback:
        assert "full comparison" in reason


@pytest.mark.parametrize("mode,has_placements,bodies_before_run,expected", [
    ("full", False, False, True),  # a first sync: the folder is read whole
    ("full", True, False, False),  # resumed after a crash: compare with what was committed
    ("full", False, True, False),  # the store has bodies: new UIDs may be known mail (rule N1)
    ("condstore", False, False, False),
    ("qresync", False, False, False),
])
def test_d4_download_whole(mode, has_placements, bodies_before_run, expected):
    assert P.download_whole(mode, has_placements=has_placements, bodies_before_run=bodies_before_run) is expected


# --- flag merge T1/T2: rows of (server, base, local) -> result, in the style of isync's tests -----

@pytest.mark.parametrize("server,base,local,expected", [
    ("", "", "\\Seen", "\\Seen"),
    ("\\Seen", "", "", "\\Seen"),
    ("", "\\Seen", "\\Seen", ""),
    ("\\Seen", "\\Seen", "", ""),
    ("\\Seen \\Flagged", "\\Seen", "", "\\Flagged"),
    ("\\Flagged", "\\Seen", "\\Seen $L", "\\Flagged $L"),
    ("", "\\Seen", "", ""),
    ("$L", "", "$L", "$L"),
    ("\\Recent \\Seen", "\\Seen", "\\Seen", "\\Seen"),
])
def test_t1_merge_against_base(server, base, local, expected):
    m = P.merge_flags(server.split(), base.split(), local.split())
    assert m.result == frozenset(expected.split()) and m.conflicts == ()
    add, remove = m.push(server.split())
    assert ((set(server.split()) - {"\\Recent"}) | set(add)) - set(remove) == set(expected.split())


@pytest.mark.parametrize("policy,local_newer,expected", [
    ("server", True, {"\\Seen"}),
    ("local", False, {"\\Flagged"}),
    ("newest", True, {"\\Flagged"}),
    ("newest", False, {"\\Seen"}),
])
def test_t2_no_base_is_a_conflict_settled_by_policy(policy, local_newer, expected):
    m = P.merge_flags(["\\Seen"], None, ["\\Flagged"], policy=policy, local_newer=local_newer)
    assert m.result == frozenset(expected)
    assert m.conflicts == ("\\Flagged", "\\Seen")


@pytest.mark.parametrize("known,found,ok", [
    (0, 0, True), (10, 10, True), (10, 9, False), (19, 19, True),
    (20, 16, True), (20, 15, False), (1000, 800, True), (1000, 799, False),
])
def test_v1_uidvalidity_rematch_threshold(known, found, ok):
    assert P.uidvalidity_rematch_accepted(known, found) is ok


# --- rule F4: folder identity across renames ------------------------------------------------------

def _ids(*items):
    return [P.FolderIdentity(*i) for i in items]


def test_f4_equal_mailboxids_settle_a_rename_and_different_ones_rule_it_out():
    certain, to_check = P.rename_candidates(_ids(("Q", 7, "M1"), ("R", 7, "M9")),
                                            _ids((1, 7, "M1", True), (2, 7, "M2", True)))
    assert certain == {"Q": 1} and to_check == []  # same UIDVALIDITY everywhere, ids decide


def test_f4_shared_uidvalidity_alone_is_only_a_candidate_and_empty_folders_give_no_evidence():
    certain, to_check = P.rename_candidates(_ids(("Q", 5), ("Q/a", 5), ("X", 6)),
                                            _ids((1, 5, None, True), (2, 5, None, False)))
    assert certain == {} and to_check == [("Q", 1), ("Q/a", 1)]


def test_f4_a_tree_with_one_uidvalidity_is_matched_only_where_the_sample_agrees():
    # Cyrus: P, P/a, P/b made in one second share UIDVALIDITY; RENAME P Q renames all three.
    checked = {(new, old): new.replace("Q", "P") == old
               for new in ("Q", "Q/a", "Q/b") for old in ("P", "P/a", "P/b")}
    assert P.decide_renames({}, checked) == {"Q": "P", "Q/a": "P/a", "Q/b": "P/b"}


def test_f4_ambiguous_evidence_is_never_a_rename():
    # two new folders agree with one known folder (copies of it), or one new with two known
    assert P.decide_renames({}, {("A", 1): True, ("B", 1): True}) == {}
    assert P.decide_renames({}, {("A", 1): True, ("A", 2): True}) == {}
    assert P.decide_renames({"A": 1}, {("B", 1): True}) == {"A": 1}  # the certain pair wins
    assert P.decide_renames({"A": 1, "B": 1}, {}) == {}  # one known folder claimed twice


def test_f4_sample_agrees_only_when_every_sampled_uid_holds_the_same_message():
    known = {1: ("<a@x>", 10), 5: ("<b@x>", 20)}
    assert P.sample_agrees(known, {1: ("<a@x>", 10), 5: ("<b@x>", 20), 6: ("<c@x>", 1)})
    assert not P.sample_agrees(known, {1: ("<a@x>", 10), 5: ("<b@x>", 21)})
    assert not P.sample_agrees(known, {1: ("<a@x>", 10)})  # a sampled UID is missing
    assert not P.sample_agrees({}, {})  # no sample, no evidence


def test_f4_sample_spreads_over_the_folder():
    assert P.sample_uids([3, 1, 2]) == [1, 2, 3]
    picked = P.sample_uids(list(range(1, 1001)), 8)
    assert len(picked) == 8 and picked[0] == 1 and picked[-1] == 1000

@pytest.mark.parametrize("uids, exists, uidnext, contradicts", [
    (range(1, 11), 10, 11, False),
    ([1, 2, 5, 6, 7, 8, 9, 10], 10, 11, True),  # two UIDs left out
    ([], 6, 7, True),  # an empty listing while EXISTS says 6
    (range(1, 12), 10, 11, False),  # UID 11 arrived after the SELECT
    ([1, 2, 3, 99], 4, 11, True),  # one left out, one that cannot be there
    ([1, 2, 3, 4, 5], 4, 11, True),  # more below UIDNEXT than EXISTS
    ([1, 2], 3, None, True),
])
def test_listing_contradiction(uids, exists, uidnext, contradicts):
    assert (P.listing_contradiction(uids, exists, uidnext) is not None) is contradicts


@pytest.mark.parametrize("expunged, live, contradiction, allowed, held", [
    (0, 10, "x", False, False),  # nothing to hold
    (2, 10, None, False, False),
    (2, 10, "listed 8 where EXISTS says 10", False, True),
    (6, 10, None, False, True),
    (6, 10, None, True, False),
    (4, 4, None, False, False),  # below MASS_DELETE_MIN: a small folder emptied is not held
    (5, 10, None, False, False),  # exactly half is not more than half
])
def test_held_reason(expunged, live, contradiction, allowed, held):
    assert (P.held_reason(expunged, live, contradiction, allowed) is not None) is held


def test_a_listing_agrees_with_the_count_heard_after_it():
    """Another client expunged one message meanwhile: the connection heard EXPUNGE, 42 are listed."""
    assert P.listing_contradiction(range(1, 43), 43, 46) is not None
    assert P.listing_contradiction(range(1, 43), 43, 46, exists_now=42) is None
    assert P.listing_contradiction(range(1, 41), 43, 46, exists_now=42) is not None


# -- rule D5: a full comparison plans only where the sides differ ----------------------------------


def test_full_candidates_are_the_uids_where_the_two_sides_differ():
    from mailsync.imap.events import FetchItem

    def item(uid, flags, modseq=None):
        return FetchItem(uid, uid, flags, None, None, None, None, modseq)

    local = {1: ("\\Seen", "\\Seen", None),  # agreed, unchanged on the server: not planned
             2: ("\\Seen", "\\Seen", None),  # the server cleared \Seen
             3: ("\\Flagged", "", None),  # a local change waiting
             4: ("", None, None),  # never agreed (after a re-match)
             5: ("", "", None),  # gone from the server
             6: ("$Label \\Seen", "$Label \\Seen", 7)}  # same flags, another MODSEQ
    server = {1: item(1, ("\\Seen",)), 2: item(2, ()), 3: item(3, ()), 4: item(4, ()),
              6: item(6, ("\\Seen", "$Label"), 9), 8: item(8, ())}  # 8: new
    plan, gone = P.full_candidates(local, server)
    assert sorted(plan) == [2, 3, 4, 6, 8] and gone == [5]
    # what is left out plans to nothing: the same plan as the whole comparison
    view = {uid: P.LocalMessage(f, b, m, False) for uid, (f, b, m) in local.items()}
    whole = P.plan_messages(view, {u: P.ServerMessage(it.flags, it.modseq) for u, it in server.items()})
    part = P.plan_messages({u: v for u, v in view.items() if u in plan or u in gone},
                               {u: P.ServerMessage(server[u].flags, server[u].modseq) for u in plan},
                               vanished=gone, full=False)
    assert (whole.expunged, whole.updates, whole.pushes, whole.new, whole.flag_changes) == (
        part.expunged, part.updates, part.pushes, part.new, part.flag_changes)


# --- rule D6: headers asked for with the SELECT ---------------------------------------------------

def test_headers_ahead_start_at_the_checkpoints_uidnext_when_the_listing_shows_more():
    cp = P.FolderCheckpoint(uidvalidity=7, uidnext=101, highestmodseq=50, messages=100)
    assert P.headers_ahead_from(cp, {"UIDVALIDITY": 7, "UIDNEXT": 105, "MESSAGES": 104}) == 101


@pytest.mark.parametrize("cp, status", [
    (P.FolderCheckpoint(7, 101, 50, 100), {"UIDVALIDITY": 7, "UIDNEXT": 101}),  # nothing new
    (P.FolderCheckpoint(7, 101, 50, 100), {"UIDVALIDITY": 8, "UIDNEXT": 300}),  # another UIDVALIDITY
    (P.FolderCheckpoint(7, None, None, None), {"UIDVALIDITY": 7, "UIDNEXT": 300}),  # never completed
    (P.FolderCheckpoint(None, None, None, None), {"UIDVALIDITY": 7, "UIDNEXT": 300}),
    (P.FolderCheckpoint(7, 101, 50, 100), None),  # no listing with counters (no LIST-STATUS)
    (P.FolderCheckpoint(7, 101, 50, 100), {"UIDVALIDITY": 7}),
    (None, {"UIDVALIDITY": 7, "UIDNEXT": 300}),
])
def test_no_headers_ahead_without_a_known_folder_that_grew(cp, status):
    assert P.headers_ahead_from(cp, status) is None
