"""SASL XOAUTH2 and OAUTHBEARER (RFC 7628) messages, the server's error challenge, the choice of
mechanism, and the whole client side of a conversation: tables of bytes in, bytes out."""

from __future__ import annotations

import base64
import json

import pytest

from mailsync.imap import sasl

TOKEN = "ya29.a0Af-H_x~y+z/0="


@pytest.mark.parametrize(("caps", "expected"), [
    (["IMAP4rev1", "AUTH=PLAIN", "AUTH=XOAUTH2", "AUTH=OAUTHBEARER"], "OAUTHBEARER"),
    ([b"IMAP4REV1", b"AUTH=XOAUTH2"], "XOAUTH2"),  # Outlook.com offers XOAUTH2 only
    ([b"auth=oauthbearer"], "OAUTHBEARER"),  # capability names are case-insensitive
    (["AUTH=PLAIN", "AUTH=LOGIN"], None),
    (["OAUTHBEARER", "XOAUTH2"], None),  # only AUTH=... counts
    ([], None),
])
def test_choose_mechanism(caps, expected):
    assert sasl.choose_mechanism(caps) == expected


@pytest.mark.parametrize(("user", "token", "expected"), [
    ("me@example.com", "abc", b"user=me@example.com\x01auth=Bearer abc\x01\x01"),
    # Google's documented example
    ("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
     b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"),
    ("ünï@example.com", TOKEN, "user=ünï@example.com\x01auth=Bearer ".encode() + TOKEN.encode() + b"\x01\x01"),
])
def test_xoauth2_initial_response(user, token, expected):
    assert sasl.xoauth2_initial_response(user, token) == expected


def test_xoauth2_matches_googles_base64_example():
    # https://developers.google.com/gmail/imap/xoauth2-protocol
    raw = sasl.xoauth2_initial_response("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
    assert base64.b64encode(raw) == (b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52"
                                     b"YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==")


@pytest.mark.parametrize(("user", "host", "port", "expected"), [
    # RFC 7628 section 4.1's example
    ("user@example.com", "server.example.com", 143,
     b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"),
    ("me@example.com", None, None, b"n,a=me@example.com,\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"),
    # RFC 5801 saslname escaping of ',' and '='
    ("a,b=c", "h", 993, b"n,a=a=2Cb=3Dc,\x01host=h\x01port=993\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"),
])
def test_oauthbearer_initial_response(user, host, port, expected):
    token = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    assert sasl.oauthbearer_initial_response(user, token, host=host, port=port) == expected


@pytest.mark.parametrize("token", ["", "has space", "new\nline", "ctl\x01x", "quote\"", "ünicode", "=leading"])
def test_bad_tokens_are_refused_without_showing_them(token):
    for build in (sasl.xoauth2_initial_response, sasl.oauthbearer_initial_response):
        with pytest.raises(ValueError) as info:
            build("me@example.com", token)
        if token:
            assert token not in str(info.value)


@pytest.mark.parametrize("user", ["", "a\x01b", "line\r\nbreak"])
def test_bad_user_names_are_refused(user):
    with pytest.raises(ValueError):
        sasl.xoauth2_initial_response(user, "abc")


@pytest.mark.parametrize(("data", "expected"), [
    # RFC 7628 3.2.2
    (b'{"status":"invalid_token","scope":"example_scope","openid-configuration":"https://example.com/.well-known/openid-configuration"}',
     sasl.BearerChallenge("invalid_token", scope="example_scope",
                          openid_configuration="https://example.com/.well-known/openid-configuration")),
    # Gmail's XOAUTH2 error
    (b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}',
     sasl.BearerChallenge("401", scope="https://mail.google.com/", schemes="bearer")),
    (b'{"status":400}', sasl.BearerChallenge("400")),
    (b'{"scope":"x"}', None),  # no status
    (b"[1, 2]", None),
    (b"not json", None),
    (b"\xff\xfe", None),
    (b"", None),
])
def test_parse_error_challenge(data, expected):
    assert sasl.parse_error_challenge(data) == expected


@pytest.mark.parametrize(("mechanism", "abort"), [("OAUTHBEARER", b"\x01"), ("XOAUTH2", b""), ("xoauth2", b"")])
def test_client_abort_response(mechanism, abort):
    assert sasl.client_abort_response(mechanism) == abort


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "XOAUTH2"])
def test_conversation_steps(mechanism):
    conv = sasl.Conversation(mechanism, "me@example.com", "abc", host="imap.example.com", port=993)
    assert "abc" not in repr(conv)
    first = conv(b"")
    expected = (sasl.oauthbearer_initial_response("me@example.com", "abc", host="imap.example.com", port=993)
                if mechanism == "OAUTHBEARER" else sasl.xoauth2_initial_response("me@example.com", "abc"))
    assert first == expected
    challenge = json.dumps({"status": "invalid_token", "scope": "mail"}).encode()
    assert conv(challenge) == sasl.client_abort_response(mechanism)
    assert conv.challenge == sasl.BearerChallenge("invalid_token", scope="mail")
    assert conv(b"again?") is None  # a server that keeps asking is cancelled ("*")


def test_conversation_rejects_other_mechanisms():
    with pytest.raises(ValueError, match="PLAIN"):
        sasl.Conversation("PLAIN", "me", "abc")
