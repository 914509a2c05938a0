"""One logged-in IMAP connection: TLS policy, login, and the commands the sync needs.

Owns: sockets and TLS, mapping library exceptions (socket, ssl, imaplib, imapclient) to
mailsync.errors at this boundary, and the command layer. Must not: touch the store or decide what
to sync (mailsync.sync does).

imapclient connects, runs STARTTLS, logs in and out. Every command after login is written on the
same socket and its answer read with the sans-I/O mailsync.imap.responses parser: `readline()` for
lines and `read(n)` for literals of the socket's buffered file, so each body is copied once
(imapclient's own parser costs about 5x the raw socket on 20,000 bodies, and swallows the untagged
VANISHED/FETCH answers QRESYNC needs). A whole-folder download can go further: with ``into``,
fetch_all_messages reads each body with `readinto()` straight into the buffer the caller will
write it to disk from (see _body_fetch). imaplib has consumed everything up to its last tagged answer
before we start, and we consume everything up to ours, so the two never interleave. Payloads of
untagged answers are parsed in mailsync.imap.payloads.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mailsync.config.model import AccountConfig
from mailsync.errors import AuthError, ConnectError, CredentialError, FolderMissing, ProtocolError, TLSVerifyError
from mailsync.imap import utf7
from mailsync.imap.payloads import (MAX_EXPANDED, ListEntry, appenduid, copyuid, expand, modified, parse_esearch,
                                    parse_list, parse_objectid, parse_search, parse_status_reply, set_size,
                                    vanished_ranges)
from mailsync.imap.responses import (MAX_LINE, Continuation, FetchItem, ResponseParser, Tagged, Untagged, body_fetch_head,
                                     body_fetch_item, format_uid_set, parse_response_code, quote,
                                     usual_body_fetch)

SPECIAL_USE = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important")
_tags = itertools.count(1)
# RFC 3501/9051: UIDs and UIDVALIDITY are 32-bit non-zero numbers; RFC 7162: mod-sequences are 63-bit
_COUNTER_RANGES = (("UIDVALIDITY", 1, 2**32 - 1), ("UIDNEXT", 1, 2**32 - 1), ("EXISTS", 0, 2**32 - 1),
                   ("HIGHESTMODSEQ", 1, 2**63 - 1))
# Every command has an overall deadline (_Watchdog): the account's command_deadline (by default
# DEADLINE_TIMEOUTS times its timeout), plus one second for each deadline_rate bytes (by default
# DEADLINE_RATE) of answer it asked for (message bodies, listings): a large FETCH gets all the time
# its bytes need, a server that streams lines nobody asked for or drips a byte at a time does not.
# Untagged OK/NO/BAD without a response code are counted, not kept.
DEADLINE_TIMEOUTS = 2
DEADLINE_RATE = 32 * 1024
MAX_KEPT = 64 << 20  # bytes of untagged responses one command may keep
_USEFUL = frozenset(("LIST", "STATUS", "SEARCH", "ESEARCH", "VANISHED", "CAPABILITY", "ENABLED", "FLAGS"))
_COUNTS = frozenset(("EXISTS", "EXPUNGE", "VANISHED"))  # untagged responses that move the message count


class CopyUids(dict):
    """Source UID -> destination UID from a COPYUID (RFC 4315), and the destination UIDVALIDITY
    the server named with them (None when it sent no COPYUID)."""

    def __init__(self, pairs=(), *, uidvalidity: int | None = None) -> None:
        super().__init__(pairs)
        self.uidvalidity = uidvalidity


@dataclass(frozen=True, slots=True)
class RemoteFolder:
    raw_name: str  # as on the wire (modified UTF-7)
    name: str  # decoded
    delimiter: str | None
    flags: tuple[str, ...]
    status: dict[str, int] | None = None  # from LIST-STATUS: MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ]
    mailboxid: str | None = None  # RFC 8474, where the server offers OBJECTID

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
    nomodseq: bool = False
    vanished: list[int] = field(default_factory=list)  # QRESYNC: expunged since the given modseq
    vanished_unknown: bool = False  # QRESYNC: a VANISHED (EARLIER) too large to list was left out
    changed: dict[int, FetchItem] = field(default_factory=dict)  # QRESYNC: FETCHes of changed messages
    mailboxid: str | None = None  # RFC 8474 (OBJECTID)


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


def _names_a_missing_folder(tagged) -> bool:
    """A NO saying the folder the command named does not exist: the NONEXISTENT code (RFC 5530), a
    TRYCREATE (RFC 3501 6.3.11: APPEND, COPY or MOVE into a folder that is not there), or, from
    servers without codes, the words (Dovecot "Mailbox doesn't exist", Cyrus and Courier "Mailbox
    does not exist", "No such mailbox")."""
    if tagged.status != "NO":
        return False
    code = (tagged.code or "").upper()
    if code.startswith(("NONEXISTENT", "TRYCREATE")):
        return True
    text = tagged.text.lower()
    return not code and ("mailbox doesn't exist" in text or "mailbox does not exist" in text
                         or "no such mailbox" in text)


def _text(exc: BaseException) -> str:
    s = str(exc)
    if s.startswith("b'") or s.startswith('b"'):
        s = s[2:-1]
    return s[:300]


class ImapConnection:
    """A logged-in connection. Use `connect()`; close with `logout()` or as a context manager.

    After login every command goes through `_exchange` (our parser on imapclient's socket); imapclient
    is left to connect, STARTTLS, log in and log out. `commands` counts the commands sent, so tests
    and benchmarks can check round trips.
    """

    def __init__(self, account: AccountConfig, client) -> None:
        self.account = account
        self.client = client
        self.client.folder_encode = False  # we decode modified UTF-7 ourselves and keep raw names
        self.capabilities = frozenset(c.decode().upper() if isinstance(c, bytes) else c.upper()
                                      for c in client.capabilities())
        self.bytes_fetched = 0
        self.bodies_fetched = 0
        self.commands = 0
        self.enabled: set[str] = set()
        self.broken = False  # the stream is out of step (a parse error mid-response): do not reuse
        self.selected: str | None = None
        # EXISTS of the selected folder as this connection last heard it: set by SELECT, moved by the
        # untagged EXISTS, EXPUNGE and VANISHED of any later command (a listing is checked against it)
        self.exists: int | None = None
        self.unlisted: list[str] = []  # why entries of the last LIST were set aside (list_folders)
        self.untagged_dropped = 0  # untagged responses not needed by any command, counted and dropped
        self._watchdog = _Watchdog(self)
        # Sent by bulk_ahead and not yet read: (folder, tag of its SELECT or None once read, tag of its FETCH)
        self._ahead: tuple[str, bytes | None, bytes] | None = None

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    @property
    def qresync(self) -> bool:
        return self.has("QRESYNC") and self.has("ENABLE")

    @property
    def condstore(self) -> bool:
        return self.has("CONDSTORE") or self.qresync

    # -- the command engine ---------------------------------------------------------------------

    def _events(self, command: bytes, doing: str, literal: bytes | None = None,
                into: Callable[[int], memoryview] | None = None, sent: bytes | None = None,
                then: Callable[[], None] | None = None) -> Iterator:
        """Send one command (with at most one synchronizing literal) and yield its responses until
        the tagged completion, which is yielded last. Raises on NO/BAD only if the caller asks.
        With ``into`` (see fetch_all_messages), a FETCH response of the usual one-message shape is
        read here, its literal straight into place (_body_fetch); every other response goes through
        ResponseParser. With ``sent``, the command went out already under that tag (bulk_ahead):
        only its answer is read. Before any other command, what bulk_ahead sent is read and
        dropped (_drop_ahead). ``then()`` is called once the command has gone out."""
        if self.broken:
            raise ConnectError(f"account '{self.account.name}': the connection is out of step; reconnect")
        if sent is None and self._ahead is not None:
            self._drop_ahead()
        imap = self.client._imap  # imaplib.IMAP4: the socket and its buffered reader
        tag = sent or f"MS{next(_tags)}".encode()
        parser = ResponseParser()
        readline, read = imap.file.readline, imap.file.read
        watchdog = self._watchdog
        watchdog.begin()
        with _mapped_errors(self.account, doing):
            try:
                if sent is None:
                    self.commands += 1
                    imap.send(tag + b" " + command + b"\r\n")
                if then is not None:
                    then()
                while True:
                    n = parser.wants()
                    if n is None:
                        line = readline(_LINE_CAP)
                        if not line:
                            raise ConnectError(f"account '{self.account.name}': the server closed the "
                                               f"connection while {doing}")
                        if len(line) == _LINE_CAP and not line.endswith(b"\n"):
                            raise ProtocolError(f"account '{self.account.name}': the server sent a line longer "
                                                f"than {MAX_LINE} bytes while {doing}; refused")
                        if into is not None and parser.at_boundary:
                            usual = usual_body_fetch(line)
                            head = (usual[0], None, usual[6]) if usual is not None else body_fetch_head(line)
                        else:
                            head = None
                        if head is None:
                            events = parser.feed_line(line)
                        else:
                            item, events = self._body_fetch(parser, line, head, into, doing, usual)
                            if item is not None:
                                yield item
                                continue
                    else:  # a literal of the general path: a bytes object of its own
                        data = read(n)
                        if len(data) < n:
                            raise ConnectError(f"account '{self.account.name}': the connection dropped inside "
                                               f"a {n}-byte literal while {doing}")
                        self.bytes_fetched += n
                        watchdog.credit += n
                        events = parser.feed_literal(data)
                    for ev in events:
                        if isinstance(ev, Continuation):
                            if literal is None:
                                raise ProtocolError(f"account '{self.account.name}': unexpected continuation "
                                                    f"request while {doing}")
                            imap.send(literal + b"\r\n")
                            watchdog.credit += len(literal)  # the time to send it counts as answer time
                            literal = None
                            continue
                        if isinstance(ev, Tagged):
                            if ev.tag != tag:
                                raise ProtocolError(f"account '{self.account.name}': unexpected tagged answer "
                                                    f"{ev.tag!r} while {doing}")
                            yield ev
                            return
                        if isinstance(ev, FetchItem):
                            watchdog.credit += len(ev.body) + 64 if ev.body is not None else 64
                        elif isinstance(ev, Untagged):
                            if ev.kind in _USEFUL:
                                watchdog.credit += len(ev.raw)
                            elif ev.kind in ("OK", "NO", "BAD") and not ev.text.startswith("["):
                                self.untagged_dropped += 1  # text for people: not kept
                                continue
                            if ev.kind == "BYE":
                                raise ConnectError(f"account '{self.account.name}': the server said BYE while "
                                                   f"{doing}: {ev.text[:200]}")
                            if ev.kind in _COUNTS:
                                self._count(ev)
                        yield ev
            except BaseException as exc:  # a bad response, a dropped connection, or the caller gone mid-response
                self.broken = True
                if watchdog.expired:
                    raise ConnectError(f"account '{self.account.name}': {doing} took longer than allowed "
                                       f"({watchdog.allowance():.0f} s for {watchdog.credit} bytes of answer); "
                                       f"the server is too slow or sends what was not asked for",
                                       hint="if the server is just slow, raise command_deadline (seconds "
                                            "every command may take) or lower deadline_rate (bytes a second "
                                            "an answer must keep up) for this account") from exc
                raise
            finally:
                watchdog.end()

    def _count(self, ev: Untagged) -> None:
        """Keep ``exists`` in step with an untagged EXISTS, EXPUNGE or VANISHED."""
        if ev.kind == "EXISTS":
            self.exists = ev.number
        elif self.exists is not None:
            if ev.kind == "EXPUNGE":
                self.exists = max(self.exists - 1, 0)
            else:
                earlier, ranges = vanished_ranges(ev.raw)
                if not earlier:
                    self.exists = max(self.exists - set_size(ranges), 0)

    def _body_fetch(self, parser: ResponseParser, line: bytes, head: tuple[int, bytes | None, int],
                    into: Callable[[int], memoryview], doing: str,
                    usual: tuple | None) -> tuple[FetchItem | None, list]:
        """The rest of a response whose first line usual_body_fetch read (``usual``) or
        body_fetch_head accepted: the literal, read into ``into(n)``, then the last line. (item, [])
        for the simple shape; otherwise the response goes to ResponseParser after all, the literal
        with it, and (None, its events) comes back."""
        seq, items, n = head
        file = self.client._imap.file
        view = into(n)
        if len(view) != n:
            raise ValueError(f"into({n}) gave a buffer of {len(view)} bytes")
        if file.readinto(view) != n:
            raise ConnectError(f"account '{self.account.name}': the connection dropped inside a {n}-byte "
                               f"literal while {doing}")
        self.bytes_fetched += n
        self._watchdog.credit += n
        end = file.readline(_LINE_CAP)
        if not end:
            raise ConnectError(f"account '{self.account.name}': the server closed the connection while {doing}")
        if end == b")\r\n":
            if usual is not None:
                _seq, uid, flags, internaldate, size, modseq, _n = usual
                return FetchItem(seq, uid, flags, internaldate, size, view, None, modseq), []
            item = body_fetch_item(seq, items, view)
            if item is not None:
                return item, []
        parser.feed_line(line)
        parser.feed_literal(view)
        return None, parser.feed_line(end)

    def _run(self, command: bytes, doing: str, *, literal: bytes | None = None, ok: bool = True,
             sent: bytes | None = None):
        """Run a command to completion: (untagged list, fetch items, tagged)."""
        untagged, fetches = [], []
        tagged = None
        kept = 0
        for ev in self._events(command, doing, literal, sent=sent):
            if isinstance(ev, Tagged):
                tagged = ev
            elif isinstance(ev, FetchItem):
                fetches.append(ev)
            else:
                kept += len(ev.raw)
                if kept > MAX_KEPT:
                    self.broken = True
                    raise ProtocolError(f"account '{self.account.name}': more than {MAX_KEPT} bytes of untagged "
                                        f"responses while {doing}; refused")
                untagged.append(ev)
        if ok and tagged.status != "OK":
            error = FolderMissing if _names_a_missing_folder(tagged) else ProtocolError
            raise error(f"account '{self.account.name}': {doing} failed: {tagged.status} "
                        f"{('[' + tagged.code + '] ') if tagged.code else ''}{tagged.text}")
        return untagged, fetches, tagged

    def enable(self, *caps: str) -> None:
        wanted = [c for c in caps if c.upper() not in self.enabled]
        if wanted and self.has("ENABLE"):
            self._run(b"ENABLE " + " ".join(wanted).encode(), "enabling " + " ".join(wanted))
            self.enabled.update(c.upper() for c in wanted)

    # -- folders --------------------------------------------------------------------------------

    def list_folders(self, *, with_status: bool = True) -> list[RemoteFolder]:
        """LIST every folder; with LIST-STATUS also UIDVALIDITY, UIDNEXT, MESSAGES, HIGHESTMODSEQ in the
        same round trip (RFC 5819)."""
        items = self._status_items()
        options = []
        if with_status and self.has("LIST-STATUS"):
            options.append(f"STATUS ({items})")
        if self.has("SPECIAL-USE") and (self.has("LIST-EXTENDED") or self.has("LIST-STATUS")):
            options.append("SPECIAL-USE")  # with RETURN options the special-use flags must be asked for
        cmd = b'LIST "" "*"' + (f" RETURN ({' '.join(options)})".encode() if options else b"")
        untagged, _, _ = self._run(cmd, "listing folders")
        entries: dict[str, ListEntry] = {}
        status: dict[str, tuple[dict[str, int], str | None]] = {}
        self.unlisted = []
        for ev in untagged:
            try:  # one unusable entry is set aside with its reason; the other folders are listed
                if ev.kind == "LIST":
                    e = parse_list(ev.raw)
                    entries[e.raw_name] = e
                elif ev.kind == "STATUS":
                    name, values, mailboxid = parse_status_reply(ev.raw)
                    status[name] = (values, mailboxid)
            except ProtocolError as exc:
                self.unlisted.append(str(exc))
        out = []
        for raw, e in entries.items():
            st, mailboxid = status.get(raw, (None, None))
            try:
                name = utf7.decode(raw)
            except ProtocolError as exc:
                self.unlisted.append(f"{exc}; the folder cannot be named safely and is not synced")
                continue
            out.append(RemoteFolder(raw_name=raw, name=name, delimiter=e.delimiter, flags=e.flags,
                                    status=st, mailboxid=mailboxid))
        return out

    def _status_items(self) -> str:
        # No MAILBOXID here, although OBJECTID servers take it in STATUS: Cyrus 3.6 (Debian 12) answers
        # it, in STATUS and in LIST-STATUS alike, with six raw bytes of a pointer instead of the id
        # ("MAILBOXID (\xb8\x82\x93\x9c\x97U)") whenever MESSAGES, UIDNEXT or HIGHESTMODSEQ are asked
        # beside it (alone, or with UIDVALIDITY only, it is right); the bytes may hold CR, LF or
        # parentheses and break the line. SELECT and EXAMINE give the right one, read in select().
        return "MESSAGES UIDNEXT UIDVALIDITY" + (" HIGHESTMODSEQ" if self.condstore else "")

    def status(self, raw_name: str) -> dict[str, int]:
        return self.status_reply(raw_name)[0]

    def status_reply(self, raw_name: str) -> tuple[dict[str, int], str | None]:
        """STATUS of one folder: (its counters, its MAILBOXID where the server offers OBJECTID)."""
        items = self._status_items()
        untagged, _, _ = self._run(b"STATUS " + quote(raw_name) + f" ({items})".encode(), f"STATUS {raw_name!r}")
        for ev in untagged:
            if ev.kind == "STATUS":
                return parse_status_reply(ev.raw)[1:]
        raise ProtocolError(f"account '{self.account.name}': STATUS {raw_name!r} gave no STATUS response")

    def create(self, raw_name: str) -> bool:
        """CREATE; False when the folder already exists (idempotent for journaled retries)."""
        _, _, tagged = self._run(b"CREATE " + quote(raw_name), f"creating {raw_name!r}", ok=False)
        if tagged.status == "OK":
            return True
        if (tagged.code or "").upper().startswith("ALREADYEXISTS") or "exists" in tagged.text.lower():
            return False
        raise ProtocolError(f"account '{self.account.name}': CREATE {raw_name!r} failed: {tagged.text}")

    def delete(self, raw_name: str) -> bool:
        """DELETE; False when the folder does not exist."""
        self._leave(raw_name)
        _, _, tagged = self._run(b"DELETE " + quote(raw_name), f"deleting {raw_name!r}", ok=False)
        if tagged.status == "OK":
            if self.selected == raw_name:
                self.selected = None
            return True
        if _names_a_missing_folder(tagged):
            return False
        raise ProtocolError(f"account '{self.account.name}': DELETE {raw_name!r} failed: {tagged.text}")

    def rename(self, old: str, new: str) -> None:
        self._leave(old, subtree=True)
        self._run(b"RENAME " + quote(old) + b" " + quote(new), f"renaming {old!r} to {new!r}")

    def _leave(self, raw_name: str, *, subtree: bool = False) -> None:
        """Leave the selected folder before it (``subtree``: it or a folder under it) is deleted or
        renamed: a server may end the session when the selected folder goes (Dovecot: "BYE Selected
        mailbox was deleted, have to disconnect"). UNSELECT where offered; else an EXAMINE of a name
        no one uses, which fails and so leaves no folder selected (RFC 3501 6.3.1); CLOSE would
        expunge."""
        sel = self.selected
        if sel is None or not (sel == raw_name or (subtree and sel.startswith(raw_name))):
            return
        if not self.unselect():
            nowhere = "mailsync-no-such-folder"
            _, _, tagged = self._run(b"EXAMINE " + quote(nowhere), "leaving the folder", ok=False)
            self.selected = nowhere if tagged.status == "OK" else None

    # -- selected state -------------------------------------------------------------------------

    def select(self, raw_name: str, *, readonly: bool = False,
               qresync: tuple[int, int] | None = None) -> SelectInfo:
        """SELECT (or EXAMINE). With `qresync=(uidvalidity, modseq)` on a QRESYNC server the answer
        includes VANISHED (EARLIER) and the FETCHes of what changed since modseq (RFC 7162 3.2.5)."""
        sent = None
        if self._ahead is not None and self._ahead[0] == raw_name and self._ahead[1] and not readonly and not qresync:
            sent = self._ahead[1]  # bulk_ahead sent this very command
            self._ahead = (raw_name, None, self._ahead[2])
        elif qresync and self.qresync:
            self.enable("QRESYNC")
        untagged, fetches, tagged = self._run(self._select_command(raw_name, readonly, qresync),
                                              f"selecting {raw_name!r}", sent=sent)
        info: dict[str, int] = {}
        nomodseq = False
        mailboxid = None
        vanished: list[tuple[int, int]] = []
        for ev in untagged:
            if ev.kind == "EXISTS":
                info["EXISTS"] = ev.number or 0
            elif ev.kind == "OK":
                code, _ = parse_response_code(ev.text)
                if code:
                    name, _, arg = code.partition(" ")
                    if name in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ") and arg.strip().isdigit():
                        info[name] = int(arg)
                    elif name == "NOMODSEQ":
                        nomodseq = True
                    elif name == "MAILBOXID":
                        mailboxid = parse_objectid(arg.strip().strip("()").encode())
            elif ev.kind == "VANISHED":
                vanished.extend(vanished_ranges(ev.raw)[1])
        if "UIDVALIDITY" not in info:
            raise ProtocolError(f"account '{self.account.name}': SELECT {raw_name!r} gave no UIDVALIDITY",
                                hint="the server does not support UIDs properly; mailsync cannot sync it")
        for name, low, high in _COUNTER_RANGES:
            if name in info and not low <= info[name] <= high:
                raise ProtocolError(f"account '{self.account.name}': SELECT {raw_name!r} gave {name} {info[name]}, "
                                    f"outside {low}..{high}: the folder is set aside for this run",
                                    hint="the server's counters are broken for this folder; nothing was changed")
        self.selected = raw_name
        self.exists = info.get("EXISTS", 0)
        changed = {f.uid: f for f in fetches if f.uid is not None}
        # VANISHED (EARLIER) may name UIDs that never existed (RFC 7162 3.2.5.1): none at or above
        # UIDNEXT did; when what is left is still too many to list, it is left out and said so
        # (the sync then lists the folder's UIDs instead).
        top = info.get("UIDNEXT")
        if top is not None:
            vanished = [(lo, min(hi, top - 1)) for lo, hi in vanished if lo < top]
        unknown = set_size(vanished) > MAX_EXPANDED
        return SelectInfo(uidvalidity=info["UIDVALIDITY"], uidnext=info.get("UIDNEXT"), exists=info.get("EXISTS", 0),
                          highestmodseq=None if nomodseq else info.get("HIGHESTMODSEQ"), nomodseq=nomodseq,
                          vanished=[] if unknown else expand(vanished), vanished_unknown=unknown,
                          changed=changed, mailboxid=mailboxid)

    def _select_command(self, raw_name: str, readonly: bool, qresync: tuple[int, int] | None) -> bytes:
        verb = b"EXAMINE " if readonly else b"SELECT "
        params = b""
        if qresync and self.qresync:
            params = f" (QRESYNC ({qresync[0]} {qresync[1]}))".encode()
        elif self.condstore:
            params = b" (CONDSTORE)"
        return verb + quote(raw_name) + params

    def bulk_ahead(self, raw_name: str) -> None:
        """Pipelining for a first sync (RFC 3501 5.5): send ``SELECT raw_name`` and its ``UID FETCH
        1:*`` of whole messages now, while the answer to the FETCH in progress is still being read,
        so that the server goes on to them without waiting for us (it spent 5-12 ms before the
        first message of each folder). The next select(raw_name) and fetch_all_messages() read
        their answers; any other command first reads and drops them. At most one folder ahead."""
        if self._ahead is not None or self.broken:
            return
        imap = self.client._imap
        select_tag, fetch_tag = f"MS{next(_tags)}".encode(), f"MS{next(_tags)}".encode()
        fetch = f"UID FETCH 1:* ({self._message_items()})".encode("ascii")
        with _mapped_errors(self.account, f"selecting {raw_name!r}"):
            try:
                imap.send(select_tag + b" " + self._select_command(raw_name, False, None) + b"\r\n"
                          + fetch_tag + b" " + fetch + b"\r\n")
            except BaseException:
                self.broken = True
                raise
        self.commands += 2
        self._ahead = (raw_name, select_tag, fetch_tag)

    def _drop_ahead(self) -> None:
        """Read what bulk_ahead sent to its end and drop it: the sync went another way (the folder
        turned out empty, its SELECT failed, the sync stopped)."""
        raw_name, select_tag, fetch_tag = self._ahead
        self._ahead = None
        doing = f"finishing the pipelined commands for {raw_name!r}"
        if select_tag is not None:
            for ev in self._events(b"", doing, sent=select_tag):
                if isinstance(ev, Tagged):  # a failed SELECT leaves no folder selected
                    self.selected = raw_name if ev.status == "OK" else None
        for _ in self._events(b"", doing, sent=fetch_tag):
            pass

    def uid_flags(self, uid_set: str = "1:*", *, changedsince: int | None = None) -> dict[int, FetchItem]:
        """UID -> FETCH item (UID FLAGS [MODSEQ]) of `uid_set` in the selected folder, streamed."""
        items = "UID FLAGS MODSEQ" if self.condstore else "UID FLAGS"
        mod = f" (CHANGEDSINCE {changedsince})" if changedsince is not None else ""
        out: dict[int, FetchItem] = {}
        for item in self._bulk(f"UID FETCH {uid_set} ({items}){mod}", "listing UIDs and flags"):
            if item.uid is None:  # an unsolicited FETCH (another client's change): not an answer
                continue
            if item.flags is None:
                raise ProtocolError(f"account '{self.account.name}': FETCH of UID {item.uid} without FLAGS")
            out[item.uid] = item
        return out

    def uid_search(self, criteria: str) -> list[int]:
        if self.has("ESEARCH"):
            untagged, _, _ = self._run(f"UID SEARCH RETURN (ALL) {criteria}".encode(), "searching")
            for ev in untagged:
                if ev.kind == "ESEARCH":
                    return list(parse_esearch(ev.raw)["ALL"])
            return []
        untagged, _, _ = self._run(f"UID SEARCH {criteria}".encode(), "searching")
        out: list[int] = []
        for ev in untagged:
            if ev.kind == "SEARCH":
                out.extend(parse_search(ev.raw))
        return out

    def search_message_id(self, message_id: str) -> list[int]:
        mid = message_id.replace("\\", "").replace('"', "")
        return self.uid_search(f'HEADER Message-ID "{mid}"')

    def fetch_headers(self, uids: Iterable[int]) -> dict[int, FetchItem]:
        """(UID RFC822.SIZE INTERNALDATE FLAGS Message-ID header) of `uids`: enough to recognise a
        message already in the store without downloading it."""
        uid_set = format_uid_set(uids)
        if not uid_set:
            return {}
        items = "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
        if self.condstore:
            items += " MODSEQ"
        return {it.uid: it for it in self._bulk(f"UID FETCH {uid_set} ({items})", "fetching headers")
                if it.uid is not None}

    def uid_store(self, uids: Iterable[int], op: str, flags: Iterable[str], *,
                  unchangedsince: int | None = None) -> tuple[dict[int, FetchItem], list[int]]:
        """UID STORE uids [UNCHANGEDSINCE m] +FLAGS|-FLAGS (flags). Returns (the FETCHes the server sent
        back, the UIDs it refused as MODIFIED)."""
        uid_set = format_uid_set(uids)
        flag_list = " ".join(flags)
        if not uid_set or (not flag_list and not op.upper().startswith("FLAGS")):  # FLAGS () clears them all
            return {}, []
        mod = f" (UNCHANGEDSINCE {unchangedsince})" if unchangedsince is not None and self.condstore else ""
        cmd = f"UID STORE {uid_set}{mod} {op} ({flag_list})".encode()
        _, fetches, tagged = self._run(cmd, "storing flags")
        return {f.uid: f for f in fetches if f.uid is not None}, modified(tagged.code)

    def uid_copy(self, uids: Iterable[int], dest: str, *, move: bool = False) -> "CopyUids":
        """UID COPY (or UID MOVE) to `dest`; returns source UID -> destination UID when the server
        says (COPYUID, RFC 4315), with the UIDVALIDITY it gave them in ``uidvalidity``, else {}."""
        verb = "UID MOVE" if move else "UID COPY"
        untagged, _, tagged = self._run(f"{verb} {format_uid_set(uids)} ".encode() + quote(dest),
                                        f"{verb.lower()} to {dest!r}")
        codes = [tagged.code] + [parse_response_code(ev.text)[0] for ev in untagged if ev.kind == "OK"]
        for code in codes:
            cu = copyuid(code)
            if cu:
                return CopyUids(zip(cu[1], cu[2]), uidvalidity=cu[0])
        return CopyUids()

    def uid_expunge(self, uids: Iterable[int]) -> None:
        """Remove exactly `uids` (already flagged \\Deleted). UID EXPUNGE with UIDPLUS; without it, the
        RFC 4315 workaround: take \\Deleted off other messages, EXPUNGE, put it back. Never a bare
        EXPUNGE that could remove another client's \\Deleted messages."""
        uids = sorted(set(uids))
        if not uids:
            return
        if self.has("UIDPLUS"):
            self._run(f"UID EXPUNGE {format_uid_set(uids)}".encode(), "expunging")
            return
        others = sorted(set(self.uid_search("DELETED")) - set(uids))
        if others:
            self.uid_store(others, "-FLAGS.SILENT", ["\\Deleted"])
        try:
            self._run(b"EXPUNGE", "expunging")
        finally:
            if others:
                self.uid_store(others, "+FLAGS.SILENT", ["\\Deleted"])

    def append(self, raw_name: str, data: bytes, flags: Iterable[str] = (),
               internaldate: str | None = None) -> tuple[int, int] | None:
        """APPEND; (uidvalidity, uid) from APPENDUID when the server offers UIDPLUS, else None."""
        cmd = b"APPEND " + quote(raw_name)
        flag_list = " ".join(f for f in flags if f.lower() != "\\recent")
        cmd += f" ({flag_list})".encode()
        if internaldate:
            cmd += b' "' + internaldate.encode() + b'"'
        cmd += b" {" + str(len(data)).encode() + b"}"
        _, _, tagged = self._run(cmd, f"appending to {raw_name!r}", literal=data)
        return appenduid(tagged.code)

    def noop(self) -> None:
        self._run(b"NOOP", "NOOP")

    def unselect(self) -> bool:
        """Leave the selected folder without expunging anything (UNSELECT, RFC 3691), so a connection
        kept open between syncs (the watch daemon) collects no updates meanwhile. False when the
        server lacks UNSELECT (the folder stays selected)."""
        if self.selected is None:
            return True
        if not self.has("UNSELECT"):
            return False
        self._run(b"UNSELECT", "unselecting")
        self.selected = None
        return True

    def logout(self) -> None:
        self._watchdog.stop()
        with contextlib.suppress(Exception):
            self.client.logout()
        with contextlib.suppress(Exception):
            self.client.shutdown()

    def __enter__(self) -> "ImapConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.logout()

    # -- bulk reader ----------------------------------------------------------------------------

    def _bulk(self, command: str, doing: str, into: Callable[[int], memoryview] | None = None,
              sent: bytes | None = None, then: Callable[[], None] | None = None) -> Iterator[FetchItem]:
        """Send `command` and yield its FETCH items as they arrive, until its tagged answer."""
        for ev in self._events(command.encode("ascii"), doing, into=into, sent=sent, then=then):
            if isinstance(ev, FetchItem):
                if ev.body is not None:
                    self.bodies_fetched += 1
                yield ev
            elif isinstance(ev, Tagged) and ev.status != "OK":
                raise ProtocolError(f"account '{self.account.name}': {doing} failed: {ev.status} {ev.text}")

    def fetch_messages(self, uids: Iterable[int]) -> Iterator[FetchItem]:
        """Full messages (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]) of `uids`, in server order."""
        uid_set = format_uid_set(uids)
        if not uid_set:
            return iter(())
        return self._bulk(f"UID FETCH {uid_set} ({self._message_items()})", "fetching messages")

    def fetch_all_messages(self, *, into: Callable[[int], memoryview] | None = None,
                           ahead: str | None = None) -> Iterator[FetchItem]:
        """Every message of the selected folder, as fetch_messages gives them (UID FETCH 1:*).

        ``into(n)``, when given, says where to read an n-byte message: the literal of a response of
        the usual shape is read straight into the memoryview it returns, and that view is the
        item's ``body`` (valid until the next call of ``into``). Any other body is a bytes object
        of its own, as it always is without ``into``. ``ahead``: the folder whose SELECT and FETCH
        to send right behind this FETCH (bulk_ahead)."""
        then = None if ahead is None else (lambda: self.bulk_ahead(ahead))
        sent = None
        if self._ahead is not None and self._ahead[1] is None and self._ahead[0] == self.selected:
            sent = self._ahead[2]  # bulk_ahead sent it, and its SELECT has been read
            self._ahead = None
        return self._bulk(f"UID FETCH 1:* ({self._message_items()})", "fetching messages", into, sent, then)

    def _message_items(self) -> str:
        return "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]" + (" MODSEQ" if self.condstore else "")


def _check_credentials(account: AccountConfig, password: str | None) -> None:
    """A user name or password with a control character (CR LF would end the LOGIN command and
    start another) is refused before anything is sent."""
    for what, value in (("username", account.username), ("password", password or "")):
        bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
        if bad is not None:
            raise CredentialError(f"account '{account.name}': the {what} contains the control character "
                                  f"{bad!r}; it is not sent",
                                  hint=f"check the {what} source (a trailing newline from cmd: or a file?)")


def _login(account: AccountConfig, client, password: str) -> None:
    """LOGIN takes ASCII only (RFC 3501 quoted strings); a user name or password with other
    characters goes as AUTHENTICATE PLAIN, which carries UTF-8 (RFC 4616)."""
    if (account.username + password).isascii():
        client.login(account.username, password)
        return
    caps = {c.decode().upper() if isinstance(c, bytes) else c.upper() for c in client.capabilities()}
    if "AUTH=PLAIN" not in caps:
        raise AuthError(f"account '{account.name}': the user name or password has non-ASCII characters and "
                        f"{account.host}:{account.port} does not offer AUTHENTICATE PLAIN, the one way to send them",
                        hint="use an ASCII password, or ask the provider for an app password")
    client.plain_login(account.username, password)


_LINE_CAP = MAX_LINE + 1  # readline() reads at most this much: a longer line is refused, not held


class _Watchdog:
    """The overall deadline of the command in progress on a connection (DEADLINE_TIMEOUTS,
    DEADLINE_RATE). A read timeout alone never fires while bytes keep coming; one thread for the
    whole process (_Watcher) shuts the socket down when a command outlives its allowance, which ends
    any read in progress. It looks only at commands in progress, and sleeps while there are none."""

    def __init__(self, conn: "ImapConnection") -> None:
        self.conn = conn
        account = conn.account
        self.timeout = float(account.timeout or 60)
        deadline = getattr(account, "command_deadline", None)
        self.base = float(deadline) if deadline else DEADLINE_TIMEOUTS * self.timeout
        self.rate = getattr(account, "deadline_rate", None) or DEADLINE_RATE
        self.credit = 0  # bytes of answer asked for, received by the command in progress
        self.expired = False
        self._since: float | None = None

    def allowance(self) -> float:
        return self.base + self.credit / self.rate

    def begin(self) -> None:
        self.credit = 0
        self._since = time.monotonic()
        _WATCHER.add(self)

    def end(self) -> None:
        self._since = None
        _WATCHER.discard(self)

    def stop(self) -> None:
        self.end()

    def check(self, now: float) -> bool:
        """Called by the watcher: True (and the socket shut down) when the command ran out of time."""
        since = self._since
        if since is None or now - since <= self.allowance():
            return False
        self.expired = True
        with contextlib.suppress(Exception):
            self.conn.client._imap.sock.shutdown(socket.SHUT_RDWR)
        return True


class _Watcher:
    """The one thread that checks every command in progress, TICK apart."""

    TICK = 0.25

    def __init__(self) -> None:
        self._active: set[_Watchdog] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def add(self, dog: _Watchdog) -> None:
        with self._lock:
            self._active.add(dog)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="imap-deadlines", daemon=True)
                self._thread.start()
            self._wake.notify()

    def discard(self, dog: _Watchdog) -> None:
        with self._lock:
            self._active.discard(dog)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._active:
                    self._wake.wait()
                dogs = list(self._active)
            now = time.monotonic()
            for dog in dogs:
                tick = min(self.TICK, dog.timeout / 4, dog.base / 4)
                if dog.check(now):
                    self.discard(dog)
            time.sleep(tick if dogs else self.TICK)


