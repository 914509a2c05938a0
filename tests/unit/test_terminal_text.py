"""mailsync.cli.safe: what a server names reaches a terminal escaped, and nothing else changes."""

import pytest

from mailsync.cli.safe import terminal_lines, terminal_text


@pytest.mark.parametrize("raw, shown", [
    ("INBOX", "INBOX"),
    ("Archive [/2019]", "Archive [/2019]"),  # markup is rich's business (escaped there), not a control
    ("Entwürfe", "Entwürfe"),
    ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),
    ("a\x9b31mb", "a\\x9b31mb"),  # a one-byte CSI
    ("rtl\u202eevil", "rtl\\u202eevil"),
    ("nul\x00", "nul\\x00"),
    ("tab\there", "tab\there"),
    ("del\x7f", "del\\x7f"),
    ("zw\u200bsp", "zw\\u200bsp"),
])
def test_terminal_text(raw, shown):
    assert terminal_text(raw) == shown


def test_terminal_lines_keeps_line_breaks():
    assert terminal_lines("a\x1b[2J\nb") == "a\\x1b[2J\nb"
