"""SASL for OAuth2 bearer tokens: XOAUTH2 (Google, Microsoft) and OAUTHBEARER (RFC 7628).

Owns: choosing the mechanism from the server's capabilities, building the client's initial
response, reading the server's error challenge, and the client's answer to it (the whole
conversation, as a callable that imaplib's ``authenticate`` drives). Pure: bytes and strings in,
bytes and values out. Must not: do I/O, log, or keep a token beyond the conversation object that
the caller drops after AUTHENTICATE; no message or exception here ever contains a token.

The two exchanges, as the client sees them (C: after base64 decoding, S: the continuation data):

  XOAUTH2      C: user=USER ^A auth=Bearer TOKEN ^A ^A
               on failure  S: {"status":"401","schemes":"bearer","scope":"..."}   C: (empty)   S: NO
  OAUTHBEARER  C: n,a=USER, ^A host=HOST ^A port=PORT ^A auth=Bearer TOKEN ^A ^A   (RFC 7628 3.1)
               on failure  S: {"status":"invalid_token",...}   C: ^A   S: NO        (RFC 7628 3.2.3)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "OAUTHBEARER",
    "XOAUTH2",
    "BearerChallenge",
    "Conversation",
    "TokenSource",
    "choose_mechanism",
    "client_abort_response",
    "gs2_saslname",
    "oauthbearer_initial_response",
    "parse_error_challenge",
    "xoauth2_initial_response",
]

XOAUTH2 = "XOAUTH2"
OAUTHBEARER = "OAUTHBEARER"
#: Preference order: the standard mechanism first.
MECHANISMS = (OAUTHBEARER, XOAUTH2)

# RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_KVSEP = b"\x01"


class TokenSource(Protocol):
    """What the connection asks for a token: a fresh one, or a new one after ``rejected`` failed."""

    def access_token(self, *, rejected: str | None = None) -> str: ...


def choose_mechanism(capabilities: Iterable[str | bytes]) -> str | None:
    """OAUTHBEARER when the server advertises AUTH=OAUTHBEARER, else XOAUTH2 when it advertises
    AUTH=XOAUTH2, else None."""
    offered = set()
    for cap in capabilities:
        text = cap.decode("ascii", "replace") if isinstance(cap, (bytes, bytearray)) else str(cap)
        text = text.upper()
        if text.startswith("AUTH="):
            offered.add(text[5:])
    for mech in MECHANISMS:
        if mech in offered:
            return mech
    return None


def _check_user(user: str) -> bytes:
    if not user or "\x01" in user or any(ord(c) < 0x20 for c in user):
        raise ValueError("the user name for SASL must be non-empty, without control characters")
    return user.encode("utf-8")


def _check_token(token: str) -> bytes:
    if not isinstance(token, str) or not _B64TOKEN.fullmatch(token):
        # The value is never shown: it is a credential.
        raise ValueError("the access token is not a valid bearer token (RFC 6750 b64token); value not shown")
    return token.encode("ascii")


def gs2_saslname(name: str) -> str:
    """RFC 5801 saslname: "=" -> "=3D" and "," -> "=2C" (for the authzid of the GS2 header)."""
    return name.replace("=", "=3D").replace(",", "=2C")


def xoauth2_initial_response(user: str, token: str) -> bytes:
    """``user=USER^Aauth=Bearer TOKEN^A^A`` (Google's and Microsoft's XOAUTH2)."""
    return b"user=" + _check_user(user) + _KVSEP + b"auth=Bearer " + _check_token(token) + _KVSEP + _KVSEP


def oauthbearer_initial_response(user: str, token: str, *, host: str | None = None,
                                 port: int | None = None) -> bytes:
    """RFC 7628 3.1: ``n,a=USER,^Ahost=HOST^Aport=PORT^Aauth=Bearer TOKEN^A^A`` (host and port
    only when given)."""
    out = b"n,a=" + gs2_saslname(_check_user(user).decode("utf-8")).encode("utf-8") + b"," + _KVSEP
    if host:
        if any(c in host for c in "\x01\r\n"):
            raise ValueError(f"host {host!r} contains a control character")
        out += b"host=" + host.encode("idna" if not host.isascii() else "ascii") + _KVSEP
    if port is not None:
        out += b"port=" + str(int(port)).encode("ascii") + _KVSEP
    return out + b"auth=Bearer " + _check_token(token) + _KVSEP + _KVSEP


def client_abort_response(mechanism: str) -> bytes:
    """What the client sends after the server's error challenge: a lone ^A for OAUTHBEARER
    (RFC 7628 3.2.3), an empty response for XOAUTH2. The server then answers NO."""
    return _KVSEP if mechanism.upper() == OAUTHBEARER else b""


@dataclass(frozen=True)
class BearerChallenge:
    """The server's error challenge (RFC 7628 3.2.2; XOAUTH2 servers send the same shape)."""

    status: str  # "invalid_token", "insufficient_scope", "401", ...
    scope: str | None = None
    schemes: str | None = None
    openid_configuration: str | None = None

    def describe(self) -> str:
        text = f"status {self.status}"
        if self.scope:
            text += f", scope {self.scope}"
        return text


def parse_error_challenge(data: bytes) -> BearerChallenge | None:
    """The decoded continuation data of a failed exchange -> BearerChallenge, or None when it is not
    the JSON object the RFC describes (then the caller just aborts the exchange)."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("status"), (str, int)):
        return None

    def opt(key: str) -> str | None:
        value = obj.get(key)
        return value if isinstance(value, str) else None

    return BearerChallenge(status=str(obj["status"]), scope=opt("scope"), schemes=opt("schemes"),
                           openid_configuration=opt("openid-configuration"))


class Conversation:
    """One SASL exchange, as the callable imaplib's ``authenticate`` wants: it is called with each
    (decoded) continuation and returns the (raw) response. The first call sends the initial
    response; a second one is the server's error challenge, kept in ``challenge``, answered with
    the abort response. A third (a server that keeps asking) is cancelled with ``*`` (None)."""

    def __init__(self, mechanism: str, user: str, token: str, *, host: str | None = None,
                 port: int | None = None) -> None:
        mechanism = mechanism.upper()
        if mechanism == OAUTHBEARER:
            self._initial: bytes | None = oauthbearer_initial_response(user, token, host=host, port=port)
        elif mechanism == XOAUTH2:
            self._initial = xoauth2_initial_response(user, token)
        else:
            raise ValueError(f"unsupported SASL mechanism {mechanism!r}; use {OAUTHBEARER} or {XOAUTH2}")
        self.mechanism = mechanism
        self.challenge: BearerChallenge | None = None
        self.raw_challenge: bytes | None = None
        self._calls = 0

    def __repr__(self) -> str:
        return f"Conversation({self.mechanism}, step {self._calls})"  # never the token

    def __call__(self, data: bytes) -> bytes | None:
        self._calls += 1
        if self._calls == 1:
            initial, self._initial = self._initial, None
            return initial
        if self._calls == 2:
            self.raw_challenge = bytes(data[:1000])
            self.challenge = parse_error_challenge(data)
            return client_abort_response(self.mechanism)
        return None
