"""A raw message -> MessageFacts: the one place the CRM reads mail.

Owns: lenient parsing of the header section with the stdlib email package (its compat32 policy:
raw strings, no header registry, nothing raised on malformed input; fields split at unfolded line
starts, only the fields the CRM reads parsed), getaddresses, decode_header, parsedate_tz, decoding of
RFC 2047 encoded-words (unknown charsets fall back to UTF-8, then Latin-1) and of raw 8-bit header
bytes (UTF-8, else Windows-1252), unfolding, Message-ID / In-Reply-To / References tokens, the Date
(an unparseable or absurd Date is None: the caller falls back to INTERNALDATE), address lists
(canonicalised by addresses.py), the bulk and auto-reply signals, List-Unsubscribe targets, the
mailing list that delivered it (List-Post, List-Id), the Resent-From of a redirected copy, whether
it is a machine report and the bounce it reports (bounces.py), an optional text preview, and the
message key: a SHA-256 of Message-ID, From, Date, Subject, To and Cc as written, so the same
message in two folders or two accounts (whatever its Received lines) is one message, and two
different messages that share a Message-ID are two.
Must not: touch the store, the network or the clock. Never raises on malformed mail.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailsync.crm.addresses import canonical
from mailsync.crm.autoreply import is_auto_reply
from mailsync.crm.bounces import is_machine_report, read_bounce
from mailsync.crm.dsn import BounceRecipient, DeliveryReport
from mailsync.crm.junk import is_bulk
from mailsync.crm.unsubscribe import mailto_targets

__all__ = ["HEAD_LIMIT", "Mailbox", "MessageFacts", "header_section", "parse_message", "read_headers"]

HEAD_LIMIT = 8 * 1024  # bytes of a message read for its headers; reports and longer headers are re-read whole

_POLICY = email.policy.compat32
_MSGID = re.compile(r"<([^<>\s]+)>")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_WS = re.compile(r"\s+")
_MIN_TS, _MAX_TS = 0, 7258118400  # 1970 .. 2200


@dataclass(frozen=True, slots=True)
class Mailbox:
    address: str  # canonical (the contact key)
    email: str  # as written, lowercased
    name: str  # decoded display name, "" when none


@dataclass(frozen=True, slots=True)
class MessageFacts:
    key: str
    message_id: str | None
    date: int | None  # seconds since the epoch, UTC; None when missing or unparseable
    from_: Mailbox | None
    to: tuple[Mailbox, ...] = ()
    cc: tuple[Mailbox, ...] = ()
    bcc: tuple[Mailbox, ...] = ()
    subject: str = ""
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    bulk: bool = False
    auto_reply: bool = False
    list_unsubscribe: tuple[str, ...] = ()  # mailto targets (canonical)
    list_subscribe: tuple[str, ...] = ()
    is_report: bool = False  # a machine report by its headers: a bounce, feedback or DMARC report (bounces.py)
    report: DeliveryReport | None = None
    preview: str | None = None
    resent_from: str | None = None  # canonical Resent-From: who redirected this copy (mutt, Apple Mail)
    lists: tuple[str, ...] = ()  # the mailing list that delivered it: List-Post mailto, List-Id as address
    recipients: tuple[Mailbox, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seen: dict[str, Mailbox] = {}
        for mb in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(mb.address, mb)
        object.__setattr__(self, "recipients", tuple(seen.values()))

    @property
    def sender_of_copy(self) -> str | None:
        """Who sent this copy, as our identity learns it from \\Sent: the Resent-From of a redirected
        copy, else the From; None for a machine report (a bounce saved in Sent is nobody's mail)."""
        if self.is_report:
            return None
        if self.resent_from is not None:
            return self.resent_from
        return self.from_.address if self.from_ is not None else None

    @property
    def parents(self) -> tuple[str, ...]:
        """The ids JWZ threads this message under, oldest first: References, then In-Reply-To when
        References does not end with it, then (for a bounce) the returned message's id."""
        refs = list(self.references)
        if self.in_reply_to and self.in_reply_to not in refs:
            refs.append(self.in_reply_to)
        if self.report and self.report.original_message_id and self.report.original_message_id not in refs:
            refs.append(self.report.original_message_id)
        return tuple(refs)

    # -- storage form ------------------------------------------------------------------------

    def to_json(self) -> dict:
        def mbs(items: Iterable[Mailbox]) -> list:
            return [[m.address, m.email, m.name] for m in items]

        doc: dict = {"k": self.key, "i": self.message_id, "d": self.date,
                     "f": mbs([self.from_]) if self.from_ else [], "t": mbs(self.to), "c": mbs(self.cc),
                     "b": mbs(self.bcc), "s": self.subject, "r": self.in_reply_to, "R": list(self.references),
                     "x": (1 if self.bulk else 0) | (2 if self.auto_reply else 0) | (4 if self.is_report else 0)}
        if self.list_unsubscribe:
            doc["u"] = list(self.list_unsubscribe)
        if self.list_subscribe:
            doc["S"] = list(self.list_subscribe)
        if self.report is not None:
            doc["D"] = [self.report.original_message_id,
                        [[r.address, r.action, r.status, r.bounce, r.diagnostic] for r in self.report.recipients]]
        if self.preview is not None:
            doc["p"] = self.preview
        if self.resent_from is not None:
            doc["F"] = self.resent_from
        if self.lists:
            doc["L"] = list(self.lists)
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> "MessageFacts":
        def mbs(items: list) -> tuple[Mailbox, ...]:
            return tuple(Mailbox(a, e, n) for a, e, n in items)

        report = None
        if "D" in doc:
            orig, recs = doc["D"]
            report = DeliveryReport(orig, tuple(BounceRecipient(*r) for r in recs))
        flags = doc.get("x", 0)
        frm = mbs(doc["f"])
        return cls(key=doc["k"], message_id=doc["i"], date=doc["d"], from_=frm[0] if frm else None,
                   to=mbs(doc["t"]), cc=mbs(doc["c"]), bcc=mbs(doc["b"]), subject=doc["s"],
                   in_reply_to=doc["r"], references=tuple(doc["R"]), bulk=bool(flags & 1),
                   auto_reply=bool(flags & 2), is_report=bool(flags & 4),
                   list_unsubscribe=tuple(doc.get("u", ())), list_subscribe=tuple(doc.get("S", ())),
                   report=report, preview=doc.get("p"), resent_from=doc.get("F"),
                   lists=tuple(doc.get("L", ())))

    def replace_address(self, old: str, new: str) -> "MessageFacts":
        """A copy in which every mailbox of ``old`` becomes ``new`` (erasure of a forgotten address)."""
        def fix(mb: Mailbox | None) -> Mailbox | None:
            return Mailbox(new, new, "") if mb is not None and mb.address == old else mb

        report = self.report
        if report is not None:
            report = DeliveryReport(report.original_message_id, tuple(
                BounceRecipient(new, r.action, r.status, r.bounce, "") if r.address == old else r
                for r in report.recipients))
        return MessageFacts(
            key=self.key, message_id=self.message_id, date=self.date, from_=fix(self.from_),
            to=tuple(fix(m) for m in self.to), cc=tuple(fix(m) for m in self.cc),
            bcc=tuple(fix(m) for m in self.bcc), subject=self.subject, in_reply_to=self.in_reply_to,
            references=self.references, bulk=self.bulk, auto_reply=self.auto_reply,
            list_unsubscribe=tuple(new if a == old else a for a in self.list_unsubscribe),
            list_subscribe=tuple(new if a == old else a for a in self.list_subscribe),
            is_report=self.is_report, report=report, preview=self.preview,
            resent_from=new if self.resent_from == old else self.resent_from, lists=self.lists)


# ------------------------------------------------------------------------------------------ parsing


def header_section(raw: bytes) -> bytes:
    """The bytes up to and including the blank line that ends the header section (CRLF or bare LF)."""
    crlf = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n")
    ends = [i + n for i, n in ((crlf, 4), (lf, 2)) if i >= 0]
    return raw[: min(ends)] if ends else raw


def _text(value: str) -> str:
    """Unfold, and turn surrogate-escaped 8-bit bytes back into text (UTF-8, else Windows-1252)."""
    value = _FOLD.sub("", value)
    if not value.isascii():
        try:
            raw = value.encode("ascii", "surrogateescape")
        except UnicodeEncodeError:
            return value.strip()
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            value = raw.decode("cp1252", "replace")
    return value.strip()


# The fields the CRM reads. Only these reach the email parser: real mail carries dozens of Received,
# DKIM, ARC and X- lines that would cost more to parse than everything else together.
_WANTED = re.compile(
    rb"(?i)(from|sender|resent-from|to|cc|bcc|subject|date|message-id|in-reply-to|references|list-[a-z-]+|precedence|"
    rb"x-precedence|auto-submitted|x-auto[a-z-]*|x-ms-exchange-inbox-rules-loop|content-type|x-failed-recipients|"
    rb"x-apple-action)[ \t]*:")
_FIELD_START = re.compile(rb"\r?\n(?![ \t])")


def wanted_fields(head: bytes) -> bytes:
    """The header section cut down to the fields the CRM reads (folding kept), as a header block
    the email package's BytesHeaderParser reads the same way."""
    return b"".join(f + b"\r\n" for f in _FIELD_START.split(head) if _WANTED.match(f)) + b"\r\n"


def read_headers(data: bytes) -> dict[str, list[str]]:
    """Lowercased field name -> unfolded, decoded values, in order, of the fields the CRM reads.

    The header section is cut into fields where a line does not start with white space (folding), and
    each field wanted is read by the email package's compat32 policy, as its parser would -- without
    feeding every Received and DKIM line through the parser first."""
    out: dict[str, list[str]] = {}
    for line in _FIELD_START.split(header_section(data)):
        if _WANTED.match(line):
            name, value = _POLICY.header_source_parse([line.decode("ascii", "surrogateescape") + "\r\n"])
            out.setdefault(name.lower(), []).append(_text(value))
    return out


def _decode_bytes(data: bytes, charset: str | None) -> str:
    if charset:
        cs = charset.lower().split("*", 1)[0]  # RFC 2231 language suffix
        if cs not in ("unknown-8bit", "x-unknown"):
            try:
                return data.decode(cs)
            except (LookupError, UnicodeDecodeError):
                pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_words(value: str) -> str:
    """RFC 2047 encoded-words -> text; anything undecodable degrades, never raises."""
    if "=?" not in value:
        return value
    try:
        parts = email.header.decode_header(value)
    except Exception:
        return value
    out = []
    for chunk, charset in parts:
        out.append(_decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk)
    return _WS.sub(" ", "".join(out)).strip()


def _mailboxes(values: list[str] | None) -> tuple[Mailbox, ...]:
    if not values:
        return ()
    return _mailboxes_of(tuple(values))


@functools.lru_cache(maxsize=32768)  # From/To values repeat: the same correspondents, our own address
def _mailboxes_of(values: tuple[str, ...]) -> tuple[Mailbox, ...]:
    out: list[Mailbox] = []
    seen: set[str] = set()
    for name, addr in email.utils.getaddresses(values):
        if "@" not in addr:
            continue
        key = canonical(addr)
        if key is None or key in seen:
            continue
        seen.add(key)
        name = decode_words(name).strip().strip("'\"").strip()
        if canonical(name) == key:  # "a@b.c <a@b.c>": no name
            name = ""
        out.append(Mailbox(key, addr.strip().lower(), name))
    return tuple(out)


def _first_id(values: list[str] | None) -> str | None:
    if not values:
        return None
    m = _MSGID.search(values[0])
    if m:
        return f"<{m.group(1)}>"
    token = values[0].strip()
    return f"<{token}>" if token and not any(c.isspace() for c in token) and "@" in token else None


def _ids(values: list[str] | None) -> tuple[str, ...]:
    if not values:
        return ()
    out: list[str] = []
    for v in values:
        for m in _MSGID.finditer(v):
            i = f"<{m.group(1)}>"
            if i not in out:
                out.append(i)
    return tuple(out)


def _date(values: list[str] | None) -> int | None:
    if not values:
        return None
    try:
        parsed = email.utils.parsedate_tz(values[0])
        if parsed is None:
            return None
        offset = parsed[9] or 0  # no zone: UTC (mktime_tz would use the local zone)
        if abs(offset) > 14 * 3600 or not (1 <= parsed[1] <= 12 and 1 <= parsed[2] <= 31):
            return None
        if not (0 <= parsed[3] <= 23 and 0 <= parsed[4] <= 59 and 0 <= parsed[5] <= 60):
            return None
        ts = email.utils.mktime_tz((*parsed[:9], offset))
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    return int(ts) if _MIN_TS <= ts <= _MAX_TS else None


def _first(values: list[str] | None) -> str | None:
    return values[0] if values else None


def message_key(h: dict[str, list[str]]) -> str:
    parts = [(_first(h.get(n)) or "") for n in ("message-id", "from", "date", "subject", "to", "cc")]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _preview(raw: bytes, limit: int = 200) -> str | None:
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        for part in msg.walk():
            if part.get_content_type() == "text/plain" and not part.get_filename():
                data = part.get_payload(decode=True) or b""
                text = _decode_bytes(data, part.get_content_charset())
                lines = [ln for ln in text.splitlines() if not ln.startswith(">")]
                return _WS.sub(" ", " ".join(lines)).strip()[:limit]
    except Exception:  # pragma: no cover - a preview is best effort
        return None
    return None


def parse_message(raw: bytes, *, preview: bool = False) -> MessageFacts:
    """Facts of one message. ``raw`` may be cut after the headers (see HEAD_LIMIT), except for a
    delivery report, whose report part is read from ``raw`` (the caller re-reads it whole when
    ``is_report`` and the report came out None), and for ``preview``."""
    h = read_headers(raw)
    frm = _mailboxes(h.get("from")) or _mailboxes(h.get("sender"))
    precedence = (_first(h.get("precedence")) or "").lower() or None
    auto_submitted = ((_first(h.get("auto-submitted")) or "").split(";", 1)[0].strip().lower()) or None
    unsub_values = h.get("list-unsubscribe")
    message_id = _first_id(h.get("message-id"))
    subject = decode_words(_first(h.get("subject")) or "")
    report_flag = is_machine_report(h, frm[0].address if frm else None, subject)
    return MessageFacts(
        key=message_key(h),
        message_id=message_id,
        date=_date(h.get("date")),
        from_=frm[0] if frm else None,
        to=_mailboxes(h.get("to")),
        cc=_mailboxes(h.get("cc")),
        bcc=_mailboxes(h.get("bcc")),
        subject=subject,
        in_reply_to=_first_id(h.get("in-reply-to")),
        references=_ids(h.get("references")),
        bulk=is_bulk(list_id=_first(h.get("list-id")), list_unsubscribe=bool(unsub_values),
                     precedence=precedence, auto_submitted=auto_submitted),
        auto_reply=is_auto_reply(h),
        list_unsubscribe=tuple(a for v in unsub_values or () for a in mailto_targets(v)),
        list_subscribe=tuple(a for v in h.get("list-subscribe") or () for a in mailto_targets(v)),
        is_report=report_flag,
        report=read_bounce(raw, h, frm[0].address if frm else None, subject, message_id) if report_flag else None,
        preview=_preview(raw) if preview else None,
        resent_from=resent[0].address if (resent := _mailboxes(h.get("resent-from"))) else None,
        lists=list_addresses_of(h),
    )


_LIST_ID = re.compile(r"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)\.([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)>")


def list_addresses_of(h: dict[str, list[str]]) -> tuple[str, ...]:
    """The addresses of the list a message came through: the List-Post mailto targets, and the
    List-Id read as an address (``<linux-kernel.vger.kernel.org>`` -> ``linux-kernel@vger.kernel.org``,
    the convention of Mailman, vger, Google Groups and most list managers)."""
    out: list[str] = []
    for v in h.get("list-post") or ():
        out.extend(a for a in mailto_targets(v) if a not in out)
    lid = _first(h.get("list-id"))
    if lid:
        m = _LIST_ID.search(lid) or _LIST_ID.search(f"<{lid.strip()}>")
        if m:
            a = canonical(f"{m.group(1)}@{m.group(2)}")
            if a and a not in out:
                out.append(a)
    return tuple(out)
