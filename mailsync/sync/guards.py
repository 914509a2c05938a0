"""The steps of a sync that keep a misbehaving server from costing mail (plan.py, rules M4 and
G1-G3): a listing re-read when it contradicts the SELECT, deletions held, tombstones of UIDs listed
again lifted, an APPENDUID or COPYUID checked before it is believed, a folder or a message that cannot be
used set aside with its reason.

Owns: these steps on the IMAP thread, as ServerChecks (a mixin of engine.AccountSync, whose
account, run ledger and store worker they use); their transactions (held deletions, tombstones
lifted) are store_tasks.py's.
Must not: decide (plan.py does), or reorder the sync (engine.py does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from mailsync.errors import ProtocolError
from mailsync.store import repositories as repo
from mailsync.store.uow import UnitOfWork
from mailsync.sync import flag_search
from mailsync.sync import plan as rules
from mailsync.sync import store_tasks
from mailsync.sync.message import message_id

if TYPE_CHECKING:
    from mailsync.sync.session import ImapSession

log = logging.getLogger("mailsync.sync")
FLAG_CHUNK = 25_000  # UIDs per FETCH of a full listing of flags (_flags_listing)


class ServerChecks:
    """Steps of engine.AccountSync (see there for the order they run in)."""

    def _appended_uid(self, conn: ImapSession, db, folder: str, answer: tuple[int, int] | None, raw: bytes,
                      mid: str | None) -> int | None:
        """The UID of the message just appended, from APPENDUID when it can be believed (RFC 4315):
        never one of a UIDVALIDITY other than the folder's, and a UID the store already holds only when
        the server, asked, shows our message there. Otherwise the new copy is looked for by
        Message-ID; None leaves the placement to be matched by its body when the pull sees it."""
        if answer and self._believe_uid(conn, db, folder, "APPENDUID", answer[0], answer[1], (mid, len(raw))):
            return answer[1]
        return self._find_new_copy(conn, db, folder, mid)

    def _copied_uid(self, conn: ImapSession, db, folder: str, answer, src_uid: int,
                    key: tuple[str | None, int] | None) -> int | None:
        """The UID in ``folder`` of the message just moved (MOVE, or COPY then EXPUNGE) from
        ``src_uid``, from the COPYUID ``answer`` (connection.CopyUids) under the rules APPENDUID
        follows; otherwise looked for by Message-ID (``key``: its Message-ID and size)."""
        uid = answer.get(src_uid) if answer else None
        mid = key[0] if key else None
        if uid is not None and self._believe_uid(conn, db, folder, "COPYUID", getattr(answer, "uidvalidity", None),
                                                 uid, key):
            return uid
        return self._find_new_copy(conn, db, folder, mid)

    def _believe_uid(self, conn: ImapSession, db, folder: str, code: str, validity: int | None, uid: int,
                     key: tuple[str | None, int] | None) -> bool:
        """May the UID a server named in ``code`` (APPENDUID, COPYUID) for our new copy in ``folder``
        be attached to it? Not when its UIDVALIDITY is another than the folder's (RFC 4315); a UID
        the store already holds only when the server, asked, shows our message (``key``) there.
        Each refusal goes to the run's notes; the caller then looks at the server instead."""
        known_validity, known = db.call(store_tasks.folder_uids, self.account_id, folder)
        if validity is not None and known_validity is not None and validity != known_validity:
            self.ledger.note(f"folder {folder!r}: {code} names UIDVALIDITY {validity} (UID {uid}), not "
                                     f"the folder's {known_validity}: not used")
            return False
        if uid not in known or (key is not None and self._holds(conn, folder, uid, key)):
            return True
        self.ledger.note(f"folder {folder!r}: {code} {validity} {uid} names a UID that holds another "
                                 f"message: not used")
        return False

    def _holds(self, conn: ImapSession, folder: str, uid: int, key: tuple[str | None, int]) -> bool:
        """Does the server's `folder` hold the message ``key`` (Message-ID, size) at ``uid``?"""
        conn.select(folder)
        item = conn.fetch_headers([uid]).get(uid)
        return (item is not None and item.size == key[1]
                and message_id(item.header_fields or b"") == key[0])

    def _status(self, conn: ImapSession, folder) -> tuple[dict | None, str | None]:
        """STATUS of a listed folder (counters, MAILBOXID); (None, None) when the server refuses it
        (deleted since the LIST?): the folder stays in the plan (dropping it would tombstone its
        messages) and its SELECT decides."""
        try:
            return conn.status_reply(folder.raw_name)
        except ProtocolError:
            if conn.broken:
                raise
            return None, None

    def _listing(self, conn: ImapSession, folder, info, read: Callable[[], object]):
        """Rule G1: ``read()`` a listing of the whole folder; read it again when it contradicts the
        SELECT, and when it still does, remember why (_reconcile then holds the folder's deletions)."""
        listing = read()
        why = rules.listing_contradiction(listing, info.exists, info.uidnext, conn.exists)
        if why:
            log.warning("account %s: folder %r: %s; reading the listing again", self.account.name, folder.name, why)
            listing = read()
            why = rules.listing_contradiction(listing, info.exists, info.uidnext, conn.exists)
            if why:
                self._contradicted[folder.id] = why
        return listing

    def _flags_listing(self, conn: ImapSession, info) -> dict:
        """Every UID's flags (a full comparison, rule D5), in FETCHes of FLAG_CHUNK UIDs when the
        folder is larger: answers of bounded size for servers that throttle or cut long ones
        (Microsoft 365), and a memory peak that does not grow with the folder. The last chunk ends
        at ``*``, so a message that arrived since the SELECT is listed too. Where rule D7 applies
        (flag_search.py: ESEARCH, and no keyword the FLAGS response does not name), one UID SEARCH
        per flag instead."""
        keys = flag_search.search_keys(conn.has("ESEARCH"), getattr(info, "flags", None),
                                       getattr(info, "permanentflags", None))
        if keys is not None:
            every = conn.uid_search("ALL")
            return flag_search.listing_from_searches(every, {f: conn.uid_search(k) for f, k in keys.items()})
        top = (info.uidnext or 0) - 1
        if top <= FLAG_CHUNK:
            return conn.uid_flags("1:*")
        out: dict = {}
        for lo in range(1, top + 1, FLAG_CHUNK):
            hi = lo + FLAG_CHUNK - 1
            out.update(conn.uid_flags(f"{lo}:{hi}" if hi < top else f"{lo}:*"))
        return out

    def _qresync_checked(self, conn, db, folder, info, changed: dict, vanished: list[int]):
        """Rule G1 for QRESYNC: the VANISHED (EARLIER) and FETCHes a SELECT answered are believed
        only when, applied to the store, they leave as many messages as the SELECT's EXISTS says. A
        server that names as vanished what it still holds, or a store holding what an earlier run
        could not delete (held deletions, a lie kept up for one run) does not add up: the folder's UIDs
        are then listed (UID SEARCH ALL, re-read when it contradicts EXISTS too), what the listing
        lacks is what vanished, and tombstones of what it holds are lifted (rule M4).
        (vanished, the UIDs listed or None)."""
        def count(uow: UnitOfWork) -> int:
            s = uow.connection
            known = repo.live_placements_for(s, folder.id, list(changed) + list(vanished))
            return (store_tasks.live_count(s, folder.id) - len(set(vanished) & set(known))
                    + sum(1 for uid in changed if uid not in known))

        expected = db.call(count)
        if expected == info.exists and not info.vanished_unknown:
            return vanished, None
        log.warning("account %s: folder %r: QRESYNC leaves %d messages, EXISTS says %d%s; listing its UIDs",
                    self.account.name, folder.name, expected, info.exists,
                    " (its VANISHED was too large to list)" if info.vanished_unknown else "")
        listed = set(self._listing(conn, folder, info, lambda: conn.uid_search("ALL"))) if info.exists else set()
        local = db.call(lambda uow: set(repo.uid_flags(uow.connection, folder.id)))
        return sorted(local - listed), listed
