"""One IMAP connection for push, over asyncio streams, read with the project's own ResponseParser.

Owns: opening the connection per the account's TLS policy (implicit, STARTTLS, none), the greeting,
login (AUTHENTICATE PLAIN, LOGIN, or OAuth2 through mailsync.imap.sasl), CAPABILITY, the folder
listing the daemon plans with, and moving bytes: `send()` writes, `read_event()` returns the next
parsed response. Library exceptions (OSError, ssl, asyncio) are mapped to mailsync.errors here,
once. Must not: decide anything about push (mailsync.push.protocol does) or log a secret: the
command transcript kept for tests and debugging shows LOGIN and AUTHENTICATE without arguments.

Why not aioimaplib, which DESIGN.md names for IDLE/NOTIFY: its command table has no NOTIFY and its
IDLE is allowed only in the SELECTED state (NOTIFY selects nothing), so we would be patching its
private tables; its `wait_server_push()`/`idle_start()` API hides the timers that the fault tests
need to control (an unanswered DONE or NOOP within `response_timeout`, on an injected clock); and it
parses in `data_received` recursively (STYLE.md: RecursionError on long responses) with a grammar of
its own. Speaking IMAP here is ~200 lines: push needs a dozen commands, the strict sans-I/O
ResponseParser and the payload parsers are the ones the sync is tested with, and the shell stays
"need data, read, feed" as in httpcore. Every protocol decision sits in protocol.py, unit-tested.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import socket
import ssl
from collections import deque
from dataclasses import dataclass

from mailsync.config.model import AccountConfig
from mailsync.errors import AuthError, ConnectError, MailsyncError, ProtocolError, TLSVerifyError
from mailsync.imap.connection import tls_context
from mailsync.imap.payloads import parse_list
from mailsync.imap.responses import Continuation, Event, ResponseParser, Tagged, Untagged, parse_response_code, quote
from mailsync.push import logs
from mailsync.push.protocol import ListedFolder

STREAM_LIMIT = 16 << 20  # the longest line asyncio buffers (literals are read with readexactly)
_tags = itertools.count(1)


@dataclass
class Credentials:
    """What to log in with: a password, or an OAuth2 token source (mailsync.imap.sasl.TokenSource)."""

    password: str | None = None
    tokens: object | None = None

    def __repr__(self) -> str:  # never the secret
        return f"Credentials({'password' if self.password is not None else 'oauth2'})"


async def credentials_for(account: AccountConfig) -> Credentials:
    """Resolve the account's password source (cmd: and keyring: may block: in a thread), or its
    OAuth2 token manager. Raises CredentialError / MailsyncError naming the account."""
    if account.auth == "oauth2":
        from mailsync.auth.oauth2 import tokens_for

        return Credentials(tokens=tokens_for(account))
    if account.password is None:
        raise AuthError(f"account '{account.name}': no password source configured",
                        hint='set password = "env:NAME" (or cmd:, keyring:) for the account')
    from mailsync.auth.secrets import resolve_secret

    secret = await asyncio.to_thread(resolve_secret, account.password)
    logs.register_secret(secret)
    return Credentials(password=secret)


def _keepalive(sock: socket.socket | None) -> None:
    """TCP keepalive: the kernel notices a peer that vanished (host down, NAT forgot us) in about two
    minutes even while IMAP is silent; a stalled peer that still ACKs is caught by protocol.py's P1/P3."""
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 15)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)


