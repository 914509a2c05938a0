"""`sync --dry-run` against the real Dovecot: the plan is what the following sync then does, and the dry
run changes nothing, neither in the store (every byte of the database and the pack files) nor on the
server (every folder's UIDs, flags, MODSEQs and counters, as a second client sees them).

Run as configured, without QRESYNC (CONDSTORE alone) and without CONDSTORE, so that each delta mode
and the full listing are planned.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from helpers import client_for
from mailsync.changes import LocalChanges
from mailsync.store import tables
from mailsync.store.db import open_store
from mailsync.store.uow import UnitOfWork
from mailsync.sync.dry_run import dry_run
from mailsync.sync.engine import sync_account
from twoway_support import account_for, assert_agree, msg, store_snapshot, sync

VARIANTS = {"full": (), "no-qresync": ("QRESYNC",), "no-condstore": ("CONDSTORE", "QRESYNC")}


@pytest.fixture(params=list(VARIANTS))
def server(request, dovecot, dovecot_factory):
    removed = VARIANTS[request.param]
    return dovecot if not removed else dovecot_factory(remove_capabilities=removed)


@pytest.fixture
def user(server):
    return server.new_user(f"dr{secrets.token_hex(4)}", "pw-" + secrets.token_hex(4))


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "store.db"


@pytest.fixture
def store(store_path):
    s = open_store(f"sqlite:///{store_path}")
    yield s
    s.dispose()


# -- what "changes nothing" is measured by ----------------------------------------------------------

def store_state(store, path: Path | None) -> dict:
    """Every row of every table, and the SHA-256 of the SQLite database file and of each pack file."""
    rows = {}
    with store.engine.connect() as c:
        for name, table in tables.metadata.tables.items():
            if name.startswith("crm_"):
                continue
            rows[name] = sorted(map(tuple, c.execute(select(table)).all()), key=repr)
    files = {} if path is None else {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                                     for p in [path, *sorted(path.parent.glob(path.name + "-bodies/*"))]
                                     if p.is_file()}
    return {"rows": rows, "files": files}


def server_state(user) -> dict:
    """Per folder: STATUS counters, and UID -> (flags with \\Recent, MODSEQ), read by a second client
    with EXAMINE (which changes nothing, \\Recent included)."""
    c = client_for(user)
    c.folder_encode = False
    condstore = c.has_capability("CONDSTORE")
    out = {}
    try:
        for _flags, _delim, raw in c.list_folders():
            raw = raw.decode() if isinstance(raw, bytes) else raw
            items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"] + (["HIGHESTMODSEQ"] if condstore else [])
            status = c.folder_status(raw, items)
            c.select_folder(raw, readonly=True)
            uids = c.search("ALL")
            fetched = c.fetch(uids, ["FLAGS"] + (["MODSEQ"] if condstore else [])) if uids else {}
            out[raw] = {"status": {k.decode(): v for k, v in status.items()},
                        "messages": {u: (sorted(d[b"FLAGS"]), d.get(b"MODSEQ")) for u, d in fetched.items()}}
    finally:
        c.logout()
    return out


# -- the scenario -----------------------------------------------------------------------------------

def _server_changes(user) -> None:
    """Another client: new mail, flag changes, an expunge, a move between folders, a folder renamed,
    a new folder, and a folder deleted after its message was copied elsewhere."""
    c = client_for(user)
    try:
        c.append("INBOX", msg(50, extra="new"))
        c.append("INBOX", msg(51, extra="new"), flags=[b"\\Seen"])
        c.select_folder("INBOX")
        c.add_flags([1], [b"\\Flagged"])
        c.remove_flags([7], [b"\\Seen"])
        c.delete_messages([2])
        c.expunge()
        c.copy([3], "Projects")  # a move to another folder, as any client can make one
        c.delete_messages([3])
        c.expunge()
        c.close_folder()
        c.rename_folder("Old", "Renamed")
        c.create_folder("Fresh")
        c.append("Fresh", msg(60, extra="fresh"))
        c.append("Fresh", msg(50, extra="new"))  # also new in INBOX: downloaded there, recognised here
        c.select_folder("Gone")
        c.copy([1], "Drafts")  # then the folder is deleted: its message moved to Drafts
        c.close_folder()
        c.delete_folder("Gone")
    finally:
        c.logout()


def _local_changes(store) -> None:
    changes = LocalChanges(store)
    changes.flag("acc", "INBOX", 4, add=["\\Flagged", "$Label1"])
    changes.flag("acc", "INBOX", 8, remove=["\\Seen"])
    changes.flag("acc", "INBOX", 3, add=["\\Answered"])  # moved by another client: the change follows it
    changes.flag("acc", "INBOX", 5, add=["$Label2"])  # then moved here: pushed where it lands
    changes.move("acc", "INBOX", 5, "Archive")
    changes.delete("acc", "INBOX", 6)
    changes.append("acc", "Archive", msg(70, extra="appended"), flags=["\\Seen"])
    changes.mkdir("acc", "Made")
    changes.rename("acc", "Projects", "Ablage")
    changes.move("acc", "Ablage", 1, "INBOX")  # from the folder under its new name, not on the server yet


def _first_sync(server, user, store):
    server.load(user.name, [("INBOX", msg(i), "\\Seen" if i in (7, 8) else "") for i in range(1, 11)]
                + [("Archive", msg(100 + i)) for i in range(3)] + [("Projects", msg(200 + i)) for i in range(2)]
                + [("Old", msg(300 + i)) for i in range(4)] + [("Gone", msg(500))])
    account = account_for(user)
    sync(store, account)
    return account


def _journal_placements(store) -> set[tuple[str, int]]:
    """(folder, UID) of the placements the journal's moves and appends settled."""
    pl, fo, o = tables.placements.c, tables.folders.c, tables.pending_ops.c
    with UnitOfWork(store) as uow:
        return set(map(tuple, uow.connection.execute(
            select(fo.name, pl.uid).join(tables.placements, pl.folder_id == fo.id)
            .join(tables.pending_ops, o.placement_id == pl.id).where(o.kind.in_(("move", "append")))).all()))


