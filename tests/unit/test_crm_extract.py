"""The pure extractor: the generated corpus yields exactly its ground truth, and each real-life
junk-contact case yields no junk."""

from __future__ import annotations

import pytest

from crm_support import OWN, check_own_threads, diff, extract_messages, project, project_truth
from mailsync.crm.extract import ExtractSettings
from mailsync.crm.junk import Blocklist
from mailsync.testing.corpus import CorpusMessage, generate_corpus
from mailsync.testing.crm_corpus import CRM_KINDS, generate_crm_corpus, read_crm_truth, write_crm_corpus

T0 = 1740000000  # 2025-02-19


@pytest.fixture(scope="module")
def crm_corpus():
    return generate_crm_corpus(1)


@pytest.fixture(scope="module")
def extracted(crm_corpus):
    messages, _ = crm_corpus
    return extract_messages(messages)


def mail(folder: str, headers: str, *, flags=("\\Seen",), ts: int = T0, body: str = "Hello.\r\n") -> CorpusMessage:
    raw = (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body).encode("utf-8")
    return CorpusMessage(folder, raw, tuple(flags), float(ts), "plain")


def out(to: str, subject: str, mid: str, ts: int = T0, extra: str = "") -> CorpusMessage:
    return mail("Sent", f"From: Alex Morgan <{OWN}>\nTo: {to}\nSubject: {subject}\nMessage-ID: {mid}\n"
                        f"Date: Wed, 19 Feb 2025 10:00:00 +0000\n{extra}", ts=ts)


def contacts_of(messages, **kw) -> dict:
    records, _ = extract_messages(messages, **kw)
    return records.contacts


# -- ground truth ------------------------------------------------------------------------------


def test_the_crm_corpus_is_the_small_corpus_plus_the_crm_cases(crm_corpus):
    messages, _ = crm_corpus
    assert [m for m in messages if not m.kind.startswith("crm:")] == generate_corpus(1)
    assert {m.kind for m in messages if m.kind.startswith("crm:")} == set(CRM_KINDS)
    again, truth_again = generate_crm_corpus(1)
    assert again == messages and truth_again == crm_corpus[1]


def test_extractor_equals_ground_truth(crm_corpus, extracted):
    _, truth = crm_corpus
    records, companies = extracted
    got = project(records.contacts.values(), companies.values(), records.activities.values())
    expected = project_truth(truth, got["activities"])
    assert got == expected, diff(got, expected)
    check_own_threads(truth, got)
    # the truth is not trivially small: every kind of activity and a few of each interesting state
    kinds = {a["kind"] for a in truth["activities"]}
    assert kinds == {"email_sent", "email_received", "reply", "bounce", "auto_reply", "unsubscribe", "answered"}
    states = {(c["deliverability"], c["consent"]) for c in truth["contacts"]}
    assert {"undeliverable", "soft_bouncing", "ok"} <= {s for s, _ in states}
    assert {"opted_out", "subscribed", "unknown"} <= {c for _, c in states}


def test_ground_truth_file_round_trips(tmp_path, crm_corpus):
    messages, truth = write_crm_corpus(tmp_path, 1)
    assert (messages, truth) == crm_corpus
    assert read_crm_truth(tmp_path) == truth
    assert len(list(tmp_path.glob("*.eml"))) == len(messages)


def test_same_result_whatever_the_order_and_copies(crm_corpus, extracted):
    messages, _ = crm_corpus
    twice = list(reversed(messages)) + [CorpusMessage("Copies", m.raw, m.flags, m.internaldate, m.kind)
                                        for m in messages]
    records, companies = extract_messages(twice)
    assert records.contacts == extracted[0].contacts
    assert records.activities == extracted[0].activities
    assert companies == extracted[1]


# -- junk contacts from real life ----------------------------------------------------------------


def test_junk_newsletter_makes_no_contact(extracted, crm_corpus):
    records, companies = extracted
    for sender in ("insights@news.brightwave.example", "rundbrief@fachverband-bau.example", "hello@gadgetdaily.example"):
        assert sender not in records.contacts
        assert not [a for a in records.activities.values() if a["contact_address"] == sender]
    assert "gadgetdaily.example" not in companies and "fachverband-bau.example" not in companies
    # even when we wrote to the list address once, a newsletter is never an activity
    news = mail("INBOX", "From: Gadget Daily <hello@gadgetdaily.example>\nTo: me@mailsync.test\nSubject: Deals\n"
                         "Message-ID: <n1@gadgetdaily.example>\nList-Id: <daily.gadgetdaily.example>\n"
                         "List-Unsubscribe: <https://gadgetdaily.example/u/1>\nDate: Wed, 19 Feb 2025 11:00:00 +0000")
    records, _ = extract_messages([out("hello@gadgetdaily.example", "Question", "<q1@mailsync.test>"), news])
    assert [a["kind"] for a in records.activities.values()] == ["email_sent"]


