"""OAuth2 for IMAP accounts: the token manager that hands a fresh access token to each (re)connect,
and the entry points of ``mailsync auth login|logout|status``. What ``auth = "oauth2"`` means for an
account (provider, client id and secret, scopes, endpoints) is oauth2_settings.py's; the talk with
each provider, oauth2_providers.py's.

Owns: refreshing access tokens before they expire and when a server refuses one; saving each
rotated refresh token (through mailsync.auth.tokens) before it is used; and turning
``invalid_grant`` into NeedsLoginError, remembered in the token store so that `mailsync status`
can say "needs login". Must not: speak IMAP or SASL (mailsync.imap does), touch the mail store,
or let a token, a client secret or an authorization code reach a message, a log line, an
exception or the terminal (only authorization URLs and device-code instructions are shown, which
carry none of them).

Providers, and the libraries whose code paths they follow:
  google     login: google-auth-oauthlib's InstalledAppFlow (authorization_url with PKCE and offline
             access, our loopback listener, fetch_token);
             refresh: google.oauth2.credentials.Credentials.refresh against ``token_uri``.
  microsoft  msal: authorization code with a loopback redirect (initiate_auth_code_flow), or the
             device code flow; refresh through msal's own token cache
             (acquire_token_silent_with_error), whose serialized form is what we store. ``tenant``
             is a tenant name or id (default "common"), or a whole https authority URL (national
             clouds; a test server, with instance discovery off for hosts msal does not know).
  generic    any OAuth2 server with ``authorization_endpoint`` and ``token_endpoint``: authorization
             code with PKCE (S256) and a loopback redirect; refresh_token grant; client_secret_basic
             when there is a client secret, a public client otherwise.

Token lifetimes: an access token is used while more than a margin of its life remains (a quarter
of its lifetime, at most 60 s); otherwise, or when the server refused it, it is refreshed under a
per-account lock (threads and processes), after re-reading the stored record in case another
process refreshed first.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from datetime import datetime, timezone

from mailsync.auth.tokens import TokenRecord, TokenStore, open_token_store
from mailsync.config.model import AccountConfig
from mailsync.auth.oauth2_providers import Provider, _now, provider_for
from mailsync.auth.oauth2_settings import (DEFAULT_SCOPES, MAX_MARGIN, LoginUI, OAuth2Settings,  # noqa: F401
                                           _InvalidGrant, log, settings_for)
from mailsync.errors import CredentialError, MailsyncError, NeedsLoginError

__all__ = [
    "DEFAULT_SCOPES",
    "LoginUI",
    "OAuth2Settings",
    "OAuth2Tokens",
    "login",
    "login_state",
    "logout",
    "settings_for",
    "tokens_for",
]

# ---------------------------------------------------------------------------- token manager


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(account: str) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(account, threading.Lock())


def _margin(lifetime: float | None) -> float:
    if not lifetime:
        return MAX_MARGIN
    return min(MAX_MARGIN, lifetime / 4)


def _needs_login(account: str, reason: str) -> NeedsLoginError:
    return NeedsLoginError(f"account '{account}': needs login ({reason})",
                           hint=f"run mailsync auth login {account}")


class OAuth2Tokens:
    """Access tokens for one account (a mailsync.imap.sasl.TokenSource): ``access_token()`` on each
    (re)connect, ``access_token(rejected=t)`` after the server refused ``t``."""

    def __init__(self, account: AccountConfig, *, store: TokenStore | None = None,
                 provider: Provider | None = None) -> None:
        self.account = account
        self._store = store
        self._provider = provider

    @property
    def store(self) -> TokenStore:
        if self._store is None:
            self._store = open_token_store()
        return self._store

    @property
    def provider(self) -> Provider:
        if self._provider is None:  # resolves client_id/secret once per manager
            self._provider = provider_for(settings_for(self.account))
        return self._provider

    def _usable(self, record: TokenRecord | None) -> TokenRecord:
        name = self.account.name
        if record is None:
            raise _needs_login(name, "not logged in yet")
        if record.needs_login:
            raise _needs_login(name, record.needs_login)
        if record.provider != self.account.provider or record.username != self.account.username:
            raise _needs_login(name, f"the stored tokens are for {record.username!r} at {record.provider}, "
                                     f"the config says {self.account.username!r} at {self.account.provider}")
        return record

    @staticmethod
    def _fresh(record: TokenRecord, rejected: str | None) -> bool:
        if not record.access_token or record.expires_at is None:
            return False
        if rejected is not None and secrets.compare_digest(record.access_token, rejected):
            return False
        return _now() < record.expires_at - _margin(record.lifetime)

    def access_token(self, *, rejected: str | None = None) -> str:
        name = self.account.name
        with _thread_lock(name):
            record = self._usable(self.store.load(name))
            if self._fresh(record, rejected):
                return record.access_token  # type: ignore[return-value]
            with self.store.lock(name):
                # Another process may have refreshed (and rotated) while we waited for the lock.
                record = self._usable(self.store.load(name))
                if self._fresh(record, rejected):
                    return record.access_token  # type: ignore[return-value]
                if not record.can_refresh:
                    raise _needs_login(name, "no refresh token is stored")
                try:
                    new = self.provider.refresh(record)
                except _InvalidGrant as exc:
                    self.store.save(name, TokenRecord(provider=record.provider, username=record.username,
                                                      needs_login=exc.reason, updated_at=_now()))
                    log.warning("account %s: %s; run mailsync auth login %s", name, exc.reason, name)
                    raise _needs_login(name, exc.reason) from None
                self.store.save(name, new)  # the rotated refresh token is durable before the token is used
                log.info("account %s: access token refreshed (valid %.0f s)", name, new.lifetime or 0)
                return new.access_token  # type: ignore[return-value]


_managers: dict[AccountConfig, OAuth2Tokens] = {}
_managers_guard = threading.Lock()


def tokens_for(account: AccountConfig) -> OAuth2Tokens:
    """The process-wide token manager of ``account`` (so reconnects reuse resolved client secrets)."""
    with _managers_guard:
        manager = _managers.get(account)
        if manager is None:
            manager = _managers[account] = OAuth2Tokens(account)
        return manager


# ------------------------------------------------------------------------- CLI entry points


def login(account: AccountConfig, ui: LoginUI, *, device_code: bool = False,
          store: TokenStore | None = None) -> tuple[TokenRecord, str]:
    """Run the provider's interactive sign-in and store the tokens (replacing any). Returns the
    record and where it was stored."""
    settings = settings_for(account)
    provider = provider_for(settings)
    record = provider.login(ui, device_code=device_code)
    store = store or open_token_store()
    with store.lock(account.name):
        store.save(account.name, record)
    return record, store.location(account.name)


def logout(account: AccountConfig, *, store: TokenStore | None = None) -> tuple[bool, bool, str]:
    """Forget the account's tokens (and ask the provider to revoke them where it has an endpoint for
    it). Returns (removed, revoked, location)."""
    store = store or open_token_store()
    with store.lock(account.name):
        record = store.load(account.name)
        revoked = False
        if record is not None and record.can_refresh:
            with contextlib.suppress(MailsyncError):
                revoked = provider_for(settings_for(account)).revoke(record)
        removed = store.delete(account.name)
    return removed, revoked, store.location(account.name)


def login_state(account: AccountConfig, *, store: TokenStore | None = None) -> dict:
    """For `mailsync status` and `mailsync auth status`: never refreshes, never shows a token."""
    state: dict = {"method": "oauth2", "provider": account.provider, "logged_in": False, "needs_login": True,
                   "reason": None, "access_token_expires": None, "store": None}
    try:
        store = store or open_token_store()
        state["store"] = store.location(account.name)
        record = store.load(account.name)
    except CredentialError as exc:
        state["reason"] = exc.message
        return state
    if record is None:
        state["reason"] = "not logged in yet"
    elif record.needs_login:
        state["reason"] = record.needs_login
    elif record.provider != account.provider or record.username != account.username:
        state["reason"] = (f"the stored tokens are for {record.username!r} at {record.provider}, the config says "
                           f"{account.username!r} at {account.provider}")
    elif not record.can_refresh:
        state["reason"] = "no refresh token is stored"
    else:
        state["logged_in"], state["needs_login"] = True, False
        if record.expires_at:
            state["access_token_expires"] = datetime.fromtimestamp(record.expires_at, timezone.utc).isoformat()
    if state["needs_login"]:
        state["action"] = f"mailsync auth login {account.name}"
    return state
