"""The rest of the small corpus's kinds: a crowd of recipients, legacy charsets, plain messages,
drafts, copies in two folders and malformed mail (a mixin of corpus._Gen, as corpus_kinds is).

Owns: what each of these kinds looks like. Must not: write files or talk to servers.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Any

from mailsync.testing.corpus_base import (
    _T2024,
    _T2025,
    _T2025_09,
    _T2026,
    ARCHIVE,
    ARCHIVE_2024,
    DRAFTS,
    INBOX,
    OWN_NAME,
    PROJECT,
    SENT,
    Part,
    _attachment_part,
    _drop_header,
    _flags,
    _hex,
    _html_of,
    _insert_header_raw,
    _multipart,
    _pdf,
    _png,
    _replace_header,
    _text_part,
)
from mailsync.testing.corpus_people import (
    _REPLY_PREFIX,
    _Person,
    _person_with,
)


class _OddKinds:
    """The kind methods of corpus._Gen: crowd, i18n, plain, drafts, copies, malformed."""

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
