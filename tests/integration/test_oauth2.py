"""OAuth2 against real parts: a Dovecot whose oauth2 passdb checks every bearer token by
introspection at a local authorization server (authlib), and the libraries real accounts go
through (msal for Microsoft, google-auth-oauthlib / google-auth for Google, requests for generic).

Sign-ins are driven as a person's browser would: the test opens the URL the flow shows, the server
approves and redirects to the flow's loopback listener. Access tokens live a few seconds where a
test needs them to expire; every refresh rotates the refresh token.
"""

from __future__ import annotations

import imaplib
import json
import logging
import re
import secrets
import ssl
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from imapclient import IMAPClient

from helpers import client_for
from mailsync.auth.oauth2 import OAuth2Tokens, login, login_state
from mailsync.auth.tokens import open_token_store
from mailsync.errors import AuthError, NeedsLoginError, TokenError
from mailsync.imap import sasl
from mailsync.imap.connection import connect
from mailsync.store.db import open_store
from mailsync.store import repositories as repo
from mailsync.store.uow import UnitOfWork
from mailsync.sync.engine import SyncObserver, sync_account
from oauth_helpers import account_config, drive_in_process, leaks, oauth_entry, sasl_forms

pytestmark = pytest.mark.dovecot

MS_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
GOOGLE_SCOPE = "https://mail.google.com/"


@pytest.fixture
def no_leaks(oauth_server, caplog, capsys):
    """Debug logging on; at the end, nothing the server issued (tokens, codes, client secrets) may
    appear in any log record or in what the test printed."""
    caplog.set_level(logging.DEBUG)
    users: list = []
    yield users
    out = capsys.readouterr()
    texts = [caplog.text, out.out, out.err]
    secrets_ = set(oauth_server.secrets()) | {u.password for u in users}
    for user in users:
        for token in oauth_server.tokens_of(user.name):
            secrets_ |= sasl_forms(user.name, token.access_token)
    assert leaks(texts, secrets_) == []


def _issue(server, client, user) -> dict:
    """A token response obtained the plain OAuth2 way (no mailsync code involved)."""
    import base64
    import hashlib

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    redirect = "http://127.0.0.1:9/"
    r = requests.get(server.authorization_endpoint, verify=str(server.ca_file), allow_redirects=False, timeout=30,
                     params={"response_type": "code", "client_id": client.client_id, "redirect_uri": redirect,
                             "scope": client.scope, "login_hint": user.name, "code_challenge": challenge,
                             "code_challenge_method": "S256"})
    code = parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]
    r = requests.post(server.token_endpoint, verify=str(server.ca_file), timeout=30,
                      auth=(client.client_id, client.client_secret),
                      data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                            "code_verifier": verifier})
    assert r.status_code == 200, r.text
    return r.json()


def _imap_accepts(user, token: str, mechanism: str = "OAUTHBEARER", login_name: str | None = None) -> bool:
    c = IMAPClient(user.host, port=user.imaps_port, ssl=True, timeout=30,
                   ssl_context=ssl.create_default_context(cafile=str(user.ca_file)))
    try:
        c._imap.authenticate(mechanism, sasl.Conversation(mechanism, login_name or user.name, token))
        c.list_folders()
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            c.logout()
        except Exception:
            c.shutdown()


def _logins(server, user) -> list[str]:
    """SASL mechanisms of the user's logins in Dovecot's log, in order ("Login: user=<...>" in 2.3,
    "Logged in: user=<...>" in 2.4)."""
    deadline = time.monotonic() + 3
    found: list[str] = []
    while time.monotonic() < deadline:
        text = server.log_path.read_text(errors="replace")
        found = re.findall(rf"(?:Login|Logged in): user=<{re.escape(user.name)}>, method=([A-Z0-9-]+)", text)
        if found:
            break
        time.sleep(0.05)
    return found


