"""The IMAP response parser: bytes in, events out.

Owns: the grammar of server responses (RFC 3501 / 9051 and the extensions the sync uses: UIDPLUS,
CONDSTORE, QRESYNC, BINARY), the event types it emits, and the small pure helpers the command writer
needs (``quote``, ``format_uid_set``, ``parse_uid_set``, ``parse_internaldate``,
``parse_response_code``).
Must not: do I/O of any kind -- no sockets, files, clocks or logging. The shell that owns the socket
asks ``ResponseParser.wants()`` what to read next (a line, or exactly n literal bytes) and hands the
bytes to ``feed_line`` / ``feed_literal``; ``feed`` takes arbitrary chunks for tests and fuzzing.

Error contract (as in h11): malformed input raises ``mailsync.errors.ProtocolError`` whose message
quotes the offending bytes (repr'd, at most 80) and says what was expected. Any other exception
escaping from this module on server input is a bug. After a ProtocolError the parser refuses further
input. Calling ``feed_line`` while a literal is wanted (or the reverse) is a bug in the caller and
raises RuntimeError.

How a response is read. A line ending in ``{n}`` / ``{n+}`` / ``~{n}`` announces a literal of n bytes;
the response continues on the line after the literal. The parser keeps the lines and the literal
``bytes`` objects apart and only looks at them once the logical response is complete, so a message
body is never copied into a line buffer: the object ``read(n)`` returned becomes ``FetchItem.body``.
The lines of a response are then joined with LF (which no line can contain) standing for each literal,
and read by compiled regexes whose quantifiers are all possessive (no backtracking), so each response
costs O(its line length); nested parentheses are skipped with a counter, never by recursion. A FETCH
of the usual flat shape ("UID 5 FLAGS (...) BODY[] {n}") takes a fast path that reads item/value
pairs in one regex call; anything else, and every error, is left to the general token parser, and a
property test holds the two to the same results.

Leniency (real servers are sloppy) versus strictness (the data would be wrong):
- lenient: item names and NIL in any case, extra or trailing spaces, bare LF line ends, ``]`` and
  8-bit bytes in atoms, ``\\*`` and ``$Keywords`` in flag lists, any backslash escape in quoted
  strings, unknown FETCH items and unknown untagged responses (skipped / passed through raw),
  ``A1 OK`` without text, ``+`` without a space, ``* 1 FETCH ()``, ``NIL`` for a body or date (the
  field stays None). System flags are returned in their canonical case (``\\SEEN`` -> ``\\Seen``).
- strict: numbers are ASCII digits within their RFC range (UID and sequence numbers 1..2**32-1),
  INTERNALDATE must have the date-time shape (``parse_internaldate`` also checks the calendar),
  FETCH lists must be balanced and end the line, an item sent
  twice with different values, control characters, unterminated quoted strings, response codes or
  literals announced in the wrong place.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailsync.errors import ProtocolError

__all__ = [
    "Continuation",
    "Event",
    "FetchItem",
    "ResponseParser",
    "Tagged",
    "Untagged",
    "format_uid_set",
    "parse_internaldate",
    "parse_response",
    "parse_response_code",
    "parse_uid_set",
    "quote",
]

# -- events -------------------------------------------------------------------------------------


@dataclass(slots=True)
class FetchItem:
    """One ``* n FETCH (...)`` response. Items the server did not send are None. Not frozen: one
    is built per message downloaded, and a frozen dataclass's __init__ cost 1.2 us more each."""

    seq: int  # message sequence number
    uid: int | None
    flags: tuple[str, ...] | None  # as sent; system flags with backslash (case normalised), \Recent kept
    internaldate: str | None  # raw as sent, e.g. "17-Jul-1996 02:44:25 -0700"; see parse_internaldate
    size: int | None  # RFC822.SIZE
    body: bytes | None  # BODY[] / BODY[]<0> / BINARY[] / RFC822: the full message, the literal as read
    header_fields: bytes | None  # BODY[HEADER.FIELDS (...)] payload
    modseq: int | None  # MODSEQ (n), CONDSTORE


@dataclass(frozen=True, slots=True)
class Tagged:
    """The tagged completion of a command: ``A1 OK [code] text``."""

    tag: bytes
    status: str  # "OK", "NO" or "BAD"
    code: str | None  # e.g. "APPENDUID 38505 3955" or "MODIFIED 7,9"; the code name upper-cased
    text: str  # human-readable rest, decoded as UTF-8 with replacement


@dataclass(frozen=True, slots=True)
class Untagged:
    """Any untagged response other than FETCH, passed through raw."""

    kind: str  # "EXISTS", "EXPUNGE", "VANISHED", "FLAGS", "OK", "BYE", "NO", "BAD", "CAPABILITY", ...
    number: int | None  # the n of "* n EXISTS" / "* n EXPUNGE" / "* n RECENT"
    raw: bytes  # the full logical response exactly as received, literals inlined, line ends included

    @property
    def text(self) -> str:
        """What follows the kind word, without the final line end, decoded as UTF-8 with replacement.

        For ``* OK [UIDNEXT 4392] Predicted next UID`` this is ``[UIDNEXT 4392] Predicted next UID``;
        feed it to ``parse_response_code``. For ``* VANISHED (EARLIER) 1:3`` feed the part after
        ``(EARLIER)`` to ``parse_uid_set``.
        """
        m = _UNTAGGED_HEAD.match(self.raw)
        rest = self.raw[m.end() :] if m else self.raw
        if rest.endswith(b"\n"):
            rest = rest[:-2] if rest.endswith(b"\r\n") else rest[:-1]
        return rest.lstrip(b" ").decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Continuation:
    """A continuation request: ``+ text``."""

    text: str


Event = FetchItem | Tagged | Untagged | Continuation

# -- limits ------------------------------------------------------------------------------------

