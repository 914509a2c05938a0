"""A changed config against a running watch daemon (mailsync.push.reload_plan): which accounts are
started, stopped, restarted or left alone, and which new configs are refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mailsync.config.model import AccountConfig, Config, PushSettings, SecretRef, StoreConfig
from mailsync.errors import ConfigError
from mailsync.push.reload_plan import ReloadPlan, check_reloadable, plan_reload, watched_accounts


def acc(name: str, **kw) -> AccountConfig:
    return AccountConfig(name=name, host="imap.example.org", username=f"{name}@example.org",
                         password=SecretRef("env", f"PW_{name.upper()}"), **kw)


def config(*accounts: AccountConfig, url: str = "sqlite:////tmp/a.db") -> Config:
    return Config(path=Path("/etc/mailsync.toml"), store=StoreConfig(url), accounts=tuple(accounts))


def test_nothing_changed():
    a, b = acc("a"), acc("b")
    plan = plan_reload([a, b], [acc("a"), acc("b")])
    assert plan == ReloadPlan(unchanged=("a", "b"))
    assert not plan.changes


def test_added_removed_changed_and_untouched():
    a, b, c = acc("a"), acc("b"), acc("c")
    b2 = replace(b, folders=("INBOX",))
    d = acc("d")
    plan = plan_reload([a, b, c], [a, b2, d])
    assert plan.add == (d,)
    assert plan.remove == ("c",)
    assert plan.restart == (b2,)  # the new settings, to start with
    assert plan.unchanged == ("a",)
    assert plan.changes
    assert plan.summary() == {"added": "d", "removed": "c", "restarted": "b", "unchanged": 1}


@pytest.mark.parametrize("change", [
    {"host": "imap2.example.org"}, {"port": 143, "tls": "starttls"}, {"password": SecretRef("env", "OTHER")},
    {"exclude": ("Junk",)}, {"max_connections": 2}, {"push": PushSettings(poll_interval=30)},
    {"ca_file": Path("/etc/ssl/ca.pem")}])
def test_any_setting_of_an_account_restarts_it(change):
    a = acc("a")
    plan = plan_reload([a], [replace(a, **change)])
    assert [x.name for x in plan.restart] == ["a"] and not plan.add and not plan.remove


def test_a_renamed_account_is_one_removed_and_one_added():
    plan = plan_reload([acc("a")], [acc("z")])
    assert plan.remove == ("a",) and [x.name for x in plan.add] == ["z"] and plan.restart == ()


def test_watched_accounts_leaves_out_watch_false_and_unnamed():
    a, b, off = acc("a"), acc("b"), acc("off", push=PushSettings(watch=False))
    cfg = config(a, b, off)
    assert watched_accounts(cfg) == [a, b]
    assert watched_accounts(cfg, ("b", "gone")) == [b]
    # an account set to watch = false on a reload is stopped like a removed one
    assert plan_reload([a, acc("off")], watched_accounts(cfg)).remove == ("off",)


def test_another_store_is_refused_with_the_fix():
    with pytest.raises(ConfigError) as e:
        check_reloadable(config(acc("a")), config(acc("a"), url="postgresql+psycopg://db/mailsync"))
    assert "[store] url changed" in e.value.message and "restart mailsync watch" in e.value.hint
    check_reloadable(config(acc("a")), config(acc("b")))  # accounts may change freely
