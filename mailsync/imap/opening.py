"""Opening an IMAP session without I/O: greeting, STARTTLS, capabilities, and the login (LOGIN,
AUTHENTICATE PLAIN, or an OAuth2 bearer token through mailsync.imap.sasl, refreshed once when refused).

Owns: every step and decision from the server's greeting to the logged-in capabilities, and the
errors that name what went wrong. It is a generator: it yields what the shell must do (Send bytes,
Receive the next parsed response, StartTls, or get a Token) and is sent back the response or the
token; it returns Opened. The blocking shell (mailsync.imap.connection.connect) and the asyncio
shell (mailsync.push.client.PushClient.open) both drive it, so the two speak one login. Must not:
do I/O, log, or let a secret reach a Send's ``what`` (the text shells keep in transcripts) or any
error message.

Rules:
  O1  A greeting of BYE is a refusal; anything but OK or PREAUTH is not IMAP.
  O2  tls = "starttls": STARTTLS before anything else, refused when the server does not offer it or
      greets PREAUTH (a session already authenticated in plaintext cannot be secured); what the server
      announced before TLS is forgotten (RFC 3501 6.2.1).
  O3  A password with a control character is refused before anything is sent (CR LF would end LOGIN).
  O4  ASCII credentials go by LOGIN; others (or LOGINDISABLED) by AUTHENTICATE PLAIN, which carries
      UTF-8 (RFC 4616); with neither possible, an error naming AUTHENTICATE PLAIN.
  O5  OAuth2: OAUTHBEARER where offered, else XOAUTH2; a refused token is refreshed and tried once more.
  O6  Capabilities after login come from the login's OK code when it names IMAP4, else from CAPABILITY.
"""

from __future__ import annotations

import base64
import itertools
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass

from mailsync.config.model import AccountConfig
from mailsync.errors import AuthError, ConnectError, CredentialError, ProtocolError
from mailsync.imap.throttle import throttle_check, untagged_throttle
from mailsync.imap import sasl
from mailsync.imap.responses import Continuation, Event, Tagged, Untagged, parse_response_code, quote

_tags = itertools.count(1)


def new_tag() -> bytes:
    """A tag no other command of this process has used (both shells draw from it)."""
    return b"MS%d" % next(_tags)


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes
    what: str  # for transcripts: the command's name only when the data holds a secret


@dataclass(frozen=True, slots=True)
class Receive:
    """Send back the next complete response (an Event)."""


@dataclass(frozen=True, slots=True)
class StartTls:
    """Wrap the connection in TLS now (the server said OK to STARTTLS); send back None."""


@dataclass(frozen=True, slots=True)
class Token:
    """Send back an OAuth2 access token: a fresh one, or a new one when ``rejected`` was refused."""

    rejected: str | None = None


@dataclass(frozen=True, slots=True)
class Opened:
    capabilities: frozenset[str]
    mechanism: str | None  # the SASL mechanism used, None for LOGIN or PREAUTH


Step = Send | Receive | StartTls | Token
Opening = Generator[Step, object, Opened]
RECEIVE = Receive()


def drive(steps: Opening, do: Callable[[Step], object]) -> Opened:
    """Run ``steps`` to the end with a blocking ``do(step)`` that carries each step out and returns
    what the step asks for (the response, the token; None otherwise)."""
    value = None
    while True:
        try:
            step = steps.send(value)
        except StopIteration as done:
            return done.value
        value = do(step)


def check_credentials(account: AccountConfig, password: str | None) -> None:
    """O3: a user name or password with a control character is refused before anything is sent."""
    for what, value in (("username", account.username), ("password", password or "")):
        bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
        if bad is not None:
            raise CredentialError(f"account '{account.name}': the {what} contains the control character "
                                  f"{bad!r}; it is not sent",
                                  hint=f"check the {what} source (a trailing newline from cmd: or a file?)")


