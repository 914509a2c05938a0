"""OAuth2 for IMAP accounts: the providers, the login flows, and the token manager that hands a
fresh access token to each (re)connect.

Owns: what ``auth = "oauth2"`` means for an account (provider, client id and secret from their
password sources, scopes and endpoints with the provider's defaults); ``mailsync auth login``'s
flows; refreshing access tokens before they expire and when a server refuses one; saving each
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

import base64
import contextlib
import hashlib
import http.server
import logging
import secrets
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit

from mailsync.auth.tokens import TokenRecord, TokenStore, open_token_store
from mailsync.config.model import AccountConfig
from mailsync.errors import ConfigError, CredentialError, MailsyncError, NeedsLoginError, TokenError

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

log = logging.getLogger("mailsync.auth")

PROVIDERS = ("google", "microsoft", "generic")
DEFAULT_SCOPES = {
    "google": ("https://mail.google.com/",),
    "microsoft": ("https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"),
    "generic": (),
}
GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_REVOKE_URI = "https://oauth2.googleapis.com/revoke"
MICROSOFT_AUTHORITY_HOST = "https://login.microsoftonline.com"
MSAL_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})  # msal adds these itself
HTTP_TIMEOUT = 30.0
LOGIN_TIMEOUT = 300.0  # seconds to wait for the browser (or the device code) in `auth login`
MAX_MARGIN = 60.0

# Libraries that log token requests or responses at DEBUG (requests-oauthlib logs whole token
# responses); kept at WARNING whatever -v says.
_NOISY_LOGGERS = ("requests_oauthlib", "oauthlib", "msal", "google_auth_oauthlib", "google.auth",
                  "google.oauth2", "urllib3")


def _quiet_libraries() -> None:
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


class _InvalidGrant(Exception):
    """The provider refused the refresh token for good (invalid_grant and its kin)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ----------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class OAuth2Settings:
    """An account's OAuth2 configuration, with the secrets resolved and the defaults filled in."""

    account: str
    provider: str
    username: str
    client_id: str
    client_secret: str | None = field(repr=False)
    scopes: tuple[str, ...]
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    tenant: str | None = None

    @property
    def authority(self) -> str:
        """microsoft: the msal authority URL."""
        tenant = self.tenant or "common"
        if tenant.startswith("https://"):
            return tenant.rstrip("/")
        return f"{MICROSOFT_AUTHORITY_HOST}/{tenant}"


def settings_for(account: AccountConfig, *, resolve: Callable | None = None) -> OAuth2Settings:
    """Read an ``auth = "oauth2"`` account's settings, resolving client_id and client_secret.
    Raises ConfigError (a missing key, naming it and the fix) or CredentialError (a source failed)."""
    if resolve is None:
        from mailsync.auth.secrets import resolve_secret as resolve
    name = account.name
    if account.auth != "oauth2":
        raise ConfigError(f"account '{name}' does not use OAuth2 (auth = {account.auth!r})",
                          hint='set auth = "oauth2" and provider = "google" | "microsoft" | "generic" to use it')
    provider = account.provider or ""
    if provider not in PROVIDERS:
        raise ConfigError(f"account '{name}': provider {provider!r} is not one of {', '.join(PROVIDERS)}",
                          hint='set provider = "google", "microsoft" or "generic"')
    if account.client_id is None:
        example = {"google": "GOOGLE_CLIENT_ID", "microsoft": "MS_CLIENT_ID"}.get(provider, "OAUTH_CLIENT_ID")
        raise ConfigError(f"account '{name}': OAuth2 needs a client_id (the id of the app registered with "
                          f"the provider)", hint=f'add client_id = "env:{example}" (or cmd:, keyring:, or the id itself)')
    scopes = tuple(account.oauth.scopes or DEFAULT_SCOPES[provider])
    auth_ep = account.oauth.authorization_endpoint
    token_ep = account.oauth.token_endpoint
    tenant = account.oauth.tenant
    if provider == "generic" and not (auth_ep and token_ep):
        missing = " and ".join(k for k, v in (("authorization_endpoint", auth_ep), ("token_endpoint", token_ep))
                               if not v)
        raise ConfigError(f"account '{name}': provider \"generic\" needs {missing}",
                          hint='add authorization_endpoint = "https://.../authorize" and '
                               'token_endpoint = "https://.../token" (from the server\'s documentation or its '
                               '/.well-known/openid-configuration)')
    if provider == "microsoft" and tenant and "://" in tenant and not tenant.startswith("https://"):
        raise ConfigError(f"account '{name}': tenant {tenant!r} must be a tenant name or id, or an https:// "
                          "authority URL", hint='e.g. tenant = "common" or tenant = "contoso.onmicrosoft.com"')
    client_id = resolve(account.client_id)
    client_secret = resolve(account.client_secret) if account.client_secret is not None else None
    if provider == "google" and client_secret is None:
        raise ConfigError(f"account '{name}': provider \"google\" needs client_secret (Google's installed-app "
                          "clients have one; it is in the client's JSON file)",
                          hint='add client_secret = "env:GOOGLE_CLIENT_SECRET" (or cmd:, keyring:)')
    return OAuth2Settings(account=name, provider=provider, username=account.username, client_id=client_id,
                          client_secret=client_secret, scopes=scopes, authorization_endpoint=auth_ep,
                          token_endpoint=token_ep, tenant=tenant)