MAX_LITERAL = 1 << 31  # bytes; a larger announced literal is refused (a 2 GiB message is not mail)
MAX_LINE = 64 << 20  # bytes; one line of a response (a SEARCH of a million UIDs is ~7 MB)
_MAX_NUMBER = (1 << 32) - 1  # number / nz-number (RFC 3501)
_MAX_NUMBER64 = (1 << 63) - 1  # mod-sequence-value, number64 (RFC 7162, RFC 9051)

# -- tokens ------------------------------------------------------------------------------------
# A token is "(", ")", a quoted string or an atom. Atoms are lenient: any byte but CTL, SP, DEL,
# ( ) " { -- so "]", "\\", "%", "*" and 8-bit bytes pass -- and a bracketed section may follow
# ("BODY[HEADER.FIELDS (MESSAGE-ID)]<0>" is one token). A "[" with no "]" before the next "[" is an
# ordinary atom byte, so scanning for the "]" stops at the next "[" and stays linear.
# Every quantifier is possessive: a failed match never backtracks into what it consumed.

_QUOTED = rb'"(?:[^"\\\r\n\x00]++|\\[^\r\n\x00])*+"'
_ATOM = rb'(?:[^\x00-\x20\x7f()"{\[]++|\[(?:[^\x00-\x1f\x7f\[\]]*+\])?+)++'
_TOKEN = rb"[()]|" + _QUOTED + rb"|" + _ATOM
_IS_TOKEN = re.compile(_TOKEN).fullmatch
# The lines of one response are joined with "\n", which stands for the literal that came between
# them: no line holds a LF, and no token (quoted strings and sections included) can contain one, so a
# "\n" token is always a literal. findall() yields the tokens, spaces skipped. At the first byte where
# no token starts (an unterminated quote, a "{", a control byte) the last alternative swallows the
# rest, so the input is well-formed exactly when the last item is a real token -- one small check
# instead of a second pass.
_LIT = b"\n"
_TOKENS = re.compile(rb"[ ]*+(" + _ATOM + rb"|[()]|\n|" + _QUOTED + rb"|[^ \n][\x00-\xff]*+)")
_UNESCAPE = re.compile(rb"\\(.)", re.S)

_ATOM_T, _OPEN_T, _CLOSE_T, _QUOTED_T, _LIT_T = range(5)
_CLASS = [_ATOM_T] * 256  # token class by its first byte
_CLASS[0x28], _CLASS[0x29], _CLASS[0x22], _CLASS[0x0A] = _OPEN_T, _CLOSE_T, _QUOTED_T, _LIT_T

# Heads of responses.
_FETCH_HEAD = re.compile(rb"\*[ ]++([0-9]{1,10}+)[ ]++(?i:FETCH)(?![^ (])[ ]*+(\()?+")  # the hot path
_UNTAGGED_HEAD = re.compile(rb"\*[ ]++(?:([0-9]++)[ ]++)?+([A-Za-z][A-Za-z0-9._-]*+)")
_TAGGED_HEAD = re.compile(rb'([^\x00-\x20\x7f(){%*"\\+]++)[ ]++([A-Za-z]++)(?:[ ](.*+))?+', re.S)

# -- FETCH items -------------------------------------------------------------------------------
# Which FetchItem field an item fills; the index is the field's position after `seq`.
_F_UID, _F_FLAGS, _F_DATE, _F_SIZE, _F_BODY, _F_HEADERS, _F_MODSEQ, _F_SKIP = range(8)
_FIELD_NAMES = ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY[]", "BODY[HEADER.FIELDS]", "MODSEQ")

_ITEMS: dict[bytes, int] = {
    b"UID": _F_UID,
    b"FLAGS": _F_FLAGS,
    b"INTERNALDATE": _F_DATE,
    b"RFC822.SIZE": _F_SIZE,
    b"MODSEQ": _F_MODSEQ,
    b"RFC822": _F_BODY,
    b"BODY[]": _F_BODY,
    b"BODY[]<0>": _F_BODY,
    b"BODY.PEEK[]": _F_BODY,
    b"BINARY[]": _F_BODY,
    b"BINARY.PEEK[]": _F_BODY,
}
_SECTIONS: dict[bytes, int] = {}  # section item names seen, e.g. b"BODY[HEADER.FIELDS (MESSAGE-ID)]"
_SECTIONS_MAX = 256  # item names are server-controlled: bound what we remember
_PARTIAL = re.compile(rb"<[0-9]{1,20}+>")

