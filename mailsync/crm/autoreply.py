"""RFC 3834 auto-reply detection: out-of-office and vacation answers, and their kin.

Owns: the header rules that say "a machine answered for a person": ``Auto-Submitted: auto-replied``
(RFC 3834), ``X-Autoreply``, ``X-Autorespond``, ``X-Auto-Reply``, ``Precedence`` /
``X-Precedence: auto_reply``, Microsoft's ``X-MS-Exchange-Inbox-Rules-Loop`` /
``X-Autoreply-From``, Apple Mail's vacation rule (``X-Apple-Action: VACATION``), and the subjects
of out-of-office notices that carry none of these (older Exchange: "Out of Office AutoReply:",
"Automatic reply:", and their translations) -- a subject that starts with one, never one that
merely mentions it ("Re: out of office next week?"). An auto-reply is kept as a signal and never
creates a contact. ``Auto-Submitted: auto-generated`` (notifications) is bulk mail, not an
auto-reply (see junk.py).
Must not: touch the store, the network or the clock; look at bodies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = ["is_auto_reply", "is_auto_reply_subject"]

_MARKER_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-reply", "x-autoreply-from",
                   "x-ms-exchange-inbox-rules-loop")


_SUBJECT = re.compile(
    r"(?i)^\s*(\[[^\]]{1,30}\]\s*)?("
    r"out of (the )?office( auto-?reply)?|auto(matic|matische)?[- ]?(reply|response|antwort)|autoreply|"
    r"abwesenheitsnotiz|abwesend|r[ée]ponse automatique|absence du bureau|respuesta autom[áa]tica|"
    r"fuera de la oficina|risposta automatica|fuori sede|automatisch antwoord|afwezig|"
    r"resposta autom[áa]tica|automatyczna odpowied[źz]|autosvar|automaattinen vastaus|"
    r"vacation reply|away from (the|my) (office|email))\s*[:(-]")


def is_auto_reply_subject(subject: str) -> bool:
    """"Out of Office AutoReply: Meeting", "Automatic reply: ...", "Abwesenheitsnotiz: ...": a subject
    that starts with an out-of-office marker followed by the subject it answers. A bare "Out of
    office" is a person's subject as often as a machine's, and is not enough."""
    return bool(_SUBJECT.match(subject))


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
    apple = headers.get("x-apple-action")
    if apple and apple[0].strip().lower().startswith("vacation"):
        return True
    subject = headers.get("subject")
    return bool(subject) and is_auto_reply_subject(subject[0])
