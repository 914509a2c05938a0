"""Deterministic test mail: the messages every mailsync test, fixture and benchmark syncs.

Owns: generating realistic RFC 5322 messages from a seed -- a small hand-shaped corpus
(:func:`generate_corpus`: threads, attachments, newsletters, DSN bounces, auto-replies, non-ASCII
names and folders, deliberately malformed mail) and a fast bulk stream for benchmarks
(:func:`generate_bulk`); writing and reading them as a fixture directory (:func:`write_corpus`,
:func:`read_corpus`); handing them to a test server (:func:`load_into`).

Must not: touch the network or the store, read the clock, the locale or the environment, or
depend on hash randomization. The same seed gives byte-identical output on every machine and
Python version, which is why messages are assembled by hand here (own RFC 2047 / quoted-printable
encoders, fixed MIME boundaries) rather than with ``email.generator``, whose folding and random
boundaries vary. Pure stdlib; imports no other mailsync module. ``fixtures/corpus`` is this
module's output for seed 1 (``scripts/gen-corpus``); tests/unit/test_corpus.py fails if it drifts.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import math
import re
import textwrap
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from random import Random
from typing import Any, Protocol
from urllib.parse import quote

__all__ = [
    "ALL_FOLDERS",
    "CorpusMessage",
    "FOLDERS",
    "KINDS",
    "MALFORMED_KINDS",
    "OWN_ADDRESS",
    "SIZES",
    "SYSTEM_FLAGS",
    "generate_bulk",
    "generate_corpus",
    "is_keyword",
    "load_into",
    "read_corpus",
    "write_corpus",
]

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
# The cast: people, companies, languages
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Person:
    display: str  # "" = bare address in From
    first: str
    last: str
    addr: str
    lang: str
    tz: int  # minutes east of UTC
    client: str  # gmail | outlook | thunderbird | apple | foxmail | iso2022
    title: str = ""
    company: str = ""
    phone: str = ""
    web: str = ""
    hdr: tuple[str, str] = ("utf-8", "B")  # charset and mode for encoded-words this client writes

    @property
    def sign(self) -> str:
        return self.display if self.lang in ("ja", "zh") else self.first

    @property
    def full(self) -> str:
        return self.display or f"{self.first} {self.last}"

    @property
    def domain(self) -> str:
        return self.addr.rsplit("@", 1)[1]

    def fmt(self, hdr: tuple[str, str] | None = None) -> str:
        charset, mode = hdr or self.hdr
        return _fmt_addr(self.display, self.addr, charset, mode)

    def signature(self) -> list[str]:
        if not self.company:
            return ["Sent from my iPhone"] if self.client == "apple" else [self.full]
        lines = [self.full, f"{self.title} | {self.company}" if self.title else self.company]
        if self.phone:
            lines.append(f"Tel. {self.phone}")
        if self.web:
            lines.append(self.web)
        return lines


def _people() -> tuple[_Person, ...]:
    P = _Person
    return (
        P("Jürgen Groß", "Jürgen", "Groß", "juergen.gross@mueller-bau.example", "de", 60, "outlook",
          "Leiter Einkauf", "Müller Bau GmbH", "+49 89 2154 3300", "www.mueller-bau.example",
          ("iso-8859-1", "Q")),
        P("Anna Schmidt", "Anna", "Schmidt", "a.schmidt@mueller-bau.example", "de", 60, "outlook",
          "Projektleiterin", "Müller Bau GmbH", "+49 89 2154 3317", "www.mueller-bau.example",
          ("iso-8859-1", "Q")),
        P("John O'Brien", "John", "O'Brien", "john.obrien@acme-logistics.example", "en", -300, "outlook",
          "VP Operations", "Acme Logistics Inc.", "+1 212 555 0147", "https://acme-logistics.example"),
        P("Smith, Karen", "Karen", "Smith", "karen.smith@globex.example", "en", -480, "outlook",
          "Director of Partnerships", "Globex Corporation", "+1 415 555 0199", "https://globex.example"),
        P("Mike Johnson", "Mike", "Johnson", "mike.johnson@eu.globex.example", "en", 0, "outlook",
          "Regional Sales Manager EMEA", "Globex Corporation", "+44 20 7946 0321", "https://globex.example"),
        P("François Lefèvre", "François", "Lefèvre", "francois.lefevre@lefevre-fils.example", "fr", 60,
          "thunderbird", "Directeur commercial", "Lefèvre & Fils SARL", "+33 4 72 00 12 34",
          "https://lefevre-fils.example", ("utf-8", "Q")),
        P("Zoë Ångström", "Zoë", "Ångström", "zoe.angstrom@nordlys.example", "en", 60, "apple",
          "Head of Product", "Nordlys AS", "+47 22 12 34 56", "nordlys.example"),
        P("", "Mette", "Hansen", "mette.hansen@nordlys.example", "en", 60, "apple",
          "Office Manager", "Nordlys AS", "+47 22 12 34 50", "nordlys.example"),
        P("山田 太郎", "太郎", "山田", "taro.yamada@sakura-trading.example", "ja", 540, "iso2022",
          "営業部 課長", "さくら商事株式会社", "+81 3 1234 5678", "https://sakura-trading.example",
          ("iso-2022-jp", "B")),
        P("李娜", "娜", "李", "li.na@hztech.example", "zh", 480, "thunderbird",
          "市场总监", "杭州智联科技有限公司", "+86 571 8888 6666", "https://hztech.example"),
        P("Priya Raman", "Priya", "Raman", "priya.raman@brightwave.example", "en", 0, "gmail",
          "Customer Success Lead", "Brightwave Analytics Ltd", "+44 161 555 0123",
          "https://brightwave.example"),
        P("Ahmed Al-Farsi", "Ahmed", "Al-Farsi", "ahmed.alfarsi@brightwave.example", "en", 240, "gmail",
          "Solutions Engineer", "Brightwave Analytics Ltd", "+971 4 555 0188", "https://brightwave.example"),
        P("Carlos Núñez", "Carlos", "Núñez", "carlos.nunez84@gmail.com", "es", 60, "gmail"),
        P("Ольга Смирнова", "Ольга", "Смирнова", "olga.smirnova@outlook.com", "ru", 180, "outlook",
          hdr=("koi8-r", "B")),
        P("Sean Murphy", "Sean", "Murphy", "seanm1979@yahoo.co.uk", "en", 0, "apple"),
        P("Lena Weber", "Lena", "Weber", "lena.weber@gmx.de", "de", 60, "thunderbird",
          hdr=("iso-8859-1", "Q")),
        P("王伟", "伟", "王", "wangwei1990@qq.com", "zh", 480, "foxmail", hdr=("gb18030", "B")),
        P("Emily Chen", "Emily", "Chen", "emily.chen@icloud.com", "en", -480, "apple"),
        P("Σοφία Παπαδοπούλου", "Sofia", "Papadopoulou", "sofia.papadopoulou@hotmail.com", "en", 120,
          "outlook"),
        P("Jana Nováková", "Jana", "Nováková", "jana.novakova@gmail.com", "en", 60, "gmail"),
    )


# company groups for threads: indices into _people()
_GROUPS = ((0, 1), (2,), (3, 4), (5,), (6, 7), (8,), (9,), (10, 11), (12,), (13,), (14,), (15,), (16,), (17,),
           (18,), (19,))
_GROUP_WEIGHTS = (9, 5, 6, 4, 5, 3, 3, 6, 2, 2, 2, 2, 2, 2, 1, 2)

_WEEKDAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"),
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag"),
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi"),
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes"),
    "ja": ("月曜日", "火曜日", "水曜日", "木曜日", "金曜日"),
    "zh": ("周一", "周二", "周三", "周四", "周五"),
    "ru": ("понедельник", "вторник", "среду", "четверг", "пятницу"),
}
_CITIES = {
    "en": ("London", "Chicago", "Toronto", "Dublin", "Singapore", "Austin"),
    "de": ("München", "Köln", "Düsseldorf", "Zürich", "Wien"),
    "fr": ("Lyon", "Paris", "Bordeaux", "Genève"),
    "es": ("Madrid", "Sevilla", "Valencia"),
    "ja": ("東京", "大阪", "名古屋"),
    "zh": ("杭州", "上海", "深圳"),
    "ru": ("Москве", "Казани", "Самаре"),
}
_PRODUCTS = ("pallet racks", "conveyor belts", "sensor kits", "LED panels", "steel beams",
             "analytics licences", "support hours", "forklift batteries", "cold-chain trackers")
_PROJECTS = ("Atlas", "Nordstern", "Phoenix", "Blue Harbor", "Größe-Umbau", "Kestrel")
_COLLEAGUES = ("Dana Kim", "Tom Becker", "Sara Lindholm", "Rui Costa")

_LANG: dict[str, dict[str, Any]] = {
    "en": {
        "greet": ("Hi {first},", "Hello {first},", "Dear {first},", "Good morning {first},", "{first},"),
        "close": ("Best,", "Thanks,", "Kind regards,", "Cheers,", "Best regards,"),
        "subjects": ("Quote for {product}", "Meeting next week", "Invoice {inv}", "Contract renewal {year}",
                     "Onboarding next steps", "Delivery schedule - week {week}", "Follow-up from our call",
                     "Pricing question", "Project {project} kickoff", "Partnership opportunity",
                     "Updated price list", "Re-scheduling our {day} call", "Q{q} review",
                     "\U0001F680 Launch plan for {project}", "Feedback on the proposal",
                     "Intro: {myfirst} / {first}"),
        "sentences": (
            "Thanks for getting back to me so quickly.",
            "Could you send over the updated quote for {n} units of {product}?",
            "We reviewed the proposal internally and have a few questions on the pricing.",
            "I've attached the revised schedule; the main change is the delivery date for phase two.",
            "Would {day} at {time} work for a call?",
            "Our finance team confirmed that invoice {inv} was paid on {date}.",
            "Let me loop in {colleague}, who handles logistics on our side.",
            "The shipment left our warehouse in {city} this morning.",
            "We'd like to extend the contract for another twelve months.",
            "Can you confirm the billing address is still correct?",
            "I'm out of the office next week, but {colleague} can help in the meantime.",
            "The pilot went well and the team is keen to roll it out in {city}.",
            "I'll circle back once I've heard from legal.",
            "Just following up on my last email - any update on this?",
            "We can offer a {pct}% discount if the order is placed before the end of the month.",
            "The new price list takes effect on {date}.",
            "Happy to jump on a quick call if that's easier.",
            "Our current volume is about {n} orders per month.",
            "The onboarding session is scheduled for {day} at {time}.",
            "Could you share the technical requirements for the integration?",
            "I've updated the shared document with our comments.",
            "Looking forward to meeting you in {city}.",
            "Unfortunately the delivery has been delayed by about a week.",
            "Great to hear from you again!",
            "We'll need a purchase order number before we can ship.",
            "Let me know if anything is unclear.",
            "The demo environment is ready; you should have received the login details separately.",
            "We're finalising the budget for {year} and would like to include project {project}.",
        ),
        "attribution": "On {when}, {name} <{addr}> wrote:",
        "outlook": ("From", "Sent", "To", "Subject"),
        "reply": "Re: ",
        "ooo": ("Automatic reply: ", "I am out of the office until {date} with limited access to email. "
                "For urgent matters please contact {colleague}."),
    },
    "de": {
        "greet": ("Hallo {first},", "Guten Tag {first} {last},", "Sehr geehrte Damen und Herren,",
                  "Moin {first},"),
        "close": ("Viele Grüße", "Beste Grüße", "Mit freundlichen Grüßen"),
        "subjects": ("Angebot für {product}", "Rückfrage zur Rechnung {inv}", "Terminabstimmung KW {week}",
                     "Größenänderung der Lieferung", "Vertragsverlängerung {year}",
                     "Übergabe Projekt {project}",
                     "Lieferschein und Maße"),
        "sentences": (
            "Vielen Dank für Ihre schnelle Rückmeldung.",
            "Könnten Sie uns ein aktualisiertes Angebot für {n} Stück schicken?",
            "Die Lieferung verzögert sich leider um etwa eine Woche.",
            "Passt Ihnen {day} um {time} Uhr für ein kurzes Telefonat?",
            "Die Rechnung {inv} wurde am {date} beglichen.",
            "Anbei finden Sie die überarbeitete Zeitplanung.",
            "Wir möchten den Vertrag um weitere zwölf Monate verlängern.",
            "Bitte bestätigen Sie kurz die Rechnungsadresse.",
            "Die Größe der Lieferung hat sich geändert: jetzt {n} Paletten statt {n2}.",
            "Ich melde mich, sobald ich Rückmeldung von unserer Rechtsabteilung habe.",
            "Für Rückfragen stehe ich Ihnen gerne zur Verfügung.",
            "Das Treffen in {city} war sehr produktiv.",
            "Wir benötigen noch eine Bestellnummer, bevor wir liefern können.",
            "Die Maße für Halle 3 schicke ich Ihnen bis {day}.",
        ),
        "attribution": "Am {when} schrieb {name} <{addr}>:",
        "outlook": ("Von", "Gesendet", "An", "Betreff"),
        "reply": "AW: ",
        "ooo": ("Abwesenheitsnotiz: ",
                "Vielen Dank für Ihre Nachricht. Ich bin bis einschließlich {date} nicht "
                "im Büro. In dringenden Fällen wenden Sie sich bitte an {colleague}."),
    },
    "fr": {
        "greet": ("Bonjour {first},", "Cher {first},", "Bonjour Madame, Monsieur,"),
        "close": ("Cordialement,", "Bien à vous,", "Bonne journée,"),
        "subjects": ("Proposition commerciale - {product}", "Réunion de suivi", "Facture n° {inv}",
                     "Échéancier de livraison", "Contrat {year} à signer"),
        "sentences": (
            "Merci pour votre retour rapide.",
            "Pourriez-vous nous envoyer un devis mis à jour pour {n} unités ?",
            "La livraison est prévue pour le {date}.",
            "Êtes-vous disponible {day} à {time} pour un appel ?",
            "Veuillez trouver ci-joint le contrat signé.",
            "Nous avons bien reçu votre paiement, merci.",
            "Je reviens vers vous dès que possible.",
            "L'équipe à {city} est très enthousiaste à l'idée de ce projet.",
            "Le prix unitaire reste inchangé à {n} € HT.",
        ),
        "attribution": "Le {when}, {name} <{addr}> a écrit :",
        "outlook": ("De", "Envoyé", "À", "Objet"),
        "reply": "Re: ",
        "ooo": ("Réponse automatique : ", "Je suis absent jusqu'au {date} inclus. En cas d'urgence, "
                "merci de contacter {colleague}."),
    },
    "es": {
        "greet": ("Hola {first},", "Buenos días {first},"),
        "close": ("Un saludo,", "Saludos,", "Gracias,"),
        "subjects": ("Presupuesto para {product}", "Reunión del {day}", "Contrato firmado",
                     "¿Café en {city}?"),
        "sentences": (
            "Gracias por tu respuesta tan rápida.",
            "¿Podrías enviarme el presupuesto actualizado?",
            "La reunión será el {day} a las {time}.",
            "Te adjunto el contrato firmado.",
            "Quedo a la espera de tus comentarios.",
            "Estaré en {city} la semana que viene.",
        ),
        "attribution": "El {when}, {name} (<{addr}>) escribió:",
        "outlook": ("De", "Enviado", "Para", "Asunto"),
        "reply": "Re: ",
        "ooo": ("Respuesta automática: ", "Estoy fuera de la oficina hasta el {date}."),
    },
    "ru": {
        "greet": ("Здравствуйте, {first}!", "Добрый день, {first}!"),
        "close": ("С уважением,", "Спасибо,"),
        "subjects": ("Предложение по проекту {project}", "Договор и счёт", "Встреча на следующей неделе"),
        "sentences": (
            "Спасибо за быстрый ответ.",
            "Не могли бы вы прислать обновлённое предложение?",
            "Встреча назначена на {day} в {time}.",
            "Во вложении подписанный договор.",
            "Счёт {inv} оплачен {date}.",
            "Буду в {city} на следующей неделе.",
        ),
        "attribution": "{when}, {name} <{addr}> пишет:",
        "outlook": ("От", "Отправлено", "Кому", "Тема"),
        "reply": "RE: ",
        "ooo": ("Автоответ: ", "Я в отпуске до {date}. По срочным вопросам обращайтесь к {colleague}."),
    },
    "ja": {
        "greet": ("{last}様", "{last}様\n\nいつも大変お世話になっております。"),
        "close": ("よろしくお願いいたします。", "何卒よろしくお願い申し上げます。"),
        "subjects": ("お見積りのご依頼", "打ち合わせ日程のご相談", "納期について", "契約書送付の件"),
        "sentences": (
            "お見積りの件、ご確認いただきありがとうございます。",
            "来週{day}の{time}からお打ち合わせは可能でしょうか。",
            "納期について、社内で確認いたします。",
            "資料を添付いたしましたので、ご査収ください。",
            "ご不明な点がございましたら、お気軽にお問い合わせください。",
            "{city}の倉庫から本日出荷いたしました。",
            "数量は{n}個でお願いいたします。",
        ),
        "attribution": "{when} {name} <{addr}>:",
        "outlook": ("差出人", "送信日時", "宛先", "件名"),
        "reply": "Re: ",
        "ooo": ("自動応答: ", "{date}まで不在にしております。"),
    },
    "zh": {
        "greet": ("{full}，您好！", "{full}："),
        "close": ("祝好", "此致\n敬礼"),
        "subjects": ("关于合作事宜", "报价单", "交货时间确认", "会议安排"),
        "sentences": (
            "感谢您的及时回复。",
            "请查收附件中的报价单。",
            "我们计划下{day}安排一次电话会议。",
            "关于交货时间，我们需要再确认一下。",
            "合同已经签好，请查收。",
            "如有任何问题，请随时与我联系。",
            "本月订单量约为{n}件。",
        ),
        "attribution": "在 {when}，{name} <{addr}> 写道：",
        "outlook": ("发件人", "发送时间", "收件人", "主题"),
        "reply": "回复：",
        "ooo": ("自动回复：", "我将休假至{date}，期间回复可能延迟。"),
    },
}
_REPLY_PREFIX = re.compile(r"^((re|aw|sv|fw|fwd|wg|rv)\s?:\s?|回复：|自动回复：)+", re.IGNORECASE)
_NUMS = (12, 20, 40, 75, 120, 250, 500, 1200)


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


# --------------------------------------------------------------------------------------------
# The small corpus
# --------------------------------------------------------------------------------------------


@dataclass
class _Node:
    """A message of a thread, kept so replies can chain and quote it."""

    mid: str
    refs: tuple[str, ...]
    sender: _Person
    to: tuple[_Person, ...]
    cc: tuple[_Person, ...]
    subject: str
    ts: int
    text: str
    lang: str
    folder: str = ""
    index: int = -1  # position in _Gen.out


class _Gen:
    def __init__(self, seed: int, own_address: str, scale: int) -> None:
        if "@" not in own_address:
            raise ValueError(f"own_address must be an email address, got {own_address!r}")
        self.seed = seed
        self.scale = scale
        self.own_domain = own_address.rsplit("@", 1)[1]
        self.me = _Person(OWN_NAME, "Alex", "Morgan", own_address, "en", 60, "thunderbird",
                          "Account Manager", "Mailsync Test GmbH", "+49 30 5550 1234",
                          f"https://{self.own_domain}")
        self.dana = _Person("Dana Kim", "Dana", "Kim", f"dana.kim@{self.own_domain}", "en", 60, "thunderbird",
                            "Sales Engineer", "Mailsync Test GmbH", "+49 30 5550 1240")
        self.people = _people()
        self.out: list[tuple[int, int, CorpusMessage]] = []  # (internaldate, order, message)
        self.mids: set[str] = set()
        self.sent_nodes: list[_Node] = []  # our thread messages, for auto-replies
        self.inbound_nodes: list[_Node] = []

    # -- plumbing ------------------------------------------------------------------------------

    def rng(self, section: str) -> Random:
        # a str seed is hashed with SHA-512 by Random: independent of PYTHONHASHSEED
        return Random(f"mailsync-corpus:{self.seed}:{section}")

    def add(self, folder: str, raw: bytes, flags: tuple[str, ...], internaldate: int, kind: str) -> int:
        assert kind in KINDS, kind
        assert _T2024 <= internaldate < _T2026, internaldate
        self.out.append((internaldate, len(self.out),
                         CorpusMessage(folder, raw, flags, float(internaldate), kind)))
        return len(self.out) - 1

    def mid(self, rng: Random, who: _Person, ts: int) -> str:
        client, dom = who.client, who.domain
        if client == "gmail":
            core = base64.urlsafe_b64encode(rng.randbytes(33)).decode("ascii")
            mid = f"<CA{core}@mail.gmail.com>"
        elif client == "outlook":
            pod = rng.choice(("AM0PR", "DB9PR", "VI1PR", "PAXPR", "BN6PR", "SJ0PR"))
            host = f"{pod}{rng.randint(1, 9):02d}MB{rng.randint(1000, 9999)}"
            region = "namprd" if who.tz < 0 else "eurprd"
            mid = f"<{host}{_hex(rng, 20).upper()}@{host}.{region}{rng.randint(1, 9):02d}.prod.outlook.com>"
        elif client == "apple":
            mid = f"<{_uuid(rng).upper()}@{dom}>"
        elif client == "foxmail":
            mid = f"<tencent_{_hex(rng, 20).upper()}@qq.com>"
        elif client == "iso2022":
            d = _dt(ts, who.tz)
            stamp = f"{d.year}{d.month:02d}{d.day:02d}{d.hour:02d}{d.minute:02d}{d.second:02d}"
            mid = f"<{stamp}.{_hex(rng, 4)}@{dom}>"
        else:
            mid = f"<{_uuid(rng)}@{dom}>"
        assert mid not in self.mids, mid
        self.mids.add(mid)
        return mid

    def _on_dsn(self, original_mid: str, results: tuple, date: int, mid: str) -> None:
        """Called with each bounce's per-recipient results before it is added; a hook for
        mailsync.testing.crm_corpus, which records what each message means. Does nothing here."""

    def workhours(self, rng: Random, ts: int, who: _Person) -> int:
        hour = ((ts + who.tz * 60) // 3600) % 24
        if hour < 7:
            ts += (7 - hour) * 3600 + rng.randint(0, 3000)
        elif hour >= 20:
            ts += (31 - hour) * 3600 + rng.randint(0, 3000)
        return min(ts, _T2026 - 7200)

    def received(self, rng: Random, sender_addr: str, arrival: int,
                 rcpt: str | None = None) -> list[tuple[str, str]]:
        dom = sender_addr.rsplit("@", 1)[1]
        rcpt = rcpt or self.me.addr
        qid = _hex(rng, 5).upper()
        ip = f"203.0.113.{rng.randint(2, 254)}"
        value = (f"from mail.{dom} (mail.{dom} [{ip}])"
                 f"\r\n\tby mx.{self.own_domain} (Postfix) with ESMTPS id {qid}"
                 f"\r\n\tfor <{rcpt}>; {_fmt_date(arrival, 0)}")
        return [("Return-Path", f"<{sender_addr}>"), ("Delivered-To", rcpt), ("Received", value)]

    def client_headers(self, rng: Random, who: _Person, subject: str) -> list[tuple[str, str]]:
        c = who.client
        if c == "outlook":
            topic = _REPLY_PREFIX.sub("", subject)
            return [("Thread-Topic", _enc_text(topic, *who.hdr)),
                    ("Thread-Index", base64.b64encode(rng.randbytes(22)).decode("ascii")),
                    ("X-MS-Has-Attach", ""),
                    ("Content-Language", {"de": "de-DE", "ru": "ru-RU"}.get(who.lang, "en-US")),
                    ("X-Mailer", "Microsoft Outlook 16.0")]
        if c == "thunderbird":
            return [("User-Agent", "Mozilla Thunderbird"), ("Content-Language", who.lang)]
        if c == "apple":
            return [("X-Mailer", "iPhone Mail (21F90)")]
        if c == "foxmail":
            return [("X-Mailer", "Foxmail 7.2.25.228[cn]")]
        if c == "iso2022":
            return [("X-Mailer", "Becky! ver. 2.81.04")]
        return []

    def body(self, rng: Random, who: _Person, text: str, attachments: Sequence[Part] = ()) -> Part:
        """The MIME body ``who``'s mail client would produce for ``text``."""
        c = who.client
        if c == "gmail":
            b = f"000000000000{_hex(rng, 11)}"
            main = _multipart("alternative", [_text_part(text, "plain", "UTF-8"),
                                              _text_part(_html_of(text, "UTF-8"), "html", "UTF-8",
                                                         "quoted-printable")], b)
        elif c == "outlook":
            cs = "iso-8859-1" if who.lang in ("de", "fr") and _encodable(text, "iso-8859-1") else "utf-8"
            b = f"_000_{_hex(rng, 12)}_"
            main = _multipart("alternative", [_text_part(text, "plain", cs, "quoted-printable"),
                                              _text_part(_html_of(text, cs), "html", cs, "quoted-printable")],
                                              b)
        elif c == "apple":
            main = _text_part(text, "plain", "utf-8", "quoted-printable")
        elif c == "foxmail":
            main = _text_part(text, "plain", "GB18030" if _encodable(text, "gb18030") else "utf-8", "base64")
        elif c == "iso2022":
            if _encodable(text, "iso-2022-jp"):
                main = _text_part(text, "plain", "ISO-2022-JP", "7bit")
            else:
                main = _text_part(text, "plain", "UTF-8", "base64")
        else:  # thunderbird and us
            main = _text_part(text, "plain", "UTF-8", "7bit", flowed=True)
        if not attachments:
            return main
        if c == "outlook":
            b = f"_004_{_hex(rng, 12)}_"
        elif c == "gmail":
            b = f"000000000000{_hex(rng, 11)}"
        else:
            b = f"------------{_hex(rng, 12)}"
        return _multipart("mixed", [main, *attachments], b)

    def compose(
        self, rng: Random, *, sender: _Person, to: Iterable[_Person], cc: Iterable[_Person] = (),
        subject: str, ts: int, part: Part, mid: str | None, in_reply_to: str | None = None,
        references: Iterable[str] = (), extra: Iterable[tuple[str, str]] = (), arrival: int | None = None,
        rcpt: str | None = None,
    ) -> bytes:
        hdr = sender.hdr
        headers: list[tuple[str, str]] = []
        if arrival is not None:
            headers += self.received(rng, sender.addr, arrival, rcpt)
        headers.append(("From", sender.fmt()))
        to = list(to)
        cc = list(cc)
        if to:
            headers.append(("To", ", ".join(p.fmt(hdr) for p in to)))
        if cc:
            headers.append(("Cc", ", ".join(p.fmt(hdr) for p in cc)))
        headers.append(("Subject", _enc_text(subject, *hdr)))
        headers.append(("Date", _fmt_date(ts, sender.tz)))
        if mid:
            headers.append(("Message-ID", mid))
        if in_reply_to:
            headers.append(("In-Reply-To", in_reply_to))
        refs = list(references)
        if refs:
            headers.append(("References", " ".join(refs)))
        headers += self.client_headers(rng, sender, subject)
        headers += list(extra)
        headers.append(("MIME-Version", "1.0"))
        return _render(headers + part[0], part[1])

    # -- text ---------------------------------------------------------------------------------

    def ctx(self, rng: Random, lang: str, ts: int, rcpt: _Person) -> dict[str, Any]:
        d = _dt(ts)
        return {
            "first": rcpt.first, "last": rcpt.last, "full": rcpt.full, "myfirst": self.me.first,
            "n": rng.choice(_NUMS), "n2": rng.choice(_NUMS), "product": rng.choice(_PRODUCTS),
            "day": rng.choice(_WEEKDAYS[lang]),
            "time": rng.choice(("9:00", "10:30", "11:00", "14:00", "15:30")),
            "inv": f"INV-{d.year}-{rng.randint(1000, 9999)}",
            "date": _iso_date(ts + rng.randint(2, 30) * 86400),
            "colleague": rng.choice(_COLLEAGUES), "city": rng.choice(_CITIES[lang]),
            "pct": rng.choice((3, 5, 7, 10)),
            "year": d.year + rng.randint(0, 1), "week": d.isocalendar()[1], "q": (d.month - 1) // 3 + 1,
            "project": rng.choice(_PROJECTS),
        }

    def subject(self, rng: Random, lang: str, ts: int, rcpt: _Person) -> str:
        return rng.choice(_LANG[lang]["subjects"]).format_map(self.ctx(rng, lang, ts, rcpt))

    def text(self, rng: Random, sender: _Person, rcpt: _Person, lang: str, ts: int, *,
             parent: _Node | None = None, sentences: tuple[int, int] = (2, 5), signature: bool = True,
             lead: str = "") -> str:
        L = _LANG[lang]
        ctx = self.ctx(rng, lang, ts, rcpt)
        picked = [s.format_map(ctx) for s in rng.sample(L["sentences"], rng.randint(*sentences))]
        cut = rng.randint(1, len(picked))
        paras = [picked[:cut], picked[cut:]]
        lines = [rng.choice(L["greet"]).format_map(ctx), ""]
        if lead:
            lines += [lead, ""]
        for para in paras:
            if not para:
                continue
            if lang in ("ja", "zh"):
                lines += para
            else:
                lines += textwrap.wrap(" ".join(para), 72)
            lines.append("")
        lines += [rng.choice(L["close"]), sender.sign]
        if signature:
            lines += ["", "-- ", *sender.signature()]
        text = "\n".join(lines) + "\n"
        if parent is not None:
            text += "\n" + self.quote(sender, parent)
        return text

    def quote(self, sender: _Person, parent: _Node) -> str:
        L = _LANG[sender.lang] if sender.lang in _LANG else _LANG["en"]
        d = _dt(parent.ts, sender.tz)
        psender = parent.sender
        lines = parent.text.rstrip("\n").split("\n")[:40]
        if sender.client == "outlook":
            h = L["outlook"]
            when = f"{d.year}-{d.month:02d}-{d.day:02d} {d.hour:02d}:{d.minute:02d}"
            head = [
                "_" * 32,
                f"{h[0]}: {psender.full} <{psender.addr}>",
                f"{h[1]}: {when}",
                f"{h[2]}: " + "; ".join(p.full for p in parent.to),
                f"{h[3]}: {parent.subject}",
                "",
            ]
            return "\n".join(head + lines) + "\n"
        if sender.lang == "de":
            when = f"{d.day:02d}.{d.month:02d}.{d.year} um {d.hour:02d}:{d.minute:02d}"
        elif sender.lang in ("ja", "zh"):
            when = f"{d.year}年{d.month}月{d.day}日 {d.hour:02d}:{d.minute:02d}"
        elif sender.lang in ("fr", "es", "ru"):
            when = f"{d.day:02d}/{d.month:02d}/{d.year} {d.hour:02d}:{d.minute:02d}"
        else:
            when = (f"{_DAY_NAMES[d.weekday()]}, {d.day} {_MONTH_NAMES[d.month - 1]} {d.year} "
                    f"at {d.hour:02d}:{d.minute:02d}")
        attribution = L["attribution"].format(when=when, name=psender.full, addr=psender.addr)
        quoted = [(">" + ln if ln.startswith(">") else "> " + ln) if ln else ">" for ln in lines]
        return attribution + "\n" + "\n".join(quoted) + "\n"

    def attachments(self, rng: Random, lang: str, count: int, sizes: tuple[int, ...]) -> list[Part]:
        names = {
            "de": ("Angebot_{n}.pdf", "Größenplan_Halle3.pdf", "Lieferschein_{n}.pdf", "Foto_Baustelle.jpg"),
            "fr": ("Devis_{n}.pdf", "Contrat signé.pdf", "photo_entrepôt.jpg"),
            "ja": ("見積書_{n}.pdf", "仕様書.docx", "写真.png"),
            "zh": ("报价单_{n}.pdf", "合同.docx", "截图.png"),
            "es": ("presupuesto_{n}.pdf", "foto.jpg"),
            "ru": ("Договор_{n}.pdf", "счёт.pdf"),
            "en": ("Quote-{n}.pdf", "Invoice-INV-{n}.pdf", "screenshot.png", "IMG_{n}.JPG",
                   "proposal_v{v}.docx",
                   "pricing_{n}.xlsx", "signed_contract.pdf", "diagram.png"),
        }[lang]
        parts = []
        for fn_tpl in rng.sample(names, min(count, len(names))):
            fn = fn_tpl.format(n=rng.randint(1000, 9999), v=rng.randint(2, 7))
            ext = fn.rsplit(".", 1)[1].lower()
            ctype, make = _ATT_TYPES[ext]
            parts.append(_attachment_part(fn, ctype, make(rng, rng.choice(sizes))))
        return parts

    # -- sections -----------------------------------------------------------------------------

    def threads(self) -> None:
        rng = self.rng("threads")
        for _ in range(40 * self.scale):
            group = [self.people[i] for i in rng.choices(_GROUPS, weights=_GROUP_WEIGHTS)[0]]
            ext = group if len(group) > 1 and rng.randint(1, 100) <= 35 else [rng.choice(group)]
            primary = ext[0]
            lang = primary.lang
            cc_dana = rng.randint(1, 100) <= 15
            start = self.workhours(rng, rng.randint(_T2024 + 86400, _T2026 - 35 * 86400), primary)
            n_msgs = rng.choice((2, 2, 3, 3, 3, 4, 4, 5, 6, 7))
            subject = self.subject(rng, lang, start, primary)
            # where the thread's inbound mail is filed
            if primary.company == "Müller Bau GmbH" and rng.randint(1, 100) <= 70:
                home = PROJECT
            elif lang in ("ja", "zh"):
                home = CJK
            elif start < _T2025:
                home = ARCHIVE_2024 if rng.randint(1, 100) <= 70 else INBOX
            elif start < _T2025_09:
                home = ARCHIVE if rng.randint(1, 100) <= 55 else INBOX
            else:
                home = INBOX
            nodes: list[_Node] = []
            answered: set[int] = set()
            for k in range(n_msgs):
                if k == 0:
                    parent = None
                    if rng.randint(1, 100) <= 45:
                        sender, to, cc = self.me, tuple(ext), ((self.dana,) if cc_dana else ())
                    else:
                        sender, to, cc = primary, (self.me,), tuple(ext[1:])
                    ts = start
                else:
                    parent = nodes[-1] if k < 2 or rng.randint(1, 10) > 1 else rng.choice(nodes[:-1])
                    others = [p for p in (*parent.to, *parent.cc) if p is not parent.sender]
                    if parent.sender is self.me:
                        sender = next((p for p in others if p in ext), primary)
                    elif len(ext) > 1 and rng.randint(1, 100) <= 20:
                        sender = next(p for p in ext if p is not parent.sender)
                    else:
                        sender = self.me
                    to = (parent.sender,)
                    cc_list: list[_Person] = []
                    for p in others:
                        if p is not sender and p not in cc_list and p not in to:
                            cc_list.append(p)
                    cc = tuple(cc_list)
                    ts = self.workhours(rng, max(n.ts for n in nodes) + rng.randint(600, 3 * 86400), sender)
                    if sender is self.me:
                        answered.add(nodes.index(parent))
                prefix = _LANG[sender.lang]["reply"] if sender.lang in _LANG else "Re: "
                subj = subject if parent is None else prefix + _REPLY_PREFIX.sub("", parent.subject)
                rcpt = to[0]
                text = self.text(rng, sender, rcpt, lang, ts, parent=parent)
                mid = self.mid(rng, sender, ts)
                refs = () if parent is None else (*parent.refs[-9:], parent.mid)
                atts: list[Part] = []
                if k > 0 and rng.randint(1, 100) <= 12:
                    atts = self.attachments(rng, lang, rng.choice((1, 1, 2)), (700, 2400, 6000, 14000, 30000))
                inbound = sender is not self.me
                arrival = ts + rng.randint(3, 90) if inbound else ts + 1
                raw = self.compose(
                    rng, sender=sender, to=to, cc=cc, subject=subj, ts=ts,
                    part=self.body(rng, sender, text, atts),
                    mid=mid, in_reply_to=parent.mid if parent else None, references=refs,
                    arrival=arrival if inbound else None,
                )
                node = _Node(mid, refs, sender, to, cc, subj, ts, text, lang, SENT if not inbound else home)
                node.index = self.add(node.folder, raw, (), arrival, "attachment" if atts else "thread")
                nodes.append(node)
                (self.inbound_nodes if inbound else self.sent_nodes).append(node)
            # flags now that we know which inbound messages we answered
            for i, node in enumerate(nodes):
                if node.sender is self.me:
                    flags = _flags("\\Seen")
                else:
                    recent = node.ts > _T2026 - 20 * 86400
                    fl = [] if recent and rng.randint(1, 100) <= 60 else ["\\Seen"]
                    if i in answered:
                        fl.append("\\Answered")
                    roll = rng.randint(1, 100)
                    if roll <= 10:
                        fl.append("\\Flagged")
                    elif roll <= 18:
                        fl.append("$Label1")
                    elif roll <= 22:
                        fl.append("$Forwarded")
                    elif roll <= 25:
                        fl += ["$Label2", "NonJunk"]
                    flags = _flags(*fl)
                ts0, order, m = self.out[node.index]
                self.out[node.index] = (ts0, order,
                                        CorpusMessage(m.folder, m.raw, flags, m.internaldate, m.kind))

    def standalone_attachments(self) -> None:
        rng = self.rng("attachments")
        pool = list(self.people)
        sizes = (400, 900, 2000, 4500, 9000, 15000, 26000, 42000, 65000)
        for i in range(10 * self.scale):
            sender = pool[(i * 7 + 3) % len(pool)]
            lang = sender.lang
            ts = self.workhours(rng, rng.randint(_T2024, _T2026 - 86400), sender)
            subject = self.subject(rng, lang, ts, self.me)
            text = self.text(rng, sender, self.me, lang, ts, sentences=(1, 3))
            atts = self.attachments(rng, lang, rng.choice((1, 1, 2, 3)), sizes)
            if i == 0:  # one big one
                atts.append(_attachment_part("site-survey-full.pdf", "application/pdf", _pdf(rng, 240_000)))
            raw = self.compose(rng, sender=sender, to=(self.me,), subject=subject, ts=ts,
                               part=self.body(rng, sender, text, atts),
                               mid=self.mid(rng, sender, ts), arrival=ts + 20)
            folder = ARCHIVE_2024 if ts + 20 < _T2025 else rng.choice((INBOX, ARCHIVE))
            self.add(folder, raw, _flags("\\Seen", *(("\\Flagged",) if i % 4 == 0 else ())), ts + 20,
                     "attachment")
        # ours, in Sent: contract with vCard + CSV, and an HTML mail with an inline logo
        for i in range(3 * self.scale):
            rcpt = self.people[(i * 5 + 2) % len(self.people)]
            ts = self.workhours(rng, rng.randint(_T2024, _T2026 - 86400), self.me)
            text = self.text(rng, self.me, rcpt, "en", ts, sentences=(1, 2))
            vcard = (f"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:{OWN_NAME}\r\nN:Morgan;Alex;;;\r\n"
                     f"ORG:Mailsync Test GmbH\r\nTITLE:Account Manager\r\nEMAIL;TYPE=work:{self.me.addr}\r\n"
                     f"TEL;TYPE=work:+49 30 5550 1234\r\nEND:VCARD\r\n")
            csv_rows = ["name,email,company,phone"] + [
                f'"{p.full}",{p.addr},"{p.company}",{p.phone}' for p in self.people[:8]
            ]
            atts = [
                _attachment_part("Alex Morgan.vcf", "text/vcard", vcard.encode("utf-8")),
                _attachment_part("contacts.csv", "text/csv",
                                 ("\r\n".join(csv_rows) + "\r\n").encode("utf-8")),
            ]
            if i % 3 == 2:
                cid = f"logo.{_hex(rng, 6)}@{self.own_domain}"
                htmltext = _html_of(text).replace("</body>", f'<img src="cid:{cid}" alt="logo"></body>')
                related = _multipart("related", [_text_part(htmltext, "html", "UTF-8", "quoted-printable"),
                                                 _attachment_part("logo.png", "image/png", _png(rng, 1800),
                                                                  inline_cid=cid)],
                                     f"------------rel{_hex(rng, 10)}", '; type="text/html"')
                alt = _multipart("alternative",
                                 [_text_part(text, "plain", "UTF-8", "7bit", flowed=True), related],
                                 f"------------alt{_hex(rng, 10)}")
                part = _multipart("mixed", [alt, *atts], f"------------{_hex(rng, 12)}")
            else:
                part = self.body(rng, self.me, text, atts)
            raw = self.compose(rng, sender=self.me, to=(rcpt,),
                               subject=f"Contact details and {rng.choice(_PRODUCTS)} list",
                               ts=ts, part=part, mid=self.mid(rng, self.me, ts))
            self.add(SENT, raw, _flags("\\Seen"), ts + 1, "attachment")

    def newsletters(self) -> None:
        rng = self.rng("newsletters")
        lists = (
            ("Brightwave Insights", "insights@news.brightwave.example", "insights.news.brightwave.example",
             "news.brightwave.example", "en", ("utf-8", "B"), 10,
             ("Brightwave Insights #{n}: {topic}",),
             ("\U0001F4CA Dashboards that people actually read", "Churn signals in your support inbox",
              "Benchmark report {year}", "5 metrics for {q}", "What's new: alerts and exports")),
            ("Fachverband Bau e.V.", "rundbrief@fachverband-bau.example", "rundbrief.fachverband-bau.example",
             "fachverband-bau.example", "de", ("iso-8859-1", "Q"), 7,
             ("Rundbrief {n}/{year}: {topic}",),
             ("Größere Förderprogramme für Hallenbau", "Neue Normen für Stahlträger",
              "Messe München: Rückblick",
              "Fachkräfte: Umfrageergebnisse")),
            ("Gadget Daily", "hello@gadgetdaily.example", "daily.gadgetdaily.example", "gadgetdaily.example",
             "en", ("utf-8", "B"), 7,
             ("\U0001F4F1 {topic}", "Today: {topic} \u26A1"),
             ("The foldable everyone returns", "Battery myths, busted", "Headphones under €100",
              "Smart plugs compared")),
        )
        for name, addr, list_id, host, lang, hdr, issues, subj_tpls, topics in lists:
            sender = _Person(name, name, "", addr, lang, 60 if lang == "de" else 0, "newsletter", hdr=hdr)
            ts = rng.randint(_T2024, _T2024 + 40 * 86400)
            for n in range(1, issues * self.scale + 1):
                ts += rng.randint(14, 50) * 86400 // max(1, self.scale)
                if ts >= _T2026 - 86400:
                    break
                d = _dt(ts)
                topic = rng.choice(topics).format(year=d.year, q=f"Q{(d.month - 1) // 3 + 1}")
                subject = rng.choice(subj_tpls).format(n=n, year=d.year, topic=topic)
                token = _hex(rng, 8)
                paras = [
                    f"{topic}", "",
                    textwrap.fill(" ".join(rng.sample(_LANG[lang]["sentences"], 3)).format_map(self.ctx(rng,
                        lang, ts, self.me)), 72),
                    "", f"Read more: https://{host}/issues/{n}?utm_source=newsletter&utm_medium=email", "",
                    "You are receiving this because you subscribed with " + self.me.addr + ".",
                    f"Unsubscribe: https://{host}/u/{token}",
                ]
                text = "\n".join(paras) + "\n"
                charset = "iso-8859-1" if lang == "de" else "utf-8"
                if lang == "de":
                    part = _text_part(text, "plain", charset, "quoted-printable")
                else:
                    part = _multipart("alternative", [_text_part(text, "plain", charset, "quoted-printable"),
                                                      _text_part(_html_of(text), "html", charset,
                                                                 "quoted-printable")],
                                      f"==NL_{_hex(rng, 10)}==")
                mid = f"<{d.year}{d.month:02d}{d.day:02d}.{token}.{n}@{host}>"
                assert mid not in self.mids
                self.mids.add(mid)
                extra = [
                    ("List-Id", f"{_enc_text(name, *hdr)} <{list_id}>"),
                    ("List-Unsubscribe",
                     f"<mailto:unsubscribe+{token}@{host}?subject=unsubscribe>, <https://{host}/u/{token}>"),
                    ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
                    ("Precedence", "bulk"),
                    ("Feedback-ID", f"{n}:{token[:6]}:newsletter:{host}"),
                ]
                raw = self.compose(rng, sender=sender, to=(self.me,), subject=subject, ts=ts, part=part,
                                   mid=mid,
                                   extra=extra, arrival=ts + 40)
                folder = NEWSLETTERS if rng.randint(1, 100) <= 75 else INBOX
                self.add(folder, raw, _flags(*(("\\Seen",) if rng.randint(1, 100) <= 70 else ())), ts + 40,
                         "newsletter")

    def notifications(self) -> None:
        rng = self.rng("notifications")
        senders = (
            (_Person("Tracker", "Tracker", "", "notifications@tracker.example", "en", 0, "bot"),
             "[mailsync/core] Issue #{n}: {what}",
             ("Sync stalls on large folders", "UIDVALIDITY change not detected",
                                                    "Flags lost after reconnect"),
                                                    [("Reply-To", "noreply@tracker.example")]),
            (_Person("CloudCo Accounts", "CloudCo", "", "no-reply@accounts.cloudco.example", "en", 0, "bot"),
             "Security alert: new sign-in from {what}", ("Firefox on Linux", "Safari on iPhone"),
             [("Auto-Submitted", "auto-generated")]),
            (_Person("Brightwave Billing", "Billing", "", "noreply@billing.brightwave.example", "en", 0,
                     "bot"),
             "Your invoice INV-{year}-{n} is available", ("",), [("Auto-Submitted", "auto-generated")]),
            (_Person("", "", "", "do-not-reply@shipping.acme-logistics.example", "en", -300, "bot"),
             "Shipment 1Z{n}{n} {what}", ("delivered", "out for delivery", "delayed"), []),
        )
        for i in range(8 * self.scale):
            sender, tpl, whats, extra = senders[i % len(senders)]
            ts = rng.randint(_T2024, _T2026 - 86400)
            n = rng.randint(100, 9999)
            subject = tpl.format(n=n, what=rng.choice(whats), year=_dt(ts).year)
            text = (f"{subject}\n\nThis is an automated message from {sender.domain}. "
                    "Please do not reply.\n\n"
                    f"View details: https://{sender.domain}/n/{_hex(rng, 8)}\n")
            raw = self.compose(rng, sender=sender, to=(self.me,), subject=subject, ts=ts,
                               part=_text_part(text, "plain", "us-ascii"),
                               mid=f"<{_uuid(rng)}@{sender.domain}>",
                               extra=extra, arrival=ts + 5)
            self.add(INBOX if ts > _T2025 else ARCHIVE_2024, raw, _flags("\\Seen"), ts + 5, "notification")

    def calendar(self) -> None:
        rng = self.rng("calendar")
        for sender in (self.people[10], self.people[0]):
            ts = self.workhours(rng, rng.randint(_T2024, _T2026 - 30 * 86400), sender)
            start = ts + rng.randint(2, 14) * 86400
            start -= start % 1800
            ds, de_ = _dt(start), _dt(start + 3600)

            def ics_t(d: datetime) -> str:
                return f"{d.year}{d.month:02d}{d.day:02d}T{d.hour:02d}{d.minute:02d}00Z"

            subject = "Quarterly review" if sender.lang == "en" else "Abstimmung Größe Halle 3"
            uid = f"{_uuid(rng)}@{sender.domain}"
            ics = "\r\n".join([
                "BEGIN:VCALENDAR", "PRODID:-//Google Inc//Google Calendar 70.9054//EN", "VERSION:2.0",
                "METHOD:REQUEST",
                "BEGIN:VEVENT", f"DTSTART:{ics_t(ds)}", f"DTEND:{ics_t(de_)}", f"DTSTAMP:{ics_t(_dt(ts))}",
                f"ORGANIZER;CN={sender.full}:mailto:{sender.addr}",
                "ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;"
                f"CN={OWN_NAME}:mailto:{self.me.addr}",
                f"UID:{uid}", f"SUMMARY:{subject}", "LOCATION:Video call", "SEQUENCE:0", "STATUS:CONFIRMED",
                "END:VEVENT", "END:VCALENDAR", "",
            ])
            text = (f"{sender.full} has invited you to: {subject}\n"
                    f"{_iso_date(start)} {ds.hour:02d}:{ds.minute:02d} UTC\n")
            part = _multipart("alternative", [_text_part(text, "plain", "UTF-8"),
                                              _text_part(ics, "calendar", "UTF-8", "7bit",
                                                         extra="; method=REQUEST")],
                              f"000000000000{_hex(rng, 11)}")
            raw = self.compose(rng, sender=sender, to=(self.me,), subject=f"Invitation: {subject}", ts=ts,
                               part=part,
                               mid=self.mid(rng, sender, ts), arrival=ts + 9)
            self.add(INBOX, raw, _flags("\\Seen"), ts + 9, "calendar")

    def auto_replies(self) -> None:
        rng = self.rng("auto_replies")
        used: list[_Person] = []
        for node in self.sent_nodes:
            rcpt = node.to[0]
            if rcpt in used or rcpt.lang not in ("en", "de", "fr"):
                continue
            used.append(rcpt)
            L = _LANG[rcpt.lang]
            prefix, body_tpl = L["ooo"]
            ts = node.ts + rng.randint(20, 180)
            ctx = self.ctx(rng, rcpt.lang, ts, self.me)
            text = body_tpl.format_map(ctx)
            if rcpt.lang not in ("ja", "zh"):
                text = textwrap.fill(text, 72)
            text += "\n"
            extra = [("Auto-Submitted", "auto-replied"), ("X-Autoreply", "yes")]
            if rcpt.client == "outlook":
                extra.append(("X-Auto-Response-Suppress", "All"))
            raw = self.compose(rng, sender=rcpt, to=(self.me,), subject=prefix + node.subject, ts=ts,
                               part=_text_part(text, "plain", "utf-8"), mid=self.mid(rng, rcpt, ts),
                               in_reply_to=node.mid, references=(node.mid,), extra=extra, arrival=ts + 4)
            self.add(INBOX if ts > _T2025_09 else (ARCHIVE_2024 if ts < _T2025 else ARCHIVE), raw,
                     _flags("\\Seen"), ts + 4, "auto_reply")
            if len(used) == 4:
                break

    def bounces(self) -> None:
        rng = self.rng("bounces")
        mta = f"mx.{self.own_domain}"
        daemon = _Person("Mail Delivery System", "", "", f"MAILER-DAEMON@{mta}", "en", 0, "bot")
        cases = (
            # (recipients of our original, per-recipient results, subject of the DSN, attach whole message)
            ((_Person("Paul Walsh", "Paul", "Walsh", "p.walsh@acme-logistics.example", "en", -300,
                      "outlook"),),
             (("p.walsh@acme-logistics.example", "failed", "5.1.1", "mx1.acme-logistics.example",
               "smtp; 550 5.1.1 <p.walsh@acme-logistics.example>: Recipient address rejected: "
               "User unknown in virtual mailbox table"),),
             "Undelivered Mail Returned to Sender", False, "Handover of the Chicago account"),
            ((self.people[9],
              _Person("Wang Lei", "Lei", "Wang", "l.wang@hztech.example", "zh", 480, "thunderbird")),
             (("li.na@hztech.example", "delayed", "4.2.2", "mx.hztech.example",
               "smtp; 452 4.2.2 <li.na@hztech.example>: Mailbox full, quota exceeded"),
              ("l.wang@hztech.example", "failed", "5.1.1", "mx.hztech.example",
               "smtp; 550 5.1.1 <l.wang@hztech.example>: User unknown")),
             "Undelivered Mail Returned to Sender", False, "Samples for the Hangzhou pilot"),
            ((_Person("Jana Nováková", "Jana", "Nováková", "jana.novakova@gmal.com", "en", 60, "gmail"),),
             (("jana.novakova@gmal.com", "failed", "5.4.4", None,
               "X-Postfix; Host or domain name not found. "
               "Name service error for name=gmal.com type=MX: Host not found"),),
             "Undelivered Mail Returned to Sender", True, "Photos from the trade fair"),
        )
        for rcpts, results, dsn_subject, whole, orig_subject in cases:
            ts = self.workhours(rng, rng.randint(_T2024 + 86400, _T2026 - 10 * 86400), self.me)
            text = self.text(rng, self.me, rcpts[0], "en", ts, sentences=(1, 3))
            omid = self.mid(rng, self.me, ts)
            orig = self.compose(rng, sender=self.me, to=rcpts, subject=orig_subject, ts=ts,
                                part=self.body(rng, self.me, text), mid=omid)
            self.add(SENT, orig, _flags("\\Seen"), ts + 1, "plain")
            bts = ts + (rng.randint(4, 8) * 3600 if results[0][1] == "delayed" else rng.randint(2, 40))
            qid = _hex(rng, 5).upper()
            arrival = _fmt_date(ts + 1, 60)
            per_msg = [f"Reporting-MTA: dns; {mta}", f"X-Postfix-Queue-ID: {qid}",
                       f"X-Postfix-Sender: rfc822; {self.me.addr}", f"Arrival-Date: {arrival}",
                       f"Original-Message-ID: {omid}"]
            blocks = ["\r\n".join(per_msg)]
            human = [f"This is the mail system at host {mta}.", ""]
            if any(r[1] == "failed" for r in results):
                human += ["I'm sorry to have to inform you that your message could not",
                          "be delivered to one or more recipients. It's attached below.", ""]
            if any(r[1] == "delayed" for r in results):
                human += ["####################################################################",
                          "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
                          "####################################################################", "",
                          "Your message could not be delivered for more than 4 hour(s).",
                          "It will be retried until it is 5 day(s) old.", ""]
            human += ["For further assistance, please send mail to postmaster.", "",
                      "                   The mail system", ""]
            for addr, action, status, remote, diag in results:
                rec = [f"Final-Recipient: rfc822; {addr}", f"Original-Recipient: rfc822;{addr}",
                       f"Action: {action}", f"Status: {status}"]
                if remote:
                    rec.append(f"Remote-MTA: dns; {remote}")
                rec.append(f"Diagnostic-Code: {diag}")
                if action == "delayed":
                    rec.append(f"Will-Retry-Until: {_fmt_date(ts + 5 * 86400, 60)}")
                blocks.append("\r\n".join(rec))
                human.append(f"<{addr}>: {diag.split('; ', 1)[1]}")
            report = ("\r\n\r\n".join(blocks) + "\r\n").encode("ascii")
            b = f"{qid}.{bts}/{mta}"
            parts: list[Part] = [
                ([("Content-Description", "Notification"), ("Content-Type", "text/plain; charset=us-ascii")],
                 ("\r\n".join(human) + "\r\n").encode("ascii")),
                ([("Content-Description", "Delivery report"), ("Content-Type", "message/delivery-status")],
                 report),
            ]
            if whole:
                parts.append(([("Content-Description", "Undelivered Message"),
                               ("Content-Type", "message/rfc822")], orig))
            else:
                head = orig.split(b"\r\n\r\n", 1)[0] + b"\r\n"
                parts.append(([("Content-Description", "Undelivered Message Headers"),
                               ("Content-Type", "text/rfc822-headers")], head))
            body = _multipart("report", parts, b, "; report-type=delivery-status")
            subject = "Delayed Mail (still being retried)" if results[0][1] == "delayed" else dsn_subject
            headers = [("Return-Path", "<>"), ("Delivered-To", self.me.addr),
                       ("Received", f"by {mta} (Postfix)\r\n\tid {qid}; {_fmt_date(bts, 0)}"),
                       ("Date", _fmt_date(bts, 0)), ("From", daemon.fmt()), ("Subject", subject),
                       ("To", self.me.addr), ("Message-ID", f"<{qid}.{bts}@{mta}>"),
                       ("Auto-Submitted", "auto-replied"), ("MIME-Version", "1.0")] + body[0]
            self.mids.add(f"<{qid}.{bts}@{mta}>")
            self._on_dsn(omid, results, bts, f"<{qid}.{bts}@{mta}>")
            self.add(INBOX if bts > _T2025 else ARCHIVE_2024, _render(headers, body[1]), _flags("\\Seen"),
                     bts + 1, "bounce")

    def crowd(self) -> None:
        """The 40-recipient announcement, cc_self and bcc_self."""
        rng = self.rng("crowd")
        firsts = ("Olivia", "Noah", "Emma", "Liam", "Mia", "Lucas", "Sofia", "Elias", "Hannah", "Mateo",
                  "Aylin",
                  "Jonas", "Chloé", "Björn", "Ines", "Kenji", "Mei", "Omar", "Nora", "Felix")
        lasts = ("Fischer", "Garcia", "Rossi", "Nielsen", "Dubois", "Kowalski", "Silva", "Tanaka", "Novak",
                 "Meyer", "Okafor", "Brennan", "Lindqvist", "Costa", "Wagner")
        domains = ("northwind.example", "contoso.example", "fabrikam.example", "initech.example",
                   "globex.example", "umbrella.example")
        translit = str.maketrans({"é": "e", "ö": "o"})
        crowd: list[_Person] = []
        seen: set[str] = set()
        while len(crowd) < 39:
            f, la, dom = rng.choice(firsts), rng.choice(lasts), rng.choice(domains)
            addr = f"{f}.{la}@{dom}".lower().translate(translit)
            if addr in seen:
                continue
            seen.add(addr)
            crowd.append(_Person(f"{f} {la}", f, la, addr, "en", 0, "outlook"))
        sender = self.people[4]  # Mike Johnson, Globex EMEA
        to, cc = crowd[:29], [*crowd[29:33], self.me, *crowd[33:]]
        ts = self.workhours(rng, rng.randint(_T2025, _T2026 - 60 * 86400), sender)
        text = ("Dear partners,\n\n" + textwrap.fill(
            "I am delighted to announce that Globex is opening a new EMEA hub in Lisbon next quarter. "
            "Your account managers stay the same, and nothing changes for existing contracts. "
            "We will share the new delivery schedules in a partner briefing on the first Tuesday "
            "of next month.", 72)
            + "\n\nBest regards,\nMike\n\n-- \n" + "\n".join(sender.signature()) + "\n")
        raw = self.compose(rng, sender=sender, to=to, cc=cc,
                           subject="Announcement: Globex opens new EMEA hub in Lisbon",
                           ts=ts, part=self.body(rng, sender, text), mid=self.mid(rng, sender, ts),
                           arrival=ts + 30)
        self.add(INBOX, raw, _flags("\\Seen"), ts + 30, "announcement")

        anna, juergen, priya, ahmed, karen, mike = (self.people[i] for i in (1, 0, 10, 11, 3, 4))
        for sender, to_, cc_, folder, lang in (
            (anna, (juergen,), (self.me, self.dana), PROJECT, "de"),
            (priya, (ahmed,), (self.me,), INBOX, "en"),
        ):
            ts = self.workhours(rng, rng.randint(_T2024, _T2026 - 86400), sender)
            text = self.text(rng, sender, to_[0], lang, ts)
            subj = "Projektstand Größe Halle 3" if lang == "de" else f"Intro: {OWN_NAME} (Mailsync) <> Ahmed"
            raw = self.compose(rng, sender=sender, to=to_, cc=cc_, subject=subj, ts=ts,
                               part=self.body(rng, sender, text),
                               mid=self.mid(rng, sender, ts), arrival=ts + 12)
            self.add(folder, raw, _flags("\\Seen", "$Label1"), ts + 12, "cc_self")
        ts = self.workhours(rng, rng.randint(_T2025, _T2026 - 86400), karen)
        text = self.text(rng, karen, mike, "en", ts)
        raw = self.compose(rng, sender=karen, to=(mike,), subject="Renewal terms for Mailsync Test GmbH",
                           ts=ts,
                           part=self.body(rng, karen, text), mid=self.mid(rng, karen, ts), arrival=ts + 12)
        self.add(INBOX, raw, _flags(), ts + 12, "bcc_self")

    def i18n(self) -> None:
        rng = self.rng("i18n")
        lena, mike, taro, wang, olga, emily, sofia = (self.people[i] for i in (15, 4, 8, 16, 13, 17, 18))
        cases = (
            (lena, "Grüße aus Köln - Rückfrage zur Größe", "Hallo Alex,\n\nkurze Rückfrage: Passt die Größe "
             "der Lieferung (12 Paletten à 1,2 m³)?\n\nGrüße aus Köln\nLena\n", "iso-8859-1",
             "quoted-printable", ("iso-8859-1", "Q")),
            (mike, "Final offer: €1,250 — “no further discounts”",
             "Hi Alex,\n\nOur final offer is €1,250 per unit "
             "– that’s the “floor” price.\n\nMike\n", "windows-1252", "quoted-printable",
             ("windows-1252", "Q")),
            (taro, "新製品のご案内",
             "モーガン様\n\nいつもお世話になっております。\n新製品の資料をお送りいたします。\n\n山田\n",
             "iso-2022-jp", "7bit", ("iso-2022-jp", "B")),
            (wang, "关于样品的问题",
             "Alex 您好：\n\n样品已经收到，质量很好。\n下周我们讨论一下价格。\n\n王伟\n",
             "gb2312", "base64", ("gb2312", "B")),
            (olga, "Счёт на оплату №42",
             "Здравствуйте, Алекс!\n\nВо вложении счёт на оплату.\n\nС уважением,\nОльга\n",
             "koi8-r", "quoted-printable", ("koi8-r", "B")),
            (emily, "\U0001F389 Congrats on the launch! \U0001F680",
             "Alex!!\n\nSaw the news \U0001F44F \U0001F973 "
             "- huge congrats to the whole team.\n\nEmily \u2764\ufe0f\n", "utf-8", "8bit", ("utf-8", "B")),
            (sofia, "Καλημέρα από την Αθήνα", "Γεια σου Alex,\n\nΤα λέμε την Τρίτη στην Αθήνα.\n\nΣοφία\n",
             "utf-8", "quoted-printable", ("utf-8", "Q")),
        )
        for sender, subject, text, charset, cte, hdr in cases:
            ts = self.workhours(rng, rng.randint(_T2024, _T2026 - 86400), sender)
            s = _Person(sender.display, sender.first, sender.last, sender.addr, sender.lang, sender.tz,
                        "plain", hdr=hdr)
            raw = self.compose(rng, sender=s, to=(self.me,), subject=subject, ts=ts,
                               part=_text_part(text, "plain", charset, cte), mid=self.mid(rng, sender, ts),
                               arrival=ts + 7)
            self.add(INBOX if ts > _T2025_09 else (ARCHIVE_2024 if ts < _T2025 else ARCHIVE), raw,
                     _flags("\\Seen"), ts + 7, "i18n")

    def plain(self) -> None:
        rng = self.rng("plain")
        people = self.people
        order = (1, 4, 7, 10, 13, 16, 19, 14, 12, 6)
        for i in range(8 * self.scale):
            sender = people[order[i % len(order)]]
            ts = self.workhours(rng, rng.randint(_T2024, _T2026 - 86400), sender)
            text = self.text(rng, sender, self.me, sender.lang, ts, sentences=(1, 3))
            extra: list[tuple[str, str]] = []
            if sender.addr.startswith("seanm"):
                extra.append(("Reply-To", "Sean Murphy <sean.murphy@murphy-consulting.example>"))
            raw = self.compose(rng, sender=sender, to=(self.me,),
                               subject=self.subject(rng, sender.lang, ts, self.me),
                               ts=ts, part=self.body(rng, sender, text), mid=self.mid(rng, sender, ts),
                               extra=extra,
                               arrival=ts + 15)
            folder = INBOX if ts > _T2025_09 else (ARCHIVE_2024 if ts < _T2025 else ARCHIVE)
            self.add(folder, raw, _flags(*(("\\Seen",) if ts < _T2026 - 15 * 86400 else ())), ts + 15,
                     "plain")
        for i in range(5 * self.scale):
            rcpt = people[(i * 5 + 2) % len(people)]
            ts = self.workhours(rng, rng.randint(_T2024, _T2026 - 86400), self.me)
            text = self.text(rng, self.me, rcpt, rcpt.lang, ts, sentences=(1, 3))
            raw = self.compose(rng, sender=self.me, to=(rcpt,), cc=((self.dana,) if i % 2 else ()),
                               subject=self.subject(rng, rcpt.lang, ts, rcpt), ts=ts,
                               part=self.body(rng, self.me, text),
                               mid=self.mid(rng, self.me, ts))
            self.add(SENT, raw, _flags("\\Seen"), ts + 1, "plain")
        # on-behalf-of (Sender: differs from From)
        karen = people[3]
        ts = self.workhours(rng, rng.randint(_T2025, _T2026 - 86400), karen)
        raw = self.compose(rng, sender=karen, to=(self.me,), subject="Signed NDA", ts=ts,
                           part=self.body(rng, karen,
                                          self.text(rng, karen, self.me, "en", ts, sentences=(1, 2))),
                           mid=self.mid(rng, karen, ts),
                           extra=[("Sender", "Executive Assistant <assistant@globex.example>")],
                           arrival=ts + 15)
        self.add(INBOX, raw, _flags("\\Seen", "\\Flagged"), ts + 15, "plain")
        # html only
        zoe = people[6]
        ts = self.workhours(rng, rng.randint(_T2025, _T2026 - 86400), zoe)
        htmltext = _html_of(self.text(rng, zoe, self.me, "en", ts)).replace("<body>",
            '<body style="font-family:Helvetica">')
        raw = self.compose(rng, sender=zoe, to=(self.me,), subject="Roadmap preview (Nordlys)", ts=ts,
                           part=_text_part(htmltext, "html", "utf-8", "quoted-printable"),
                           mid=self.mid(rng, zoe, ts),
                           arrival=ts + 15)
        self.add(INBOX, raw, _flags("\\Seen"), ts + 15, "html_only")

    def drafts(self) -> None:
        rng = self.rng("drafts")
        tb_info = [("X-Mozilla-Draft-Info",
                    "internal/draft; vcard=0; receipt=0; DSN=0; uuencode=0; attachmentreminder=0; "
                    "deliveryformat=1")]
        base = _T2026 - 90 * 86400
        # a reply draft to an inbound thread message
        parents = [n for n in self.inbound_nodes if n.ts > base - 200 * 86400] or self.inbound_nodes
        parent = parents[-1]
        ts = min(parent.ts + rng.randint(600, 86400), _T2026 - 3600)
        text = self.text(rng, self.me, parent.sender, parent.lang, ts, parent=parent, sentences=(1, 2))
        raw = self.compose(rng, sender=self.me, to=(parent.sender,),
                           subject="Re: " + _REPLY_PREFIX.sub("", parent.subject),
                           ts=ts, part=self.body(rng, self.me, text), mid=self.mid(rng, self.me, ts),
                           in_reply_to=parent.mid, references=(*parent.refs, parent.mid), extra=tb_info)
        self.add(DRAFTS, raw, _flags("\\Seen", "\\Draft"), ts, "draft")
        specs = (
            ((), "Entwurf: Angebot Größe 2026", "de", self.people[0]),
            ((self.people[5],), "Relance : devis signé", "fr", self.people[5]),
            ((self.people[8],), "ご挨拶", "ja", self.people[8]),
            ((), "", "en", self.people[10]),  # empty subject, no recipients
        )
        for to, subject, lang, rcpt in specs:
            ts = rng.randint(base, _T2026 - 86400)
            text = self.text(rng, self.me, rcpt, lang, ts, sentences=(1, 2), signature=False)
            raw = self.compose(rng, sender=self.me, to=to, subject=subject, ts=ts,
                               part=self.body(rng, self.me, text),
                               mid=self.mid(rng, self.me, ts), extra=tb_info)
            self.add(DRAFTS, raw, _flags("\\Seen", "\\Draft"), ts, "draft")

    def copies(self) -> None:
        rng = self.rng("copies")
        zoe = self.people[6]
        ts = self.workhours(rng, rng.randint(_T2025, _T2025_09), zoe)
        text = self.text(rng, zoe, self.me, "en", ts)
        raw = self.compose(rng, sender=zoe, to=(self.me,), subject="Nordlys x Mailsync: next steps", ts=ts,
                           part=self.body(rng, zoe, text), mid=self.mid(rng, zoe, ts), arrival=ts + 11)
        self.add(INBOX, raw, _flags("\\Seen", "\\Flagged"), ts + 11, "copy")
        self.add(ARCHIVE, raw, _flags("\\Seen", "$Label1"), ts + 11, "copy")

    def malformed(self) -> None:
        rng = self.rng("malformed")
        P = self.people

        def simple(sender: _Person, subject: str, *, ts: int | None = None, mid: bool = True,
                   part: Part | None = None, extra: Iterable[tuple[str, str]] = (),
                   **kw: Any) -> tuple[bytes, int]:
            ts = ts or self.workhours(rng, rng.randint(_T2024, _T2026 - 86400), sender)
            text = self.text(rng, sender, self.me, sender.lang, ts, sentences=(1, 2))
            raw = self.compose(rng, sender=sender, to=(self.me,), subject=subject, ts=ts,
                               part=part or self.body(rng, sender, text),
                               mid=self.mid(rng, sender, ts) if mid else None,
                               extra=extra, arrival=ts + 6, **kw)
            return raw, ts + 6

        def folder_for(ts: int) -> str:
            return INBOX if ts > _T2025_09 else (ARCHIVE_2024 if ts < _T2025 else ARCHIVE)

        raw, t = simple(P[14], "Quick question", mid=False)
        self.add(folder_for(t), raw, _flags("\\Seen"), t, "malformed:no_message_id")

        raw, t = simple(P[12], "Sin fecha")
        raw = _drop_header(raw, "Date")
        self.add(folder_for(t), raw, _flags("\\Seen"), t, "malformed:no_date")

        raw, t = simple(P[17], "Dinner on friday?")
        raw = _replace_header(raw, "Date", "Fri, 32 Foo 2025 25:61:00 +9900")
        self.add(folder_for(t), raw, _flags("\\Seen"), t, "malformed:bad_date")

        raw, t = simple(P[2], "Bare LF line endings",
                        part=self.body(rng, _person_with(P[2], client="thunderbird"),
                        "Hi Alex,\n\nThis one was saved by a Unix tool.\n\nJohn\n"))
        self.add(folder_for(t), raw.replace(b"\r\n", b"\n"), _flags("\\Seen"), t, "malformed:bare_lf")

        raw, t = simple(P[0], "PLACEHOLDER-SUBJECT")
        raw = raw.replace(b"PLACEHOLDER-SUBJECT", "Grüße aus München".encode("latin-1"))
        raw = _replace_header(raw, "From", "PLACEHOLDER-FROM")
        raw = raw.replace(b"PLACEHOLDER-FROM",
                          "Jürgen Groß <juergen.gross@mueller-bau.example>".encode(), 1)
        self.add(folder_for(t), raw, _flags("\\Seen"), t, "malformed:8bit_header")

        body = "Guten Tag,\n\nbitte die Maße prüfen: 3×4 m, Größe L.\n\nGrüße\n".encode("latin-1", "replace")
        part: Part = ([("Content-Type", 'text/plain; charset="x-unknown-8859"'),
                       ("Content-Transfer-Encoding", "8bit")],
                      body.replace(b"\n", b"\r\n"))
        raw, t = simple(P[1], "PLACEHOLDER-SUBJECT", part=part)
        raw = raw.replace(b"PLACEHOLDER-SUBJECT", b"=?x-unknown-8859?Q?Ma=DFe_und_Gr=F6=DFe?=")
        self.add(folder_for(t), raw, _flags("\\Seen"), t, "malformed:invalid_charset")

        part = ([("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", "8bit")],
                "Bonjour,\r\n\r\nCi-joint le reçu. Très bien reçu, merci.\r\n\r\nFrançois\r\n"
                .encode("cp1252"))
        raw, t = simple(P[5], "Reçu", part=part)
        self.add(folder_for(t), raw, _flags("\\Seen"), t, "malformed:charset_mismatch")

        text = "Hi Alex,\n\nPlease see the attached layout.\n\nPriya\n"
        good = _multipart("mixed",
                          [_text_part(text), _attachment_part("layout.png", "image/png", _png(rng, 3000))],
                          "----=_Part_1234_5678.1700000000000")
        broken = (good[0],
                  good[1].replace(b"----=_Part_1234_5678.1700000000000",
                                  b"----=_Part_1234_5679.1700000000000"))
        raw, t = simple(P[10], "Layout (see attachment)", part=broken)
        self.add(folder_for(t), raw, _flags("\\Seen"), t, "malformed:broken_boundary")

        good = _multipart("mixed", [_text_part("Hi,\n\nContract attached.\n\nAhmed\n"),
                                    _attachment_part("contract.pdf", "application/pdf", _pdf(rng, 5000))],
                          "000000000000trunc0a1b2c3d4e")
        truncated = (good[0], good[1][: int(len(good[1]) * 0.6)].rsplit(b"\r\n", 1)[0] + b"\r\n")
        raw, t = simple(P[11], "Contract (truncated upload)", part=truncated)
        self.add(folder_for(t), raw, _flags("\\Seen"), t, "malformed:truncated_multipart")

        parent = self.inbound_nodes[len(self.inbound_nodes) // 2]
        fillers = [f"<{_hex(rng, 12)}.{i}@legacy-mailer.example>" for i in range(22)]
        refs = " ".join([*fillers, *parent.refs, parent.mid])
        raw, t = simple(parent.sender, "Re: " + _REPLY_PREFIX.sub("", parent.subject),
                        ts=min(parent.ts + 3 * 86400, _T2026 - 86400),
                        in_reply_to=parent.mid)
        raw = _insert_header_raw(raw, "Message-ID", b"References: " + refs.encode("ascii"))
        self.add(folder_for(t), raw, _flags("\\Seen"), t, "malformed:overlong_header")

        sean = P[14]
        ts = self.workhours(rng, rng.randint(_T2025, _T2025_09), sean)
        dup = self.mid(rng, sean, ts)
        raw1, t1 = simple(sean, "Tickets for Thursday", ts=ts, mid=False)
        raw2, t2 = simple(sean, "Re: parking at the venue", ts=ts + 5 * 86400, mid=False)
        self.add(INBOX, _insert_header_raw(raw1, "Date", b"Message-ID: " + dup.encode("ascii")),
                 _flags("\\Seen"), t1,
                 "malformed:duplicate_message_id")
        self.add(ARCHIVE, _insert_header_raw(raw2, "Date", b"Message-ID: " + dup.encode("ascii")),
                 _flags("\\Seen"), t2,
                 "malformed:duplicate_message_id")

    def run(self) -> list[CorpusMessage]:
        self.threads()
        self.standalone_attachments()
        self.newsletters()
        self.notifications()
        self.calendar()
        self.auto_replies()
        self.bounces()
        self.crowd()
        self.i18n()
        self.plain()
        self.drafts()
        self.copies()
        self.malformed()
        self.out.sort(key=lambda e: (e[0], e[1]))
        return [m for _, _, m in self.out]


def _person_with(p: _Person, **changes: Any) -> _Person:
    fields = {f: getattr(p, f) for f in _Person.__dataclass_fields__}
    fields.update(changes)
    return _Person(**fields)


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


def generate_corpus(seed: int = 1, *, own_address: str = OWN_ADDRESS,
                    size: str = "small") -> list[CorpusMessage]:
    """The test corpus for ``seed``: a few hundred messages (size="small"; "medium" and "large"
    repeat the ordinary parts 5x / 25x), ordered by internaldate. Same arguments, same bytes."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    return _Gen(int(seed), own_address, SIZES[size]).run()


# --------------------------------------------------------------------------------------------
# Bulk stream for benchmarks
# --------------------------------------------------------------------------------------------

_BULK_WORDS = (
    "the", "and", "for", "with", "order", "invoice", "delivery", "meeting", "project", "update", "please",
    "thanks", "schedule", "pricing", "contract", "team", "review", "warehouse", "shipment", "customer",
    "quarter", "budget", "proposal", "report", "next", "week", "call", "we", "will", "can", "you", "our",
    "regarding", "attached", "confirm", "details", "Größe", "Grüße", "Lieferung", "déjà", "réunion",
    "naïve", "café", "日本", "会议", "Здравствуйте", "ok", "yes", "status", "numbers", "Q3", "2025",
)
_BULK_BLOCK = 50  # messages per planning block
_BULK_LARGE_PER_BLOCK = 1  # 100 KB - 2 MB attachment
_BULK_MEDIUM_PER_BLOCK = 5  # 10 KB - 100 KB attachment
_BULK_STRATA = 40  # large sizes are stratified over this many consecutive large messages


@functools.lru_cache(maxsize=2)
def _bulk_pools(seed: int) -> tuple[bytes, bytes, tuple[tuple[str, str], ...], tuple[str, ...]]:
    rng = Random(f"mailsync-bulk-pools:{seed}")
    lines = []
    for _ in range(3000):
        words = []
        length = 0
        target = rng.randint(30, 74)
        while length < target:
            w = rng.choice(_BULK_WORDS)
            words.append(w)
            length += len(w) + 1
        line = " ".join(words)
        lines.append((line[0].upper() + line[1:] + ".").encode("utf-8") + b"\r\n")
    for _ in range(300):
        lines.append(b"\r\n")
    text_pool = b"".join(rng.choices(lines, k=24000))  # ~1.1 MB
    b64_pool = _b64(rng.randbytes(3_150_000))  # ~4.3 MB of 76-char lines
    people = _people()
    senders = []
    firsts = ("Olivia", "Noah", "Emma", "Liam", "Mia", "Lucas", "Sofia", "Elias", "Hannah", "Mateo", "Jürgen",
              "Zoë", "Kenji", "Mei", "Omar", "Nora")
    lasts = ("Fischer", "Garcia", "Rossi", "Nielsen", "Dubois", "Kowalski", "Silva", "Tanaka", "Novak",
             "Groß")
    domains = ("northwind.example", "contoso.example", "fabrikam.example", "gmail.com", "outlook.com",
               "gmx.de",
               "initech.example", "umbrella.example")
    translit = str.maketrans({"ü": "ue", "ë": "e", "ß": "ss"})
    for i in range(200):
        f, la, dom = firsts[i % len(firsts)], lasts[(i * 7) % len(lasts)], domains[(i * 3) % len(domains)]
        addr = f"{f}.{la}{i}@{dom}".lower().translate(translit)
        senders.append((_fmt_addr(f"{f} {la}", addr), addr))
    for p in people:
        senders.append((p.fmt(), p.addr))
    subjects = []
    for i in range(300):
        lang = ("en", "en", "en", "de", "fr", "es", "ja", "zh")[i % 8]
        tpl = _LANG[lang]["subjects"][i % len(_LANG[lang]["subjects"])]
        ctx = {"first": "Alex", "last": "Morgan", "full": "Alex Morgan", "myfirst": "Alex", "n": i, "n2": i,
               "product": _PRODUCTS[i % len(_PRODUCTS)], "day": _WEEKDAYS[lang][i % 5], "time": "10:00",
               "inv": f"INV-2025-{1000 + i}", "date": "2025-03-01", "colleague": "Dana Kim",
               "city": _CITIES[lang][i % len(_CITIES[lang])], "pct": 5, "year": 2024 + i % 2,
               "week": 1 + i % 52,
               "q": 1 + i % 4, "project": _PROJECTS[i % len(_PROJECTS)]}
        subjects.append(_enc_text(tpl.format_map(ctx), "utf-8", "Q" if i % 2 else "B"))
    return text_pool, b64_pool, tuple(senders), tuple(subjects)


def generate_bulk(n: int = 20000, *, folders: int = 10, seed: int = 1,
                  own_address: str = OWN_ADDRESS) -> Iterator[CorpusMessage]:
    """Stream ``n`` messages over ``folders`` folders ("Bulk00", "Bulk01", ...) for benchmarks.

    Sizes are long-tailed around a 21.7 KB mean (20,000 messages ~ 435 MB): ~88% plain text of
    2-10 KB, 10% with a 10-100 KB attachment, 2% with a 100 KB - 2 MB one. Bodies are slices of
    pre-made random blocks (no email library per message), so it streams hundreds of MB/s.
    Every message has a unique Message-ID; ~30% are replies (In-Reply-To an earlier one).
    Deterministic for a seed on one machine (uses float math, unlike generate_corpus).
    """
    if n < 0 or folders < 1:
        raise ValueError("n must be >= 0 and folders >= 1")
    text_pool, b64_pool, senders, subjects = _bulk_pools(int(seed))
    rng = Random(f"mailsync-bulk:{seed}:{folders}")
    width = max(2, len(str(folders - 1)))
    names = [f"Bulk{k:0{width}d}" for k in range(folders)]
    cum: list[float] = []
    total = 0.0
    for k in range(folders):  # Zipf-ish: the first folders are the big ones, like INBOX and Sent
        total += 1.0 / (k + 1) ** 0.7
        cum.append(total)
    own_domain = own_address.rsplit("@", 1)[1]
    own_fmt = _fmt_addr(OWN_NAME, own_address)
    span = _T2026 - _T2024 - 86400
    step = span / max(n, 1)
    recent: list[str] = []
    strata: list[int] = []
    plan: list[str] = []
    tlen, blen = len(text_pool), len(b64_pool)
    line = 78  # base64 line incl. CRLF
    log_medium, log_large = math.log(10.0), math.log(20.0)
    for i in range(n):
        if i % _BULK_BLOCK == 0:
            plan = ["text"] * _BULK_BLOCK
            picks = rng.sample(range(_BULK_BLOCK), _BULK_LARGE_PER_BLOCK + _BULK_MEDIUM_PER_BLOCK)
            for j, pos in enumerate(picks):
                plan[pos] = "large" if j < _BULK_LARGE_PER_BLOCK else "medium"
        tier = plan[i % _BULK_BLOCK]
        ts = _T2024 + int(i * step) + rng.randint(0, max(1, int(step)))
        from_hdr, from_addr = senders[rng.randrange(len(senders))]
        dom = from_addr.rsplit("@", 1)[1]
        mid = f"<{i:08d}.{rng.getrandbits(40):010x}.s{seed}@bulk.{own_domain}>"
        date = _fmt_date(ts, 60)
        reply = recent and rng.random() < 0.3
        subject = subjects[rng.randrange(len(subjects))]
        head = [
            f"Return-Path: <{from_addr}>\r\nDelivered-To: {own_address}\r\n"
            f"Received: from mail.{dom} (mail.{dom} [203.0.113.{rng.randint(2, 254)}])\r\n"
            f"\tby mx.{own_domain} (Postfix) with ESMTPS id {rng.getrandbits(40):010X}\r\n"
            f"\tfor <{own_address}>; {date}\r\n"
            f"From: {from_hdr}\r\nTo: {own_fmt}\r\n"
            f"Subject: {'Re: ' if reply else ''}{subject}\r\nDate: {date}\r\nMessage-ID: {mid}\r\n"
        ]
        if reply:
            parent = recent[rng.randrange(len(recent))]
            head.append(f"In-Reply-To: {parent}\r\nReferences: {parent}\r\n")
        head.append("MIME-Version: 1.0\r\n")
        # text body: lognormal, median ~4 KB, clipped
        tsize = min(12_000, max(900, int(rng.lognormvariate(8.30, 0.45))))
        start = text_pool.find(b"\r\n", rng.randrange(tlen - tsize - 1000)) + 2
        end = text_pool.find(b"\r\n", start + tsize) + 2
        text = memoryview(text_pool)[start:end]
        if tier == "text":
            head.append("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
            raw = b"".join((("".join(head)).encode("utf-8"), text))
            kind = "thread" if reply else "plain"
        else:
            if tier == "large":
                if not strata:
                    strata = list(range(_BULK_STRATA))
                    rng.shuffle(strata)
                u = (strata.pop() + rng.random()) / _BULK_STRATA
                asize = int(100_000 * math.exp(u * log_large))
            else:
                asize = int(10_000 * math.exp(rng.random() * log_medium))
            nlines = max(1, asize // line)
            a0 = rng.randrange((blen - nlines * line) // line) * line
            att = memoryview(b64_pool)[a0:a0 + nlines * line]
            boundary = f"----=_Part_{i}_{rng.getrandbits(32):08x}"
            ext, ctype = rng.choice((("pdf", "application/pdf"), ("jpg", "image/jpeg"),
                                     ("zip", "application/zip"),
                                     ("png", "image/png")))
            head.append(f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
                        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        f"Content-Transfer-Encoding: 8bit\r\n\r\n")
            mid_part = (f"\r\n--{boundary}\r\nContent-Type: {ctype}; name=\"file{i}.{ext}\"\r\n"
                        f"Content-Disposition: attachment; filename=\"file{i}.{ext}\"\r\n"
                        f"Content-Transfer-Encoding: base64\r\n\r\n").encode("ascii")
            raw = b"".join((("".join(head)).encode("utf-8"), text, mid_part, att,
                            f"\r\n--{boundary}--\r\n".encode("ascii")))
            kind = "attachment"
        r = rng.random()
        if r < 0.80:
            flags: tuple[str, ...] = ("\\Seen",)
        elif r < 0.90:
            flags = ("\\Seen", "\\Answered")
        elif r < 0.95:
            flags = ("\\Seen", "\\Flagged")
        elif r < 0.97:
            flags = ("$Label1",)
        else:
            flags = ()
        folder = names[_bisect(cum, rng.random() * total)]
        recent.append(mid)
        if len(recent) > 64:
            del recent[0]
        yield CorpusMessage(folder, raw, flags, float(ts), kind)


def _bisect(cum: list[float], x: float) -> int:
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


# --------------------------------------------------------------------------------------------
# Fixture directory and loading
# --------------------------------------------------------------------------------------------

MANIFEST = "manifest.json"
_EML = re.compile(r"^\d{4,}\.eml$")


def write_corpus(messages: Iterable[CorpusMessage], out_dir: Path,
                 *, meta: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Write ``out_dir/0001.eml ...`` and ``out_dir/manifest.json``, in the order given.

    Stale ``NNNN.eml`` files from an earlier, larger corpus are removed; other files are left
    alone. Returns the manifest entries. ``meta`` (e.g. seed, size) is stored under "meta".
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    written: set[str] = set()
    for i, m in enumerate(messages, start=1):
        name = f"{i:04d}.eml"
        path = out_dir / name
        if not (path.exists() and path.read_bytes() == m.raw):  # keep mtimes of unchanged files
            path.write_bytes(m.raw)
        written.add(name)
        entries.append({
            "file": name, "folder": m.folder, "flags": list(m.flags), "internaldate": m.internaldate,
            "kind": m.kind, "size": len(m.raw), "sha256": m.sha256,
        })
    for stale in sorted(out_dir.iterdir()):
        if _EML.match(stale.name) and stale.name not in written:
            stale.unlink()
    doc: dict[str, Any] = {
        "format": "mailsync-corpus/1",
        "note": "generated by scripts/gen-corpus (mailsync.testing.corpus); do not edit by hand",
        "meta": dict(meta or {}),
        "count": len(entries),
        "messages": entries,
    }
    text = json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=False) + "\n"
    (out_dir / MANIFEST).write_text(text, encoding="utf-8", newline="\n")
    return entries


def read_corpus(out_dir: Path, *, verify: bool = True) -> list[CorpusMessage]:
    """The messages of a directory written by write_corpus, in manifest order.

    verify: raise ValueError if a file's sha256 does not match the manifest.
    """
    out_dir = Path(out_dir)
    doc = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    result = []
    for e in doc["messages"]:
        raw = (out_dir / e["file"]).read_bytes()
        if verify and hashlib.sha256(raw).hexdigest() != e["sha256"]:
            raise ValueError(f"{out_dir / e['file']}: sha256 does not match {MANIFEST} "
                             "(regenerate with scripts/gen-corpus)")
        result.append(CorpusMessage(e["folder"], raw, tuple(e["flags"]), float(e["internaldate"]), e["kind"]))
    return result


class MessageSink(Protocol):
    """What load_into needs: mailsync.testing.dovecot.DovecotServer fits."""

    def write_message(self, user: str, folder: str, raw: bytes, flags: str = "",
                      internaldate: float | None = None) -> Any: ...

    def force_resync(self, user: str) -> Any: ...


def load_into(server: MessageSink, user: str, messages: Iterable[CorpusMessage], *,
              keywords: bool = True) -> int:
    """Write every message with ``server.write_message``, then ``server.force_resync(user)`` once.

    keywords=False drops IMAP keywords ($Forwarded, $Label1, NonJunk) and keeps system flags, for
    servers that cannot store keywords. Returns the number of messages written.
    """
    count = 0
    for m in messages:
        server.write_message(user, m.folder, m.raw, flags=m.flag_string(keywords=keywords),
                             internaldate=m.internaldate)
        count += 1
    server.force_resync(user)
    return count
