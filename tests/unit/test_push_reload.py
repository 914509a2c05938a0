"""The config reloader of the watch daemon (mailsync.push.reload) around a stand-in daemon: a change
of the file is noticed by the poll, a bad file or another store is refused with the reason logged
and nothing applied, and requests arriving together make one reload."""

from __future__ import annotations

import asyncio
import logging
import os

from mailsync.config.loader import load_config
from mailsync.push.reload import ConfigReloader


def write(path, *names, url="sqlite:////tmp/reload-test.db"):
    lines = ["[store]", f'url = "{url}"', ""]
    for n in names:
        lines += ["[[account]]", f'name = "{n}"', 'host = "127.0.0.1"', f'username = "{n}"',
                  'password = "env:PW"', 'tls = "none"', "allow_plaintext = true", ""]
    path.write_text("\n".join(lines))
    path.chmod(0o600)


class StandIn:
    """What the reloader uses of the daemon: its watched accounts, stopping, reconfigure."""

    def __init__(self, accounts) -> None:
        self.accounts = list(accounts)
        self.stopping = False
        self.calls = []

    async def reconfigure(self, config, accounts, plan) -> None:
        self.calls.append(plan)
        self.accounts = list(accounts)


def run(coro):
    return asyncio.run(coro)


def reloader(path, poll: float = 0):
    """(config, a StandIn daemon watching its accounts, a ConfigReloader of the file at ``path``)."""
    config = load_config(path)
    daemon = StandIn(config.accounts)
    return config, daemon, ConfigReloader(daemon, config, poll=poll)


def test_a_changed_file_is_noticed_and_applied(tmp_path, caplog):
    path = tmp_path / "config.toml"
    write(path, "a", "b")

    async def scenario():
        config, daemon, r = reloader(path, poll=0.05)
        task = asyncio.create_task(r.run())
        await asyncio.sleep(0.1)
        assert daemon.calls == []  # nothing changed
        write(path, "a", "c")
        for _ in range(100):
            if daemon.calls:
                break
            await asyncio.sleep(0.05)
        daemon.stopping = True
        r.request("stop")
        await task
        return daemon

    with caplog.at_level(logging.INFO, logger="mailsync.push"):
        daemon = run(scenario())
    (plan,) = daemon.calls
    assert [a.name for a in plan.add] == ["c"] and plan.remove == ("b",) and plan.unchanged == ("a",)
    (line,) = [r for r in caplog.records if r.getMessage() == "config_reloaded"]
    assert line.fields["why"] == "the config file changed" and line.fields["added"] == "c"


def test_a_bad_file_or_another_store_is_refused_and_the_old_config_kept(tmp_path, caplog):
    path = tmp_path / "config.toml"
    write(path, "a")

    async def scenario():
        config, daemon, r = reloader(path)
        path.write_text(path.read_text() + "\n[[account]]\nname = 3\n")
        assert await r.reload("SIGHUP") is None
        write(path, "a", "b", url="sqlite:////tmp/another.db")
        assert await r.reload("SIGHUP") is None
        write(path, "a", "b")
        plan = await r.reload("SIGHUP")
        return daemon, plan

    with caplog.at_level(logging.INFO, logger="mailsync.push"):
        daemon, plan = run(scenario())
    refused = [r.fields for r in caplog.records if r.getMessage() == "config_refused"]
    assert len(refused) == 2
    assert "name" in refused[0]["error"] and refused[0]["kept"] == "the config loaded before"
    assert "[store] url changed" in refused[1]["error"] and "restart" in refused[1]["hint"]
    assert len(daemon.calls) == 1 and [a.name for a in plan.add] == ["b"]


def test_requests_arriving_together_make_one_reload(tmp_path):
    path = tmp_path / "config.toml"
    write(path, "a")

    async def scenario():
        config, daemon, r = reloader(path)
        task = asyncio.create_task(r.run())
        write(path, "a", "b")
        r.request("SIGHUP")
        r.request("NOTIFY (mailsync workers reload)")
        r.request("SIGHUP")
        for _ in range(100):
            if r.reloads:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        daemon.stopping = True
        r.request("stop")
        await task
        return daemon, r

    daemon, r = run(scenario())
    assert r.reloads == 1 and len(daemon.calls) == 1


def test_the_poll_sees_a_file_replaced_with_the_same_size_and_mtime(tmp_path):
    """An edit that keeps size and mtime (a deploy tool copying with -p) still changes the inode or
    ctime, which the poll looks at too."""
    from mailsync.push.reload import file_signature

    path = tmp_path / "config.toml"
    write(path, "a")
    before = file_signature(path)
    st = os.stat(path)
    text = path.read_text().replace('"a"', '"b"')
    tmp = tmp_path / "new.toml"
    tmp.write_text(text)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)
    after = file_signature(path)
    assert before[:2] == after[:2]  # same size and mtime
    assert after != before
