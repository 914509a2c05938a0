"""Unsubscribe detection: our List-Unsubscribe addresses, and opt-out / opt-in requests.

Owns: reading ``mailto:`` targets out of List-Unsubscribe / List-Subscribe (RFC 2369, RFC 8058's
One-Click keeps the mailto), and recognising an opt-out (or opt-in) reply by its subject once the
reply prefixes (Re:, AW:, SV:, 回复: ...) are stripped. A message we send that carries
List-Unsubscribe makes its mailto address "ours"; mail that a contact sends to it is an unsubscribe.
Must not: touch the store, the network or the clock; read bodies.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["is_opt_in", "is_opt_out", "mailto_targets", "strip_reply_prefixes"]

_ANGLE = re.compile(r"<\s*([^<>]*?)\s*>")
_PREFIX = re.compile(r"^\s*((re|aw|sv|vs|antw|antwort|wg|fw|fwd|tr|rif|r)\s*(\[\d+\])?\s*[:：]\s*|回复[:：]\s*|答复[:：]\s*)+",
                     re.IGNORECASE)
_OPT_OUT = re.compile(
    r"^\s*(unsubscribe|unsubscribe me|please unsubscribe( me)?|remove me( from (this|your) (list|mailing list))?|"
    r"please remove me( from (this|your) (list|mailing list))?|opt[ -]?out|stop|abmelden|austragen|"
    r"désabonner|se désabonner|désinscription|darse de baja|baja)\s*[.!]*\s*$",
    re.IGNORECASE)
_OPT_IN = re.compile(r"^\s*(subscribe|subscribe me|please subscribe( me)?|opt[ -]?in|anmelden)\s*[.!]*\s*$",
                     re.IGNORECASE)


def mailto_targets(value: str) -> list[str]:
    """Addresses of the ``<mailto:...>`` entries of a List-Unsubscribe / List-Subscribe value."""
    from mailsync.crm.addresses import canonical

    out: list[str] = []
    for uri in _ANGLE.findall(value):
        if not uri.lower().startswith("mailto:"):
            continue
        addr = canonical(unquote(uri[7:].split("?", 1)[0]))
        if addr and addr not in out:
            out.append(addr)
    return out


def strip_reply_prefixes(subject: str) -> str:
    return _PREFIX.sub("", subject).strip()


def is_opt_out(subject: str) -> bool:
    return bool(_OPT_OUT.match(strip_reply_prefixes(subject)))


def is_opt_in(subject: str) -> bool:
    return bool(_OPT_IN.match(strip_reply_prefixes(subject)))