def _msg(i: int, size: int = 200) -> bytes:
    return (f"From: a@example.org\r\nTo: b@example.org\r\nMessage-ID: <o{i}@example.org>\r\nSubject: m{i}\r\n\r\n"
            + "x" * size + "\r\n").encode()


# ------------------------------------------------------------------------------ the harness


def test_dovecot_oauth2_passdb_checks_every_token(oauth_server, oauth_user, dovecot_oauth2):
    client = oauth_server.register_client(scope="mail", access_token_lifetime=60)
    at = _issue(oauth_server, client, oauth_user)["access_token"]
    assert _imap_accepts(oauth_user, at, "OAUTHBEARER")
    assert _imap_accepts(oauth_user, at, "XOAUTH2")
    assert not _imap_accepts(oauth_user, "at-" + secrets.token_urlsafe(32))  # unknown token
    assert not _imap_accepts(oauth_user, oauth_user.password, "XOAUTH2")  # a password is no token
    other = dovecot_oauth2.new_user(f"other-{secrets.token_hex(3)}", secrets.token_hex(8))
    oauth_server.add_user(other.name)
    assert not _imap_accepts(other, at)  # somebody else's token
    client_for(oauth_user).logout()  # passwords (PLAIN) still work beside tokens
    assert _imap_accepts(oauth_user, at)  # (still good)
    oauth_server.revoke(client, at, hint="access_token")
    assert not _imap_accepts(oauth_user, at)  # revoked
    short = oauth_server.register_client(scope="mail", access_token_lifetime=2)
    at2 = _issue(oauth_server, short, oauth_user)["access_token"]
    assert _imap_accepts(oauth_user, at2)
    time.sleep(max(0.0, oauth_server.token(at2).expires_at - time.time()) + 0.2)
    assert not _imap_accepts(oauth_user, at2)  # expired


# ------------------------------------------------------------------------------ connect()


@pytest.mark.parametrize(("mechanisms", "expected"), [
    (("xoauth2", "oauthbearer"), "OAUTHBEARER"),
    (("xoauth2",), "XOAUTH2"),
    (("oauthbearer",), "OAUTHBEARER"),
])
def test_connect_picks_the_mechanism_from_capabilities(tmp_path, oauth_server, dovecot_oauth2_factory, token_env,
                                                       monkeypatch, no_leaks, mechanisms, expected):
    server = dovecot_oauth2_factory(mechanisms)
    user = server.new_user(f"mech-{secrets.token_hex(4)}", secrets.token_hex(8))
    oauth_server.add_user(user.name)
    no_leaks.append(user)
    client = oauth_server.register_client(scope="mail offline_access")
    account = account_config(tmp_path, oauth_entry(user, oauth_server, client, scopes=["mail", "offline_access"]))
    monkeypatch.setenv("MS_CS_ACC", client.client_secret)
    record, where = drive_in_process(lambda ui: login(account, ui), oauth_server)
    assert where.startswith("file ") and str(tmp_path) in where
    with connect(account, None, tokens=OAuth2Tokens(account)) as conn:
        assert "INBOX" in {f.name for f in conn.list_folders()}
    assert _logins(server, user) == [expected]


def _generic(tmp_path, oauth_server, user, monkeypatch, *, lifetime: float = 30, **extra):
    client = oauth_server.register_client(scope="mail offline_access", access_token_lifetime=lifetime)
    monkeypatch.setenv("MS_CS_ACC", client.client_secret)
    account = account_config(tmp_path, oauth_entry(user, oauth_server, client, scopes=["mail", "offline_access"],
                                                   **extra))
    record, _ = drive_in_process(lambda ui: login(account, ui), oauth_server)
    return client, account, record


