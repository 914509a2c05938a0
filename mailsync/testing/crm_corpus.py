"""The CRM test corpus and its ground truth, written by the same seeded generator.

Owns: :func:`generate_crm_corpus` -- the messages of :func:`mailsync.testing.corpus.generate_corpus`
for the seed, byte for byte, plus CRM cases the small corpus lacks (our own newsletter with a
List-Unsubscribe address and mail sent to it, a subscribe request, an opt-out reply, a ticket system
answering 25 times in 100 minutes, internal mail, a googlemail.com +tag variant of a contact, our mail
to 30 recipients, an out-of-office from a stranger, a no-reply answer, a contact on a domain the
blocklist test blocks) -- and the contacts, companies and activities that corpus must yield under the
default settings (create_contacts = "sent", share = "metadata", max_recipients = 25, loop guard
20 in 2 hours), as :func:`write_crm_corpus` writes them to ``crm-truth.json``.

The truth is computed from what the generator MEANT each message to be (who wrote to whom, which
message answers which, which recipients a bounce failed, which headers mark bulk or auto-replies),
recorded while it composed them -- never by parsing the bytes it wrote. So it checks the extractor's
parsing (encoded names, 8-bit headers, bare LF, broken dates, duplicate Message-IDs ...) and its rules
against an independent statement of both.

Also: :func:`load_into_store` puts messages straight into a store (account, folders, bodies,
placements), for tests and benchmarks that need a store without an IMAP server.
Must not: import mailsync.crm (the truth must not share code with the extractor); touch the network.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from random import Random
from typing import Any

from mailsync.testing import corpus, corpus_base, corpus_people
from mailsync.testing.corpus import _Gen
from mailsync.testing.corpus_base import CorpusMessage, _flags, _text_part
from mailsync.testing.corpus_people import _Person

__all__ = ["CRM_KINDS", "TRUTH_FILE", "generate_crm_corpus", "load_into_store", "read_crm_truth",
           "write_crm_corpus"]

TRUTH_FILE = "crm-truth.json"
CRM_KINDS = {
    "crm:newsletter_out": "our own newsletter: List-Id, List-Unsubscribe and List-Subscribe mailto",
    "crm:unsubscribe": "a contact writes to our List-Unsubscribe address",
    "crm:subscribe": "a contact writes to our List-Subscribe address",
    "crm:opt_out": "our message to a contact, and the reply whose subject says Unsubscribe",
    "crm:loop": "our ticket to a helpdesk, answered 25 times in 100 minutes (loop guard)",
    "crm:internal": "mail between us and a colleague only",
    "crm:gmail_variant": "a contact writing from a googlemail.com address with dots and a +tag",
    "crm:mass_mail": "our message to 30 recipients",
    "crm:ooo_stranger": "an out-of-office from a recipient of the mass mail we never wrote to otherwise",
    "crm:noreply_reply": "a no-reply address answering our ticket",
    "crm:blockable": "a contact on umbrella.example: we write, she answers, we answer again",
}

# What the generator knows about the domains and mailboxes it uses.
FREE_MAIL = {"gmail.com", "googlemail.com", "outlook.com", "yahoo.co.uk", "gmx.de", "qq.com", "icloud.com",
             "hotmail.com"}
TYPOS = {"gmal.com": "gmail.com"}
ROLE_LOCALS = {"notifications", "noreply", "no-reply", "do-not-reply", "mailer-daemon"}
OPT_OUT_SUBJECTS = {"unsubscribe"}


def _canon(addr: str) -> str:
    local, _, domain = addr.strip().lower().rpartition("@")
    if domain in ("gmail.com", "googlemail.com"):
        return local.split("+", 1)[0].replace(".", "") + "@gmail.com"
    return f"{local}@{domain}"


def _iso(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _CrmGen(_Gen):
    """The small-corpus generator, recording what each message means, plus the CRM cases."""

    def __init__(self, seed: int, own_address: str, scale: int) -> None:
        super().__init__(seed, own_address, scale)
        self.sem: dict[int, dict] = {}
        self._composed: list[tuple[bytes, dict]] = []
        self._last_mid: str | None = None
        self._dsn: tuple | None = None
        self._dups = 0

    # -- recording ----------------------------------------------------------------------------

    def mid(self, rng: Random, who: _Person, ts: int) -> str:
        self._last_mid = super().mid(rng, who, ts)
        return self._last_mid

    def compose(self, rng: Random, *, sender: _Person, to: Iterable[_Person], cc: Iterable[_Person] = (),
                subject: str, ts: int, part, mid: str | None, in_reply_to: str | None = None,
                references: Iterable[str] = (), extra: Iterable[tuple[str, str]] = (), arrival: int | None = None,
                rcpt: str | None = None) -> bytes:
        to, cc, references, extra = tuple(to), tuple(cc), tuple(references), tuple(extra)
        raw = super().compose(rng, sender=sender, to=to, cc=cc, subject=subject, ts=ts, part=part, mid=mid,
                              in_reply_to=in_reply_to, references=references, extra=extra, arrival=arrival,
                              rcpt=rcpt)
        self._composed.append((raw, {"sender": sender, "to": to, "cc": cc, "subject": subject, "date": ts,
                                     "mid": mid, "in_reply_to": in_reply_to, "refs": references,
                                     "extra": extra}))
        return raw

    def _on_dsn(self, original_mid: str, results: tuple, date: int, mid: str) -> None:
        self._dsn = (original_mid, results, date, mid)

    def add(self, folder: str, raw: bytes, flags: tuple[str, ...], internaldate: int, kind: str) -> int:
        idx = super().add(folder, raw, flags, internaldate, kind)
        self._record(idx, raw, kind, folder)
        return idx

    def _record(self, idx: int, raw: bytes, kind: str, folder: str) -> None:
        last_raw, last = self._composed[-1] if self._composed else (None, None)
        if kind == "bounce":
            omid, results, date, dsn_mid = self._dsn
            sem = {"sender": None, "to": (self.me,), "cc": (), "subject": "", "date": date, "mid": dsn_mid,
                   "in_reply_to": None, "refs": (), "extra": (), "dsn": (omid, results)}
        elif kind == "malformed:duplicate_message_id":
            sem = dict(self._composed[-2 + self._dups][1])
            sem["mid"] = self._last_mid
            self._dups += 1
        elif raw is last_raw:
            sem = last
        else:  # a malformed variant rewritten after it was composed
            sem = dict(last)
            if kind in ("malformed:no_date", "malformed:bad_date"):
                sem["date"] = None
            elif kind == "malformed:overlong_header":
                parent = self.inbound_nodes[len(self.inbound_nodes) // 2]
                sem["refs"] = (*parent.refs, parent.mid)
            elif kind not in ("malformed:bare_lf", "malformed:8bit_header", "malformed:invalid_charset"):
                raise AssertionError(f"no meaning recorded for a {kind} message")
        self.sem[idx] = {**sem, "kind": kind, "folder": folder}

    def add_crm(self, folder: str, raw: bytes, flags: tuple[str, ...], internaldate: int, kind: str) -> int:
        assert kind in CRM_KINDS, kind
        self.out.append((internaldate, len(self.out), CorpusMessage(folder, raw, flags, float(internaldate), kind)))
        idx = len(self.out) - 1
        self._record(idx, raw, kind, folder)
        return idx

    # -- the CRM cases ---------------------------------------------------------------------------

    def crm_cases(self) -> None:
        rng = self.rng("crm-cases")
        own, me, P = self.own_domain, self.me, self.people
        INBOX, SENT = corpus.INBOX, corpus.SENT

        def who(display: str, first: str, last: str, addr: str, client: str = "outlook") -> _Person:
            return _Person(display, first, last, addr, "en", 0, client)

        def text(lines: str) -> tuple:
            return _text_part(lines, "plain", "utf-8")

        base = corpus_base._T2025 + 20 * 86400
        customers = who("Mailsync Customers", "Mailsync", "Customers", f"customers@{own}", "thunderbird")
        news_ts = self.workhours(rng, base, me)
        news = self.compose(rng, sender=me, to=(customers,), subject="Mailsync news: the spring release",
                            ts=news_ts, part=text("What is new this spring.\n\nUnsubscribe: reply to this list.\n"),
                            mid=self.mid(rng, me, news_ts),
                            extra=[("List-Id", f"Mailsync news <news.{own}>"),
                                   ("List-Unsubscribe", f"<mailto:unsubscribe@{own}?subject=unsubscribe>"),
                                   ("List-Subscribe", f"<mailto:subscribe@{own}?subject=subscribe>"),
                                   ("Precedence", "bulk")])
        self.add_crm(SENT, news, _flags("\\Seen"), news_ts + 1, "crm:newsletter_out")

        priya, lena, carlos, sean, john = P[10], P[15], P[12], P[14], P[2]
        unsub = who("", "", "", f"unsubscribe@{own}")
        sub = who("", "", "", f"subscribe@{own}")
        t = self.workhours(rng, news_ts + 3 * 86400, priya)
        raw = self.compose(rng, sender=priya, to=(unsub,), subject="unsubscribe", ts=t,
                           part=self.body(rng, priya, "unsubscribe\n"), mid=self.mid(rng, priya, t), arrival=t + 20)
        self.add_crm(INBOX, raw, _flags("\\Seen"), t + 20, "crm:unsubscribe")
        t = self.workhours(rng, news_ts + 4 * 86400, lena)
        raw = self.compose(rng, sender=lena, to=(sub,), subject="subscribe", ts=t,
                           part=self.body(rng, lena, "subscribe\n"), mid=self.mid(rng, lena, t), arrival=t + 20)
        self.add_crm(INBOX, raw, _flags("\\Seen"), t + 20, "crm:subscribe")

        t = self.workhours(rng, base + 10 * 86400, me)
        offer_mid = self.mid(rng, me, t)
        raw = self.compose(rng, sender=me, to=(sean,), subject="Spring offers for Murphy Consulting", ts=t,
                           part=self.body(rng, me, "Hi Sean,\n\nour spring offers are attached.\n\nAlex\n"),
                           mid=offer_mid)
        self.add_crm(SENT, raw, _flags("\\Seen"), t + 1, "crm:opt_out")
        t2 = t + 5 * 3600
        raw = self.compose(rng, sender=sean, to=(me,), subject="Unsubscribe", ts=t2,
                           part=self.body(rng, sean, "Please take me off your list.\n"), mid=self.mid(rng, sean, t2),
                           in_reply_to=offer_mid, references=(offer_mid,), arrival=t2 + 9)
        self.add_crm(INBOX, raw, _flags("\\Seen"), t2 + 9, "crm:opt_out")

        helpdesk = who("Initech Helpdesk", "Initech", "Helpdesk", "helpdesk@initech.example")
        t = self.workhours(rng, base + 15 * 86400, me)
        ticket_mid = self.mid(rng, me, t)
        ticket_subject = "Support request: login fails"
        raw = self.compose(rng, sender=me, to=(helpdesk,), subject=ticket_subject, ts=t,
                           part=self.body(rng, me, "Hello,\n\nthe login to the portal fails since Monday.\n\nAlex\n"),
                           mid=ticket_mid)
        self.add_crm(SENT, raw, _flags("\\Seen"), t + 1, "crm:loop")
        for i in range(25):
            ti = t + 600 + i * 240
            raw = self.compose(rng, sender=helpdesk, to=(me,), subject=f"Re: {ticket_subject} [#4711]", ts=ti,
                               part=text(f"Your ticket #4711 was updated ({i + 1}).\n"),
                               mid=self.mid(rng, helpdesk, ti), in_reply_to=ticket_mid, references=(ticket_mid,),
                               arrival=ti + 2)
            self.add_crm(INBOX, raw, _flags("\\Seen"), ti + 2, "crm:loop")
        noreply = who("Initech Tickets", "", "", "noreply@tickets.initech.example")
        tn = t + 7200
        raw = self.compose(rng, sender=noreply, to=(me,), subject=f"Re: {ticket_subject}", ts=tn,
                           part=text("Do not reply to this message.\n"), mid=f"<{corpus_base._hex(rng, 8)}@tickets.initech.example>",
                           in_reply_to=ticket_mid, references=(ticket_mid,), arrival=tn + 2)
        self.add_crm(INBOX, raw, _flags("\\Seen"), tn + 2, "crm:noreply_reply")

        t = self.workhours(rng, base + 25 * 86400, me)
        lunch_mid = self.mid(rng, me, t)
        raw = self.compose(rng, sender=me, to=(self.dana,), subject="Lunch on Friday?", ts=t,
                           part=self.body(rng, me, "Dana, lunch on Friday?\n"), mid=lunch_mid)
        self.add_crm(SENT, raw, _flags("\\Seen"), t + 1, "crm:internal")
        raw = self.compose(rng, sender=self.dana, to=(me,), subject="Re: Lunch on Friday?", ts=t + 900,
                           part=self.body(rng, self.dana, "Sure!\n"), mid=self.mid(rng, self.dana, t + 900),
                           in_reply_to=lunch_mid, references=(lunch_mid,), arrival=t + 903)
        self.add_crm(INBOX, raw, _flags("\\Seen"), t + 903, "crm:internal")

        variant = corpus_people._person_with(carlos, addr="Carlos.Nunez84+work@googlemail.com")
        t = self.workhours(rng, base + 30 * 86400, carlos)
        raw = self.compose(rng, sender=variant, to=(me,), subject="My new work address", ts=t,
                           part=self.body(rng, variant, "Hola Alex,\n\nplease use this address from now on.\n"),
                           mid=self.mid(rng, carlos, t), arrival=t + 15)
        self.add_crm(INBOX, raw, _flags("\\Seen"), t + 15, "crm:gmail_variant")

        firsts = ("Tom", "Ada", "Ben", "Cleo", "Dan", "Eva", "Finn", "Gia", "Hugo", "Iris")
        lasts = ("Reed", "Stone", "Hart", "Lane")
        crowd = [who(f"{firsts[i % 10]} {lasts[i % 4]}", firsts[i % 10], lasts[i % 4],
                     f"{firsts[i % 10].lower()}.{lasts[i % 4].lower()}{i}@contoso.example") for i in range(29)]
        t = self.workhours(rng, base + 40 * 86400, me)
        mass_mid = self.mid(rng, me, t)
        raw = self.compose(rng, sender=me, to=(*crowd, john), subject="Season's greetings from Mailsync", ts=t,
                           part=self.body(rng, me, "Season's greetings to all our partners!\n\nAlex\n"), mid=mass_mid)
        self.add_crm(SENT, raw, _flags("\\Seen"), t + 1, "crm:mass_mail")
        tom = crowd[0]
        raw = self.compose(rng, sender=tom, to=(me,), subject="Automatic reply: Season's greetings from Mailsync",
                           ts=t + 60, part=text("I am out of the office until Monday.\n"),
                           mid=self.mid(rng, tom, t + 60), in_reply_to=mass_mid, references=(mass_mid,),
                           extra=[("Auto-Submitted", "auto-replied"), ("X-Autoreply", "yes")], arrival=t + 62)
        self.add_crm(INBOX, raw, _flags("\\Seen"), t + 62, "crm:ooo_stranger")

        nina = who("Nina Kraus", "Nina", "Kraus", "nina.kraus@umbrella.example")
        t = self.workhours(rng, base + 50 * 86400, me)
        m1 = self.mid(rng, me, t)
        raw = self.compose(rng, sender=me, to=(nina,), subject="Umbrella pilot", ts=t,
                           part=self.body(rng, me, "Hi Nina,\n\nshall we start the pilot?\n\nAlex\n"), mid=m1)
        self.add_crm(SENT, raw, _flags("\\Seen"), t + 1, "crm:blockable")
        m2 = self.mid(rng, nina, t + 7200)
        raw = self.compose(rng, sender=nina, to=(me,), subject="Re: Umbrella pilot", ts=t + 7200,
                           part=self.body(rng, nina, "Yes, let's start.\n"), mid=m2, in_reply_to=m1,
                           references=(m1,), arrival=t + 7205)
        self.add_crm(INBOX, raw, _flags("\\Seen", "\\Answered"), t + 7205, "crm:blockable")
        raw = self.compose(rng, sender=me, to=(nina,), subject="Re: Umbrella pilot", ts=t + 9000,
                           part=self.body(rng, me, "Great, see you Monday.\n"), mid=self.mid(rng, me, t + 9000),
                           in_reply_to=m2, references=(m1, m2))
        self.add_crm(SENT, raw, _flags("\\Seen"), t + 9001, "crm:blockable")

    def run_crm(self) -> list[tuple[CorpusMessage, dict]]:
        self.run()
        self.crm_cases()
        self.out.sort(key=lambda e: (e[0], e[1]))
        return [(m, self.sem[order]) for _, order, m in self.out]


# ------------------------------------------------------------------------------------ the truth


def _truth(items: Sequence[tuple[CorpusMessage, dict]], own_address: str) -> dict:
    own_domain = own_address.rpartition("@")[2]
    own = {_canon(own_address)} | {_canon(sem["sender"].addr) for m, sem in items
                                   if sem["folder"] == corpus.SENT and sem["sender"] is not None}
    work = {a.rpartition("@")[2] for a in own} - FREE_MAIL
    unsub_addrs, sub_addrs = {f"unsubscribe@{own_domain}"}, {f"subscribe@{own_domain}"}

    # one message per distinct bytes; its copies' folders and flags together
    msgs: dict[str, dict] = {}
    for m, sem in items:
        entry = msgs.setdefault(m.sha256, {"sem": sem, "folders": set(), "flags": set(), "idate": m.internaldate})
        entry["folders"].add(m.folder)
        entry["flags"].update(m.flags)
        entry["idate"] = min(entry["idate"], m.internaldate)
    for e in msgs.values():
        sem = e["sem"]
        e["ts"] = int(sem["date"] if sem["date"] is not None else e["idate"])
        e["draft"] = "\\Draft" in e["flags"] or e["folders"] <= {corpus.DRAFTS}
        e["sent"] = corpus.SENT in e["folders"] or (sem["sender"] is not None and _canon(sem["sender"].addr) in own)
        names = {n.lower() for n, _ in sem["extra"]}
        values = {n.lower(): v.lower() for n, v in sem["extra"]}
        e["auto_reply"] = values.get("auto-submitted") == "auto-replied" or "x-autoreply" in names
        e["bulk"] = ("list-id" in names or "list-unsubscribe" in names or values.get("precedence") in ("bulk", "list", "junk")
                     or values.get("auto-submitted", "no") != "no")
        e["rcpts"] = list(dict.fromkeys(_canon(p.addr) for p in (*sem["to"], *sem["cc"])))

    order = sorted(msgs.values(), key=lambda e: e["ts"])
    by_mid: dict[str, dict] = {}
    for e in order:
        if e["sem"]["mid"]:
            by_mid.setdefault(e["sem"]["mid"], e)
    sent_mids: dict[str, int] = {}
    for e in order:
        if e["sent"] and not e["draft"] and e["sem"]["mid"]:
            sent_mids.setdefault(e["sem"]["mid"], e["ts"])

    def root(e: dict, depth: int = 0) -> str | None:
        sem = e["sem"]
        parents = list(sem["refs"]) or ([sem["in_reply_to"]] if sem["in_reply_to"] else [])
        if sem.get("dsn"):
            parents = [sem["dsn"][0]]
        if parents:
            first = by_mid.get(parents[0])
            return root(first, depth + 1) if first is not None and depth < 50 else parents[0]
        if sem["mid"] and by_mid.get(sem["mid"]) is e:
            return sem["mid"]
        return None  # no Message-ID, or the second message with a Message-ID: a thread of its own

    def contactable(a: str) -> bool:
        local, _, domain = a.rpartition("@")
        return a not in own and domain not in work and local not in ROLE_LOCALS

    # loop guard: the 21st and later message of a sender within two hours
    guarded: set[int] = set()
    from_times: dict[str, list[tuple[int, int]]] = {}
    for e in order:
        sem = e["sem"]
        if e["draft"] or e["sent"] or sem.get("dsn") or sem["sender"] is None:
            continue
        from_times.setdefault(_canon(sem["sender"].addr), []).append((e["ts"], id(e)))
    for times in from_times.values():
        for i, (ts, ident) in enumerate(times):
            if sum(1 for t, _ in times[: i + 1] if t > ts - 7200) > 20:
                guarded.add(ident)

    people: dict[str, dict] = {}

    def person(a: str) -> dict | None:
        if not contactable(a):
            return None
        return people.setdefault(a, {"creates": False, "acts": [], "from_names": [], "rcpt_names": [], "emails": [],
                                     "consent": [], "suppressed": 0})

    def act(p: dict, e: dict, kind: str, **extra: Any) -> None:
        p["acts"].append({"kind": kind, "message_id": e["sem"]["mid"], "ts": e["ts"], "thread_root": root(e),
                          "latency_seconds": None, "bounce_type": None, "unsubscribe_source": None,
                          "in_reply_to": None, "original_message_id": None, **extra})

    for e in order:
        sem = e["sem"]
        if e["draft"]:
            continue
        if sem.get("dsn"):
            omid, results = sem["dsn"]
            for addr, action, status, _remote, _diag in results:
                p = person(_canon(addr))
                if p is not None:
                    act(p, e, "bounce", bounce_type="hard" if status.startswith("5") else "soft",
                        original_message_id=omid)
            continue
        sender = sem["sender"]
        everyone = [_canon(sender.addr)] + e["rcpts"]
        if all(a in own or a.rpartition("@")[2] in work for a in everyone):
            continue
        if e["sent"]:
            if e["bulk"] or len(e["rcpts"]) > 25:
                continue
            seen: set[str] = set()
            for r in (*sem["to"], *sem["cc"]):
                if _canon(r.addr) in seen:
                    continue
                seen.add(_canon(r.addr))
                p = person(_canon(r.addr))
                if p is None:
                    continue
                act(p, e, "email_sent")
                p["creates"] = True
                p["rcpt_names"].append((e["ts"], r.display))
                p["emails"].append((e["ts"], r.addr.lower()))
            continue
        a = _canon(sender.addr)
        p = person(a)
        if p is None:
            continue
        if id(e) in guarded:
            p["suppressed"] += 1
            continue
        named = ((e["ts"], sender.display), (e["ts"], sender.addr.lower()))
        refs = list(sem["refs"])
        ours = sem["in_reply_to"] if sem["in_reply_to"] in sent_mids else next(
            (r for r in reversed(refs) if r in sent_mids), None)
        if e["auto_reply"]:
            act(p, e, "auto_reply", in_reply_to=ours)
            p["from_names"].append(named[0])
            p["emails"].append(named[1])
            continue
        if e["bulk"] or len(e["rcpts"]) > 25:
            continue
        if set(e["rcpts"]) & unsub_addrs:
            act(p, e, "unsubscribe", unsubscribe_source="list-unsubscribe")
            p["consent"].append((e["ts"], "opted_out"))
            p["from_names"].append(named[0])
            p["emails"].append(named[1])
            continue
        if set(e["rcpts"]) & sub_addrs:
            p["consent"].append((e["ts"], "subscribed"))
            continue
        if ours is not None:
            act(p, e, "reply", in_reply_to=ours, latency_seconds=max(0, e["ts"] - sent_mids[ours]))
            p["creates"] = True
            if sem["subject"].strip().lower() in OPT_OUT_SUBJECTS:
                act(p, e, "unsubscribe", unsubscribe_source="opt-out-reply")
                p["consent"].append((e["ts"], "opted_out"))
        else:
            act(p, e, "email_received")
        if "\\Answered" in e["flags"]:
            act(p, e, "answered")
        p["from_names"].append(named[0])
        p["emails"].append(named[1])

    contacts, activities = [], []
    for a, p in sorted(people.items()):
        if not p["creates"]:
            continue
        acts = p["acts"]
        for x in acts:
            activities.append({"contact": a, **{k: x[k] for k in ("kind", "message_id", "thread_root",
                                                                   "latency_seconds", "bounce_type",
                                                                   "unsubscribe_source", "in_reply_to",
                                                                   "original_message_id")},
                               "timestamp": _iso(x["ts"])})
        kinds = lambda *ks: [x["ts"] for x in acts if x["kind"] in ks]  # noqa: E731
        sent, inbound = kinds("email_sent"), kinds("email_received", "reply")
        lat = [x["latency_seconds"] for x in acts if x["kind"] == "reply"]
        state = "ok"
        for x in sorted(acts, key=lambda x: (x["ts"], x["kind"])):
            if x["kind"] == "bounce":
                state = "undeliverable" if x["bounce_type"] == "hard" else (state if state == "undeliverable" else "soft_bouncing")
            elif x["kind"] in ("email_received", "reply", "auto_reply", "unsubscribe"):
                state = "ok"
        consent = max(p["consent"])[1] if p["consent"] else "unknown"
        names = [n for n in p["from_names"] if n[1]] or [n for n in p["rcpt_names"] if n[1]]
        local, _, domain = a.rpartition("@")
        email = max(p["emails"])[1] if p["emails"] else a
        edomain = email.rpartition("@")[2]
        all_ts = [x["ts"] for x in acts]
        contacts.append({
            "address": a, "email": email, "display_name": max(names)[1] if names else "",
            "company_domain": None if domain in FREE_MAIL or domain in TYPOS else ".".join(domain.split(".")[-2:]),
            "first_seen": _iso(min(all_ts)), "last_seen": _iso(max(all_ts)),
            "sent_count": len(sent), "received_count": len(inbound), "reply_count": len(kinds("reply")),
            "auto_reply_count": len(kinds("auto_reply")), "bounce_count": len(kinds("bounce")),
            "last_contacted": _iso(max(sent)) if sent else None, "last_inbound": _iso(max(inbound)) if inbound else None,
            "median_reply_latency_seconds": float(statistics.median(lat)) if lat else None,
            "deliverability": state, "consent": consent,
            "typo_suggestion": (email.rpartition("@")[0] + "@" + TYPOS[edomain]) if edomain in TYPOS else None,
            "loop_guarded": p["suppressed"],
        })
    companies: dict[str, dict] = {}
    for c in contacts:
        d = c["company_domain"]
        if not d:
            continue
        co = companies.setdefault(d, {"domain": d, "contact_count": 0, "sent_count": 0, "received_count": 0,
                                      "reply_count": 0, "first_seen": c["first_seen"], "last_seen": c["last_seen"]})
        co["contact_count"] += 1
        for k in ("sent_count", "received_count", "reply_count"):
            co[k] += c[k]
        co["first_seen"] = min(co["first_seen"], c["first_seen"])
        co["last_seen"] = max(co["last_seen"], c["last_seen"])
    activities.sort(key=lambda x: (x["contact"], x["timestamp"], x["kind"], x["message_id"] or ""))
    return {"format": "mailsync-crm-truth/1",
            "settings": {"create_contacts": "sent", "share": "metadata", "max_recipients": 25,
                         "loop_guard_messages": 20, "loop_guard_window": 7200, "identities": [own_address]},
            "contacts": contacts, "companies": [companies[d] for d in sorted(companies)],
            "activities": activities}


def generate_crm_corpus(seed: int = 1, *, own_address: str = corpus.OWN_ADDRESS) -> tuple[list[CorpusMessage], dict]:
    """(messages, truth): generate_corpus(seed) plus the CRM cases, and what they must yield."""
    gen = _CrmGen(int(seed), own_address, corpus.SIZES["small"])
    items = gen.run_crm()
    return [m for m, _ in items], _truth(items, own_address)


def write_crm_corpus(out_dir: Path, seed: int = 1, *, own_address: str = corpus.OWN_ADDRESS) -> tuple[list[CorpusMessage], dict]:
    """Write the messages (NNNN.eml + manifest.json, as write_corpus) and crm-truth.json."""
    messages, truth = generate_crm_corpus(seed, own_address=own_address)
    corpus.write_corpus(messages, out_dir, meta={"generator": "generate_crm_corpus", "seed": seed,
                                            "own_address": own_address})
    (Path(out_dir) / TRUTH_FILE).write_text(json.dumps(truth, indent=1, ensure_ascii=False, sort_keys=True) + "\n",
                                            encoding="utf-8")
    return messages, truth


def read_crm_truth(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / TRUTH_FILE).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ a store, directly


SPECIAL_USE = {corpus.SENT: "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk", corpus.ARCHIVE: "\\Archive"}


def load_into_store(store, account: str, messages: Iterable[CorpusMessage], *, host: str = "localhost",
                    username: str = "me", batch: int = 2000) -> int:
    """Put messages straight into a store as account ``account`` (as a sync would, without IMAP):
    folders (with SPECIAL-USE for Sent, Archive ...), bodies and placements. Returns the count."""
    from mailsync.store import repositories as repo
    from mailsync.store.models import Folder
    from mailsync.store.uow import UnitOfWork

    with UnitOfWork(store) as uow:
        account_id = repo.account_id(uow.connection, account, host, username)
        folders = {f.name: f for f in repo.folders_of(uow.connection, account_id)}
        uow.commit()
    next_uid: dict[int, int] = {}
    count = 0
    pending: list[CorpusMessage] = []

    def flush(items: list[CorpusMessage]) -> None:
        with UnitOfWork(store) as uow:
            s = uow.session
            bodies, rows = [], []
            for m in items:
                f = folders.get(m.folder)
                if f is None:
                    f = Folder(account_id=account_id, name=m.folder, raw_name=m.folder, delimiter="/",
                               special_use=SPECIAL_USE.get(m.folder), fetched_uid=0, status="ok")
                    s.add(f)
                    s.flush()
                    folders[m.folder] = f
                    next_uid[f.id] = 1
                uid = next_uid.get(f.id, 1)
                next_uid[f.id] = uid + 1
                sha = hashlib.sha256(m.raw).hexdigest()
                bodies.append(repo.NewBody(sha, len(m.raw), None, m.raw))
                idate = datetime.fromtimestamp(m.internaldate, timezone.utc).isoformat()
                rows.append({"folder_id": f.id, "uid": uid, "body_sha256": sha,
                             "flags": " ".join(sorted(m.flags)), "modseq": None, "internaldate": idate,
                             "size": len(m.raw)})
            repo.store_bodies(s, bodies)
            repo.add_placements(s, rows)
            uow.commit()

    with UnitOfWork(store) as uow:
        from sqlalchemy import func, select

        from mailsync.store.models import Placement

        for f in folders.values():
            next_uid[f.id] = (uow.session.scalar(select(func.max(Placement.uid)).where(Placement.folder_id == f.id)) or 0) + 1
    for m in messages:
        pending.append(m)
        count += 1
        if len(pending) >= batch:
            flush(pending)
            pending = []
    if pending:
        flush(pending)
    return count