class PushClient:
    """A logged-in connection. `open()` it; then `send()` / `read_event()`; `close()` at the end."""

    def __init__(self, account: AccountConfig, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.account = account
        self.reader, self.writer = reader, writer
        self.parser = ResponseParser()
        self.capabilities: frozenset[str] = frozenset()
        self.transcript: deque[str] = deque(maxlen=200)  # commands sent, secrets left out
        self._events: deque[Event] = deque()
        self._preauth = False  # the greeting was PREAUTH: no login
        self.closed = False

    @property
    def where(self) -> str:
        return f"{self.account.host}:{self.account.port}"

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    # -- opening --------------------------------------------------------------------------------

    @classmethod
    async def open(cls, account: AccountConfig, credentials: Credentials, *, timeout: float) -> "PushClient":
        """Connect, (STARTTLS,) log in, learn the capabilities. Raises ConnectError, TLSVerifyError,
        AuthError or ProtocolError, each naming the account."""
        client = None
        try:
            async with asyncio.timeout(timeout):
                client = await cls._connect(account, timeout)
                await client._login(credentials)
            return client
        except TimeoutError:
            if client is not None:
                client.abort()
            raise ConnectError(f"account '{account.name}': {account.host}:{account.port} did not answer within "
                               f"{timeout:g} s while connecting and logging in") from None
        except BaseException:
            if client is not None:
                client.abort()
            raise

    @classmethod
    async def _connect(cls, account: AccountConfig, timeout: float) -> "PushClient":
        ctx = tls_context(account) if account.tls != "none" else None
        try:
            reader, writer = await asyncio.open_connection(
                account.host, account.port, limit=STREAM_LIMIT,
                ssl=ctx if account.tls == "implicit" else None,
                server_hostname=account.host if account.tls == "implicit" else None,
                ssl_handshake_timeout=timeout if account.tls == "implicit" else None)
        except BaseException as exc:
            raise _mapped(account, exc, "connecting") from exc
        client = cls(account, reader, writer)
        try:
            return await client._greet(ctx, timeout)
        except BaseException:
            client.abort()
            raise

    async def _greet(self, ctx, timeout: float) -> "PushClient":
        """The greeting, and STARTTLS when the account asks for it."""
        client, account, writer = self, self.account, self.writer
        _keepalive(writer.get_extra_info("socket"))
        greeting = await client.read_event()
        if isinstance(greeting, Untagged) and greeting.kind == "BYE":
            client.abort()
            raise ConnectError(f"account '{account.name}': {client.where} refused the connection: {greeting.text[:200]}")
        if not (isinstance(greeting, Untagged) and greeting.kind in ("OK", "PREAUTH")):
            client.abort()
            raise ProtocolError(f"account '{account.name}': {client.where} sent no IMAP greeting")
        client._caps_from(greeting.text)
        if account.tls == "starttls":
            if client.capabilities and not client.has("STARTTLS"):
                client.abort()
                raise ConnectError(f"account '{account.name}': {client.where} does not offer STARTTLS",
                                   hint='use tls = "implicit" with port 993, or check the port')
            _, tagged = await client.command(b"STARTTLS", "STARTTLS")
            if tagged.status != "OK":
                client.abort()
                raise ConnectError(f"account '{account.name}': {client.where} refused STARTTLS: {tagged.text[:200]}")
            try:
                await writer.start_tls(ctx, server_hostname=account.host, ssl_handshake_timeout=timeout)
            except BaseException as exc:
                client.abort()
                raise _mapped(account, exc, "starting TLS") from exc
            client.capabilities = frozenset()  # learnt again after TLS (RFC 3501 6.2.1)
        client._preauth = greeting.kind == "PREAUTH"
        return client

    def _caps_from(self, text: str) -> bool:
        code, _ = parse_response_code(text)
        if code and code.upper().startswith("CAPABILITY "):
            self.capabilities = frozenset(c.upper() for c in code.split()[1:])
            return True
        return False

    async def _login(self, credentials: Credentials) -> None:
        acc = self.account
        if not self.capabilities:
            await self._capability()
        if self._preauth:
            return
        if credentials.tokens is not None:
            tagged = await self._oauth2(credentials.tokens)
        elif self.has("AUTH=PLAIN"):
            tagged = await self._plain(credentials.password or "")
        elif not self.has("LOGINDISABLED"):
            tagged = await self._login_command(credentials.password or "")
        else:
            raise AuthError(f"account '{acc.name}': {self.where} allows neither AUTHENTICATE PLAIN nor LOGIN here",
                            hint="use TLS (tls = \"implicit\" or \"starttls\")")
        if tagged.status != "OK":
            raise AuthError(f"account '{acc.name}': {self.where} refused the login of {acc.username!r}: "
                            f"{tagged.text[:200]}", hint="check username and the password source")
        if not self._caps_from(tagged.text) or not any(c.startswith("IMAP4") for c in self.capabilities):
            await self._capability()

    async def _capability(self) -> None:
        untagged, tagged = await self.command(b"CAPABILITY", "CAPABILITY")
        for ev in untagged:
            if isinstance(ev, Untagged) and ev.kind == "CAPABILITY":
                self.capabilities = frozenset(c.upper() for c in ev.text.split())

    async def _plain(self, password: str) -> Tagged:
        blob = base64.b64encode(b"\0" + self.account.username.encode() + b"\0" + password.encode())
        if self.has("SASL-IR"):
            _, tagged = await self.command(b"AUTHENTICATE PLAIN " + blob, "AUTHENTICATE", secret=True)
            return tagged
        _, tagged = await self.command(b"AUTHENTICATE PLAIN", "AUTHENTICATE", answers=[blob], secret=True)
        return tagged

    async def _login_command(self, password: str) -> Tagged:
        """LOGIN with quoted strings, or synchronizing literals for what a quoted string cannot carry."""

        def arg(value: str) -> tuple[bytes, bytes | None]:
            try:
                return quote(value), None
            except ValueError:
                data = value.encode("utf-8")
                return b"{%d}" % len(data), data

        (user, user_lit), (pw, pw_lit) = arg(self.account.username), arg(password)
        line, chunks = b"LOGIN " + user, []
        if user_lit is not None:  # "LOGIN {n}" -> "+" -> "<user> <password or {m}>"
            chunks.append(user_lit + b" " + pw)
        else:
            line += b" " + pw
        if pw_lit is not None:  # ... "{m}" -> "+" -> "<password>"
            chunks.append(pw_lit)
        _, tagged = await self.command(line, "LOGIN", answers=chunks, secret=True)
        return tagged

    async def _oauth2(self, tokens) -> Tagged:
        from mailsync.imap import sasl

        acc = self.account
        mech = sasl.choose_mechanism(self.capabilities)
        if mech is None:
            raise AuthError(f"account '{acc.name}': {self.where} offers neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2",
                            hint='check host and port, or use auth = "password" with this server')
        token = await asyncio.to_thread(tokens.access_token)
        logs.register_secret(token)
        tagged = None
        for attempt in (1, 2):
            conv = sasl.Conversation(mech, acc.username, token, host=acc.host, port=acc.port)
            tagged = await self.command(b"AUTHENTICATE " + mech.encode(), "AUTHENTICATE", sasl=conv, secret=True)
            tagged = tagged[1]
            if tagged.status == "OK" or attempt == 2:
                break
            token = await asyncio.to_thread(tokens.access_token, rejected=token)
            logs.register_secret(token)
        assert tagged is not None
        return tagged

    # -- commands (setup phase) -----------------------------------------------------------------

    async def command(self, command: bytes, what: str, *, answers: list[bytes] | None = None, sasl=None,
                      secret: bool = False) -> tuple[list[Event], Tagged]:
        """Send one command and read up to its tagged answer: (untagged events, tagged). Each
        continuation request is answered with the next of `answers`, or by the SASL conversation."""
        tag = f"P{next(_tags)}".encode()
        await self.send(tag + b" " + command + b"\r\n", what, secret=secret)
        pending = list(answers or [])
        untagged: list[Event] = []
        while True:
            ev = await self.read_event()
            if isinstance(ev, Tagged):
                if ev.tag != tag:
                    raise ProtocolError(f"account '{self.account.name}': unexpected tagged answer {ev.tag[:40]!r} "
                                        f"while {what}")
                return untagged, ev
            if isinstance(ev, Continuation):
                if sasl is not None:
                    try:
                        data = base64.b64decode(ev.text.strip() or b"")
                    except ValueError:
                        data = b""
                    reply = sasl(data)
                    line = b"*" if reply is None else base64.b64encode(reply)
                elif pending:
                    line = pending.pop(0)
                else:
                    raise ProtocolError(f"account '{self.account.name}': unexpected continuation while {what}")
                await self.send(line + b"\r\n", what + " (continued)", secret=True)
                continue
            if isinstance(ev, Untagged) and ev.kind == "BYE" and what not in ("LOGOUT",):
                raise ConnectError(f"account '{self.account.name}': the server said BYE while {what}: {ev.text[:200]}")
            untagged.append(ev)

    async def list_folders(self) -> list[ListedFolder]:
        cmd = b'LIST "" "*"'
        if self.has("SPECIAL-USE") and (self.has("LIST-EXTENDED") or self.has("LIST-STATUS")):
            cmd += b" RETURN (SPECIAL-USE)"
        untagged, tagged = await self.command(cmd, "LIST")
        if tagged.status != "OK":
            raise ProtocolError(f"account '{self.account.name}': LIST failed: {tagged.status} {tagged.text[:200]}")
        out = []
        for ev in untagged:
            if isinstance(ev, Untagged) and ev.kind == "LIST":
                entry = parse_list(ev.raw)
                out.append(ListedFolder(entry.raw_name, tuple(entry.flags)))
        return out

    # -- bytes --------------------------------------------------------------------------------

    async def send(self, data: bytes, what: str, *, secret: bool = False) -> None:
        self.transcript.append(what if secret else data.decode("ascii", "replace").rstrip("\r\n"))
        try:
            self.writer.write(data)
            await self.writer.drain()
        except BaseException as exc:
            raise _mapped(self.account, exc, f"sending {what}") from exc

    async def read_event(self) -> Event:
        """The next complete server response. ConnectError when the stream ends or breaks,
        ProtocolError when it is not IMAP."""
        while not self._events:
            want = self.parser.wants()
            try:
                if want is None:
                    line = await self.reader.readuntil(b"\n")
                    events = self.parser.feed_line(line)
                else:
                    events = self.parser.feed_literal(await self.reader.readexactly(want))
            except asyncio.IncompleteReadError:
                raise ConnectError(f"account '{self.account.name}': {self.where} closed the connection") from None
            except asyncio.LimitOverrunError:
                raise ProtocolError(f"account '{self.account.name}': {self.where} sent a line longer than "
                                    f"{STREAM_LIMIT} bytes") from None
            except ProtocolError as exc:
                raise ProtocolError(f"account '{self.account.name}': {exc.message}") from None
            except MailsyncError:
                raise
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise _mapped(self.account, exc, "reading") from exc
            self._events.extend(events)
        return self._events.popleft()

    async def close(self, goodbye: bytes | None = None, *, timeout: float = 1.0) -> None:
        """Say goodbye (best effort, within `timeout`) and close."""
        if self.closed:
            return
        if goodbye:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    self.writer.write(goodbye)
                    await self.writer.drain()
                    while True:  # until the server closes, or its LOGOUT answer
                        ev = await self.read_event()
                        if isinstance(ev, Tagged) and ev.tag == b"WZ":
                            break
        self.abort()

    def abort(self) -> None:
        """Close at once (no goodbye)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.close()
        transport = self.writer.transport
        with contextlib.suppress(Exception):
            transport.abort()


def _mapped(account: AccountConfig, exc: BaseException, doing: str) -> BaseException:
    """Library exceptions -> mailsync.errors (once, at this boundary)."""
    where = f"{account.host}:{account.port}"
    name = account.name
    if isinstance(exc, (MailsyncError, asyncio.CancelledError)):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TLSVerifyError(f"account '{name}': the TLS certificate of {where} did not verify: {exc.verify_message}",
                              hint="if the server uses a private CA, set ca_file to its certificate; never disable "
                                   "verification")
    if isinstance(exc, ssl.SSLError):
        return ConnectError(f"account '{name}': TLS failed with {where} while {doing}: {exc.reason or exc}",
                            hint="check port and tls (implicit for 993, starttls for 143)")
    if isinstance(exc, socket.gaierror):
        return ConnectError(f"account '{name}': cannot resolve host {account.host!r}: {exc.strerror}",
                            hint="check the host name")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectError(f"account '{name}': connection to {where} refused",
                            hint="check host and port, and that the server is running")
    if isinstance(exc, TimeoutError):
        return ConnectError(f"account '{name}': {where} timed out while {doing}")
    if isinstance(exc, OSError):
        return ConnectError(f"account '{name}': connection to {where} failed while {doing}: {exc.strerror or exc}")
    return ConnectError(f"account '{name}': connection to {where} failed while {doing}: "
                        f"{exc.__class__.__name__}: {exc}")
