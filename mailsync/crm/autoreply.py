"""RFC 3834 auto-reply detection: out-of-office and vacation answers, and their kin.

Owns: the header rules that say "a machine answered for a person": ``Auto-Submitted: auto-replied``
(RFC 3834), ``X-Autoreply``, ``X-Autorespond``, ``X-Auto-Reply``, ``Precedence`` /
``X-Precedence: auto_reply``, and Microsoft's ``X-MS-Exchange-Inbox-Rules-Loop`` /
``X-Autoreply-From``. An auto-reply is kept as a signal and never creates a contact.
``Auto-Submitted: auto-generated`` (notifications) is bulk mail, not an auto-reply (see junk.py).
Must not: touch the store, the network or the clock; look at bodies or subjects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["is_auto_reply"]

_MARKER_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-reply", "x-autoreply-from",
                   "x-ms-exchange-inbox-rules-loop")


def is_auto_reply(headers: Mapping[str, Sequence[str]]) -> bool:
    """``headers``: lowercased name -> unfolded values."""
    auto = headers.get("auto-submitted")
    if auto and auto[0].split(";", 1)[0].strip().lower() == "auto-replied":
        return True
    for name in _MARKER_HEADERS:
        values = headers.get(name)
        if values and values[0].strip().lower() not in ("no", "false", "0"):
            return True
    for name in ("precedence", "x-precedence"):
        values = headers.get(name)
        if values and values[0].strip().lower() in ("auto_reply", "auto-reply"):
            return True
    return False
