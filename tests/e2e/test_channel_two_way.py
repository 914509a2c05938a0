"""A two-way channel between two Dovecot users, through the CLI: changes made on both sides between
syncs (flags, moves, deletions, new mail, a folder rename) reach the other side; both converge,
nothing ping-pongs, and a second sync does nothing (one LIST-STATUS round trip per account)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from helpers import REPO, account_entry, client_for, mailbox, password_var, run_cli, server_snapshot, write_config


def _config(tmp_path, store_url, a, b, extra: str = ""):
    cfg = write_config(tmp_path / "c.toml", store_url, [account_entry(a, "a"), account_entry(b, "b")])
    cfg.write_text(cfg.read_text() + '\n[[channel]]\nname = "both"\nfrom = "a"\nto = "b"\nmode = "two-way"\n'
                   + extra)
    return cfg, {password_var("a"): a.password, password_var("b"): b.password}


def _msg(tag: str) -> bytes:
    return (f"Message-ID: <{tag}@two.example>\r\nFrom: x@example.org\r\nSubject: {tag}\r\n"
            f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\nbody of {tag}\r\n").encode()


def _by_id(snapshot: dict, raws: dict[str, bytes]) -> dict[str, tuple[str, tuple]]:
    """Message tag -> (folder, flags), for the messages of ``raws`` (keyed by their SHA-256)."""
    import hashlib

    tag_of = {hashlib.sha256(r).hexdigest(): t for t, r in raws.items()}
    out: dict[str, tuple[str, tuple]] = {}
    for folder, f in snapshot.items():
        for flags, _size, sha in f["messages"].values():
            tag = tag_of.get(sha, sha)
            assert tag not in out, f"{tag} twice: in {out[tag][0]} and {folder}"  # no duplicate anywhere
            out[tag] = (folder, tuple(flags))
    return out


def _uid_of(c, folder: str, tag: str) -> int:
    c.select_folder(folder)
    (uid,) = c.search(["HEADER", "Message-ID", f"<{tag}@two.example>"])
    return uid


def _change_both_sides(a, b, raws: dict[str, bytes]) -> None:
    """Between two syncs, each side's own client changes things (what the converged state must show
    is asserted in the test below)."""
    c = client_for(a)
    c.add_flags([_uid_of(c, "INBOX", "m0")], [b"\\Flagged"])
    c.move([_uid_of(c, "INBOX", "m1")], "Work")
    c.delete_messages([_uid_of(c, "INBOX", "m2")])
    c.expunge()
    c.remove_flags([_uid_of(c, "Work", "m6")], [b"\\Seen"])
    c.append("Work", raws.setdefault("a-new", _msg("a-new")), flags=[b"$Label1"])
    c.logout()
    c = client_for(b)
    c.add_flags([_uid_of(c, "INBOX", "m3")], [b"\\Seen"])
    c.add_flags([_uid_of(c, "INBOX", "m0")], [b"\\Answered"])  # and A flagged the same message
    c.move([_uid_of(c, "INBOX", "m5")], "Work")
    c.delete_messages([_uid_of(c, "INBOX", "m4")])
    c.expunge()
    c.append("INBOX", raws.setdefault("b-new", _msg("b-new")), flags=[b"\\Seen"])
    c.rename_folder("Work", "Projects")
    c.logout()


def _start(dovecot, tmp_path, store_url, prefix: str):
    a = dovecot.new_user(prefix + "a" + tmp_path.name[-8:], "pa")
    b = dovecot.new_user(prefix + "b" + tmp_path.name[-8:], "pb")
    raws = {f"m{i}": _msg(f"m{i}") for i in range(10)}
    raws["b-own"] = _msg("b-own")
    raws["shared"] = _msg("shared")
    dovecot.load(a.name, [("INBOX", raws[f"m{i}"], "") for i in range(6)]
                 + [("Work", raws[f"m{i}"], "\\Seen") for i in range(6, 10)] + [("INBOX", raws["shared"], "")])
    # B holds a message of its own, and one A holds too (paired, not copied: rule C2), flagged
    dovecot.load(b.name, [("INBOX", raws["b-own"], "\\Answered"), ("INBOX", raws["shared"], "\\Flagged")])
    cfg, env = _config(tmp_path, store_url, a, b)
    return a, b, raws, cfg, env


def _assert_converged(got_a: dict, got_b: dict, raws: dict) -> None:
    assert got_a == got_b, (got_a, got_b)
    assert got_a["m0"] == ("INBOX", ("\\Answered", "\\Flagged"))  # one flag from each side
    assert got_a["m1"][0] == "Projects"  # A's move, into the folder B renamed
    assert got_a["m5"][0] == "Projects" and got_a["m7"][0] == "Projects"  # B's move, and its rename
    assert "m2" not in got_a and "m4" not in got_a  # deletions both ways
    assert got_a["m3"] == ("INBOX", ("\\Seen",)) and got_a["m6"] == ("Projects", ())
    assert got_a["a-new"] == ("Projects", ("$Label1",)) and got_a["b-new"] == ("INBOX", ("\\Seen",))
    assert set(got_a) == set(raws) - {"m2", "m4"}


def test_two_way_changes_on_both_sides_converge_and_nothing_ping_pongs(tmp_path, dovecot, store_url):
    a, b, raws, cfg, env = _start(dovecot, tmp_path, store_url, "tw")
    run_cli("sync", config=cfg, env=env, check=True)
    got_a, got_b = _by_id(server_snapshot(a), raws), _by_id(server_snapshot(b), raws)
    assert got_a == got_b
    assert got_a["b-own"] == ("INBOX", ("\\Answered",))  # copied back to A
    assert got_a["shared"] == ("INBOX", ("\\Flagged",))  # paired, flags: the union (T4)
    assert set(got_a) == set(raws)

    _change_both_sides(a, b, raws)

    run_cli("sync", config=cfg, env=env, check=True)
    snap_a, snap_b = server_snapshot(a), server_snapshot(b)
    got_a, got_b = _by_id(snap_a, raws), _by_id(snap_b, raws)
    assert "Work" not in snap_a and "Projects" in snap_a  # B's rename reached A
    _assert_converged(got_a, got_b, raws)
    # nothing ping-pongs: the channel plans nothing more, a second sync changes nothing anywhere
    # (not even a UID) and queues no change; the one after it is one round trip per account
    dry = json.loads(run_cli("sync", "--dry-run", "--json", config=cfg, env=env, check=True).stdout)
    (planned,) = dry["channels"]
    assert (planned["copies"], planned["copies_back"], planned["folders_to_create"], planned["folders_to_rename"],
            planned["mirror"], planned["mirror_back"]) == (0, 0, [], [], {}, {}), planned
    ops_before = _journal_size(store_url)
    run_cli("sync", config=cfg, env=env, check=True)
    assert _journal_size(store_url) == ops_before
    for user, snap in ((a, snap_a), (b, snap_b)):
        assert {f: x["messages"] for f, x in server_snapshot(user).items()} == {
            f: x["messages"] for f, x in snap.items()}
    third = json.loads(run_cli("sync", "--json", config=cfg, env=env, check=True).stdout)
    assert [(r["account"], r["commands"]) for r in third["accounts"]] == [("a", 1), ("b", 1)], third


def _journal_size(store_url: str) -> int:
    from sqlalchemy import func, select

    from mailsync.store import tables
    from mailsync.store.db import open_store
    from mailsync.store.uow import UnitOfWork

    store = open_store(store_url)
    try:
        with UnitOfWork(store) as uow:
            return uow.connection.scalar(select(func.count()).select_from(tables.pending_ops))
    finally:
        store.dispose()


def test_kill_9_during_two_way_runs_then_a_run_to_the_end_converges_with_nothing_twice(tmp_path, dovecot,
                                                                                     store_url):
    a, b, raws, cfg, env = _start(dovecot, tmp_path, store_url, "tk")
    full_env = dict(os.environ, **env, PYTHONPATH=str(REPO))
    rng = random.Random(20261208)
    reached: list[str] = []

    def killed_run(**crash) -> None:
        proc = subprocess.run([sys.executable, "-m", "mailsync", "--config", str(cfg), "sync", "--quiet"],
                              env=dict(full_env, **crash), capture_output=True, text=True, timeout=300)
        reached.extend(line for line in proc.stderr.splitlines() if "crash point" in line)

    # the first run: folders, copies both ways (killed after each step of its own, and in the APPENDs)
    for name in ("channel folders queued", "channel copies queued", "appends sent", "appends answered"):
        killed_run(MAILSYNC_CRASH_AT=name)
    run_cli("sync", config=cfg, env=env, check=True)
    _change_both_sides(a, b, raws)
    # the run after changes on both sides: the actions queued and their agreement not written yet, a
    # MOVE sent and not settled, then kills at random steps
    for name in ("channel actions queued", "move sent", "move answered", "channel actions queued"):
        killed_run(MAILSYNC_CRASH_AT=name)
    for _ in range(4):
        killed_run(MAILSYNC_CRASH_AFTER=str(rng.randint(1, 10)))
    for name in ("channel folders queued", "channel copies queued", "channel actions queued", "move sent"):
        assert any(f"({name})" in line for line in reached), "\n".join(reached)
    run_cli("sync", config=cfg, env=env, check=True)
    _assert_converged(_by_id(server_snapshot(a), raws), _by_id(server_snapshot(b), raws), raws)


@pytest.mark.parametrize("kind", ["cyrus", "courier"])
def test_two_way_between_dovecot_and_another_server_maps_folders_both_ways(kind, request, tmp_path, dovecot,
                                                                           store_url):
    """Another delimiter (Courier: "INBOX." before every folder), special-use names, Cyrus's one
    UIDVALIDITY per second: a message of B's Sent reaches A's Sent, A's folders reach B by the map,
    and changes on each side reach the other through it."""
    server = request.getfixturevalue(kind)
    a = dovecot.new_user("twx" + tmp_path.name[-8:], "pa")
    b = server.new_user("twy" + tmp_path.name[-6:].lower().replace("_", "-"), "pb")
    raws = {t: _msg(t) for t in ("inbox", "alpha", "sent-a", "sent-b")}
    dovecot.load(a.name, [("INBOX", raws["inbox"], ""), ("Projects/Alpha", raws["alpha"], "\\Seen"),
                          ("Sent", raws["sent-a"], "\\Seen")])
    server.load(b.name, [("Sent", raws["sent-b"], "\\Seen \\Answered")])
    cfg, env = _config(tmp_path, store_url, a, b)
    run_cli("sync", config=cfg, env=env, check=True)

    def both() -> tuple[dict, dict]:
        got_b = {tag: (_a_name(b, folder), flags) for tag, (folder, flags) in
                 _by_id(server_snapshot(b), raws).items()}
        return _by_id(server_snapshot(a), raws), got_b

    got_a, got_b = both()
    assert got_a == got_b
    assert got_a["sent-b"] == ("Sent", ("\\Answered", "\\Seen")) and got_a["alpha"][0] == "Projects/Alpha"

    c = client_for(a)
    c.move([_uid_of(c, "INBOX", "inbox")], "Projects/Alpha")
    c.logout()
    c = client_for(b)
    c.add_flags([_uid_of(c, mailbox(b, "Projects/Alpha"), "alpha")], [b"\\Flagged"])
    c.append(mailbox(b, "INBOX"), raws.setdefault("b-new", _msg("b-new")))
    c.logout()
    run_cli("sync", config=cfg, env=env, check=True)
    got_a, got_b = both()
    assert got_a == got_b
    assert got_a["inbox"][0] == "Projects/Alpha" and got_a["alpha"] == ("Projects/Alpha", ("\\Flagged", "\\Seen"))
    assert got_a["b-new"] == ("INBOX", ())


def held_reason(stderr: str) -> list[str]:
    """The HELD reasons a run printed (as the dry run lists them)."""
    return [part.split("HELD: ", 1)[1].split(" (mailsync sync", 1)[0] for part in stderr.split("; ") if "HELD: " in part]


def _a_name(user, folder: str) -> str:
    """B's folder name as the test writes it ("/" between levels, no namespace prefix)."""
    if folder == "INBOX":
        return folder
    for name in ("Sent", "Projects/Alpha", "Projects"):
        if mailbox(user, name) == folder:
            return name
    return folder