_SYSTEM_FLAGS = {
    f.lower().encode(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent")
}

_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_QUOTED_DATE_TIME = re.compile(  # the usual shape of an INTERNALDATE token, quotes included
    rb'"(?: ?[0-9]{1,2})-[A-Za-z]{3}-[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}"'
)
_DATE_TIME = re.compile(
    r"(?: ?([0-9]{1,2}))-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})",
    re.ASCII,
)


def _q(data: bytes | bytearray | memoryview | str) -> str:
    """Quote (part of) offending input for an error message: repr'd, at most 80 bytes."""
    if len(data) > 80:
        return repr(data[:80]) + "..."
    return repr(bytes(data) if isinstance(data, (bytearray, memoryview)) else data)


# -- the parser --------------------------------------------------------------------------------


class ResponseParser:
    """Turns the bytes of an IMAP server's responses into events.

    The shell loops::

        while True:
            n = parser.wants()
            events = parser.feed_line(f.readline()) if n is None else parser.feed_literal(f.read(n))

    Events come out when a whole logical response (lines and literals) has been received.
    """

    __slots__ = ("_lines", "_texts", "_lits", "_want", "_buf", "_scan", "_broken", "_max_literal", "_max_line")

    def __init__(self, *, max_literal: int = MAX_LITERAL, max_line: int = MAX_LINE) -> None:
        self._lines: list[bytes] = []  # raw lines of the response in progress, line ends included
        self._texts: list[bytes] = []  # the same lines without line end and literal announcement
        self._lits: list[bytes] = []  # literals received so far, in order, exactly as handed in
        self._want: int | None = None  # length of the literal we wait for, or None for a line
        self._buf = bytearray()  # feed(): bytes received but not yet dispatched
        self._scan = 0  # feed(): how far _buf is known to hold no LF
        self._broken: ProtocolError | None = None  # the error that stopped us, if any
        self._max_literal = max_literal
        self._max_line = max_line

    # -- the sans-I/O interface --

    def wants(self) -> int | None:
        """None: give me the next line, CRLF included. n: give me exactly n literal bytes."""
        return self._want

    @property
    def at_boundary(self) -> bool:
        """True when no response is partly received (so the stream may end here)."""
        return not self._lines and not self._buf

    def feed_line(self, line: bytes) -> list[Event]:
        """Take one line (ending in CRLF; a bare LF is tolerated); return completed events."""
        if self._want is not None:
            raise RuntimeError(f"feed_line() called while a literal of {self._want} bytes is wanted")
        if self._broken is not None:
            self._refuse()
        if line.find(b"\n", 0, len(line) - 1) >= 0:
            raise RuntimeError("feed_line() takes exactly one line (readline() gives one)")
        try:
            if line.endswith(b"\r\n"):
                text = line[:-2]
            elif line.endswith(b"\n"):
                text = line[:-1]
            elif not line:
                raise ProtocolError("the stream ended where a line was expected (connection closed?)")
            else:
                raise ProtocolError(f"line not terminated by CRLF (connection closed mid-line?): {_q(line)}")
            if len(line) > self._max_line:
                raise ProtocolError(f"line longer than {self._max_line} bytes: {_q(line)}")
            lines = self._lines
            if not lines and line[:1] == b"+":
                # A continuation request is a whole response; its text (often base64) announces nothing.
                text = text[1:]
                if text[:1] == b" ":
                    text = text[1:]
                return [Continuation(text.decode("utf-8", "replace"))]

            # Does the line announce a literal: "{n}", "{n+}" or (BINARY) "~{n}" at its very end?
            if text.endswith(b"}"):
                start = text.rfind(b"{")
                digits = text[start + 1 : -1]
                if digits.endswith(b"+"):
                    digits = digits[:-1]
                if start >= 0 and digits.isdigit():
                    if len(digits) > 20 or (n := int(digits)) > self._max_literal:
                        raise ProtocolError(f"literal of {_q(digits)} bytes announced, more than the "
                                            f"{self._max_literal} allowed: {_q(text[-80:])}")
                    if start and text[start - 1] == 0x7E:  # "~{n}": literal8
                        start -= 1
                    lines.append(line)
                    self._texts.append(text[:start])
                    self._want = n
                    return []

            if not lines:  # the common case: a response of one line
                return [_response((line,), (text,), ())]
            lines.append(line)
            texts, lits = self._texts, self._lits
            texts.append(text)
            self._lines, self._texts, self._lits = [], [], []
            return [_response(lines, texts, lits)]
        except ProtocolError as exc:
            self._broken = exc
            raise

    def feed_literal(self, data: bytes) -> list[Event]:
        """Take exactly the n bytes wants() asked for. The object is kept as-is (not copied)."""
        want = self._want
        if want is None:
            raise RuntimeError("feed_literal() called while a line is wanted")
        if self._broken is not None:
            self._refuse()
        if len(data) != want:
            self._broken = ProtocolError(
                f"literal truncated: expected {want} bytes, got {len(data)} (connection closed mid-literal?)"
            )
            raise self._broken
        self._lits.append(data)
        self._want = None
        return []

    def feed(self, data: bytes) -> list[Event]:
        """Take any chunk of the stream (any split, even byte by byte); return completed events."""
        if self._broken is not None:
            self._refuse()
        buf = self._buf
        buf += data
        events: list[Event] = []
        try:
            while True:
                want = self._want
                if want is None:
                    end = buf.find(b"\n", self._scan)
                    if end < 0:
                        self._scan = len(buf)
                        if len(buf) > self._max_line:
                            raise ProtocolError(f"line longer than {self._max_line} bytes: {_q(buf)}")
                        break
                    line = bytes(buf[: end + 1])
                    del buf[: end + 1]
                    self._scan = 0
                    events += self.feed_line(line)
                else:
                    if len(buf) < want:
                        break
                    lit = bytes(buf[:want])
                    del buf[:want]
                    self._lits.append(lit)
                    self._want = None
        except ProtocolError as exc:
            self._broken = exc
            raise
        return events

    def _refuse(self) -> None:
        raise ProtocolError(f"the response parser stopped at an earlier error: {self._broken.message}")


def _response(lines: Sequence[bytes], texts: Sequence[bytes], lits: Sequence[bytes]) -> Event:
    """Parse one complete logical response: its lines, their texts (no line end, no literal
    announcement) and the literals between them."""
    text0 = texts[0]
    m = _FETCH_HEAD.match(text0)
    if m is not None:
        seq = int(m.group(1))
        if not 0 < seq <= _MAX_NUMBER:
            raise ProtocolError(f"message sequence number before FETCH out of range 1..{_MAX_NUMBER}: "
                                f"{_q(text0[:40])}")
        text = text0 if len(texts) == 1 else b"\n".join(texts)
        if m.group(2) is not None:
            item = _fetch_simple(seq, text, m.end(), lits)
            if item is not None:
                return item
            return _parse_fetch(seq, text, lits, m.end() - 1)
        return _parse_fetch(seq, text, lits, m.end())
    if text0[:1] == b"*":
        m = _UNTAGGED_HEAD.match(text0)
        if m is None:
            raise ProtocolError(f"expected '* [number] KIND' at the start of an untagged response, "
                                f"got {_q(text0)}")
        number_b, kind_b = m.groups()
        kind = kind_b.upper()
        number = None
        if number_b is not None:
            if len(number_b) > 10 or (number := int(number_b)) > _MAX_NUMBER:
                raise ProtocolError(f"number before {_name(kind_b)} out of range 0..{_MAX_NUMBER}: "
                                    f"{_q(number_b)}")
        if kind == b"FETCH":
            if not number:
                raise ProtocolError(f"expected a message sequence number (1 or more) before FETCH, "
                                    f"got {_q(text0[:40])}")
            return _parse_fetch(number, b"\n".join(texts), lits, m.end())
        _check_untagged(kind, number, texts, m.end())
        raw = lines[0] if not lits else _join(lines, lits)
        return Untagged(kind.decode("ascii"), number, raw)

    if lits:
        raise ProtocolError(f"literal in a tagged response: {_q(lines[0])}")
    m = _TAGGED_HEAD.fullmatch(text0)
    if m is None:
        raise ProtocolError(f"expected 'TAG OK|NO|BAD text', '* ...' or '+ ...', got {_q(text0)}")
    tag, status_b, rest = m.groups()
    status = status_b.upper()
    if status not in (b"OK", b"NO", b"BAD"):
        raise ProtocolError(f"expected OK, NO or BAD after tag {_q(tag)}, got {_q(status_b)}")
    code, text = parse_response_code((rest or b"").decode("utf-8", "replace"))
    return Tagged(tag, status.decode("ascii"), code, text)


def _join(lines: list[bytes], lits: list[bytes]) -> bytes:
    parts = []
    for i, lit in enumerate(lits):
        parts.append(lines[i])
        parts.append(lit)
    parts.append(lines[-1])
    return b"".join(parts)


def parse_response(data: bytes) -> list[Event]:
    """Parse a complete stream of responses; ProtocolError if it ends inside one."""
    parser = ResponseParser()
    events = parser.feed(data)
    if not parser.at_boundary:
        raise ProtocolError(f"the data ended inside a response: {_q(bytes(parser._buf) or b''.join(parser._lines))}")
    return events


# -- tokens ------------------------------------------------------------------------------------


def _tokens(text: bytes, pos: int) -> list[bytes]:
    """The tokens of a response's lines joined by _LIT, from `pos`; each _LIT stands for a literal."""
    toks = _TOKENS.findall(text, pos)
    if toks:
        last = toks[-1]
        if last != b")" and last != _LIT and _IS_TOKEN(last) is None:
            why = {
                b'"': "unterminated quoted string (expected a closing '\"' on the same line)",
                b"{": "'{' in mid-line (a literal is announced only at the end of a line)",
            }.get(last[:1], "unexpected byte (expected an atom, a quoted string or a parenthesis)")
            raise ProtocolError(f"{why} at {_q(last.partition(_LIT)[0])}")
    return toks


def _number(tok: bytes, low: int, high: int, what: bytes | str) -> int:
    if not tok.isdigit() or len(tok) > 20:
        raise ProtocolError(f"expected a number for {_name(what)}, got {_q(tok)}")
    n = int(tok)
    if not low <= n <= high:
        raise ProtocolError(f"{_name(what)} {n} out of range {low}..{high}")
    return n


def _name(what: bytes | str) -> str:
    return what.decode("ascii", "replace") if isinstance(what, bytes) else what


def _unquote(tok: bytes) -> bytes:
    s = tok[1:-1]
    return _UNESCAPE.sub(rb"\1", s) if b"\\" in s else s


def _skip(toks: list[bytes], i: int, what: bytes) -> int:
    """Skip one value of any shape (atom, number, string, literal, NIL, nested lists) at toks[i]."""
    cls = _CLASS[toks[i][0]]
    if cls == _CLOSE_T:
        raise ProtocolError(f"expected a value after {_q(what)}, got ')'")
    i += 1
    if cls != _OPEN_T:
        return i
    depth = 1
    while depth:
        cls = _CLASS[toks[i][0]]
        if cls == _OPEN_T:
            depth += 1
        elif cls == _CLOSE_T:
            depth -= 1
        i += 1
    return i


# -- FETCH -------------------------------------------------------------------------------------


def _item_field(key: bytes) -> int:
    """Which field a (upper-cased) FETCH item name fills; cached for section names."""
    field = _ITEMS.get(key)
    if field is None:
        field = _SECTIONS.get(key)
    if field is not None:
        return field
    field = _F_SKIP
    open_ = key.find(b"[")
    if open_ > 0:
        base = key[:open_].removesuffix(b".PEEK")
        close = key.find(b"]", open_)
        if base in (b"BODY", b"BINARY"):
            if close < 0:
                raise ProtocolError(f"expected ']' to close the section of FETCH item {_q(key)}")
            section, origin = key[open_ + 1 : close], key[close + 1 :]
            if origin and not _PARTIAL.fullmatch(origin):
                raise ProtocolError(f"expected '<number>' or nothing after the section of {_q(key)}")
            partial = origin not in (b"", b"<0>")
            if section == b"" and not partial:
                field = _F_BODY
            elif base == b"BODY" and not partial and section.startswith(b"HEADER.FIELDS") and (
                section[13:14] in (b" ", b"(")
            ):
                field = _F_HEADERS
    if len(_SECTIONS) < _SECTIONS_MAX:
        _SECTIONS[key] = field
    return field


def _parse_fetch(seq: int, text: bytes, lits: Sequence[bytes], pos: int) -> FetchItem:
    """The general FETCH parser: `text` is the response's lines joined by _LIT, from `pos` on.

    Checks are inlined (this runs for every message); the helpers run only to word an error.
    """
    vals: list = [None] * 7  # uid, flags, internaldate, size, body, header_fields, modseq
    classes, items = _CLASS, _ITEMS
    li = 0  # literals consumed so far
    toks: list[bytes] = []
    try:
        toks = _tokens(text, pos)
        if not toks or toks[0] != b"(":
            raise ProtocolError(f"expected '(' after '* {seq} FETCH', got {_q(toks[0] if toks else b'')}")
        i = 1
        while True:
            name = toks[i]
            cls = classes[name[0]]
            if cls != _ATOM_T:
                if cls == _CLOSE_T:
                    break
                raise ProtocolError(f"expected a FETCH item name, got {_q(name)}")
            field = items.get(name)  # servers send item names upper-case; else look again
            if field is None:
                field = _item_field(name.upper())
            tok = toks[i + 1]
            i += 2
            if field == _F_UID:
                if not (tok.isdigit() and len(tok) <= 10 and 0 < (value := int(tok)) <= _MAX_NUMBER):
                    value = _number(tok, 1, _MAX_NUMBER, "UID")
            elif field == _F_FLAGS:
                if tok != b"(":
                    raise ProtocolError(f"expected '(' after FLAGS, got {_q(tok)}")
                flags = []
                tok = toks[i]
                while tok != b")":
                    if classes[tok[0]] != _ATOM_T:
                        raise ProtocolError(f"expected a flag in FLAGS, got {_q(tok)}")
                    if tok[0] == 0x5C:  # "\\": a system flag (case normalised), or \* and extensions
                        flags.append(_SYSTEM_FLAGS.get(tok.lower()) or _flag(tok))
                    else:
                        flags.append(tok.decode("ascii") if tok.isascii() else _flag(tok))
                    i += 1
                    tok = toks[i]
                i += 1
                value = tuple(flags)
            elif field == _F_BODY or field == _F_HEADERS:
                cls = classes[tok[0]]
                if cls == _LIT_T:
                    value = lits[li]  # the very object the shell read: no copy
                    li += 1
                elif cls == _QUOTED_T:
                    value = _unquote(tok)
                elif tok.upper() == b"NIL":
                    continue  # NIL: the server has nothing to send; leave the field as it is
                else:
                    raise ProtocolError(f"expected a literal, a quoted string or NIL after {_q(name)}, "
                                        f"got {_q(tok)}")
            elif field == _F_SIZE:
                if not (tok.isdigit() and len(tok) <= 18):
                    value = _number(tok, 0, _MAX_NUMBER64, "RFC822.SIZE")
                else:
                    value = int(tok)
            elif field == _F_DATE:
                if _QUOTED_DATE_TIME.fullmatch(tok) is not None:
                    value = tok[1:-1].decode("ascii")
                elif classes[tok[0]] == _QUOTED_T:
                    value = _unquote(tok).decode("ascii", "replace")
                    if _DATE_TIME.fullmatch(value) is None:
                        raise ProtocolError(f"expected an INTERNALDATE like \"17-Jul-1996 02:44:25 -0700\", "
                                            f"got {_q(tok)}")
                elif tok.upper() == b"NIL":
                    continue
                else:
                    raise ProtocolError(f"expected a quoted INTERNALDATE, got {_q(tok)}")
            elif field == _F_MODSEQ:
                if tok != b"(" or toks[i + 1] != b")":
                    raise ProtocolError(f"expected 'MODSEQ (number)', got {_q(b' '.join(toks[i - 2 : i + 2]))}")
                value = _number(toks[i], 0, _MAX_NUMBER64, "MODSEQ")
                i += 2
            else:
                start = i - 1
                i = _skip(toks, start, name)
                if lits:
                    li += toks[start:i].count(_LIT)
                continue
            old = vals[field]
            if old is not None and old != value:
                raise ProtocolError(f"two different values for {_FIELD_NAMES[field]}: "
                                    f"{_q(repr(old))} and {_q(repr(value))}")
            vals[field] = value
        if i + 1 != len(toks):
            raise ProtocolError(f"expected the end of the line after the FETCH list, got {_q(toks[i + 1])}")
    except IndexError:
        raise ProtocolError(f"FETCH response for message {seq} ended before its ')': "
                            f"{_q(b' '.join(toks[-6:]))}") from None
    except ProtocolError as exc:
        raise ProtocolError(f"FETCH response for message {seq}: {exc.message}") from None
    return FetchItem(seq, *vals)


# The fast path. Nearly every FETCH response is a flat list of "NAME value" pairs whose values are a
# number, a flat parenthesised list (FLAGS, MODSEQ), a quoted string or a literal. One findall() yields
# those pairs; the last alternative swallows the rest of the line at anything else (NIL, nested lists,
# a stray byte), and a value must end at a space or ")" so that no pair can be split differently from
# the general tokenizer. When the shape or a value is not the simple one, _fetch_simple returns None
# and _parse_fetch decides -- accepting the odd cases and wording the errors -- so the two never
# disagree (tests/unit/test_responses.py checks this on random input).
_SIMPLE_ATOM = rb'[^\x00-\x20\x7f()"{\[]++(?:\[[^\x00-\x1f\x7f\[\]]*+\][^\x00-\x20\x7f()"{\[]*+)?+'
_PAIRS = re.compile(
    rb"[ ]*+(?:(" + _SIMPLE_ATOM + rb")[ ]++(?:"
    rb"([0-9]++)(?=[ )])"  # 2: number
    rb'|(\([^\x00-\x1f\x7f()"{\[\]]*+\))'  # 3: flat list, parentheses included
    rb'|"((?:[^"\\\r\n\x00]++|\\[^\r\n\x00])*+)"'  # 4: quoted string, quotes excluded
    rb"|(\n))"  # 5: literal
    rb"|(\))[ ]*+\Z"  # 6: the end of the list
    rb"|([\x00-\xff]++))"  # 7: anything else: not simple
)
_FLAG_LISTS: dict[bytes, tuple[str, ...]] = {}  # b"(\\Seen $Forwarded)" -> the tuple; lists repeat
_FLAG_LISTS_MAX = 4096  # server-controlled: bound what we remember
_DATE_TIME_B = re.compile(rb"(?: ?[0-9]{1,2})-[A-Za-z]{3}-[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}")


def _fetch_simple(seq: int, text: bytes, pos: int, lits: Sequence[bytes]) -> FetchItem | None:
    """FETCH items from `pos` (just after the "("), or None when the general parser must decide."""
    pairs = _PAIRS.findall(text, pos)
    if not pairs or not pairs[-1][5]:
        return None
    vals: list = [None] * 7
    items, flag_lists = _ITEMS, _FLAG_LISTS
    li = 0
    for name, num, lst, quoted, lit, end, _ in pairs:
        if end:
            return FetchItem(seq, *vals)
        field = items.get(name)
        if field is None:
            try:
                field = _item_field(name.upper())
            except ProtocolError:
                return None
        if field == _F_UID:
            if not num or len(num) > 10 or not 0 < (value := int(num)) <= _MAX_NUMBER:
                return None
        elif field == _F_FLAGS:
            value = flag_lists.get(lst) or _flag_list(lst)
            if value is None:
                return None
        elif field == _F_BODY or field == _F_HEADERS:
            if lit:
                value = lits[li]
                li += 1
            elif quoted or (not num and not lst):
                value = _UNESCAPE.sub(rb"\1", quoted) if b"\\" in quoted else quoted
            else:
                return None
        elif field == _F_SIZE:
            if not num or len(num) > 18:
                return None
            value = int(num)
        elif field == _F_DATE:
            if not quoted or _DATE_TIME_B.fullmatch(quoted) is None:
                return None
            value = quoted.decode("ascii")
        elif field == _F_MODSEQ:
            digits = lst[1:-1].strip(b" ")
            if not digits.isdigit() or len(digits) > 18:
                return None
            value = int(digits)
        else:
            if lit:
                li += 1
            continue
        old = vals[field]
        if old is not None and old != value:
            return None
        vals[field] = value
    return None  # unreachable: the last pair is the end


# The bulk path. A message download gets one response per message, nearly always of one shape:
#     * 12 FETCH (UID 40 FLAGS (\Seen) INTERNALDATE "..." RFC822.SIZE 2345 MODSEQ (7) BODY[] {2345}
#     <the literal>
#     )
# ``usual_body_fetch`` reads the first line whole when it is in the order Dovecot (and most servers)
# use; otherwise ``body_fetch_head`` recognises it, so that the reader can put the literal where the
# message is to be stored, and ``body_fetch_item`` reads its items: first with one pattern for the
# order Dovecot (and most servers) use, else with _fetch_simple, which takes any order. When it
# returns None the caller hands the whole response to ResponseParser, which decides; the results of
# the two paths are held equal by tests/unit/test_responses.py.
_BODY_FETCH_HEAD = re.compile(rb"\* ([0-9]{1,10}) FETCH \(([^\x00-\x1f{}]*) BODY\[\] \{([0-9]{1,10})\}\r\n")
_USUAL_ITEMS = re.compile(
    rb'UID ([0-9]{1,10}) FLAGS (\([^\x00-\x1f\x7f()"{\[\]]*\)) '
    rb'INTERNALDATE "((?: ?[0-9]{1,2})-[A-Za-z]{3}-[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4})" '
    rb"RFC822\.SIZE ([0-9]{1,18})(?: MODSEQ \(([0-9]{1,18})\))?")


# The usual first line read whole, items and all: one pattern instead of two (about 1 us a message).
_USUAL_HEAD = re.compile(rb"\* ([0-9]{1,10}) FETCH \(" + _USUAL_ITEMS.pattern + rb" BODY\[\] \{([0-9]{1,10})\}\r\n")


def usual_body_fetch(line: bytes) -> tuple[int, int, tuple[str, ...], str, int, int | None, int] | None:
    """``(seq, uid, flags, internaldate, size, modseq, n)`` when ``line`` is the first line of a
    one-message FETCH response in the usual order (as _USUAL_ITEMS reads it), ending ``BODY[] {n}``;
    a response whose last line is ``)`` is then the FetchItem of these values and its literal, as
    body_fetch_head and body_fetch_item would have read it. None for anything else (ask those)."""
    m = _USUAL_HEAD.fullmatch(line)
    if m is None:
        return None
    seq_b, uid_b, lst, date, size, modseq, n_b = m.groups()
    seq, uid, n = int(seq_b), int(uid_b), int(n_b)
    flags = _FLAG_LISTS.get(lst) or _flag_list(lst)
    if not (0 < seq <= _MAX_NUMBER and 0 < uid <= _MAX_NUMBER) or n > MAX_LITERAL or flags is None:
        return None
    return seq, uid, flags, date.decode("ascii"), int(size), None if modseq is None else int(modseq), n


def body_fetch_head(line: bytes) -> tuple[int, bytes, int] | None:
    """``(seq, items, n)`` when ``line`` is the first line of the usual one-message FETCH response
    (its items, then ``BODY[] {n}`` ending the line); None for anything else."""
    m = _BODY_FETCH_HEAD.fullmatch(line)
    if m is None:
        return None
    seq, n = int(m.group(1)), int(m.group(3))
    if not 0 < seq <= _MAX_NUMBER or n > MAX_LITERAL:
        return None
    return seq, m.group(2), n


def body_fetch_item(seq: int, items: bytes, body) -> FetchItem | None:
    """The FetchItem of a response body_fetch_head accepted, whose literal was ``body`` and whose
    last line was ``)``; None when the items are not of the simple shape (ask ResponseParser)."""
    m = _USUAL_ITEMS.fullmatch(items)
    if m is not None:
        uid_b, lst, date, size, modseq = m.groups()
        uid = int(uid_b)
        flags = _FLAG_LISTS.get(lst) or _flag_list(lst)
        if 0 < uid <= _MAX_NUMBER and flags is not None:
            return FetchItem(seq, uid, flags, date.decode("ascii"), int(size), body, None,
                             None if modseq is None else int(modseq))
    item = _fetch_simple(seq, items + b")", 0, ())
    if item is None or item.body is not None or item.header_fields is not None:
        return None
    return FetchItem(seq, item.uid, item.flags, item.internaldate, item.size, body, None, item.modseq)


def _flag_list(lst: bytes) -> tuple[str, ...] | None:
    """A flat FLAGS list, parentheses included, as the tuple FetchItem holds; None if not ASCII."""
    if not lst or not lst.isascii():
        return None
    sysflags = _SYSTEM_FLAGS
    value = tuple([sysflags.get(f.lower()) or f.decode("ascii") for f in lst[1:-1].split(b" ") if f])
    if len(_FLAG_LISTS) < _FLAG_LISTS_MAX:
        _FLAG_LISTS[lst] = value
    return value


def _flag(tok: bytes) -> str:
    if tok.isascii():
        return tok.decode("ascii")
    try:
        return tok.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"flag is neither ASCII nor UTF-8: {_q(tok)}") from None