def _placements(store) -> dict[tuple[str, int], tuple[list[str], int, str]]:
    snap = store_snapshot(store)
    return {(f, uid): m for f, v in snap.items() for uid, m in v["messages"].items()}


def test_the_plan_is_what_the_sync_then_does(server, user, store, store_path):
    _plan_then_sync(server, user, store, store_path)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_the_plan_is_what_the_sync_then_does_with_postgresql(dovecot, store_url):
    user = dovecot.new_user(f"dp{secrets.token_hex(4)}", "pw-" + secrets.token_hex(4))
    store = open_store(store_url)
    try:
        _plan_then_sync(dovecot, user, store, None)
    finally:
        store.dispose()


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_the_dry_run_reads_the_store_in_a_transaction_that_cannot_write(store_url):
    from sqlalchemy.exc import SQLAlchemyError

    from mailsync.sync.dry_run import read_only

    store = open_store(store_url)
    try:
        with read_only(store) as c, pytest.raises(SQLAlchemyError, match="(?i)read.only|readonly"):
            c.execute(tables.accounts.insert().values(name="x", host="h", username="u"))
        with UnitOfWork(store) as uow:  # the pooled connection writes again afterwards
            uow.connection.execute(tables.accounts.insert().values(name="y", host="h", username="u"))
            uow.commit()
    finally:
        store.dispose()


