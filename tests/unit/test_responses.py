"""mailsync.imap.responses: tables of wire bytes -> events, one named test per server quirk, and
properties (any chunking gives the same events; any input raises only ProtocolError).

`_test(data, expected)` runs each case three ways -- one chunk through feed(), byte by byte through
feed(), and through the shell's loop (wants() -> readline() / read(n) of a BytesIO) -- and requires
the same events from all three. `_test_parse_error(data, regex)` requires a ProtocolError whose
message matches, in one chunk and byte by byte.
"""

from __future__ import annotations

import io
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsync.errors import ProtocolError
from mailsync.imap import responses as R
from mailsync.imap.responses import (
    Continuation,
    FetchItem,
    ResponseParser,
    Tagged,
    Untagged,
    format_uid_set,
    parse_internaldate,
    parse_response,
    parse_response_code,
    parse_uid_set,
    quote,
)

# -- harness -----------------------------------------------------------------------------------


def _item(seq, uid=None, flags=None, internaldate=None, size=None, body=None, header_fields=None, modseq=None,
          gm_msgid=None, gm_thrid=None, gm_labels=None):
    return FetchItem(seq, uid, flags, internaldate, size, body, header_fields, modseq, gm_msgid, gm_thrid, gm_labels)


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def _shell(data: bytes) -> list:
    """The connection's loop: wants() -> readline() or read(n)."""
    f = io.BytesIO(data)
    parser = ResponseParser()
    events = []
    while True:
        n = parser.wants()
        if n is None:
            line = f.readline()
            if not line:
                break
            events += parser.feed_line(line)
        else:
            events += parser.feed_literal(f.read(n))
    if not parser.at_boundary:
        raise ProtocolError("stream ended inside a response")
    return events


def _bytewise(data: bytes) -> list:
    parser = ResponseParser()
    events = []
    for i in range(len(data)):
        events += parser.feed(data[i : i + 1])
    if not parser.at_boundary:
        raise ProtocolError("stream ended inside a response")
    return events


def _test(data: bytes, expected) -> None:
    if not isinstance(expected, list):
        expected = [expected]
    assert parse_response(data) == expected
    assert _bytewise(data) == expected
    assert _shell(data) == expected


def _test_parse_error(data: bytes, regex: str) -> None:
    with pytest.raises(ProtocolError, match=regex):
        parse_response(data)
    with pytest.raises(ProtocolError, match=regex):
        _bytewise(data)


# -- FETCH items -------------------------------------------------------------------------------

BODY = b"From: a@example.com\r\nSubject: hi\r\n\r\nHello\r\n"

FETCH_CASES = [
    ("uid", b"* 1 FETCH (UID 42)\r\n", _item(1, uid=42)),
    ("uid-max", b"* 1 FETCH (UID 4294967295)\r\n", _item(1, uid=4294967295)),
    ("flags", b"* 2 FETCH (FLAGS (\\Seen \\Answered $Forwarded NonJunk))\r\n",
     _item(2, flags=("\\Seen", "\\Answered", "$Forwarded", "NonJunk"))),
    ("flags-empty", b"* 2 FETCH (FLAGS ())\r\n", _item(2, flags=())),
    ("flags-recent-kept", b"* 2 FETCH (FLAGS (\\Recent \\Deleted \\Draft \\Flagged))\r\n",
     _item(2, flags=("\\Recent", "\\Deleted", "\\Draft", "\\Flagged"))),
    ("internaldate", b'* 3 FETCH (INTERNALDATE "17-Jul-1996 02:44:25 -0700")\r\n',
     _item(3, internaldate="17-Jul-1996 02:44:25 -0700")),
    ("internaldate-space-padded", b'* 3 FETCH (INTERNALDATE " 7-Jul-1996 02:44:25 +0000")\r\n',
     _item(3, internaldate=" 7-Jul-1996 02:44:25 +0000")),
    ("rfc822-size", b"* 4 FETCH (RFC822.SIZE 44827)\r\n", _item(4, size=44827)),
    ("rfc822-size-zero", b"* 4 FETCH (RFC822.SIZE 0)\r\n", _item(4, size=0)),
    ("body-literal", b"* 5 FETCH (BODY[] {%d}\r\n%s)\r\n" % (len(BODY), BODY), _item(5, body=BODY)),
    ("body-origin-0", b"* 5 FETCH (BODY[]<0> {%d}\r\n%s)\r\n" % (len(BODY), BODY), _item(5, body=BODY)),
    ("body-peek", b"* 5 FETCH (BODY.PEEK[] {%d}\r\n%s)\r\n" % (len(BODY), BODY), _item(5, body=BODY)),
    ("rfc822", b"* 5 FETCH (RFC822 {%d}\r\n%s)\r\n" % (len(BODY), BODY), _item(5, body=BODY)),
    ("binary-literal8", b"* 5 FETCH (BINARY[] ~{%d}\r\n%s)\r\n" % (len(BODY), BODY), _item(5, body=BODY)),
    ("binary-plain-literal", b"* 5 FETCH (BINARY[] {3}\r\n\x00\x01\x02)\r\n", _item(5, body=b"\x00\x01\x02")),
    ("body-empty-literal", b"* 5 FETCH (BODY[] {0}\r\n)\r\n", _item(5, body=b"")),
    ("body-quoted", b'* 5 FETCH (BODY[] "Subject: x")\r\n', _item(5, body=b"Subject: x")),
    ("body-quoted-escapes", b'* 5 FETCH (BODY[] "say \\"hi\\" C:\\\\")\r\n', _item(5, body=b'say "hi" C:\\')),
    ("body-quoted-empty", b'* 5 FETCH (BODY[] "")\r\n', _item(5, body=b"")),
    ("body-nil", b"* 5 FETCH (BODY[] NIL)\r\n", _item(5)),
    ("body-literal-looks-like-protocol",
     b"* 5 FETCH (BODY[] {28}\r\n)\r\n* 6 FETCH (UID 1 {5}\r\nabc)\r\n",
     _item(5, body=b")\r\n* 6 FETCH (UID 1 {5}\r\nabc")),
    ("header-fields",
     b"* 6 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] " + _literal(b"Message-ID: <a@b.c>\r\n\r\n") + b")\r\n",
     _item(6, header_fields=b"Message-ID: <a@b.c>\r\n\r\n")),
    ("header-fields-two", b"* 6 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID DATE)] {2}\r\n\r\n)\r\n",
     _item(6, header_fields=b"\r\n")),
    ("header-fields-not-skipped", b"* 6 FETCH (BODY[HEADER.FIELDS.NOT (X)] {2}\r\n\r\n UID 9)\r\n", _item(6, uid=9)),
    # the whole header section (a message held by its headers, max_size) is read where header fields go
    ("body-header", b"* 6 FETCH (BODY[HEADER] {2}\r\n\r\n UID 9)\r\n", _item(6, uid=9, header_fields=b"\r\n")),
    ("body-header-partial-skipped", b"* 6 FETCH (BODY[HEADER]<5> {2}\r\n\r\n UID 9)\r\n", _item(6, uid=9)),
    ("body-header-mime-skipped", b"* 6 FETCH (BODY[1.HEADER] {2}\r\n\r\n UID 9)\r\n", _item(6, uid=9)),
    ("body-part-skipped", b'* 6 FETCH (BODY[1.2] "x" UID 9)\r\n', _item(6, uid=9)),
    ("body-partial-skipped", b"* 6 FETCH (BODY[]<100> {3}\r\nabc UID 9)\r\n", _item(6, uid=9)),
    ("binary-size-skipped", b"* 6 FETCH (BINARY.SIZE[] 300 UID 9)\r\n", _item(6, uid=9)),
    ("rfc822-header-skipped", b"* 6 FETCH (RFC822.HEADER {2}\r\n\r\n UID 9)\r\n", _item(6, uid=9)),
    ("modseq", b"* 7 FETCH (MODSEQ (624140003))\r\n", _item(7, modseq=624140003)),
    ("modseq-63-bit", b"* 7 FETCH (MODSEQ (9223372036854775807))\r\n", _item(7, modseq=(1 << 63) - 1)),
    ("all-items",
     b'* 12 FETCH (UID 4827313 FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
     b"RFC822.SIZE %d MODSEQ (12121231000) BODY[] {%d}\r\n%s)\r\n" % (len(BODY), len(BODY), BODY),
     _item(12, uid=4827313, flags=("\\Seen",), internaldate="17-Jul-1996 02:44:25 -0700", size=len(BODY),
           body=BODY, modseq=12121231000)),
    ("any-order",
     b"* 12 FETCH (BODY[] {%d}\r\n%s MODSEQ (5) RFC822.SIZE 9 FLAGS () UID 7)\r\n" % (len(BODY), BODY),
     _item(12, uid=7, flags=(), size=9, body=BODY, modseq=5)),
    ("two-literals",
     b"* 1 FETCH (BODY[HEADER.FIELDS (MESSAGE-ID)] {4}\r\nM: x BODY[] {5}\r\nhello UID 3)\r\n",
     _item(1, uid=3, body=b"hello", header_fields=b"M: x")),
    ("three-literals-one-unknown",
     b"* 1 FETCH (X-UNKNOWN {3}\r\nabc BODY[HEADER.FIELDS (MESSAGE-ID)] {4}\r\nM: x BODY[] {5}\r\nhello)\r\n",
     _item(1, body=b"hello", header_fields=b"M: x")),
    ("empty-list", b"* 1 FETCH ()\r\n", _item(1)),
]