# -- other untagged responses ------------------------------------------------------------------
# What each known kind must look like after its name. Unknown kinds pass through unchecked.


def _check_untagged(kind: bytes, number: int | None, texts: list[bytes], pos: int) -> None:
    rule = _UNTAGGED_RULES.get(kind)
    if rule is None:
        return
    numbered, check = rule
    name = kind.decode("ascii")
    if numbered is None and number is not None:
        raise ProtocolError(f"unexpected number before {name}: {_q(texts[0])}")
    if numbered is not None and (number is None or number < numbered):
        raise ProtocolError(f"expected a number ({numbered} or more) before {name}, got {_q(texts[0])}")
    check(name, texts, pos)


def _check_nothing(name: str, texts: list[bytes], pos: int) -> None:
    if len(texts) > 1 or texts[0][pos:].strip(b" "):
        raise ProtocolError(f"expected the end of the line after {name}, got {_q(texts[0][pos:])}")


def _check_resp_text(name: str, texts: list[bytes], pos: int) -> None:
    text = texts[0][pos:]
    if text[:1] == b" ":
        text = text[1:]
    if text[:1] == b"[":
        parse_response_code(text.decode("utf-8", "replace"))


def _balanced(name: str, texts: list[bytes], pos: int) -> list[bytes]:
    try:
        toks = _tokens(b"\n".join(texts), pos)
    except ProtocolError as exc:
        raise ProtocolError(f"untagged {name}: {exc.message}") from None
    depth = 0
    for tok in toks:
        if tok == b"(":
            depth += 1
        elif tok == b")":
            depth -= 1
            if depth < 0:
                raise ProtocolError(f"unbalanced ')' in untagged {name}: {_q(texts[0])}")
    if depth:
        raise ProtocolError(f"unclosed '(' in untagged {name}: {_q(texts[0])}")
    return toks


