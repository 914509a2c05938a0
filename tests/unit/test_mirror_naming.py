"""mailsync.mirror.maildir and mailsync.mirror.mbox: names, flags, folder paths and mboxrd quoting,
as tables of cases and Hypothesis round-trips."""

from __future__ import annotations

import mailbox
import re
from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from mailsync.mirror import maildir, mbox

SYSTEM = ["\\Draft", "\\Flagged", "$Forwarded", "\\Answered", "\\Seen", "\\Deleted"]
SHA = "ab" * 32


# --- names ------------------------------------------------------------------------------------

def test_unique_name_carries_the_message_and_survives_any_info():
    u = maildir.unique_name(SHA, 2, 1700000000, 1234)
    assert u == f"1700000000.{SHA}_2.mailsync,S=1234"
    for name in (u, u + ":2,", u + ":2,FS", u + ":2,Sab"):
        assert maildir.file_key(name) == maildir.FileKey(SHA, 2)
    assert maildir.split_name(u + ":2,RS") == (u, "2,RS")
    assert maildir.split_name(u) == (u, None)


@pytest.mark.parametrize("name", ["1700000000.M1P2.host:2,S", "x", f"1.{SHA[:-1]}_0.mailsync",
                                  f"1.{SHA}_0.other", f"1.{SHA}_x.mailsync"])
def test_names_not_made_by_mailsync_have_no_key(name):
    assert maildir.file_key(name) is None


# --- flags <-> letters ------------------------------------------------------------------------

@pytest.mark.parametrize("flags, info", [
    ([], None),
    (["\\Recent"], None),
    (["\\Seen"], "2,S"),
    (["\\Seen", "\\Flagged", "\\Answered"], "2,FRS"),
    (SYSTEM, "2,DFPRST"),
    (["\\seen", "$forwarded"], "2,PS"),  # IMAP flags are case-insensitive
    (["$Label1", "\\Seen"], "2,Sa"),
    (["NonJunk"], "2,b"),
    (["\\Unknown"], "2,"),  # a flag, so cur/, but no letter of its own
])
def test_flags_to_info(flags, info):
    letters = {"$Label1": "a", "NonJunk": "b"}
    assert maildir.flags_to_info(flags, letters) == info


def test_new_holds_only_messages_without_flags():
    assert maildir.subdir_for([]) == "new"
    assert maildir.subdir_for(["\\Recent"]) == "new"
    assert maildir.subdir_for(["\\Flagged"]) == "cur"
    assert maildir.subdir_for(["$Label1"]) == "cur"


def test_info_to_flags_ignores_unknown_letters_and_other_info_versions():
    kw = {"a": "$Label1"}
    assert maildir.info_to_flags("2,DFPRSTab", kw) == set(SYSTEM) | {"$Label1"}
    assert maildir.info_to_flags("1,S", kw) == set()
    assert maildir.info_to_flags(None, kw) == set()


def test_keyword_table_keeps_numbers_and_takes_the_lowest_free():
    t = maildir.KeywordTable.parse("0 $Label1\n2 NonJunk\nbad line\n30 Past\n")
    assert t.letters() == {"$Label1": "a", "NonJunk": "c"}
    assert t.add("$Label2") and t.letters()["$Label2"] == "b"
    assert t.add("$Label1") and t.letters()["$Label1"] == "a"
    assert maildir.KeywordTable.parse(t.render()).letters() == t.letters()
    for i in range(23):
        assert t.add(f"k{i}")
    assert not t.add("one-too-many")
    assert len(t.letters()) == 26


_keyword = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e, blacklist_characters="\\()%*\"]{"),
                   min_size=1, max_size=12).filter(lambda k: k.lower() not in maildir.FLAG_LETTERS)


@given(system=st.sets(st.sampled_from(SYSTEM)), keywords=st.lists(_keyword, max_size=26, unique=True))
def test_flags_letters_round_trip(system, keywords):
    table = maildir.KeywordTable()
    for k in keywords:
        assert table.add(k)
    table = maildir.KeywordTable.parse(table.render())  # as a later run reads it
    flags = system | set(keywords)
    info = maildir.flags_to_info(flags, table.letters())
    assert maildir.info_to_flags(info, table.keywords()) == flags
    if info:
        letters = info[2:]
        assert list(letters) == sorted(letters) and len(set(letters)) == len(letters)


# --- folder paths -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, layout, path", [
    ("INBOX", "maildir++", ""),
    ("INBOX/Sub", "maildir++", ".INBOX.Sub"),
    ("Archive/2024", "maildir++", ".Archive.2024"),
    ("Entwürfe", "maildir++", ".Entwürfe"),
    ("a.b/c", "maildir++", ".a\\2eb.c"),
    (".hidden", "maildir++", ".\\2ehidden"),
    ("INBOX", "fs", "INBOX"),
    ("Archive/2024", "fs", "Archive/2024"),
    ("客户资料", "fs", "客户资料"),
    ("..", "fs", "\\2e."),
    ("INBOX/cur", "fs", "INBOX/\\63ur"),
    ("back\\slash", "fs", "back\\5cslash"),
])
def test_folder_paths(name, layout, path):
    parts = maildir.folder_parts(name, "/")
    assert maildir.folder_path(parts, layout) == path
    assert maildir.path_folder(path, layout) == parts


def test_a_delimiter_inside_a_name_is_escaped_in_the_path():
    parts = maildir.folder_parts("Lists.a/b", ".")  # a server whose delimiter is "."
    assert parts == ["Lists", "a/b"]
    assert maildir.folder_path(parts, "fs") == "Lists/a\\2fb"
    assert maildir.folder_path(parts, "maildir++") == ".Lists.a\\2fb"


