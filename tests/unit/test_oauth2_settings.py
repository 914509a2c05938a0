"""What ``auth = "oauth2"`` means for an account (mailsync.auth.oauth2.settings_for): the provider's
defaults, the keys each provider needs (each missing one named, with the fix), and the refresh
margin. The flows themselves run against real servers in tests/integration/test_oauth2.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsync.auth import oauth2, oauth2_providers
from mailsync.config.loader import config_from_mapping
from mailsync.errors import ConfigError, CredentialError


def _account(**keys):
    entry = {"name": "acc", "host": "imap.example.com", "username": "me@example.com", "auth": "oauth2",
             "client_id": "the-client-id"}
    entry.update(keys)
    entry = {k: v for k, v in entry.items() if v is not None}
    return config_from_mapping({"account": [entry]}, path=Path("/tmp/c.toml")).accounts[0]


def test_google_defaults(monkeypatch):
    monkeypatch.setenv("GCS", "the-secret")
    s = oauth2.settings_for(_account(provider="google", client_secret="env:GCS"))
    assert s.scopes == ("https://mail.google.com/",) and s.client_secret == "the-secret"
    assert "the-secret" not in repr(s)
    assert oauth2_providers.GoogleProvider(s).token_uri == "https://oauth2.googleapis.com/token"


def test_google_needs_a_client_secret():
    with pytest.raises(ConfigError, match="needs client_secret") as info:
        oauth2.settings_for(_account(provider="google"))
    assert "GOOGLE_CLIENT_SECRET" in str(info.value)


def test_microsoft_defaults_and_authorities():
    s = oauth2.settings_for(_account(provider="microsoft"))
    assert s.scopes == ("https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access")
    assert s.authority == "https://login.microsoftonline.com/common"
    assert oauth2_providers.MicrosoftProvider(s)._scopes() == ["https://outlook.office.com/IMAP.AccessAsUser.All"]  # msal adds the rest
    assert oauth2.settings_for(_account(provider="microsoft", tenant="contoso.onmicrosoft.com")).authority == \
        "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    assert oauth2.settings_for(_account(provider="microsoft", tenant="https://login.microsoftonline.us/t1/")).authority \
        == "https://login.microsoftonline.us/t1"
    with pytest.raises(ConfigError, match="https:// authority"):
        oauth2.settings_for(_account(provider="microsoft", tenant="http://login.example.com/t"))


@pytest.mark.parametrize(("keys", "missing"), [
    ({}, "authorization_endpoint and token_endpoint"),
    ({"token_endpoint": "https://id.example.com/token"}, "authorization_endpoint"),
    ({"authorization_endpoint": "https://id.example.com/auth"}, "token_endpoint"),
])
def test_generic_needs_its_endpoints(keys, missing):
    with pytest.raises(ConfigError) as info:
        oauth2.settings_for(_account(provider="generic", **keys))
    assert f"needs {missing}" in str(info.value) and "well-known" in str(info.value)


def test_generic_with_endpoints_and_scopes():
    s = oauth2.settings_for(_account(provider="generic", scopes=["mail", "offline_access"],
                                     authorization_endpoint="https://id.example.com/auth",
                                     token_endpoint="https://id.example.com/token"))
    assert s.scopes == ("mail", "offline_access") and s.client_secret is None


def test_client_id_is_required_and_resolved_from_its_source(monkeypatch):
    with pytest.raises(ConfigError, match="needs a client_id"):
        oauth2.settings_for(_account(provider="microsoft", client_id=None))
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    with pytest.raises(CredentialError, match="NO_SUCH_VAR"):
        oauth2.settings_for(_account(provider="microsoft", client_id="env:NO_SUCH_VAR"))


def test_password_accounts_are_not_oauth2():
    account = config_from_mapping({"account": [{"name": "p", "host": "h", "username": "u", "password": "env:X"}]},
                                  path=Path("/tmp/c.toml")).accounts[0]
    with pytest.raises(ConfigError, match="does not use OAuth2"):
        oauth2.settings_for(account)


@pytest.mark.parametrize(("lifetime", "margin"), [(3600, 60), (120, 30), (8, 2), (None, 60), (0, 60)])
def test_refresh_margin(lifetime, margin):
    assert oauth2._margin(lifetime) == margin