def _plan_then_sync(server, user, store, store_path: Path | None) -> None:
    account = _first_sync(server, user, store)
    _server_changes(user)
    _local_changes(store)
    before_store = store_state(store, store_path)
    before_server = server_state(user)
    before = _placements(store)
    stored_bodies = {row[0] for row in before_store["rows"]["bodies"]}  # their SHA-256

    plan = dry_run(store, account)

    assert plan.ok, plan.error
    assert store_state(store, store_path) == before_store, "the dry run changed the store"
    assert server_state(user) == before_server, "the dry run changed the server"

    result = sync(store, account)
    after = _placements(store)
    assert_agree(store, user)

    # the counts the sync reports are those the plan announced
    assert (plan.folders, plan.new_messages, plan.flag_changes, plan.expunged, plan.moves, plan.pushed,
            plan.conflicts) == (result.folders, result.new_messages, result.flag_changes, result.expunged,
                                result.moves, result.pushed, result.conflicts), (plan.as_dict(), result)
    assert plan.downloads == result.bodies_downloaded
    # the scenario has something of each kind, so that each comparison can fail
    assert plan.downloads and plan.flag_changes and plan.expunged and plan.moves and plan.pushed
    assert plan.renamed == [("Old", "Renamed")]
    assert "Fresh" in plan.created and plan.dropped == ["Gone"]
    assert plan.moves == 2  # INBOX -> Projects (now Ablage), and Gone -> Drafts

    # which messages were downloaded, and their sizes: each body new to the store once, at a UID
    # the plan named; every other new placement is one the plan recognised (N1) or a local change settled
    by_name = {f.name: f for f in plan.folders_plan}
    settled = _journal_placements(store)  # the local moves and append, settled by their new UIDs
    before = {("Renamed" if f == "Old" else f, uid): m for (f, uid), m in before.items()}  # renamed, not new
    new_places = {k: m for k, m in after.items() if k not in before and k not in settled}
    planned = {(f.name, uid): size for f in plan.folders_plan for uid, size in f.downloads}
    linked = {(f.name, uid) for f in plan.folders_plan for uid in f.linked}
    assert set(new_places) == set(planned) | linked and not set(planned) & linked
    assert sorted(new_places[k][2] for k in planned) == sorted({m[2] for m in new_places.values()
                                                                if m[2] not in stored_bodies})
    assert planned == {k: new_places[k][1] for k in planned}
    assert plan.download_bytes == sum(planned.values())
    assert linked == {("Ablage", 3), ("Drafts", 1), ("Fresh", 2)}  # Fresh 2: downloaded as INBOX 11
    assert {(f.name, u) for f in plan.folders_plan for u in f.moved_in} == {("Ablage", 3), ("Drafts", 1)}
    # the flags pushed are on the server now
    for uid, add, remove in by_name["INBOX"].pushes:
        flags = set(after[("INBOX", uid)][0])
        assert set(add) <= flags and not set(remove) & flags
    assert {u for u, *_ in by_name["INBOX"].pushes} == {4, 8}
    assert by_name["Ablage"].pushes == [(3, ("\\Answered",), ())]  # rule N3
    assert by_name["Archive"].pushes == [(None, ("$Label2",), ())]
    assert any("$Label2" in after[k][0] for k in settled if k[0] == "Archive")
    assert "\\Answered" in after[("Ablage", 3)][0]
    # each journal entry the plan called done was pushed
    with UnitOfWork(store) as uow:
        o = tables.pending_ops.c
        states = dict(uow.connection.execute(select(o.id, o.state).where(o.kind != "flags")).all())
    assert {op.id: op.outcome for op in plan.ops} == {i: s for i, s in states.items() if i in {op.id for op in plan.ops}}
    assert [op.kind for op in plan.ops] == ["move", "delete", "append", "mkdir", "rename", "move"]
    assert plan.ops[-1].sends == ["UID MOVE 1 INBOX"]

    # and once the sync ran, a dry run finds nothing left to do
    again = dry_run(store, account)
    assert again.ok, again.error
    assert (again.new_messages, again.flag_changes, again.expunged, again.moves, again.pushed, again.ops) == \
        (0, 0, 0, 0, 0, [])