def test_junk_no_reply_sender_makes_no_contact(extracted):
    records, _ = extracted
    for sender in ("notifications@tracker.example", "no-reply@accounts.cloudco.example",
                   "noreply@billing.brightwave.example", "do-not-reply@shipping.acme-logistics.example",
                   "noreply@tickets.initech.example"):
        assert sender not in records.contacts
    # a no-reply address we "answer" is still not a contact
    assert not contacts_of([out("noreply@billing.brightwave.example", "Re: invoice", "<r1@mailsync.test>")])


def test_junk_out_of_office_reply_makes_no_contact(extracted, crm_corpus):
    records, _ = extracted
    assert not any(a.startswith("tom.reed") for a in records.contacts)  # the stranger's out-of-office
    # an out-of-office from a contact is kept as a signal, and does not count as a reply
    john = records.contacts["john.obrien@acme-logistics.example"]
    ooo = [a for a in records.activities.values() if a["kind"] == "auto_reply"]
    assert ooo and all(a["in_reply_to"] for a in ooo)
    assert john["auto_reply_count"] >= 1
    # alone, with every RFC 3834 marker kind, it never creates a contact
    for marker in ("Auto-Submitted: auto-replied", "X-Autoreply: yes", "Precedence: auto_reply",
                   "X-Autorespond: vacation"):
        ooo = mail("INBOX", f"From: Stranger <stranger@contoso.example>\nTo: {OWN}\nSubject: Out of office\n"
                            f"Message-ID: <o1@contoso.example>\nIn-Reply-To: <s1@mailsync.test>\n{marker}\n"
                            "Date: Wed, 19 Feb 2025 11:00:00 +0000")
        assert not contacts_of([ooo], policy="sent_and_received"), marker


def test_junk_our_own_address_in_cc(extracted):
    records, _ = extracted
    assert OWN not in records.contacts
    assert "dana.kim@mailsync.test" not in records.contacts  # a colleague on our work domain
    assert not any(a["contact_address"] in (OWN, "dana.kim@mailsync.test") for a in records.activities.values())
    cc = mail("INBOX", f"From: Anna Schmidt <a.schmidt@mueller-bau.example>\nTo: juergen.gross@mueller-bau.example\n"
                       f"Cc: Alex <{OWN}>, Dana Kim <dana.kim@mailsync.test>\nSubject: Status\n"
                       "Message-ID: <cc1@mueller-bau.example>\nDate: Wed, 19 Feb 2025 11:00:00 +0000")
    got = contacts_of([cc], policy="sent_and_received")
    assert set(got) == {"a.schmidt@mueller-bau.example"}  # the sender only: not us, not the To


def test_junk_40_recipient_announcement(extracted, crm_corpus):
    messages, _ = crm_corpus
    records, _ = extracted
    announcement = next(m for m in messages if m.kind == "announcement")
    crowd_domains = ("northwind.example", "contoso.example", "fabrikam.example", "initech.example", "umbrella.example")
    crowd = [a for a in records.contacts if a.endswith(crowd_domains)]
    assert crowd == ["helpdesk@initech.example", "nina.kraus@umbrella.example"]  # the CRM cases, not the crowd
    from mailsync.crm.headers import parse_message

    mid = parse_message(announcement.raw).message_id
    assert mid and not [a for a in records.activities.values() if a["message_id"] == mid]  # not even Mike's
    # not even with sent_and_received, and not our own mass mail either
    got = contacts_of([announcement], policy="sent_and_received")
    assert not got
    assert not contacts_of([m for m in messages if m.kind == "crm:mass_mail"])


def test_junk_bounce_for_a_typo_address(extracted):
    records, companies = extracted
    assert not any(a.startswith("mailer-daemon@") for a in records.contacts)
    typo = records.contacts["jana.novakova@gmal.com"]
    assert typo["deliverability"] == "undeliverable"
    assert typo["typo_suggestion"] == "jana.novakova@gmail.com"  # flagged, never rewritten
    assert typo["company_domain"] is None and "gmal.com" not in companies
    real = records.contacts["jananovakova@gmail.com"]
    assert real["bounce_count"] == 0 and real["deliverability"] == "ok"
    bounces = [a for a in records.activities.values() if a["kind"] == "bounce"]
    assert {(a["contact_address"], a["bounce_type"]) for a in bounces} == {
        ("jana.novakova@gmal.com", "hard"), ("l.wang@hztech.example", "hard"), ("li.na@hztech.example", "soft"),
        ("p.walsh@acme-logistics.example", "hard")}
    assert all(a["original_message_id"] for a in bounces)


# -- rules ---------------------------------------------------------------------------------------


def test_policies(crm_corpus):
    messages, truth = crm_corpus
    assert contacts_of(messages, policy="none") == {}
    wide = contacts_of(messages, policy="sent_and_received")
    assert set(wide) > {c["address"] for c in truth["contacts"]}
    assert "tom.reed0@contoso.example" not in wide  # an auto-reply still never creates one


