"""`mailsync watch` reads its config again while it runs: when the file changes, on SIGHUP, and (for
`watch --worker`) on `mailsync workers reload`, a NOTIFY through PostgreSQL. Real Dovecot, real
daemon processes: a new account is synced within seconds, a removed one dropped (its connections
closed, its lease given back), the others left running untouched; a bad edit is refused with the
reason logged, and the old config goes on."""

from __future__ import annotations

import secrets
import signal
import time

import pytest
from sqlalchemy import text

from helpers import account_entry, password_var, run_cli, write_config
from mailsync.store.db import open_store
from watch_support import Daemon, OtherClient, message, stored_ids, wait_until


class Accounts:
    """Dovecot users with one message each, and the config file naming a chosen set of them."""

    def __init__(self, server, tmp_path, store_url: str) -> None:
        self.server, self.path, self.url = server, tmp_path / "config.toml", store_url
        self.users, self.entries, self.env, self.first = {}, {}, {}, {}

    def make(self, name: str) -> None:
        user = self.server.new_user(f"rl-{name}-{secrets.token_hex(3)}", "pw-" + secrets.token_hex(6))
        raw, mid = message(0, f"{name}-")
        self.server.load(user.name, [("INBOX", raw, ())])
        self.users[name], self.first[name] = user, mid
        self.entries[name] = account_entry(user, name, folders=["INBOX"])
        self.env[password_var(name)] = user.password

    def write(self, *names: str, **changes) -> None:
        entries = [{**self.entries[n], **changes.get(n, {})} for n in names]
        write_config(self.path, self.url, entries)

    def deliver(self, name: str, tag: str) -> str:
        raw, mid = message(1, f"{name}-{tag}-")
        c = OtherClient(self.users[name])
        c.append("INBOX", raw)
        c.close()
        return mid


def _reloads(daemon: Daemon) -> list[dict]:
    return [e for e in daemon.events() if e["event"] == "config_reloaded"]


def _connected(daemon: Daemon, name: str) -> int:
    return sum(1 for e in daemon.events() if e["event"] == "connected" and e.get("account") == name)


def _logged_in(server, user) -> bool:
    return user.name in server.doveadm("who")


