"""OAuth2 settings of an account and the login "UI": what ``auth = "oauth2"`` means (provider,
client id and secret from their password sources, scopes and endpoints with the provider's
defaults), the terminal side of ``mailsync auth login``, and the loopback listener that takes the
authorization code.

Owns: OAuth2Settings and settings_for, LoginUI, the loopback receiver, the provider defaults.
Must not: talk to a provider (oauth2_providers.py does) or store tokens (oauth2.py and tokens.py do);
never show a secret (only authorization URLs and device-code instructions are shown).
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from mailsync.config.model import AccountConfig
from mailsync.errors import ConfigError, TokenError

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


