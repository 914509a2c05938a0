"""The IMAP response parser: bytes in, events out.

Owns: the grammar of server responses (RFC 3501 / 9051 and the extensions the sync uses: UIDPLUS,
CONDSTORE, QRESYNC, BINARY): here the framing of responses (lines, literals, tags) and the parser;
its parts in events.py (the event types and limits), lexer.py (tokens), fetch_items.py (FETCH),
untagged_checks.py (the other untagged responses) and values.py (``quote``, ``format_uid_set``,
``parse_uid_set``, ``parse_internaldate``, ``parse_response_code``). This module is their public
face: importers take them from here.
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

from collections.abc import Sequence

from mailsync.errors import ProtocolError
from mailsync.imap.events import (_MAX_NUMBER, MAX_LINE, MAX_LITERAL, Continuation, Event, FetchItem,  # noqa: F401
                                  Tagged, Untagged)
from mailsync.imap.fetch_items import (_fetch_simple, _parse_fetch, body_fetch_head, body_fetch_item,  # noqa: F401
                                       flags_listing_item, usual_body_fetch)
from mailsync.imap.lexer import _FETCH_HEAD, _TAGGED_HEAD, _UNTAGGED_HEAD, _name, _q
from mailsync.imap.untagged_checks import _check_untagged
from mailsync.imap.values import (format_uid_set, parse_internaldate, parse_response_code,  # noqa: F401
                                  parse_uid_set, quote)

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
