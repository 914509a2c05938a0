"""Throttling as Microsoft 365 and Gmail answer it, scripted on the misbehaving server
(tests/hostile_server.py): the transcripts follow the providers' documentation.

- Exchange Online (Microsoft 365, Outlook.com), "IMAP throttling": a command over the budget is
  answered ``NO Request is throttled. Suggested Backoff Time: N milliseconds`` (or BAD), and the
  session often ends with ``* BYE``; a connection over the limit gets ``BAD User is authenticated
  but not connected.`` after its login. It offers neither CONDSTORE, QRESYNC nor NOTIFY.
- Gmail: ``NO [THROTTLED]``, ``[ALERT] Account exceeded command or bandwidth limits`` and
  ``[OVERQUOTA]`` for its daily download cap (2,500 MB a day for Workspace, per Google's limits).
"""

from __future__ import annotations

import re

O365_CAPABILITIES = ("UIDPLUS", "MOVE", "ID", "UNSELECT", "CHILDREN", "IDLE", "NAMESPACE")  # and LITERAL+, which this server does not speak
MS_THROTTLED = b"{tag} NO Request is throttled. Suggested Backoff Time: %d milliseconds\r\n"
MS_BYE = b"* BYE Connection is closed. 13\r\n"


def _fetch_starts(answer: bytes) -> list[int]:
    return [m.start() for m in re.finditer(rb"\* \d+ FETCH \(", answer)]


def throttled_after(n: int, refusal: bytes, *, bye: bytes | None = MS_BYE):
    """Answer a FETCH with its first ``n`` responses whole, then ``refusal`` (its ``{tag}`` replaced),
    then, with ``bye``, say BYE and end the session as Exchange Online does."""
    def hook(s, tag, cmd):
        answer = s.honest(tag, cmd)
        starts = _fetch_starts(answer) + [answer.rfind(tag + b" OK")]
        reply = answer[:starts[min(n, len(starts) - 1)]] + refusal.replace(b"{tag}", tag)
        if bye is None:
            return reply
        s.send(reply + bye)
        return b""  # the session ends
    return hook


def refuse(refusal: bytes, *, bye: bytes | None = None):
    """Answer the command with ``refusal`` alone (then BYE and the end of the session, with ``bye``)."""
    def hook(s, tag, cmd):
        if bye is None:
            return refusal.replace(b"{tag}", tag)
        s.send(refusal.replace(b"{tag}", tag) + bye)
        return b""
    return hook
