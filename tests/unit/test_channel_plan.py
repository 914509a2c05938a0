"""mailsync.channel.plan (rules C1-C4) and the [[channel]] config, without servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsync.channel.plan import DestMessages, Folder, PairState, SourceMessage, map_folder, plan_copy, plan_mirror
from mailsync.config.loader import config_from_mapping
from mailsync.errors import ConfigError

DOVECOT = [Folder("INBOX", "/"), Folder("Sent", "/", "\\Sent"), Folder("Projects/Alpha", "/"), Folder("Archive", "/")]
COURIER = [Folder("INBOX", "."), Folder("INBOX.Sent Items", ".", "\\Sent"), Folder("INBOX.Old", ".")]


@pytest.mark.parametrize("name, explicit, want", [
    ("INBOX", {}, "INBOX"),
    ("Sent", {}, "INBOX.Sent Items"),  # by special use, whatever the name
    ("Projects/Alpha", {}, "INBOX.Projects.Alpha"),  # delimiter and personal namespace prefix
    ("Archive", {"Archive": "INBOX.Old"}, "INBOX.Old"),  # an explicit entry wins
])
def test_folder_map_dovecot_to_courier(name, explicit, want):
    assert map_folder(name, DOVECOT, COURIER, explicit) == want


def test_folder_map_courier_to_dovecot_drops_the_prefix():
    assert map_folder("INBOX.Old", COURIER, DOVECOT, {}) == "Old"
    assert map_folder("INBOX.Sent Items", COURIER, DOVECOT, {}) == "Sent"


def _m(pid, folder, sha, mid=None, size=10, flags=""):
    return SourceMessage(pid, folder, sha, mid, size, flags, "2026-12-07T10:00:00+00:00")


def test_a_message_the_destination_holds_is_paired_and_others_copied():
    held = {"INBOX": DestMessages(by_sha={"s1": 101}, by_key={("<m2@x>", 20): 102})}
    msgs = [_m(1, "INBOX", "s1"), _m(2, "INBOX", "s2", "<m2@x>", 20), _m(3, "INBOX", "s3", "<m3@x>", 30),
            _m(4, "Projects/Alpha", "s4")]
    plan = plan_copy(msgs, DOVECOT, DOVECOT[:1], held)
    assert plan.pairs == [(1, 101, "s1"), (2, 102, "s2")]  # C2: by body, then by Message-ID and size
    assert [(c.src.placement_id, c.folder) for c in plan.copies] == [(3, "INBOX"), (4, "Projects/Alpha")]
    assert plan.mkdirs == ["Projects/Alpha"]  # C4


def test_two_source_messages_with_one_body_make_one_copy():
    plan = plan_copy([_m(1, "INBOX", "s"), _m(2, "Archive", "s"), _m(3, "INBOX", "s")], DOVECOT,
                     DOVECOT, {}, explicit={"Archive": "INBOX"})
    assert [c.src.placement_id for c in plan.copies] == [1]
    assert plan.same == [(2, "INBOX", "s"), (3, "INBOX", "s")]  # C3


def test_folders_outside_the_patterns_are_left_alone():
    plan = plan_copy([_m(1, "INBOX", "a"), _m(2, "Sent", "b"), _m(3, "Archive", "c")], DOVECOT, DOVECOT, {},
                     include=("*",), exclude=("Sent",))
    assert [c.src.placement_id for c in plan.copies] == [1, 3]


BASE = {"store": {"url": "sqlite:///x.db"},
        "account": [{"name": n, "host": "h", "username": "u", "password": "env:P"} for n in ("old", "new")]}


def _load(channel):
    return config_from_mapping(dict(BASE, channel=channel), path=Path("/tmp/c.toml"), mode=None)


def test_a_channel_is_read_with_its_defaults():
    (ch,) = _load([{"name": "move", "from": "old", "to": "new", "map": {"Archive": "Old"}}]).channels
    assert (ch.source, ch.dest, ch.folders, ch.mode, ch.delete, dict(ch.folder_map)) == (
        "old", "new", ("*",), "copy", "none", {"Archive": "Old"})


@pytest.mark.parametrize("channel, says", [
    ({"name": "x", "from": "old", "to": "nope"}, "names no account"),
    ({"name": "x", "from": "old", "to": "old"}, "a channel joins two different accounts"),
    ({"name": "x", "from": "old", "to": "new", "mode": "copie"}, 'did you mean mode = "copy"'),
    ({"name": "x", "from": "old", "to": "new", "delete": "propagate"}, 'use mode = "mirror"'),
    ({"name": "x", "from": "old", "to": "new", "map": {"A": 1}}, "table of folder names"),
    ({"name": "x", "from": "old", "to": "new", "folders": []}, "must not be an empty array"),
    ({"from": "old", "to": "new"}, "missing required key 'name'"),
    ({"name": "x", "from": "old", "to": "new", "frm": "old"}, "unknown key 'frm'"),
])
def test_a_bad_channel_is_refused_naming_the_key_and_the_fix(channel, says):
    with pytest.raises(ConfigError) as info:
        _load([channel])
    assert says in str(info.value) + (info.value.hint or "")


def test_two_channels_with_one_name_are_refused():
    with pytest.raises(ConfigError, match="another channel"):
        _load([{"name": "x", "from": "old", "to": "new"}, {"name": "x", "from": "new", "to": "old"}])


@pytest.mark.parametrize("mode", ["mirror", "two-way"])
def test_mirror_and_two_way_channels_default_to_passing_deletions_on(mode):
    (ch,) = _load([{"name": "m", "from": "old", "to": "new", "mode": mode}]).channels
    assert (ch.mode, ch.delete) == (mode, "propagate")


def test_mirror_follows_the_source_deletion_move_flags():
    target = {"INBOX": "INBOX", "Archive": "Old"}.get
    pairs = [PairState(1, None, "", "INBOX", 11, "\\Seen"),  # C5: gone from the source
             PairState(2, "Archive", "\\Seen", "INBOX", 12, "\\Seen"),  # C6: moved to Archive there
             PairState(3, "INBOX", "\\Flagged \\Seen", "INBOX", 13, "\\Seen $Junk"),  # C7
             PairState(4, "INBOX", "", "INBOX", None, ""),  # its APPEND still waits: next run
             PairState(5, "INBOX", "\\Seen", None, None, ""),  # deleted on the destination: not made again
             PairState(6, "INBOX", "\\Seen", "INBOX", 16, "\\Seen")]  # in step
    acts = plan_mirror(pairs, target, propagate=True)
    assert [(a.kind, a.pair_id, a.uid, a.to_folder, a.add, a.remove) for a in acts] == [
        ("delete", 1, 11, None, (), ()), ("move", 2, 12, "Old", (), ()),
        ("flags", 3, 13, None, ("\\Flagged",), ("$Junk",))]
    assert [a.kind for a in plan_mirror(pairs, target, propagate=False)] == ["move", "flags"]  # delete = "none"
