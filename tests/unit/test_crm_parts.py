"""The CRM's pure parts, one table per rule: headers, addresses, domains, junk, RFC 3464, RFC 3834,
unsubscribe, JWZ threading, engagement and scoring, field mapping, settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsync.config.loader import config_from_mapping
from mailsync.crm import addresses as A
from mailsync.crm import domains as D
from mailsync.crm.autoreply import is_auto_reply
from mailsync.crm.dsn import parse_delivery_report
from mailsync.crm.engagement import contact_engagement, current_score, decay
from mailsync.crm.headers import parse_message, read_headers
from mailsync.crm.jwz import synthetic_id, thread
from mailsync.crm.junk import Blocklist, is_role_address
from mailsync.crm.mapping import MappingError, apply_mapping, compile_mapping
from mailsync.crm.records import iso
from mailsync.crm.settings import CrmSettings
from mailsync.crm.unsubscribe import is_opt_out, mailto_targets, strip_reply_prefixes
from mailsync.errors import ConfigError
from mailsync.testing.corpus import generate_corpus


def raw(headers: str, body: str = "x\r\n") -> bytes:
    return (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body).encode("utf-8")


# -- headers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "name", "address"), [
    ("From: =?iso-8859-1?Q?J=FCrgen_Gro=DF?= <Juergen.Gross@Mueller-Bau.example>", "Jürgen Groß",
     "juergen.gross@mueller-bau.example"),
    ('From: "Smith, Karen" <karen.smith@globex.example>', "Smith, Karen", "karen.smith@globex.example"),
    ("From: =?koi8-r?B?7czYx8Eg829J0s7P18E=?= <olga@outlook.com>", None, "olga@outlook.com"),
    ("From: mette.hansen@nordlys.example", "", "mette.hansen@nordlys.example"),
    ("From: =?x-unknown?Q?Ma=DFe?= <a@b.example>", "Maße", "a@b.example"),
    ("From: Carlos <Carlos.Nunez84+work@GoogleMail.com>", "Carlos", "carlosnunez84@gmail.com"),
])
def test_from_names_and_canonical_addresses(header, name, address):
    f = parse_message(raw(header + "\nSubject: s"))
    assert f.from_.address == address
    if name is not None:
        assert f.from_.name == name
    assert f.from_.email == header.split("<")[-1].rstrip(">").split()[-1].lower() or "<" not in header


def test_eight_bit_headers_and_bare_lf():
    data = "From: Jürgen Groß <j@x.example>\nSubject: Grüße aus München\nDate: Mon, 03 Mar 2025 10:00:00 +0100\n\nbody\n"
    f = parse_message(data.encode("utf-8"))
    assert (f.from_.name, f.subject, f.date) == ("Jürgen Groß", "Grüße aus München", 1740992400)
    latin = parse_message("From: J\xfcrgen <j@x.example>\r\nSubject: Gr\xfc\xdfe\r\n\r\n".encode("latin-1"))
    assert latin.from_.name == "Jürgen" and latin.subject == "Grüße"


@pytest.mark.parametrize(("value", "expected"), [
    ("Tue, 05 Mar 2024 14:03:22 +0100", 1709643802),
    ("5 Mar 2024 13:03:22 GMT", 1709643802),
    ("Tue, 05 Mar 2024 13:03:22", 1709643802),  # no zone: UTC, never the local zone
    ("Fri, 32 Foo 2025 25:61:00 +9900", None),
    ("yesterday", None),
    ("", None),
])
def test_dates(value, expected):
    assert parse_message(raw(f"From: a@b.example\nDate: {value}")).date == expected


def test_ids_references_and_key():
    h = ("From: a@b.example\nTo: me@x.example\nSubject: Re: hi\nDate: Tue, 05 Mar 2024 14:03:22 +0100\n"
         "Message-ID: <m3@b.example>\nIn-Reply-To: John's note of <m2@b.example> (Tuesday)\n"
         "References: <m1@b.example>\n <m2@b.example>")
    f = parse_message(raw(h))
    assert (f.message_id, f.in_reply_to, f.references) == ("<m3@b.example>", "<m2@b.example>",
                                                            ("<m1@b.example>", "<m2@b.example>"))
    assert f.parents == ("<m1@b.example>", "<m2@b.example>")
    relayed = parse_message(raw("Received: from somewhere\nDelivered-To: other@x.example\n" + h))
    assert relayed.key == f.key  # the same message reaching another account is one message
    other = parse_message(raw(h.replace("Subject: Re: hi", "Subject: Re: parking")))
    assert other.key != f.key and other.message_id == f.message_id  # a reused Message-ID is two messages
    assert parse_message(raw("From: a@b.example\nMessage-ID: bare@id.example")).message_id == "<bare@id.example>"


def test_facts_round_trip_through_json():
    for m in generate_corpus(1):
        f = parse_message(m.raw)
        assert type(f).from_json(f.to_json()) == f


def test_every_corpus_message_parses():
    for m in generate_corpus(1):
        f = parse_message(m.raw)
        assert f.key and (f.from_ is not None or m.kind == "draft")


def test_bulk_signals():
    for extra, bulk in (("List-Id: <l.example>", True), ("List-Unsubscribe: <mailto:u@l.example>", True),
                        ("Precedence: bulk", True), ("Precedence: list", True), ("Precedence: junk", True),
                        ("Auto-Submitted: auto-generated", True), ("Auto-Submitted: no", False),
                        ("X-Mailer: Outlook", False)):
        assert parse_message(raw(f"From: a@b.example\n{extra}")).bulk is bulk, extra


# -- addresses, domains, junk ----------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("John.Doe+crm@GoogleMail.com", "johndoe@gmail.com"),
    ("j.o.h.n@gmail.com", "john@gmail.com"),
    ("Jane.Doe+x@Example.com", "jane.doe+x@example.com"),
    ("<a@b.example>", "a@b.example"),
    ("mailto:a@b.example", "a@b.example"),
    ("not an address", None),
    ("user@localhost", None),
    ("@example.com", None),
])
def test_canonical(given, expected):
    assert A.canonical(given) == expected


def test_syntax_and_typos():
    assert A.check_syntax("jane@example.com") is None
    assert A.check_syntax("a..b@example.com")
    assert A.typo_suggestion("jana@gmal.com") == "jana@gmail.com"
    assert A.typo_suggestion("x@hotmial.com") == "x@hotmail.com"
    assert A.typo_suggestion("x@outlokk.com") == "x@outlook.com"
    for fine in ("x@gmail.com", "x@ymail.com", "x@mueller-bau.example", "x@gmx.de", "x@qq.com"):
        assert A.typo_suggestion(fine) is None, fine


@pytest.mark.parametrize(("name", "first", "last"), [
    ("Smith, Karen", "Karen", "Smith"), ("Jürgen Groß", "Jürgen", "Groß"), ("山田 太郎", "太郎", "山田"),
    ("李娜", "娜", "李"), ("Anna Maria Schmidt", "Anna Maria", "Schmidt"), ("Madonna", "Madonna", ""),
    ("", "", ""), ("a@b.example", "", ""), ('"O\'Brien, John"', "John", "O'Brien"),
])
def test_split_name(name, first, last):
    assert A.split_name(name) == (first, last)


def test_registrable_domains_offline():
    assert D.registrable_domain("eu.globex.example") == "globex.example"
    assert D.registrable_domain("mx1.acme.co.uk") == "acme.co.uk"
    assert D.registrable_domain("a.b.example.com.au") == "example.com.au"
    assert D.is_free_mail("yahoo.co.uk") and D.is_free_mail("gmx.de") and not D.is_free_mail("mueller-bau.example")
    assert D.company_name("mueller-bau.example") == "Mueller Bau"


def test_role_addresses_and_blocklist():
    for a in ("noreply@x.example", "no-reply@x.example", "MAILER-DAEMON@x.example", "postmaster@x.example",
              "notifications@x.example", "noreply-alerts@x.example", "bounces+123@x.example"):
        assert is_role_address(a.lower()), a
    for a in ("info@x.example", "sales@x.example", "jane@x.example", "norene@x.example"):
        assert not is_role_address(a), a
    assert is_role_address("info@x.example", extra={"info"})
    b = Blocklist(["Rival@Example.com", "@spam.example"])
    assert b.blocks("rival@example.com") and b.blocks("x@spam.example") and b.blocks("x@mx.spam.example")
    assert not b.blocks("x@notspam.example") and not Blocklist()


# -- RFC 3464, RFC 3834, unsubscribe -------------------------------------------------------------------


def test_delivery_reports_of_the_corpus():
    reports = [parse_delivery_report(m.raw) for m in generate_corpus(1) if m.kind == "bounce"]
    got = sorted((r.address, r.action, r.status, r.bounce) for rep in reports for r in rep.recipients)
    assert got == [("jana.novakova@gmal.com", "failed", "5.4.4", "hard"),
                   ("l.wang@hztech.example", "failed", "5.1.1", "hard"),
                   ("li.na@hztech.example", "delayed", "4.2.2", "soft"),
                   ("p.walsh@acme-logistics.example", "failed", "5.1.1", "hard")]
    assert all(rep.original_message_id for rep in reports)


def test_delivery_report_without_per_message_fields_and_with_returned_headers():
    b = "B1"
    body = (f"--{b}\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n--{b}\r\n"
            "Content-Type: message/delivery-status\r\n\r\n"
            "Final-Recipient: rfc822;Gone@Example.com\r\nAction: failed\r\n\r\n"
            "Final-Recipient: rfc822; ok@example.com\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n"
            f"--{b}\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <orig@x.example>\r\nSubject: hi\r\n"
            f"\r\n--{b}--\r\n")
    msg = raw(f'From: MAILER-DAEMON@x.example\nContent-Type: multipart/report; report-type=delivery-status; boundary="{b}"',
              body)
    rep = parse_delivery_report(msg)
    assert rep.original_message_id == "<orig@x.example>"
    assert [(r.address, r.bounce) for r in rep.recipients] == [("gone@example.com", "hard"), ("ok@example.com", None)]
    assert parse_delivery_report(raw("From: a@b.example\nContent-Type: text/plain")) is None


def test_auto_reply_detection():
    def h(text: str) -> dict:
        return read_headers(raw("From: a@b.example\n" + text))

    assert is_auto_reply(h("Auto-Submitted: auto-replied; vacation"))
    assert is_auto_reply(h("X-Autoreply: yes")) and is_auto_reply(h("Precedence: auto_reply"))
    assert not is_auto_reply(h("Auto-Submitted: auto-generated")) and not is_auto_reply(h("Auto-Submitted: no"))
    assert not is_auto_reply(h("Subject: Out of office"))


def test_unsubscribe_detection():
    assert mailto_targets("<mailto:Unsub+tok@List.example?subject=unsubscribe>, <https://l.example/u>") == \
        ["unsub+tok@list.example"]
    assert strip_reply_prefixes("AW: Re[3]: Fwd: Angebot") == "Angebot"
    for s in ("Unsubscribe", "RE: unsubscribe me", "Please remove me from your list!", "AW: Abmelden", "STOP"):
        assert is_opt_out(s), s
    for s in ("Re: How do I unsubscribe the old account?", "Stop the press", "Re: Quote"):
        assert not is_opt_out(s), s


# -- JWZ -------------------------------------------------------------------------------------------


def test_jwz_chain_out_of_order_and_missing_parents():
    msgs = [("c", "<c>", ("<a>", "<b>")), ("a", "<a>", ()), ("b", "<b>", ("<a>",))]
    assert thread(msgs) == {"a": "<a>", "b": "<a>", "c": "<a>"}
    # a lone reply to a message we do not have: the empty parent gives way to it
    assert thread([("r", "<r>", ("<gone>",))]) == {"r": "<r>"}
    # two replies to the same missing message: the missing one stays their root
    assert thread([("r1", "<r1>", ("<gone>",)), ("r2", "<r2>", ("<gone>",))]) == {"r1": "<gone>", "r2": "<gone>"}
    # a chain of unknown ids above a known root is pruned down to it
    assert thread([("a", "<a>", ()), ("z", "<z>", ("<x1>", "<x2>", "<a>"))]) == {"a": "<a>", "z": "<a>"}


def test_jwz_duplicates_missing_ids_and_loops():
    got = thread([("k1", "<dup>", ()), ("k2", "<dup>", ()), ("k3", None, ())])
    assert got == {"k1": "<dup>", "k2": synthetic_id("k2"), "k3": synthetic_id("k3")}
    looped = thread([("a", "<a>", ("<b>",)), ("b", "<b>", ("<a>",))])
    assert looped["a"] == looped["b"]
    selfref = thread([("a", "<a>", ("<a>",))])
    assert selfref == {"a": "<a>"}


def test_jwz_order_does_not_matter_for_consistent_references():
    import random

    msgs = [("a", "<a>", ()), ("b", "<b>", ("<a>",)), ("c", "<c>", ("<a>", "<b>")), ("d", "<d>", ("<a>", "<b>", "<c>")),
            ("e", "<e>", ("<x>",)), ("f", "<f>", ("<x>", "<e>"))]
    expected = thread(msgs)
    for seed in range(20):
        shuffled = list(msgs)
        random.Random(seed).shuffle(shuffled)
        assert thread(shuffled) == expected


# -- engagement ---------------------------------------------------------------------------------------


def _act(kind: str, ts: int, **kw) -> dict:
    return {"id": f"{kind}{ts}", "kind": kind, "timestamp": iso(ts), "latency_seconds": kw.get("latency"),
            "bounce_type": kw.get("bounce")}


def test_engagement_counts_rates_and_states():
    day = 86400
    acts = [_act("email_sent", 0), _act("reply", 3600, latency=3600), _act("email_sent", 2 * day),
            _act("bounce", 3 * day, bounce="soft"), _act("email_sent", 4 * day), _act("bounce", 5 * day, bounce="hard")]
    e = contact_engagement(acts, [(10, "opted_out", "<m@x>")], 90)
    assert (e["sent_count"], e["received_count"], e["reply_count"], e["reply_rate"]) == (3, 1, 1, 0.3333)
    assert e["median_reply_latency_seconds"] == 3600.0
    assert (e["deliverability"], e["deliverability_at"]) == ("undeliverable", iso(5 * day))
    assert (e["consent"], e["consent_source"]) == ("opted_out", "<m@x>")
    back = contact_engagement(acts + [_act("email_received", 6 * day)], [], 90)
    assert back["deliverability"] == "ok" and back["consent"] == "unknown"


def test_score_decays_with_an_injected_clock():
    e = contact_engagement([_act("reply", 1_000_000, latency=5)], [], 90)
    assert e["score"] == 5.0 and e["score_as_of"] == iso(1_000_000)
    assert current_score(e, 1_000_000, 90) == 5.0
    assert current_score(e, lambda: 1_000_000 + 90 * 86400, 90) == 2.5
    assert current_score(e, 1_000_000 + 180 * 86400, 90) == 1.25
    assert decay(-5, 90) == 1.0
    older = contact_engagement([_act("reply", 0, latency=5), _act("email_sent", 90 * 86400)], [], 90)
    assert older["score"] == 3.5  # 5 halved over 90 days, plus 1 fresh


# -- field mapping ------------------------------------------------------------------------------------


def test_mapping_transforms():
    rules = compile_mapping("contact", {
        "email": {"from": "email", "transform": "upper"}, "full_name": {"join": ["first_name", "last_name"]},
        "since": {"from": "first_seen", "transform": "date:%d.%m.%Y"}, "last_seen": {"transform": "epoch"},
        "score": False, "mail": "address"})
    rec = {"email": "jane@x.example", "first_name": "Jane", "last_name": "", "first_seen": "2024-03-05T14:03:22Z",
           "last_seen": "2024-03-05T14:03:22Z", "score": 3.0, "address": "jane@x.example", "sent_count": 2}
    assert apply_mapping(rec, rules) == {"email": "JANE@X.EXAMPLE", "full_name": "Jane", "since": "05.03.2024",
                                         "last_seen": 1709647402, "mail": "jane@x.example", "first_name": "Jane",
                                         "last_name": "", "sent_count": 2}  # renamed: first_seen, address
    assert apply_mapping(rec, ()) == rec


@pytest.mark.parametrize(("spec", "message"), [
    ({"email": "emial"}, "'emial' is not a field"),
    ({"x": {"from": "email", "transform": "shout"}}, "unknown transform"),
    ({"x": {"from": "email", "transform": "date:%Y"}}, "applies to date fields"),
    ({"x": {"join": ["first_name"]}}, "at least two"),
    ({"x": {"from": "email", "join": ["a", "b"]}}, "both from and join"),
    ({"x": 5}, "must be false"),
    ({"nosuch": False}, "not a field"),
])
def test_mapping_errors(spec, message):
    with pytest.raises(MappingError, match=message):
        compile_mapping("contact", spec)


# -- settings -----------------------------------------------------------------------------------------


def settings(crm: dict, tmp_path: Path, **account) -> CrmSettings:
    doc = {"account": [{"name": "w", "host": "h.example", "username": "me@example.com", "password": "x", **account}],
           "crm": crm}
    return CrmSettings.from_config(config_from_mapping(doc, path=tmp_path / "c.toml"))


def test_settings_defaults_and_accounts(tmp_path):
    s = settings({"enabled": True}, tmp_path, identities=["alias@example.com"], share="subject")
    assert (s.create_contacts, s.max_recipients, s.loop_guard_messages, s.loop_guard_window) == ("sent", 25, 20, 7200)
    assert s.account("w").share == "subject" and s.account("w").create_contacts == "sent"
    assert set(s.configured_identities) == {"alias@example.com", "me@example.com"}
    full = settings({"sink": [{"name": "crm", "type": "webhook", "url": "https://crm.example/h", "secret": "env:S",
                               "batch_size": 20, "rate_limit": 5, "records": ["contact"],
                               "fields": {"contact": {"mail": "email"}}}]}, tmp_path)
    sink = full.sink("crm")
    assert (sink.batch_size, sink.rate_limit, sink.records, sink.secret.kind) == (20, 5.0, ("contact",), "env")


@pytest.mark.parametrize(("crm", "in_message", "in_hint"), [
    ({"max_recipient": 5}, "unknown key 'max_recipient'", "max_recipients"),
    ({"create_contacts": "always"}, "create_contacts", '"sent"'),
    ({"blocklist": ["not an address"]}, "blocklist", "@example.com"),
    ({"sink": {"name": "x"}}, "single table", "[[crm.sink]]"),
    ({"sink": [{"name": "x", "type": "webhook", "url": "http://crm.example.com/h", "secret": "env:S"}]},
     "unencrypted", "https://"),
    ({"sink": [{"name": "x", "type": "webhook", "url": "https://crm.example.com/h"}]}, "'secret'", "env:"),
    ({"sink": [{"name": "x", "type": "jsonl", "path": "a", "records": ["contacts"]}]}, "contacts", '"contact"'),
    ({"sink": [{"name": "x", "type": "jsonl", "path": "a", "fields": {"contacts": {}}}]}, "contacts",
     "[crm.sink.fields.contact]"),
    ({"sink": [{"name": "x", "type": "jsonl", "path": "a", "fields": {"contact": {"e": "emial"}}}]},
     "fields.contact.e", '"email"'),
    ({"sink": [{"name": "x", "type": "jsonl", "path": "a"}, {"name": "x", "type": "jsonl", "path": "b"}]},
     "used by another sink", "own name"),
    ({"sink": [{"name": "x", "type": "ftp"}]}, "type", "webhook"),
])
def test_settings_errors_name_key_value_and_fix(tmp_path, crm, in_message, in_hint):
    with pytest.raises(ConfigError) as info:
        settings(crm, tmp_path)
    assert str(tmp_path / "c.toml") in info.value.message
    assert in_message in info.value.message, info.value.message
    assert in_hint in (info.value.hint or ""), info.value.hint


def test_literal_secret_refused_in_a_readable_file(tmp_path):
    doc = {"crm": {"sink": [{"name": "x", "type": "webhook", "url": "https://c.example/h", "secret": "hunter2"}]}}
    with pytest.raises(ConfigError) as info:
        config_from_mapping(doc, path=tmp_path / "c.toml", mode=0o644)
    assert "hunter2" not in str(info.value)
    config_from_mapping(doc, path=tmp_path / "c.toml", mode=0o600)


def test_read_headers_reads_fields_as_the_email_parser_does():
    import email.parser
    import email.policy

    from mailsync.crm.headers import header_section, wanted_fields

    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    for m in generate_corpus(1):
        msg = parser.parsebytes(wanted_fields(header_section(m.raw)))
        expected: dict = {}
        for name, value in msg.raw_items():
            from mailsync.crm.headers import _text

            expected.setdefault(name.lower(), []).append(_text(str(value)))
        assert read_headers(m.raw) == expected, m.kind


# -- outbox pieces ------------------------------------------------------------------------------------


def test_idempotency_keys_follow_changes():
    from mailsync.crm.outbox import idempotency_key

    a = idempotency_key("s", "contact", "c_1", "upsert", "A", None)
    b = idempotency_key("s", "contact", "c_1", "upsert", "B", "A")
    a2 = idempotency_key("s", "contact", "c_1", "upsert", "A", "B")
    assert len({a, b, a2}) == 3  # A -> B -> A: three changes, three keys
    assert a == idempotency_key("s", "contact", "c_1", "upsert", "A", None)  # a retry repeats its key
    assert a != idempotency_key("t", "contact", "c_1", "upsert", "A", None)  # per sink


def test_rate_limit_bucket_on_an_injected_clock():
    from mailsync.crm.outbox import _Bucket

    now = [100.0]
    bucket = _Bucket(2.0, lambda: now[0])
    assert bucket.wait() == 0.0 and bucket.wait() == 0.0  # a burst of `rate`
    assert bucket.wait() == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.wait() == 0.0
    assert _Bucket(None, lambda: 0.0).wait() == 0.0


def test_envelopes_and_signatures():
    import hashlib
    import hmac
    import json

    from mailsync.crm.outbox import envelope
    from mailsync.crm.settings import SinkSettings
    from mailsync.crm.sinks import WebhookTransport, sign

    sink = SinkSettings(name="s", type="webhook", url="http://127.0.0.1:1/h", fields={
        "contact": compile_mapping("contact", {"mail": "email"})})
    row = {"op": "upsert", "record_type": "contact", "record_id": "c_1", "idempotency_key": "k1",
           "payload": json.dumps({"email": "a@b.example", "id": "c_1"})}
    env = envelope(row, sink)
    assert env == {"idempotency_key": "k1", "op": "upsert", "type": "contact", "id": "c_1", "sink": "s",
                   "data": {"mail": "a@b.example", "id": "c_1"}}
    assert envelope({**row, "op": "delete"}, sink)["data"] is None
    body, key = WebhookTransport(sink, "sec", clock=lambda: 0).body_of([env])
    assert key == "k1" and json.loads(body) == env
    assert sign(b"sec", "123", body) == "sha256=" + hmac.new(b"sec", b"123." + body, hashlib.sha256).hexdigest()
