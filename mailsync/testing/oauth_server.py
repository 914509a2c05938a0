"""A local OAuth 2.0 authorization server for tests, on 127.0.0.1 over HTTPS.

Owns: one in-memory authorization server per ``OAuthServer`` (clients, users, authorization codes,
device codes, tokens), its self-signed certificate under ``root``, and the HTTP listener. The
protocol work is done by authlib's server classes (authorization code with PKCE and OpenID
Connect id_tokens, refresh with rotation, device code, RFC 7009 revocation, RFC 7662
introspection); this module only stores their records and maps HTTP to them.
Must not: import any other mailsync module (the engine must not depend on it, and it must not
depend on the engine), listen anywhere but 127.0.0.1, or log a token.

What a test gets:
- ``authorization_endpoint``, ``token_endpoint``, ``revocation_endpoint``,
  ``introspection_endpoint``, ``device_authorization_endpoint`` (the "generic" layout), and the
  same endpoints under ``/{tenant}/oauth2/v2.0/...`` with a discovery document at
  ``/{tenant}/v2.0/.well-known/openid-configuration``, the layout msal expects of a Microsoft
  Entra authority (``authority(tenant)`` gives that URL, for ``instance_discovery=False``).
- The authorization endpoint approves at once, for the user named by ``login_hint`` (or
  ``default_user``), and redirects to the client's loopback redirect URI: a test "logs in" by
  fetching the URL a client printed. Device codes are approved by ``approve_device(user_code)``
  or by fetching ``verification_uri_complete``.
- Access tokens live ``access_token_lifetime`` seconds (per server, or per client). Every refresh
  returns a new refresh token and retires the old one (rotation); revoking a refresh token revokes
  every token of its grant (RFC 7009 section 2.1).
- ``revoke_user`` and ``suspend_user`` act as the provider's administrator would (every grant
  revoked; introspection answering inactive while new tokens are still issued).
- ``introspection_url()`` is the URL, with HTTP basic credentials in it, that Dovecot's oauth2
  passdb posts tokens to; ``events`` records what happened (grants, introspections, revocations)
  without the token values; ``secrets()`` lists every token, code and client secret issued, for
  tests that check nothing leaked into logs.
"""

from __future__ import annotations

import base64
import datetime as _dt
import ipaddress
import json
import logging
import secrets
import socketserver
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from authlib.oauth2 import AuthorizationServer as _AuthlibServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE, DeviceAuthorizationEndpoint, DeviceCodeGrant
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode

__all__ = ["OAuthClient", "OAuthServer", "Token"]

HOST = "127.0.0.1"
MS_PREFIX = "/oauth2/v2.0"  # Entra layout: /{tenant}/oauth2/v2.0/{authorize,token,devicecode}
ALL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

# authlib logs issued tokens at DEBUG; a test server must not put them in anyone's log either.
logging.getLogger("authlib").setLevel(logging.WARNING)


# ------------------------------------------------------------------------------------ records


@dataclass
class OAuthClient(ClientMixin):
    """A registered client. ``client_secret`` None makes it public (PKCE, auth method "none")."""

    client_id: str
    client_secret: str | None
    scope: str  # the scopes it may ask for, space-separated
    access_token_lifetime: float | None = None  # None: the server's
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token", DEVICE_CODE_GRANT_TYPE)
    introspect: bool = False  # may call the introspection endpoint (a resource server)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = set(self.scope.split())
        if not scope:
            return self.scope
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # RFC 8252 7.3: a native app's loopback redirect may use any port.
        parts = urlsplit(redirect_uri)
        if parts.scheme != "http" or not parts.hostname:
            return False
        if parts.hostname == "localhost":
            return True
        try:
            return ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            return False

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.client_secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    user: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    expires_at: float

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class Token:
    """One token response: an access token and (maybe) a refresh token of one grant."""

    access_token: str
    refresh_token: str | None
    client_id: str
    user: str
    scope: str
    issued_at: float
    expires_in: float
    grant_id: str  # every token descending from one authorization shares it
    access_revoked: bool = False
    refresh_revoked: bool = False  # revoked, or retired by rotation
    rotated: bool = False  # the refresh token was used and replaced

    @property
    def expires_at(self) -> float:
        return self.issued_at + self.expires_in

    def check_client(self, client: OAuthClient) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> float:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.access_revoked

    def get_user(self) -> str:
        return self.user

    def get_client(self) -> str:
        return self.client_id