def test_an_edited_config_file_is_applied_without_restarting_the_other_accounts(dovecot, tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    acc = Accounts(dovecot, tmp_path, url)
    for n in ("a", "b", "c"):
        acc.make(n)
    acc.write("a", "b")
    d = Daemon(acc.path, acc.env, tmp_path)
    store = open_store(url)
    try:
        wait_until(lambda: stored_ids(store, {acc.first["a"], acc.first["b"]}) == {acc.first["a"], acc.first["b"]},
                   30, "the first syncs", interval=0.1)
        wait_until(lambda: _connected(d, "a") == 1 and _connected(d, "b") == 1, 10, "both connected")

        # added: synced within seconds (the file is looked at every second)
        t0 = time.monotonic()
        acc.write("a", "b", "c")
        wait_until(lambda: acc.first["c"] in stored_ids(store, {acc.first["c"]}), 10, "the new account's mail",
                   interval=0.05)
        print(f"\nan account added to the config file: its mail stored {time.monotonic() - t0:.2f} s after the write")
        (r,) = _reloads(d)
        assert r["added"] == "c" and r["removed"] == "" and r["restarted"] == "" and r["unchanged"] == 2
        assert _connected(d, "a") == 1 and _connected(d, "b") == 1  # the others were not reconnected

        # removed: its connections closed, its new mail no longer synced; the others still are
        assert _logged_in(dovecot, acc.users["b"])
        acc.write("a", "c")
        wait_until(lambda: len(_reloads(d)) == 2, 10, "the second reload")
        assert _reloads(d)[1]["removed"] == "b"
        wait_until(lambda: not _logged_in(dovecot, acc.users["b"]), 10, "b's connections closed")
        late_b, late_a = acc.deliver("b", "after-removal"), acc.deliver("a", "after-removal")
        wait_until(lambda: late_a in stored_ids(store, {late_a}), 10, "a's mail")
        time.sleep(1.5)
        assert late_b not in stored_ids(store, {late_b})

        # a changed account is restarted with its new settings; the others are not
        acc.write("a", "c", c={"folders": ["INBOX", "Sent"]})
        wait_until(lambda: len(_reloads(d)) == 3, 10, "the third reload")
        assert _reloads(d)[2]["restarted"] == "c" and _reloads(d)[2]["unchanged"] == 1
        wait_until(lambda: _connected(d, "c") == 2, 10, "c connected again")
        assert _connected(d, "a") == 1

        # a bad edit: refused, the reason logged, the running config kept
        good = acc.path.read_text()
        acc.path.write_text(good + "\n[[account]]\nname = \"broken\"\nport = \"not a number\"\n")
        refused = d.wait_for("config_refused", timeout=10)
        print(f"refused: {refused['error']}")
        assert "broken" in refused["error"] or "port" in refused["error"]
        still = acc.deliver("a", "after-bad-edit")
        wait_until(lambda: still in stored_ids(store, {still}), 10, "a's mail under the old config")
        assert len(_reloads(d)) == 3
        acc.path.write_text("[store\n")  # not even TOML
        wait_until(lambda: len([e for e in d.events() if e["event"] == "config_refused"]) == 2, 10, "refused again")
        assert "invalid TOML" in [e for e in d.events() if e["event"] == "config_refused"][1]["error"]

        # fixed: applied again
        acc.write("a", "b", "c", c={"folders": ["INBOX", "Sent"]})
        wait_until(lambda: len(_reloads(d)) == 4, 10, "the reload of the fixed file")
        wait_until(lambda: late_b in stored_ids(store, {late_b}), 10, "b's mail, b back in the config")
        rc, _ = d.stop(signal.SIGTERM)
        assert rc == 0
    finally:
        d.kill()
        store.dispose()


def test_sighup_reloads_when_the_file_poll_is_off(dovecot, tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    acc = Accounts(dovecot, tmp_path, url)
    for n in ("a", "b"):
        acc.make(n)
    acc.write("a")
    d = Daemon(acc.path, acc.env, tmp_path, "--config-poll", "0")
    store = open_store(url)
    try:
        wait_until(lambda: acc.first["a"] in stored_ids(store, {acc.first["a"]}), 30, "the first sync")
        acc.write("a", "b")
        time.sleep(2.0)
        assert _reloads(d) == []  # not looked at
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: acc.first["b"] in stored_ids(store, {acc.first["b"]}), 10, "b's mail after SIGHUP")
        assert _reloads(d)[0]["why"] == "SIGHUP" and _reloads(d)[0]["added"] == "b"
    finally:
        d.kill()
        store.dispose()


@pytest.fixture
def pg_url(postgres):
    return postgres.create_database(f"reload_{secrets.token_hex(4)}")


def test_workers_reload_reaches_every_worker_through_notify(dovecot_many, tmp_path, pg_url):
    acc = Accounts(dovecot_many, tmp_path, pg_url)
    for n in ("a", "b", "c"):
        acc.make(n)
    acc.write("a", "b")
    daemons = [Daemon(acc.path, acc.env, tmp_path, "--worker", "--lease-ttl", "2", "--config-poll", "0")
               for _ in range(2)]
    store = open_store(pg_url)

    def holder(name: str) -> str | None:
        with store.engine.connect() as conn:
            return conn.execute(text("SELECT l.worker FROM account_leases l JOIN accounts a ON a.id = l.account_id "
                                     "WHERE a.name = :n AND l.expires_at > now()"), {"n": name}).scalar()

    try:
        ids = [x.wait_for("worker")["id"] for x in daemons]
        both = {acc.first["a"], acc.first["b"]}
        wait_until(lambda: stored_ids(store, both) == both, 30, "the first syncs", interval=0.1)
        acc.write("a", "b", "c")
        t0 = time.monotonic()
        out = run_cli("workers", "reload", config=acc.path, env=acc.env, check=True).stdout
        assert "asked 2 live worker(s)" in out
        wait_until(lambda: acc.first["c"] in stored_ids(store, {acc.first["c"]}), 10, "c's mail", interval=0.05)
        print(f"\n`mailsync workers reload`: the new account's mail stored {time.monotonic() - t0:.2f} s later")
        for x in daemons:
            wait_until(lambda: len(_reloads(x)) == 1, 5, "every worker's reload")
            assert _reloads(x)[0]["why"] == "NOTIFY (mailsync workers reload)" and _reloads(x)[0]["added"] == "c"
        # removed: the worker holding it gives its lease back and closes its connections
        owner = holder("a")
        assert owner in ids
        acc.write("b", "c")
        run_cli("workers", "reload", config=acc.path, env=acc.env, check=True)
        x = daemons[ids.index(owner)]
        x.wait_for("lease_given_back", timeout=10, account="a", why="removed from the config")
        wait_until(lambda: holder("a") is None, 5, "a's lease free")
        wait_until(lambda: not _logged_in(dovecot_many, acc.users["a"]), 10, "a's connections closed")
        late = acc.deliver("a", "after-removal")
        time.sleep(2.0)
        assert late not in stored_ids(store, {late})
        assert holder("a") is None  # the other worker, which read the same file, does not claim it either
        for x in daemons:
            rc, _ = x.stop(signal.SIGTERM)
            assert rc == 0
    finally:
        for x in daemons:
            x.kill()
        store.dispose()
