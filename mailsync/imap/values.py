"""IMAP values the commands and answers carry outside the response grammar: response codes,
INTERNALDATE, quoted strings, UID sets.

Owns: parse_response_code, parse_internaldate, quote, format_uid_set, parse_uid_set. Must not: do I/O.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable

from mailsync.errors import ProtocolError
from mailsync.imap.events import _MAX_NUMBER
from mailsync.imap.lexer import _number, _q


_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_QUOTED_DATE_TIME = re.compile(  # the usual shape of an INTERNALDATE token, quotes included
    rb'"(?: ?[0-9]{1,2})-[A-Za-z]{3}-[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}"'
)
_DATE_TIME = re.compile(
    r"(?: ?([0-9]{1,2}))-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})",
    re.ASCII,
)


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