def test_a_refused_token_is_refreshed_once_and_retried(tmp_path, oauth_server, oauth_user, token_env, monkeypatch,
                                                       no_leaks):
    no_leaks.append(oauth_user)
    client, account, first = _generic(tmp_path, oauth_server, oauth_user, monkeypatch)
    # The provider withdraws the access token while mailsync still thinks it has 30 s left.
    assert oauth_server.revoke(client, first.access_token, hint="access_token") == 200
    mark = len(oauth_server.events)
    with connect(account, None, tokens=OAuth2Tokens(account)) as conn:
        conn.list_folders()
    kinds = [(e.kind, e.details.get("active"), e.details.get("grant_type")) for e in oauth_server.events[mark:]
             if e.details.get("client_id") in (client.client_id, None)]
    assert kinds == [("introspect", False, None), ("token", None, "refresh_token"), ("introspect", True, None)]
    now = open_token_store().load("acc")
    assert now.access_token != first.access_token and now.refresh_token != first.refresh_token
    # rotation: the old refresh token is dead at the server, the new one is what is stored
    status, body = oauth_server.refresh(client, first.refresh_token)
    assert status == 400 and body["error"] == "invalid_grant"


def test_the_access_token_is_refreshed_shortly_before_it_expires(tmp_path, oauth_server, oauth_user, token_env,
                                                                 monkeypatch, no_leaks):
    no_leaks.append(oauth_user)
    client, account, first = _generic(tmp_path, oauth_server, oauth_user, monkeypatch, lifetime=8)  # margin 2 s
    tokens = OAuth2Tokens(account)
    assert tokens.access_token() == first.access_token  # fresh: used as is, no request
    time.sleep(max(0.0, first.expires_at - 1.5 - time.time()))
    assert oauth_server.introspect(first.access_token)["active"] is True  # still valid at the server ...
    renewed = tokens.access_token()
    assert renewed != first.access_token  # ... but within the margin: replaced before it can expire mid-login
    assert tokens.access_token() == renewed
    with connect(account, None, tokens=tokens) as conn:
        conn.list_folders()


def test_a_token_refused_even_after_a_refresh_is_an_auth_error(tmp_path, oauth_server, oauth_user, token_env,
                                                               monkeypatch, no_leaks):
    no_leaks.append(oauth_user)
    client, account, first = _generic(tmp_path, oauth_server, oauth_user, monkeypatch)
    oauth_server.suspend_user(oauth_user.name)  # an administrator turns IMAP off for the user
    try:
        mark = len(oauth_server.events)
        with pytest.raises(AuthError) as info:
            connect(account, None, tokens=OAuth2Tokens(account))
        assert not isinstance(info.value, NeedsLoginError)
        assert "even after a refresh" in str(info.value) and "mailsync auth login acc" in str(info.value)
        refreshes = oauth_server.events_of("token", client_id=client.client_id, grant_type="refresh_token")
        assert len([e for e in refreshes if e.at >= oauth_server.events[mark].at]) == 1  # one retry, no loop
    finally:
        oauth_server.suspend_user(oauth_user.name, False)


class _WaitForExpiry(SyncObserver):
    """Holds the sync (its IMAP thread) at the first folder with new mail until the access token
    used to log in has expired: the rest of the download runs on an authenticated session whose
    token is dead."""

    def __init__(self, server, token: str) -> None:
        self.server, self.token, self.waited = server, token, False
        self.stored = 0

    def folder_started(self, account, folder, new):
        if new and not self.waited:
            self.waited = True
            expires = self.server.token(self.token).expires_at
            while time.time() < expires + 0.5:
                time.sleep(0.1)

    def messages_stored(self, account, folder, count, nbytes):
        self.stored += count


