"""One logged-in IMAP connection: TLS policy, login, and the commands the sync needs.

Owns: sockets and TLS, mapping library exceptions (socket, ssl, imaplib, imapclient) to
mailsync.errors at this boundary, and the bulk FETCH reader. Must not: touch the store or decide
what to sync (mailsync.sync does).

imapclient runs the ordinary commands (LOGIN, CAPABILITY, LIST, SELECT). Its response parser is far
too slow for bulk FETCH (about 5x the raw socket on 20,000 bodies), so `uid_flags` and
`fetch_messages` write their command on the same socket and read the answer with the sans-I/O
mailsync.imap.responses parser: `readline()` for lines and `read(n)` for literals of the socket's
buffered file, so each body is copied once. Between commands imaplib has consumed everything up to
its tagged answer, and our reader consumes everything up to ours, so the two never interleave.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mailsync.config.model import AccountConfig
from mailsync.errors import AuthError, ConnectError, ProtocolError, TLSVerifyError
from mailsync.imap import utf7
from mailsync.imap.responses import FetchItem, ResponseParser, Tagged, Untagged, format_uid_set

SPECIAL_USE = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important")
_tags = itertools.count(1)


@dataclass(frozen=True, slots=True)
class RemoteFolder:
    raw_name: str  # as on the wire (modified UTF-7)
    name: str  # decoded
    delimiter: str | None
    flags: tuple[str, ...]

    @property
    def special_use(self) -> str | None:
        for f in self.flags:
            for su in SPECIAL_USE:
                if f.lower() == su.lower():
                    return su
        return None

    @property
    def selectable(self) -> bool:
        low = {f.lower() for f in self.flags}
        return "\\noselect" not in low and "\\nonexistent" not in low


@dataclass(frozen=True, slots=True)
class SelectInfo:
    uidvalidity: int
    uidnext: int | None
    exists: int
    highestmodseq: int | None


def tls_context(account: AccountConfig) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=str(account.ca_file) if account.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConnectError(f"account '{account.name}': cannot load ca_file {str(account.ca_file)!r}: {exc}",
                           hint="point ca_file at a PEM file of trusted certificates") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@contextlib.contextmanager
def _mapped_errors(account: AccountConfig, doing: str):
    """Map library exceptions to mailsync errors, naming the account, host and what we were doing."""
    where = f"{account.host}:{account.port}"
    import imaplib

    from imapclient import exceptions as ice

    try:
        yield
    except ssl.SSLCertVerificationError as exc:
        raise TLSVerifyError(
            f"account '{account.name}': the TLS certificate of {where} did not verify: {exc.verify_message}",
            hint="if the server uses a private CA, set ca_file to its certificate; never disable verification") from exc
    except ssl.SSLError as exc:
        raise ConnectError(f"account '{account.name}': TLS failed with {where} while {doing}: {exc.reason or exc}",
                           hint="check port and tls (implicit for 993, starttls for 143)") from exc
    except ice.LoginError as exc:
        raise AuthError(f"account '{account.name}': {where} refused the login of {account.username!r}: "
                        f"{_text(exc)}", hint="check username and the password source") from exc
    except socket.gaierror as exc:
        raise ConnectError(f"account '{account.name}': cannot resolve host {account.host!r}: {exc.strerror}",
                           hint="check the host name") from exc
    except (TimeoutError, socket.timeout) as exc:
        raise ConnectError(f"account '{account.name}': {where} timed out while {doing}",
                           hint="check the host and port, or raise timeout") from exc
    except ConnectionRefusedError as exc:
        raise ConnectError(f"account '{account.name}': connection to {where} refused",
                           hint="check host and port, and that the server is running") from exc
    except OSError as exc:
        raise ConnectError(f"account '{account.name}': connection to {where} failed while {doing}: "
                           f"{exc.strerror or exc}") from exc
    except (imaplib.IMAP4.abort, ice.IMAPClientAbortError) as exc:
        raise ConnectError(f"account '{account.name}': {where} closed the connection while {doing}: {_text(exc)}") from exc
    except (imaplib.IMAP4.error, ice.IMAPClientError) as exc:
        raise ProtocolError(f"account '{account.name}': {where} answered badly while {doing}: {_text(exc)}") from exc


def _text(exc: BaseException) -> str:
    s = str(exc)
    if s.startswith("b'") or s.startswith('b"'):
        s = s[2:-1]
    return s[:300]


class ImapConnection:
    """A logged-in connection. Use `connect()`; close with `logout()` or as a context manager."""

    def __init__(self, account: AccountConfig, client) -> None:
        self.account = account
        self.client = client
        self.client.folder_encode = False  # we decode modified UTF-7 ourselves and keep raw names
        self.capabilities = frozenset(c.decode().upper() if isinstance(c, bytes) else c.upper()
                                      for c in client.capabilities())
        self.bytes_fetched = 0

    # -- ordinary commands through imapclient ----------------------------------------------------

    def list_folders(self) -> list[RemoteFolder]:
        with _mapped_errors(self.account, "listing folders"):
            rows = self.client.list_folders()
        out = []
        for flags, delim, raw in rows:
            raw_s = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
            d = delim.decode() if isinstance(delim, bytes) else delim
            fl = tuple(f.decode() if isinstance(f, bytes) else str(f) for f in flags)
            out.append(RemoteFolder(raw_name=raw_s, name=utf7.decode(raw_s), delimiter=d, flags=fl))
        return out

    def select(self, raw_name: str, *, readonly: bool = True) -> SelectInfo:
        with _mapped_errors(self.account, f"selecting {raw_name!r}"):
            info = self.client.select_folder(raw_name, readonly=readonly)
        try:
            uidvalidity = int(info[b"UIDVALIDITY"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ProtocolError(f"account '{self.account.name}': SELECT {raw_name!r} gave no UIDVALIDITY",
                                hint="the server does not support UIDs properly; mailsync cannot sync it") from exc
        uidnext = info.get(b"UIDNEXT")
        hms = info.get(b"HIGHESTMODSEQ")
        return SelectInfo(uidvalidity=uidvalidity, uidnext=int(uidnext) if uidnext is not None else None,
                          exists=int(info.get(b"EXISTS", 0)), highestmodseq=int(hms) if hms is not None else None)

    def logout(self) -> None:
        with contextlib.suppress(Exception):
            self.client.logout()
        with contextlib.suppress(Exception):
            self.client.shutdown()

    def __enter__(self) -> "ImapConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.logout()

    # -- bulk reader ----------------------------------------------------------------------------

    def _bulk(self, command: str, doing: str) -> Iterator[FetchItem]:
        """Send `command` on the raw socket and yield FETCH items until its tagged answer."""
        imap = self.client._imap  # imaplib.IMAP4: the socket and its buffered reader
        tag = f"MS{next(_tags)}".encode()
        parser = ResponseParser()
        readline, read = imap.file.readline, imap.file.read
        with _mapped_errors(self.account, doing):
            imap.send(tag + b" " + command.encode("ascii") + b"\r\n")
            while True:
                n = parser.wants()
                if n is None:
                    line = readline()
                    if not line:
                        raise ConnectError(f"account '{self.account.name}': the server closed the connection "
                                           f"while {doing}")
                    events = parser.feed_line(line)
                else:
                    data = read(n)
                    if len(data) < n:
                        raise ConnectError(f"account '{self.account.name}': the connection dropped inside a "
                                           f"{n}-byte literal while {doing}")
                    self.bytes_fetched += n
                    events = parser.feed_literal(data)
                for ev in events:
                    if isinstance(ev, FetchItem):
                        yield ev
                    elif isinstance(ev, Tagged):
                        if ev.tag != tag:
                            raise ProtocolError(f"account '{self.account.name}': unexpected tagged answer "
                                                f"{ev.tag!r} while {doing}")
                        if ev.status != "OK":
                            raise ProtocolError(f"account '{self.account.name}': {doing} failed: "
                                                f"{ev.status} {ev.text}")
                        return
                    elif isinstance(ev, Untagged) and ev.kind == "BYE":
                        raise ConnectError(f"account '{self.account.name}': the server said BYE while {doing}: "
                                           f"{ev.raw[:200]!r}")

    def uid_flags(self) -> dict[int, tuple[str, ...]]:
        """UID -> FLAGS of every message in the selected folder (\\Recent dropped)."""
        out: dict[int, tuple[str, ...]] = {}
        for item in self._bulk("UID FETCH 1:* (UID FLAGS)", "listing UIDs and flags"):
            if item.uid is None or item.flags is None:
                raise ProtocolError(f"account '{self.account.name}': FETCH without UID or FLAGS: {item!r}")
            out[item.uid] = tuple(f for f in item.flags if f.lower() != "\\recent")
        return out

    def fetch_messages(self, uids: Iterable[int]) -> Iterator[FetchItem]:
        """Full messages (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]) of `uids`, in server order."""
        uid_set = format_uid_set(uids)
        if not uid_set:
            return iter(())
        return self._bulk(f"UID FETCH {uid_set} (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])",
                          "fetching messages")


def connect(account: AccountConfig, password: str, *, timeout: float | None = None) -> ImapConnection:
    """Open a connection per the account's TLS policy and log in. Raises mailsync.errors only."""
    from imapclient import IMAPClient

    timeout = timeout or account.timeout
    with _mapped_errors(account, "connecting"):
        if account.tls == "implicit":
            client = IMAPClient(account.host, port=account.port, ssl=True, ssl_context=tls_context(account),
                                timeout=timeout)
        else:
            client = IMAPClient(account.host, port=account.port, ssl=False, timeout=timeout)
            if account.tls == "starttls":
                try:
                    client.starttls(tls_context(account))
                except Exception:
                    with contextlib.suppress(Exception):
                        client.shutdown()
                    raise
    try:
        with _mapped_errors(account, "logging in"):
            client.login(account.username, password)
        return ImapConnection(account, client)
    except BaseException:
        with contextlib.suppress(Exception):
            client.shutdown()
        raise
