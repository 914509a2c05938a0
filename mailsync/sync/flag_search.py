"""A full UID/FLAGS comparison (rule D5) read by ESEARCH instead of a FETCH of every message, where
that is certain to see every flag.

  D7  A server without CONDSTORE is compared in full on every sync: every UID with its flags. With
      ESEARCH (RFC 4731), and a folder whose PERMANENTFLAGS names flags but not ``\\*`` (no client
      can make a keyword the SELECT's FLAGS response does not name: Microsoft 365's folders are
      so), the listing is rebuilt from one ``UID SEARCH RETURN (ALL)`` of ALL and one per flag the
      FLAGS response names: answers of a few ranges each instead of a line per message
      (scripts/bench-esearch, one folder on a loopback Dovecot: about 20 times fewer bytes, and a
      quarter to a half less time, at 20,000 and 200,000 messages). Anywhere else (``\\*`` in
      PERMANENTFLAGS, or none: a read-only folder; no FLAGS response; a flag no SEARCH key can
      name) the FETCH listing is read as before. A UID the ALL search did not name is left out (it
      arrived since; the next sync lists it), and a flag search's UID that ALL did not name too.

Owns: whether rule D7 applies (search_keys) and the listing from the searches' answers
(listing_from_searches), both pure. Must not: do I/O (guards.ServerChecks._flags_listing does).
"""

from __future__ import annotations

import re

from mailsync.imap.events import FetchItem

_SYSTEM_KEYS = {"\\Seen": "SEEN", "\\Answered": "ANSWERED", "\\Flagged": "FLAGGED", "\\Deleted": "DELETED",
                "\\Draft": "DRAFT"}
_ATOM = re.compile(r"[!#$&'+\-./0-9:;<=>?@A-Z^_`a-z|~]+")  # ATOM-CHARs, no \ % * ] and no controls


def search_keys(esearch: bool, flags: tuple[str, ...] | None,
                permanentflags: tuple[str, ...] | None) -> dict[str, str] | None:
    """Rule D7: flag -> the SEARCH key of the messages that have it, for every flag a message of the
    folder can have; None when the listing must be read by FETCH."""
    if not esearch or flags is None or not permanentflags or "\\*" in permanentflags:
        return None  # (PERMANENTFLAGS (): read-only, RFC 3501 7.1: says nothing of the keywords there may be)
    keys: dict[str, str] = {}
    for flag in set(flags) | set(permanentflags):
        if flag == "\\Recent":  # session state, not a flag of the message (and no FETCH listing keeps it)
            continue
        if flag in _SYSTEM_KEYS:
            keys[flag] = _SYSTEM_KEYS[flag]
        elif flag.startswith("\\") or not _ATOM.fullmatch(flag):
            return None  # a system flag SEARCH has no key for, or a keyword it cannot name
        else:
            keys[flag] = f"KEYWORD {flag}"
    return keys


def listing_from_searches(every: list[int], having: dict[str, list[int]]) -> dict[int, FetchItem]:
    """Rule D7: UID -> a FetchItem of its UID and flags (sorted), as the FETCH listing gives them,
    from the UIDs of the ALL search (``every``) and those of each flag's search (``having``)."""
    flags: dict[int, list[str]] = {uid: [] for uid in every}
    for flag in sorted(having):
        for uid in having[flag]:
            got = flags.get(uid)
            if got is not None:
                got.append(flag)
    return {uid: FetchItem(0, uid, tuple(f), None, None, None, None, None) for uid, f in flags.items()}