@pytest.mark.parametrize("allow", [False, True])
def test_deletions_the_sync_would_hold_are_shown_held(server, user, store, allow):
    """Most of a folder gone at once (rule G2): the plan holds them as the sync does; with
    --allow-deletions both remove them."""
    server.load(user.name, [("Archive", msg(400 + i)) for i in range(8)])
    account = _first_sync(server, user, store)
    c = client_for(user)
    c.select_folder("Archive")
    c.delete_messages(c.search("ALL")[:6])
    c.expunge()
    c.logout()
    plan = dry_run(store, account, allow_mass_delete=allow)
    result = sync_account(store, account, allow_mass_delete=allow)
    assert plan.ok and result.ok, (plan.error, result.error)
    assert plan.expunged == result.expunged == (6 if allow else 0)
    assert plan.set_aside == result.set_aside
    held = [f.held for f in plan.folders_plan if f.held]
    assert (held == []) if allow else (len(held) == 1 and held[0].startswith("6 of 11 messages gone"))


def test_no_store_yet_plans_a_first_sync_and_creates_nothing(server, user, tmp_path):
    server.load(user.name, [("INBOX", msg(i)) for i in range(3)] + [("Archive", msg(9))])
    plan = dry_run(None, account_for(user))
    assert plan.ok, plan.error
    sizes = {(f, uid): m[1] for f, v in __import__("helpers").server_snapshot(user).items()
             for uid, m in v["messages"].items()}
    assert {(f.name, u): s for f in plan.folders_plan for u, s in f.downloads} == sizes
    assert plan.new_messages == plan.downloads == 4
    assert list(tmp_path.iterdir()) == []


def test_local_changes_the_server_no_longer_allows(server, user, store):
    """A move of a message expunged on the server meanwhile fails (its local copy dropped), a delete of
    one already gone sends nothing, a move whose UID holds another message than the store names is
    refused: the plan says each as the sync then settles it."""
    account = _first_sync(server, user, store)
    changes = LocalChanges(store)
    ops = {"moved, gone": changes.move("acc", "INBOX", 1, "Archive"),
           "deleted, gone": changes.delete("acc", "INBOX", 2),
           "moved, mismatch": changes.move("acc", "INBOX", 4, "Archive"),
           "deleted": changes.delete("acc", "INBOX", 5)}
    changes.flag("acc", "INBOX", 3, add=["\\Seen"])
    c = client_for(user)
    c.select_folder("INBOX")
    c.delete_messages([1, 2])
    c.expunge()
    c.logout()
    with UnitOfWork(store) as uow:  # the store names another message at INBOX 4 than the server holds
        b, pl = tables.bodies.c, tables.placements.c
        sha = uow.connection.scalar(select(pl.body_sha256).where(pl.id == select(tables.pending_ops.c.placement_id)
                                                                  .where(tables.pending_ops.c.id == ops["moved, mismatch"])
                                                                  .scalar_subquery()))
        uow.connection.execute(tables.bodies.update().where(b.sha256 == sha).values(message_id="<other@example.org>"))
        uow.commit()
    plan = dry_run(store, account)
    result = sync_account(store, account)
    assert plan.ok and result.ok, (plan.error, result.error)
    with UnitOfWork(store) as uow:
        o = tables.pending_ops.c
        states = dict(uow.connection.execute(select(o.id, o.state).where(o.id.in_(list(ops.values())))).all())
    outcome = {op.id: op for op in plan.ops}
    assert {name: outcome[i].outcome for name, i in ops.items()} == {name: states[i] for name, i in ops.items()} == {
        "moved, gone": "failed", "deleted, gone": "done", "moved, mismatch": "failed", "deleted": "done"}
    assert outcome[ops["deleted, gone"]].sends == [] and outcome[ops["deleted"]].sends
    assert "expunged on the server" in outcome[ops["moved, gone"]].why
    assert "not the message the store names" in outcome[ops["moved, mismatch"]].why
    assert (plan.pushed, plan.expunged, plan.new_messages, plan.flag_changes) == \
        (result.pushed, result.expunged, result.new_messages, result.flag_changes)


