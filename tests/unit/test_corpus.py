"""mailsync.testing.corpus: deterministic, realistic, malformed where it says so, and the
committed fixtures/corpus never drifts from the generator."""

from __future__ import annotations

import codecs
import email
import email.policy
import email.utils
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path

import pytest

from mailsync.testing.corpus import (
    FOLDERS,
    KINDS,
    MALFORMED_KINDS,
    OWN_ADDRESS,
    CorpusMessage,
    generate_bulk,
    generate_corpus,
    is_keyword,
    load_into,
    read_corpus,
    write_corpus,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURE_DIR = REPO / "fixtures" / "corpus"
FIXTURE_META = {"generator": "generate_corpus", "seed": 1, "size": "small", "own_address": OWN_ADDRESS}
T2024, T2026 = 1704067200, 1767225600


@pytest.fixture(scope="module")
def corpus() -> list[CorpusMessage]:
    return generate_corpus(1)


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def parse_compat(raw: bytes) -> Message:
    return email.message_from_bytes(raw)  # compat32: raw header strings, no decoding


def header_section(raw: bytes) -> bytes:
    m = re.search(rb"\r?\n\r?\n", raw)
    assert m, "no end of header section"
    return raw[: m.start()]


def msgid(m: CorpusMessage) -> str | None:
    v = parse_compat(m.raw)["Message-ID"]
    return str(v).strip() if v else None


def of_kind(corpus: list[CorpusMessage], kind: str) -> list[CorpusMessage]:
    found = [m for m in corpus if m.kind == kind]
    assert found, f"no message of kind {kind}"
    return found


def decoded(value: object) -> str:
    return str(make_header(decode_header(str(value))))


def digest(messages: list[CorpusMessage]) -> str:
    h = hashlib.sha256()
    for m in messages:
        h.update(repr((m.folder, m.flags, m.internaldate, m.kind)).encode())
        h.update(m.raw)
    return h.hexdigest()


# -- determinism ----------------------------------------------------------------------------


def test_same_seed_is_byte_identical(corpus):
    again = generate_corpus(1)
    assert again == corpus
    assert [m.raw for m in again] == [m.raw for m in corpus]
    assert generate_corpus(2) != corpus


def test_independent_of_hash_seed_locale_and_timezone(corpus):
    code = ("import hashlib, sys; sys.path.insert(0, sys.argv[1])\n"
            "from mailsync.testing.corpus import generate_corpus\n"
            "h = hashlib.sha256()\n"
            "for m in generate_corpus(1):\n"
            "    h.update(repr((m.folder, m.flags, m.internaldate, m.kind)).encode()); h.update(m.raw)\n"
            "print(h.hexdigest())")
    expected = digest(corpus)
    for hashseed, tz, lang in (("1", "Asia/Tokyo", "de_DE.UTF-8"), ("4242", "America/Los_Angeles", "C")):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "TZ": tz, "LANG": lang, "LC_ALL": lang}
        out = subprocess.run([sys.executable, "-c", code, str(REPO)], env=env, cwd=REPO,
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected, (hashseed, tz, lang, out.stderr)


def test_own_address_is_used():
    other = generate_corpus(1, own_address="sam@example.org")
    assert all(b"mailsync.test" not in m.raw for m in other)
    assert all(b"sam@example.org" in m.raw for m in other)
    with pytest.raises(ValueError):
        generate_corpus(1, own_address="not-an-address")


# -- shape ----------------------------------------------------------------------------------


def test_size_and_counts(corpus):
    assert 200 <= len(corpus) <= 500
    assert sum(len(m.raw) for m in corpus) < 2_800_000
    kinds = Counter(m.kind for m in corpus)
    assert kinds["thread"] >= 100


def test_every_kind_present_and_known(corpus):
    kinds = {m.kind for m in corpus}
    assert kinds == set(KINDS)
    assert set(MALFORMED_KINDS) <= kinds


def test_folders_include_non_ascii_and_cjk(corpus):
    folders = {m.folder for m in corpus}
    assert folders == set(FOLDERS)
    assert {"INBOX", "Sent", "Archive", "Archive/2024", "Newsletters"} <= folders
    assert any(not f.isascii() and re.search("[äöüß]", f) for f in folders)
    assert any(re.search("[\u4e00-\u9fff]", f) for f in folders)
    assert "Projekte/Größe" in folders and "Entwürfe" in folders


def test_internaldates_spread_over_2024_and_2025_and_sorted(corpus):
    dates = [m.internaldate for m in corpus]
    assert dates == sorted(dates)
    assert all(T2024 <= d < T2026 and d == int(d) for d in dates)
    months = {time.strftime("%Y-%m", time.gmtime(d)) for d in dates}
    assert len(months) >= 20
    for m in corpus:
        if m.kind in ("malformed:no_date", "malformed:bad_date"):
            continue
        sent = email.utils.parsedate_to_datetime(parse_compat(m.raw)["Date"]).timestamp()
        assert 0 <= m.internaldate - sent <= 12 * 3600, (m.kind, m.folder)


def test_flags_varied_and_keywords_marked(corpus):
    flags = Counter(f for m in corpus for f in m.flags)
    assert {"\\Seen", "\\Answered", "\\Flagged", "\\Draft", "$Forwarded", "$Label1"} <= set(flags)
    assert any(not m.flags for m in corpus)  # unread mail exists
    for m in corpus:
        assert m.flags == m.system_flags + m.keywords  # system flags first
        assert all(f.startswith("\\") != is_keyword(f) for f in m.flags)
        assert "$" not in m.flag_string(keywords=False)
    for m in of_kind(corpus, "draft"):
        assert "\\Draft" in m.flags and m.folder == "Entwürfe"


def test_every_well_formed_message_parses_without_defects(corpus):
    for m in corpus:
        if m.kind.startswith("malformed:"):
            parse(m.raw)  # must not raise either
            continue
        assert b"\r\n" in m.raw and b"\n" not in m.raw.replace(b"\r\n", b"")
        assert all(len(line) <= 998 for line in m.raw.split(b"\r\n")), m.kind
        assert header_section(m.raw).isascii(), m.kind
        msg = parse(m.raw)
        for part in msg.walk():
            assert not part.defects, (m.kind, part.get_content_type(), part.defects)
            if not part.is_multipart() and part.get_content_maintype() == "text":
                part.get_content()  # charset and transfer encoding decode
        for name in ("From", "Subject"):
            assert not msg[name].defects, (m.kind, name, msg[name].defects)


def test_message_ids_unique_except_copies_and_duplicates(corpus):
    ids = Counter(msgid(m) for m in corpus if m.kind not in ("copy", "malformed:duplicate_message_id"))
    assert None in ids and ids[None] == 1  # the no_message_id one
    del ids[None]
    assert max(ids.values()) == 1
    copies = of_kind(corpus, "copy")
    assert len(copies) == 2 and copies[0].raw == copies[1].raw and copies[0].folder != copies[1].folder


# -- threads --------------------------------------------------------------------------------


def test_in_reply_to_and_references_resolve(corpus):
    ids = {msgid(m): m for m in corpus}
    replies = 0
    for m in corpus:
        msg = parse_compat(m.raw)
        irt = msg["In-Reply-To"]
        if not irt:
            continue
        irt = irt.strip()
        replies += 1
        assert irt in ids, (m.kind, irt)
        refs = (msg["References"] or "").split()
        assert refs and refs[-1] == irt, m.kind
        if m.kind in ("thread", "attachment"):
            parent_refs = (parse_compat(ids[irt].raw)["References"] or "").split()
            assert refs == [*parent_refs[-9:], irt]
            assert all(r in ids for r in refs)
    assert replies >= 100


def test_threads_have_replies_in_sent_and_inbox(corpus):
    threads = [m for m in corpus if m.kind == "thread" and parse_compat(m.raw)["In-Reply-To"]]
    assert {m.folder for m in threads} >= {"Sent", "INBOX"}
    for m in threads:
        frm = email.utils.parseaddr(parse_compat(m.raw)["From"])[1]
        assert (frm == OWN_ADDRESS) == (m.folder == "Sent")
    answered = [m for m in corpus if "\\Answered" in m.flags]
    assert answered and all(m.folder != "Sent" for m in answered)


def test_participants_span_company_and_free_mail_domains(corpus):
    domains = Counter()
    for m in of_kind(corpus, "thread"):
        msg = parse_compat(m.raw)
        for _, addr in email.utils.getaddresses([msg["From"] or "", msg["To"] or "", msg["Cc"] or ""]):
            domains[addr.rsplit("@", 1)[-1].lower()] += 1
    company = [d for d in domains if d.endswith(".example")]
    free = [d for d in domains if d in {"gmail.com", "outlook.com", "gmx.de", "qq.com", "icloud.com",
                                        "yahoo.co.uk", "hotmail.com"}]
    assert len(company) >= 6 and len(free) >= 3


def test_non_ascii_names_subjects_and_bodies(corpus):
    names, subjects, charsets, ctes = set(), set(), set(), set()
    for m in corpus:
        if m.kind.startswith("malformed:"):
            continue
        msg = parse(m.raw)
        name = msg["From"].addresses[0].display_name
        if not name.isascii():
            names.add(name)
        if not str(msg["Subject"]).isascii():
            subjects.add(str(msg["Subject"]))
        for part in msg.walk():
            if part.get_content_charset():
                charsets.add(part.get_content_charset())
            if part.get("Content-Transfer-Encoding"):
                ctes.add(part["Content-Transfer-Encoding"].lower())
    assert {"Jürgen Groß", "山田 太郎", "李娜", "王伟", "Ольга Смирнова", "Zoë Ångström",
            "Σοφία Παπαδοπούλου",
            "François Lefèvre", "Carlos Núñez"} <= names
    assert len(subjects) >= 15 and any("\U0001F680" in s for s in subjects)
    assert {"utf-8", "iso-8859-1", "iso-2022-jp", "windows-1252", "koi8-r", "gb2312"} <= charsets
    assert {"quoted-printable", "base64", "8bit", "7bit"} <= ctes
    raw_headers = b"".join(header_section(m.raw) for m in corpus)
    assert b"=?utf-8?B?" in raw_headers and b"=?iso-8859-1?Q?" in raw_headers


def test_display_names_decode_the_same_with_both_email_apis(corpus):
    """Names never depend on the parser: no multi-word encoded-word display names (the stdlib's
    default-policy address parser keeps the space RFC 2047 says to drop between them)."""
    for m in corpus:
        if m.kind.startswith("malformed:"):
            continue
        new, old = parse(m.raw), parse_compat(m.raw)
        for h in ("From", "To", "Cc", "Reply-To", "Sender"):
            if old[h] is None:
                continue
            via_new = [a.display_name for a in new[h].addresses]
            via_old = [decoded(n) for n, _ in email.utils.getaddresses([str(old[h])])]
            assert via_new == via_old, (m.kind, h)


# -- special kinds --------------------------------------------------------------------------


def test_attachments(corpus):
    sizes, types = [], set()
    magic = {"application/pdf": b"%PDF-", "image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
    for m in of_kind(corpus, "attachment"):
        msg = parse(m.raw)
        assert msg.get_content_type() == "multipart/mixed"
        atts = list(msg.iter_attachments())
        assert atts
        for a in atts:
            data = a.get_content()
            if isinstance(data, str):
                data = data.encode()
            sizes.append(len(data))
            types.add(a.get_content_type())
            if a.get_content_type() in magic:
                assert data.startswith(magic[a.get_content_type()])
                assert a["Content-Transfer-Encoding"] == "base64"
            assert a.get_filename()
    assert {"application/pdf", "image/png", "image/jpeg", "text/vcard", "text/csv"} <= types
    assert min(sizes) < 2_000 and max(sizes) > 100_000
    assert any(not a.isascii() for m in of_kind(corpus, "attachment")
               for a in (p.get_filename() or "" for p in parse(m.raw).iter_attachments()))


def test_newsletters(corpus):
    lists = set()
    for m in of_kind(corpus, "newsletter"):
        msg = parse_compat(m.raw)
        lists.add(msg["List-Id"])
        unsub = msg["List-Unsubscribe"]
        assert "<mailto:" in unsub and "<https://" in unsub
        assert msg["Precedence"] == "bulk"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert len(lists) >= 3
    assert {m.folder for m in of_kind(corpus, "newsletter")} >= {"Newsletters", "INBOX"}


def test_bounces_are_rfc3464_reports(corpus):
    sent = {msgid(m): m for m in corpus if m.folder == "Sent"}
    statuses, recipients = set(), set()
    for m in of_kind(corpus, "bounce"):
        msg = parse(m.raw)
        assert msg.get_content_type() == "multipart/report"
        assert msg.get_param("report-type") == "delivery-status"
        parts = msg.get_payload()
        assert parts[0].get_content_type() == "text/plain"
        ds = parts[1]
        assert ds.get_content_type() == "message/delivery-status"
        blocks = ds.get_payload()
        assert len(blocks) >= 2
        per_message, per_recipient = blocks[0], blocks[1:]
        assert per_message["Reporting-MTA"].startswith("dns;")
        orig = per_message["Original-Message-ID"].strip()
        assert orig in sent, "Original-Message-ID must point at a message in Sent"
        orig_rcpts = {a.lower() for _, a in email.utils.getaddresses([parse_compat(sent[orig].raw)["To"]])}
        for rec in per_recipient:
            statuses.add(rec["Status"])
            final = rec["Final-Recipient"].split(";", 1)[1].strip().lower()
            recipients.add(final)
            assert final in orig_rcpts
            assert rec["Action"] in ("failed", "delayed")
            assert (rec["Action"] == "delayed") == rec["Status"].startswith("4.")
        assert parts[2].get_content_type() in ("message/rfc822", "text/rfc822-headers")
        assert msg["Auto-Submitted"] == "auto-replied" and msg["Return-Path"] == "<>"
    assert {"5.1.1", "4.2.2"} <= statuses
    assert any(r.endswith("@gmal.com") for r in recipients)


def test_auto_replies(corpus):
    sent = {msgid(m) for m in corpus if m.folder == "Sent"}
    for m in of_kind(corpus, "auto_reply"):
        msg = parse_compat(m.raw)
        assert msg["Auto-Submitted"] == "auto-replied"
        assert msg["X-Autoreply"] == "yes"
        assert msg["In-Reply-To"].strip() in sent
    assert len(of_kind(corpus, "auto_reply")) >= 3


def test_no_reply_and_notification_senders(corpus):
    senders = {email.utils.parseaddr(parse_compat(m.raw)["From"])[1].split("@")[0]
               for m in of_kind(corpus, "notification")}
    assert {"notifications", "no-reply", "noreply", "do-not-reply"} <= senders


def test_announcement_has_40_recipients_including_us(corpus):
    (m,) = of_kind(corpus, "announcement")
    msg = parse_compat(m.raw)
    rcpts = [a for _, a in email.utils.getaddresses([msg["To"], msg["Cc"]])]
    assert len(rcpts) == len(set(rcpts)) == 40
    assert OWN_ADDRESS in rcpts


def test_cc_self_and_bcc_self(corpus):
    for m in of_kind(corpus, "cc_self"):
        msg = parse_compat(m.raw)
        assert OWN_ADDRESS in [a for _, a in email.utils.getaddresses([msg["Cc"]])]
        assert OWN_ADDRESS not in msg["To"]
    for m in of_kind(corpus, "bcc_self"):
        msg = parse_compat(m.raw)
        assert OWN_ADDRESS not in (msg["To"] or "") + (msg["Cc"] or "")
        assert msg["Delivered-To"] == OWN_ADDRESS


def test_calendar_invites(corpus):
    for m in of_kind(corpus, "calendar"):
        cal = [p for p in parse(m.raw).walk() if p.get_content_type() == "text/calendar"]
        assert cal and "METHOD:REQUEST" in cal[0].get_content()


def test_html_only(corpus):
    (m,) = of_kind(corpus, "html_only")
    assert parse(m.raw).get_content_type() == "text/html"


# -- malformed ------------------------------------------------------------------------------


def test_malformed_no_message_id(corpus):
    (m,) = of_kind(corpus, "malformed:no_message_id")
    assert not re.search(rb"(?im)^message-id:", header_section(m.raw))


def test_malformed_no_date(corpus):
    (m,) = of_kind(corpus, "malformed:no_date")
    assert not re.search(rb"(?im)^date:", header_section(m.raw))


def test_malformed_bad_date(corpus):
    (m,) = of_kind(corpus, "malformed:bad_date")
    value = parse_compat(m.raw)["Date"]
    assert value
    with pytest.raises((ValueError, TypeError)):
        email.utils.parsedate_to_datetime(value)


def test_malformed_bare_lf(corpus):
    (m,) = of_kind(corpus, "malformed:bare_lf")
    assert b"\r" not in m.raw and m.raw.count(b"\n") > 10


def test_malformed_8bit_header(corpus):
    (m,) = of_kind(corpus, "malformed:8bit_header")
    head = header_section(m.raw)
    assert not head.isascii()
    assert "Grüße".encode("latin-1") in head  # Latin-1 in Subject
    assert "Jürgen Groß".encode() in head  # UTF-8 in From
    assert b"=?" not in re.search(rb"(?im)^subject:.*$", head).group(0)


def test_malformed_invalid_charset(corpus):
    (m,) = of_kind(corpus, "malformed:invalid_charset")
    msg = parse_compat(m.raw)
    charset = msg.get_content_charset()
    with pytest.raises(LookupError):
        codecs.lookup(charset)
    assert b"=?x-unknown-8859?" in header_section(m.raw)


def test_malformed_charset_mismatch(corpus):
    (m,) = of_kind(corpus, "malformed:charset_mismatch")
    msg = parse_compat(m.raw)
    assert msg.get_content_charset() == "utf-8"
    with pytest.raises(UnicodeDecodeError):
        msg.get_payload(decode=True).decode("utf-8")


def test_malformed_broken_boundary(corpus):
    (m,) = of_kind(corpus, "malformed:broken_boundary")
    msg = parse_compat(m.raw)
    boundary = msg.get_boundary()
    assert msg.get_content_maintype() == "multipart" and boundary
    assert b"--" + boundary.encode() not in m.raw.split(b"\r\n\r\n", 1)[1]
    assert any("Boundary" in type(d).__name__ for d in parse(m.raw).defects)


def test_malformed_truncated_multipart(corpus):
    (m,) = of_kind(corpus, "malformed:truncated_multipart")
    msg = parse(m.raw)
    boundary = msg.get_boundary()
    assert b"--" + boundary.encode() + b"\r\n" in m.raw
    assert b"--" + boundary.encode() + b"--" not in m.raw
    assert any(type(d).__name__ == "CloseBoundaryNotFoundDefect" for d in msg.defects)


def test_malformed_overlong_header(corpus):
    (m,) = of_kind(corpus, "malformed:overlong_header")
    head_lines = header_section(m.raw).split(b"\r\n")
    assert max(len(line) for line in head_lines) > 998
    assert all(len(line) <= 998 for line in m.raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n"))


def test_malformed_duplicate_message_id(corpus):
    dups = of_kind(corpus, "malformed:duplicate_message_id")
    assert len(dups) == 2
    assert msgid(dups[0]) == msgid(dups[1]) is not None
    assert dups[0].folder != dups[1].folder and dups[0].raw != dups[1].raw
    assert sum(msgid(m) == msgid(dups[0]) for m in corpus) == 2


# -- sizes ----------------------------------------------------------------------------------


def test_medium_size_scales_up_and_stays_consistent():
    medium = generate_corpus(1, size="medium")
    assert len(medium) > 3 * 271
    ids = Counter(msgid(m) for m in medium if m.kind not in ("copy", "malformed:duplicate_message_id"))
    del ids[None]
    assert max(ids.values()) == 1
    with pytest.raises(ValueError):
        generate_corpus(1, size="huge")


# -- bulk -----------------------------------------------------------------------------------


def test_bulk_sizes_average_21_7_kb_and_throughput(capsys):
    t0 = time.perf_counter()
    msgs = list(generate_bulk(2000))
    elapsed = time.perf_counter() - t0
    sizes = [len(m.raw) for m in msgs]
    mean = sum(sizes) / len(sizes)
    with capsys.disabled():
        print(f"\n[corpus] generate_bulk: 2000 messages, {sum(sizes) / 1e6:.1f} MB in {elapsed:.3f}s "
              f"= {sum(sizes) / 1e6 / elapsed:.0f} MB/s, {len(msgs) / elapsed:.0f} msg/s; mean {mean:.0f} B")
    assert abs(mean - 21_700) <= 0.10 * 21_700
    small = sum(2_000 <= s <= 10_000 for s in sizes)
    big = [s for s in sizes if s >= 100_000]
    assert small / len(sizes) > 0.6
    assert 0.01 <= len(big) / len(sizes) <= 0.05 and max(big) <= 2_100_000
    ids = [re.search(rb"\r\nMessage-ID: (<[^>]+>)", m.raw).group(1) for m in msgs]
    assert len(set(ids)) == len(ids)
    assert {m.folder for m in msgs} == {f"Bulk{k:02d}" for k in range(10)}
    assert [m.internaldate for m in msgs] == sorted(m.internaldate for m in msgs)


def test_bulk_messages_are_valid_mail_and_deterministic():
    first = list(generate_bulk(300, folders=3, seed=7))
    again = list(generate_bulk(300, folders=3, seed=7))
    assert first == again
    assert first != list(generate_bulk(300, folders=3, seed=8))
    ids = {re.search(rb"\r\nMessage-ID: (<[^>]+>)", m.raw).group(1).decode() for m in first}
    for m in first:
        msg = parse(m.raw)
        for part in msg.walk():
            assert not part.defects, part.defects
        assert msg["Message-ID"] and msg["Date"] and msg["From"]
        if msg["In-Reply-To"]:
            assert msg["In-Reply-To"] in ids
        if m.kind == "attachment":
            (att,) = list(msg.iter_attachments())
            assert len(att.get_content()) > 5_000
    assert {m.kind for m in first} >= {"plain", "thread", "attachment"}


# -- fixture directory and loading -----------------------------------------------------------


def test_write_read_roundtrip(tmp_path, corpus):
    subset = corpus[:30]
    (tmp_path / "0099.eml").write_bytes(b"stale")
    (tmp_path / "README").write_text("keep me")
    write_corpus(subset, tmp_path, meta={"seed": 1})
    assert not (tmp_path / "0099.eml").exists() and (tmp_path / "README").exists()
    assert read_corpus(tmp_path) == subset
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["count"] == 30 and manifest["meta"] == {"seed": 1}
    entry = manifest["messages"][0]
    assert entry["file"] == "0001.eml"
    assert set(entry) == {"file", "folder", "flags", "internaldate", "kind", "size", "sha256"}
    (tmp_path / "0002.eml").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="sha256"):
        read_corpus(tmp_path)


class FakeServer:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def write_message(self, user, folder, raw, flags="", internaldate=None):
        self.calls.append(("write", user, folder, raw, flags, internaldate))
        return Path("/dev/null")

    def force_resync(self, user):
        self.calls.append(("resync", user))


def test_load_into_writes_all_then_resyncs_once(corpus):
    server = FakeServer()
    assert load_into(server, "alice", corpus) == len(corpus)
    writes = [c for c in server.calls if c[0] == "write"]
    assert server.calls[-1] == ("resync", "alice") and len(server.calls) == len(corpus) + 1
    assert [(c[2], c[3], c[5]) for c in writes] == [(m.folder, m.raw, m.internaldate) for m in corpus]
    assert any("$Label1" in c[4] for c in writes)
    server = FakeServer()
    load_into(server, "alice", corpus, keywords=False)
    assert not any("$" in c[4] or "NonJunk" in c[4] for c in server.calls if c[0] == "write")
    assert any("\\Seen" in c[4] for c in server.calls if c[0] == "write")


def test_committed_fixtures_match_a_fresh_generation(tmp_path, corpus):
    assert FIXTURE_DIR.is_dir(), "fixtures/corpus missing: run scripts/gen-corpus"
    hint = "fixtures/corpus drifted from the generator: run scripts/gen-corpus and commit the result"
    manifest = json.loads((FIXTURE_DIR / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["meta"] == FIXTURE_META, hint
    assert read_corpus(FIXTURE_DIR) == corpus, hint
    write_corpus(corpus, tmp_path, meta=FIXTURE_META)
    committed = sorted(p.name for p in FIXTURE_DIR.iterdir())
    fresh = sorted(p.name for p in tmp_path.iterdir())
    assert committed == fresh, hint
    for name in fresh:
        assert (FIXTURE_DIR / name).read_bytes() == (tmp_path / name).read_bytes(), f"{name}: {hint}"
    assert sum((FIXTURE_DIR / n).stat().st_size for n in committed) < 3_000_000


def test_gen_corpus_script_writes_a_directory(tmp_path):
    out = tmp_path / "c"
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "gen-corpus"), "--seed", "3", "--out",
                          str(out)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert read_corpus(out) == generate_corpus(3)
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "gen-corpus"), "--bulk", "120", "--out",
                          str(tmp_path / "b")], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(read_corpus(tmp_path / "b")) == 120
