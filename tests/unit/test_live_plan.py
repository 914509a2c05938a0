"""mailsync.mirror.live_plan: the live Maildir mirror's pure decisions, as tables of (store, state,
disk) -> plan, both ways."""

from __future__ import annotations

from mailsync.mirror import live_plan as L

INBOX, ARCH = L.StoreFolder(1, "INBOX", ""), L.StoreFolder(2, "Archive", ".Archive")
FOLDER_ROWS = [L.FolderRow(10, 1, ""), L.FolderRow(11, 2, ".Archive")]
SHA = {n: f"{n:064x}" for n in range(1, 200)}


def msg(pid, folder=1, flags=(), sha=None, uid=None):
    return L.StoreMessage(pid, folder, sha or SHA[pid], frozenset(flags), 1600000000, 100, uid or pid)


def row(rid, pid, folder="", flags=(), unique=None, sha=None, state="ok"):
    m = msg(pid)
    u = unique or m.unique
    name = ("cur/" + u + ":2," + "".join(sorted({"\\Seen": "S", "\\Flagged": "F"}[f] for f in flags))
            if flags else "new/" + u)
    return L.FileRow(rid, pid, sha or m.sha256, folder, name, u, frozenset(flags), state)


def disk(r: L.FileRow, folder=None, flags=None):
    flags = r.flags if flags is None else frozenset(flags)
    return L.DiskFile(r.folder if folder is None else folder, "cur/" + r.unique + ":2,", r.unique, flags)


def kinds(plan):
    return [type(a).__name__ for a in plan.files]


# --- store -> Maildir ---------------------------------------------------------------------------

def test_first_write_makes_folders_and_writes_every_message():
    plan = L.plan_write([INBOX, ARCH], [], [msg(1), msg(2, folder=2, flags={"\\Seen"})], [], {})
    assert [a.folder.path for a in plan.make_folders] == ["", ".Archive"]
    assert [(type(a).__name__, a.folder) for a in plan.files] == [("WriteFile", ""), ("WriteFile", ".Archive")]


def test_nothing_changed_is_an_empty_plan():
    plan = L.plan_write([INBOX, ARCH], FOLDER_ROWS, [msg(1, flags={"\\Seen"})], [row(1, 1, flags={"\\Seen"})], {})
    assert not plan


def test_flag_change_move_expunge_and_stray():
    rows = [row(1, 1), row(2, 2), row(3, 3), row(4, 4)]
    store = [msg(1, flags={"\\Seen"}), msg(2, folder=2), msg(4)]  # 1 flagged, 2 moved, 3 expunged
    stray_file = L.DiskFile("", "new/x", msg(9).unique, frozenset())
    plan = L.plan_write([INBOX, ARCH], FOLDER_ROWS, store, rows, {stray_file.unique: stray_file})
    assert [(type(a).__name__, getattr(a, "row", None) and a.row.id) for a in plan.files] == [
        ("RenameFile", 1), ("RenameFile", 2), ("RemoveFile", 3), ("RemoveStray", None)]
    assert plan.files[1].folder == ".Archive"


def test_a_message_gone_and_new_elsewhere_with_the_same_body_is_a_rename_not_a_rewrite():
    # the store made a new placement (id 7) for the message the expunged placement 3 held
    plan = L.plan_write([INBOX, ARCH], FOLDER_ROWS, [msg(7, folder=2, sha=SHA[3])], [row(1, 3)], {})
    assert kinds(plan) == ["RenameFile"]
    assert plan.files[0].message.placement_id == 7 and plan.files[0].folder == ".Archive"


def test_a_reused_placement_id_with_another_body_is_not_the_same_file():
    plan = L.plan_write([INBOX], FOLDER_ROWS[:1], [msg(1, sha=SHA[50])], [row(1, 1)], {})
    assert sorted(kinds(plan)) == ["RemoveFile", "WriteFile"]


