"""The two-way table interrupted after each step (kill at crash point N, as isync's suite does), then
resumed: the same final state as a clean run, with no local change lost and no message duplicated."""

from __future__ import annotations

import secrets

from helpers import account_entry, password_var, run_cli, write_config
from mailsync.changes import LocalChanges
from mailsync.store.db import open_store
from twoway_support import FLAG_TABLE, account_for, apply_table_changes, assert_agree, msg, sync, table_messages


def _scenario(dovecot, tmp_path, n: int):
    user = dovecot.new_user(f"crash{n}-{secrets.token_hex(3)}", "pw")
    dovecot.load(user.name, table_messages()
                 + [("INBOX", msg(50, extra="mv")), ("INBOX", msg(51, extra="del")), ("Projects", msg(52))])
    store_url = f"sqlite:///{tmp_path}/s{n}.db"
    store = open_store(store_url)
    sync(store, account_for(user))
    uids = apply_table_changes(user, store)
    changes = LocalChanges(store)
    extra = uids[len(FLAG_TABLE):]
    changes.move("acc", "INBOX", extra[0], "Projects")
    changes.delete("acc", "INBOX", extra[1])
    changes.append("acc", "Projects", msg(60, extra="appended"), flags=["\\Seen"])
    changes.append("acc", "Projects", b"From: z@example.org\r\nSubject: no id\r\n\r\nwithout a Message-ID\r\n")
    store.dispose()
    cfg = write_config(tmp_path / f"c{n}.toml", store_url, [account_entry(user, "acc")])
    return user, store_url, cfg, uids


def _check(user, store_url, uids):
    store = open_store(store_url)
    server = assert_agree(store, user)  # exact agreement, no duplicate placements
    inbox = server["INBOX"]["messages"]
    for uid, (_s, _b, _l, expected) in zip(uids, FLAG_TABLE):
        assert inbox[uid][0] == sorted(expected.split())
    assert uids[len(FLAG_TABLE)] not in inbox and uids[len(FLAG_TABLE) + 1] not in inbox
    projects = server["Projects"]["messages"]
    # the moved one, the one already there, and the two appended: each exactly once
    assert len(projects) == 4, projects
    assert len({m[2] for m in projects.values()}) == 4
    store.dispose()


def test_interrupted_after_each_step_then_resumed(dovecot, tmp_path):
    finished = False
    for n in range(1, 80):
        user, store_url, cfg, uids = _scenario(dovecot, tmp_path, n)
        env = {password_var("acc"): "pw"}
        crashed = run_cli("sync", "--quiet", config=cfg, env=dict(env, MAILSYNC_CRASH_AFTER=str(n)))
        if crashed.returncode == 0:
            finished = True  # n is past the last crash point: every step has been interrupted once
        else:
            assert crashed.returncode == 99 and f"crash point {n}" in crashed.stderr, crashed.stderr
            resumed = run_cli("sync", "--quiet", config=cfg, env=env)
            assert resumed.returncode == 0, resumed.stderr
        run_cli("sync", "--quiet", config=cfg, env=env, check=True)  # settles what the server echoes back
        _check(user, store_url, uids)
        if finished:
            break
    assert finished and n > 10
