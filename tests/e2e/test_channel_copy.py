"""A copy channel between two Dovecot users, through the CLI: after `mailsync sync`, a second client
sees in B exactly A's messages (folder by folder, flags, size, SHA-256 of the body, INTERNALDATE); a
message B held already is paired, not appended; a rerun appends nothing; kill -9 at crash points
of the copy, then a run to the end, leaves exactly one copy of each."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys

import pytest

from helpers import REPO, account_entry, client_for, password_var, run_cli, server_snapshot, write_config
from sqlalchemy import select

from mailsync.store import tables
from mailsync.store.db import open_store
from mailsync.store.uow import UnitOfWork
from mailsync.testing.corpus import generate_bulk, load_into


def _config(tmp_path, store_url, a, b, extra: str = ""):
    cfg = write_config(tmp_path / "c.toml", store_url, [account_entry(a, "a"), account_entry(b, "b")])
    cfg.write_text(cfg.read_text() + '\n[[channel]]\nname = "a-to-b"\nfrom = "a"\nto = "b"\n' + extra)
    env = {password_var("a"): a.password, password_var("b"): b.password}
    return cfg, env


def _contents(snapshot: dict) -> dict[str, list]:
    """Folder -> sorted (flags, size, sha256) of its messages: what two servers can agree on (UIDs differ)."""
    return {folder: sorted((tuple(fl), size, sha) for fl, size, sha in f["messages"].values())
            for folder, f in snapshot.items() if f["messages"]}


def _dates(user, folder: str) -> list[tuple[str, str]]:
    c = client_for(user)
    try:
        c.select_folder(folder, readonly=True)
        uids = c.search("ALL")
        data = c.fetch(uids, ["INTERNALDATE", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        return sorted((d[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode().strip(), d[b"INTERNALDATE"].isoformat())
                      for d in data.values())
    finally:
        c.logout()


def test_a_copy_channel_gives_b_exactly_as_messages_once(tmp_path, dovecot, store_url):
    a = dovecot.new_user("cha" + tmp_path.name[-8:], "pa")
    b = dovecot.new_user("chb" + tmp_path.name[-8:], "pb")
    load_into(dovecot, a.name, generate_bulk(120, folders=3, seed=7))
    before = server_snapshot(a)
    # another client put one of A's messages in B's INBOX already (rule C2: paired, not appended)
    c = client_for(a)
    c.select_folder("Bulk00", readonly=True)
    uid = c.search("ALL")[0]
    raw = c.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
    c.logout()
    c = client_for(b)
    c.create_folder("Bulk00")
    c.append("Bulk00", raw)
    c.logout()

    cfg, env = _config(tmp_path, store_url, a, b)
    run_cli("sync", config=cfg, env=env, check=True)
    after_a, after_b = server_snapshot(a), server_snapshot(b)
    assert _contents(after_a) == _contents(before)  # the source is not changed
    want = _contents(before)
    want_b = _contents(after_b)
    dup = want_b["Bulk00"]  # B's own copy of the one message has no flags where A's may have some
    assert len(dup) == len(want["Bulk00"]) and {s for *_, s in dup} == {s for *_, s in want["Bulk00"]}
    assert {k: v for k, v in want_b.items() if k != "Bulk00"} == {k: v for k, v in want.items() if k != "Bulk00"}
    assert _dates(b, "Bulk01") == _dates(a, "Bulk01")  # INTERNALDATE kept

    status = json.loads(run_cli("channel", "status", "--json", config=cfg, env=env, check=True).stdout)
    assert status == [{"channel": "a-to-b", "from": "a", "to": "b", "mode": "copy", "pairs": 120, "waiting": 0,
                       "failed": 0}]

    uids_b = {f: sorted(x["messages"]) for f, x in after_b.items()}
    rerun = json.loads(run_cli("sync", "--json", config=cfg, env=env, check=True).stdout)  # appends nothing
    assert {f: sorted(x["messages"]) for f, x in server_snapshot(b).items()} == uids_b
    # and costs one LIST-STATUS round trip per account (the channel reads only the store)
    assert [(r["account"], r["commands"]) for r in rerun["accounts"]] == [("a", 1), ("b", 1)], rerun

    # a new message in A reaches B in the next sync, and only it
    c = client_for(a)
    c.append("Bulk02", b"Message-ID: <late@example.org>\r\nSubject: late\r\n\r\nlate\r\n", flags=[b"\\Flagged"])
    c.logout()
    run_cli("sync", "--account", "a", config=cfg, env=env, check=True)  # a channel runs when both sync
    dry = json.loads(run_cli("sync", "--dry-run", "--json", config=cfg, env=env, check=True).stdout)
    (planned,) = dry["channels"]
    assert (planned["copies"], planned["folders_to_create"], planned["folder_map"]) == (1, [], {"Bulk02": "Bulk02"})
    assert {f: sorted(x["messages"]) for f, x in server_snapshot(b).items()} == uids_b  # the dry run changed nothing
    run_cli("sync", config=cfg, env=env, check=True)
    now_b = server_snapshot(b)
    assert len(now_b["Bulk02"]["messages"]) == len(after_b["Bulk02"]["messages"]) + 1
    assert _contents(now_b)["Bulk02"] == _contents(server_snapshot(a))["Bulk02"]


def test_kill_9_during_a_copy_then_a_rerun_leaves_one_copy_each(tmp_path, dovecot, store_url):
    a = dovecot.new_user("cka" + tmp_path.name[-8:], "pa")
    b = dovecot.new_user("ckb" + tmp_path.name[-8:], "pb")
    load_into(dovecot, a.name, generate_bulk(40, folders=2, seed=9))
    cfg, env = _config(tmp_path, store_url, a, b)
    full_env = dict(os.environ, **env, PYTHONPATH=str(REPO))
    rng = random.Random(20261207)
    reached = []

    def killed_run(**crash) -> None:
        proc = subprocess.run([sys.executable, "-m", "mailsync", "--config", str(cfg), "sync", "--quiet"],
                              env=dict(full_env, **crash), capture_output=True, text=True, timeout=300)
        reached.extend(line for line in proc.stderr.splitlines() if "crash point" in line)

    # the copy's own steps: a folder's mkdir sent; a batch of APPENDs marked sent and not sent yet;
    # one the server stored and the store did not settle yet; then kills at random steps of a run
    for name in ("mkdir sent", "appends sent", "appends answered", "appends answered:2"):
        killed_run(MAILSYNC_CRASH_AT=name)
    for _ in range(6):
        killed_run(MAILSYNC_CRASH_AFTER=str(rng.randint(1, 12)))
    for name in ("mkdir sent", "appends sent", "appends answered"):
        assert any(f"({name})" in line for line in reached), "\n".join(reached)
    run_cli("sync", config=cfg, env=env, check=True)
    want, got = _contents(server_snapshot(a)), _contents(server_snapshot(b))
    assert got == want  # every message once: none missing, none twice
    status = json.loads(run_cli("channel", "status", "--json", config=cfg, env=env, check=True).stdout)
    assert status[0]["pairs"] == 40 and status[0]["waiting"] == 0 and status[0]["failed"] == 0


@pytest.mark.parametrize("crash_at", ["appends sent:2", "appends answered:2"])
def test_kill_9_between_batches_of_appends_into_one_folder_leaves_one_copy_each(tmp_path, dovecot, store_url,
                                                                                  crash_at):
    """Several batches of APPENDs into one folder: the next batch is located and marked "sent" while
    the one before is on the wire, so a kill leaves a batch sent and not answered (or answered and
    not settled) and the next marked, sent or not; the rerun finds each copy the server holds by
    its Message-ID, appends the rest, and leaves exactly one of each."""
    from mailsync.sync.journal_push import APPEND_BATCH

    total = 2 * APPEND_BATCH + 50
    a = dovecot.new_user("cba" + tmp_path.name[-8:], "pa")
    b = dovecot.new_user("cbb" + tmp_path.name[-8:], "pb")
    load_into(dovecot, a.name, generate_bulk(total, folders=1, seed=11))
    cfg, env = _config(tmp_path, store_url, a, b)
    proc = subprocess.run([sys.executable, "-m", "mailsync", "--config", str(cfg), "sync", "--quiet"],
                          env=dict(os.environ, **env, PYTHONPATH=str(REPO), MAILSYNC_CRASH_AT=crash_at),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 99 and f"({crash_at.split(':')[0]}) reached" in proc.stderr, proc.stderr
    assert sum(len(f["messages"]) for f in server_snapshot(b).values()) <= total
    run_cli("sync", config=cfg, env=env, check=True)
    want, got = _contents(server_snapshot(a)), _contents(server_snapshot(b))
    assert sum(len(v) for v in want.values()) == total
    assert got == want  # every message once: none missing, none twice
    status = json.loads(run_cli("channel", "status", "--json", config=cfg, env=env, check=True).stdout)
    assert status[0]["pairs"] == total and status[0]["waiting"] == 0 and status[0]["failed"] == 0


def _msg(n: int) -> bytes:
    return (f"Message-ID: <x{n}-{random.random()}@example.org>\r\nFrom: a@example.org\r\nSubject: {n}\r\n\r\n"
            f"body {n}\r\n").encode()


@pytest.mark.parametrize("kind", ["cyrus", "courier"])
def test_a_copy_from_dovecot_to_another_server_maps_delimiter_namespace_and_special_use(kind, request, tmp_path,
                                                                                      dovecot, store_url):
    from helpers import mailbox

    server = request.getfixturevalue(kind)
    a = dovecot.new_user("chx" + tmp_path.name[-8:], "pa")
    b = server.new_user("chy" + tmp_path.name[-6:].lower().replace("_", "-"), "pb")
    raws = {"INBOX": _msg(1), "Projects/Alpha": _msg(2), "Sent": _msg(3)}
    dovecot.load(a.name, [("INBOX", raws["INBOX"], "\\Seen"), ("Projects/Alpha", raws["Projects/Alpha"], ""),
                          ("Sent", raws["Sent"], "\\Seen \\Answered")])
    cfg, env = _config(tmp_path, store_url, a, b)
    run_cli("sync", config=cfg, env=env, check=True)
    got = server_snapshot(b)
    for folder, raw in raws.items():
        where = mailbox(b, folder)  # "INBOX.Projects.Alpha" on Courier, "Projects/Alpha" on Cyrus
        shas = [sha for _fl, _size, sha in got[where]["messages"].values()]
        assert shas == [hashlib.sha256(raw).hexdigest()], (folder, where, got.keys())
    assert [fl for fl, _s, _h in got[mailbox(b, "Sent")]["messages"].values()] == [["\\Answered", "\\Seen"]]
    run_cli("sync", config=cfg, env=env, check=True)  # nothing twice
    assert {f: len(x["messages"]) for f, x in server_snapshot(b).items()} == {f: len(x["messages"]) for f, x in got.items()}


def test_a_mirror_channel_follows_the_source_flags_moves_and_deletions(tmp_path, dovecot, store_url):
    a = dovecot.new_user("cma" + tmp_path.name[-8:], "pa")
    b = dovecot.new_user("cmb" + tmp_path.name[-8:], "pb")
    raws = [_msg(i) for i in range(6)]
    dovecot.load(a.name, [("INBOX", r, "") for r in raws[:4]] + [("Archive", r, "\\Seen") for r in raws[4:]])
    cfg, env = _config(tmp_path, store_url, a, b, 'mode = "mirror"\n')
    run_cli("sync", config=cfg, env=env, check=True)
    assert _contents(server_snapshot(b)) == _contents(server_snapshot(a))

    # the source changes: a flag, a move (INBOX -> Archive), a delete; B's own client flags a copy
    c = client_for(a)
    c.select_folder("INBOX")
    uids = sorted(c.search("ALL"))
    c.add_flags([uids[0]], [b"\\Flagged"])
    c.move([uids[1]], "Archive")
    c.delete_messages([uids[2]])
    c.expunge()
    c.logout()
    c = client_for(b)
    c.select_folder("Archive")
    c.add_flags(c.search("ALL")[:1], [b"$Mine"])
    c.logout()
    moved_sha = hashlib.sha256(raws[1]).hexdigest()

    run_cli("sync", config=cfg, env=env, check=True)
    got, want = server_snapshot(b), server_snapshot(a)
    assert _contents(got) == _contents(want)  # flags, the move and the delete followed; $Mine undone
    # the moved copy was moved (one MOVE in B's journal), not deleted and copied again
    assert [sha for _fl, _size, sha in got["Archive"]["messages"].values()].count(moved_sha) == 1
    store = open_store(store_url)
    try:
        with UnitOfWork(store) as uow:
            o = tables.pending_ops.c
            kinds = sorted(k for k, in uow.connection.execute(
                select(o.kind).join(tables.accounts, tables.accounts.c.id == o.account_id)
                .where(tables.accounts.c.name == "b", o.state == "done", o.kind != "append")))
    finally:
        store.dispose()
    assert kinds == ["delete", "flags", "flags", "move"], kinds  # \\Flagged on, $Mine off
    run_cli("sync", config=cfg, env=env, check=True)  # and then nothing more happens
    assert {f: set(x["messages"]) for f, x in server_snapshot(b).items()} == {f: set(x["messages"]) for f, x in got.items()}


def test_under_watch_a_new_message_in_the_source_reaches_the_destination(tmp_path, dovecot):
    """The daemon runs a channel after its source's sync; the copy waits in B's journal, which
    wakes B's sync: a message APPENDed to A by another client lands in B without a `mailsync sync`."""
    from watch_support import Daemon, wait_until

    a = dovecot.new_user("cwa" + tmp_path.name[-8:], "pa")
    b = dovecot.new_user("cwb" + tmp_path.name[-8:], "pb")
    dovecot.load(a.name, [("INBOX", _msg(i), "") for i in range(3)])
    cfg, env = _config(tmp_path, f"sqlite:///{tmp_path}/w.db", a, b)
    daemon = Daemon(cfg, env, tmp_path)
    try:
        daemon.wait_for("synced", account="a")
        daemon.wait_for("synced", account="b")
        wait_until(lambda: len(server_snapshot(b).get("INBOX", {}).get("messages", {})) == 3, 30,
                   "the first copies in B")
        late = _msg(99)
        c = client_for(a)
        c.append("INBOX", late)
        c.logout()
        sha = hashlib.sha256(late).hexdigest()
        wait_until(lambda: sha in [h for _f, _s, h in server_snapshot(b)["INBOX"]["messages"].values()], 30,
                   "the new message copied to B")
        assert _contents(server_snapshot(b)) == _contents(server_snapshot(a))
    finally:
        rc, _ = daemon.stop()
    assert rc == 0
