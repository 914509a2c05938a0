"""The shape checks of untagged responses other than FETCH (STATUS, LIST, SEARCH, VANISHED, ...):
what the parser refuses before an event is emitted.

Owns: those checks. Must not: interpret the payloads (payloads.py does) or do I/O.
"""

from __future__ import annotations


from mailsync.errors import ProtocolError
from mailsync.imap.events import _MAX_NUMBER, _MAX_NUMBER64, Untagged
from mailsync.imap.lexer import _ATOM_T, _CLASS, _LIST_USUAL, _STATUS_USUAL, _number, _q, _tokens
from mailsync.imap.values import parse_response_code, parse_uid_set



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


def usual_listing_event(line: bytes) -> Untagged | None:
    """A LIST-STATUS answer's line of the usual shape (lexer._LIST_USUAL, _STATUS_USUAL) as the event
    the parser would make of it, without the parser (16 folders, 32 lines, in every sync of a watch
    daemon); None for any other line, or one cut short (then the parser reads it, and says so)."""
    if not line.endswith(b"\n"):
        return None
    if line.startswith(b"* LIST ") and _LIST_USUAL.fullmatch(line) is not None:
        return Untagged("LIST", None, line)
    if line.startswith(b"* STATUS ") and _STATUS_USUAL.fullmatch(line) is not None:
        return Untagged("STATUS", None, line)
    return None


def _usual_or_balanced(usual):
    """The check of a kind whose usual lines a pattern reads whole (lexer._LIST_USUAL, _STATUS_USUAL):
    a line of that shape is balanced by construction; any other goes through _balanced."""
    def check(name: str, texts: list[bytes], pos: int) -> None:
        if len(texts) == 1 and usual.fullmatch(texts[0]) is not None:
            return
        _balanced(name, texts, pos)

    return check


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
    b"LIST": (None, _usual_or_balanced(_LIST_USUAL)),
    b"LSUB": (None, _check_balanced),
    b"XLIST": (None, _check_balanced),
    b"STATUS": (None, _usual_or_balanced(_STATUS_USUAL)),
    b"NAMESPACE": (None, _check_balanced),
    b"ID": (None, _check_balanced),
    b"QUOTA": (None, _check_balanced),
    b"QUOTAROOT": (None, _check_balanced),
    b"METADATA": (None, _check_balanced),
    b"THREAD": (None, _check_balanced),
}
