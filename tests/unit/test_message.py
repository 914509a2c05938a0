import hashlib

import pytest

from mailsync.sync.message import message_id, sha256_hex


@pytest.mark.parametrize("raw,expected", [
    (b"Message-ID: <a@b>\r\nSubject: x\r\n\r\nbody", "<a@b>"),
    (b"Subject: x\r\nmessage-id:   <lower@case>  \r\n\r\n", "<lower@case>"),
    (b"Message-ID:\r\n <folded@x>\r\n\r\n", "<folded@x>"),
    (b"Subject: x\n\nMessage-ID: <in-body@x>\n", None),  # only the header block counts
    (b"Subject: no id\r\n\r\n", None),
    (b"Message-ID: <\xff\xfe@bad>\r\n\r\n", "<\ufffd\ufffd@bad>"),  # 8-bit junk: replaced, never raises
    (b"", None),
    (b"Message-Id: <bare@lf>\nSubject: y\n\nbody", "<bare@lf>"),
])
def test_message_id(raw, expected):
    assert message_id(raw) == expected


def test_sha256_hex():
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()
