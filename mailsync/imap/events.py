"""The events the IMAP response parser emits (FetchItem, Tagged, Untagged, Continuation) and its limits.

Owns: those types and limits. Must not: parse (responses.py does) or do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailsync.imap.lexer import _UNTAGGED_HEAD


# -- events -------------------------------------------------------------------------------------


@dataclass(slots=True)
class FetchItem:
    """One ``* n FETCH (...)`` response. Items the server did not send are None. Not frozen: one
    is built per message downloaded, and a frozen dataclass's __init__ cost 1.2 us more each."""

    seq: int  # message sequence number
    uid: int | None
    flags: tuple[str, ...] | None  # as sent; system flags with backslash (case normalised), \Recent kept
    internaldate: str | None  # raw as sent, e.g. "17-Jul-1996 02:44:25 -0700"; see parse_internaldate
    size: int | None  # RFC822.SIZE
    body: bytes | None  # BODY[] / BODY[]<0> / BINARY[] / RFC822: the full message, the literal as read
    header_fields: bytes | None  # BODY[HEADER.FIELDS (...)] or BODY[HEADER] payload
    modseq: int | None  # MODSEQ (n), CONDSTORE
    # Gmail's X-GM-EXT-1 items: the message's id (one per message, whatever its folders), its
    # thread's id, and its labels as sent (atoms and strings; system labels start with a backslash)
    gm_msgid: int | None = None
    gm_thrid: int | None = None
    gm_labels: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Tagged:
    """The tagged completion of a command: ``A1 OK [code] text``."""

    tag: bytes
    status: str  # "OK", "NO" or "BAD"
    code: str | None  # e.g. "APPENDUID 38505 3955" or "MODIFIED 7,9"; the code name upper-cased
    text: str  # human-readable rest, decoded as UTF-8 with replacement


@dataclass(frozen=True, slots=True)
class Untagged:
    """Any untagged response other than FETCH, passed through raw."""

    kind: str  # "EXISTS", "EXPUNGE", "VANISHED", "FLAGS", "OK", "BYE", "NO", "BAD", "CAPABILITY", ...
    number: int | None  # the n of "* n EXISTS" / "* n EXPUNGE" / "* n RECENT"
    raw: bytes  # the full logical response exactly as received, literals inlined, line ends included

    @property
    def text(self) -> str:
        """What follows the kind word, without the final line end, decoded as UTF-8 with replacement.

        For ``* OK [UIDNEXT 4392] Predicted next UID`` this is ``[UIDNEXT 4392] Predicted next UID``;
        feed it to ``parse_response_code``. For ``* VANISHED (EARLIER) 1:3`` feed the part after
        ``(EARLIER)`` to ``parse_uid_set``.
        """
        m = _UNTAGGED_HEAD.match(self.raw)
        rest = self.raw[m.end() :] if m else self.raw
        if rest.endswith(b"\n"):
            rest = rest[:-2] if rest.endswith(b"\r\n") else rest[:-1]
        return rest.lstrip(b" ").decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Continuation:
    """A continuation request: ``+ text``."""

    text: str


Event = FetchItem | Tagged | Untagged | Continuation

# -- limits ------------------------------------------------------------------------------------

MAX_LITERAL = 1 << 31  # bytes; a larger announced literal is refused (a 2 GiB message is not mail)
MAX_LINE = 64 << 20  # bytes; one line of a response (a SEARCH of a million UIDs is ~7 MB)
_MAX_NUMBER = (1 << 32) - 1  # number / nz-number (RFC 3501)
_MAX_NUMBER64 = (1 << 63) - 1  # mod-sequence-value, number64 (RFC 7162, RFC 9051)
