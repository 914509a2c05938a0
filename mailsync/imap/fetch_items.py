"""FETCH responses: the items mailsync reads (UID, FLAGS, INTERNALDATE, RFC822.SIZE, BODY[], the
header fields or the whole header section (BODY[HEADER]), MODSEQ, and Gmail's X-GM-MSGID, X-GM-THRID and X-GM-LABELS) into a FetchItem, by the general token parser and by the fast paths of the
usual flat shape (a property test holds them to the same results).

Owns: the FETCH grammar. Must not: do I/O; the parser (responses.py) hands each FETCH here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailsync.errors import ProtocolError
from mailsync.imap.events import MAX_LITERAL, _MAX_NUMBER, _MAX_NUMBER64
from mailsync.imap.lexer import _ATOM_T, _CLASS, _CLOSE_T, _LIT, _LIT_T, _QUOTED_T, _UNESCAPE, _number, _q, _skip, _tokens, _unquote

from mailsync.imap.events import FetchItem
from mailsync.imap.values import _DATE_TIME, _QUOTED_DATE_TIME


# -- FETCH items -------------------------------------------------------------------------------
# Which FetchItem field an item fills; the index is the field's position after `seq`.
(_F_UID, _F_FLAGS, _F_DATE, _F_SIZE, _F_BODY, _F_HEADERS, _F_MODSEQ, _F_GM_MSGID, _F_GM_THRID, _F_GM_LABELS,
 _F_SKIP) = range(11)
_FIELD_NAMES = ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "BODY[]", "BODY[HEADER.FIELDS]", "MODSEQ",
                "X-GM-MSGID", "X-GM-THRID", "X-GM-LABELS")
_NFIELDS = len(_FIELD_NAMES)
_MAX_GM_ID = (1 << 64) - 1  # Gmail's ids are unsigned 64-bit numbers

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
    b"X-GM-MSGID": _F_GM_MSGID,
    b"X-GM-THRID": _F_GM_THRID,
    b"X-GM-LABELS": _F_GM_LABELS,
}
_SECTIONS: dict[bytes, int] = {}  # section item names seen, e.g. b"BODY[HEADER.FIELDS (MESSAGE-ID)]"
_SECTIONS_MAX = 256  # item names are server-controlled: bound what we remember
_PARTIAL = re.compile(rb"<[0-9]{1,20}+>")

_SYSTEM_FLAGS = {
    f.lower().encode(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent")
}

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
            elif base == b"BODY" and not partial and (section == b"HEADER" or (
                section.startswith(b"HEADER.FIELDS") and section[13:14] in (b" ", b"("))
            ):
                field = _F_HEADERS
    if len(_SECTIONS) < _SECTIONS_MAX:
        _SECTIONS[key] = field
    return field


def _parse_fetch(seq: int, text: bytes, lits: Sequence[bytes], pos: int) -> FetchItem:
    """The general FETCH parser: `text` is the response's lines joined by _LIT, from `pos` on.

    Checks are inlined (this runs for every message); the helpers run only to word an error.
    """
    vals: list = [None] * _NFIELDS  # uid, flags, internaldate, size, body, header_fields, modseq, gm_*
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
            elif field == _F_GM_MSGID or field == _F_GM_THRID:
                value = _number(tok, 1, _MAX_GM_ID, _FIELD_NAMES[field])
            elif field == _F_GM_LABELS:
                if tok != b"(":
                    raise ProtocolError(f"expected '(' after X-GM-LABELS, got {_q(tok)}")
                labels = []
                tok = toks[i]
                while tok != b")":
                    cls = classes[tok[0]]
                    if cls == _ATOM_T:
                        labels.append(_flag(tok))
                    elif cls == _QUOTED_T:
                        labels.append(_label(_unquote(tok)))
                    elif cls == _LIT_T:
                        labels.append(_label(bytes(lits[li])))
                        li += 1
                    else:
                        raise ProtocolError(f"expected a label in X-GM-LABELS, got {_q(tok)}")
                    i += 1
                    tok = toks[i]
                i += 1
                value = tuple(labels)
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
    vals: list = [None] * _NFIELDS
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
        elif field == _F_GM_MSGID or field == _F_GM_THRID:
            if not num or len(num) > 20 or not 0 < (value := int(num)) <= _MAX_GM_ID:
                return None
        elif field == _F_GM_LABELS:
            if not lst or not lst.isascii():  # quoted labels, literals: the general parser reads them
                return None
            value = tuple(lst[1:-1].decode("ascii").split())
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


# A line of a UID/FLAGS listing (UID FETCH 1:* (UID FLAGS)), as servers without CONDSTORE are
# compared in full on every sync (rule D5): one pattern for the whole response.
_FLAGS_LINE = re.compile(rb'\* ([0-9]{1,10}) FETCH \(UID ([0-9]{1,10}) FLAGS (\([^\x00-\x1f\x7f()"{\[\]]*\))\)\r\n')


def flags_listing_item(line: bytes) -> FetchItem | None:
    """The FetchItem of ``* n FETCH (UID u FLAGS (...))`` read whole, as the general parser would
    read it; None for anything else (then the parser decides)."""
    m = _FLAGS_LINE.fullmatch(line)
    if m is None:
        return None
    seq_b, uid_b, lst = m.groups()
    seq, uid = int(seq_b), int(uid_b)
    flags = _FLAG_LISTS.get(lst)
    if flags is None:  # (not `or`: the empty list, most common of all, is falsy)
        flags = _flag_list(lst)
    if not (0 < seq <= _MAX_NUMBER and 0 < uid <= _MAX_NUMBER) or flags is None:
        return None
    return FetchItem(seq, uid, flags, None, None, None, None, None)


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
    return FetchItem(seq, item.uid, item.flags, item.internaldate, item.size, body, None, item.modseq,
                     item.gm_msgid, item.gm_thrid, item.gm_labels)


def _flag_list(lst: bytes) -> tuple[str, ...] | None:
    """A flat FLAGS list, parentheses included, as the tuple FetchItem holds; None if not ASCII."""
    if not lst or not lst.isascii():
        return None
    sysflags = _SYSTEM_FLAGS
    value = tuple([sysflags.get(f.lower()) or f.decode("ascii") for f in lst[1:-1].split(b" ") if f])
    if len(_FLAG_LISTS) < _FLAG_LISTS_MAX:
        _FLAG_LISTS[lst] = value
    return value


def _label(raw: bytes) -> str:
    """A Gmail label sent as a string: UTF-8 (Gmail sends non-ASCII labels so, or in modified
    UTF-7, which is ASCII and kept as sent)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"label is not UTF-8: {_q(raw)}") from None


def _flag(tok: bytes) -> str:
    if tok.isascii():
        return tok.decode("ascii")
    try:
        return tok.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"flag is neither ASCII nor UTF-8: {_q(tok)}") from None