def test_under_watch_a_change_on_either_side_reaches_the_other(tmp_path, dovecot):
    """The daemon runs a two-way channel after either account's sync: a message B's client adds and
    a flag A's client sets reach the other side without a `mailsync sync`."""
    from watch_support import Daemon, wait_until

    a = dovecot.new_user("tya" + tmp_path.name[-8:], "pa")
    b = dovecot.new_user("tyb" + tmp_path.name[-8:], "pb")
    raws = {f"w{i}": _msg(f"w{i}") for i in range(3)}
    dovecot.load(a.name, [("INBOX", raws[f"w{i}"], "") for i in range(3)])
    cfg, env = _config(tmp_path, f"sqlite:///{tmp_path}/w.db", a, b)
    daemon = Daemon(cfg, env, tmp_path)
    try:
        daemon.wait_for("synced", account="a")
        daemon.wait_for("synced", account="b")
        wait_until(lambda: len(_by_id(server_snapshot(b), raws)) == 3, 30, "the first copies in B")
        c = client_for(b)
        c.append("INBOX", raws.setdefault("from-b", _msg("from-b")))
        c.logout()
        c = client_for(a)
        c.add_flags([_uid_of(c, "INBOX", "w1")], [b"\\Flagged"])
        c.logout()
        wait_until(lambda: "from-b" in _by_id(server_snapshot(a), raws), 30, "B's new message copied to A")
        wait_until(lambda: _by_id(server_snapshot(b), raws)["w1"] == ("INBOX", ("\\Flagged",)), 30,
                   "A's flag on B's copy")
        wait_until(lambda: _by_id(server_snapshot(a), raws) == _by_id(server_snapshot(b), raws), 30,
                   "both sides the same")
    finally:
        rc, _ = daemon.stop()
    assert rc == 0