def open_session(account: AccountConfig, password: str | None, *, oauth2: bool = False) -> Opening:
    """The steps from greeting to logged in (rules O1-O6). ``password`` is ignored with ``oauth2``,
    where tokens are asked for with Token steps."""
    if not oauth2:
        check_credentials(account, password)
    where = f"{account.host}:{account.port}"
    greeting = yield RECEIVE
    if isinstance(greeting, Untagged) and greeting.kind == "BYE":
        throttled = untagged_throttle(account.name, "BYE", greeting.text, "connecting")
        if throttled is not None:  # too many connections, say: a wait, not a broken server
            raise throttled
        raise ConnectError(f"account '{account.name}': {where} refused the connection: {greeting.text[:200]}")
    if not (isinstance(greeting, Untagged) and greeting.kind in ("OK", "PREAUTH")):
        raise ProtocolError(f"account '{account.name}': {where} sent no IMAP greeting",
                            hint="check host and port: the server there does not speak IMAP")
    preauth = greeting.kind == "PREAUTH"
    caps = capabilities_in(greeting.text)
    if account.tls == "starttls":
        if preauth:
            raise ConnectError(f"account '{account.name}': {where} greeted PREAUTH on a plaintext connection, "
                               f"so STARTTLS is impossible", hint='use tls = "implicit" with port 993')
        if caps is None:
            caps = yield from _capability(account)
        if "STARTTLS" not in caps:
            raise ConnectError(f"account '{account.name}': {where} does not offer STARTTLS",
                               hint='use tls = "implicit" with port 993, or check the port')
        _, tagged = yield from command(account, b"STARTTLS", "STARTTLS")
        if tagged.status != "OK":
            raise ConnectError(f"account '{account.name}': {where} refused STARTTLS: {tagged.text[:200]}")
        yield StartTls()
        caps = None
    if caps is None:
        caps = yield from _capability(account)
    if preauth:
        return Opened(caps, None)
    mechanism = None
    if oauth2:
        mechanism, tagged = yield from _oauth2(account, caps)
    else:
        tagged = yield from _password(account, caps, password or "")
        if tagged.status != "OK":
            throttle_check(account.name, tagged, "logging in")  # Gmail: NO [ALERT] Too many simultaneous connections
            raise AuthError(f"account '{account.name}': {where} refused the login of {account.username!r}: "
                            f"{tagged.text[:200]}", hint="check username and the password source")
    after = _capability_code(tagged.code)
    if after is None or not any(c.startswith("IMAP4") for c in after):
        after = yield from _capability(account)
    return Opened(after, mechanism)


def capabilities_in(text: str) -> frozenset[str] | None:
    """The capabilities a ``[CAPABILITY ...]`` response code lists, upper-cased; None without one."""
    return _capability_code(parse_response_code(text)[0])


def _capability_code(code: str | None) -> frozenset[str] | None:
    if code and code.upper().startswith("CAPABILITY "):
        return shared_capabilities(c.upper() for c in code.split()[1:])
    return None


_CAPABILITY_SETS: dict[frozenset[str], frozenset[str]] = {}


def shared_capabilities(names) -> frozenset[str]:
    """``frozenset(names)``, the same object for every connection that lists the same capabilities
    (a watch daemon holds two connections per account, most of them to one server: about 6 KB each
    otherwise). At most 256 distinct sets are remembered."""
    caps = frozenset(names)
    shared = _CAPABILITY_SETS.get(caps)
    if shared is not None:
        return shared
    if len(_CAPABILITY_SETS) < 256:
        caps = frozenset(sys.intern(c) for c in caps)
        _CAPABILITY_SETS.setdefault(caps, caps)
    return caps


