"""Server-chosen text on its way to a terminal: folder names, reasons and errors quoting them.

Owns: escaping what a terminal would act on. Must not: change what machine-readable output
(--json, export) carries; that keeps the exact strings.
"""

from __future__ import annotations

import unicodedata


def terminal_text(s: str) -> str:
    """``s`` with every character a terminal would act on written as an escape: C0 controls but TAB
    (ESC starts colour and title sequences, NUL, BEL), DEL, C1 controls (U+009B is a one-byte CSI)
    and Unicode format characters (U+202E turns the rest of the line around)."""
    if s.isprintable():
        return s
    out = []
    for c in s:
        o = ord(c)
        if c == "\t" or (c.isprintable() and unicodedata.category(c) != "Cf") or c == " ":
            out.append(c)
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        else:
            out.append(f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return "".join(out)


def terminal_lines(text: str) -> str:
    """terminal_text of each line of ``text`` (its line breaks kept)."""
    return "\n".join(terminal_text(line) for line in text.split("\n"))
