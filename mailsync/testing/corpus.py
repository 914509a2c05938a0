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
boundaries vary. Pure stdlib; imports no mailsync module but its own parts: corpus_base.py
(constants, CorpusMessage, the encoders, attachment payloads), corpus_people.py (the cast),
corpus_kinds.py and corpus_odd.py (what each kind of message looks like), corpus_bulk.py
(generate_bulk). ``fixtures/corpus`` is this
module's output for seed 1 (``scripts/gen-corpus``); tests/unit/test_corpus.py fails if it drifts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from random import Random
from typing import Any, Protocol

from mailsync.testing.corpus_base import (
    ARCHIVE,
    ARCHIVE_2024,
    CJK,
    DRAFTS,
    INBOX,
    NEWSLETTERS,
    PROJECT,
    SENT,
    _ATT_TYPES,
    _DAY_NAMES,
    _MONTH_NAMES,
    _T2024,
    _T2026,
    ALL_FOLDERS,
    FOLDERS,
    KINDS,
    MALFORMED_KINDS,
    OWN_ADDRESS,
    OWN_NAME,
    SIZES,
    SYSTEM_FLAGS,
    CorpusMessage,
    Part,
    _attachment_part,
    _dt,
    _enc_text,
    _encodable,
    _fmt_date,
    _hex,
    _html_of,
    _iso_date,
    _multipart,
    _render,
    _text_part,
    _uuid,
    is_keyword,
)
from mailsync.testing.corpus_bulk import generate_bulk
from mailsync.testing.corpus_kinds import _Kinds
from mailsync.testing.corpus_odd import _OddKinds
from mailsync.testing.corpus_people import (
    _CITIES,
    _COLLEAGUES,
    _LANG,
    _NUMS,
    _PRODUCTS,
    _PROJECTS,
    _REPLY_PREFIX,
    _WEEKDAYS,
    _Node,
    _people,
    _Person,
)

__all__ = [
    "ALL_FOLDERS",
    "ARCHIVE",
    "ARCHIVE_2024",
    "CJK",
    "DRAFTS",
    "INBOX",
    "NEWSLETTERS",
    "PROJECT",
    "SENT",
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


# --------------------------------------------------------------------------------------------
# The small corpus
# --------------------------------------------------------------------------------------------


class _Gen(_Kinds, _OddKinds):
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




def generate_corpus(seed: int = 1, *, own_address: str = OWN_ADDRESS,
                    size: str = "small") -> list[CorpusMessage]:
    """The test corpus for ``seed``: a few hundred messages (size="small"; "medium" and "large"
    repeat the ordinary parts 5x / 25x), ordered by internaldate. Same arguments, same bytes."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    return _Gen(int(seed), own_address, SIZES[size]).run()


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