def test_a_long_sync_outlives_its_token_and_the_next_connect_gets_a_fresh_one(tmp_path, oauth_server, oauth_user,
                                                                               token_env, monkeypatch, no_leaks):
    no_leaks.append(oauth_user)
    server = oauth_user.server
    n = 3000
    server.load(oauth_user.name, [("INBOX" if i % 3 else "Archive", _msg(i, 2000)) for i in range(n)])
    client, account, first = _generic(tmp_path, oauth_server, oauth_user, monkeypatch, lifetime=3, batch_size=200)
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    observer = _WaitForExpiry(oauth_server, first.access_token)
    t0 = time.time()
    result = sync_account(store, account, observer=observer)
    assert result.ok, result.error
    assert observer.waited and time.time() - t0 > 3
    assert oauth_server.introspect(first.access_token) == {"active": False}  # it expired mid-sync
    with UnitOfWork(store) as uow:
        rows = list(repo.export_rows(uow.session, account="acc"))
    assert len(rows) == n == observer.stored
    assert {r.folder for r in rows} == {"INBOX", "Archive"}

    # The next connect (a new sync, or the watch daemon reconnecting) refreshes, and rotation is kept.
    mark = time.time()
    server.load(oauth_user.name, [("INBOX", _msg(n + 1))])
    result = sync_account(store, account)
    assert result.ok, result.error and result.new_messages == 1
    refreshed = [e for e in oauth_server.events_of("token", client_id=client.client_id, grant_type="refresh_token")
                 if e.at >= mark]
    assert len(refreshed) == 1
    now = open_token_store().load("acc")
    assert now.refresh_token != first.refresh_token
    assert oauth_server.refresh(client, first.refresh_token)[1]["error"] == "invalid_grant"
    store.dispose()


def test_invalid_grant_means_needs_login_and_is_remembered(tmp_path, oauth_server, oauth_user, token_env,
                                                           monkeypatch, no_leaks):
    no_leaks.append(oauth_user)
    client, account, first = _generic(tmp_path, oauth_server, oauth_user, monkeypatch)
    assert login_state(account)["logged_in"] is True
    assert oauth_server.revoke(client, first.refresh_token) == 200  # the whole grant: both tokens
    with pytest.raises(NeedsLoginError) as info:
        connect(account, None, tokens=OAuth2Tokens(account))
    text = str(info.value)
    assert "needs login" in text and "invalid_grant" in text and "run mailsync auth login acc" in text
    state = login_state(account)
    assert state["needs_login"] is True and "invalid_grant" in state["reason"]
    assert state["action"] == "mailsync auth login acc"
    stored = open_token_store().load("acc")
    assert stored.refresh_token is None and stored.access_token is None and stored.needs_login
    # From now on no request reaches the provider until the next login.
    mark = len(oauth_server.events)
    with pytest.raises(NeedsLoginError):
        connect(account, None, tokens=OAuth2Tokens(account))
    assert oauth_server.events_of("token", client_id=client.client_id)[-1] in oauth_server.events[:mark]
    # Logging in again fixes it.
    drive_in_process(lambda ui: login(account, ui), oauth_server)
    with connect(account, None, tokens=OAuth2Tokens(account)) as conn:
        conn.list_folders()


def test_a_denied_sign_in_is_a_clear_error(tmp_path, oauth_server, dovecot_oauth2, token_env, monkeypatch):
    stranger = dovecot_oauth2.new_user(f"stranger-{secrets.token_hex(3)}", "pw")  # unknown to the OAuth server
    client = oauth_server.register_client(scope="mail")
    monkeypatch.setenv("MS_CS_ACC", client.client_secret)
    account = account_config(tmp_path, oauth_entry(stranger, oauth_server, client, scopes=["mail"]))
    with pytest.raises(TokenError, match="access_denied"):
        drive_in_process(lambda ui: login(account, ui), oauth_server)
    assert open_token_store().load("acc") is None


# ------------------------------------------------------------------ the Microsoft and Google paths


def _msal_refresh_tokens(cache_json: str) -> set[str]:
    return {item["secret"] for item in json.loads(cache_json).get("RefreshToken", {}).values()}