def _check_balanced(name: str, texts: list[bytes], pos: int) -> None:
    _balanced(name, texts, pos)


def _check_atoms(name: str, texts: list[bytes], pos: int) -> None:
    for tok in _balanced(name, texts, pos):
        if _CLASS[tok[0]] != _ATOM_T:
            raise ProtocolError(f"expected only atoms after {name}, got {_q(tok)}")


def _check_flag_list(name: str, texts: list[bytes], pos: int) -> None:
    toks = _balanced(name, texts, pos)
    if len(toks) < 2 or toks[0] != b"(" or toks[-1] != b")" or any(
        _CLASS[t[0]] != _ATOM_T for t in toks[1:-1]
    ):
        raise ProtocolError(f"expected a list of flags like '(\\Seen $Forwarded)' after {name}, "
                            f"got {_q(texts[0][pos:])}")


def _check_search(name: str, texts: list[bytes], pos: int) -> None:
    toks = _balanced(name, texts, pos)
    if len(toks) >= 4 and toks[-4] == b"(" and toks[-3].upper() == b"MODSEQ" and toks[-1] == b")":
        _number(toks[-2], 0, _MAX_NUMBER64, "MODSEQ")
        toks = toks[:-4]
    for tok in toks:
        _number(tok, 1, _MAX_NUMBER, name)


