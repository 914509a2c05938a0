"""A local move against a server whose COPYUID (RFC 4315) lies, answered to UID MOVE (RFC 6851)
or, on a server without MOVE, to UID COPY before the STORE \\Deleted and UID EXPUNGE: a COPYUID of
another UIDVALIDITY than the destination's, or naming a UID the store knows for another message,
must not attach the moved message there. After each case the store holds what an honest server
holds, in both folders."""

from __future__ import annotations

import hashlib

import pytest

from hostile_server import HostileServer
from hostile_support import CAPABILITIES, VARIANTS, msg, store, stored, sync, truth, variant
from mailsync.changes import LocalChanges

__all__ = ["store", "variant"]  # fixtures (hostile_support), used by name


@VARIANTS
@pytest.mark.parametrize("verb", ["MOVE", "COPY"])
@pytest.mark.parametrize("lie", ["other-uidvalidity", "known-uid"])
def test_a_lying_copyuid_never_attaches_the_moved_message(variant, store, verb, lie):
    caps = CAPABILITIES[variant] + (("MOVE",) if verb == "MOVE" else ())
    with HostileServer(capabilities=caps) as server:
        server.add_folder("INBOX")
        archive = server.add_folder("Archive")
        for i in range(1, 6):
            server.add_message("INBOX", msg(i))
        for i in range(101, 104):
            server.add_message("Archive", msg(i), ("\\Seen",))
        assert sync(store, server).ok
        moved = hashlib.sha256(msg(2)).hexdigest()
        LocalChanges(store).move("acc", "INBOX", 2, "Archive")
        # the moved message really gets UID 4; UID 2 of Archive holds message 102
        validity = archive.uidvalidity + 7 if lie == "other-uidvalidity" else archive.uidvalidity
        server.script(rf"^UID {verb} ", lambda s, tag, cmd: s.honest(tag, cmd, copyuid=(validity, [2])))
        r = sync(store, server)
        assert r.ok, r.error
        assert server.truth("Archive")[4][1] == msg(2) and 2 not in server.truth("INBOX")  # the move was made
        for folder in ("INBOX", "Archive"):
            assert stored(store, folder) == truth(server, folder), folder
        assert stored(store, "Archive")[4][1] == moved
        why = "UIDVALIDITY" if lie == "other-uidvalidity" else "holds another message"
        assert any("COPYUID" in n and why in n and "not used" in n for n in r.notes), r.notes
        r = sync(store, server)  # and it stays right
        assert r.ok, r.error
        for folder in ("INBOX", "Archive"):
            assert stored(store, folder) == truth(server, folder), folder


@pytest.mark.parametrize("verb", ["MOVE", "COPY"])
def test_an_honest_copyuid_is_used_without_a_search(store, verb):
    """The check costs nothing when COPYUID names a UID the store does not know: no SEARCH."""
    caps = ("UIDPLUS", "MOVE") if verb == "MOVE" else ("UIDPLUS",)
    with HostileServer(capabilities=caps) as server:
        server.add_folder("INBOX")
        server.add_folder("Archive")
        for i in range(1, 4):
            server.add_message("INBOX", msg(i))
        assert sync(store, server).ok
        LocalChanges(store).move("acc", "INBOX", 1, "Archive")
        server.log.clear()
        r = sync(store, server)
        assert r.ok, r.error
        assert not any(c.upper().startswith("UID SEARCH") for c in server.log), server.log
        for folder in ("INBOX", "Archive"):
            assert stored(store, folder) == truth(server, folder), folder