def command(account: AccountConfig, line: bytes, what: str, *, answers: list[bytes] | None = None,
            conversation=None, secret: bool = False) -> Generator[Step, object, tuple[list[Event], Tagged]]:
    """One command of the opening, up to its tagged answer: (untagged events, tagged). Each
    continuation request is answered with the next of ``answers``, or by the SASL ``conversation``."""
    tag = new_tag()
    yield Send(tag + b" " + line + b"\r\n", what if secret else line.decode("ascii", "replace"))
    pending = list(answers or [])
    untagged: list[Event] = []
    while True:
        ev = yield RECEIVE
        if isinstance(ev, Tagged):
            if ev.tag != tag:
                raise ProtocolError(f"account '{account.name}': unexpected tagged answer {ev.tag[:40]!r} while {what}")
            return untagged, ev
        if isinstance(ev, Continuation):
            if conversation is not None:
                try:
                    data = base64.b64decode(ev.text.strip() or b"")
                except ValueError:
                    data = b""
                reply = conversation(data)
                reply_line = b"*" if reply is None else base64.b64encode(reply)
            elif pending:
                reply_line = pending.pop(0)
            else:
                raise ProtocolError(f"account '{account.name}': unexpected continuation request while {what}")
            yield Send(reply_line + b"\r\n", what + " (continued)")
            continue
        if isinstance(ev, Untagged) and ev.kind == "BYE":
            throttled = untagged_throttle(account.name, "BYE", ev.text, what)
            if throttled is not None:
                raise throttled
            raise ConnectError(f"account '{account.name}': the server said BYE while {what}: {ev.text[:200]}")
        untagged.append(ev)


def _capability(account: AccountConfig):
    untagged, tagged = yield from command(account, b"CAPABILITY", "CAPABILITY")
    for ev in untagged:
        if isinstance(ev, Untagged) and ev.kind == "CAPABILITY":
            return shared_capabilities(c.upper() for c in ev.text.split())
    if tagged.status != "OK":
        raise ProtocolError(f"account '{account.name}': CAPABILITY failed: {tagged.status} {tagged.text[:200]}")
    return frozenset()


def _password(account: AccountConfig, caps: frozenset[str], password: str):
    """O4."""
    where = f"{account.host}:{account.port}"
    ascii_only = (account.username + password).isascii()
    if ascii_only and "LOGINDISABLED" not in caps:
        line = b"LOGIN " + quote(account.username) + b" " + quote(password)
        return (yield from command(account, line, "LOGIN", secret=True))[1]
    if "AUTH=PLAIN" not in caps:
        if ascii_only:
            raise AuthError(f"account '{account.name}': {where} allows neither AUTHENTICATE PLAIN nor LOGIN here",
                            hint='use TLS (tls = "implicit" or "starttls")')
        raise AuthError(f"account '{account.name}': the user name or password has non-ASCII characters and "
                        f"{where} does not offer AUTHENTICATE PLAIN, the one way to send them",
                        hint="use an ASCII password, or ask the provider for an app password")
    blob = base64.b64encode(b"\0" + account.username.encode() + b"\0" + password.encode())
    if "SASL-IR" in caps:
        return (yield from command(account, b"AUTHENTICATE PLAIN " + blob, "AUTHENTICATE", secret=True))[1]
    return (yield from command(account, b"AUTHENTICATE PLAIN", "AUTHENTICATE", answers=[blob], secret=True))[1]


def _oauth2(account: AccountConfig, caps: frozenset[str]):
    """O5: (mechanism, the tagged OK)."""
    where = f"{account.host}:{account.port}"
    mech = sasl.choose_mechanism(caps)
    if mech is None:
        raise AuthError(f"account '{account.name}': {where} offers neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2, "
                        "so it cannot take an OAuth2 token",
                        hint='check host and port, or use auth = "password" with this server')
    token = yield Token()
    for attempt in (1, 2):
        conversation = sasl.Conversation(mech, account.username, token, host=account.host, port=account.port)
        _, tagged = yield from command(account, b"AUTHENTICATE " + mech.encode(), "AUTHENTICATE",
                                       conversation=conversation, secret=True)
        if tagged.status == "OK":
            return mech, tagged
        throttle_check(account.name, tagged, "logging in")  # a throttle is not a bad token: no refresh
        if attempt == 2:
            said = tagged.text[:200]
            if conversation.challenge is not None:
                said += f" ({conversation.challenge.describe()})"
            raise AuthError(
                f"account '{account.name}': {where} refused the OAuth2 access token of {account.username!r} "
                f"({mech}) even after a refresh: {said}",
                hint=f"check that username is the address you signed in with, and that the token's scopes "
                     f"include the provider's IMAP scope; then run mailsync auth login {account.name}")
        token = yield Token(rejected=token)  # refresh once, then retry
    raise AssertionError("unreachable")
