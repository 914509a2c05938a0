"""The IMAP commands mailsync sends and what their answers mean, with no I/O: the core both shells share.

Owns: the folder and SELECT result types (RemoteFolder, SelectInfo, CopyUids), building the command
lines (LIST with its RETURN options, SELECT/EXAMINE with CONDSTORE or QRESYNC, STATUS items, APPEND),
reading their answers from parsed responses (mailsync.imap.responses events), and turning a refused
tagged answer into the error that names it (FolderMissing or ProtocolError). Pure: events in,
values out, so it is tested without sockets. Must not: read or write a socket (mailsync.imap.connection
is the blocking shell, mailsync.push.client the asyncio one), touch the store, or decide what to sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailsync.errors import FolderMissing, MailsyncError, ProtocolError
from mailsync.imap import utf7
from mailsync.imap.throttle import refused_by_throttle
from mailsync.imap.payloads import (MAX_EXPANDED, ListEntry, copyuid, expand, parse_list, parse_objectid,
                                    parse_status_reply, set_size, vanished_ranges)
from mailsync.imap.responses import FetchItem, Tagged, Untagged, parse_response_code, quote

SPECIAL_USE = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important")
_SPECIAL_USE_BY_LOWER = {su.lower(): su for su in SPECIAL_USE}  # flags compare without case
# RFC 3501/9051: UIDs and UIDVALIDITY are 32-bit non-zero numbers; RFC 7162: mod-sequences are 63-bit
COUNTER_RANGES = (("UIDVALIDITY", 1, 2**32 - 1), ("UIDNEXT", 1, 2**32 - 1), ("EXISTS", 0, 2**32 - 1),
                  ("HIGHESTMODSEQ", 1, 2**63 - 1))


def selectable(flags: tuple[str, ...]) -> bool:
    """A folder one can SELECT: its LIST flags hold neither \\Noselect nor \\NonExistent."""
    low = {f.lower() for f in flags}
    return "\\noselect" not in low and "\\nonexistent" not in low


@dataclass(frozen=True, slots=True)
class RemoteFolder:
    """A folder as LIST (and LIST-STATUS) gave it. ``name`` is decoded from ``raw_name`` when not given."""

    raw_name: str  # as on the wire (modified UTF-7)
    flags: tuple[str, ...] = ()
    delimiter: str | None = None
    status: dict[str, int] | None = None  # from LIST-STATUS: MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ]
    mailboxid: str | None = None  # RFC 8474, where the server offers OBJECTID
    name: str = ""  # decoded

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", utf7.decode(self.raw_name))

    @property
    def special_use(self) -> str | None:
        for f in self.flags:
            su = _SPECIAL_USE_BY_LOWER.get(f.lower())
            if su is not None:
                return su
        return None

    @property
    def selectable(self) -> bool:
        return selectable(self.flags)


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
    flags: tuple[str, ...] | None = None  # the FLAGS response: the flags defined in the folder
    permanentflags: tuple[str, ...] | None = None  # PERMANENTFLAGS; "\\*": new keywords may be made


class CopyUids(dict):
    """Source UID -> destination UID from a COPYUID (RFC 4315), and the destination UIDVALIDITY
    the server named with them (None when it sent no COPYUID)."""

    def __init__(self, pairs=(), *, uidvalidity: int | None = None) -> None:
        super().__init__(pairs)
        self.uidvalidity = uidvalidity


# -- refusals ---------------------------------------------------------------------------------------


def names_a_missing_folder(tagged: Tagged) -> bool:
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


def refusal(account: str, tagged: Tagged, doing: str) -> MailsyncError:
    """The error for a command the server answered NO or BAD: Throttled when the server asks to slow
    down or wait (mailsync.imap.throttle), FolderMissing when it names a folder that is not there,
    else ProtocolError; all quote the server's answer."""
    throttled = refused_by_throttle(account, tagged.status, tagged.code, tagged.text, doing)
    if throttled is not None:
        return throttled
    error = FolderMissing if names_a_missing_folder(tagged) else ProtocolError
    return error(f"account '{account}': {doing} failed: {tagged.status} "
                 f"{('[' + tagged.code + '] ') if tagged.code else ''}{tagged.text}")


# -- folders ----------------------------------------------------------------------------------------


def status_items(condstore: bool) -> str:
    # No MAILBOXID here, although OBJECTID servers take it in STATUS: Cyrus 3.6 (Debian 12) answers
    # it, in STATUS and in LIST-STATUS alike, with six raw bytes of a pointer instead of the id
    # ("MAILBOXID (\xb8\x82\x93\x9c\x97U)") whenever MESSAGES, UIDNEXT or HIGHESTMODSEQ are asked
    # beside it (alone, or with UIDVALIDITY only, it is right); the bytes may hold CR, LF or
    # parentheses and break the line. SELECT and EXAMINE give the right one (read_select).
    return "MESSAGES UIDNEXT UIDVALIDITY" + (" HIGHESTMODSEQ" if condstore else "")


def list_command(capabilities: frozenset[str], *, status: str | None = None) -> bytes:
    """LIST every folder; with ``status`` (STATUS items) on a LIST-STATUS server their counters in the
    same round trip (RFC 5819); special-use flags asked for where RETURN options would hide them."""
    options = []
    if status and "LIST-STATUS" in capabilities:
        options.append(f"STATUS ({status})")
    if "SPECIAL-USE" in capabilities and ("LIST-EXTENDED" in capabilities or "LIST-STATUS" in capabilities):
        options.append("SPECIAL-USE")  # with RETURN options the special-use flags must be asked for
    return b'LIST "" "*"' + (f" RETURN ({' '.join(options)})".encode() if options else b"")


