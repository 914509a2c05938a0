"""Parsers for the payloads of untagged responses and response codes the sync uses: LIST (with
RETURN STATUS), STATUS, SEARCH and ESEARCH, VANISHED, and the APPENDUID / COPYUID / MODIFIED codes.

Owns: turning `Untagged.raw` / `Tagged.code` text into typed values. Pure: no I/O. Malformed
input raises ProtocolError naming what was expected, never anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailsync.errors import ProtocolError
from mailsync.imap.lexer import _LIST_USUAL, _STATUS_USUAL
from mailsync.imap.responses import parse_uid_set


def _q(data: bytes) -> str:
    return repr(data[:80]) + ("..." if len(data) > 80 else "")


def tokenize(raw: bytes) -> list:
    """Tokens of one logical response: bytes for atoms/strings/literals, '(' and ')' as str, None for NIL.

    Quoted strings and literals come back as bytes with a leading marker-free value; atoms as bytes.
    To tell them apart where it matters (NIL vs "NIL"), strings are wrapped in a 1-tuple.
    """
    out: list = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c in b" \r\n":
            i += 1
        elif c == 0x28:  # (
            out.append("(")
            i += 1
        elif c == 0x29:  # )
            out.append(")")
            i += 1
        elif c == 0x22:  # quoted string
            j = i + 1
            buf = bytearray()
            while j < n and raw[j] != 0x22:
                if raw[j] == 0x5C and j + 1 < n:
                    j += 1
                buf.append(raw[j])
                j += 1
            if j >= n:
                raise ProtocolError(f"unterminated quoted string in {_q(raw)}")
            out.append((bytes(buf),))
            i = j + 1
        elif c == 0x7B:  # {n}\r\n literal
            end = raw.find(b"}", i)
            if end < 0:
                raise ProtocolError(f"bad literal in {_q(raw)}")
            size_text = raw[i + 1:end].rstrip(b"+")
            if not size_text.isdigit():
                raise ProtocolError(f"bad literal size in {_q(raw)}")
            start = end + 1
            if raw[start:start + 2] == b"\r\n":
                start += 2
            elif raw[start:start + 1] == b"\n":
                start += 1
            size = int(size_text)
            if start + size > n:
                raise ProtocolError(f"literal runs past the response in {_q(raw)}")
            out.append((raw[start:start + size],))
            i = start + size
        else:
            j = i
            depth = 0
            while j < n and raw[j] not in b" \r\n)" or (depth and j < n and raw[j] == 0x5D):
                if raw[j] == 0x5B:
                    depth += 1
                elif raw[j] == 0x5D:
                    depth -= 1
                j += 1
            atom = raw[i:j]
            out.append(None if atom.upper() == b"NIL" else atom)
            i = j
    return out


def _text(tok) -> bytes:
    if isinstance(tok, tuple):
        return tok[0]
    if isinstance(tok, bytes):
        return tok
    raise ProtocolError(f"expected a string, got {tok!r}")


def _skip_head(toks: list, kind: bytes) -> list:
    # toks: ['*', KIND, ...]
    if len(toks) < 2 or toks[0] != b"*" or not isinstance(toks[1], bytes) or toks[1].upper() != kind:
        raise ProtocolError(f"expected an untagged {kind.decode()} response, got {toks[:3]!r}")
    return toks[2:]


def _plist(toks: list, i: int) -> tuple[list, int]:
    """A parenthesised list at toks[i] (nested lists as Python lists); returns (items, next index)."""
    if i >= len(toks) or toks[i] != "(":
        raise ProtocolError(f"expected '(' at token {i}, got {toks[i:i + 1]!r}")
    stack: list[list] = [[]]
    i += 1
    while i < len(toks):
        t = toks[i]
        if t == "(":
            stack.append([])
        elif t == ")":
            done = stack.pop()
            if not stack:
                return done, i + 1
            stack[-1].append(done)
        else:
            stack[-1].append(t)
        i += 1
    raise ProtocolError("unbalanced parentheses")


@dataclass(frozen=True, slots=True)
class ListEntry:
    flags: tuple[str, ...]
    delimiter: str | None
    raw_name: str  # modified UTF-7, as on the wire


def parse_list(raw: bytes) -> ListEntry:
    """``* LIST (\\HasNoChildren \\Sent) "/" "Sent"``."""
    m = _LIST_USUAL.fullmatch(raw)
    if m is not None and m[4] != b"NIL":  # an unquoted NIL name is no name: the tokenizer says so
        name = m[3] if m[3] is not None else m[4]
        try:
            raw_name = name.decode("ascii")
        except UnicodeDecodeError:
            raw_name = name.decode("utf-8", "replace")
        return ListEntry(tuple((m[1] or b"").decode("ascii").split()), None if m[2] is None else m[2].decode("ascii"),
                         raw_name)
    return parse_list_tokens(raw)


def parse_list_tokens(raw: bytes) -> ListEntry:
    """parse_list through the tokenizer: every shape the grammar allows."""
    toks = _skip_head(tokenize(raw), b"LIST")
    flags, i = _plist(toks, 0)
    if i + 1 >= len(toks) + 1 or i >= len(toks):
        raise ProtocolError(f"LIST without a delimiter and name: {_q(raw)}")
    delim_tok = toks[i]
    delimiter = None if delim_tok is None else _text(delim_tok).decode("ascii", "replace")
    if i + 1 >= len(toks):
        raise ProtocolError(f"LIST without a mailbox name: {_q(raw)}")
    name = _text(toks[i + 1])
    try:
        raw_name = name.decode("ascii")
    except UnicodeDecodeError:  # UTF8=ACCEPT servers; keep it usable
        raw_name = name.decode("utf-8", "replace")
    return ListEntry(tuple(_text(f).decode("ascii", "replace") for f in flags), delimiter, raw_name)


def parse_status(raw: bytes) -> tuple[str, dict[str, int]]:
    """``* STATUS "INBOX" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 1 HIGHESTMODSEQ 9)`` -> (name, {...})."""
    name, values, _ = parse_status_reply(raw)
    return name, values


def parse_status_reply(raw: bytes) -> tuple[str, dict[str, int], str | None]:
    """(name, numeric items, MAILBOXID or None) of a STATUS response; MAILBOXID (RFC 8474) is the
    one item whose value is a parenthesised id: ``MAILBOXID (F2212ea87)``."""
    m = _STATUS_USUAL.fullmatch(raw)
    if m is not None and m[2] != b"NIL":
        words = m[3].split()
        name = m[1] if m[1] is not None else m[2]
        return (name.decode("ascii", "replace"),
                {k.decode("ascii"): int(v) for k, v in zip(words[::2], words[1::2])}, None)
    return parse_status_tokens(raw)


def parse_status_tokens(raw: bytes) -> tuple[str, dict[str, int], str | None]:
    """parse_status_reply through the tokenizer: every shape the grammar allows."""
    toks = _skip_head(tokenize(raw), b"STATUS")
    if not toks:
        raise ProtocolError(f"STATUS without a mailbox: {_q(raw)}")
    name = _text(toks[0]).decode("ascii", "replace")
    items, _ = _plist(toks, 1)
    if len(items) % 2:
        raise ProtocolError(f"STATUS items not in pairs: {_q(raw)}")
    out = {}
    mailboxid = None
    for k, v in zip(items[::2], items[1::2]):
        key = _text(k).decode("ascii", "replace").upper()
        if key == "MAILBOXID":
            mailboxid = parse_objectid(v, raw)
            continue
        val = _text(v)
        if not val.isdigit():
            raise ProtocolError(f"STATUS {key} is not a number: {_q(raw)}")
        out[key] = int(val)
    return name, out, mailboxid


def parse_objectid(value, raw: bytes = b"") -> str:
    """An RFC 8474 objectid: ``(F2212ea87)`` as a list of one atom, or the atom itself; 1-255 of
    ALPHA / DIGIT / "_" / "-"."""
    if isinstance(value, list):
        if len(value) != 1:
            raise ProtocolError(f"an object id must be one atom in parentheses: {_q(raw)}")
        value = value[0]
    text = _text(value).decode("ascii", "replace")
    if not (1 <= len(text) <= 255) or not all(c.isalnum() or c in "_-" for c in text):
        raise ProtocolError(f"not a valid object id {text[:40]!r}: {_q(raw)}")
    return text


# A UID set from a server is expanded to its UIDs only up to this many (a folder holds far fewer): a
# larger one ("1:4294967295") is refused rather than filling memory. QRESYNC's VANISHED (EARLIER),
# which may name UIDs that never existed, is counted first (set_size) and handled without expanding.
MAX_EXPANDED = 1 << 22


def set_size(ranges: list[tuple[int, int]]) -> int:
    """How many UIDs the ranges of a UID set name, without listing them."""
    return sum(hi - lo + 1 for lo, hi in ranges)


def expand(ranges: list[tuple[int, int]], limit: int = MAX_EXPANDED) -> list[int]:
    n = set_size(ranges)
    if n > limit:
        raise ProtocolError(f"a UID set of {n} UIDs ({ranges[0][0]}:{ranges[-1][1]}...), more than the {limit} a "
                            f"folder could hold; refused")
    out: list[int] = []
    for lo, hi in ranges:
        out.extend(range(lo, hi + 1))
    return out


def parse_search(raw: bytes) -> list[int]:
    """``* SEARCH 2 5 9`` (optionally ``(MODSEQ n)`` at the end) -> [2, 5, 9]."""
    toks = _skip_head(tokenize(raw), b"SEARCH")
    out = []
    for t in toks:
        if t == "(":
            break
        if not isinstance(t, bytes) or not t.isdigit():
            raise ProtocolError(f"SEARCH result is not a number: {t!r}")
        out.append(int(t))
    return out


def parse_esearch(raw: bytes) -> dict[str, object]:
    """``* ESEARCH (TAG "A1") UID ALL 1:3,5 COUNT 4`` -> {"UID": True, "ALL": [1,2,3,5], "COUNT": 4}."""
    toks = _skip_head(tokenize(raw), b"ESEARCH")
    out: dict[str, object] = {}
    i = 0
    if toks and toks[0] == "(":
        _, i = _plist(toks, 0)
    while i < len(toks):
        key = _text(toks[i]).decode("ascii", "replace").upper()
        if key == "UID":
            out["UID"] = True
            i += 1
            continue
        if i + 1 >= len(toks):
            raise ProtocolError(f"ESEARCH {key} without a value: {_q(raw)}")
        val = _text(toks[i + 1])
        out[key] = expand(parse_uid_set(val)) if key == "ALL" else int(val) if val.isdigit() else val
        i += 2
    out.setdefault("ALL", [])
    return out


def parse_vanished(raw: bytes) -> tuple[bool, list[int]]:
    """``* VANISHED (EARLIER) 1:3,7`` -> (True, [1, 2, 3, 7])."""
    earlier, ranges = vanished_ranges(raw)
    return earlier, expand(ranges)


def vanished_ranges(raw: bytes) -> tuple[bool, list[tuple[int, int]]]:
    """``* VANISHED (EARLIER) 1:3,7`` -> (True, [(1, 3), (7, 7)]): the set as ranges, not expanded."""
    toks = _skip_head(tokenize(raw), b"VANISHED")
    earlier = False
    if toks and toks[0] == "(":
        items, i = _plist(toks, 0)
        earlier = any(_text(x).upper() == b"EARLIER" for x in items)
        toks = toks[i:]
    if len(toks) != 1:
        raise ProtocolError(f"VANISHED without one UID set: {_q(raw)}")
    return earlier, parse_uid_set(_text(toks[0]))


def code_args(code: str | None, name: str) -> list[str] | None:
    """The arguments of response code `name` in `code` ("APPENDUID 38505 3955" -> ["38505", "3955"])."""
    if not code:
        return None
    parts = code.split()
    if not parts or parts[0].upper() != name:
        return None
    return parts[1:]


def appenduid(code: str | None) -> tuple[int, int] | None:
    """[APPENDUID uidvalidity uid] -> (uidvalidity, uid)."""
    args = code_args(code, "APPENDUID")
    if not args or len(args) != 2 or not all(a.isdigit() for a in args):
        return None
    return int(args[0]), int(args[1])


def appenduids(code: str | None) -> tuple[int, list[int]] | None:
    """[APPENDUID uidvalidity uid-set] of a MULTIAPPEND (RFC 3502, RFC 4315) -> (uidvalidity, [uid...])
    in the order the messages were appended."""
    args = code_args(code, "APPENDUID")
    if not args or len(args) != 2 or not args[0].isdigit():
        return None
    return int(args[0]), expand(parse_uid_set(args[1]))


def copyuid(code: str | None) -> tuple[int, list[int], list[int]] | None:
    """[COPYUID uidvalidity src-set dst-set] -> (uidvalidity, [src...], [dst...]) in matching order."""
    args = code_args(code, "COPYUID")
    if not args or len(args) != 3 or not args[0].isdigit():
        return None
    src, dst = expand(parse_uid_set(args[1])), expand(parse_uid_set(args[2]))
    if len(src) != len(dst):
        raise ProtocolError(f"COPYUID with {len(src)} source and {len(dst)} destination UIDs: {code!r}")
    return int(args[0]), src, dst


def modified(code: str | None) -> list[int]:
    """[MODIFIED set] -> the UIDs that were not stored."""
    args = code_args(code, "MODIFIED")
    if not args:
        return []
    return expand(parse_uid_set(args[0]))