def test_a_file_written_before_a_crash_is_adopted_not_written_twice():
    m = msg(5)
    found = L.DiskFile("", "new/" + m.unique, m.unique, frozenset())
    plan = L.plan_write([INBOX], FOLDER_ROWS[:1], [m], [], {m.unique: found})
    assert kinds(plan) == ["AdoptFile"]


def test_folder_renamed_and_removed():
    renamed = L.StoreFolder(2, "Old2", ".Old2")
    plan = L.plan_write([renamed], FOLDER_ROWS, [], [], {})
    assert [(a.row.path, a.new_path) for a in plan.rename_folders] == [(".Archive", ".Old2")]
    assert [a.row.path for a in plan.remove_folders] == [""]


def test_claims_are_left_to_the_scan():
    plan = L.plan_write([INBOX], FOLDER_ROWS[:1], [], [row(1, 1, state="append")], {})
    assert not plan


# --- Maildir -> store ---------------------------------------------------------------------------

def test_scan_finds_flag_changes_moves_deletes_and_appends():
    rows = [row(1, 1), row(2, 2, flags={"\\Seen"}), row(3, 3), row(4, 4)]
    new = L.DiskFile(".Archive", "new/1700000000.client.host", "1700000000.client.host", frozenset())
    on_disk = [disk(rows[0], flags={"\\Seen", "\\Flagged"}), disk(rows[1], flags={"\\Seen"}),
               disk(rows[2], folder=".Archive"), new]
    plan = L.plan_scan(FOLDER_ROWS, rows, on_disk)
    got = [(type(c).__name__, getattr(c, "row", None) and c.row.id) for c in plan.changes]
    assert got == [("ClientFlags", 1), ("ClientMove", 3), ("ClientAppend", None), ("ClientDelete", 4)]
    assert plan.changes[0].add == {"\\Seen", "\\Flagged"} and not plan.changes[0].remove
    assert plan.changes[1].dest_folder_id == 2 and plan.changes[2].folder_id == 2


def test_scan_leaves_mailsync_named_files_without_a_row_to_the_write():
    m = msg(9)
    plan = L.plan_scan(FOLDER_ROWS, [], [L.DiskFile("", "new/" + m.unique, m.unique, frozenset())])
    assert plan.changes == []


def test_scan_ignores_files_in_folders_it_does_not_mirror():
    rows = [row(1, 1)]
    plan = L.plan_scan(FOLDER_ROWS, rows, [disk(rows[0], folder=".Elsewhere"),
                                           L.DiskFile(".Elsewhere", "new/a.b.c", "a.b.c", frozenset())])
    assert plan.changes == [] and len(plan.notes) == 2


def test_mass_delete_guard_holds_more_than_half_and_more_than_fifty():
    rows = [row(i, i) for i in range(1, 121)]
    keep = [disk(r) for r in rows[:55]]  # 65 of 120 gone: held
    plan = L.plan_scan(FOLDER_ROWS, rows, keep)
    assert plan.changes == [] and [(h.deleted, h.mirrored) for h in plan.held] == [(65, 120)]
    assert "65 of the 120" in plan.held[0].reason
    allowed = L.plan_scan(FOLDER_ROWS, rows, keep, allow_mass_delete=True)
    assert len(allowed.changes) == 65 and not allowed.held
    # half or less, or 50 or fewer: not held
    assert len(L.plan_scan(FOLDER_ROWS, rows, [disk(r) for r in rows[:60]]).changes) == 60
    few = rows[:60]
    assert len(L.plan_scan(FOLDER_ROWS, few, [disk(r) for r in few[:10]]).changes) == 50