@pytest.mark.parametrize("data,expected", [c[1:] for c in FETCH_CASES], ids=[c[0] for c in FETCH_CASES])
def test_fetch(data, expected):
    _test(data, expected)


UNKNOWN_ITEMS = [
    ("atom", b"X-OTHER-MSGID 1278455344230334865"),
    ("quoted-escapes", b'PREVIEW "a \\"quoted\\" \\\\ thing"'),
    ("nil", b"PREVIEW NIL"),
    ("list", b"EMAILID (M6d99ac3275bb4e)"),
    ("nested",
     b'ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary" '
     b'(("Terry Gray" NIL "gray" "cac.washington.edu")) NIL NIL NIL "<B27397-0100000@cac.washington.edu>")'),
    ("deeply-nested", b"BODYSTRUCTURE " + b"(" * 60 + b"x" + b")" * 60),
    ("literal-inside", b'X-OTHER-LABELS ("\\\\Inbox" {5}\r\nLabel Important)'),
    ("empty-list", b"X-THING ()"),
]


@pytest.mark.parametrize("item", [u[1] for u in UNKNOWN_ITEMS], ids=[u[0] for u in UNKNOWN_ITEMS])
def test_fetch_unknown_items_are_skipped(item):
    _test(b"* 9 FETCH (UID 1 " + item + b" FLAGS (\\Seen))\r\n", _item(9, uid=1, flags=("\\Seen",)))
    _test(b"* 9 FETCH (" + item + b")\r\n", _item(9))


def test_fetch_body_is_the_object_read():
    """The literal handed to feed_literal() becomes FetchItem.body itself: no copy."""
    parser = ResponseParser()
    assert parser.feed_line(b"* 1 FETCH (UID 5 BODY[] {11}\r\n") == []
    assert parser.wants() == 11
    data = b"hello world"
    assert parser.feed_literal(data) == []
    assert parser.wants() is None
    [item] = parser.feed_line(b")\r\n")
    assert item.body is data


def test_fetch_literal_split_across_feeds():
    stream = b"* 1 FETCH (BODY[] {10}\r\n0123456789 UID 3)\r\nA1 OK done\r\n"
    for cut in range(len(stream) + 1):
        parser = ResponseParser()
        events = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert events == [_item(1, uid=3, body=b"0123456789"), Tagged(b"A1", "OK", None, "done")], cut


def test_wants_sequence():
    parser = ResponseParser()
    assert parser.wants() is None and parser.at_boundary
    assert parser.feed_line(b"* 1 FETCH (BODY[HEADER.FIELDS (DATE)] {3}\r\n") == []
    assert parser.wants() == 3 and not parser.at_boundary
    parser.feed_literal(b"D: ")
    assert parser.wants() is None
    assert parser.feed_line(b" BODY[] {0}\r\n") == []
    assert parser.wants() == 0
    parser.feed_literal(b"")
    assert parser.feed_line(b")\r\n") == [_item(1, body=b"", header_fields=b"D: ")]
    assert parser.at_boundary


def test_many_responses_in_one_chunk():
    stream = b"".join(b"* %d FETCH (UID %d BODY[] {2}\r\nab)\r\n" % (i, i + 100) for i in range(1, 51))
    stream += b"A7 OK Fetch completed\r\n"
    events = parse_response(stream)
    assert events[:-1] == [_item(i, uid=i + 100, body=b"ab") for i in range(1, 51)]
    assert events[-1] == Tagged(b"A7", "OK", None, "Fetch completed")


# -- tagged, untagged, continuation ------------------------------------------------------------

TAGGED_CASES = [
    ("ok", b"A1 OK LOGIN completed\r\n", Tagged(b"A1", "OK", None, "LOGIN completed")),
    ("no", b"A2 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n",
     Tagged(b"A2", "NO", "AUTHENTICATIONFAILED", "Invalid credentials")),
    ("bad", b"A3 BAD Command unknown\r\n", Tagged(b"A3", "BAD", None, "Command unknown")),
    ("appenduid", b"A003 OK [APPENDUID 38505 3955] APPEND completed\r\n",
     Tagged(b"A003", "OK", "APPENDUID 38505 3955", "APPEND completed")),
    ("copyuid", b"A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n",
     Tagged(b"A004", "OK", "COPYUID 38505 304,319:320 3956:3958", "Done")),
    ("modified", b"d105 OK [MODIFIED 7,9] Conditional STORE completed\r\n",
     Tagged(b"d105", "OK", "MODIFIED 7,9", "Conditional STORE completed")),
    ("read-write", b"A142 OK [READ-WRITE] SELECT completed\r\n",
     Tagged(b"A142", "OK", "READ-WRITE", "SELECT completed")),
    ("code-without-text", b"A5 OK [READ-ONLY]\r\n", Tagged(b"A5", "OK", "READ-ONLY", "")),
    ("tag-with-bracket", b"x]1 OK fine\r\n", Tagged(b"x]1", "OK", None, "fine")),
]


@pytest.mark.parametrize("data,expected", [c[1:] for c in TAGGED_CASES], ids=[c[0] for c in TAGGED_CASES])
def test_tagged(data, expected):
    _test(data, expected)