_WATCHER = _Watcher()


def _authenticate_oauth2(account: AccountConfig, client, tokens) -> str:
    """SASL OAUTHBEARER (XOAUTH2 when the server does not offer it) with a fresh access token; when
    the server refuses it, one retry with a refreshed token. Returns the mechanism used. The
    token only travels inside the SASL exchange (imapclient's log redacts AUTHENTICATE and imaplib
    logs only literal sizes)."""
    import imaplib
    import logging

    from mailsync.imap import sasl

    where = f"{account.host}:{account.port}"
    if tokens is None:
        raise AuthError(f"account '{account.name}': auth = \"oauth2\" but no token source was given",
                        hint="this is a bug in the caller of connect()")
    mech = sasl.choose_mechanism(client.capabilities())
    if mech is None:
        raise AuthError(f"account '{account.name}': {where} offers neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2, "
                        "so it cannot take an OAuth2 token",
                        hint='check host and port, or use auth = "password" with this server')
    token = tokens.access_token()
    for attempt in (1, 2):
        conversation = sasl.Conversation(mech, account.username, token, host=account.host, port=account.port)
        try:
            client._imap.authenticate(mech, conversation)
            logging.getLogger("mailsync.imap").debug("account %s: authenticated with %s", account.name, mech)
            return mech
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            said = _text(exc)
            if conversation.challenge is not None:
                said += f" ({conversation.challenge.describe()})"
            if attempt == 2:
                raise AuthError(
                    f"account '{account.name}': {where} refused the OAuth2 access token of {account.username!r} "
                    f"({mech}) even after a refresh: {said}",
                    hint=f"check that username is the address you signed in with, and that the token's scopes "
                         f"include the provider's IMAP scope; then run mailsync auth login {account.name}") from None
            token = tokens.access_token(rejected=token)  # refresh once, then retry
    raise AssertionError("unreachable")


