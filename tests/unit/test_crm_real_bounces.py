"""Bounces on real mail (fixtures/crm/bounces/flufl: flufl.bounce's test messages, Apache-2.0): each
format marks the address we wrote to, with the right hard/soft type, and the benchmark's figures
hold (recall >= 90% at precision >= 99%)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_support import OWN, extract_messages
from mailsync.crm.headers import parse_message
from mailsync.testing.bounce_bench import report, run_pure
from mailsync.testing.corpus import CorpusMessage

FLUFL = Path(__file__).resolve().parents[2] / "fixtures" / "crm" / "bounces" / "flufl"
T0 = 1420070400


def sent_to(address: str, mid: str = "<offer-1@mailsync.test>") -> CorpusMessage:
    raw = (f"From: Alex Morgan <{OWN}>\r\nTo: <{address}>\r\nSubject: Our offer\r\nMessage-ID: {mid}\r\n"
           "Date: Thu, 01 Jan 2015 00:00:00 +0000\r\n\r\nHello.\r\n").encode()
    return CorpusMessage("Sent", raw, ("\\Seen",), float(T0), "plain")


def received(name: str) -> CorpusMessage:
    return CorpusMessage("INBOX", (FLUFL / name).read_bytes(), ("\\Seen",), float(T0 + 86400), "plain")


def contact_after(name: str, address: str) -> dict:
    records, _ = extract_messages([sent_to(address), received(name)])
    return records.contacts[address]


@pytest.mark.parametrize(("name", "address"), [
    ("qmail_01.txt", "userx@example.de"),  # qmail's "failure notice"
    ("exim_01.txt", "userx@its.example.nl"),  # Exim's text bounce: X-Failed-Recipients
    ("yahoo_04.txt", "usery@example.uk"),  # Yahoo's own format, two recipients
    ("microsoft_01.txt", "userx@example.com"),  # Exchange "Undeliverable:"
    ("groupwise_01.txt", "userx@example.edu"),
    ("smtp32_04.txt", "one_bad_address@example.net"),
    ("postfix_01.txt", "xxxxx@local.ie"),  # Postfix text bounce without a report part
    ("newmailru_01.txt", "zzzzz@newmail.ru"),
])
def test_non_rfc3464_bounces_make_the_address_undeliverable(name, address):
    c = contact_after(name, address)
    assert c["bounce_count"] == 1 and c["deliverability"] == "undeliverable", c


def test_a_text_warning_is_a_soft_bounce():
    c = contact_after("simple_03.txt", "userx@example.za")  # Exim "message delayed" warning
    assert (c["bounce_count"], c["deliverability"]) == (1, "soft_bouncing")


@pytest.mark.parametrize(("name", "ours", "final"), [
    ("dsn_01.txt", "userx@example.com", "userx@sims-ms-daemon"),  # Final-Recipient a local alias
    ("dsn_04.txt", "userx@example.ch", "haasm@yogi.urz.example.ch"),  # Final-Recipient rewritten
])
def test_original_recipient_wins_over_final_recipient(name, ours, final):
    report = parse_message((FLUFL / name).read_bytes()).report
    assert [r.address for r in report.recipients] == [ours]
    records, _ = extract_messages([sent_to(ours), sent_to(final, "<offer-2@mailsync.test>"), received(name)])
    assert records.contacts[ours]["deliverability"] == "undeliverable"
    if final in records.contacts:
        assert records.contacts[final]["deliverability"] == "ok"


def test_an_x400_final_recipient_falls_back_to_original_and_failed_4xx_is_hard():
    # dsn_02: Original-Recipient rfc822, Final-Recipient x400, Action: failed with Status 4.4.7
    # (message timed out): the server gave up, so the bounce is hard.
    report = parse_message((FLUFL / "dsn_02.txt").read_bytes()).report
    [r] = report.recipients
    assert (r.address, r.action, r.status, r.bounce) == ("zzzzz@example.uk", "failed", "4.4.7", "hard")
    c = contact_after("dsn_02.txt", "zzzzz@example.uk")
    assert c["deliverability"] == "undeliverable"


def test_a_bounce_keeps_status_diagnostic_and_original_message_id():
    f = parse_message((FLUFL / "dsn_10.txt").read_bytes())
    [r] = f.report.recipients
    assert r.status == "5.0.0" and "User unknown" in r.diagnostic
    assert f.report.original_message_id == "<200210211625.12753.b.a.dude@example.com>"


def test_the_returned_message_id_of_a_text_bounce_links_it():
    f = parse_message((FLUFL / "exim_01.txt").read_bytes())  # the original quoted as text
    assert f.report.original_message_id == "<19990920022322.A19735@stereo.rotzorg.org>"
    assert f.report.original_message_id in f.parents


def test_invalid_addresses_in_a_bounce_mark_no_one():
    # simple_42 names "david...@gmail.com" (not an address); gmail's dot folding must not turn it into
    # david@gmail.com
    f = parse_message((FLUFL / "simple_42.txt").read_bytes())
    assert f.report is None or not f.report.recipients


@pytest.mark.parametrize("name", ["qmail_08.txt", "groupwise_03.txt"])
def test_mail_from_a_person_is_not_read_as_a_bounce(name):
    f = parse_message((FLUFL / name).read_bytes())
    assert not f.is_report and f.report is None


def test_recall_and_precision_on_fluflbounce_data():
    scores = run_pure(FLUFL)
    text, total = report(scores)
    assert total.expected == 133, text
    assert total.recall >= 0.90 and total.precision >= 0.99, text
    assert total.right_kind >= 0.98 * total.found, text