UNTAGGED_CASES = [
    ("exists", b"* 23 EXISTS\r\n", "EXISTS", 23),
    ("exists-zero", b"* 0 EXISTS\r\n", "EXISTS", 0),
    ("recent", b"* 5 RECENT\r\n", "RECENT", 5),
    ("expunge", b"* 44 EXPUNGE\r\n", "EXPUNGE", 44),
    ("vanished", b"* VANISHED 405,407,410\r\n", "VANISHED", None),
    ("vanished-earlier", b"* VANISHED (EARLIER) 300:310,405,411\r\n", "VANISHED", None),
    ("bye", b"* BYE Autologout; idle for too long\r\n", "BYE", None),
    ("ok-uidvalidity", b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n", "OK", None),
    ("ok-uidnext", b"* OK [UIDNEXT 4392] Predicted next UID\r\n", "OK", None),
    ("ok-highestmodseq", b"* OK [HIGHESTMODSEQ 715194045007] Highest\r\n", "OK", None),
    ("ok-nomodseq", b"* OK [NOMODSEQ] Sorry, this mailbox format doesn't support modsequences\r\n", "OK", None),
    ("ok-closed", b"* OK [CLOSED] Previous mailbox closed.\r\n", "OK", None),
    ("ok-permanentflags", b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n", "OK", None),
    ("ok-plain", b"* OK IMAP4rev1 Service Ready\r\n", "OK", None),
    ("no", b"* NO Disk is 98% full, please delete unnecessary data\r\n", "NO", None),
    ("bad", b"* BAD Command line too long\r\n", "BAD", None),
    ("preauth", b"* PREAUTH IMAP4rev1 server logged in as Smith\r\n", "PREAUTH", None),
    ("flags", b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\r\n", "FLAGS", None),
    ("capability", b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI LOGINDISABLED\r\n", "CAPABILITY", None),
    ("enabled", b"* ENABLED CONDSTORE QRESYNC\r\n", "ENABLED", None),
    ("search", b"* SEARCH 2 3 6\r\n", "SEARCH", None),
    ("search-empty", b"* SEARCH\r\n", "SEARCH", None),
    ("search-modseq", b"* SEARCH 2 5 6 7 11 (MODSEQ 917162500)\r\n", "SEARCH", None),
    ("esearch", b'* ESEARCH (TAG "A282") UID MIN 2 COUNT 3\r\n', "ESEARCH", None),
    ("status", b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 HIGHESTMODSEQ 7011231777)\r\n", "STATUS", None),
    ("list", b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n', "LIST", None),
    ("list-literal-name", b'* LIST () "/" {8}\r\nfoo\r\nbar\r\n', "LIST", None),
    ("list-gmail", b'* LIST (\\All \\HasNoChildren) "/" "[Gmail]/All Mail"\r\n', "LIST", None),
    ("unknown-kind-passed-through", b"* XSTRANGE whatever ( { [ goes\r\n", "XSTRANGE", None),
    ("unknown-numbered", b"* 3 XTHING\r\n", "XTHING", 3),
]


@pytest.mark.parametrize("data,kind,number", [c[1:] for c in UNTAGGED_CASES], ids=[c[0] for c in UNTAGGED_CASES])
def test_untagged(data, kind, number):
    _test(data, Untagged(kind, number, data))


@pytest.mark.parametrize("data,code,text", [
    (b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n", "UIDVALIDITY 3857529045", "UIDs valid"),
    (b"* OK [HIGHESTMODSEQ 715194045007]\r\n", "HIGHESTMODSEQ 715194045007", ""),
    (b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n", "PERMANENTFLAGS (\\Deleted \\Seen \\*)", "Limited"),
    (b"* BYE going away\r\n", None, "going away"),
])
def test_untagged_text_and_code(data, code, text):
    [ev] = parse_response(data)
    assert parse_response_code(ev.text) == (code, text)


def test_vanished_text_gives_uid_set():
    [ev] = parse_response(b"* VANISHED (EARLIER) 300:310,405,411\r\n")
    assert ev.text == "(EARLIER) 300:310,405,411"
    assert parse_uid_set(ev.text.removeprefix("(EARLIER) ")) == [(300, 310), (405, 405), (411, 411)]


@pytest.mark.parametrize("data,text", [
    (b"+ Ready for literal data\r\n", "Ready for literal data"),
    (b"+\r\n", ""),
    (b"+ \r\n", ""),
    (b"+ YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+iSzBJ\r\n", "YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+iSzBJ"),
    (b"+ idling {5}\r\n", "idling {5}"),  # a continuation announces no literal
])
def test_continuation(data, text):
    _test(data, Continuation(text))


def test_mixed_stream():
    stream = (
        b"* 3 EXISTS\r\n"
        b"* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n"
        b"* 2 EXPUNGE\r\n"
        b"+ go ahead\r\n"
        b"* 2 FETCH (UID 11 BODY[] {3}\r\nxyz)\r\n"
        b"A9 OK [APPENDUID 1 2] done\r\n"
    )
    _test(stream, [
        Untagged("EXISTS", 3, b"* 3 EXISTS\r\n"),
        _item(1, uid=10, flags=("\\Seen",)),
        Untagged("EXPUNGE", 2, b"* 2 EXPUNGE\r\n"),
        Continuation("go ahead"),
        _item(2, uid=11, body=b"xyz"),
        Tagged(b"A9", "OK", "APPENDUID 1 2", "done"),
    ])


# -- server quirks: one named test each --------------------------------------------------------


def test_quirk_lowercase_item_names_and_nil():
    _test(b'* 1 fetch (uid 5 flags (\\seen \\ANSWERED) internaldate "17-jul-1996 02:44:25 -0700" '
          b"rfc822.size 3 body[] {3}\r\nabc binary[] nil)\r\n",
          _item(1, uid=5, flags=("\\Seen", "\\Answered"), internaldate="17-jul-1996 02:44:25 -0700", size=3,
                body=b"abc"))


def test_quirk_extra_and_trailing_spaces():
    _test(b"*  1  FETCH  (  UID  5   FLAGS ( \\Seen  $Junk )  )  \r\n", _item(1, uid=5, flags=("\\Seen", "$Junk")))
    _test(b"A1 OK  done  \r\n", Tagged(b"A1", "OK", None, "done  "))


def test_quirk_bare_lf_line_ends():
    _test(b"* 1 FETCH (UID 5 BODY[] {3}\nabc)\nA1 OK done\n",
          [_item(1, uid=5, body=b"abc"), Tagged(b"A1", "OK", None, "done")])


def test_quirk_fetch_without_space_before_list():
    _test(b"* 1 FETCH(UID 5)\r\n", _item(1, uid=5))


def test_quirk_flags_with_odd_characters():
    """Keywords as servers really send them; `\\*` only means something in PERMANENTFLAGS."""
    _test(b"* 1 FETCH (FLAGS ($Forwarded $MDNSent $label1 Old NonJunk \\* Junk] $Foo.Bar-baz_1))\r\n",
          _item(1, flags=("$Forwarded", "$MDNSent", "$label1", "Old", "NonJunk", "\\*", "Junk]", "$Foo.Bar-baz_1")))


def test_quirk_system_flags_in_odd_case_are_normalised():
    _test(b"* 1 FETCH (FLAGS (\\SEEN \\deleted \\FlAgGeD \\Unknown))\r\n",
          _item(1, flags=("\\Seen", "\\Deleted", "\\Flagged", "\\Unknown")))


def test_quirk_utf8_keyword():
    _test("* 1 FETCH (FLAGS (\\Seen Wichtig-ä))\r\n".encode(), _item(1, flags=("\\Seen", "Wichtig-ä")))


# Gmail's X-GM-EXT-1 items, as Google's documentation of the extension shows them
GMAIL_CASES = [
    ("all-three", b'* 1 FETCH (X-GM-THRID 1278455344230334865 X-GM-MSGID 1278455344230334865 '
                  b'X-GM-LABELS (\\Inbox \\Sent Important "Muy Importante") UID 4 FLAGS (\\Seen))\r\n',
     _item(1, uid=4, flags=("\\Seen",), gm_msgid=1278455344230334865, gm_thrid=1278455344230334865,
           gm_labels=("\\Inbox", "\\Sent", "Important", "Muy Importante"))),
    ("labels-atoms-only", b"* 2 FETCH (X-GM-LABELS (foo) UID 5)\r\n", _item(2, uid=5, gm_labels=("foo",))),
    ("labels-empty", b"* 3 FETCH (X-GM-LABELS () UID 6)\r\n", _item(3, uid=6, gm_labels=())),
    ("label-literal", b"* 3 FETCH (X-GM-LABELS ({9}\r\nTwo Words \\Inbox))\r\n",
     _item(3, gm_labels=("Two Words", "\\Inbox"))),
    ("label-utf8", "* 3 FETCH (X-GM-LABELS (\"Wichtig-ä\"))\r\n".encode(), _item(3, gm_labels=("Wichtig-ä",))),
    ("msgid-64-bit", b"* 4 FETCH (X-GM-MSGID 18446744073709551615)\r\n", _item(4, gm_msgid=2**64 - 1)),
    ("with-a-body", b"* 5 FETCH (X-GM-MSGID 7 X-GM-THRID 8 X-GM-LABELS (\\Inbox) UID 9 FLAGS () "
                    b'INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\n'
                    % (len(BODY), len(BODY), BODY),
     _item(5, uid=9, flags=(), internaldate="17-Jul-1996 02:44:25 -0700", size=len(BODY), body=BODY,
           gm_msgid=7, gm_thrid=8, gm_labels=("\\Inbox",))),
]


@pytest.mark.parametrize("data,expected", [c[1:] for c in GMAIL_CASES], ids=[c[0] for c in GMAIL_CASES])
def test_gmail_extension_items(data, expected):
    _test(data, expected)


@pytest.mark.parametrize("data,regex", [
    (b"* 1 FETCH (X-GM-MSGID 18446744073709551616)\r\n", "X-GM-MSGID 18446744073709551616 out of range"),
    (b"* 1 FETCH (X-GM-MSGID 0)\r\n", "X-GM-MSGID 0 out of range"),
    (b"* 1 FETCH (X-GM-THRID abc)\r\n", "expected a number for X-GM-THRID"),
    (b"* 1 FETCH (X-GM-LABELS foo)\r\n", "expected '\\(' after X-GM-LABELS"),
    (b"* 1 FETCH (X-GM-LABELS ((nested)))\r\n", "expected a label in X-GM-LABELS"),
])
def test_gmail_extension_items_refused(data, regex):
    _test_parse_error(data, regex)


def test_quirk_unsolicited_fetch_without_uid():
    _test(b"* 3 FETCH (FLAGS (\\Seen \\Deleted))\r\n", _item(3, flags=("\\Seen", "\\Deleted")))


def test_quirk_same_item_twice_with_the_same_value():
    _test(b"* 1 FETCH (UID 5 FLAGS () UID 5)\r\n", _item(1, uid=5, flags=()))


def test_quirk_internaldate_day_not_padded():
    _test(b'* 1 FETCH (INTERNALDATE "7-Jul-1996 02:44:25 -0700")\r\n',
          _item(1, internaldate="7-Jul-1996 02:44:25 -0700"))


def test_quirk_internaldate_nil():
    _test(b"* 1 FETCH (UID 1 INTERNALDATE NIL)\r\n", _item(1, uid=1))


def test_quirk_non_synchronizing_literal_in_response():
    _test(b"* 1 FETCH (BODY[] {3+}\r\nabc)\r\n", _item(1, body=b"abc"))


def test_quirk_tagged_without_text():
    _test(b"A1 OK\r\n", Tagged(b"A1", "OK", None, ""))


def test_quirk_tagged_status_lowercase():
    _test(b"a1 ok [appenduid 1 2] Done\r\n", Tagged(b"a1", "OK", "APPENDUID 1 2", "Done"))


def test_quirk_continuation_without_space():
    _test(b"+idling\r\n", Continuation("idling"))


def test_quirk_8bit_text_in_status_response():
    _test(b"A1 NO Anmeldung fehlgeschlagen: \xfcng\xfcltig\r\n",
          Tagged(b"A1", "NO", None, "Anmeldung fehlgeschlagen: \ufffdng\ufffdltig"))


def test_quirk_response_code_with_bracket_inside_list_or_string():
    assert parse_response_code('[BADCHARSET ("x]y")] no') == ('BADCHARSET ("x]y")', "no")
    assert parse_response_code("[PERMANENTFLAGS ([Label] \\*)] ok") == ("PERMANENTFLAGS ([Label] \\*)", "ok")


def test_quirk_body_partial_origin_zero_counts_as_body():
    _test(b"* 1 FETCH (BODY[]<0> {3}\r\nabc)\r\n", _item(1, body=b"abc"))


# -- errors ------------------------------------------------------------------------------------

ERROR_CASES = [
    ("uid-not-number", b"* 1 FETCH (UID abc)\r\n", r"message 1: expected a number for UID, got b'abc'"),
    ("uid-signed", b"* 1 FETCH (UID +5)\r\n", r"expected a number for UID, got b'\+5'"),
    ("uid-underscore", b"* 1 FETCH (UID 1_0)\r\n", r"expected a number for UID"),
    ("uid-zero", b"* 1 FETCH (UID 0)\r\n", r"UID 0 out of range 1\.\.4294967295"),
    ("uid-too-big", b"* 1 FETCH (UID 4294967296)\r\n", r"UID 4294967296 out of range"),
    ("uid-huge", b"* 1 FETCH (UID " + b"9" * 5000 + b")\r\n", r"expected a number for UID, got b'9999.*'\.\.\."),
    ("uid-missing-value", b"* 1 FETCH (UID)\r\n", r"expected a number for UID, got b'\)'"),
    ("uid-glued", b"* 1 FETCH (UID 12abc)\r\n", r"expected a number for UID, got b'12abc'"),
    ("unclosed-list", b"* 1 FETCH (UID 5\r\n", r"message 1 ended before its '\)'"),
    ("no-list", b"* 1 FETCH UID 5)\r\n", r"expected '\(' after '\* 1 FETCH', got b'UID'"),
    ("no-list-at-all", b"* 1 FETCH\r\n", r"expected '\(' after '\* 1 FETCH'"),
    ("junk-after-list", b"* 1 FETCH (UID 5) junk\r\n",
     r"expected the end of the line after the FETCH list, got b'junk'"),
    ("extra-paren", b"* 1 FETCH (UID 5))\r\n", r"expected the end of the line after the FETCH list, got b'\)'"),
    ("item-name-quoted", b'* 1 FETCH ("UID" 5)\r\n', r"expected a FETCH item name, got b'\"UID\"'"),
    ("flags-not-list", b"* 1 FETCH (FLAGS \\Seen)\r\n", r"expected '\(' after FLAGS, got b'\\\\Seen'"),
    ("flags-quoted", b'* 1 FETCH (FLAGS ("x"))\r\n', r"expected a flag in FLAGS, got b'\"x\"'"),
    ("flags-nested", b"* 1 FETCH (FLAGS ((x)))\r\n", r"expected a flag in FLAGS, got b'\('"),
    ("flags-not-utf8", b"* 1 FETCH (FLAGS (\xff\xfe))\r\n", r"flag is neither ASCII nor UTF-8: b'\\xff\\xfe'"),
    ("internaldate-garbage", b'* 1 FETCH (INTERNALDATE "yesterday")\r\n',
     r"expected an INTERNALDATE like .*b'\"yesterday\"'"),
    ("internaldate-unquoted", b"* 1 FETCH (INTERNALDATE 17-Jul-1996)\r\n", r"expected a quoted INTERNALDATE"),
    ("body-number", b"* 1 FETCH (BODY[] 12)\r\n",
     r"expected a literal, a quoted string or NIL after b'BODY\[\]', got b'12'"),
    ("body-list", b"* 1 FETCH (BODY[] (a))\r\n", r"expected a literal, a quoted string or NIL"),
    ("unterminated-quote", b'* 1 FETCH (BODY[] "abc)\r\n', r"unterminated quoted string .* at b'\"abc\)'"),
    ("escaped-final-quote", b'* 1 FETCH (BODY[] "abc\\")\r\n', r"unterminated quoted string"),
    ("literal-mid-line", b"* 1 FETCH (BODY[] {5} UID 1)\r\n", r"'\{' in mid-line"),
    ("nul-byte", b"* 1 FETCH (UID 1\x00)\r\n", r"unexpected byte .* at b'\\x00\)'"),
    ("control-byte", b"* 1 FETCH (UID\t1)\r\n", r"unexpected byte"),
    ("unbalanced-unknown", b"* 1 FETCH (X (a (b))\r\n", r"ended before its '\)'"),
    ("unknown-without-value", b"* 1 FETCH (X)\r\n", r"expected a value after b'X', got '\)'"),
    ("bad-origin", b"* 1 FETCH (BODY[]<x> {1}\r\na)\r\n", r"expected '<number>' or nothing after the section"),
    ("unclosed-section", b"* 1 FETCH (BODY[HEADER {1}\r\na)\r\n", r"expected '\]' to close the section"),
    ("size-negative", b"* 1 FETCH (RFC822.SIZE -1)\r\n", r"expected a number for RFC822.SIZE, got b'-1'"),
    ("modseq-bare", b"* 1 FETCH (MODSEQ 5)\r\n", r"expected 'MODSEQ \(number\)'"),
    ("modseq-too-big", b"* 1 FETCH (MODSEQ (9223372036854775808))\r\n", r"MODSEQ 9223372036854775808 out of range"),
    ("uid-conflict", b"* 1 FETCH (UID 5 UID 6)\r\n", r"two different values for UID: '5' and '6'"),
    ("seq-zero", b"* 0 FETCH (UID 1)\r\n", r"sequence number before FETCH out of range 1\.\.4294967295"),
    ("seq-missing", b"* FETCH (UID 1)\r\n", r"expected a message sequence number \(1 or more\) before FETCH"),
    ("seq-huge", b"* 99999999999 FETCH (UID 1)\r\n", r"number before FETCH out of range"),
    ("literal-too-big", b"* 1 FETCH (BODY[] {99999999999}\r\n",
     r"literal of b'99999999999' bytes announced, more than"),
    ("exists-no-number", b"* EXISTS\r\n", r"expected a number \(0 or more\) before EXISTS"),
    ("exists-trailing", b"* 3 EXISTS now\r\n", r"expected the end of the line after EXISTS, got b' now'"),
    ("expunge-zero", b"* 0 EXPUNGE\r\n", r"expected a number \(1 or more\) before EXPUNGE"),
    ("flags-numbered", b"* 3 FLAGS (\\Seen)\r\n", r"unexpected number before FLAGS"),
    ("flags-no-list", b"* FLAGS \\Seen\r\n", r"expected a list of flags like"),
    ("capability-quoted", b'* CAPABILITY IMAP4rev1 "x"\r\n', r"expected only atoms after CAPABILITY"),
    ("search-word", b"* SEARCH 1 two\r\n", r"expected a number for SEARCH, got b'two'"),
    ("list-unbalanced", b'* LIST (\\Noselect "/" foo\r\n', r"unclosed '\(' in untagged LIST"),
    ("list-unterminated", b'* LIST () "/" "foo\r\n', r"untagged LIST: unterminated quoted string"),
    ("vanished-bad-set", b"* VANISHED (EARLIER) 1:x\r\n", r"expected a UID set like '1:3,7,9:12', got b'1:x'"),
    ("vanished-empty", b"* VANISHED\r\n", r"expected 'VANISHED \[\(EARLIER\)\] uid-set'"),
    ("vanished-star", b"* VANISHED 1:*\r\n", r"expected a UID set"),
    ("code-unterminated", b"* OK [UIDNEXT 5 unterminated\r\n",
     r"expected '\]' to end the response code in '\[UIDNEXT 5 unterminated'"),
    ("code-empty", b"A1 OK [] done\r\n", r"empty response code"),
    ("tagged-bad-status", b"A1 MAYBE done\r\n", r"expected OK, NO or BAD after tag b'A1', got b'MAYBE'"),
    ("tagged-no-status", b"A1\r\n", r"expected 'TAG OK\|NO\|BAD text'"),
    ("tagged-literal", b"A1 OK {3}\r\nabc\r\n", r"literal in a tagged response"),
    ("empty-line", b"\r\n", r"expected 'TAG OK\|NO\|BAD text'"),
    ("untagged-no-kind", b"* \r\n", r"expected '\* \[number\] KIND'"),
    ("untagged-number-only", b"* 5\r\n", r"expected '\* \[number\] KIND'"),
    ("ends-mid-line", b"* 1 EXISTS", r"ended inside a response"),
    ("ends-mid-literal", b"* 1 FETCH (BODY[] {5}\r\nab", r"ended inside a response"),
    ("ends-after-literal", b"* 1 FETCH (BODY[] {2}\r\nab", r"ended inside a response"),
]


@pytest.mark.parametrize("data,regex", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_parse_error(data, regex):
    _test_parse_error(data, regex)


def test_error_quotes_at_most_80_bytes():
    with pytest.raises(ProtocolError) as info:
        parse_response(b"* 1 FETCH (UID " + b"x" * 10_000 + b")\r\n")
    assert len(str(info.value)) < 200
    assert "b'xxxx" in str(info.value) and "..." in str(info.value)


def test_feed_line_unterminated_and_eof():
    with pytest.raises(ProtocolError, match=r"line not terminated by CRLF .*b'\* 1 EXISTS'"):
        ResponseParser().feed_line(b"* 1 EXISTS")
    with pytest.raises(ProtocolError, match=r"the stream ended where a line was expected"):
        ResponseParser().feed_line(b"")


def test_feed_literal_short_read():
    parser = ResponseParser()
    parser.feed_line(b"* 1 FETCH (BODY[] {10}\r\n")
    with pytest.raises(ProtocolError, match=r"literal truncated: expected 10 bytes, got 3"):
        parser.feed_literal(b"abc")


def test_parser_refuses_input_after_an_error():
    parser = ResponseParser()
    with pytest.raises(ProtocolError):
        parser.feed(b"* 1 FETCH (UID x)\r\n")
    with pytest.raises(ProtocolError, match=r"stopped at an earlier error: .*expected a number for UID"):
        parser.feed(b"A1 OK\r\n")
    with pytest.raises(ProtocolError, match=r"stopped at an earlier error"):
        parser.feed_line(b"A1 OK\r\n")


def test_max_literal_is_configurable():
    parser = ResponseParser(max_literal=100)
    with pytest.raises(ProtocolError, match=r"more than the 100 allowed"):
        parser.feed_line(b"* 1 FETCH (BODY[] {101}\r\n")


def test_max_line_in_feed():
    parser = ResponseParser(max_line=1000)
    with pytest.raises(ProtocolError, match=r"line longer than 1000 bytes"):
        for _ in range(20):
            parser.feed(b"x" * 100)


def test_shell_misuse_is_a_bug_not_a_protocol_error():
    parser = ResponseParser()
    with pytest.raises(RuntimeError, match=r"while a line is wanted"):
        parser.feed_literal(b"abc")
    parser.feed_line(b"* 1 FETCH (BODY[] {3}\r\n")
    with pytest.raises(RuntimeError, match=r"while a literal of 3 bytes is wanted"):
        parser.feed_line(b")\r\n")
    with pytest.raises(RuntimeError, match=r"exactly one line"):
        ResponseParser().feed_line(b"* 1 EXISTS\r\n* 2 EXISTS\r\n")


@pytest.mark.parametrize("line", [
    b'* 1 FETCH (BODY[] "' + b'\\"' * 50_000 + b")\r\n",  # an escaped quote never closes
    b"* 1 FETCH (X " + b"[" * 200_000 + b")\r\n",  # sections that never close
    b"* 1 FETCH (X " + b"[a" * 100_000 + b")\r\n",
    b"* 1 FETCH (X " + b"(" * 100_000 + b")\r\n",  # deep nesting: no recursion
    b"* 1 FETCH (X " + b'"a" ' * 50_000 + b"\x00)\r\n",
    b"* LIST " + b'"\\"' * 50_000 + b"\r\n",
    b"* OK [" + b"(" * 100_000 + b"\r\n",
])
def test_linear_time_on_hostile_lines(line):
    start = time.process_time()
    try:
        parse_response(line)
    except ProtocolError:
        pass
    assert time.process_time() - start < 2.0  # quadratic behaviour would take minutes


# -- helpers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw,iso", [
    ("17-Jul-1996 02:44:25 -0700", "1996-07-17T02:44:25-07:00"),
    (" 7-Jul-1996 02:44:25 -0700", "1996-07-07T02:44:25-07:00"),
    ("7-Jul-1996 02:44:25 +0000", "1996-07-07T02:44:25+00:00"),
    ("01-jan-2024 00:00:00 +0530", "2024-01-01T00:00:00+05:30"),
    ("29-Feb-2024 23:59:60 -1200", "2024-02-29T23:59:60-12:00"),
])
def test_parse_internaldate(raw, iso):
    assert parse_internaldate(raw) == iso


@pytest.mark.parametrize("raw", [
    "", "garbage", "17-Jul-1996", "17-Jul-1996 02:44:25", "17-Foo-1996 02:44:25 -0700",
    "30-Feb-2023 02:44:25 -0700", "29-Feb-2023 02:44:25 -0700", "00-Jul-1996 02:44:25 -0700",
    "17-Jul-1996 24:00:00 -0700", "17-Jul-1996 02:60:25 -0700", "17-Jul-1996 02:44:25 -07:00",
    "17-Jul-1996 02:44:25 0700", "\"17-Jul-1996 02:44:25 -0700\"", "17-Jul-1996  02:44:25 -0700",
    "１7-Jul-1996 02:44:25 -0700",
])
def test_parse_internaldate_errors(raw):
    with pytest.raises(ProtocolError, match=r"INTERNALDATE"):
        parse_internaldate(raw)


@pytest.mark.parametrize("text,expected", [
    ("Logged in", (None, "Logged in")),
    ("", (None, "")),
    ("[ALERT] System shutdown in 10 minutes", ("ALERT", "System shutdown in 10 minutes")),
    ("[APPENDUID 38505 3955] APPEND completed", ("APPENDUID 38505 3955", "APPEND completed")),
    ("[copyuid 1 2:3 4:5]", ("COPYUID 1 2:3 4:5", "")),
    ("[MODIFIED 7,9] done", ("MODIFIED 7,9", "done")),
    ("[UIDNEXT 4392]Predicted", ("UIDNEXT 4392", "Predicted")),
    ("[NOMODSEQ] Sorry", ("NOMODSEQ", "Sorry")),
    ("[CLOSED]", ("CLOSED", "")),
    ("text with [brackets] later", (None, "text with [brackets] later")),
])
def test_parse_response_code(text, expected):
    assert parse_response_code(text) == expected


@pytest.mark.parametrize("uids,expected", [
    ([], ""),
    ([5], "5"),
    ([1, 2, 3, 4, 5, 7, 9, 10, 11, 12], "1:5,7,9:12"),
    ([12, 3, 1, 2, 2, 3], "1:3,12"),
    (range(1, 20001), "1:20000"),
    ([4294967295, 1], "1,4294967295"),
])
def test_format_uid_set(uids, expected):
    assert format_uid_set(uids) == expected


@pytest.mark.parametrize("uids", [[0], [-1, 5], [1 << 32]])
def test_format_uid_set_rejects_non_uids(uids):
    with pytest.raises(ValueError, match=r"outside 1\.\.4294967295"):
        format_uid_set(uids)


@given(st.sets(st.integers(1, 5000), max_size=200))
def test_format_uid_set_round_trips(uids):
    text = format_uid_set(uids)
    if not uids:
        assert text == ""
        return
    assert {u for lo, hi in parse_uid_set(text) for u in range(lo, hi + 1)} == uids


@pytest.mark.parametrize("text,expected", [
    ("1:3,7,12:10", [(1, 3), (7, 7), (10, 12)]),
    (b"4294967295", [(4294967295, 4294967295)]),
])
def test_parse_uid_set(text, expected):
    assert parse_uid_set(text) == expected


@pytest.mark.parametrize("text", ["", "1,", ",1", "1:", "0", "1:*", "a", "1;2", "1 2", "4294967296"])
def test_parse_uid_set_errors(text):
    with pytest.raises(ProtocolError, match=r"expected a UID set"):
        parse_uid_set(text)


@pytest.mark.parametrize("s,expected", [
    ("INBOX", b'"INBOX"'),
    ("", b'""'),
    ('a"b\\c', b'"a\\"b\\\\c"'),
    ("&Ab-", b'"&Ab-"'),
])
def test_quote(s, expected):
    assert quote(s) == expected
    assert parse_response(b"* 1 FETCH (BODY[] " + expected + b")\r\n")[0].body == s.encode()


def test_quote_refuses_what_needs_a_literal():
    for bad in ("a\r\nb", "a\nb", "nul\x00"):
        with pytest.raises(ValueError, match=r"literal"):
            quote(bad)
    with pytest.raises(ValueError, match=r"UTF8=ACCEPT"):
        quote("Grüße")
    assert quote("Grüße", utf8=True) == '"Grüße"'.encode()


# -- properties --------------------------------------------------------------------------------
# A strategy for valid responses, each with the event it must give.

_FLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent", "$Forwarded", "$MDNSent",
          "NonJunk", "$label1", "\\*"]
_DATES = ["17-Jul-1996 02:44:25 -0700", " 1-Jan-2024 00:00:00 +0000", "31-Dec-1999 23:59:59 +1400"]
_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?-", min_size=1,
                 max_size=12)
_text = st.lists(_words, max_size=5).map(" ".join)
_sp = st.sampled_from([b" ", b" ", b" ", b"  "])


def _quoted(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


@st.composite
def fetch_responses(draw):
    seq = draw(st.integers(1, 10**6))
    fields: dict = {}
    parts = []
    for kind in draw(st.permutations(["uid", "flags", "date", "size", "body", "headers", "modseq",
                                      "unknown", "unknown2"])):
        if not draw(st.booleans()):
            continue
        if kind == "uid":
            fields["uid"] = uid = draw(st.integers(1, 2**32 - 1))
            parts.append(b"UID %d" % uid)
        elif kind == "flags":
            flags = tuple(draw(st.lists(st.sampled_from(_FLAGS), max_size=5)))
            fields["flags"] = flags
            parts.append(b"FLAGS (" + b" ".join(f.encode() for f in flags) + b")")
        elif kind == "date":
            fields["internaldate"] = date = draw(st.sampled_from(_DATES))
            parts.append(b'INTERNALDATE "' + date.encode() + b'"')
        elif kind == "size":
            fields["size"] = size = draw(st.integers(0, 2**40))
            parts.append(b"RFC822.SIZE %d" % size)
        elif kind == "body":
            name = draw(st.sampled_from([b"BODY[]", b"BODY[]<0>", b"RFC822", b"BINARY[]", b"body.peek[]"]))
            if draw(st.booleans()):
                body = draw(st.binary(max_size=300))
                value = (b"~" if name == b"BINARY[]" and draw(st.booleans()) else b"") + _literal(body)
            else:
                body = draw(st.binary(max_size=60).filter(lambda b: not set(b) & {0, 10, 13}))
                value = _quoted(body)
            fields["body"] = body
            parts.append(name + b" " + value)
        elif kind == "headers":
            fields["header_fields"] = headers = draw(st.binary(max_size=80))
            parts.append(b"BODY[HEADER.FIELDS (MESSAGE-ID)] " + _literal(headers))
        elif kind == "modseq":
            fields["modseq"] = modseq = draw(st.integers(1, 2**63 - 1))
            parts.append(b"MODSEQ (%d)" % modseq)
        else:
            parts.append(draw(st.sampled_from([
                b"X-OTHER-MSGID 1278455344230334865",
                b'X-OTHER-LABELS ("\\\\Inbox" Important)',
                b'ENVELOPE ("date" "subj" (("A" NIL "a" "b.c")) NIL NIL NIL NIL NIL NIL "<id>")',
                b"X-LIT " + _literal(b"some\r\nliteral)"),
                b"BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1)(\"TEXT\" \"HTML\" NIL NIL NIL "
                b"\"7BIT\" 1 1) \"ALTERNATIVE\")",
            ])))
    sep = draw(_sp)
    wire = b"* %d FETCH (" % seq + sep.join(parts) + b")\r\n"
    return wire, _item(seq, **fields)


@st.composite
def other_responses(draw):
    choice = draw(st.integers(0, 4))
    if choice == 0:
        tag = draw(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=6)).encode()
        status = draw(st.sampled_from(["OK", "NO", "BAD"]))
        code = draw(st.sampled_from([None, "APPENDUID 38505 3955", "COPYUID 1 2:3 4:5", "MODIFIED 7,9",
                                     "UIDNEXT 4392", "HIGHESTMODSEQ 715194045007", "READ-WRITE"]))
        text = draw(_text)
        wire = tag + b" " + status.encode() + (b" [" + code.encode() + b"]" if code else b"")
        wire += (b" " + text.encode() if text else b"") + b"\r\n"
        return wire, Tagged(tag, status, code, text)
    if choice == 1:
        kind = draw(st.sampled_from(["EXISTS", "EXPUNGE", "RECENT"]))
        n = draw(st.integers(1, 10**6))
        wire = b"* %d %s\r\n" % (n, kind.encode())
        return wire, Untagged(kind, n, wire)
    if choice == 2:
        wire = draw(st.sampled_from([
            b"* VANISHED (EARLIER) 300:310,405,411\r\n", b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n",
            b"* FLAGS (\\Seen $Forwarded)\r\n", b'* LIST () "/" ' + _literal(b"odd\r\nname") + b"\r\n",
            b"* SEARCH 2 3 6\r\n", b"* BYE bye\r\n",
        ]))
        return wire, Untagged(wire[2:].split(b" ")[0].decode(), None, wire)
    if choice == 3:
        text = draw(_text)
        return b"+ " + text.encode() + b"\r\n", Continuation(text)
    return draw(fetch_responses())


streams = st.lists(st.one_of(fetch_responses(), other_responses()), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(streams)
def test_valid_streams_give_the_expected_events(responses):
    wire = b"".join(w for w, _ in responses)
    expected = [e for _, e in responses]
    assert parse_response(wire) == expected
    assert _shell(wire) == expected


@settings(max_examples=300, deadline=None)
@given(streams, st.data())
def test_any_chunking_gives_the_same_events(responses, data):
    wire = b"".join(w for w, _ in responses)
    expected = [e for _, e in responses]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=30)))
    parser = ResponseParser()
    events = []
    for a, b in zip([0] + cuts, cuts + [len(wire)]):
        events += parser.feed(wire[a:b])
    assert parser.at_boundary
    assert events == expected


def _outcome(fn, data):
    """The events, or the ProtocolError's type; any other exception propagates and fails the test."""
    try:
        return fn(data)
    except ProtocolError:
        return ProtocolError


def _only_protocol_errors(data: bytes) -> None:
    whole = _outcome(parse_response, data)
    bytewise = _outcome(_bytewise, data)
    shell = _outcome(_shell, data)
    assert whole == bytewise == shell


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_raise_only_protocol_error(data):
    _only_protocol_errors(data)


_PREFIXES = [b"* 1 FETCH (", b"* 1 FETCH (UID 1 ", b"* 2 FETCH (BODY[] ", b"A1 OK ", b"* OK [", b"* LIST ",
             b"* VANISHED ", b"* 3 ", b"+ ", b"* FLAGS ("]
_FRAGMENTS = [b"(", b")", b" ", b'"', b"\\", b"{3}\r\n", b"~{2}\r\n", b"{0}\r\n", b"\r\n", b"\n", b"NIL", b"UID",
              b"FLAGS", b"BODY[]", b"BODY[HEADER.FIELDS (X)]", b"<0>", b"[", b"]", b"7", b"0", b"4294967296",
              b"\\Seen", b"MODSEQ", b"INTERNALDATE", b'"17-Jul-1996 02:44:25 -0700"', b"\x00", b"\xff", b"~"]


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(_PREFIXES), st.lists(st.sampled_from(_FRAGMENTS), max_size=25))
def test_fuzz_protocol_shaped_input_raises_only_protocol_error(prefix, fragments):
    _only_protocol_errors(prefix + b"".join(fragments) + b"\r\n")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams, st.data())
