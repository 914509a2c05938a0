"""Maildir naming and flags: pure functions from (message, flags, folder) to names and back.

Owns: the unique part of a file name (``{time}.{sha256}_{n}.mailsync,S={size}``, so that a rerun or a
mirror can tell which message a file holds without reading it), the ``:2,`` info letters (D F P R S T
for \\Draft, \\Flagged, $Forwarded, \\Answered, \\Seen, \\Deleted; a-z for keywords through Dovecot's
``dovecot-keywords`` file), which of new/ and cur/ a message goes to, and the folder paths of the
layouts maildir++ (``.A.B``, INBOX at the root) and fs (``A/B``), with the escapes that keep any IMAP
folder name a valid, unambiguous path (Dovecot's listescape form ``\\2e``), in UTF-8.

Must not: touch the file system, the store, the clock or the network (see writer.py for the I/O).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

LAYOUTS = ("maildir++", "fs")

#: IMAP flag (lower case) -> Maildir info letter, for the flags the Maildir spec names.
FLAG_LETTERS: dict[str, str] = {
    "\\draft": "D",
    "\\flagged": "F",
    "$forwarded": "P",
    "\\answered": "R",
    "\\seen": "S",
    "\\deleted": "T",
}
#: letter -> the IMAP flag as mailsync writes it.
LETTER_FLAGS: dict[str, str] = {"D": "\\Draft", "F": "\\Flagged", "P": "$Forwarded", "R": "\\Answered",
                                "S": "\\Seen", "T": "\\Deleted"}
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"  # Dovecot: keyword number n -> letter a + n
KEYWORDS_FILE = "dovecot-keywords"
IGNORED_FLAGS = frozenset({"\\recent"})  # session-only: never written to a file

_UNIQUE = re.compile(r"^(\d+)\.([0-9a-f]{64})_(\d+)\.mailsync(?:,[^:]*)?$")


# --- file names -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FileKey:
    """What a mailsync-written name says about its file: the message's SHA-256 and which copy of it
    (n = 0 for the first copy of that message in the folder, 1 for a second, ...)."""

    sha256: str
    n: int


def unique_name(sha256: str, n: int, when: int, size: int) -> str:
    """The unique part of a file name (without the ``:2,`` info): the INTERNALDATE in seconds,
    the message's SHA-256 and copy number, and its size (``,S=``, which Dovecot reads)."""
    return f"{int(when)}.{sha256}_{n}.mailsync,S={size}"


def split_name(filename: str) -> tuple[str, str | None]:
    """(unique part, info or None): ``"u:2,FS"`` -> ``("u", "2,FS")``; ``"u"`` -> ``("u", None)``."""
    unique, sep, info = filename.partition(":")
    return unique, (info if sep else None)


def file_key(filename: str) -> FileKey | None:
    """The FileKey of a name that unique_name made (with or without info), else None."""
    m = _UNIQUE.match(split_name(filename)[0])
    return FileKey(m.group(2), int(m.group(3))) if m else None


def file_name(unique: str, info: str | None) -> str:
    return unique if info is None else f"{unique}:{info}"


def subdir_for(flags: Iterable[str]) -> str:
    """new/ for a message without any flag (a name without info), cur/ for the rest: every reader
    takes the info of a file in cur/, not all of them of one in new/."""
    return "cur" if any(f.lower() not in IGNORED_FLAGS for f in flags) else "new"


# --- flags <-> info letters -------------------------------------------------------------------

def is_keyword(flag: str) -> bool:
    """A flag with a letter of its own among D F P R S T is not a keyword, nor a system flag."""
    return not flag.startswith("\\") and flag.lower() not in FLAG_LETTERS


def keywords_of(flags: Iterable[str]) -> list[str]:
    return [f for f in flags if is_keyword(f)]


def flags_to_info(flags: Iterable[str], keyword_letters: Mapping[str, str]) -> str | None:
    """The ``2,LETTERS`` info for these flags (letters in ASCII order, as the spec wants), or None
    for a message without flags (a file in new/). ``keyword_letters``: keyword -> a-z (KeywordTable);
    a keyword without a letter is left out (see KeywordTable.add for the 26-keyword limit), as are
    system flags without a letter (\\Recent)."""
    letters = set()
    any_flag = False
    for f in flags:
        low = f.lower()
        if low in IGNORED_FLAGS:
            continue
        any_flag = True
        if low in FLAG_LETTERS:
            letters.add(FLAG_LETTERS[low])
        elif f in keyword_letters:
            letters.add(keyword_letters[f])
    if not any_flag:
        return None
    return "2," + "".join(sorted(letters))