@dataclass
class DeviceCredential:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    user: str | None = None  # set when approved

    def get_client_id(self) -> str:
        return self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_user_code(self) -> str:
        return self.user_code

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at


# ------------------------------------------------------------------------- authlib plumbing


class _Headers(dict):
    """Request headers with case-insensitive ``get`` (authlib reads "Authorization")."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> Any:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class _Request(OAuth2Request):
    def __init__(self, method: str, uri: str, headers: _Headers, args: dict[str, str], form: dict[str, str]):
        super().__init__(method, uri, headers=headers)
        self._args, self._form = args, form
        self.payload = BasicOAuth2Payload({**args, **form})

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS

    def save_authorization_code(self, code: str, request: _Request) -> None:
        data = request.payload.data
        self.server.owner._codes[code] = AuthorizationCode(
            code=code, client_id=request.client.client_id, redirect_uri=data.get("redirect_uri"),
            scope=request.scope, user=request.user, nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"), code_challenge_method=data.get("code_challenge_method"),
            auth_time=int(time.time()), expires_at=time.time() + 300)

    def query_authorization_code(self, code: str, client: OAuthClient) -> AuthorizationCode | None:
        item = self.server.owner._codes.get(code)
        if item and item.client_id == client.client_id and item.expires_at > time.time():
            return item
        return None

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        self.server.owner._codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> str:
        return authorization_code.user


class _RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every refresh returns a new refresh token

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        token = self.server.owner._by_refresh.get(refresh_token)
        if token is None or token.refresh_revoked:
            self.server.owner._event("refresh_rejected", client_id=None,
                                     reason="unknown" if token is None else
                                     ("rotated" if token.rotated else "revoked"))
            return None
        return token

    def authenticate_user(self, refresh_token: Token) -> str:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        refresh_token.refresh_revoked = True
        refresh_token.rotated = True


class _DeviceCodeGrant(DeviceCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS

    def query_device_credential(self, device_code: str) -> DeviceCredential | None:
        return self.server.owner._devices.get(device_code)

    def query_user_grant(self, user_code: str) -> tuple[str, bool] | None:
        for cred in self.server.owner._devices.values():
            if cred.user_code == user_code and cred.user is not None:
                return cred.user, True
        return None

    def should_slow_down(self, credential: DeviceCredential) -> bool:
        return False


class _DeviceAuthorizationEndpoint(DeviceAuthorizationEndpoint):
    CLIENT_AUTH_METHODS = ALL_AUTH_METHODS
    USER_CODE_TYPE = "string"

    @property
    def INTERVAL(self) -> int:  # type: ignore[override]
        return self.server.owner.device_poll_interval

    def get_verification_uri(self) -> str:
        return f"{self.server.owner.base_url}/device/verify"

    def save_device_credential(self, client_id: str, scope: str, data: dict) -> None:
        owner = self.server.owner
        scope = owner._client_by_id(client_id).get_allowed_scope(scope)
        owner._devices[data["device_code"]] = DeviceCredential(
            device_code=data["device_code"], user_code=data["user_code"], client_id=client_id, scope=scope,
            expires_at=time.time() + data["expires_in"])


class _OpenIDCode(OpenIDCode):
    def exists_nonce(self, nonce: str, request: _Request) -> bool:
        return False

    def resolve_client_private_key(self, client: OAuthClient):
        return self.owner._id_token_key

    def get_client_algorithm(self, client: OAuthClient) -> str:
        return "HS256"

    def get_client_claims(self, client: OAuthClient) -> dict:
        return {"iss": self.owner.issuer, "aud": [client.client_id]}

    def generate_user_info(self, user: str, scope: str) -> UserInfo:
        return UserInfo(sub=user, preferred_username=user, email=user, name=user)


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ALL_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        owner = self.server.owner
        if token_type_hint == "refresh_token":
            return owner._by_refresh.get(token_string)
        return owner._by_access.get(token_string) or owner._by_refresh.get(token_string)

    def revoke_token(self, token: Token, request: _Request) -> None:
        owner = self.server.owner
        if request.form.get("token_type_hint") == "access_token" or owner._by_access.get(
                request.form["token"]) is token:
            token.access_revoked = True
            owner._event("revoke", client_id=token.client_id, user=token.user, what="access_token")
            return
        owner._revoke_grant(token.grant_id)
        owner._event("revoke", client_id=token.client_id, user=token.user, what="grant")


class _Introspection(IntrospectionEndpoint):
    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        owner = self.server.owner
        token = owner._by_access.get(token_string)
        if token is None and token_type_hint == "refresh_token":
            token = owner._by_refresh.get(token_string)
        return token

    def check_permission(self, token: Token, client: OAuthClient, request: _Request) -> bool:
        return client.introspect and token.user not in self.server.owner._suspended

    def introspect_token(self, token: Token) -> dict:
        return {"active": True, "client_id": token.client_id, "token_type": "Bearer", "username": token.user,
                "scope": token.scope, "sub": token.user, "aud": token.client_id, "iss": self.server.owner.issuer,
                "exp": int(token.expires_at), "iat": int(token.issued_at)}

    def create_endpoint_response(self, request: _Request):
        status, body, headers = super().create_endpoint_response(request)
        token = self.server.owner._by_access.get(request.form.get("token", ""))
        self.server.owner._event("introspect", client_id=token.client_id if token else None,
                                 user=token.user if token else None, active=bool(body.get("active")))
        return status, body, headers


class _AuthlibAdapter(_AuthlibServer):
    """authlib's framework-neutral AuthorizationServer, bound to our in-memory records."""

    def __init__(self, owner: OAuthServer) -> None:
        super().__init__()
        self.owner = owner

    def query_client(self, client_id: str) -> OAuthClient | None:
        return self.owner._clients.get(client_id)

    def save_token(self, token: dict, request: _Request) -> None:
        self.owner._save_token(token, request)

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def create_json_request(self, request: _Request) -> _Request:
        return request

    def handle_response(self, status: int, body: Any, headers: list) -> tuple[int, Any, list]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