@pytest.mark.parametrize("mode", ["two-way", "mirror"])
def test_a_folder_lost_on_one_side_does_not_empty_the_other_without_allow_mass_delete(mode, tmp_path, dovecot,
                                                                                      store_url):
    a = dovecot.new_user("tga" + tmp_path.name[-8:], "pa")
    b = dovecot.new_user("tgb" + tmp_path.name[-8:], "pb")
    raws = {f"g{i}": _msg(f"g{i}") for i in range(60)}
    dovecot.load(a.name, [("Big", raw, "") for raw in raws.values()])
    cfg, env = _config(tmp_path, store_url, a, b)
    cfg.write_text(cfg.read_text().replace('mode = "two-way"', f'mode = "{mode}"'))
    run_cli("sync", config=cfg, env=env, check=True)
    assert len(_by_id(server_snapshot(b), raws)) == 60
    c = client_for(a)
    c.delete_folder("Big")  # gone from A: a mistake as often as not
    c.logout()
    held = run_cli("sync", config=cfg, env=env)
    assert held.returncode == 1
    assert "HELD: 60 deletion(s) in b's folder 'Big'" in held.stderr and "--allow-deletions" in held.stderr
    assert len(_by_id(server_snapshot(b), raws)) == 60  # nothing deleted
    dry = json.loads(run_cli("sync", "--dry-run", "--json", config=cfg, env=env, check=True).stdout)
    assert dry["channels"][0]["held"] == held_reason(held.stderr), dry["channels"]
    run_cli("sync", "--allow-mass-delete", config=cfg, env=env, check=True)
    assert _by_id(server_snapshot(b), raws) == {}
    if mode == "two-way":
        assert "Big" not in server_snapshot(a)  # the folder is not created on A again (rule G3)


