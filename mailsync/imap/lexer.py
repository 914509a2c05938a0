"""The tokens of IMAP responses: the compiled, possessive regexes that split a response's lines into
atoms, quoted strings, parentheses and literal markers, and the small readers of single tokens.

Owns: the token grammar and how an offending piece of input is quoted in an error. Must not: know
which response it reads (responses.py, fetch_items.py and untagged_checks.py do) or do I/O.
"""

from __future__ import annotations

import re

from mailsync.errors import ProtocolError



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

def _q(data: bytes | bytearray | memoryview | str) -> str:
    """Quote (part of) offending input for an error message: repr'd, at most 80 bytes."""
    if len(data) > 80:
        return repr(data[:80]) + "..."
    return repr(bytes(data) if isinstance(data, (bytearray, memoryview)) else data)


# -- token readers --------------------------------------------------------------------------


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


# Heads of responses.
_FETCH_HEAD = re.compile(rb"\*[ ]++([0-9]{1,10}+)[ ]++(?i:FETCH)(?![^ (])[ ]*+(\()?+")  # the hot path
_UNTAGGED_HEAD = re.compile(rb"\*[ ]++(?:([0-9]++)[ ]++)?+([A-Za-z][A-Za-z0-9._-]*+)")
_TAGGED_HEAD = re.compile(rb'([^\x00-\x20\x7f(){%*"\\+]++)[ ]++([A-Za-z]++)(?:[ ](.*+))?+', re.S)


# The usual shapes of a LIST-STATUS answer's lines, checked (untagged_checks) and read (payloads)
# without the tokenizer (a watch daemon's delta sync reads one listing per sync; 16 folders took
# 1.1 ms through it, 0.4 ms so): flags that are atoms, a quoted one-character delimiter that needs no
# escape (or NIL), a quoted name without escapes or an atom name (quoted strings hold what the
# tokenizer's _QUOTED holds: no NUL, CR or LF); STATUS items that are all numbers. Anything else (literals, escapes,
# MAILBOXID's parenthesised value, lower case) goes through the tokenizer, as before.
_FLAG = rb"\\?[A-Za-z0-9_$-]+"
_ITEM = rb"[A-Z][A-Z0-9-]* [0-9]+"
# each repetition starts with a separator no atom holds, so a line that does not match fails in
# linear time (a pattern like (?:atom ?)* backtracks exponentially over a long flag list)
_LIST_USUAL = re.compile(rb'\* LIST \((' + _FLAG + rb'(?: ' + _FLAG + rb')*)?\) (?:"([^"\\\r\n\x00])"|NIL) '
                         rb'(?:"([^"\\\r\n\x00]*)"|([A-Za-z0-9_.&+,/:~$-]+))\r?\n?')
_STATUS_USUAL = re.compile(rb'\* STATUS (?:"([^"\\\r\n\x00]*)"|([A-Za-z0-9_.&+,/:~$-]+)) '
                           rb'\(((?:' + _ITEM + rb'(?: ' + _ITEM + rb')*)?)\)\r?\n?')
