"""mailsync.imap.utf7: IMAP modified UTF-7 (RFC 3501 section 5.1.3), table-driven plus round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsync.errors import ProtocolError
from mailsync.imap import utf7

CASES = [
    # (decoded, on the wire)
    ("INBOX", "INBOX"),
    ("", ""),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # the RFC's example
    ("&", "&-"),
    ("Tom & Jerry", "Tom &- Jerry"),
    ("&&", "&-&-"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("Корзина", "&BBoEPgRABDcEOAQ9BDA-"),
    ("Sent Items", "Sent Items"),
    ("[Gmail]/Отправленные", "[Gmail]/&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
    ("😀", "&2D3eAA-"),  # a surrogate pair
    ("a\tb", "a&AAk-b"),  # control characters are encoded too
    ("ü&ü", "&APw-&-&APw-"),
    ("~!\"#$%'()*+,-./:;<=>?@[\\]^_`{|}", "~!\"#$%'()*+,-./:;<=>?@[\\]^_`{|}"),
]


@pytest.mark.parametrize("decoded,wire", CASES)
def test_encode(decoded, wire):
    assert utf7.encode(decoded) == wire


@pytest.mark.parametrize("decoded,wire", CASES)
def test_decode(decoded, wire):
    assert utf7.decode(wire) == decoded
    assert utf7.decode(wire.encode("ascii")) == decoded


def test_decode_accepts_adjacent_shifts():
    """Two shifted runs back to back are odd but unambiguous (some clients write them)."""
    assert utf7.decode("&APw-&APw-") == "üü"


ERRORS = [
    ("&U,BTFw", r"'&' at offset 0 is never closed by '-'"),
    ("abc&", r"'&' at offset 3 is never closed"),
    ("&Jjo!-", r"'!' is not a modified-base64 character in '&Jjo!-'"),
    ("&U/BTFw-", r"'/' is not a modified-base64 character"),  # "/" is "," in modified base64
    ("&U,BTFw=-", r"'=' is not a modified-base64 character"),  # no padding
    ("&U-", r"not a whole number of UTF-16 code units"),
    ("&U,BTF-", r"not a whole number of UTF-16 code units"),
    ("&APx-", r"not in canonical form"),  # left-over bits not zero
    ("&AGE-", r"encodes printable ASCII, which must stand for itself"),
    ("&ACY-", r"encodes printable ASCII"),  # "&" must be "&-"
    ("&2D0-", r"does not decode"),  # a lone high surrogate
    ("&3gA-", r"does not decode"),  # a lone low surrogate
    ("café", r"byte 0xc3 at offset 3 is not printable ASCII"),
    (b"caf\xe9", r"byte 0xe9 at offset 3 is not printable ASCII"),
    ("tab\there", r"byte 0x09 at offset 3 is not printable ASCII"),
    ("a\x7fb", r"byte 0x7f at offset 1"),
]


@pytest.mark.parametrize("wire,regex", ERRORS)
def test_decode_errors(wire, regex):
    with pytest.raises(ProtocolError, match=regex) as info:
        utf7.decode(wire)
    assert repr(wire[:80]) in str(info.value)  # the message names the mailbox


def test_decode_error_names_a_long_mailbox_truncated():
    with pytest.raises(ProtocolError) as info:
        utf7.decode("x" * 500 + "&")
    assert "'" + "x" * 80 + "'..." in str(info.value)


def test_encode_refuses_lone_surrogates():
    with pytest.raises(ValueError):
        utf7.encode("bad\ud800")


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_round_trip(name):
    wire = utf7.encode(name)
    assert wire.isascii() and all(" " <= c <= "~" for c in wire)
    assert utf7.decode(wire) == name
    assert utf7.encode(utf7.decode(wire)) == wire  # one spelling per name


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_printable_ascii_stands_for_itself(name):
    assert utf7.encode(name) == name.replace("&", "&-")


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.binary(max_size=40), st.text(max_size=40),
                 st.text(alphabet="&-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,/=", max_size=30)))
def test_decode_raises_only_protocol_error(wire):
    try:
        name = utf7.decode(wire)
    except ProtocolError:
        return
    assert utf7.decode(utf7.encode(name)) == name
    if "-&" not in (wire.decode("ascii") if isinstance(wire, bytes) else wire):
        # Apart from adjacent shifted runs, an accepted name has exactly one spelling.
        assert utf7.encode(name) == (wire.decode("ascii") if isinstance(wire, bytes) else wire)
