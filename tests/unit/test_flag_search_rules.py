"""Rule D7 (mailsync/sync/flag_search.py), pure: when a full comparison may be read by one ESEARCH
per flag, and the listing rebuilt from the answers."""

from __future__ import annotations

import pytest

from mailsync.imap.commands import flag_list
from mailsync.sync.flag_search import listing_from_searches, search_keys

SYSTEM = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


def test_microsoft_365s_folder_is_read_by_search():
    keys = search_keys(True, SYSTEM + ("$MDNSent",), SYSTEM + ("$MDNSent",))
    assert keys == {"\\Answered": "ANSWERED", "\\Flagged": "FLAGGED", "\\Deleted": "DELETED", "\\Seen": "SEEN",
                    "\\Draft": "DRAFT", "$MDNSent": "KEYWORD $MDNSent"}


@pytest.mark.parametrize("esearch, flags, permanent", [
    (False, SYSTEM, SYSTEM),  # no ESEARCH
    (True, SYSTEM, SYSTEM + ("\\*",)),  # any keyword can be made: FLAGS need not name them all
    (True, None, SYSTEM),  # no FLAGS response
    (True, SYSTEM, None),  # no PERMANENTFLAGS
    (True, SYSTEM, ()),  # PERMANENTFLAGS (): a read-only folder, which says nothing of its keywords
    (True, SYSTEM + ("\\Important",), SYSTEM),  # a system flag SEARCH has no key for
    (True, SYSTEM + ("bad%kw",), SYSTEM),  # a keyword SEARCH cannot name as an atom
])
def test_anywhere_else_the_listing_is_fetched(esearch, flags, permanent):
    assert search_keys(esearch, flags, permanent) is None


def test_recent_is_not_searched_and_permanent_keywords_are():
    keys = search_keys(True, SYSTEM + ("\\Recent",), SYSTEM + ("$Label1",))
    assert "\\Recent" not in keys and keys["$Label1"] == "KEYWORD $Label1"


def test_the_listing_from_the_searches():
    got = listing_from_searches([1, 2, 3, 5], {"\\Seen": [1, 3, 5, 6], "$Label1": [3], "\\Flagged": []})
    assert {uid: (it.uid, it.flags, it.modseq) for uid, it in got.items()} == {
        1: (1, ("\\Seen",), None), 2: (2, (), None), 3: (3, ("$Label1", "\\Seen"), None), 5: (5, ("\\Seen",), None)}
    # UID 6 arrived after the ALL search: left for the next sync, not half-listed


@pytest.mark.parametrize("text, expected", [
    ("(\\Answered \\flagged $Label1)", ("\\Answered", "\\Flagged", "$Label1")),
    ("(\\Seen \\*)", ("\\Seen", "\\*")), ("()", ()), ("(a (b))", None), ("\\Seen", None)])
def test_flag_list_of_a_select(text, expected):
    assert flag_list(text) == expected