def _check_vanished(name: str, texts: list[bytes], pos: int) -> None:
    toks = _balanced(name, texts, pos)
    if len(toks) >= 3 and toks[0] == b"(" and toks[1].upper() == b"EARLIER" and toks[2] == b")":
        toks = toks[3:]
    if len(toks) != 1:
        raise ProtocolError(f"expected 'VANISHED [(EARLIER)] uid-set', got {_q(texts[0])}")
    parse_uid_set(toks[0])


_UNTAGGED_RULES = {
    # kind: (None = no number allowed, or the least number required; the check of the rest)
    b"EXISTS": (0, _check_nothing),
    b"RECENT": (0, _check_nothing),
    b"EXPUNGE": (1, _check_nothing),
    b"OK": (None, _check_resp_text),
    b"NO": (None, _check_resp_text),
    b"BAD": (None, _check_resp_text),
    b"BYE": (None, _check_resp_text),
    b"PREAUTH": (None, _check_resp_text),
    b"VANISHED": (None, _check_vanished),
    b"FLAGS": (None, _check_flag_list),
    b"CAPABILITY": (None, _check_atoms),
    b"ENABLED": (None, _check_atoms),
    b"SEARCH": (None, _check_search),
    b"SORT": (None, _check_search),
    b"ESEARCH": (None, _check_balanced),
    b"LIST": (None, _check_balanced),
    b"LSUB": (None, _check_balanced),
    b"XLIST": (None, _check_balanced),
    b"STATUS": (None, _check_balanced),
    b"NAMESPACE": (None, _check_balanced),
    b"ID": (None, _check_balanced),
    b"QUOTA": (None, _check_balanced),
    b"QUOTAROOT": (None, _check_balanced),
    b"METADATA": (None, _check_balanced),
    b"THREAD": (None, _check_balanced),
}

