"""The journal's stored form: every operation survives a round trip, rows written before a field
existed still read, and a row this version cannot read is a clear StoreError, not a KeyError."""

from __future__ import annotations

import json

import pytest

from mailsync.errors import StoreError
from mailsync.sync import journal

OPS = [
    journal.FlagChange(("\\Seen",), ("\\Flagged", "$Label1")),
    journal.Move("INBOX", 7, "Archive/2024"),
    journal.Delete("INBOX", 3, "<a@b>", 1234),
    journal.Delete("INBOX", 3, None, 1234),
    journal.Append("Sent"),
    journal.Mkdir("P&AOQ-"),
    journal.Rmdir("Old"),
    journal.Rename("A", "B"),
]


@pytest.mark.parametrize("op", OPS, ids=lambda op: type(op).__name__)
def test_round_trip(op):
    kind, args = journal.encode(op)
    assert journal.KINDS[kind] is type(op)
    assert journal.decode(kind, args) == op


def test_rows_written_by_the_dict_journal_still_read():
    """The stored form is the one LocalChanges wrote before the journal was typed."""
    assert journal.decode("flags", '{"add": ["\\\\Seen"], "remove": []}') == journal.FlagChange(("\\Seen",), ())
    assert journal.decode("move", json.dumps({"src_folder": "INBOX", "src_uid": 1, "dest_folder": "A"})) \
        == journal.Move("INBOX", 1, "A")
    old_delete = journal.decode("delete", json.dumps({"folder_name": "INBOX", "uid": 4}))
    assert old_delete == journal.Delete("INBOX", 4) and old_delete.expected is None
    assert journal.Delete("INBOX", 4, None, 10).expected == (None, 10)


@pytest.mark.parametrize("kind, args, words", [
    ("teleport", "{}", "unknown kind 'teleport'"),
    ("move", '{"src_folder": "INBOX"}', "missing"),
    ("rename", '{"old": "A", "new": "B", "color": 1}', "unknown fields ['color']"),
    ("append", "{not json", "Expecting property name"),
    ("mkdir", "[1, 2]", "not an object"),
])
def test_unreadable_rows_are_a_store_error_naming_the_row(kind, args, words):
    with pytest.raises(StoreError) as err:
        journal.decode(kind, args, op_id=42)
    assert "local change #42" in str(err.value) and words in str(err.value)
    assert err.value.hint
