"""mbox (mboxrd) encoding: pure functions from a message and its flags to the bytes of an mbox entry.

Owns: mboxrd quoting (a line ``>*From `` gains one ``>``; unquote removes it), the ``From `` separator
line, and the status headers mutt, Dovecot and Python's mailbox read: ``Status:`` (R read, O old),
``X-Status:`` (A answered, F flagged, T draft, D deleted) and ``X-Keywords:`` (keywords, $Forwarded
among them, space separated). A message's own Status, X-Status and X-Keywords fields are replaced by
these (they would contradict the flags), and nothing else of the message changes: its line endings,
its bytes, its last line with or without a newline. A Gmail message's labels go in an
``X-Gmail-Labels:`` field, comma separated, as Google Takeout's mbox files have them.

Must not: touch the file system, the store or the clock (see writer.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone

_FROM = re.compile(rb"\n(>*From )")  # a line after the first: "\n" is a literal the engine finds fast
_QUOTED = re.compile(rb"\n>(>*From )")
_FIRST = re.compile(rb">*From ")
STATUS_FIELDS = (b"status", b"x-status", b"x-keywords")
_X_STATUS = (("\\answered", "A"), ("\\flagged", "F"), ("\\draft", "T"), ("\\deleted", "D"))


def quote(raw: bytes) -> bytes:
    """mboxrd: every line that starts with zero or more '>' and then 'From ' gains a '>'."""
    if b"From " not in raw:  # most messages: nothing to do, no copy
        return raw
    out = _FROM.sub(rb"\n>\1", raw)
    return b">" + out if _FIRST.match(out) else out


def unquote(data: bytes) -> bytes:
    """The inverse of quote."""
    if b"From " not in data:
        return data
    out = _QUOTED.sub(rb"\n\1", data)
    return out[1:] if out.startswith(b">") and _FIRST.match(out, 1) else out


def from_line(sender: str, when: datetime) -> bytes:
    """``From SENDER Mon Dec  7 10:42:12 2026\\n``: the separator, with the INTERNALDATE in UTC."""
    t = when.astimezone(timezone.utc)
    return f"From {sender} {t.strftime('%a %b')} {t.day:2d} {t.strftime('%H:%M:%S %Y')}\n".encode("ascii")


def envelope_sender(raw: bytes) -> str:
    """The address of the message's Return-Path, else MAILER-DAEMON (as mutt and Dovecot write)."""
    for name, value in _header_fields(raw):
        if name == b"return-path":
            addr = value.strip().strip(b"<>").strip()
            if addr and re.fullmatch(rb"[!-~]+", addr):
                return addr.decode("ascii")
            break
    return "MAILER-DAEMON"


def status_headers(flags: Iterable[str], eol: bytes = b"\n") -> bytes:
    """The Status, X-Status and X-Keywords lines for these flags (each only when it says something)."""
    low = {f.lower() for f in flags}
    keywords = sorted({f for f in flags if not f.startswith("\\")})
    out = b"Status: RO" + eol if "\\seen" in low else b"Status: O" + eol
    xs = "".join(letter for flag, letter in _X_STATUS if flag in low)
    if xs:
        out += f"X-Status: {xs}".encode("ascii") + eol
    if keywords:
        out += b"X-Keywords: " + " ".join(keywords).encode("utf-8") + eol
    return out


def gmail_labels_header(labels: Iterable[str], eol: bytes = b"\n") -> bytes:
    """``X-Gmail-Labels: Inbox,Work`` (Google Takeout's field): system labels without their
    backslash, a label holding a comma or a quote quoted."""
    names = []
    for name in sorted(label[1:] if label.startswith("\\") else label for label in labels):
        if "," in name or '"' in name:
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        names.append(name.replace("\r", " ").replace("\n", " "))
    return b"X-Gmail-Labels: " + ",".join(names).encode("utf-8") + eol


def flags_of_status(status: str, x_status: str, x_keywords: str) -> set[str]:
    """The flags that status_headers wrote (for tests and, later, reading an mbox back)."""
    flags = set()
    if "R" in status:
        flags.add("\\Seen")
    for flag, letter in _X_STATUS:
        if letter in x_status:
            flags.add("\\" + flag[1:].capitalize())
    flags.update(x_keywords.split())
    return flags


def line_ending(raw: bytes) -> bytes:
    """CRLF when the message's first line ends so, else LF."""
    end = raw.find(b"\n")
    return b"\r\n" if end > 0 and raw[end - 1:end] == b"\r" else b"\n"


def _header_fields(raw: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(lower-case name, value) of the header's fields, folded lines joined."""
    for start, end in _field_spans(raw):
        name, _, value = raw[start:end].partition(b":")
        yield name.strip().lower(), value


def _field_spans(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) of each header field with its continuation lines; end is past its line ending."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        end = len(raw) if nl < 0 else nl + 1
        line = raw[pos:end]
        if line in (b"\n", b"\r\n"):
            break
        if line[:1] in (b" ", b"\t") and spans:
            spans[-1] = (spans[-1][0], end)
        elif b":" in line:
            spans.append((pos, end))
        else:
            break  # not a header line: the body begins (a malformed message without a blank line)
        pos = end
    return spans


def header_end(raw: bytes) -> int:
    """Offset just past the last header field (where the blank line, if any, starts)."""
    spans = _field_spans(raw)
    return spans[-1][1] if spans else 0


def with_status(raw: bytes, flags: Iterable[str], labels: Iterable[str] | None = None) -> bytes:
    """The message with its Status, X-Status and X-Keywords fields replaced by the flags' own, placed
    at the end of the header (where mutt writes them), in the message's line endings; with
    ``labels`` (a Gmail message's), its X-Gmail-Labels field too."""
    flags = list(flags)
    spans = _field_spans(raw)
    replaced = STATUS_FIELDS + ((b"x-gmail-labels",) if labels is not None else ())
    keep = []
    pos = 0
    for start, end in spans:
        name = raw[start:end].partition(b":")[0].strip().lower()
        if name in replaced:
            keep.append(raw[pos:start])
            pos = end
    end = spans[-1][1] if spans else 0
    head = b"".join(keep) + raw[pos:end]
    if head and not head.endswith(b"\n"):  # a header that ends the message without a newline
        head += line_ending(raw)
    eol = line_ending(raw)
    extra = gmail_labels_header(labels, eol) if labels else b""
    return head + status_headers(flags, eol) + extra + raw[end:]


def entry(raw: bytes, flags: Iterable[str], when: datetime, labels: Iterable[str] | None = None) -> bytes:
    """One mbox entry: the From line, the message with its status fields (and Gmail labels, when
    given), mboxrd-quoted, and the blank line that ends it (after a newline of its own when the
    message's last line has none)."""
    body = quote(with_status(raw, flags, labels))
    if not body.endswith(b"\n"):
        body += b"\n"
    return from_line(envelope_sender(raw), when) + body + b"\n"
