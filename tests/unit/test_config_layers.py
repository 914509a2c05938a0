"""The config layer stands on its own: loading a file imports no CRM module unless the file has a
[crm] table, the CRM settings import no loader, and the account's settings are typed."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mailsync.config.loader import config_from_mapping
from mailsync.config.model import AccountConfig, HookSettings, OAuthSettings, PushSettings
from mailsync.crm.settings import CrmSettings

ROOT = Path(__file__).resolve().parents[2]


def _fresh(code: str) -> str:
    """Run ``code`` in a new interpreter (nothing imported yet) and return what it prints."""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_the_loader_imports_no_crm_module():
    got = _fresh("import sys, mailsync.config.loader\n"
                 "print(sorted(m for m in sys.modules if m.startswith('mailsync.crm')))")
    assert got == "[]"


def _imports() -> dict[str, set[str]]:
    """module -> the mailsync modules it imports anywhere (function-level imports included)."""
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "mailsync").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
        graph[name] = {m for m in found if m.startswith("mailsync")}
    return graph


def test_no_import_cycle_through_the_loader():
    graph = _imports()
    seen, todo = set(), sorted(graph["mailsync.config.loader"])
    while todo:
        mod = todo.pop()
        if mod in seen or mod not in graph:
            continue
        seen.add(mod)
        todo.extend(graph[mod])
    assert "mailsync.config.loader" not in seen  # nothing the loader uses imports the loader back
    assert "mailsync.crm.settings" in seen  # (the loader does check the [crm] table)


def test_no_module_imports_a_private_name_of_the_loader():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "mailsync").rglob("*.py")
                 if "from mailsync.config.loader import _" in p.read_text(encoding="utf-8")]
    assert offenders == []


def _doc(**account):
    return {"account": [{"name": "work", "host": "imap.example.com", "username": "me@example.com",
                         "password": "env:PW", **account}],
            "crm": {"max_recipients": 10}}


def test_crm_settings_are_built_once_at_load(tmp_path):
    config = config_from_mapping(_doc(identities=["boss@example.com"], share="subject"), path=tmp_path / "c.toml")
    settings = CrmSettings.from_config(config)
    assert settings is config.crm_settings and settings is CrmSettings.from_config(config)
    assert settings.max_recipients == 10
    assert settings.account("work").identities == ("boss@example.com",)
    assert settings.account("work").share == "subject"


def test_no_crm_table_no_crm_settings(tmp_path):
    doc = _doc()
    del doc["crm"]
    assert config_from_mapping(doc, path=tmp_path / "c.toml").crm_settings is None


def test_account_settings_are_typed(tmp_path):
    acc = config_from_mapping(_doc(watch=False, idle_refresh=600, post_sync="notmuch new"),
                              path=tmp_path / "c.toml").accounts[0]
    assert acc.push == PushSettings(watch=False, idle_refresh=600.0)
    assert acc.oauth == OAuthSettings() and acc.hooks == HookSettings(post_sync="notmuch new")
    assert acc.crm.identities is None and acc.crm.create_contacts is None
    doc = _doc(auth="oauth2", provider="microsoft", client_id="env:ID", tenant="common", scopes=["s"])
    del doc["account"][0]["password"]
    acc = config_from_mapping(doc, path=tmp_path / "c.toml").accounts[0]
    assert acc.oauth == OAuthSettings(scopes=("s",), tenant="common") and acc.push == PushSettings()


def test_extra_given_by_hand_fills_the_typed_settings():
    acc = AccountConfig(name="a", host="h", username="u", extra={"poll_interval": 60, "watch": ["INBOX"]})
    assert acc.push == PushSettings(watch=("INBOX",), poll_interval=60)
    assert acc.extra == {"poll_interval": 60, "watch": ("INBOX",)}
    with pytest.raises(TypeError, match="unknown extra key 'pol_interval'"):
        AccountConfig(name="a", host="h", username="u", extra={"pol_interval": 60})