# -- helpers -----------------------------------------------------------------------------------


def parse_response_code(text: str) -> tuple[str | None, str]:
    """Split resp-text into its bracketed code and the rest.

    ``"[APPENDUID 38505 3955] APPEND completed"`` -> ``("APPENDUID 38505 3955", "APPEND completed")``;
    ``"Logged in"`` -> ``(None, "Logged in")``. The code name is upper-cased, its arguments kept.
    A ``]`` inside a quoted string or parentheses does not end the code. ProtocolError when the code is
    unterminated or empty.
    """
    text = text.lstrip(" ")
    if not text.startswith("["):
        return None, text
    end = text.find("]")
    if end > 0 and '"' not in text[:end] and "(" not in text[:end]:
        return _split_code(text, end)  # the usual case, at C speed
    depth = 0
    quoted = escaped = False
    end = -1
    for i in range(1, len(text)):
        c = text[i]
        if quoted:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "(":
            depth += 1
        elif c == ")" and depth:
            depth -= 1
        elif c == "]" and not depth:
            end = i
            break
    if end < 0:
        raise ProtocolError(f"expected ']' to end the response code in {_q(text)}")
    return _split_code(text, end)


def _split_code(text: str, end: int) -> tuple[str, str]:
    code = text[1:end].strip(" ")
    if not code:
        raise ProtocolError(f"empty response code in {_q(text)}")
    name, sep, args = code.partition(" ")
    return name.upper() + sep + args, text[end + 1 :].lstrip(" ")


