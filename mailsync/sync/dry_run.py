"""`mailsync sync --dry-run`: what one sync of an account would do, changing nothing anywhere.

Owns: gathering the views a sync gathers, read-only, and asking plan.py the questions that
engine.AccountSync asks, in the order it asks them, so that the plan shown is the one a sync would
carry out. The store is read in one transaction that is never committed (SQLite: `query_only`;
PostgreSQL: a READ ONLY transaction), so a write would fail rather than happen. The server is only
read: LIST, STATUS, EXAMINE (never SELECT), UID SEARCH, and UID FETCH of FLAGS, MODSEQ,
RFC822.SIZE and the Message-ID header (BODY.PEEK, never a body).
Must not: write to the store or the server (no SELECT, STORE, APPEND, COPY, MOVE, EXPUNGE, CREATE,
DELETE, RENAME), download a message, or decide anything plan.py decides.

Order, as in engine.py:
  1. the journal of local operations, in order: for each, the look-ups the sync makes before it
     (is the UID still there, does it hold the message the store names, was it done before a
     crash) are made, and the commands it would send are written down instead of sent;
  2. the pull, planned against the server as those pushes would leave it: a message they move or
     delete is no longer listed in its folder, a folder they create, delete or rename is listed so;
     folders (F1, F2, F4 renames), then each folder (D1 unchanged, F3/V1 UIDVALIDITY, D2-D4 mode,
     G1 listing, M1-M4, T1-T3 merge and pushes, N1 recognised bodies, N5 on Gmail), then G2 mass
     deletions (N7 on Gmail) and N2 moves once every folder was read.

What it cannot know: that the server refuses a command it would accept in principle, that another
client changes the account between the dry run and the sync (a flag push then answered MODIFIED),
and the outcome of journal entries left "sent" by a crash beyond the look-ups made here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import select

from mailsync.auth.login import open_connection
from mailsync.config.model import AccountConfig
from mailsync.errors import FolderMissing, MailsyncError, ProtocolError
from mailsync.imap import utf7
from mailsync.store import repositories as repo
from mailsync.store import tables
from mailsync.store.db import Store
from mailsync.sync import plan as rules
from mailsync.sync.dry_journal import JournalWalk, after_folder_ops, apply_folder_ops, made_folder
from mailsync.sync.dry_heads import DryHeads
from mailsync.sync.dry_plan import AccountPlan, FolderPlan
from mailsync.sync.message import message_id

Key = tuple[str | None, int]  # (Message-ID, size)


@dataclass
class _Placement:
    id: int
    uid: int
    flags: str
    base_flags: str | None
    modseq: int | None
    sha: str


@dataclass
class _Folder:
    """A folder the pull would sync, as the store would know it after the folder plan (engine._Folder)."""

    id: int | None  # None: a row the sync would add
    raw_name: str
    name: str
    status: str
    reason: str | None
    checkpoint: rules.FolderCheckpoint
    pending: bool
    placements: bool
    server_name: str  # the name to EXAMINE now (the journal may rename it first)
    journal_made: bool = False  # created by a CREATE of the journal: empty, not on the server yet


@contextlib.contextmanager
def read_only(store: Store):
    """A connection in a transaction that cannot write and is rolled back at the end."""
    with store.engine.connect() as c:
        sqlite = c.dialect.name == "sqlite"
        if sqlite:
            c.exec_driver_sql("PRAGMA query_only = ON")
        elif c.dialect.name == "postgresql":
            c.exec_driver_sql("SET TRANSACTION READ ONLY")
        c.info["packs"] = store.packs
        try:
            yield c
        finally:
            c.rollback()
            if sqlite:  # the pooled connection goes back able to write
                c.exec_driver_sql("PRAGMA query_only = OFF")
                c.rollback()


def dry_run(store: Store | None, account: AccountConfig, *, allow_mass_delete: bool = False,
            connect: Callable[[AccountConfig], object] = open_connection) -> AccountPlan:
    """The plan of one sync of ``account``. ``store`` None: there is no store yet (everything is new).
    Errors are reported in the plan, as a sync reports them in its result."""
    plan = AccountPlan(account.name)
    try:
        if store is None:
            _DryRun(None, account, plan, allow_mass_delete, connect).run()
        else:
            with read_only(store) as c:
                _DryRun(c, account, plan, allow_mass_delete, connect).run()
    except MailsyncError as exc:
        plan.ok, plan.error = False, str(exc)
    except Exception as exc:  # a bug must not take other accounts down; reported as one
        from mailsync.store.db import store_damage

        damaged = store_damage(exc, store.url if store else None)
        plan.ok = False
        plan.error = (f"account '{account.name}': {damaged}" if damaged is not None else
                      f"account '{account.name}': internal error {exc.__class__.__name__}: {exc}")
    return plan


class _DryRun(JournalWalk, DryHeads):
    """One dry run of an account: engine.AccountSync's steps, each reading instead of writing, and
    the plan (AccountPlan) filled in as it goes. ``c``: the read-only store connection, or None
    when there is no store."""

    def __init__(self, c, account: AccountConfig, plan: AccountPlan, allow_mass_delete: bool, connect) -> None:
        self.c, self.account, self.plan = c, account, plan
        self.allow_mass_delete = allow_mass_delete
        self._connect = connect
        a = tables.accounts.c
        self.account_id = None if c is None else c.scalar(select(a.id).where(a.name == account.name))
        self.bodies_before_run = c is not None and repo.has_bodies(c)
        # raw name -> UIDs the pull is not to see as the server's: the journal moves or deletes them away,
        # or settles a local placement onto them (JournalWalk._hide)
        self.gone: dict[str, set[int]] = {}
        self.touched: set[str] = set()  # folders whose counters the journal's pushes move (rule D1)
        self.folder_ops: list[tuple] = []  # ("create", raw) | ("delete", raw) | ("rename", old, new)
        self.run_keys: set[Key] = set()  # downloaded earlier in this run: found by rule N1 later in it
        self.links: list[tuple[FolderPlan, int, str, object]] = []  # (folder, uid, body sha, FETCH item): N1
        # (sha, counted as expunged, flags, base flags) of the placements tombstoned in this run (N2, N3)
        self.tombs: list[tuple[str, bool, str, str | None]] = []
        self.reread: set[str] = set()  # folders a refused change has read again in full (rules L1-L2)
        self.recreated: set[str] = set()  # folders an append creates again (rule L5)
        self.moved_pushes: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []  # (dest, +, -) of moved messages
        self.mass: list[tuple[FolderPlan, int, list[int], int]] = []  # (plan, folder id, UIDs, live): rule G2
        self.gmail = False  # the server has X-GM-EXT-1 (rules N5, N7: mailsync.sync.gmail)
        self.run_msgids: set[int] = set()  # Gmail: X-GM-MSGIDs downloaded earlier in this run (rule N5)

    # -- the store, read ---------------------------------------------------------------------------

    def _placements(self, folder_id: int | None, *, tombstones: bool = False) -> dict[int, _Placement]:
        if folder_id is None or self.c is None:
            return {}
        pl = tables.placements.c
        where = [pl.folder_id == folder_id, pl.uid.isnot(None)]
        where.append(pl.tombstone_run.isnot(None) if tombstones else pl.tombstone_run.is_(None))
        return {r.uid: _Placement(r.id, r.uid, r.flags, r.base_flags, r.modseq, r.body_sha256)
                for r in self.c.execute(select(pl.id, pl.uid, pl.flags, pl.base_flags, pl.modseq, pl.body_sha256)
                                        .where(*where))}

    # -- entry point -------------------------------------------------------------------------------

    def run(self) -> None:
        conn = self._connect(self.account)
        self.gmail = conn.has("X-GM-EXT-1")
        try:
            self._journal(conn)
            self._pull(conn)
            self._settle_mass()
            self._link()
        finally:
            conn.logout()

    # -- step 2: folders (engine._pull, _identify_renames, _apply_folder_plan) ----------------------

    def _pull(self, conn) -> None:
        acc = self.account
        listed = conn.list_folders()
        for why in getattr(conn, "unlisted", ()):
            self.plan.set_aside.append(f"a folder was set aside: {why}")
        server_name: dict[str, str] = {}  # raw name after the journal's pushes -> its name on the server now
        remote = []
        for f in listed:
            raw = after_folder_ops(f.raw_name, self.folder_ops, f.delimiter)
            if raw is None:  # the journal deletes it
                continue
            server_name[raw] = f.raw_name
            remote.append(replace(f, raw_name=raw, name=utf7.decode(raw)) if raw != f.raw_name else f)
        delimiter = next((f.delimiter for f in listed if f.delimiter), None)
        made = apply_folder_ops({f.raw_name for f in listed}, self.folder_ops, delimiter) - set(server_name)
        remote += [made_folder(raw, delimiter) for raw in sorted(made)]
        remote = [f for f in remote if f.selectable and rules.folder_selected(f.name, acc.folders, acc.exclude)]
        if not conn.has("LIST-STATUS"):  # as the sync: STATUS of each folder, or of those it does not know
            known = {f.raw_name for f in self._folder_rows()}
            remote = [f if f.raw_name in made or (not conn.condstore and f.raw_name in known)
                      else _status(conn, f, server_name[f.raw_name]) for f in remote]
        renames = self._renames(conn, remote, server_name, made)
        folders = self._folder_plan(remote, renames, server_name, made)
        status = {f.raw_name: f.status for f in remote}
        errors = []
        for folder in folders:
            fp = FolderPlan(folder.name)
            self.plan.folders_plan.append(fp)
            if folder.status == "aside":
                fp.action, fp.reason = "aside", folder.reason
                self.plan.set_aside.append(f"folder {folder.name!r} skipped: {folder.reason}")
                continue
            if folder.journal_made:
                fp.action = "empty"
                self.plan.folders += 1
                continue
            if (folder.server_name not in self.touched and folder.raw_name not in self.touched
                    and not self._relimited(folder.id)
                    and rules.folder_unchanged(folder.checkpoint, status.get(folder.raw_name),
                                           folder.pending or folder.status == "held")):
                fp.action = "unchanged"
                self.plan.folders += 1
                continue
            if folder.id is None:
                fp.action = "new"
            try:
                self._folder(conn, folder, fp)
            except ProtocolError as exc:  # as the sync: one bad folder does not stop the others
                if getattr(conn, "broken", False):
                    raise
                fp.action, fp.reason = "failed", str(exc)
                if isinstance(exc, FolderMissing) and not folder.placements:  # as the sync: left out
                    self.plan.notes.append(f"folder {folder.name!r} is listed but cannot be selected ({exc}): "
                                           f"it holds no mail here and is left out")
                    continue
                errors.append(f"folder {folder.name!r}: {exc}")
        by_raw = {f.raw_name: fp for f, fp in zip(folders, self.plan.folders_plan)}
        for dest, add, remove in self.moved_pushes:  # a moved message's queued flag change (rule T3)
            fp = by_raw.get(dest)
            if fp is not None and fp.action not in ("aside", "failed"):
                fp.pushes.append((None, add, remove))
                self.plan.pushed += 1
        if errors:
            self.plan.ok, self.plan.error = False, "; ".join(errors)

    def _folder_rows(self, gone: bool = False):
        return [] if self.account_id is None else repo.folders_of(self.c, self.account_id, gone=gone)

    def _renames(self, conn, remote, server_name: dict[str, str], made: set[str]) -> dict[str, int]:
        """engine._identify_renames, read-only (rule F4)."""
        known = self._folder_rows()
        listed = {f.raw_name for f in remote}
        known_names = {f.raw_name for f in known}
        vanished = [f for f in known if f.raw_name not in listed]
        fresh = [f for f in remote if f.raw_name not in known_names and f.raw_name not in made]
        if not vanished or not fresh:
            return {}
        with_messages = {f.id for f in vanished if repo.has_placements(self.c, f.id)}
        ids = {f.raw_name: f.mailboxid for f in fresh}
        if conn.has("OBJECTID") and any(f.mailboxid for f in vanished):
            for raw in ids:
                ids[raw] = ids[raw] or conn.select(server_name[raw], readonly=True).mailboxid
        certain, to_check = rules.rename_candidates(
            [rules.FolderIdentity(f.raw_name, (f.status or {}).get("UIDVALIDITY"), ids[f.raw_name]) for f in fresh],
            [rules.FolderIdentity(f.id, f.uidvalidity, f.mailboxid, f.id in with_messages) for f in vanished])
        checked: dict[tuple, bool] = {}
        for new_raw, folder_id in to_check:
            sample = repo.placement_keys(self.c, folder_id, rules.sample_uids(list(repo.uid_flags(self.c, folder_id))))
            found = {}
            if sample:
                conn.select(server_name[new_raw], readonly=True)
                found = {uid: (message_id(it.header_fields or b""), it.size)
                         for uid, it in conn.fetch_headers(sample).items()}
            checked[(new_raw, folder_id)] = rules.sample_agrees(sample, found)
        renames = rules.decide_renames(certain, checked)
        for new_raw, folder_id in to_check:
            if checked[(new_raw, folder_id)] and renames.get(new_raw) != folder_id:
                self.plan.notes.append(f"folder {utf7.decode(new_raw)!r}: more than one known folder could be it "
                                       f"(a rename?); synced as a new folder, its messages linked, not downloaded again")
        return renames

    def _folder_plan(self, remote, renames: dict[str, int], server_name: dict[str, str],
                     made: set[str]) -> list[_Folder]:
        """engine._apply_folder_plan without its writes: the folders the pull would then sync."""
        rows = {f.raw_name: f for f in self._folder_rows(gone=True)}
        live = {n: f for n, f in rows.items() if f.status != "gone"}
        views = [rules.FolderView(f.raw_name, f.name, f.delimiter, f.special_use) for f in remote]
        local = {n: rules.FolderView(f.raw_name, f.name, f.delimiter, f.special_use) for n, f in live.items()}
        fplan = rules.plan_folders(views, local)
        by_id = {f.id: f for n, f in live.items() if n in fplan.drop}
        renamed = {v.raw_name: by_id.pop(renames[v.raw_name]) for v in fplan.create
                   if renames.get(v.raw_name) in by_id}
        for raw, row in renamed.items():
            self.plan.renamed.append((row.name, utf7.decode(raw)))
        pending = set() if self.account_id is None else set(repo.pending_flag_placements(self.c, self.account_id))
        out: dict[str, _Folder] = {}
        for v in fplan.create:
            row = renamed.get(v.raw_name)
            if row is None:
                self.plan.created.append(v.name)
                old = rows.get(v.raw_name)  # a folder gone before and back: its checkpoints cleared
                messages = None if old is None else old.messages
                placements = old is not None and (messages is not None or repo.has_placements(self.c, old.id))
                out[v.raw_name] = _Folder(None if old is None else old.id, v.raw_name, v.name, "ok", None,
                                          rules.FolderCheckpoint(None, None, None, messages), False, placements,
                                          server_name.get(v.raw_name, v.raw_name))
        for raw in fplan.drop:
            row = by_id.get(live[raw].id)
            if row is None:  # renamed
                continue
            self.plan.dropped.append(row.name)
            self.tombs += [(p.sha, False, p.flags, p.base_flags) for p in self._placements(row.id).values()]
        for raw in fplan.sync:
            row = renamed.get(raw) or live.get(raw)
            if raw in out or row is None:
                continue
            placements = row.messages is not None or repo.has_placements(self.c, row.id)
            uidnext, modseq = (None, None) if raw in self.reread else (row.uidnext, row.highestmodseq)  # L1-L2
            out[raw] = _Folder(row.id, raw, utf7.decode(raw) if raw in renamed else row.name, row.status,
                               row.status_reason, rules.FolderCheckpoint(row.uidvalidity, uidnext, modseq, row.messages),
                               row.id in pending, placements, server_name.get(raw, raw), raw in made)
            if raw in self.recreated:  # rule L5: the old folder's messages are tombstoned (found again if moved)
                self.tombs += [(p.sha, False, p.flags, p.base_flags) for p in self._placements(row.id).values()]
        return [out[raw] for raw in fplan.sync if raw in out]

    # -- step 2: one folder (engine._sync_folder, _reconcile) ---------------------------------------

    def _folder(self, conn, folder: _Folder, fp: FolderPlan,
                rematched: dict[int, _Placement] | None = None) -> None:
        cp = folder.checkpoint
        qres = (cp.uidvalidity, cp.highestmodseq) if (cp.uidvalidity and cp.highestmodseq) else None
        info = conn.select(folder.server_name, readonly=True, qresync=qres)
        gone = self.gone.get(folder.server_name, set())
        exists = info.exists - len(gone)  # as the SELECT after the journal's pushes would say
        if rematched is None and rules.decide_uidvalidity(cp.uidvalidity, info.uidvalidity,
                                                      cp.messages or 0).action == "aside":
            self._rematch(conn, folder, fp, info)
            return
        mode, reason = rules.delta_mode(qresync=conn.qresync and qres is not None, condstore=conn.condstore,
                                    stored_modseq=cp.highestmodseq if cp.uidvalidity == info.uidvalidity else None,
                                    current_modseq=info.highestmodseq, nomodseq=info.nomodseq)
        if self._relimited(folder.id) and mode != "full":  # engine._sync_folder, rule A3
            mode, reason = "full", "the download limits changed since the last sync: full comparison"
        fp.mode, fp.reason = mode, fp.reason or reason
        if rules.download_whole(mode, bodies_before_run=self.bodies_before_run, has_placements=folder.placements):
            fp.mode = "whole"
            if exists:
                within = rules.WholeFolder(info.exists, info.uidnext)
                uids = self._allowed(conn, [u for u in conn.uid_search("ALL") if u not in gone])  # rule A2
                headers = conn.fetch_headers(uids)
                taken = [uid for uid, it in sorted(headers.items()) if within.take(it.seq, uid)]
                for uid in self._gmail_links(conn, fp, taken, headers):
                    self._download(fp, uid, headers[uid])
                self._heads(conn, folder, fp, [u for u in self._larger(conn, None) if u not in gone])
            self.plan.folders += 1
            return
        contradiction = None
        listed = None
        if mode == "qresync":
            changed, vanished, full = dict(info.changed), list(info.vanished), False
        elif mode == "condstore":
            changed = (conn.uid_flags("1:*", changedsince=cp.highestmodseq)
                       if info.highestmodseq != cp.highestmodseq else {})
            vanished, full = None, False
        else:
            changed, vanished, full = {}, None, True
            if exists:
                changed, contradiction = self._listing(conn, info, exists, gone, conn.uid_flags)
        changed = {u: it for u, it in changed.items() if u not in gone}
        local_all = rematched if rematched is not None else self._placements(folder.id)
        if folder.id is not None and cp.uidvalidity != info.uidvalidity and rematched is None:
            local_all = {}  # rule F3 adopt: a folder without live placements takes the new UIDVALIDITY
        if mode == "condstore":
            new_count = sum(1 for u in changed if u not in local_all)
            if exists != len(local_all) + new_count:
                server_uids, contradiction = (self._listing(conn, info, exists, gone, lambda: conn.uid_search("ALL"))
                                              if exists else (set(), None))
                server_uids = set(server_uids)
                vanished, listed = sorted(set(local_all) - server_uids), server_uids
            else:
                vanished = []
        # rule M4: tombstones of an earlier run whose UIDs are listed again are lifted
        tombstones = {} if rematched is not None else self._placements(folder.id, tombstones=True)  # V1 drops them
        for uid, p in tombstones.items():
            if uid in (changed if listed is None else listed) and uid not in local_all:
                local_all[uid] = p
        if full:
            local = local_all
        else:
            wanted = set(changed) | set(vanished or ())
            pending_ids = self._pending_ids(folder.id)
            local = {u: p for u, p in local_all.items() if u in wanted or p.id in pending_ids}
        policy = self.account.conflict
        last = self._last_synced(folder.id)
        view = {uid: rules.LocalMessage(p.flags, p.base_flags, p.modseq, bool(
                    policy == "newest" and p.base_flags is None and last is not None
                    and _newest(self.c, p.id, last))) for uid, p in local.items()}
        mp = rules.plan_messages(view, {uid: rules.ServerMessage(it.flags or (), it.modseq) for uid, it in changed.items()},
                             vanished=vanished, full=full, policy=policy)
        self._deletions(folder, fp, mp.expunged, local, len(local) if full else len(local_all), contradiction)
        fp.flag_changes = mp.flag_changes
        self.plan.flag_changes += mp.flag_changes
        fp.conflicts = [(uid, flag, kept) for uid, flag, _s, _l, kept in mp.conflicts]
        self.plan.conflicts += len(mp.conflicts)
        pending_ids = self._pending_ids(folder.id)
        fp.settled = len(mp.settled) + sum(1 for p in local.values() if p.id in pending_ids and p.flags == p.base_flags
                                           and p.uid not in mp.settled)
        fp.pushes = [(uid, add, remove) for uid, add, remove, _m in mp.pushes]
        self.plan.pushed += len(mp.pushes)  # each answered without MODIFIED, as when nothing changes meanwhile
        new = self._allowed(conn, mp.new) if mp.new else mp.new  # rule A1
        if new:
            headers = rules.only_asked(conn.fetch_headers(new), new)
            self._new_messages(folder, fp, self._gmail_links(conn, fp, new, headers), headers)
        self._heads(conn, folder, fp, self._larger(conn, mp.new) if mp.new else [])
        if self._relimited(folder.id):  # rule H3: the bodies a looser max_size allows now
            self._completed(folder.id, fp)
        self.plan.folders += 1

    def _allowed(self, conn, uids: list[int]) -> list[int]:
        """Rule A1 (mailsync.sync.limits): of ``uids``, those max_age and max_size let the sync download."""
        from datetime import datetime, timezone

        from mailsync.sync.limits import limit_criteria

        criteria = limit_criteria(self.account.max_age, self.account.max_size, datetime.now(timezone.utc))
        if criteria is None:
            return uids
        allowed = set(conn.uid_search(criteria))
        return [u for u in uids if u in allowed]

    def _relimited(self, folder_id: int | None) -> bool:
        """Was the folder last synced under other download limits (rule A3: compared in full once)?"""
        if folder_id is None or self.c is None:
            return False
        from mailsync.config.limits import limits_key

        stored = self.c.scalar(select(tables.folders.c.limits).where(tables.folders.c.id == folder_id))
        return stored is not None and stored != limits_key(self.account.max_age, self.account.max_size)

    def _listing(self, conn, info, exists: int, gone: set[int], read):
        """engine._listing (rule G1) on the listing as the journal's pushes would leave it."""
        why = None
        for _ in range(2):
            listing = read()
            listing = {u: v for u, v in listing.items() if u not in gone} if isinstance(listing, dict) else \
                [u for u in listing if u not in gone]
            now = getattr(conn, "exists", None)
            why = rules.listing_contradiction(listing, exists, info.uidnext, None if now is None else now - len(gone))
            if not why:
                break
        return listing, why

    def _deletions(self, folder: _Folder, fp: FolderPlan, expunged: list[int], local: dict[int, _Placement],
                   live: int, contradiction: str | None) -> None:
        """store_tasks.hold_deletions (rules G1-G2); the tombstones they leave, for rule N2."""
        why = rules.held_reason(len(expunged), live, contradiction, self.allow_mass_delete)
        if why is not None and contradiction is None:  # G2: decided once every folder was read
            self.mass.append((fp, folder.id, expunged, live))
            return
        if why is not None:
            fp.held = why
            self.plan.set_aside.append(f"folder {folder.name!r}: {why}")
            return
        fp.expunged = list(expunged)
        self.plan.expunged += len(expunged)
        self.tombs += [(local[uid].sha, True, local[uid].flags, local[uid].base_flags) for uid in expunged]

    def _new_messages(self, folder: _Folder, fp: FolderPlan, uids: list[int], headers: dict, take=None) -> None:
        """Rule N1: a new UID whose (Message-ID, size) names one body the store has (or will have, from
        an earlier folder of this run) is linked; the rest are downloaded (``take``: or placed by
        their headers, rule H1, dry_heads.py)."""
        take = take or self._download
        keys = {uid: (message_id(it.header_fields or b""), it.size) for uid, it in headers.items()}
        known: dict[Key, str] = {}
        if self.bodies_before_run:
            known = repo.bodies_by_message_id(self.c, [k for k in keys.values() if k[0] and k[1] is not None])
            known.update({k: f"this run: {k}" for k in keys.values() if k in self.run_keys and k not in known})
        for uid in uids:
            if uid not in headers:
                continue
            if keys[uid] in known:
                fp.linked.append(uid)
                self.links.append((fp, uid, known[keys[uid]], headers[uid]))
            else:
                take(fp, uid, headers[uid])

    def _gmail_links(self, conn, fp: FolderPlan, uids: list[int], headers: dict) -> list[int]:
        """Rule N5 (engine, gmail.py): on Gmail, a new UID whose X-GM-MSGID the store holds a body for
        (or will, from an earlier folder of this run) is linked; the rest are returned."""
        if not self.gmail or not uids:
            return uids
        from mailsync.imap.responses import format_uid_set
        from mailsync.store import gmail_repo

        listing = conn.gm_listing(format_uid_set(uids))
        ids = {uid: it.gm_msgid for uid, it in listing.items() if it.gm_msgid is not None}
        known = {} if self.account_id is None else gmail_repo.known_bodies(self.c, self.account_id, ids.values())
        rest = []
        for uid in uids:
            msgid = ids.get(uid)
            if msgid is not None and (msgid in known or msgid in self.run_msgids) and uid in headers:
                fp.linked.append(uid)
                self.links.append((fp, uid, known.get(msgid, f"this run: {msgid}"), headers[uid]))
            else:
                if msgid is not None:
                    self.run_msgids.add(msgid)
                rest.append(uid)
        return rest

    def _download(self, fp: FolderPlan, uid: int, it) -> None:
        size = it.size or 0
        fp.downloads.append((uid, size))
        self.run_keys.add((message_id(it.header_fields or b""), it.size))
        self.plan.downloads += 1
        self.plan.download_bytes += size
        self.plan.new_messages += 1

    def _pending_ids(self, folder_id: int | None) -> set[int]:
        if folder_id is None or self.account_id is None:
            return set()
        return repo.pending_flag_placements(self.c, self.account_id).get(folder_id, set())

    def _last_synced(self, folder_id: int | None):
        if folder_id is None:
            return None
        return self.c.scalar(select(tables.folders.c.last_synced_at).where(tables.folders.c.id == folder_id))

    def _rematch(self, conn, folder: _Folder, fp: FolderPlan, info) -> None:
        """engine._rematch (rule V1), read-only: the known messages found again by (Message-ID, size)
        take the new UIDs, and the folder is then compared in full."""
        uids = conn.uid_search("ALL") if info.exists else []
        headers = conn.fetch_headers(uids) if uids else {}
        index: dict[Key, list[int]] = {}
        for uid, it in headers.items():
            mid = message_id(it.header_fields or b"")
            if mid and it.size is not None:
                index.setdefault((mid, it.size), []).append(uid)
        pl, b = tables.placements.c, tables.bodies.c
        rows = self.c.execute(select(pl.id, pl.flags, pl.base_flags, pl.body_sha256, b.message_id, b.size)
                              .join(tables.bodies, b.sha256 == pl.body_sha256)
                              .where(pl.folder_id == folder.id, *repo.LIVE)).all()
        matches: dict[int, _Placement] = {}
        for pid, flags, base, sha, mid, size in rows:
            cands = index.get((mid, size)) if mid else None
            if cands and len(cands) == 1:
                matches[cands[0]] = _Placement(pid, cands[0], flags, base, None, sha)
        old = folder.checkpoint.uidvalidity
        if not rules.uidvalidity_rematch_accepted(len(rows), len(matches)):
            why = (f"UIDVALIDITY changed from {old} to {info.uidvalidity} and only {len(matches)} of "
                   f"{len(rows)} known messages were found again; set aside, nothing was deleted")
            fp.action, fp.reason = "aside", why
            self.plan.set_aside.append(f"folder {folder.name!r}: {why}")
            return
        fp.reason = (f"UIDVALIDITY changed from {old} to {info.uidvalidity}: {len(matches)} of {len(rows)} known "
                     f"messages found again by Message-ID and size")
        fresh = replace(folder, checkpoint=rules.FolderCheckpoint(info.uidvalidity, None, None, None), pending=True)
        self._folder(conn, fresh, fp, rematched=matches)

    # -- step 2, end: rules G2 and N2 (store_tasks.settle_mass, link_deferred) --------------------------

    def _settle_mass(self) -> None:
        arrived = {sha for _fp, _uid, sha, _item in self.links}
        for fp, folder_id, uids, live in self.mass:
            rows = self._placements(folder_id)
            kept = set()
            if self.gmail and self.account_id is not None:  # rule N7: still in All Mail
                from mailsync.store import gmail_repo

                kept = gmail_repo.live_elsewhere(self.c, self.account_id, folder_id, {p.sha for p in rows.values()})
            moved = [u for u in uids if u in rows and (rows[u].sha in arrived or rows[u].sha in kept)]
            rest = sorted(set(uids) & set(rows) - set(moved))
            why = rules.held_reason(len(rest), live, None, self.allow_mass_delete)
            gone = moved if why else moved + rest
            fp.expunged = sorted(gone)
            self.plan.expunged += len(gone)
            # counted, and not taken back by a move (as the sync)
            self.tombs += [(rows[u].sha, False, rows[u].flags, rows[u].base_flags) for u in gone]
            if why:
                fp.held = why
                self.plan.set_aside.append(f"folder {fp.name!r}: {why}")

    def _link(self) -> None:
        """engine._link_deferred: a recognised message whose body a placement tombstoned in this run
        holds is that placement moved (N2); a flag change queued for it follows it (N3) and is pushed."""
        tombs: dict[str, list[tuple[bool, str, str | None]]] = {}
        for sha, counted, flags, base in self.tombs:
            tombs.setdefault(sha, []).append((counted, flags, base))
        for fp, uid, sha, item in self.links:
            self.plan.new_messages += 1
            waiting = tombs.get(sha)
            if not waiting:
                continue
            counted, flags, base = waiting.pop(0)
            self.plan.moves += 1
            fp.moved_in.append(uid)
            if counted:
                self.plan.expunged -= 1
            if flags != base:
                mp = rules.plan_messages({uid: rules.LocalMessage(flags, base, item.modseq)},
                                     {uid: rules.ServerMessage(tuple(item.flags or ()), item.modseq)}, vanished=[],
                                     full=False, policy=self.account.conflict)
                fp.pushes += [(u, tuple(add), tuple(remove)) for u, add, remove, _m in mp.pushes]
                self.plan.pushed += len(mp.pushes)


def _status(conn, folder, server_name: str):
    """engine._status: the STATUS of a listed folder (read under its name on the server now)."""
    try:
        values, mailboxid = conn.status_reply(server_name)
    except ProtocolError:
        if getattr(conn, "broken", False):
            raise
        values, mailboxid = None, None
    return replace(folder, status=values, mailboxid=mailboxid or folder.mailboxid)


def _newest(c, placement_id: int, since) -> bool:
    """store_tasks.newest_local_change: was the pending flag change made after the server was last read?"""
    from mailsync.sync.store_tasks import newest_local_change

    return newest_local_change(c, placement_id, since)
