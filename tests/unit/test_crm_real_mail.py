"""The CRM rules on real mail (fixtures/crm/real, fixtures/crm/bounces/flufl; sources and licences in
their NOTICE files): who we are, machines and mailing lists kept out of contacts, replies through a
list, auto-replies, ISP and tenant domains, and names."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_support import OWN, extract_messages
from mailsync.crm.addresses import split_name
from mailsync.crm.domains import company_name, is_free_mail, registrable_domain
from mailsync.crm.extract import combine, Copy, sent_from
from mailsync.crm.headers import parse_message
from mailsync.crm.identity import Identity
from mailsync.testing.corpus import CorpusMessage

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "crm"
FLUFL = FIXTURES / "bounces" / "flufl"
REAL = FIXTURES / "real"
T0 = 1420070400


def msg(folder: str, raw: bytes, ts: int = T0 + 86400) -> CorpusMessage:
    return CorpusMessage(folder, raw, ("\\Seen",), float(ts), "plain")


def real(path: Path, folder: str = "INBOX") -> CorpusMessage:
    return msg(folder, path.read_bytes())


def sent(to: str, mid: str, subject: str = "Our offer", frm: str = f"Alex Morgan <{OWN}>", ts: int = T0,
         extra: str = "") -> CorpusMessage:
    raw = (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n"
           f"Date: Thu, 01 Jan 2015 00:00:00 +0000\r\n{extra}\r\nHello.\r\n").encode()
    return msg("Sent", raw, ts)


# -- 3. own identity -----------------------------------------------------------------------------


def test_a_bounce_saved_in_sent_does_not_make_the_mail_system_us():
    # dsn_10 and dsn_11 are real Postfix/Sendmail reports, both from mailer-daemon@example.com. With
    # dsn_10 saved in Sent, its sender used to become "us": dsn_11 then counted as mail we sent (no
    # bounce) and example.com as our work domain (joem@example.com no contact at all).
    records, _ = extract_messages([sent("<joem@example.com>", "<offer-1@mailsync.test>"),
                                   real(FLUFL / "dsn_10.txt", "Sent"), real(FLUFL / "dsn_11.txt")])
    c = records.contacts["joem@example.com"]
    assert (c["bounce_count"], c["deliverability"]) == (1, "undeliverable")


def test_identity_needs_evidence_and_says_why():
    def inp(raw: bytes, role: str = "sent"):
        return combine(parse_message(raw), [Copy(role)])

    bounce = inp((FLUFL / "dsn_10.txt").read_bytes())
    once = inp(b"From: Bob Client <bob@client.example>\r\nResent-From: <me@mailsync.test>\r\n"
               b"To: <partner@other.example>\r\nSubject: fwd\r\nMessage-ID: <r1@x>\r\n\r\nx\r\n")
    alias = [inp(f"From: <alex@gmail.com>\r\nTo: <a@b.example>\r\nMessage-ID: <a{i}@x>\r\n\r\n".encode())
             for i in range(3)]
    single = inp(b"From: <someone@else.example>\r\nTo: <a@b.example>\r\nMessage-ID: <s1@x>\r\n\r\n")
    on_domain = inp(b"From: <sales@mailsync.test>\r\nTo: <a@b.example>\r\nMessage-ID: <d1@x>\r\n\r\n")
    counts = sent_from([bounce, once, *alias, single, on_domain])
    assert "mailer-daemon@example.com" not in counts  # a machine report is nobody's mail
    assert counts["me@mailsync.test"] == 1 and "bob@client.example" not in counts  # the redirect's sender
    idn = Identity.build([OWN, "postmaster@mailsync.test"], counts)
    assert idn.own == {OWN, "alex@gmail.com", "sales@mailsync.test"}
    assert idn.why[OWN] == "configured" and "3 messages" in idn.why["alex@gmail.com"]
    assert "configured identity" in idn.why["sales@mailsync.test"]
    assert "never us" in idn.rejected["postmaster@mailsync.test"]
    assert "not enough evidence" in idn.rejected["someone@else.example"]
    assert idn.work_domains == {"mailsync.test"}  # gmail.com is free mail


# -- 4. machines ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "sender"), [
    (FLUFL / "simple_30.txt", None),  # a bounce from Mail.Delivery.System@...
    (FLUFL / "simple_22.txt", None),  # a gateway's delivery failure notice
    (REAL / "rfc5965-abuse-report.eml", "abusedesk@example.com"),  # RFC 5965 feedback report
    (REAL / "dmarc-aggregate-report.eml", "dmarcreport@microsoft.com"),  # DMARC aggregate report
])
def test_machines_are_never_contacts(path, sender):
    m = real(path)
    f = parse_message(m.raw)
    sender = sender or f.from_.address
    records, _ = extract_messages([m], policy="sent_and_received")
    assert sender not in records.contacts and f.is_report


# -- 5. mailing lists ----------------------------------------------------------------------------


def test_a_list_is_no_contact_and_a_reply_through_it_is_a_reply():
    # python-list-reply.eml: a real python-list copy (List-Post, List-Id, Precedence: bulk) that
    # answers <mailman.993664666.10985.python-list@python.org>; here that is our post to the list.
    ours = sent("python-list@python.org", "<mailman.993664666.10985.python-list@python.org>",
                "GCC 3.0, Standard ABI & C++/Python Integration")
    records, companies = extract_messages([ours, real(REAL / "python-list-reply.eml")])
    assert "python-list@python.org" not in records.contacts and "python.org" not in companies
    c = records.contacts["user@example.de"]
    assert c["reply_count"] == 1 and c["display_name"] == "Martin von Loewis"


def test_a_list_post_that_answers_no_one_of_ours_is_still_nothing():
    records, _ = extract_messages([real(REAL / "python-list-reply.eml")], policy="sent_and_received")
    assert records.contacts == {}


# -- 6. auto-replies -----------------------------------------------------------------------------

ORIGINAL = "<offer-7@mailsync.test>"


def answer(headers: str, subject: str) -> CorpusMessage:
    raw = (f"From: Jana Novak <jana@acme.example>\r\nTo: <{OWN}>\r\nSubject: {subject}\r\n"
           f"Message-ID: <ooo-1@acme.example>\r\nIn-Reply-To: {ORIGINAL}\r\n"
           f"Date: Fri, 02 Jan 2015 00:00:00 +0000\r\n{headers}\r\nI am away until Monday.\r\n").encode()
    return msg("INBOX", raw)


@pytest.mark.parametrize(("headers", "subject"), [
    ("X-Apple-Action: VACATION\r\nX-Mailer: iCloud MailClient\r\n", "Re: Our offer"),  # iCloud vacation rule
    ("X-Mailer: Microsoft Exchange Server\r\n", "Out of Office AutoReply: Our offer"),  # Exchange 2003
    ("", "Automatic reply: Our offer"),
    ("", "Abwesenheitsnotiz: Our offer"),
])
def test_auto_replies_without_rfc3834_headers(headers, subject):
    records, _ = extract_messages([sent("<jana@acme.example>", ORIGINAL), answer(headers, subject)])
    c = records.contacts["jana@acme.example"]
    assert (c["auto_reply_count"], c["reply_count"]) == (1, 0)


def test_a_person_writing_about_an_absence_is_a_reply():
    records, _ = extract_messages([sent("<jana@acme.example>", ORIGINAL),
                                   answer("", "Re: Out of office next week? Our offer")])
    assert records.contacts["jana@acme.example"]["reply_count"] == 1


def test_a_real_precedence_auto_reply_stays_an_auto_reply():
    records, _ = extract_messages([sent("<contact@example.com>", "<x@y>"), real(FLUFL / "qmail_08.txt")],
                                  policy="sent_and_received")
    assert records.contacts["contact@example.com"]["auto_reply_count"] == 1


# -- 7. companies --------------------------------------------------------------------------------


def test_a_consumer_isp_is_no_company():
    m = real(REAL / "tin-it-header.eml")  # a real message from a tin.it customer
    records, companies = extract_messages([m], policy="sent_and_received")
    assert records.contacts["femucca@tin.it"]["company_domain"] is None and "tin.it" not in companies


@pytest.mark.parametrize("domain", ["tin.it", "inbox.lv", "docomo.ne.jp", "ezweb.ne.jp", "vtext.com",
                                    "tmomail.net", "i.softbank.jp"])
def test_isps_and_carriers_are_free_mail(domain):
    assert is_free_mail(domain)


def test_microsoft_365_tenants_are_kept_apart():
    records, companies = extract_messages([
        sent("<anna@contoso.onmicrosoft.com>", "<t1@x>"), sent("<ben@fabrikam.onmicrosoft.com>", "<t2@x>")])
    assert {records.contacts[a]["company_domain"] for a in records.contacts} == {
        "contoso.onmicrosoft.com", "fabrikam.onmicrosoft.com"}
    assert companies["contoso.onmicrosoft.com"]["name"] == "Contoso"
    assert registrable_domain("eu.contoso.onmicrosoft.com") == "contoso.onmicrosoft.com"
    assert is_free_mail("onmicrosoft.com") and company_name("fabrikam.onmicrosoft.com") == "Fabrikam"


def test_an_sms_gateway_is_no_contact():
    records, _ = extract_messages([sent("<5551234567@vtext.com>", "<g1@x>")])
    assert records.contacts == {}


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("display", "first", "last"), [
    ("Dr. Hans van der Berg", "Hans", "van der Berg"),
    ("John Smith Jr.", "John", "Smith"),
    ("Karen Smith (Acme)", "Karen", "Smith"),
    ("Karen Smith | Acme", "Karen", "Smith"),
    ("Prof. Dr. Maria Müller", "Maria", "Müller"),
    ("Smith, John Jr.", "John", "Smith"),
    ("Anna Maria Schmidt", "Anna Maria", "Schmidt"),
    ("Martin von Loewis", "Martin", "von Loewis"),  # as in python-list-reply.eml
    ("山田 太郎", "太郎", "山田"),
])
def test_names(display, first, last):
    assert split_name(display) == (first, last)