def connect(account: AccountConfig, password: str | None, *, timeout: float | None = None,
            tokens=None) -> ImapConnection:
    """Open a connection per the account's TLS policy and log in. Raises mailsync.errors only.

    With ``account.auth == "oauth2"``, ``tokens`` (a mailsync.imap.sasl.TokenSource) gives the
    access token and ``password`` is not used."""
    from imapclient import IMAPClient

    if account.auth != "oauth2":
        _check_credentials(account, password)
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
            if account.auth == "oauth2":
                _authenticate_oauth2(account, client, tokens)
            else:
                _login(account, client, password)
        _widen_receive_buffer(client._imap.sock)
        return ImapConnection(account, client)
    except BaseException:
        with contextlib.suppress(Exception):
            client.shutdown()
        raise


# The socket's receive buffer on a link with a short round trip. Linux grows a TCP receive buffer
# as the reader keeps up (autotuning), from 128 KB, and a first sync's reader does not always keep
# up: it hashes, parses and waits on its other threads now and then, the buffer fills, and the
# server stops and waits for the window to open. Measured on loopback (20,000 messages, 434 MB):
# the server was window-limited 61-68% of its busy time; with an 8 MB buffer 30-39%, and the sync
# used 0.15 s less CPU. A fixed size turns autotuning off for the socket, so it is only set where
# autotuning could never need more: a round trip under RTT_LOCAL_US holds at most 1.25 MB at
# 10 Gbit/s. Elsewhere (a WAN link) the kernel's autotuning is left alone, and so is a buffer that
# is already as large, or that the system's limit (net.core.rmem_max) would make smaller.
RTT_LOCAL_US = 1000
RECEIVE_BUFFER = 4 << 20  # asked for; Linux doubles it (bookkeeping), so 8 MB in effect
_TCP_INFO_RTT = struct.Struct("=I")  # struct tcp_info: tcpi_rtt (microseconds) at byte 68
_TCP_INFO_RTT_AT = 68


def receive_buffer_request(rtt_us: int, current: int, rmem_max: int) -> int | None:
    """The SO_RCVBUF to ask for, or None to leave the socket's buffer (and autotuning) alone.
    ``current``: SO_RCVBUF as getsockopt reports it (doubled); ``rmem_max``: the system's limit."""
    if not 0 < rtt_us < RTT_LOCAL_US:
        return None
    want = min(RECEIVE_BUFFER, rmem_max)
    return want if 2 * want > current else None


def _widen_receive_buffer(sock) -> None:
    """receive_buffer_request on a connected socket; Linux only, best effort (a failure changes nothing)."""
    if not hasattr(socket, "TCP_INFO"):
        return
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        if len(info) < _TCP_INFO_RTT_AT + 4:
            return
        (rtt,) = _TCP_INFO_RTT.unpack_from(info, _TCP_INFO_RTT_AT)
        with open("/proc/sys/net/core/rmem_max", "rb") as f:
            rmem_max = int(f.read())
        size = receive_buffer_request(rtt, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), rmem_max)
        if size is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except (OSError, ValueError):
        return
