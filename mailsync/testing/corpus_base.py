"""The corpus generator's ground: its constants and folders, CorpusMessage, and the hand-rolled
MIME and header encoding helpers and attachment payloads (so the bytes never change with the
Python version).

Owns: those. Must not: generate messages (corpus.py and corpus_kinds.py do) or import other mailsync modules.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from random import Random
from urllib.parse import quote

OWN_ADDRESS = "me@mailsync.test"
OWN_NAME = "Alex Morgan"

INBOX = "INBOX"
SENT = "Sent"
ARCHIVE = "Archive"
ARCHIVE_2024 = "Archive/2024"
DRAFTS = "Entwürfe"
PROJECT = "Projekte/Größe"
CJK = "客户资料"
NEWSLETTERS = "Newsletters"
#: Folders of the small corpus (decoded Unicode names, "/" as the hierarchy separator).
FOLDERS = (INBOX, SENT, ARCHIVE, ARCHIVE_2024, DRAFTS, PROJECT, CJK, NEWSLETTERS)
#: FOLDERS plus the parents that exist only implicitly ("Projekte").
ALL_FOLDERS = (INBOX, SENT, ARCHIVE, ARCHIVE_2024, DRAFTS, "Projekte", PROJECT, CJK, NEWSLETTERS)

#: IMAP system flags. Anything in CorpusMessage.flags that is not one of these is a keyword
#: ($Forwarded, $Label1, ...): a loader that cannot store keywords drops exactly those.
SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")

#: kind -> what the message is. Every kind occurs in generate_corpus(size="small").
KINDS: dict[str, str] = {
    "thread": "part of a conversation with external people (inbound, or ours in Sent)",
    "attachment": "multipart/mixed with base64 PDF/PNG/JPEG/DOCX/CSV/vCard payloads",
    "newsletter": "List-Id, List-Unsubscribe (mailto + https), Precedence: bulk",
    "bounce": "RFC 3464 multipart/report; report-type=delivery-status",
    "auto_reply": "RFC 3834 out-of-office (Auto-Submitted: auto-replied, X-Autoreply)",
    "notification": "machine mail from no-reply@ / notifications@ senders",
    "calendar": "meeting invitation with a text/calendar METHOD:REQUEST part",
    "announcement": "one message to 40 recipients (To + Cc), us among them",
    "cc_self": "addressed to someone else with our own address in Cc",
    "bcc_self": "our address in neither To nor Cc (delivered as Bcc)",
    "i18n": "legacy charsets: ISO-8859-1, windows-1252, ISO-2022-JP, GB2312, KOI8-R, emoji",
    "html_only": "a single text/html part, no text/plain alternative",
    "plain": "a standalone message without reply (inbound or ours in Sent)",
    "draft": "an unsent draft of ours (\\Draft) in the drafts folder",
    "copy": "the same message, byte for byte, in two folders",
    "malformed:no_message_id": "no Message-ID header",
    "malformed:no_date": "no Date header",
    "malformed:bad_date": "a Date header that does not parse",
    "malformed:bare_lf": "bare LF line endings throughout",
    "malformed:8bit_header": "raw 8-bit bytes (Latin-1 and UTF-8) in Subject/From, unencoded",
    "malformed:invalid_charset": "a charset name no codec knows (body and encoded-word)",
    "malformed:charset_mismatch": "declared charset=utf-8, body bytes are not UTF-8",
    "malformed:broken_boundary": "the declared multipart boundary never occurs in the body",
    "malformed:truncated_multipart": "multipart cut off mid-part: no closing boundary",
    "malformed:overlong_header": "one unfolded header line longer than 998 octets",
    "malformed:duplicate_message_id": "two different messages, two folders, one Message-ID",
}
MALFORMED_KINDS = tuple(k for k in KINDS if k.startswith("malformed:"))

#: size -> scale factor for the repeatable parts (threads, plain, attachments, newsletters ...).
SIZES = {"small": 1, "medium": 5, "large": 25}

_T2024 = 1704067200  # 2024-01-01T00:00:00Z
_T2025 = 1735689600
_T2025_09 = 1756684800  # 2025-09-01
_T2026 = 1767225600
_CRLF = "\r\n"


def is_keyword(flag: str) -> bool:
    """True for an IMAP keyword ($Forwarded, $Label1, NonJunk), False for a \\system flag."""
    return not flag.startswith("\\")


@dataclass(frozen=True)
class CorpusMessage:
    """One message and where it goes: the folder, its flags and the IMAP INTERNALDATE."""

    folder: str  # decoded Unicode name, "/" separated ("Archive/2024", "Projekte/Größe")
    raw: bytes  # the exact bytes to store (CRLF line endings unless kind says otherwise)
    flags: tuple[str, ...]  # system flags first, then keywords (see is_keyword)
    internaldate: float  # seconds since the epoch (UTC), integral
    kind: str  # a key of KINDS (bulk messages: "plain", "thread" or "attachment")

    @property
    def system_flags(self) -> tuple[str, ...]:
        return tuple(f for f in self.flags if not is_keyword(f))

    @property
    def keywords(self) -> tuple[str, ...]:
        return tuple(f for f in self.flags if is_keyword(f))

    def flag_string(self, *, keywords: bool = True) -> str:
        """Flags as write_message wants them: ``"\\Seen \\Flagged $Label1"``."""
        return " ".join(self.flags if keywords else self.system_flags)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def _flags(*flags: str) -> tuple[str, ...]:
    """Canonical order: system flags in SYSTEM_FLAGS order, then keywords as given, no dups."""
    system = [f for f in SYSTEM_FLAGS if f in flags]
    kw: list[str] = []
    for f in flags:
        if is_keyword(f) and f not in kw:
            kw.append(f)
    return tuple(system + kw)


# --------------------------------------------------------------------------------------------
# Encoding helpers (hand-rolled so output never changes with the Python version)
# --------------------------------------------------------------------------------------------

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _dt(ts: int, tz_minutes: int = 0) -> datetime:
    return datetime.fromtimestamp(ts, timezone(timedelta(minutes=tz_minutes)))


def _fmt_date(ts: int, tz_minutes: int) -> str:
    """RFC 5322 date-time, locale-free: ``Tue, 05 Mar 2024 14:03:22 +0100``."""
    d = _dt(ts, tz_minutes)
    sign = "+" if tz_minutes >= 0 else "-"
    off = abs(tz_minutes)
    return (
        f"{_DAY_NAMES[d.weekday()]}, {d.day:02d} {_MONTH_NAMES[d.month - 1]} {d.year} "
        f"{d.hour:02d}:{d.minute:02d}:{d.second:02d} {sign}{off // 60:02d}{off % 60:02d}"
    )


def _iso_date(ts: int) -> str:
    d = _dt(ts)
    return f"{d.year}-{d.month:02d}-{d.day:02d}"


def _encodable(text: str, charset: str) -> bool:
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        return False
    return True


def _ew_payload(text: str, charset: str, mode: str) -> str:
    data = text.encode(charset)
    if mode == "B":
        return base64.b64encode(data).decode("ascii")
    out = []
    for b in data:
        if b == 0x20:
            out.append("_")
        elif (48 <= b <= 57) or (65 <= b <= 90) or (97 <= b <= 122) or b in b"!*+-/":
            out.append(chr(b))
        else:
            out.append(f"={b:02X}")
    return "".join(out)


def _ew(text: str, charset: str = "utf-8", mode: str = "B") -> str:
    """``text`` as RFC 2047 encoded-words (<= 75 chars each, split between characters)."""
    if not _encodable(text, charset):
        charset = "utf-8"
    prefix = f"=?{charset}?{mode}?"
    room = 75 - len(prefix) - 2
    words: list[str] = []
    cur = ""
    for ch in text:
        if cur and len(_ew_payload(cur + ch, charset, mode)) > room:
            words.append(cur)
            cur = ch
        else:
            cur += ch
    if cur:
        words.append(cur)
    return " ".join(f"{prefix}{_ew_payload(w, charset, mode)}?=" for w in words)


def _enc_text(text: str, charset: str = "utf-8", mode: str = "Q") -> str:
    """Unstructured header text: leading ASCII words stay plain, the rest is encoded."""
    if text.isascii():
        return text
    words = text.split(" ")
    i = 0
    while i < len(words) and words[i].isascii():
        i += 1
    plain = " ".join(words[:i])
    enc = _ew(" ".join(words[i:]), charset, mode)
    return f"{plain} {enc}" if plain else enc


_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+")


def _fmt_addr(name: str, addr: str, charset: str = "utf-8", mode: str = "B") -> str:
    if not name:
        return addr
    if name.isascii():
        if _ATEXT_PHRASE.fullmatch(name):
            return f"{name} <{addr}>"
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{addr}>'
    # One encoded-word where possible: Python's default-policy address parser keeps the (RFC 2047
    # ignorable) space between adjacent encoded-words in a display name, so prefer the shorter form.
    if not _encodable(name, charset):
        charset = "utf-8"
    if mode == "Q" and len(_ew_payload(name, charset, "B")) < len(_ew_payload(name, charset, "Q")):
        mode = "B"
    return f"{_ew(name, charset, mode)} <{addr}>"


def _fold(name: str, value: str, limit: int = 78) -> str:
    """One header field, folded at spaces to lines of at most ``limit`` chars where possible."""
    if "\r\n" in value:  # already folded by the caller
        return f"{name}: {value}"
    line = f"{name}:"
    lines: list[str] = []
    for word in value.split(" "):
        if len(line) + 1 + len(word) > limit and line.strip() and not line.endswith(":"):
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines)


Part = tuple[list[tuple[str, str]], bytes]  # (header fields, body bytes)


def _render(headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    head = "".join(_fold(n, v) + _CRLF for n, v in headers)
    return head.encode("ascii") + b"\r\n" + body


def _qp(data: bytes) -> bytes:
    """Quoted-printable body (RFC 2045), input lines separated by LF or CRLF, output CRLF."""
    out: list[str] = []
    for line in data.replace(b"\r\n", b"\n").split(b"\n"):
        enc = []
        last = len(line) - 1
        for i, b in enumerate(line):
            if (33 <= b <= 126 and b != 61) or (b in (9, 32) and i != last):
                enc.append(chr(b))
            else:
                enc.append(f"={b:02X}")
        s = "".join(enc)
        while len(s) > 76:
            cut = 75
            if s[cut - 1] == "=":
                cut -= 1
            elif s[cut - 2] == "=":
                cut -= 2
            out.append(s[:cut] + "=")
            s = s[cut:]
        out.append(s)
    return "\r\n".join(out).encode("ascii")


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _text_part(
    text: str, subtype: str = "plain", charset: str = "utf-8", cte: str | None = None, *,
    flowed: bool = False, extra: str = "",
) -> Part:
    """A text/* leaf. cte None: 7bit for ASCII, else quoted-printable."""
    if not _encodable(text, charset):
        charset = "utf-8"
    data = text.encode(charset)
    if cte is None:
        cte = "7bit" if data.isascii() else "quoted-printable"
    if cte == "7bit" and not data.isascii():
        cte = "8bit"
    if cte == "quoted-printable":
        body = _qp(data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
    elif cte == "base64":
        body = _b64(data)
    else:
        body = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    ctype = f"text/{subtype}; charset={charset}"
    if flowed:
        ctype += "; format=flowed"
    ctype += extra
    return [("Content-Type", ctype), ("Content-Transfer-Encoding", cte)], body


def _multipart(subtype: str, parts: Iterable[Part], boundary: str, params: str = "") -> Part:
    chunks = [b"This is a multi-part message in MIME format.\r\n"]
    for part in parts:
        chunks.append(f"\r\n--{boundary}\r\n".encode("ascii"))
        rendered = _render(*part)
        chunks.append(rendered[:-2] if rendered.endswith(b"\r\n") else rendered)
    chunks.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return [("Content-Type", f'multipart/{subtype}; boundary="{boundary}"{params}')], b"".join(chunks)


def _html_of(text: str, charset: str = "utf-8") -> str:
    out = []
    for para in text.split("\n\n"):
        lines = para.split("\n")
        if all(ln.startswith(">") for ln in lines if ln):
            inner = "<br>\n".join(html.escape(ln.lstrip("> ")) for ln in lines)
            style = "margin:0 0 0 .8ex;border-left:1px #ccc solid;padding-left:1ex"
            out.append(f'<blockquote style="{style}">{inner}</blockquote>')
        elif para.strip():
            out.append("<p>" + "<br>\n".join(html.escape(ln) for ln in lines) + "</p>")
    return (
        f'<html><head><meta http-equiv="Content-Type" content="text/html; charset={charset}"></head>\n'
        f"<body>\n" + "\n".join(out) + "\n</body></html>\n"
    )


def _hex(rng: Random, nbytes: int) -> str:
    return f"{rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"


def _uuid(rng: Random) -> str:
    h = _hex(rng, 16)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


# --------------------------------------------------------------------------------------------
# Attachment payloads
# --------------------------------------------------------------------------------------------


def _png(rng: Random, size: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = chunk(b"IHDR", (640).to_bytes(4, "big") + (480).to_bytes(4, "big") + b"\x08\x02\x00\x00\x00")
    idat = chunk(b"IDAT", rng.randbytes(max(16, size - 57)))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + chunk(b"IEND", b"")


def _pdf(rng: Random, size: int) -> bytes:
    head = (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
            b"4 0 obj\n<< /Length 0 /Filter /FlateDecode >>\nstream\n")
    tail = b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    return head + rng.randbytes(max(16, size - len(head) - len(tail))) + tail


def _jpeg(rng: Random, size: int) -> bytes:
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x48\x00\x48\x00\x00"
    return head + rng.randbytes(max(16, size - len(head) - 2)) + b"\xff\xd9"


def _zip(rng: Random, size: int) -> bytes:
    return b"PK\x03\x04\x14\x00\x06\x00\x08\x00" + rng.randbytes(max(16, size - 10))


_ATT_TYPES = {
    "pdf": ("application/pdf", _pdf),
    "png": ("image/png", _png),
    "jpg": ("image/jpeg", _jpeg),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", _zip),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", _zip),
}


def _attachment_part(filename: str, ctype: str, data: bytes, *, inline_cid: str | None = None) -> Part:
    if filename.isascii():
        name_param = f'name="{filename}"'
        disp_param = f'filename="{filename}"'
    else:  # Outlook writes both: an encoded-word name= and an RFC 2231 filename*=
        name_param = f'name="{_ew(filename, "utf-8", "B")}"'
        disp_param = f"filename*=utf-8''{quote(filename, safe='')}"
    disposition = "inline" if inline_cid else "attachment"
    headers = [
        ("Content-Type", f"{ctype}; {name_param}"),
        ("Content-Disposition", f"{disposition}; {disp_param}"),
        ("Content-Transfer-Encoding", "base64"),
    ]
    if inline_cid:
        headers.append(("Content-ID", f"<{inline_cid}>"))
    return headers, _b64(data)




def _header_span(raw: bytes, name: str) -> tuple[int, int] | None:
    """Byte span of the first ``name`` field (with continuation lines) in the header section."""
    head_end = raw.find(b"\r\n\r\n")
    pat = re.compile(rb"(?im)^" + re.escape(name.encode("ascii")) + rb":.*\r\n(?:[ \t].*\r\n)*")
    m = pat.search(raw, 0, head_end + 2)
    return (m.start(), m.end()) if m else None


def _drop_header(raw: bytes, name: str) -> bytes:
    span = _header_span(raw, name)
    assert span, name
    return raw[: span[0]] + raw[span[1]:]


def _replace_header(raw: bytes, name: str, value: str) -> bytes:
    span = _header_span(raw, name)
    assert span, name
    return raw[: span[0]] + f"{name}: {value}\r\n".encode("ascii") + raw[span[1]:]


def _insert_header_raw(raw: bytes, after: str, line: bytes) -> bytes:
    span = _header_span(raw, after)
    assert span, after
    return raw[: span[1]] + line + b"\r\n" + raw[span[1]:]