def info_to_flags(info: str | None, letter_keywords: Mapping[str, str]) -> set[str]:
    """The IMAP flags an info part stands for. Unknown letters (another program's experimental
    ones) and info other than ``2,...`` give no flags."""
    if not info or not info.startswith("2,"):
        return set()
    out = set()
    for c in info[2:]:
        if c in LETTER_FLAGS:
            out.add(LETTER_FLAGS[c])
        elif c in letter_keywords:
            out.add(letter_keywords[c])
    return out


class KeywordTable:
    """Dovecot's ``dovecot-keywords`` of one Maildir folder: keyword number n is letter a + n.

    Existing numbers are never changed (files already named with them keep their meaning); a new
    keyword takes the lowest free number. Only 26 fit: ``add`` returns False past that, and such a
    keyword is not in the file names (the caller reports it)."""

    def __init__(self, by_number: Mapping[int, str] | None = None) -> None:
        self._by_number: dict[int, str] = dict(by_number or {})

    @classmethod
    def parse(cls, text: str) -> KeywordTable:
        """The file's lines are ``NUMBER KEYWORD``; lines that are not are skipped, as Dovecot does."""
        table: dict[int, str] = {}
        for line in text.splitlines():
            num, _, name = line.strip().partition(" ")
            if num.isdigit() and name and int(num) < len(KEYWORD_LETTERS) and name not in table.values():
                table[int(num)] = name
        return cls(table)

    def render(self) -> str:
        return "".join(f"{n} {name}\n" for n, name in sorted(self._by_number.items()))

    def add(self, keyword: str) -> bool:
        """Give ``keyword`` a number if it has none; False when all 26 are taken."""
        if keyword in self.letters():
            return True
        for n in range(len(KEYWORD_LETTERS)):
            if n not in self._by_number:
                self._by_number[n] = keyword
                return True
        return False

    def letters(self) -> dict[str, str]:
        """keyword -> letter."""
        return {name: KEYWORD_LETTERS[n] for n, name in self._by_number.items()}

    def keywords(self) -> dict[str, str]:
        """letter -> keyword."""
        return {KEYWORD_LETTERS[n]: name for n, name in self._by_number.items()}


# --- folder paths -----------------------------------------------------------------------------

_ESCAPE = "\\"
_RESERVED_FS = ("cur", "new", "tmp")  # a child folder of these names would land in a Maildir's own subdirectory


def _escape(component: str, special: str) -> str:
    """Dovecot listescape: each character of ``special``, the escape character itself, and a leading
    '.' (a hidden file, '.' or '..') as backslash + two hex digits."""
    out = []
    for i, c in enumerate(component):
        if c == _ESCAPE or c in special or c == "\0" or (i == 0 and c == "."):
            out.append(f"{_ESCAPE}{ord(c):02x}")
        else:
            out.append(c)
    return "".join(out)


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


def folder_parts(name: str, delimiter: str | None) -> list[str]:
    """An IMAP folder name split at its hierarchy delimiter (one part when there is none)."""
    return name.split(delimiter) if delimiter else [name]


def folder_path(parts: Sequence[str], layout: str) -> str:
    """The folder's directory, relative to the Maildir root: maildir++ ``.A.B`` with INBOX the root
    itself (``""``) and its children ``.INBOX.X``; fs ``A/B`` (INBOX is ``INBOX``). Any name maps to
    exactly one path and back (path_folder)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown Maildir layout {layout!r}")
    if layout == "maildir++":
        if list(parts) == ["INBOX"]:
            return ""
        return "." + ".".join(_escape(p, "./") for p in parts)
    escaped = []
    for p in parts:
        e = _escape(p, "/")
        if e in _RESERVED_FS:
            e = f"{_ESCAPE}{ord(e[0]):02x}{e[1:]}"
        escaped.append(e)
    return "/".join(escaped)


def path_folder(path: str, layout: str) -> list[str]:
    """The folder parts of a directory folder_path made."""
    if layout == "maildir++":
        if path == "":
            return ["INBOX"]
        if not path.startswith("."):
            raise ValueError(f"{path!r} is not a maildir++ folder (it does not start with '.')")
        return [_unescape(p) for p in path[1:].split(".")]
    return [_unescape(p) for p in path.split("/")]