# ------------------------------------------------------------------------------------ server


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # request lines carry codes and states; keep them out of every log


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class Event:
    at: float
    kind: str  # "token", "refresh_rejected", "introspect", "revoke", "authorize", "device"
    details: dict = field(default_factory=dict)


class OAuthServer:
    """One local authorization server (see the module docstring). Use as a context manager, or
    ``start()`` and ``stop()``.

    ``root`` holds its TLS certificate (``ca_file``) and key. ``access_token_lifetime`` is the
    default lifetime of access tokens in seconds; ``register_client`` may set another per client.
    """

    def __init__(self, root: Path, *, access_token_lifetime: float = 5.0, default_user: str | None = None,
                 device_poll_interval: int = 1) -> None:
        self.root = Path(root)
        self.access_token_lifetime = access_token_lifetime
        self.default_user = default_user
        self.device_poll_interval = device_poll_interval
        self.ca_file = self.root / "tls" / "oauth-cert.pem"
        self.key_file = self.root / "tls" / "oauth-key.pem"
        self.port: int | None = None
        self.events: list[Event] = []
        self._clients: dict[str, OAuthClient] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._devices: dict[str, DeviceCredential] = {}
        self._by_access: dict[str, Token] = {}
        self._by_refresh: dict[str, Token] = {}
        self._users: set[str] = set()
        self._suspended: set[str] = set()
        self._lock = threading.RLock()
        self._httpd: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        from joserfc.jwk import OctKey

        self._id_token_key = OctKey.generate_key(256)
        self._introspector = self.register_client("dovecot-introspection", secret=True, scope="",
                                                  grant_types=(), introspect=True)
        self._authlib = self._make_authlib()

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> OAuthServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._httpd is not None:
            return
        self._make_certificate()
        httpd = make_server(HOST, 0, self._wsgi, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.ca_file, self.key_file)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self.port = httpd.server_port
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="oauth-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def _make_certificate(self) -> None:
        if self.ca_file.exists() and self.key_file.exists():
            return
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        self.ca_file.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = _dt.datetime.now(_dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=3650))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                            x509.IPAddress(ipaddress.ip_address(HOST))]), False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             crl_sign=False, encipher_only=False, decipher_only=False), True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
                .sign(key, hashes.SHA256()))
        self.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        self.key_file.chmod(0o600)
        self.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.ca_file.chmod(0o644)

    # ------------------------------------------------------------------ addresses

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the OAuth server is not started")
        return f"https://{HOST}:{self.port}"

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.base_url}/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/token"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.base_url}/revoke"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.base_url}/introspect"

    @property
    def device_authorization_endpoint(self) -> str:
        return f"{self.base_url}/device"

    def authority(self, tenant: str = "tenant") -> str:
        """An Entra-shaped authority URL for msal (``instance_discovery=False``)."""
        return f"{self.base_url}/{tenant}"

    def introspection_url(self) -> str:
        """The introspection endpoint with HTTP basic credentials in it (for Dovecot's oauth2 passdb)."""
        c = self._introspector
        return (f"https://{quote(c.client_id, safe='')}:{quote(c.client_secret or '', safe='')}@{HOST}:"
                f"{self.port}/introspect")

    # ------------------------------------------------------------------ administration

    def register_client(self, client_id: str | None = None, *, secret: bool = True, scope: str = "mail",
                        access_token_lifetime: float | None = None,
                        grant_types: Iterable[str] | None = None, introspect: bool = False) -> OAuthClient:
        """A new client; ``secret=False`` makes a public one (a native app using PKCE only)."""
        with self._lock:
            cid = client_id or f"client-{secrets.token_hex(4)}"
            client = OAuthClient(
                client_id=cid, client_secret=secrets.token_urlsafe(24) if secret else None, scope=scope,
                access_token_lifetime=access_token_lifetime, introspect=introspect,
                grant_types=tuple(grant_types) if grant_types is not None else OAuthClient.grant_types)
            self._clients[cid] = client
            return client

    def add_user(self, name: str) -> None:
        """A user the authorization endpoint may approve (login_hint must name one)."""
        with self._lock:
            self._users.add(name)

    def approve_device(self, user_code: str, user: str) -> None:
        """The user enters ``user_code`` on the verification page and approves."""
        with self._lock:
            for cred in self._devices.values():
                if cred.user_code == user_code:
                    if user not in self._users:
                        raise KeyError(f"unknown user {user!r}")
                    cred.user = user
                    self._event("device", client_id=cred.client_id, user=user)
                    return
        raise KeyError(f"no device authorization with user code {user_code!r}")

    def suspend_user(self, user: str, suspended: bool = True) -> None:
        """An administrator turns the user's mail access off (or on again): introspection answers
        inactive for all their tokens, while the token endpoint still issues new ones."""
        with self._lock:
            (self._suspended.add if suspended else self._suspended.discard)(user)

    def revoke_user(self, user: str) -> int:
        """Revoke every token of ``user`` (as an administrator would); returns how many."""
        with self._lock:
            grants_ = {t.grant_id for t in self._by_access.values() if t.user == user}
            for g in grants_:
                self._revoke_grant(g)
            return len(grants_)

    def token(self, value: str) -> Token | None:
        """The record of an access or refresh token (tests read lifetimes and states)."""
        with self._lock:
            return self._by_access.get(value) or self._by_refresh.get(value)

    def tokens_of(self, user: str) -> list[Token]:
        with self._lock:
            return sorted((t for t in self._by_access.values() if t.user == user), key=lambda t: t.issued_at)

    def secrets(self) -> set[str]:
        """Every token, code and client secret this server issued (for leak checks)."""
        with self._lock:
            out = set(self._by_access) | set(self._by_refresh) | set(self._codes)
            out |= {d.device_code for d in self._devices.values()}
            out |= {c.client_secret for c in self._clients.values() if c.client_secret}
            return {s for s in out if s}

    def events_of(self, kind: str, **match: Any) -> list[Event]:
        with self._lock:
            return [e for e in self.events
                    if e.kind == kind and all(e.details.get(k) == v for k, v in match.items())]

    # ------------------------------------------------------------------ internals

    def _make_authlib(self) -> _AuthlibAdapter:
        server = _AuthlibAdapter(self)

        def expires_in(client: OAuthClient, grant_type: str) -> float:
            lifetime = client.access_token_lifetime or self.access_token_lifetime
            return int(lifetime) if float(lifetime).is_integer() else lifetime

        server.register_token_generator("default", BearerTokenGenerator(
            lambda **kw: "at-" + secrets.token_urlsafe(32),
            lambda **kw: "rt-" + secrets.token_urlsafe(32),
            expires_in))
        oidc = _OpenIDCode(require_nonce=False)
        oidc.owner = self
        server.register_grant(_AuthorizationCodeGrant, [CodeChallenge(required=True), oidc])
        server.register_grant(_RefreshTokenGrant)
        server.register_grant(_DeviceCodeGrant, [oidc])  # Entra returns an id_token here too
        server.register_endpoint(_Revocation)
        server.register_endpoint(_Introspection)
        server.register_endpoint(_DeviceAuthorizationEndpoint)
        return server

    def _client_by_id(self, client_id: str) -> OAuthClient:
        return self._clients[client_id]

    def _event(self, kind: str, **details: Any) -> None:
        self.events.append(Event(time.time(), kind, details))

    def _save_token(self, token: dict, request: _Request) -> None:
        old: Token | None = request.refresh_token if isinstance(request.refresh_token, Token) else None
        record = Token(access_token=token["access_token"], refresh_token=token.get("refresh_token"),
                       client_id=request.client.client_id, user=request.user, scope=token.get("scope", ""),
                       issued_at=time.time(), expires_in=float(token.get("expires_in", 0)),
                       grant_id=old.grant_id if old else secrets.token_hex(8))
        self._by_access[record.access_token] = record
        if record.refresh_token:
            self._by_refresh[record.refresh_token] = record
        self._event("token", client_id=record.client_id, user=record.user,
                    grant_type=request.payload.grant_type, rotated=old is not None)

    def _revoke_grant(self, grant_id: str) -> None:
        for t in list(self._by_access.values()):
            if t.grant_id == grant_id:
                t.access_revoked = True
                t.refresh_revoked = True

    def _discovery(self, prefix: str, issuer: str) -> dict:
        return {"issuer": issuer,
                "authorization_endpoint": f"{self.base_url}{prefix}/authorize",
                "token_endpoint": f"{self.base_url}{prefix}/token",
                "device_authorization_endpoint": f"{self.base_url}{prefix}/devicecode" if prefix.endswith(MS_PREFIX)
                else f"{self.base_url}/device",
                "revocation_endpoint": f"{self.base_url}/revoke",
                "introspection_endpoint": f"{self.base_url}/introspect",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_CODE_GRANT_TYPE],
                "code_challenge_methods_supported": ["S256", "plain"],
                "token_endpoint_auth_methods_supported": ALL_AUTH_METHODS,
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["HS256"]}

    def _route(self, path: str) -> tuple[str, str, str | None]:
        """path -> (endpoint name, prefix, tenant)."""
        parts = path.rstrip("/").split("/")
        # /{tenant}/oauth2/v2.0/{authorize,token,devicecode} and /{tenant}/v2.0/.well-known/...
        if len(parts) == 5 and parts[2] == "oauth2" and parts[3] == "v2.0":
            tenant = parts[1]
            return {"devicecode": "device"}.get(parts[4], parts[4]), f"/{tenant}{MS_PREFIX}", tenant
        if len(parts) == 5 and parts[2] == "v2.0" and parts[3] == ".well-known" and parts[4] == "openid-configuration":
            return "ms-discovery", f"/{parts[1]}{MS_PREFIX}", parts[1]
        if len(parts) == 3 and parts[1] == ".well-known":
            return "discovery", "", None
        if len(parts) == 3 and parts[1] == "device" and parts[2] == "verify":
            return "device-verify", "", None
        return (parts[1] if len(parts) == 2 else "?"), "", None

    def _wsgi(self, environ: dict, start_response) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "/")
        args = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        form: dict[str, str] = {}
        if method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        headers = _Headers({k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")})
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        uri = f"{self.base_url}{path}" + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
        request = _Request(method, uri, headers, args, form)
        with self._lock:
            try:
                status, body, out_headers = self._dispatch(method, path, request)
            except OAuth2Error as exc:
                status, body, out_headers = exc()
        if isinstance(body, (dict, list)):
            payload = json.dumps(body).encode()
            out_headers = [h for h in out_headers if h[0].lower() != "content-type"]
            out_headers.append(("Content-Type", "application/json"))
        else:
            payload = (body or "").encode() if isinstance(body, str) else (body or b"")
        reason = {200: "OK", 302: "Found", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                  405: "Method Not Allowed"}.get(status, "Status")
        start_response(f"{status} {reason}", [(str(k), str(v)) for k, v in out_headers]
                       + [("Content-Length", str(len(payload))), ("Cache-Control", "no-store")])
        return [payload]

    def _dispatch(self, method: str, path: str, request: _Request) -> tuple[int, Any, list]:
        name, prefix, tenant = self._route(path)
        a = self._authlib
        if name == "authorize" and method == "GET":
            return self._authorize(request)
        if name == "token" and method == "POST":
            status, body, headers = a.create_token_response(request)
            if status == 200 and request.form.get("client_info") == "1" and isinstance(body, dict):
                rec = self._by_access.get(body.get("access_token", ""))
                if rec is not None:  # what Entra adds, from which msal builds the account id
                    info = json.dumps({"uid": rec.user, "utid": tenant or "tenant"}).encode()
                    body["client_info"] = base64.urlsafe_b64encode(info).decode().rstrip("=")
            return status, body, headers
        if name == "device" and method == "POST":
            return a.create_endpoint_response("device_authorization", request)
        if name == "revoke" and method == "POST":
            return a.create_endpoint_response("revocation", request)
        if name == "introspect" and method == "POST":
            return a.create_endpoint_response("introspection", request)
        if name == "ms-discovery" and method == "GET":
            return 200, self._discovery(prefix, f"{self.base_url}/{tenant}/v2.0"), []
        if name == "discovery" and method == "GET":
            return 200, self._discovery("", self.issuer), []
        if name == "device-verify" and method == "GET":
            user = request.args.get("login_hint") or self.default_user
            try:
                self.approve_device(request.args.get("user_code", ""), user or "")
            except KeyError as exc:
                return 400, {"error": "invalid_request", "error_description": str(exc)}, []
            return 200, "approved; return to the device", [("Content-Type", "text/plain")]
        return 404, {"error": "not_found", "error_description": f"no endpoint {method} {path}"}, []

    def _authorize(self, request: _Request) -> tuple[int, Any, list]:
        user = request.args.get("login_hint") or self.default_user
        grant = self._authlib.get_consent_grant(request)
        if not user or user not in self._users:
            # The user "declines": the client gets access_denied at its redirect URI.
            self._event("authorize", client_id=request.args.get("client_id"), user=user, approved=False)
            return self._authlib.create_authorization_response(request, grant_user=None, grant=grant)
        self._event("authorize", client_id=request.args.get("client_id"), user=user, approved=True)
        return self._authlib.create_authorization_response(request, grant_user=user, grant=grant)

    # ------------------------------------------------------------------ client side helpers

    def refresh(self, client: OAuthClient, refresh_token: str) -> tuple[int, dict]:
        """POST a refresh grant as ``client`` would (tests use it to try an old refresh token)."""
        return self._post(self.token_endpoint, {"grant_type": "refresh_token", "refresh_token": refresh_token},
                          client)

    def revoke(self, client: OAuthClient, token: str, hint: str | None = None) -> int:
        """POST to the revocation endpoint as ``client`` would."""
        data = {"token": token}
        if hint:
            data["token_type_hint"] = hint
        return self._post(self.revocation_endpoint, data, client)[0]

    def introspect(self, token: str) -> dict:
        """POST to the introspection endpoint as Dovecot does."""
        return self._post(self.introspection_endpoint, {"token": token}, self._introspector)[1]

    def _post(self, url: str, data: dict, client: OAuthClient) -> tuple[int, dict]:
        import http.client

        parts = urlsplit(url)
        body = urlencode(data if client.client_secret else {**data, "client_id": client.client_id})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if client.client_secret:
            creds = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=ctx, timeout=30)
        try:
            conn.request("POST", parts.path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else {})
        finally:
            conn.close()