_part = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=10)


@given(parts=st.lists(_part, min_size=1, max_size=4), layout=st.sampled_from(maildir.LAYOUTS))
def test_folder_paths_round_trip_and_stay_inside(parts, layout):
    path = maildir.folder_path(parts, layout)
    assert maildir.path_folder(path, layout) == parts
    segments = path.split("/")
    assert "\0" not in path and all(s not in (".", "..") for s in segments)
    if layout == "maildir++":
        assert "/" not in path
    else:
        assert len(segments) == len(parts) and not any(s in ("cur", "new", "tmp") for s in segments[1:])


# --- mboxrd -----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, quoted", [
    (b"From me\n", b">From me\n"),
    (b"a\nFrom x\n>From y\n>>From z\nFromage\n From q\n", b"a\n>From x\n>>From y\n>>>From z\nFromage\n From q\n"),
    (b"From x\r\n", b">From x\r\n"),
])
def test_mboxrd_quote(raw, quoted):
    assert mbox.quote(raw) == quoted
    assert mbox.unquote(quoted) == raw


_lines = st.lists(st.sampled_from([b"From ", b">From ", b">>From x", b"From", b"x", b"", b"\r", b" From "])
                  | st.binary(max_size=20), max_size=12)


@given(lines=_lines, eol=st.sampled_from([b"\n", b"\r\n"]))
def test_mboxrd_round_trip(lines, eol):
    raw = eol.join(lines)
    quoted = mbox.quote(raw)
    assert mbox.unquote(quoted) == raw
    assert not re.search(rb"^From ", quoted, re.MULTILINE)


def test_from_line_uses_utc_asctime():
    when = datetime(2024, 3, 5, 23, 4, 5, tzinfo=timezone.utc).astimezone()
    assert mbox.from_line("a@b", when) == b"From a@b Tue Mar  5 23:04:05 2024\n"


@pytest.mark.parametrize("raw, sender", [
    (b"Return-Path: <bounce@example.org>\r\nFrom: x\r\n\r\nb", "bounce@example.org"),
    (b"Return-Path: <>\nFrom: x\n\nb", "MAILER-DAEMON"),
    (b"From: x\n\nReturn-Path: <no@body>\n", "MAILER-DAEMON"),
])
def test_envelope_sender(raw, sender):
    assert mbox.envelope_sender(raw) == sender


def test_status_fields_replace_the_messages_own_and_keep_its_line_endings():
    raw = b"From: a\r\nStatus: RO\r\nX-Keywords: old\r\n stale\r\nSubject: s\r\n\r\nbody\r\n"
    out = mbox.with_status(raw, ["\\Flagged", "\\Draft", "$Label1", "$Forwarded"])
    assert out == (b"From: a\r\nSubject: s\r\nStatus: O\r\nX-Status: FT\r\nX-Keywords: $Forwarded $Label1\r\n"
                   b"\r\nbody\r\n")
    assert mbox.with_status(b"Subject: s\n\nb", ["\\Seen"]) == b"Subject: s\nStatus: RO\n\nb"
    assert mbox.with_status(b"Subject: s", []) == b"Subject: s\nStatus: O\n"


@given(system=st.sets(st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted"])),
       keywords=st.sets(_keyword, max_size=5))
def test_status_headers_round_trip_through_pythons_mbox_reader(system, keywords):
    """Python's mailbox reads the same flags from Status/X-Status (R O A F D) as we wrote."""
    flags = system | keywords
    data = mbox.entry(b"Subject: s\n\nbody\n", flags, datetime(2024, 1, 1, tzinfo=timezone.utc))
    msg = mailbox.mboxMessage(data[data.index(b"\n") + 1:])
    py = set(msg.get_flags())
    assert ("R" in py) == ("\\Seen" in flags) and ("A" in py) == ("\\Answered" in flags)
    assert ("F" in py) == ("\\Flagged" in flags) and ("D" in py) == ("\\Deleted" in flags)
    assert mbox.flags_of_status(msg.get("Status", ""), msg.get("X-Status", ""),
                                msg.get("X-Keywords", "")) == flags


def test_entry_ends_with_a_blank_line_after_a_message_without_a_final_newline():
    when = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert mbox.entry(b"S: x\n\nFrom here", [], when).endswith(b"\n\n>From here\n\n")


@pytest.mark.parametrize("labels,line", [
    (["\\Inbox", "Work"], b"X-Gmail-Labels: Inbox,Work\n"),  # Google Takeout's form: no backslash
    (["Muy Importante", "\\Important"], b"X-Gmail-Labels: Important,Muy Importante\n"),
    (['a,b', 'say "hi"'], b'X-Gmail-Labels: "a,b","say \\"hi\\""\n'),
    (["Wichtig-ä"], "X-Gmail-Labels: Wichtig-ä\n".encode()),
])
def test_gmail_labels_header(labels, line):
    assert mbox.gmail_labels_header(labels) == line


def test_gmail_labels_replace_the_messages_own_field_and_follow_the_status_fields():
    raw = b"Subject: s\r\nX-Gmail-Labels: Old\r\n\r\nbody\r\n"
    assert mbox.with_status(raw, ["\\Seen"], ["\\Inbox"]) == \
        b"Subject: s\r\nStatus: RO\r\nX-Gmail-Labels: Inbox\r\n\r\nbody\r\n"
    assert mbox.with_status(raw, [], None) == b"Subject: s\r\nX-Gmail-Labels: Old\r\nStatus: O\r\n\r\nbody\r\n"
