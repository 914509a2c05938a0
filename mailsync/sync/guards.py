"""The steps of a sync that keep a misbehaving server from costing mail (plan.py, rules M4 and
G1-G3): a listing re-read when it contradicts the SELECT, deletions held, tombstones of UIDs listed
again lifted, an APPENDUID or COPYUID checked before it is believed, a folder or a message that cannot be
used set aside with its reason.

Owns: these steps, as ServerChecks (a mixin of engine.AccountSync, whose state they share: the
account, the run, the result, the store worker's unit of work) and the queries they need.
Must not: decide (plan.py does), or reorder the sync (engine.py does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update

from mailsync.errors import ProtocolError
from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.store.tables import utcnow
from mailsync.store.uow import UnitOfWork
from mailsync.sync import plan as P
from mailsync.sync.message import message_id
from mailsync.sync.undo import L4_ERROR

if TYPE_CHECKING:
    from mailsync.imap.connection import ImapConnection

log = logging.getLogger("mailsync.sync")


def restore_tombstones(db, folder_id: int, uids: Iterable[int]) -> dict[int, int]:
    """Rule M4: lift the tombstones of the folder's placements whose UID is in ``uids``; the UIDs
    lifted -> their placement ids, by UID. Only tombstones are looked up, and they are few (each
    lives one run). A flag change that rule L4 failed because its message looked removed waits
    to be pushed again: the message was not removed after all."""
    pl = tables.placements.c
    # by the tombstone index, then this folder's (filtering by folder in SQL made SQLite walk the
    # folder's placements instead, on every sync of every folder)
    tombs = {uid: pid for pid, fid, uid in db.execute(
        select(pl.id, pl.folder_id, pl.uid).where(pl.tombstone_run.isnot(None)))
        if fid == folder_id and uid is not None}
    if not tombs:
        return {}
    back = sorted(set(tombs) & set(uids))
    ids = [tombs[u] for u in back]
    o = tables.pending_ops.c
    for i in range(0, len(ids), 500):
        db.execute(update(tables.placements).where(pl.id.in_(ids[i:i + 500])).values(tombstone_run=None))
        db.execute(update(tables.pending_ops).where(
            o.kind == "flags", o.state == "failed", o.error == L4_ERROR, o.placement_id.in_(ids[i:i + 500]))
            .values(state="pending", error=None, updated_at=utcnow()))
    return {u: tombs[u] for u in back}


def live_count(db, folder_id: int) -> int:
    """How many placements of the folder are on the server, as far as the store knows."""
    pl = tables.placements.c
    return db.scalar(select(func.count()).select_from(tables.placements)
                     .where(pl.folder_id == folder_id, *repo.LIVE)) or 0


class ServerChecks:
    """Steps of engine.AccountSync (see there for the order they run in)."""

    def _appended_uid(self, conn: ImapConnection, db, folder: str, answer: tuple[int, int] | None, raw: bytes,
                      mid: str | None) -> int | None:
        """The UID of the message just appended, from APPENDUID when it can be believed (RFC 4315):
        never one of a UIDVALIDITY other than the folder's, and a UID the store already holds only when
        the server, asked, shows our message there. Otherwise the new copy is looked for by
        Message-ID; None leaves the placement to be matched by its body when the pull sees it."""
        if answer and self._believe_uid(conn, db, folder, "APPENDUID", answer[0], answer[1], (mid, len(raw))):
            return answer[1]
        return self._find_new_copy(conn, db, folder, mid)

    def _copied_uid(self, conn: ImapConnection, db, folder: str, answer, src_uid: int,
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

    def _believe_uid(self, conn: ImapConnection, db, folder: str, code: str, validity: int | None, uid: int,
                     key: tuple[str | None, int] | None) -> bool:
        """May the UID a server named in ``code`` (APPENDUID, COPYUID) for our new copy in ``folder``
        be attached to it? Not when its UIDVALIDITY is another than the folder's (RFC 4315); a UID
        the store already holds only when the server, asked, shows our message (``key``) there.
        Each refusal goes to the run's notes; the caller then looks at the server instead."""
        known_validity, known = db.call(self._folder_uids, folder)
        if validity is not None and known_validity is not None and validity != known_validity:
            self.result.notes.append(f"folder {folder!r}: {code} names UIDVALIDITY {validity} (UID {uid}), not "
                                     f"the folder's {known_validity}: not used")
            return False
        if uid not in known or (key is not None and self._holds(conn, folder, uid, key)):
            return True
        self.result.notes.append(f"folder {folder!r}: {code} {validity} {uid} names a UID that holds another "
                                 f"message: not used")
        return False

    def _holds(self, conn: ImapConnection, folder: str, uid: int, key: tuple[str | None, int]) -> bool:
        """Does the server's `folder` hold the message ``key`` (Message-ID, size) at ``uid``?"""
        conn.select(folder)
        item = conn.fetch_headers([uid]).get(uid)
        return (item is not None and item.size == key[1]
                and message_id(item.header_fields or b"") == key[0])

    def _folder_uids(self, uow: UnitOfWork, raw_name: str) -> tuple[int | None, set[int]]:
        """(UIDVALIDITY, live UIDs) of a folder as the store knows it."""
        f = tables.folders.c
        row = uow.connection.execute(select(f.id, f.uidvalidity).where(f.account_id == self.account_id,
                                                                        f.raw_name == raw_name)).one_or_none()
        if row is None:
            return None, set()
        return row.uidvalidity, set(repo.uid_flags(uow.connection, row.id))

    def _folder_failed(self, uow: UnitOfWork, folder_id: int, why: str | None) -> None:
        """Show why a folder failed in this run (status "error", synced again next run), or, with
        ``why`` None, that it synced again. A folder held or set aside keeps that status."""
        fo = tables.folders.c
        values = {"status": "error", "status_reason": why} if why else {"status": "ok", "status_reason": None}
        uow.connection.execute(update(tables.folders).where(fo.id == folder_id, fo.status.in_(("ok", "error")))
                               .values(**values))
        uow.commit()

    def _status(self, conn: ImapConnection, folder) -> tuple[dict | None, str | None]:
        """STATUS of a listed folder (counters, MAILBOXID); (None, None) when the server refuses it
        (deleted since the LIST?): the folder stays in the plan (dropping it would tombstone its
        messages) and its SELECT decides."""
        try:
            return conn.status_reply(folder.raw_name)
        except ProtocolError:
            if conn.broken:
                raise
            return None, None

    def _listing(self, conn: ImapConnection, folder, info, read: Callable[[], object]):
        """Rule G1: ``read()`` a listing of the whole folder; read it again when it contradicts the
        SELECT, and when it still does, remember why (_reconcile then holds the folder's deletions)."""
        listing = read()
        why = P.listing_contradiction(listing, info.exists, info.uidnext, conn.exists)
        if why:
            log.warning("account %s: folder %r: %s; reading the listing again", self.account.name, folder.name, why)
            listing = read()
            why = P.listing_contradiction(listing, info.exists, info.uidnext, conn.exists)
            if why:
                self._contradicted[folder.id] = why
        return listing

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
            return (live_count(s, folder.id) - len(set(vanished) & set(known))
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

    def _restore_tombstones(self, uow: UnitOfWork, folder, uids) -> None:
        """Rule M4: placements tombstoned in an earlier listing whose UIDs the server lists again."""
        restored = restore_tombstones(uow.connection, folder.id, uids)
        # compared with the server in this run, so that a local flag change on them is pushed even
        # when the folder's delta (CONDSTORE, QRESYNC) does not name them
        self._pending_flags.setdefault(folder.id, set()).update(restored.values())
        restored = sorted(restored)
        if restored:
            self._audit(uow, "restored", f"{len(restored)} message(s) missing from an earlier listing are listed "
                        f"again (UID {', '.join(map(str, restored[:10]))}{'...' if len(restored) > 10 else ''}): "
                        f"kept, not downloaded again", folder=folder.name)

    def _hold_deletions(self, uow: UnitOfWork, folder, expunged: list[int], live: int | None,
                        contradiction: str | None) -> list[int]:
        """Rules G1-G2: the expunges to carry out now (all, or none while they are held); the folder's
        status says when they are held, and goes back to "ok" when nothing is."""
        s = uow.connection
        if expunged and live is None:
            live = live_count(s, folder.id)
        why = P.held_reason(len(expunged), live or 0, contradiction, self.allow_mass_delete)
        if why is not None and contradiction is None:  # G2: decided once every folder was read
            self._mass[folder.id] = (folder.name, expunged, live)
            return []
        if why is None:
            if folder.status == "held":
                repo.update_folder(s, folder.id, status="ok", status_reason=None)
            return expunged
        self._hold(uow, folder.id, folder.name, why)
        return []

    def _hold(self, uow: UnitOfWork, folder_id: int, name: str, why: str) -> None:
        repo.update_folder(uow.connection, folder_id, status="held", status_reason=why)
        self._audit(uow, "deletions_held", why, folder=name)
        self.result.set_aside.append(f"folder {name!r}: {why}")

    def _settle_mass(self, uow: UnitOfWork) -> None:
        """Rule G2, once every folder was read: of a folder's mass of expunges, those whose bodies
        arrived in another folder in this run are moves (rule N2) and are tombstoned; the rest are
        tombstoned too when they are no longer a mass, or allowed, and held otherwise. Until this
        transaction nothing of them was changed, so a crash before it deletes nothing."""
        if not self._mass:
            return
        s = uow.connection
        arrived = {sha for *_, sha in self._deferred_links}
        for folder_id, (name, uids, live) in self._mass.items():
            rows = repo.live_placements_for(s, folder_id, uids)
            moved = [u for u, p in rows.items() if p.body_sha256 in arrived]
            rest = sorted(set(rows) - set(moved))
            why = P.held_reason(len(rest), live, None, self.allow_mass_delete)
            gone = moved if why else moved + rest
            if gone:
                self.result.add(expunged=repo.tombstone(s, folder_id, gone, self.run_id))
            if why:
                self._hold(uow, folder_id, name, why)
            else:
                repo.update_folder(s, folder_id, status="ok", status_reason=None)
        self._mass.clear()
        uow.commit()

    def _substitute_date(self, folder: str | None, item, raw: bytes, exc: ProtocolError) -> str:
        """A message whose INTERNALDATE is not a date (31 February) is kept: its Date: header, or
        the epoch, stands in for it, and the run's notes say so."""
        from mailsync.sync.message import date_header

        when = date_header(raw) or "1970-01-01T00:00:00+00:00"
        where = f"folder {folder!r} " if folder else ""
        self.result.notes.append(f"{where}UID {item.uid}: {exc}; stored with the date {when} instead")
        return when