def test_keywords_past_the_26_letters_do_not_rename_the_file_every_write():
    kws = {f"$k{i}" for i in range(26)}
    m = msg(1, flags={"\\Seen", "$k0", "$extra"})
    r = L.FileRow(1, 1, m.sha256, "", "cur/" + m.unique + ":2,Sa", m.unique, frozenset({"\\Seen", "$k0"}))
    assert not L.plan_write([INBOX], FOLDER_ROWS[:1], [m], [r], {}, {"": frozenset(kws)})
    # with a letter free, the keyword gets one: the file is renamed
    assert kinds(L.plan_write([INBOX], FOLDER_ROWS[:1], [m], [r], {}, {})) == ["RenameFile"]
    # a keyword that has a letter still counts in a full folder
    m2 = msg(1, flags={"\\Seen", "$k0", "$k5", "$extra"})
    assert kinds(L.plan_write([INBOX], FOLDER_ROWS[:1], [m2], [r], {}, {"": frozenset(kws)})) == ["RenameFile"]


def test_a_folder_whose_directory_went_is_removed_after_its_moves_and_held_when_it_took_many():
    rows = [row(1, 1, ".Archive"), row(2, 2, ".Archive"), row(3, 3, "")]
    moved_out = disk(rows[0], folder="")  # moved into INBOX before the folder went
    plan = L.plan_scan(FOLDER_ROWS, rows, [moved_out, disk(rows[2])], present={""})
    assert [type(c).__name__ for c in plan.changes] == ["ClientMove", "ClientRmdir"]
    assert plan.changes[1].row.path == ".Archive" and plan.changes[1].messages == 1
    many = [row(i, i, ".Archive") for i in range(1, 60)]
    plan = L.plan_scan(FOLDER_ROWS, many, [], present={""})
    assert not plan.changes and plan.held[0].folder and "vanished with its 59 messages" in plan.held[0].reason
    plan = L.plan_scan(FOLDER_ROWS, many, [], present={""}, allow_mass_delete=True)
    assert [type(c).__name__ for c in plan.changes] == ["ClientRmdir"]
    # the root (INBOX) is never removed; a folder there is no rmdir
    plan = L.plan_scan(FOLDER_ROWS, rows[2:], [], present={".Archive"})
    assert not plan.changes and "never removed" in plan.notes[0]


def test_an_adopted_maildirs_files_are_taken_by_content_not_written_again():
    theirs = L.DiskFile("", "cur/1700000000.R1.host,U=7:2,S", "1700000000.R1.host,U=7", frozenset({"\\Seen"}))
    plan = L.plan_write([INBOX], [], [msg(1, flags={"\\Seen"}), msg(2)], [], {}, foreign={("", SHA[1]): [theirs]})
    assert [(type(a).__name__, getattr(a, "found", None)) for a in plan.files] == [
        ("AdoptFile", theirs), ("WriteFile", None)]
    # the same content in another folder is not this folder's file
    plan = L.plan_write([ARCH], [], [msg(1, folder=2)], [], {}, foreign={("", SHA[1]): [theirs]})
    assert kinds(plan) == ["WriteFile"]


def test_mbsyncstate_gives_the_flags_last_agreed_by_near_uid():
    from mailsync.mirror.adopt import near_uid, parse_mbsyncstate

    text = "FarUidValidity 1\nNearUidValidity 2\nMaxPulledUid 3\n\n1 1 S\n2 5 FRS\n3 0 \n4 6\n"
    assert parse_mbsyncstate(text) == {1: {"\\Seen"}, 5: {"\\Flagged", "\\Answered", "\\Seen"}, 6: set()}
    assert near_uid("1700000000.R1.host,U=12") == 12 and near_uid("1700000000.R1.host") is None
    assert near_uid("1700000000_0.123.host,U=4,FMD5=abc") == 4  # OfflineIMAP


def test_an_mbsync_file_is_put_back_in_the_servers_form():
    from mailsync.mirror.adopt import server_form

    assert server_form(b"From: a\nX-TUID: EOXrpOzE5f+c\n\nbody\nX-TUID: stays\n") == \
        b"From: a\r\n\r\nbody\r\nX-TUID: stays\r\n"
    assert server_form(b"From: a\r\n\r\nbody\r\n") == b"From: a\r\n\r\nbody\r\n"
