import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsync.sync.message import message_id, message_id_at, sha256_hex


@pytest.mark.parametrize("raw,expected", [
    (b"Message-ID: <a@b>\r\nSubject: x\r\n\r\nbody", "<a@b>"),
    (b"Subject: x\r\nmessage-id:   <lower@case>  \r\n\r\n", "<lower@case>"),
    (b"Message-ID:\r\n <folded@x>\r\n\r\n", "<folded@x>"),
    (b"Subject: x\n\nMessage-ID: <in-body@x>\n", None),  # only the header block counts
    (b"Subject: no id\r\n\r\n", None),
    (b"Message-ID: <\xff\xfe@bad>\r\n\r\n", "<\ufffd\ufffd@bad>"),  # 8-bit junk: replaced, never raises
    (b"", None),
    (b"Message-Id: <bare@lf>\nSubject: y\n\nbody", "<bare@lf>"),
    (b"Subject: x\r\nMessage-ID: <usual@mid>\r\n\r\n", "<usual@mid>"),
    (b"Subject: x\r\nMessage-Id: <usual@mid2>\r\n\r\n", "<usual@mid2>"),
    (b"MESSAGE-ID: <upper@first>\r\n\r\n", "<upper@first>"),
    (b"Subject: x\r\nMESSAGE-id: <odd@case>\r\n\r\n", "<odd@case>"),
    (b"X-Message-ID: <not@this>\r\n\r\n", None),
    (b"Subject: x\r\nX-Message-ID: <not@this>\r\n\r\n", None),
    (b"Subject: x\r\n\r\nMessage-ID: <body@only>\r\n", None),
    (b"Message-ID:   \r\n\r\n", None),
])
def test_message_id(raw, expected):
    assert message_id(raw) == expected


@pytest.mark.parametrize("raw", [
    b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nbody",
    b"message-id: <c@d>\r\n\r\n",
    b"Subject: nothing\r\n\r\nMessage-ID: <e@f>\r\n",
])
def test_message_id_at_reads_only_its_own_record(raw):
    """In a pack batch a message lies between others: only its own header counts, wherever it starts."""
    other = b"Message-ID: <other@record>\r\n\r\n"
    buf = other + b"\0" * 5 + raw + b"\r\n" + other
    start = len(other) + 5
    assert message_id_at(buf, start, start + len(raw)) == message_id(raw)


def test_sha256_hex():
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()


def _reference_message_id(raw: bytes):
    """The rule, read the slow way: the first header field named Message-ID (any case) in the
    header block (up to the first empty line), its folded value with whitespace runs made one space."""
    import re

    end = raw.find(b"\r\n\r\n")
    end = raw.find(b"\n\n") if end < 0 else end
    head = raw if end < 0 else raw[:end + 2]
    m = re.search(rb"(?im)^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", head)
    if not m:
        return None
    value = b" ".join(m.group(1).split()).strip()
    return value.decode("utf-8", "replace")[:998] if value else None


_FIELDS = [b"Subject: hi", b"Message-ID: <a@x>", b"Message-Id: <b@y>", b"message-id: <c@z>", b"MESSAGE-ID:  <d@w>",
           b"X-Message-ID: <no@x>", b"Message-ID:\r\n <folded@x>", b"From: a@b", b" continued", b"",
           b"In-Reply-To: <r@x>"]


@given(st.lists(st.sampled_from(_FIELDS), max_size=8), st.sampled_from([b"\r\n", b"\n"]),
       st.binary(max_size=8))
def test_message_id_follows_the_rule(fields, eol, prefix):
    """message_id_at, with its shortcuts for the usual spellings, against the rule read the slow
    way; the message lying after other bytes, as in a pack batch."""
    raw = eol.join(fields) + eol + eol + b"body\r\nMessage-ID: <in@body>\r\n"
    if eol == b"\n":
        raw = raw.replace(b"\r\n", b"\n")
    buf = prefix + raw + b"Message-ID: <next@record>\r\n"
    assert message_id_at(buf, len(prefix), len(prefix) + len(raw)) == _reference_message_id(raw)


def test_date_header():
    from mailsync.sync.message import date_header

    assert date_header(b"Date: Tue, 01 Jun 2021 10:00:00 +0200\r\nSubject: x\r\n\r\nDate: no\r\n") == \
        "2021-06-01T10:00:00+02:00"
    assert date_header(b"Subject: x\r\n\r\nDate: Tue, 01 Jun 2021 10:00:00 +0200\r\n") is None  # body, not header
    assert date_header(b"Date: 31 Feb 2021 10:00:00 +0000\r\n\r\n") is None
    assert date_header(b"Date: garbage\r\n\r\n") is None