def test_msal_against_the_local_server_as_a_custom_authority(tmp_path, oauth_server, oauth_user, token_env,
                                                             no_leaks):
    no_leaks.append(oauth_user)
    client = oauth_server.register_client(secret=False, scope=f"openid profile offline_access {MS_SCOPE}")
    entry = oauth_entry(oauth_user, oauth_server, client, provider="microsoft")
    assert entry["tenant"].startswith("https://127.0.0.1:")  # not a host msal knows: no instance discovery
    account = account_config(tmp_path, entry)
    record, _ = drive_in_process(lambda ui: login(account, ui), oauth_server)
    assert record.refresh_token is None and record.msal_cache  # msal's cache holds it
    [old_rt] = _msal_refresh_tokens(record.msal_cache)
    grant = oauth_server.events_of("token", client_id=client.client_id)[-1]
    assert grant.details["grant_type"] == "authorization_code" and grant.details["user"] == oauth_user.name
    tokens = OAuth2Tokens(account)
    with connect(account, None, tokens=tokens) as conn:
        conn.list_folders()
    # A refused token makes msal refresh (acquire_token_silent_with_error, force_refresh).
    tokens.access_token(rejected=record.access_token)
    now = open_token_store().load("acc")
    [new_rt] = _msal_refresh_tokens(now.msal_cache)
    assert new_rt != old_rt and now.access_token != record.access_token
    assert oauth_server.refresh(client, old_rt)[1]["error"] == "invalid_grant"
    with connect(account, None, tokens=OAuth2Tokens(account)) as conn:
        conn.list_folders()
    assert set(_logins(oauth_user.server, oauth_user)) == {"OAUTHBEARER"}


def test_msal_device_code_flow(tmp_path, oauth_server, oauth_user, token_env, no_leaks):
    no_leaks.append(oauth_user)
    client = oauth_server.register_client(secret=False, scope=f"openid profile offline_access {MS_SCOPE}")
    account = account_config(tmp_path, oauth_entry(oauth_user, oauth_server, client, provider="microsoft"))

    def approve(text: str) -> None:
        code = re.search(r"enter the code (\S+)", text).group(1)
        oauth_server.approve_device(code, oauth_user.name)

    record, _ = drive_in_process(lambda ui: login(account, ui, device_code=True), oauth_server, approve=approve)
    assert oauth_server.events_of("token", client_id=client.client_id)[-1].details["grant_type"].endswith("device_code")
    with connect(account, None, tokens=OAuth2Tokens(account)) as conn:
        conn.list_folders()


def test_msal_refresh_after_revocation_is_needs_login(tmp_path, oauth_server, oauth_user, token_env):
    client = oauth_server.register_client(secret=False, scope=f"openid profile offline_access {MS_SCOPE}")
    account = account_config(tmp_path, oauth_entry(oauth_user, oauth_server, client, provider="microsoft"))
    record, _ = drive_in_process(lambda ui: login(account, ui), oauth_server)
    oauth_server.revoke_user(oauth_user.name)
    with pytest.raises(NeedsLoginError, match="invalid_grant"):
        OAuth2Tokens(account).access_token(rejected=record.access_token)


def test_google_installed_app_flow_and_refresh_against_the_local_token_endpoint(
        tmp_path, oauth_server, oauth_user, token_env, monkeypatch, no_leaks):
    no_leaks.append(oauth_user)
    client = oauth_server.register_client(scope=GOOGLE_SCOPE)
    monkeypatch.setenv("MS_CS_ACC", client.client_secret)
    account = account_config(tmp_path, oauth_entry(oauth_user, oauth_server, client, provider="google"))
    assert account.extra.get("scopes") is None  # the default, https://mail.google.com/, is what is asked for
    record, _ = drive_in_process(lambda ui: login(account, ui), oauth_server)
    assert record.scope == GOOGLE_SCOPE and record.refresh_token
    tokens = OAuth2Tokens(account)
    with connect(account, None, tokens=tokens) as conn:
        conn.list_folders()
    # google.oauth2.credentials.Credentials.refresh against the local token endpoint, with rotation
    mark = time.time()
    fresh = tokens.access_token(rejected=record.access_token)
    assert fresh != record.access_token
    assert [e.details["grant_type"] for e in oauth_server.events_of("token", client_id=client.client_id)
            if e.at >= mark] == ["refresh_token"]
    now = open_token_store().load("acc")
    assert now.refresh_token != record.refresh_token
    assert oauth_server.refresh(client, record.refresh_token)[1]["error"] == "invalid_grant"
    with connect(account, None, tokens=OAuth2Tokens(account)) as conn:
        conn.list_folders()
    # and google-auth's RefreshError(invalid_grant) is "needs login" too
    oauth_server.revoke_user(oauth_user.name)
    with pytest.raises(NeedsLoginError, match="invalid_grant"):
        OAuth2Tokens(account).access_token(rejected=fresh)


