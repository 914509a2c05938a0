"""One IMAP connection for push: the asyncio shell around the sans-I/O core the sync also uses.

Owns: the connection's stream (mailsync.push.tls_stream: connecting per the account's TLS policy,
STARTTLS's handshake), driving
mailsync.imap.opening (greeting, STARTTLS, login: the same steps and errors as the sync's blocking
shell), the folder listing the daemon plans with (mailsync.imap.commands, as the sync lists), and
moving bytes: `send()` writes, `read_event()` returns the next parsed response. Library exceptions
are mapped to mailsync.errors by mailsync.imap.failures, once. Must not: decide anything about push
(mailsync.push.protocol does) or log a secret: the command transcript kept for tests and debugging
shows LOGIN and AUTHENTICATE without arguments.

Why not aioimaplib, which DESIGN.md names for IDLE/NOTIFY: its command table has no NOTIFY and its
IDLE is allowed only in the SELECTED state (NOTIFY selects nothing), so we would be patching its
private tables; its `wait_server_push()`/`idle_start()` API hides the timers that the fault tests
need to control (an unanswered DONE or NOOP within `response_timeout`, on an injected clock); and it
parses in `data_received` recursively (STYLE.md: RecursionError on long responses) with a grammar of
its own. With the login, commands and answers in the shared core, this shell is "need data, read,
feed" as in httpcore. Every protocol decision sits in protocol.py, unit-tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from dataclasses import dataclass

from mailsync.config.model import AccountConfig
from mailsync.errors import AuthError, ConnectError, MailsyncError, ProtocolError
from mailsync.imap.commands import RemoteFolder, list_command, read_listing, refusal
from mailsync.imap.throttle import untagged_throttle
from mailsync.imap.failures import mapped
from mailsync.imap.opening import Receive, Send, StartTls, Token, new_tag, open_session
from mailsync.imap.responses import Event, ResponseParser, Tagged, Untagged
from mailsync.imap.transport import tls_context
from mailsync.push import logs
from mailsync.push.tls_stream import TlsStream

STREAM_LIMIT = 16 << 20  # the longest line asyncio buffers (literals are read with readexactly)


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

    def __init__(self, account: AccountConfig, stream: TlsStream) -> None:
        self.account = account
        self.stream = stream
        self.parser = ResponseParser()
        self.capabilities: frozenset[str] = frozenset()
        self.transcript: deque[str] = deque(maxlen=200)  # commands sent, secrets left out
        self._events: deque[Event] = deque()
        self.closed = False

    @property
    def where(self) -> str:
        return f"{self.account.host}:{self.account.port}"

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    # -- opening --------------------------------------------------------------------------------

    @classmethod
    async def open(cls, account: AccountConfig, credentials: Credentials, *, timeout: float) -> "PushClient":
        """Connect, (STARTTLS,) log in, learn the capabilities: mailsync.imap.opening's steps, as the
        sync takes them. Raises ConnectError, TLSVerifyError, AuthError, CredentialError or
        ProtocolError, each naming the account."""
        client = None
        try:
            async with asyncio.timeout(timeout):
                client = await cls._connect(account, timeout)
                await client._log_in(credentials, timeout)
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
        implicit = account.tls == "implicit"
        try:
            stream = await TlsStream.connect(account.host, account.port, limit=STREAM_LIMIT,
                                             tls=tls_context(account) if implicit else None,
                                             server_hostname=account.host, handshake_timeout=timeout)
        except BaseException as exc:
            raise mapped(account, exc, "connecting") from exc
        _keepalive(stream.socket)
        return cls(account, stream)

    async def _log_in(self, credentials: Credentials, timeout: float) -> None:
        """Drive mailsync.imap.opening: each step it yields is done here, on the streams."""
        account = self.account
        steps = open_session(account, credentials.password, oauth2=credentials.tokens is not None)
        value = None
        while True:
            try:
                step = steps.send(value)
            except StopIteration as done:
                self.capabilities = done.value.capabilities
                return
            value = None
            if isinstance(step, Receive):
                value = await self.read_event()
            elif isinstance(step, Send):
                await self.send(step.data, step.what, secret=True)
            elif isinstance(step, StartTls):
                try:
                    await self.stream.start_tls(tls_context(account), account.host, timeout)
                except BaseException as exc:
                    raise mapped(account, exc, "starting TLS") from exc
            elif isinstance(step, Token):
                tokens = credentials.tokens
                if step.rejected is None:
                    value = await asyncio.to_thread(tokens.access_token)
                else:
                    value = await asyncio.to_thread(tokens.access_token, rejected=step.rejected)
                logs.register_secret(value)

    # -- commands (setup phase) -----------------------------------------------------------------

    async def command(self, command: bytes, what: str) -> tuple[list[Event], Tagged]:
        """Send one command and read up to its tagged answer: (untagged events, tagged)."""
        tag = new_tag()
        await self.send(tag + b" " + command + b"\r\n", what)
        untagged: list[Event] = []
        while True:
            ev = await self.read_event()
            if isinstance(ev, Tagged):
                if ev.tag != tag:
                    raise ProtocolError(f"account '{self.account.name}': unexpected tagged answer {ev.tag[:40]!r} "
                                        f"while {what}")
                return untagged, ev
            if isinstance(ev, Untagged) and ev.kind == "BYE":
                throttled = untagged_throttle(self.account.name, "BYE", ev.text, what)
                if throttled is not None:
                    raise throttled
                raise ConnectError(f"account '{self.account.name}': the server said BYE while {what}: {ev.text[:200]}")
            untagged.append(ev)

    async def list_folders(self) -> list[RemoteFolder]:
        """The folders, as the sync lists them (mailsync.imap.commands), without counters."""
        untagged, tagged = await self.command(list_command(self.capabilities), "LIST")
        if tagged.status != "OK":
            raise refusal(self.account.name, tagged, "listing folders")
        folders, _unlisted = read_listing([ev for ev in untagged if isinstance(ev, Untagged)])
        return folders

    # -- bytes --------------------------------------------------------------------------------

    async def send(self, data: bytes, what: str, *, secret: bool = False) -> None:
        """Write ``data``; the transcript keeps ``what`` for it when ``secret`` (or its text otherwise)."""
        self.transcript.append(what if secret else data.decode("ascii", "replace").rstrip("\r\n"))
        try:
            self.stream.write(data)
            await self.stream.drain()
        except BaseException as exc:
            raise mapped(self.account, exc, f"sending {what}") from exc

    async def read_event(self) -> Event:
        """The next complete server response. ConnectError when the stream ends or breaks,
        ProtocolError when it is not IMAP."""
        while not self._events:
            want = self.parser.wants()
            try:
                if want is None:
                    line = await self.stream.readuntil(b"\n")
                    events = self.parser.feed_line(line)
                else:
                    events = self.parser.feed_literal(await self.stream.readexactly(want))
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
                error = mapped(self.account, exc, "reading")
                if error is exc:
                    raise
                raise error from exc
            self._events.extend(events)
        return self._events.popleft()

    async def close(self, goodbye: bytes | None = None, *, timeout: float = 1.0) -> None:
        """Say goodbye (best effort, within `timeout`) and close."""
        if self.closed:
            return
        if goodbye:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    self.stream.write(goodbye)
                    await self.stream.drain()
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
            self.stream.close()
        with contextlib.suppress(Exception):
            self.stream.abort()