def test_fuzz_mutated_streams_raise_only_protocol_error(responses, data):
    wire = bytearray(b"".join(w for w, _ in responses))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "duplicate"]))
        pos = data.draw(st.integers(0, len(wire)))
        if op == "flip" and pos < len(wire):
            wire[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            wire[pos:pos] = data.draw(st.sampled_from(_FRAGMENTS + [b"\x00", b"}", b"{"]))
        elif op == "delete":
            del wire[pos : pos + data.draw(st.integers(1, 8))]
        else:
            wire[pos:pos] = wire[pos : pos + data.draw(st.integers(1, 20))]
    _only_protocol_errors(bytes(wire))


# The fast path (_fetch_simple) and the general parser (_parse_fetch) must agree: whatever the fast path
# accepts, the general parser accepts with the same result; whatever the general parser refuses, the
# fast path hands over (returns None). Values mostly fit their item, so that both paths accept often.
_FITTING = {
    b"UID": [b"1", b"4294967295", b"0001"],
    b"uid": [b"7"],
    b"FLAGS": [b"(\\Seen $Fwd)", b"()", b"(\\SEEN)", b"( \\Seen  x )", b"(\xc3\xa4)", b"(\\*)"],
    b"INTERNALDATE": [b'"17-Jul-1996 02:44:25 -0700"', b'" 7-jul-1996 02:44:25 +0000"', b"NIL",
                      b'"17-Jul-1996 02:44:25 -0\\700"'],
    b"RFC822.SIZE": [b"0", b"123", b"999999999999999999", b"9223372036854775807"],
    b"BODY[]": [b"\n", b'"quoted"', b'"esc \\" \\\\"', b'""', b"NIL"],
    b"body[]<0>": [b"\n", b'"x"'],
    b"BINARY[]": [b"\n"],
    b"RFC822": [b"\n"],
    b"BODY[HEADER.FIELDS (MESSAGE-ID)]": [b"\n", b'"M: x"'],
    b"MODSEQ": [b"(5)", b"( 5 )", b"(9223372036854775807)"],
    b"X-GM-MSGID": [b"1278455344230334865", b"18446744073709551615", b"0001"],
    b"X-GM-THRID": [b"1266894439832287888"],
    b"X-GM-LABELS": [b"(\\Inbox \\Sent Important)", b"()", b'(\\Inbox "Muy Importante")', b"( a  b )",
                     b"(\n)", b"(\xc3\xa4)"],
    b"X-FOO": [b"1", b'"q"', b"NIL", b"((a) b)", b"\n", b"(a [b] c)", b"abc", b"(\n x)"],
    b"BODY[]<5>": [b"\n", b'"partial"'],
}
_NAMES = list(_FITTING) + [b"BODY[HEADER", b"BODY[]<x>"]
_VALUES = sorted({v for vs in _FITTING.values() for v in vs} | {
    b"0", b"4294967296", b"-1", b"12abc", b"99999999999999999999", b'"7-Jul-1996 02:44:25 -0700 "', b"(\xff)"})


@st.composite
def _fetch_pair(draw):
    name = draw(st.sampled_from(_NAMES))
    fitting = _FITTING.get(name)
    value = draw(st.sampled_from(fitting if fitting and draw(st.integers(0, 9)) else _VALUES))
    gap = draw(st.sampled_from([b" ", b" ", b" ", b"  ", b""]))
    return name + gap + value


@settings(max_examples=1500, deadline=None)
@given(st.lists(_fetch_pair(), max_size=6), st.sampled_from([b" ", b" ", b" ", b"", b"  "]),
       st.sampled_from([b")", b")", b")", b") ", b"", b") x", b"))", b" )"]))
def test_fetch_fast_path_agrees_with_general_parser(pairs, sep, end):
    text = b"* 1 FETCH (" + sep.join(pairs) + end
    lits = [b"literal %d" % i for i in range(text.count(b"\n"))]
    pos = len(b"* 1 FETCH (")
    try:
        general = R._parse_fetch(1, text, lits, pos - 1)
    except ProtocolError:
        general = ProtocolError
    fast = R._fetch_simple(1, text, pos, lits)
    if fast is not None:
        assert fast == general
        for a, b in zip([fast.body, fast.header_fields], [general.body, general.header_fields]):
            if any(b is lit for lit in lits):
                assert a is b  # literals are passed through, never copied


# -- the bulk path: body_fetch_head / body_fetch_item ------------------------------------------------

_USUAL_BODY = b"Message-ID: <x@y>\r\n\r\nhello\r\n"


def _general_events(line: bytes, body: bytes, end: bytes = b")\r\n"):
    parser = ResponseParser()
    assert parser.feed_line(line) == []
    assert parser.feed_literal(body) == []
    return parser.feed_line(end)


@pytest.mark.parametrize("items,expected", [
    (b'UID 40 FLAGS (\\Seen) INTERNALDATE "01-Jan-2024 21:19:07 +0000" RFC822.SIZE 29 MODSEQ (3)',
     dict(uid=40, flags=("\\Seen",), internaldate="01-Jan-2024 21:19:07 +0000", size=29, modseq=3)),
    (b'UID 1 FLAGS () INTERNALDATE " 7-Jul-1996 02:44:25 -0700" RFC822.SIZE 29',
     dict(uid=1, flags=(), internaldate=" 7-Jul-1996 02:44:25 -0700", size=29)),
    (b'UID 4294967295 FLAGS (\\SEEN \\Recent $Label1) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 0',
     dict(uid=4294967295, flags=("\\Seen", "\\Recent", "$Label1"), internaldate="17-Jul-1996 02:44:25 -0700",
          size=0)),
    (b'RFC822.SIZE 29 FLAGS (\\Seen) UID 9 INTERNALDATE "17-Jul-1996 02:44:25 -0700"',  # another order
     dict(uid=9, flags=("\\Seen",), internaldate="17-Jul-1996 02:44:25 -0700", size=29)),
])
def test_body_fetch_fast_path_reads_the_usual_response(items, expected):
    line = b"* 12 FETCH (" + items + b" BODY[] {%d}\r\n" % len(_USUAL_BODY)
    head = R.body_fetch_head(line)
    assert head == (12, items, len(_USUAL_BODY))
    body = memoryview(bytearray(_USUAL_BODY))
    item = R.body_fetch_item(12, items, body)
    assert item is not None and item.body is body  # the buffer read into, not a copy
    assert item == _item(12, body=body, **expected)
    assert _general_events(line, _USUAL_BODY) == [_item(12, body=_USUAL_BODY, **expected)]
    usual = R.usual_body_fetch(line)
    if items.startswith(b"UID"):  # the usual order: the whole line is read by one pattern
        e = {"modseq": None, **expected}
        assert usual == (12, e["uid"], e["flags"], e["internaldate"], e["size"], e["modseq"], len(_USUAL_BODY))
    else:
        assert usual is None


@pytest.mark.parametrize("line", [
    b"* 1 FETCH (BODY[] {5}\r\n",  # no other item
    b"* 1 FETCH (UID 1 BODY[] {5+}\r\n",  # non-synchronizing
    b"* 1 FETCH (UID 1 BINARY[] ~{5}\r\n",
    b"* 1 FETCH (UID 1 BODY[] {5}\n",  # bare LF
    b"* 1 FETCH (UID 1 BODY[]<0> {5}\r\n",
    b"* 0 FETCH (UID 1 BODY[] {5}\r\n",  # sequence number out of range
    b"* 4294967296 FETCH (UID 1 BODY[] {5}\r\n",
    b"* 1 FETCH (UID 1 BODY[] {99999999999}\r\n",  # more than MAX_LITERAL
    b"* 1 FETCH (BODY[HEADER] {2}\r\n",
    b"* 1 fetch (UID 1 BODY[] {5}\r\n",
])
def test_body_fetch_head_leaves_other_shapes_to_the_parser(line):
    assert R.body_fetch_head(line) is None
    assert R.usual_body_fetch(line) is None


_USUAL_VALUES = st.tuples(
    st.sampled_from([b"1", b"4294967295", b"4294967296", b"0", b"007"]),
    st.sampled_from([b"()", b"(\\Seen)", b"(\\seen $Fwd)", b"(\xc3\xa4)", b"( \\Seen )", b"(\\*)"]),
    st.sampled_from([b'"17-Jul-1996 02:44:25 -0700"', b'" 7-Jul-1996 02:44:25 +0000"', b'"7-Jul-1996 2:44:25 +0000"',
                     b"NIL", b'"31-Feb-2024 00:00:00 +0000"']),
    st.sampled_from([b"0", b"29", b"999999999999999999", b"9999999999999999999"]),
    st.sampled_from([b"", b" MODSEQ (5)", b" MODSEQ (9223372036854775807)", b" MODSEQ (x)", b" MODSEQ (1) UID 2"]),
)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(
    _USUAL_VALUES.map(lambda v: b"UID %s FLAGS %s INTERNALDATE %s RFC822.SIZE %s%s" % v),
    st.lists(_fetch_pair().filter(lambda p: b"\n" not in p), min_size=1, max_size=5).map(b" ".join),
))
def test_body_fetch_fast_path_agrees_with_general_parser(items):
    """Whatever the bulk path accepts, ResponseParser reads the same way; what it does not, it
    leaves to ResponseParser (returns None) rather than reading differently."""
    line = b"* 3 FETCH (" + items + b" BODY[] {%d}\r\n" % len(_USUAL_BODY)
    head = R.body_fetch_head(line)
    usual = R.usual_body_fetch(line)
    if head is None:
        assert usual is None  # the whole-line pattern accepts no more than the two-step path
        return
    seq, its, n = head
    assert (seq, n) == (3, len(_USUAL_BODY))
    try:
        general = _general_events(line, _USUAL_BODY)
    except ProtocolError:
        general = ProtocolError
    fast = R.body_fetch_item(seq, its, _USUAL_BODY)
    if usual is not None:  # read by one pattern: the same item as the two steps and the parser give
        assert fast is not None
        u_seq, uid, flags, date, size, modseq, u_n = usual
        assert R.FetchItem(u_seq, uid, flags, date, size, _USUAL_BODY, None, modseq) == fast
        assert u_n == n
    if fast is not None:
        assert [fast] == general
        assert fast.body is _USUAL_BODY


