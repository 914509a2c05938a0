"""The records and authlib plumbing of the test OAuth 2.0 server (mailsync.testing.oauth_server):
clients, authorization codes, tokens and device codes as authlib's grants and endpoints want them.

Owns: those records and the authlib subclasses that store and find them. Must not: import any
other mailsync module, listen anywhere, or log a token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipaddress
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2 import AuthorizationServer as _AuthlibServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE, DeviceAuthorizationEndpoint, DeviceCodeGrant
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode


if TYPE_CHECKING:
    from mailsync.testing.oauth_server import OAuthServer

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

    def __init__(self, owner: "OAuthServer") -> None:
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
