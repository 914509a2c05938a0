"""The OAuth2 providers: Google (google-auth-oauthlib, google-auth), Microsoft (msal) and any
generic OAuth2 server; their login flows, refresh and revocation (see oauth2.py for which library
path each follows).

Owns: the talk with each provider's endpoints, and turning their errors into TokenError or
_InvalidGrant. Must not: store tokens (oauth2.py does, through tokens.py), or let a token, a client
secret or an authorization code reach a message, a log line or an exception.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import warnings
from datetime import datetime, timezone
from urllib.parse import urlencode, urlsplit

from mailsync.auth.tokens import TokenRecord
from mailsync.auth.oauth2_settings import (GOOGLE_AUTH_URI, GOOGLE_REVOKE_URI, GOOGLE_TOKEN_URI, HTTP_TIMEOUT,
                                           MSAL_RESERVED_SCOPES, LoginUI, OAuth2Settings, _InvalidGrant,
                                           _LoopbackReceiver, _quiet_libraries)
from mailsync.errors import ConfigError, MailsyncError, TokenError

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