@pytest.mark.parametrize("line", [
    b"* 1 FETCH (UID 1 FLAGS ())\r\n",
    b"* 17 FETCH (UID 4242 FLAGS (\\Seen \\Flagged $Forwarded))\r\n",
    b"* 3 FETCH (UID 9 FLAGS (\\seen \\RECENT))\r\n",  # case of system flags normalised, \Recent kept
])
def test_flags_listing_lines_read_whole_as_the_parser_reads_them(line):
    from mailsync.imap.responses import flags_listing_item

    (parsed,) = ResponseParser().feed_line(line)
    assert flags_listing_item(line) == parsed


@pytest.mark.parametrize("line", [
    b"* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (5))\r\n",  # other shapes go to the parser
    b"* 1 FETCH (FLAGS (\\Seen) UID 1)\r\n",
    b"* 1 FETCH (UID 1 FLAGS (\\Seen))\n",
    b"* 0 FETCH (UID 1 FLAGS ())\r\n",
    b"* 1 FETCH (UID 0 FLAGS ())\r\n",
    b"* 1 FETCH (UID 1 FLAGS (\xc3\xa9))\r\n",
])
def test_flags_listing_lines_of_other_shapes_are_left_to_the_parser(line):
    from mailsync.imap.responses import flags_listing_item

    assert flags_listing_item(line) is None