def test_an_append_sent_before_a_crash_is_found_not_sent_again(tmp_path, server, user):
    """An APPEND that reached the server before the sync died (its journal entry left "sent"): the plan
    finds the copy by Message-ID and sends nothing, as the sync then does."""
    from helpers import account_entry, password_var, run_cli, server_snapshot, write_config

    server.load(user.name, [("INBOX", msg(1))])
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db", [account_entry(user, "acc")])
    env = {password_var("acc"): user.password}
    run_cli("sync", "-q", config=cfg, env=env, check=True)
    eml = tmp_path / "m.eml"
    eml.write_bytes(msg(80, extra="crash"))
    run_cli("append", "acc", "Archive", str(eml), config=cfg, env=env, check=True)
    crashed = run_cli("sync", "-q", config=cfg, env=dict(env, MAILSYNC_CRASH_AFTER="2"))  # after the APPEND
    assert crashed.returncode == 99 and "append answered" in crashed.stderr
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        plan = dry_run(store, account_for(user))
        (op,) = plan.ops
        assert (op.kind, op.state, op.outcome, op.sends) == ("append", "sent", "done", [])
        result = sync(store, account_for(user))
        assert (plan.pushed, plan.new_messages, plan.downloads) == (result.pushed, result.new_messages,
                                                                    result.bodies_downloaded) == (1, 0, 0)
    finally:
        store.dispose()
    assert len(server_snapshot(user)["Archive"]["messages"]) == 1


def _force_new_uidvalidity(server, user, folder: str) -> None:
    d = server.folder_dir(user.name, folder)
    time.sleep(1.1)  # Dovecot makes UIDVALIDITY from the clock
    (d / "dovecot-uidlist").unlink()
    for index in d.glob("dovecot.index*"):
        index.unlink()
    server.force_resync(user.name)


@pytest.mark.parametrize("replaced", [False, True])
def test_a_uidvalidity_change_is_planned_as_the_sync_settles_it(server, user, store, replaced):
    """Rule V1: the known messages found again by Message-ID and size keep their placements (a queued
    flag change among them is pushed), a new one is downloaded; a folder whose mail was replaced is
    set aside. The plan says so, and the sync then does so."""
    server.load(user.name, [("Archive", msg(i, extra="uv")) for i in range(25)])
    account = account_for(user)
    sync(store, account)
    LocalChanges(store).flag("acc", "Archive", 3, add=["\\Flagged"])
    if replaced:
        for sub in ("cur", "new"):
            for f in (server.folder_dir(user.name, "Archive") / sub).iterdir():
                f.unlink()
    _force_new_uidvalidity(server, user, "Archive")
    server.load(user.name, [("Archive", msg(i, extra="other" if replaced else "uv")) for i in range(25)
                            if replaced] + [("Archive", msg(99, extra="after"))])
    plan = dry_run(store, account)
    result = sync_account(store, account)
    assert plan.ok and result.ok, (plan.error, result.error)
    assert (plan.folders, plan.new_messages, plan.downloads, plan.flag_changes, plan.pushed, plan.expunged,
            plan.conflicts) == (result.folders, result.new_messages, result.bodies_downloaded, result.flag_changes,
                                result.pushed, result.expunged, result.conflicts)
    (archive,) = [f for f in plan.folders_plan if f.name == "Archive"]
    if replaced:
        assert archive.action == "aside" and len(plan.set_aside) == len(result.set_aside) == 1
        assert "set aside" in plan.set_aside[0] and plan.downloads == 0
    else:
        assert "25 of 25 known messages found again" in archive.reason
        assert len(archive.downloads) == 1 and [u for u, *_ in archive.pushes] == [3]
