"""The kinds of message the small corpus holds (threads, newsletters, bounces, auto-replies, i18n,
malformed mail ...), each a method of the generator (a mixin of corpus._Gen, whose helpers it uses).

Owns: what each kind looks like. Must not: write files or talk to servers.
"""

from __future__ import annotations

import textwrap
from datetime import datetime

from mailsync.testing.corpus_base import (
    _T2024,
    _T2025,
    _T2025_09,
    _T2026,
    ARCHIVE,
    ARCHIVE_2024,
    CJK,
    INBOX,
    NEWSLETTERS,
    OWN_NAME,
    PROJECT,
    SENT,
    CorpusMessage,
    Part,
    _attachment_part,
    _dt,
    _enc_text,
    _flags,
    _fmt_date,
    _hex,
    _html_of,
    _iso_date,
    _multipart,
    _pdf,
    _png,
    _render,
    _text_part,
    _uuid,
)
from mailsync.testing.corpus_people import (
    _GROUP_WEIGHTS,
    _GROUPS,
    _LANG,
    _PRODUCTS,
    _REPLY_PREFIX,
    _Node,
    _Person,
)


class _Kinds:
    """The kind methods of corpus._Gen: conversations and machine mail (the rest: corpus_odd._OddKinds)."""

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