# ------------------------------------------------------------------------------- login "UI"


class LoginUI:
    """How a login talks to the person: ``say`` goes to stderr (never a token), ``open_browser``
    decides whether a browser is launched, ``timeout`` bounds the wait for the redirect."""

    def __init__(self, *, open_browser: bool = True, timeout: float = LOGIN_TIMEOUT,
                 say: Callable[[str], None] | None = None) -> None:
        self.open_browser = open_browser
        self.timeout = timeout
        self._say = say or (lambda text: print(text, file=sys.stderr, flush=True))

    def say(self, text: str) -> None:
        self._say(text)

    def show_url(self, account: str, url: str) -> None:
        opened = False
        if self.open_browser:
            import webbrowser

            with contextlib.suppress(Exception):
                opened = webbrowser.open(url, new=1, autoraise=True)
        lead = ("A browser window should open; if it does not, open this URL" if opened
                else "Open this URL in a browser")
        self.say(f"{lead} to sign in for account '{account}':\n{url}")


class _LoopbackReceiver:
    """A one-shot HTTP listener on 127.0.0.1 for the authorization response (RFC 8252 7.3)."""

    def __init__(self) -> None:
        received: dict[str, str] = {}
        done = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                query = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
                if "code" not in query and "error" not in query:
                    self.send_response(404)
                    self.end_headers()
                    return
                ok = "code" in query
                body = (b"<html><body><p>mailsync: signed in. You may close this window.</p></body></html>" if ok
                        else b"<html><body><p>mailsync: sign-in failed; see the terminal.</p></body></html>")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if not done.is_set():
                    received.update(query)
                    done.set()

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - the request line holds the code
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._received, self._done = received, done
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name="oauth2-loopback")
        self._thread.start()

    def wait(self, timeout: float) -> dict[str, str]:
        if not self._done.wait(timeout):
            raise TokenError(f"no answer from the browser within {timeout:g} s (nothing reached "
                             f"http://127.0.0.1:{self.port}/)",
                             hint="open the URL printed above in a browser on this machine and sign in, then "
                                  "run the command again")
        return dict(self._received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> _LoopbackReceiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------- providers


def _oauth_error_text(data: object) -> str:
    """``error: description`` from an OAuth2 error response, shortened; nothing else of it."""
    if not isinstance(data, dict):
        return "no OAuth2 error in the answer"
    err = str(data.get("error") or "unknown_error")[:80]
    desc = data.get("error_description")
    if isinstance(desc, str) and desc.strip():
        return f"{err}: {desc.strip().splitlines()[0][:200]}"
    return err


_DEAD_GRANT_ERRORS = ("invalid_grant", "interaction_required", "consent_required", "login_required")


def _now() -> float:
    return time.time()


def _record(settings: OAuth2Settings, *, access_token: str, expires_in: float | None,
            refresh_token: str | None, scope: str | None = None, msal_cache: str | None = None) -> TokenRecord:
    lifetime = float(expires_in) if expires_in else 3600.0
    now = _now()
    return TokenRecord(provider=settings.provider, username=settings.username, access_token=access_token,
                       expires_at=now + lifetime, lifetime=lifetime, refresh_token=refresh_token, scope=scope,
                       msal_cache=msal_cache, updated_at=now)


class Provider:
    def __init__(self, settings: OAuth2Settings) -> None:
        self.settings = settings
        _quiet_libraries()

    def login(self, ui: LoginUI, *, device_code: bool = False) -> TokenRecord:
        raise NotImplementedError

    def refresh(self, record: TokenRecord) -> TokenRecord:
        """A new access token (and maybe a rotated refresh token). Raises _InvalidGrant when the
        refresh token is dead, TokenError for anything else."""
        raise NotImplementedError

    def revoke(self, record: TokenRecord) -> bool:
        """Best effort: tell the provider to forget the refresh token. True if it said so."""
        return False

    def _where(self) -> str:
        return f"account '{self.settings.account}' ({self.settings.provider})"

    def _check_redirect(self, answer: dict, state: str, refused_by: str) -> None:
        """The loopback redirect must carry the state we sent (else it is stale or forged) and no error."""
        if not secrets.compare_digest(answer.get("state", ""), state):
            raise TokenError(f"{self._where()}: the authorization response did not carry our state (a stale "
                             "or forged redirect)", hint="run mailsync auth login again")
        if "error" in answer:
            raise TokenError(f"{self._where()}: {refused_by} refused: {_oauth_error_text(answer)}",
                             hint="sign in and approve the access mailsync asks for")

    def _session(self):
        import requests

        session = requests.Session()
        session.headers["User-Agent"] = "mailsync"
        return session

    def _http_error(self, doing: str, exc: Exception) -> TokenError:
        kind = type(exc).__name__
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        # requests puts the URL (never a token: they travel in bodies) in its messages.
        return TokenError(f"{self._where()}: {doing} failed: {kind}{': ' + text if text else ''}",
                          hint="check the network and the provider's endpoints; the next run retries")


class GenericProvider(Provider):
    """Authorization code + PKCE with a loopback redirect; refresh_token grant (RFC 6749, 7636, 8252)."""

    def _token_request(self, data: dict[str, str], doing: str) -> dict:
        import requests

        s = self.settings
        auth = None
        if s.client_secret is not None:
            auth = (s.client_id, s.client_secret)  # client_secret_basic (RFC 6749 2.3.1)
        else:
            data = {**data, "client_id": s.client_id}
        try:
            with self._session() as session:
                resp = session.post(s.token_endpoint, data=data, auth=auth, timeout=HTTP_TIMEOUT,
                                    headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise self._http_error(doing, exc) from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            return body
        if isinstance(body, dict) and body.get("error") in _DEAD_GRANT_ERRORS and data.get("grant_type") == "refresh_token":
            raise _InvalidGrant(f"the provider refused the refresh token: {_oauth_error_text(body)}")
        hint = "check client_id and client_secret" if resp.status_code in (400, 401) else "the next run retries"
        raise TokenError(f"{self._where()}: {doing} failed: HTTP {resp.status_code}, {_oauth_error_text(body)}",
                         hint=hint)

    def login(self, ui: LoginUI, *, device_code: bool = False) -> TokenRecord:
        s = self.settings
        if device_code:
            raise ConfigError(f"{self._where()}: --device-code is only available for provider \"microsoft\"",
                              hint="log in without --device-code (use --no-browser to only print the URL)")
        verifier = secrets.token_urlsafe(64)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")
        state = secrets.token_urlsafe(24)
        with _LoopbackReceiver() as receiver:
            redirect_uri = f"http://127.0.0.1:{receiver.port}/"
            params = {"response_type": "code", "client_id": s.client_id, "redirect_uri": redirect_uri,
                      "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
                      "login_hint": s.username}
            if s.scopes:
                params["scope"] = " ".join(s.scopes)
            endpoint = s.authorization_endpoint or ""
            url = endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)
            ui.show_url(s.account, url)
            answer = receiver.wait(ui.timeout)
        self._check_redirect(answer, state, "the authorization server")
        body = self._token_request({"grant_type": "authorization_code", "code": answer.get("code", ""),
                                    "redirect_uri": redirect_uri, "code_verifier": verifier},
                                   "exchanging the authorization code")
        if not body.get("refresh_token"):
            raise TokenError(f"{self._where()}: the provider returned no refresh token, so mailsync could not "
                             "run unattended", hint="add the scope that grants offline access (often "
                                                    "\"offline_access\") to scopes, then log in again")
        return _record(s, access_token=body["access_token"], expires_in=body.get("expires_in"),
                       refresh_token=body["refresh_token"], scope=body.get("scope"))

    def refresh(self, record: TokenRecord) -> TokenRecord:
        s = self.settings
        body = self._token_request({"grant_type": "refresh_token", "refresh_token": record.refresh_token or ""},
                                   "refreshing the access token")
        # A server that does not rotate keeps the old refresh token valid.
        return _record(s, access_token=body["access_token"], expires_in=body.get("expires_in"),
                       refresh_token=body.get("refresh_token") or record.refresh_token,
                       scope=body.get("scope") or record.scope)


class GoogleProvider(Provider):
    """google-auth-oauthlib for the login, google.oauth2.credentials for refreshes."""

    @property
    def auth_uri(self) -> str:
        return self.settings.authorization_endpoint or GOOGLE_AUTH_URI

    @property
    def token_uri(self) -> str:
        return self.settings.token_endpoint or GOOGLE_TOKEN_URI

    def login(self, ui: LoginUI, *, device_code: bool = False) -> TokenRecord:
        s = self.settings
        if device_code:
            raise ConfigError(f"{self._where()}: --device-code is only available for provider \"microsoft\"",
                              hint="log in without --device-code (use --no-browser to only print the URL)")
        from google_auth_oauthlib.flow import InstalledAppFlow

        config = {"installed": {"client_id": s.client_id, "client_secret": s.client_secret,
                                "auth_uri": self.auth_uri, "token_uri": self.token_uri,
                                "redirect_uris": ["http://127.0.0.1"]}}
        # InstalledAppFlow's own steps (authorization_url with PKCE, then fetch_token through
        # requests-oauthlib) around our loopback listener, instead of run_local_server, which prints
        # on stdout and serves a single request (a browser's favicon fetch would end it).
        flow = InstalledAppFlow.from_client_config(config, scopes=list(s.scopes))
        try:
            with _LoopbackReceiver() as receiver:
                flow.redirect_uri = f"http://127.0.0.1:{receiver.port}/"
                url, state = flow.authorization_url(access_type="offline", prompt="consent", login_hint=s.username)
                ui.show_url(s.account, url)
                answer = receiver.wait(ui.timeout)
            self._check_redirect(answer, state, "Google")
            flow.fetch_token(code=answer.get("code", ""))
            creds = flow.credentials
        except MailsyncError:
            raise
        except Exception as exc:
            raise self._login_error(exc) from None
        if not creds.refresh_token:
            raise TokenError(f"{self._where()}: Google returned no refresh token",
                             hint="remove mailsync's access at https://myaccount.google.com/permissions, then log in again")
        return _record(s, access_token=creds.token, expires_in=self._expires_in(creds.expiry),
                       refresh_token=creds.refresh_token, scope=" ".join(creds.scopes or s.scopes))

    def _login_error(self, exc: Exception) -> TokenError:
        name = type(exc).__name__
        description = getattr(exc, "description", None) or getattr(exc, "error", None) or ""
        return TokenError(f"{self._where()}: signing in failed: {name}"
                          + (f": {str(description).splitlines()[0][:200]}" if description else ""),
                          hint="check client_id and client_secret, then run mailsync auth login again")

    @staticmethod
    def _expires_in(expiry: datetime | None) -> float | None:
        if expiry is None:
            return None
        if expiry.tzinfo is None:  # google-auth keeps naive UTC datetimes
            expiry = expiry.replace(tzinfo=timezone.utc)
        return max(1.0, expiry.timestamp() - _now())

    def refresh(self, record: TokenRecord) -> TokenRecord:
        s = self.settings
        import google.auth.exceptions as gexc
        from google.auth.transport.requests import Request
        from google.oauth2.credentials import Credentials

        creds = Credentials(token=None, refresh_token=record.refresh_token, token_uri=self.token_uri,
                            client_id=s.client_id, client_secret=s.client_secret, scopes=list(s.scopes))
        try:
            with self._session() as session:
                creds.refresh(Request(session))
        except gexc.RefreshError as exc:
            data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else None
            if data is not None and data.get("error") in _DEAD_GRANT_ERRORS:
                raise _InvalidGrant(f"the provider refused the refresh token: {_oauth_error_text(data)}") from None
            text = _oauth_error_text(data) if data is not None else type(exc).__name__
            raise TokenError(f"{self._where()}: refreshing the access token failed: {text}",
                             hint="check client_id and client_secret; the next run retries") from None
        except gexc.TransportError as exc:
            raise self._http_error("refreshing the access token", exc) from None
        return _record(s, access_token=creds.token, expires_in=self._expires_in(creds.expiry),
                       refresh_token=creds.refresh_token or record.refresh_token,
                       scope=" ".join(getattr(creds, "granted_scopes", None) or creds.scopes or s.scopes))

    def revoke(self, record: TokenRecord) -> bool:
        if self.settings.token_endpoint not in (None, GOOGLE_TOKEN_URI) or not record.refresh_token:
            return False  # only Google's own endpoint is known
        import requests

        try:
            with self._session() as session:
                resp = session.post(GOOGLE_REVOKE_URI, data={"token": record.refresh_token}, timeout=HTTP_TIMEOUT)
            return resp.status_code == 200
        except requests.RequestException:
            return False


class MicrosoftProvider(Provider):
    """msal: PublicClientApplication (ConfidentialClientApplication when there is a client secret)."""

    def _scopes(self) -> list[str]:
        return [sc for sc in self.settings.scopes if sc not in MSAL_RESERVED_SCOPES]

    def _app(self, cache):
        import msal

        s = self.settings
        kwargs = dict(authority=s.authority, token_cache=cache, timeout=HTTP_TIMEOUT)
        host = urlsplit(s.authority).hostname or ""
        try:
            from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS as known
        except ImportError:  # an msal without the list: the hosts it has always known
            known = frozenset({"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn"})
        if host not in known:
            kwargs["instance_discovery"] = False  # a sovereign or private authority msal cannot look up
        try:
            if s.client_secret is not None:
                return msal.ConfidentialClientApplication(s.client_id, client_credential=s.client_secret, **kwargs)
            return msal.PublicClientApplication(s.client_id, **kwargs)
        except ValueError as exc:  # authority discovery failed
            raise TokenError(f"{self._where()}: authority {s.authority} is not usable: "
                             f"{str(exc).splitlines()[0][:200]}",
                             hint='check tenant (a tenant name or id such as "common", or an https:// authority)') from None
        except Exception as exc:
            raise self._http_error(f"reaching the authority {s.authority}", exc) from None

    def _check_user(self, result: dict) -> None:
        claims = result.get("id_token_claims") or {}
        who = claims.get("preferred_username") or claims.get("email") or claims.get("upn")
        if who and who.lower() != self.settings.username.lower():
            raise TokenError(f"{self._where()}: signed in as {who!r}, but the account's username is "
                             f"{self.settings.username!r}; the IMAP server would refuse the token",
                             hint=f"sign in as {self.settings.username!r}, or set username = {who!r}")

    def _result_error(self, result: dict | None, doing: str) -> TokenError:
        return TokenError(f"{self._where()}: {doing} failed: {_oauth_error_text(result)}",
                          hint="check client_id, tenant and the app registration's redirect URIs "
                               "(http://localhost for desktop apps)")

    def login(self, ui: LoginUI, *, device_code: bool = False) -> TokenRecord:
        import msal

        s = self.settings
        cache = msal.SerializableTokenCache()
        app = self._app(cache)
        try:
            if device_code:
                if s.client_secret is not None:
                    raise ConfigError(f"{self._where()}: the device code flow needs a public client (no "
                                      "client_secret)", hint="remove client_secret, or log in without --device-code")
                flow = app.initiate_device_flow(scopes=self._scopes())
                if "user_code" not in flow:
                    raise self._result_error(flow, "starting the device code flow")
                ui.say(flow.get("message") or (f"To sign in for account '{s.account}', open "
                                                f"{flow['verification_uri']} and enter the code {flow['user_code']}"))
                flow["expires_at"] = min(flow.get("expires_at", _now() + ui.timeout), _now() + ui.timeout)
                result = app.acquire_token_by_device_flow(flow)
            else:
                with _LoopbackReceiver() as receiver:
                    # Entra matches a registered "http://localhost" redirect for any port.
                    with warnings.catch_warnings():
                        # msal recommends response_mode=form_post; the answer goes to our own loopback
                        # listener on this machine (RFC 8252), where the query form is what native apps use.
                        warnings.simplefilter("ignore", UserWarning)
                        flow = app.initiate_auth_code_flow(self._scopes(), login_hint=s.username,
                                                           redirect_uri=f"http://localhost:{receiver.port}")
                    ui.show_url(s.account, flow["auth_uri"])
                    answer = receiver.wait(ui.timeout)
                result = app.acquire_token_by_auth_code_flow(flow, answer, scopes=self._scopes())
        except MailsyncError:
            raise
        except Exception as exc:
            raise self._http_error("signing in", exc) from None
        if not isinstance(result, dict) or "access_token" not in result:
            raise self._result_error(result, "signing in")
        self._check_user(result)
        return _record(s, access_token=result["access_token"], expires_in=result.get("expires_in"),
                       refresh_token=None, scope=" ".join(self._scopes()), msal_cache=cache.serialize())

    def refresh(self, record: TokenRecord) -> TokenRecord:
        import msal

        s = self.settings
        cache = msal.SerializableTokenCache()
        if record.msal_cache:
            cache.deserialize(record.msal_cache)
        app = self._app(cache)
        try:
            accounts = app.get_accounts(username=s.username) or app.get_accounts()
            if not accounts:
                raise _InvalidGrant("the stored sign-in has no account for this username")
            result = app.acquire_token_silent_with_error(self._scopes(), account=accounts[0], force_refresh=True)
        except _InvalidGrant:
            raise
        except Exception as exc:
            raise self._http_error("refreshing the access token", exc) from None
        if result is None:
            raise _InvalidGrant("the stored sign-in has no refresh token")
        if "access_token" not in result:
            if result.get("error") in _DEAD_GRANT_ERRORS:
                raise _InvalidGrant(f"the provider refused the refresh token: {_oauth_error_text(result)}")
            raise self._result_error(result, "refreshing the access token")
        return _record(s, access_token=result["access_token"], expires_in=result.get("expires_in"),
                       refresh_token=None, scope=record.scope,
                       msal_cache=cache.serialize() if cache.has_state_changed else record.msal_cache)


def provider_for(settings: OAuth2Settings) -> Provider:
    return {"google": GoogleProvider, "microsoft": MicrosoftProvider, "generic": GenericProvider}[settings.provider](
        settings)


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