def test_a_message_deleted_and_added_again_elsewhere_on_one_side_is_moved_on_the_other(tmp_path, dovecot,
                                                                                      store_url):
    """Rule T0: a message gone from A's store and back in another folder before the channel ran again
    (deleted, then restored by a client; a folder rename the sync could not tell from a new folder)
    is unpaired there: the pair follows it, and B gets a MOVE, not a deletion and a new copy."""
    from sqlalchemy import select

    from mailsync.store import tables
    from mailsync.store.db import open_store
    from mailsync.store.uow import UnitOfWork

    a, b, raws, cfg, env = _start(dovecot, tmp_path, store_url, "tr")
    run_cli("sync", config=cfg, env=env, check=True)
    c = client_for(a)
    uid = _uid_of(c, "INBOX", "m3")
    raw = c.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
    c.delete_messages([uid])
    c.expunge()
    c.logout()
    run_cli("sync", "--account", "a", config=cfg, env=env, check=True)  # A's store: m3 gone (the channel waits)
    c = client_for(a)
    c.append("Work", raw)  # and back, in another folder: to the sync, a new message there
    c.logout()
    run_cli("sync", "--account", "a", config=cfg, env=env, check=True)
    run_cli("sync", config=cfg, env=env, check=True)
    got_a, got_b = _by_id(server_snapshot(a), raws), _by_id(server_snapshot(b), raws)
    assert got_a == got_b and got_b["m3"][0] == "Work"
    store = open_store(store_url)
    try:
        with UnitOfWork(store) as uow:
            o = tables.pending_ops.c
            kinds = [k for k, in uow.connection.execute(
                select(o.kind).join(tables.accounts, tables.accounts.c.id == o.account_id)
                .where(tables.accounts.c.name == "b", o.id > 0).order_by(o.id))]
    finally:
        store.dispose()
    assert kinds[-1] == "move" and "delete" not in kinds, kinds  # the copy in B was moved, not replaced