def test_blocklist_addresses_and_domains(crm_corpus, extracted):
    messages, _ = crm_corpus
    settings = ExtractSettings(blocklist=Blocklist(["nina.kraus@umbrella.example", "@hztech.example"]))
    records, companies = extract_messages(messages, settings)
    assert "nina.kraus@umbrella.example" not in records.contacts
    assert not any(a.endswith("@hztech.example") for a in records.contacts)
    assert "hztech.example" not in companies
    kept = {a: c for a, c in extracted[0].contacts.items()
            if a != "nina.kraus@umbrella.example" and not a.endswith("@hztech.example")}
    assert records.contacts == kept


def test_loop_guard(extracted):
    records, _ = extracted
    helpdesk = records.contacts["helpdesk@initech.example"]
    assert helpdesk["loop_guarded"] == 5 and helpdesk["reply_count"] == 20
    looser = ExtractSettings(loop_messages=30)
    messages, _ = generate_crm_corpus(1)
    records2, _ = extract_messages(messages, looser)
    assert records2.contacts["helpdesk@initech.example"]["reply_count"] == 25


def test_share_levels(crm_corpus):
    messages, _ = crm_corpus
    for share, subject, preview in (("metadata", False, False), ("subject", True, False), ("everything", True, True)):
        records, _ = extract_messages(messages, share=share)
        acts = list(records.activities.values())
        assert all(a["visibility"] == share for a in acts)
        assert any(a["subject"] for a in acts) == subject
        assert all(a["subject"] is None for a in acts) != subject
        assert any(a["body_preview"] for a in acts) == preview


def test_gmail_dots_and_tags_are_one_contact(extracted):
    records, _ = extracted
    carlos = records.contacts["carlosnunez84@gmail.com"]
    assert carlos["email"] == "carlos.nunez84+work@googlemail.com"  # the latest form he used
    assert not any(a.startswith("carlos.nunez") for a in records.contacts)


def test_unsubscribe_and_consent(extracted):
    records, _ = extracted
    priya, sean, lena = (records.contacts[a] for a in ("priya.raman@brightwave.example", "seanm1979@yahoo.co.uk",
                                                       "lena.weber@gmx.de"))
    assert (priya["consent"], sean["consent"], lena["consent"]) == ("opted_out", "opted_out", "subscribed")
    sources = {a["contact_address"]: a["unsubscribe_source"] for a in records.activities.values()
               if a["kind"] == "unsubscribe"}
    assert sources == {"priya.raman@brightwave.example": "list-unsubscribe", "seanm1979@yahoo.co.uk": "opt-out-reply"}
    assert sean["consent_source"] and priya["consent_at"]


def test_internal_mail_is_not_logged_unless_asked(crm_corpus):
    messages, _ = crm_corpus
    internal = [m for m in messages if m.kind == "crm:internal"]
    assert not contacts_of(internal, policy="sent_and_received")
    records, _ = extract_messages(internal, ExtractSettings(log_internal=True), policy="sent_and_received")
    assert set(records.contacts) == {"dana.kim@mailsync.test"}


def test_forgotten_addresses_are_never_derived(crm_corpus, extracted):
    messages, _ = crm_corpus
    records, _ = extract_messages(messages, forgotten=lambda a: a == "zoe.angstrom@nordlys.example")
    assert "zoe.angstrom@nordlys.example" not in records.contacts
    assert all(a["contact_address"] != "zoe.angstrom@nordlys.example" for a in records.activities.values())
    assert len(records.contacts) == len(extracted[0].contacts) - 1


def test_ids_are_salted_and_stable(crm_corpus, extracted):
    messages, _ = crm_corpus
    again, _ = extract_messages(messages)
    assert again.contacts == extracted[0].contacts
    other, _ = extract_messages(messages, salt=b"another installation")
    assert {c["id"] for c in other.contacts.values()}.isdisjoint(c["id"] for c in extracted[0].contacts.values())
    for c in extracted[0].contacts.values():
        assert c["address"].split("@")[0] not in c["id"]


def test_gen_corpus_script_writes_the_crm_corpus_and_truth(tmp_path, crm_corpus):
    import subprocess
    import sys
    from pathlib import Path

    from mailsync.testing.corpus import read_corpus

    repo = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, str(repo / "scripts" / "gen-corpus"), "--crm", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert read_corpus(tmp_path) == crm_corpus[0] and read_crm_truth(tmp_path) == crm_corpus[1]


def test_parallel_parsing_gives_the_same_facts(crm_corpus, monkeypatch):
    from mailsync.crm import pipeline as P
    from mailsync.crm.headers import parse_message

    messages, _ = crm_corpus
    items = [(str(i), m.raw[:8192]) for i, m in enumerate(messages)] * 2
    monkeypatch.setattr(P._Parser, "PARALLEL_FROM", 10)
    with P._Parser(len(items)) as parser:
        got = parser.parse(items)
    expected = {sha: parse_message(head) for sha, head in items}
    assert {k: f for k, f in got.items() if not f.is_report} == {k: f for k, f in expected.items() if not f.is_report}
    assert {k for k, f in got.items() if f.is_report} == {k for k, f in expected.items() if f.report}  # read whole later
