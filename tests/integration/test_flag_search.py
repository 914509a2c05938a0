"""Rule D7 (mailsync/sync/flag_search.py) against a server like Microsoft 365's, scripted by the
fake server (tests/hostile_server.py): no CONDSTORE, ESEARCH, and PERMANENTFLAGS without \\* (the
FLAGS response names every keyword a message can have). Every sync compares the folder in full,
by one UID SEARCH RETURN (ALL) per flag instead of a FETCH of every message's flags; the store
follows the server's flags, expunges and new messages both ways, as with the FETCH listing. A
folder whose PERMANENTFLAGS has \\* (a keyword the FLAGS response does not name may exist) is read
by FETCH."""

from __future__ import annotations

import pytest

from hostile_server import HostileServer
from hostile_support import account, msg, stored, truth
from mailsync.changes import LocalChanges
from mailsync.sync.engine import sync_account


@pytest.fixture
def o365():
    srv = HostileServer(capabilities=("UIDPLUS", "MOVE", "ESEARCH"))
    srv.keywords = ("$MDNSent", "$Label1")
    srv.start()
    srv.add_folder("INBOX")
    yield srv
    srv.stop()


def _fetch_listings(srv) -> int:
    return sum(1 for c in srv.log if c.upper().startswith("UID FETCH") and "(UID FLAGS)" in c.upper())


def _searches(srv) -> list[str]:
    return [c for c in srv.log if c.upper().startswith("UID SEARCH RETURN (ALL)")]


def test_the_full_comparison_reads_flags_by_esearch_and_the_store_follows_the_server(o365, store):
    for i in range(1, 41):
        o365.add_message("INBOX", msg(i), tuple(f for f, on in (("\\Seen", i % 3 == 0), ("$Label1", i % 7 == 0),
                                                                 ("\\Flagged", i % 11 == 0)) if on))
    acc = account(o365)
    assert sync_account(store, acc).ok
    assert stored(store) == truth(o365)
    # another client changes flags, expunges two, adds one; a local change waits to be pushed
    o365.set_flags("INBOX", 5, {"\\Seen", "$Label1"})
    o365.set_flags("INBOX", 21, set())
    o365.set_flags("INBOX", 22, {"\\Answered", "\\Draft", "$MDNSent"})
    o365.expunge("INBOX", [7, 8])
    o365.add_message("INBOX", msg(99), ("\\Seen",))
    LocalChanges(store).flag("acc", "INBOX", 12, add=["\\Flagged"], remove=["\\Seen"])
    o365.log.clear()
    r = sync_account(store, acc)
    assert r.ok, r.error
    assert stored(store) == truth(o365)
    assert truth(o365)[12][0] == frozenset({"\\Flagged"})
    assert _fetch_listings(o365) == 0  # no FETCH of every message's flags
    keys = {c.split("RETURN (ALL) ", 1)[1] for c in _searches(o365)}
    assert {"ALL", "SEEN", "FLAGGED", "KEYWORD $Label1", "KEYWORD $MDNSent"} <= keys
    # a sync with nothing changed changes nothing
    before = stored(store)
    r = sync_account(store, acc)
    assert r.ok and r.flag_changes == 0 and r.new_messages == 0 and stored(store) == before


def test_a_folder_where_any_keyword_can_be_made_is_read_by_fetch(o365, store):
    o365.keywords = None  # PERMANENTFLAGS (... \*): the FLAGS response need not name every keyword
    for i in range(1, 11):
        o365.add_message("INBOX", msg(i), ("$Unnamed",) if i % 2 else ())
    acc = account(o365)
    assert sync_account(store, acc).ok
    o365.set_flags("INBOX", 2, {"$Other"})
    o365.log.clear()
    assert sync_account(store, acc).ok
    assert stored(store) == truth(o365)
    assert _fetch_listings(o365) >= 1