# ------------------------------------------------------------------ the watch daemon


def test_watch_daemon_outlives_its_token_and_reconnects_with_a_fresh_one(tmp_path, oauth_server, oauth_user,
                                                                         token_env, monkeypatch, no_leaks):
    """Issue 6, item 5: the daemon logged in with a token that then expires keeps its session; when the
    server ends the session (`doveadm kick`), the reconnect refreshes the token (the expired one would be
    refused) and mail delivered afterwards reaches the store."""
    from watch_support import OtherClient, RunningDaemon, message, stored_flags, wait_until

    no_leaks.append(oauth_user)
    client, account, first = _generic(tmp_path, oauth_server, oauth_user, monkeypatch, lifetime=3)
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    other = OtherClient(oauth_user)  # a password login: the second client looks at the same mailbox
    try:
        with RunningDaemon(store, [account]) as d:
            d.wait_connected()
            w = d.watcher("acc")
            attempts = len(w.attempts)
            # Let every token the daemon holds expire, at the server too.
            expires = max(t.expires_at for t in oauth_server.tokens_of(oauth_user.name))
            time.sleep(max(0.0, expires + 0.5 - time.time()))
            assert oauth_server.introspect(first.access_token) == {"active": False}
            # The push session logged in with the dead token is still up, and still wakes the sync.
            raw, mid = message(1, "expired")
            other.append("INBOX", raw)
            wait_until(lambda: stored_flags(store, "acc", mid) is not None, 5, "mail pushed on the old session")
            assert len(w.attempts) == attempts and w.health.connected

            # The server ends the session: the reconnect needs a fresh token.
            time.sleep(max(0.0, max(t.expires_at for t in oauth_server.tokens_of(oauth_user.name)) + 0.5
                           - time.time()))
            mark = time.time()
            other.close()
            oauth_user.server.doveadm("kick", oauth_user.name)
            wait_until(lambda: len(w.attempts) > attempts and w.health.connected, 10, "the reconnect after the kick")
            assert "BYE" in (w.health.last_error or ""), w.health.last_error
            refreshes = [e for e in oauth_server.events_of("token", client_id=client.client_id,
                                                           grant_type="refresh_token") if e.at >= mark]
            assert refreshes, "the reconnect did not refresh the expired token"
            accepted = [e for e in oauth_server.events_of("introspect") if e.at >= mark and e.details.get("active")]
            assert accepted, "no login with a live token after the kick"
            other = OtherClient(oauth_user)
            raw, mid = message(2, "fresh")
            other.append("INBOX", raw)
            wait_until(lambda: stored_flags(store, "acc", mid) is not None, 1.5, "mail pushed after the reconnect")
            assert w.health.connected and "auth" not in (w.health.last_error or "").lower()
        # every refresh rotated the refresh token; the stored one is the newest and the first is dead
        now = open_token_store().load("acc")
        assert now.refresh_token != first.refresh_token
        assert oauth_server.refresh(client, first.refresh_token)[1]["error"] == "invalid_grant"
    finally:
        other.close()
        store.dispose()
