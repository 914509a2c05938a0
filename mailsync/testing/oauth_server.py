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

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE

from mailsync.testing.oauth_records import (ALL_AUTH_METHODS, AuthorizationCode, DeviceCredential, OAuthClient, Token,
                                            _AuthlibAdapter, _AuthorizationCodeGrant, _DeviceAuthorizationEndpoint,
                                            _DeviceCodeGrant, _Headers, _Introspection, _OpenIDCode,
                                            _RefreshTokenGrant, _Request, _Revocation)

__all__ = ["OAuthClient", "OAuthServer", "Token"]

HOST = "127.0.0.1"
MS_PREFIX = "/oauth2/v2.0"  # Entra layout: /{tenant}/oauth2/v2.0/{authorize,token,devicecode}


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