def read_listing(untagged: list[Untagged]) -> tuple[list[RemoteFolder], list[str]]:
    """The folders of a LIST (with LIST-STATUS) answer, and why entries were set aside: one unusable
    entry (a bad line, a name that is not modified UTF-7) is left out with its reason, the others listed."""
    entries: dict[str, ListEntry] = {}
    status: dict[str, tuple[dict[str, int], str | None]] = {}
    unlisted: list[str] = []
    for ev in untagged:
        try:
            if ev.kind == "LIST":
                e = parse_list(ev.raw)
                entries[e.raw_name] = e
            elif ev.kind == "STATUS":
                name, values, mailboxid = parse_status_reply(ev.raw)
                status[name] = (values, mailboxid)
        except ProtocolError as exc:
            unlisted.append(str(exc))
    out = []
    for raw, e in entries.items():
        st, mailboxid = status.get(raw, (None, None))
        try:
            name = utf7.decode(raw)
        except ProtocolError as exc:
            unlisted.append(f"{exc}; the folder cannot be named safely and is not synced")
            continue
        out.append(RemoteFolder(raw_name=raw, name=name, delimiter=e.delimiter, flags=tuple(e.flags),
                                status=st, mailboxid=mailboxid))
    return out, unlisted


# -- selected state ---------------------------------------------------------------------------------


def select_command(raw_name: str, *, readonly: bool, qresync: tuple[int, int] | None, condstore: bool) -> bytes:
    """SELECT (EXAMINE when ``readonly``) with QRESYNC's (uidvalidity modseq) when given, else
    CONDSTORE where the server has it."""
    verb = b"EXAMINE " if readonly else b"SELECT "
    params = b""
    if qresync:
        params = f" (QRESYNC ({qresync[0]} {qresync[1]}))".encode()
    elif condstore:
        params = b" (CONDSTORE)"
    return verb + quote(raw_name) + params


def read_select(account: str, raw_name: str, untagged: list[Untagged], fetches: list[FetchItem]) -> SelectInfo:
    """SelectInfo from a SELECT's answer: the counters in its OK codes, EXISTS, and under QRESYNC the
    VANISHED (EARLIER) ranges and the FETCHes of what changed. Counters outside their RFC ranges, or
    no UIDVALIDITY, are a ProtocolError that sets the folder aside."""
    info: dict[str, int] = {}
    nomodseq = False
    mailboxid = None
    vanished: list[tuple[int, int]] = []
    flags = permanent = None
    for ev in untagged:
        if ev.kind == "EXISTS":
            info["EXISTS"] = ev.number or 0
        elif ev.kind == "FLAGS":
            flags = flag_list(ev.text)
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
                elif name == "PERMANENTFLAGS":
                    permanent = flag_list(arg)
        elif ev.kind == "VANISHED":
            vanished.extend(vanished_ranges(ev.raw)[1])
    if "UIDVALIDITY" not in info:
        raise ProtocolError(f"account '{account}': SELECT {raw_name!r} gave no UIDVALIDITY",
                            hint="the server does not support UIDs properly; mailsync cannot sync it")
    for name, low, high in COUNTER_RANGES:
        if name in info and not low <= info[name] <= high:
            raise ProtocolError(f"account '{account}': SELECT {raw_name!r} gave {name} {info[name]}, "
                                f"outside {low}..{high}: the folder is set aside for this run",
                                hint="the server's counters are broken for this folder; nothing was changed")
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
                      changed=changed, mailboxid=mailboxid, flags=flags, permanentflags=permanent)


def flag_list(text: str) -> tuple[str, ...] | None:
    """``(\\Seen $Label1)`` -> ("\\Seen", "$Label1"), system flags case normalised; None when it is
    not a flat list of atoms (a server's oddity: the caller then does without it)."""
    from mailsync.imap.fetch_items import _flag_list

    text = text.strip()
    if not (text.startswith("(") and text.endswith(")")) or any(c in text[1:-1] for c in '()"{[]'):
        return None
    return _flag_list(text.encode("utf-8", "replace"))


def read_copyuid(untagged: list[Untagged], tagged: Tagged) -> CopyUids:
    """Source UID -> destination UID of a COPY or MOVE: its COPYUID code, in the tagged answer (COPY)
    or an untagged OK before it (MOVE, RFC 6851 4.3); empty without one."""
    codes = [tagged.code] + [parse_response_code(ev.text)[0] for ev in untagged if ev.kind == "OK"]
    for code in codes:
        cu = copyuid(code)
        if cu:
            return CopyUids(zip(cu[1], cu[2]), uidvalidity=cu[0])
    return CopyUids()


def append_command(raw_name: str, size: int, flags, internaldate: str | None, *, literal_plus: bool = False) -> bytes:
    """APPEND's line up to its literal of ``size`` bytes (\\Recent cannot be set): synchronizing, or
    with ``literal_plus`` not (``{n+}``, RFC 7888: the data follows at once, no "+" awaited)."""
    cmd = b"APPEND " + quote(raw_name)
    flag_list = " ".join(f for f in flags if f.lower() != "\\recent")
    cmd += f" ({flag_list})".encode()
    if internaldate:
        cmd += b' "' + internaldate.encode() + b'"'
    return cmd + b" {" + str(size).encode() + (b"+}" if literal_plus else b"}")