def parse_internaldate(raw: str) -> str:
    """``"17-Jul-1996 02:44:25 -0700"`` -> ``"1996-07-17T02:44:25-07:00"`` (ISO 8601).

    The day may be space-padded (``" 7-Jul-1996 ..."``) or unpadded; the month name is matched
    without regard to case. ProtocolError on anything else, including impossible dates.
    """
    m = _DATE_TIME.fullmatch(raw) if isinstance(raw, str) else None
    if m is None:
        raise ProtocolError(f"expected an INTERNALDATE like \"17-Jul-1996 02:44:25 -0700\", got {_q(raw)}")
    day, mon, year, hh, mm, ss, sign, tzh, tzm = m.groups()
    date = _ISO_DATES.get((day, mon, year))
    if date is None:  # a day not seen yet: check it (messages of one folder share few days)
        month = _MONTHS.get(mon.upper())
        d, y = int(day), int(year)
        if month is None or y < 1 or not 1 <= d <= calendar.monthrange(y, month)[1]:
            raise ProtocolError(f"INTERNALDATE is not a valid date and time: {_q(raw)}")
        date = f"{y:04d}-{month:02d}-{d:02d}"
        if len(_ISO_DATES) < 65536:  # server-controlled: bound what we remember
            _ISO_DATES[(day, mon, year)] = date
    # two digits each (the pattern says so): string comparison is numeric comparison
    if hh > "23" or mm > "59" or ss > "60" or tzh > "23" or tzm > "59":  # a leap second is a valid time
        raise ProtocolError(f"INTERNALDATE is not a valid date and time: {_q(raw)}")
    return f"{date}T{hh}:{mm}:{ss}{sign}{tzh}:{tzm}"


_ISO_DATES: dict[tuple[str, str, str], str] = {}


def quote(s: str, *, utf8: bool = False) -> bytes:
    """``s`` as an IMAP quoted string: ``a"b\\c`` -> ``b'"a\\\\"b\\\\\\\\c"'``.

    ValueError for what a quoted string cannot carry: CR, LF, NUL -- and non-ASCII unless ``utf8``
    (the server announced UTF8=ACCEPT). Send such strings as literals.
    """
    if "\r" in s or "\n" in s or "\x00" in s:
        raise ValueError(f"cannot quote a string containing CR, LF or NUL; send it as a literal: {s[:80]!r}")
    if not utf8 and not s.isascii():
        raise ValueError(f"cannot quote non-ASCII without UTF8=ACCEPT; send it as a literal: {s[:80]!r}")
    return b'"' + s.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8") + b'"'


def format_uid_set(uids: Iterable[int]) -> str:
    """Sorted, de-duplicated UIDs as a compact IMAP set: ``[1,2,3,4,5,7,9,10,11,12]`` -> ``"1:5,7,9:12"``.

    An empty iterable gives ``""`` (which is not a valid set: do not send a command for it).
    ValueError for a UID outside 1..2**32-1.
    """
    ordered = sorted(set(uids))
    if not ordered:
        return ""
    if ordered[0] < 1 or ordered[-1] > _MAX_NUMBER:
        bad = ordered[0] if ordered[0] < 1 else ordered[-1]
        raise ValueError(f"UID {bad} is outside 1..{_MAX_NUMBER}")
    parts = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid != prev + 1:
            parts.append(f"{start}:{prev}" if prev != start else str(start))
            start = uid
        prev = uid
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


def parse_uid_set(text: str | bytes) -> list[tuple[int, int]]:
    """A sequence set as sent by a server (VANISHED, COPYUID, APPENDUID, MODIFIED) to inclusive ranges.

    ``"1:3,7,12:10"`` -> ``[(1, 3), (7, 7), (10, 12)]`` in the order sent. ``*`` is not allowed (servers
    send numbers). ProtocolError on anything else.
    """
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    out = []
    try:
        for part in raw.split(b","):
            a, sep, b = part.partition(b":")
            lo = _number(a, 1, _MAX_NUMBER, "UID")
            hi = _number(b, 1, _MAX_NUMBER, "UID") if sep else lo
            out.append((lo, hi) if lo <= hi else (hi, lo))
    except ProtocolError as exc:
        raise ProtocolError(f"expected a UID set like '1:3,7,9:12', got {_q(raw)} ({exc.message})") from None
    return out
