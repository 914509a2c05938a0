"""Payload parsers (mailsync.imap.payloads), table-driven; malformed input only raises ProtocolError."""

import pytest
from hypothesis import given, strategies as st

from mailsync.errors import ProtocolError
from mailsync.imap import payloads as PL


@pytest.mark.parametrize("raw,flags,delim,name", [
    (b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"\r\n', ("\\HasNoChildren", "\\Sent"), "/", "Sent"),
    (b'* LIST () "." INBOX\r\n', (), ".", "INBOX"),
    (b'* LIST (\\Noselect) NIL ""\r\n', ("\\Noselect",), None, ""),
    (b'* LIST () "/" {5}\r\nab cd\r\n', (), "/", "ab cd"),
    (b'* LIST () "/" "Entw&APw-rfe"\r\n', (), "/", "Entw&APw-rfe"),
    (b'* LIST () "/" "with \\"quote\\""\r\n', (), "/", 'with "quote"'),
])
def test_list(raw, flags, delim, name):
    e = PL.parse_list(raw)
    assert (e.flags, e.delimiter, e.raw_name) == (flags, delim, name)


def test_status():
    assert PL.parse_status(b'* STATUS "INBOX" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 1 HIGHESTMODSEQ 9)\r\n') == (
        "INBOX", {"MESSAGES": 3, "UIDNEXT": 4, "UIDVALIDITY": 1, "HIGHESTMODSEQ": 9})
    with pytest.raises(ProtocolError, match="not a number"):
        PL.parse_status(b'* STATUS "INBOX" (MESSAGES x)\r\n')
    with pytest.raises(ProtocolError, match="pairs"):
        PL.parse_status(b'* STATUS "INBOX" (MESSAGES)\r\n')


def test_search_esearch_vanished():
    assert PL.parse_search(b"* SEARCH 2 5 9\r\n") == [2, 5, 9]
    assert PL.parse_search(b"* SEARCH\r\n") == []
    assert PL.parse_search(b"* SEARCH 2 (MODSEQ 7)\r\n") == [2]
    assert PL.parse_esearch(b'* ESEARCH (TAG "A1") UID ALL 1:3,5 COUNT 4\r\n') == {
        "UID": True, "ALL": [1, 2, 3, 5], "COUNT": 4}
    assert PL.parse_esearch(b'* ESEARCH (TAG "A1") UID\r\n')["ALL"] == []
    assert PL.parse_vanished(b"* VANISHED (EARLIER) 1:3,7\r\n") == (True, [1, 2, 3, 7])
    assert PL.parse_vanished(b"* VANISHED 4\r\n") == (False, [4])


def test_a_huge_uid_set_is_counted_not_expanded():
    """`1:4294967295` from a server: counted as ranges; expanding it is refused with a
    ProtocolError, never a MemoryError."""
    raw = b"* VANISHED (EARLIER) 1:4294967295\r\n"
    assert PL.vanished_ranges(raw) == (True, [(1, 4294967295)])
    assert PL.set_size([(1, 4294967295), (7, 9)]) == 4294967298
    with pytest.raises(ProtocolError, match="4294967295 UIDs"):
        PL.parse_vanished(raw)
    with pytest.raises(ProtocolError, match="refused"):
        PL.parse_esearch(b'* ESEARCH (TAG "A1") UID ALL 1:4294967295\r\n')
    with pytest.raises(ProtocolError, match="refused"):
        PL.copyuid("COPYUID 5 1:4294967295 1:4294967295")
    assert PL.expand([(1, 3), (7, 7)]) == [1, 2, 3, 7]


def test_codes():
    assert PL.appenduid("APPENDUID 38505 3955") == (38505, 3955)
    assert PL.appenduid("UIDNEXT 4") is None
    assert PL.copyuid("COPYUID 38505 304,319:320 3956:3958") == (38505, [304, 319, 320], [3956, 3957, 3958])
    assert PL.modified("MODIFIED 7,9") == [7, 9]
    assert PL.modified(None) == []
    with pytest.raises(ProtocolError):
        PL.copyuid("COPYUID 1 1:3 5")


@pytest.mark.parametrize("raw", [
    b'* LIST (\\Sent "/" "Sent"\r\n', b'* LIST () "/"\r\n', b"* STATUS\r\n", b'* LIST () "/" "unterminated\r\n',
    b"* VANISHED (EARLIER)\r\n", b"* SEARCH x\r\n", b"* FOO\r\n",
])
def test_malformed_raise_protocol_error(raw):
    fn = {b"LIST": PL.parse_list, b"STATUS": PL.parse_status, b"VANISHED": PL.parse_vanished,
          b"SEARCH": PL.parse_search}.get(raw.split()[1], PL.parse_list)
    with pytest.raises(ProtocolError):
        fn(raw)


@given(st.binary(max_size=200))
def test_fuzz_only_protocol_error(data):
    for fn in (PL.parse_list, PL.parse_status, PL.parse_search, PL.parse_esearch, PL.parse_vanished):
        try:
            fn(b"* " + data)
        except ProtocolError:
            pass


def test_status_with_mailboxid():
    from mailsync.imap.payloads import parse_status_reply

    name, values, mailboxid = parse_status_reply(
        b'* STATUS "P/a" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 1700000000 MAILBOXID (F2212ea87-6097))')
    assert (name, values, mailboxid) == ("P/a", {"MESSAGES": 3, "UIDNEXT": 4, "UIDVALIDITY": 1700000000},
                                         "F2212ea87-6097")
    assert parse_status_reply(b'* STATUS INBOX (MESSAGES 1)')[2] is None


@pytest.mark.parametrize("raw", [b'* STATUS X (MAILBOXID (a b))', b'* STATUS X (MAILBOXID (a.b))',
                                 b'* STATUS X (MAILBOXID ())'])
def test_status_with_a_bad_mailboxid_is_a_protocol_error(raw):
    from mailsync.errors import ProtocolError
    from mailsync.imap.payloads import parse_status_reply

    with pytest.raises(ProtocolError):
        parse_status_reply(raw)


# --- the usual shapes of a listing, read without the tokenizer: the same answers -------------------

def _both(fast, slow, raw):
    """(fast's answer or its error type, slow's answer or its error type)."""
    out = []
    for fn in (fast, slow):
        try:
            out.append(fn(raw))
        except ProtocolError:
            out.append(ProtocolError)
    return out


_quoted_name = st.text(st.sampled_from('abcXYZ019 ._-/&+,~"\\'), max_size=12).map(
    lambda t: b'"' + t.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"')
_atom_name = st.text(st.sampled_from("abcXYZ019._-/&+,~$:"), min_size=1, max_size=12).map(str.encode)
_name = st.one_of(_quoted_name, _atom_name, st.just(b"NIL"), st.just(b'"NIL"'))


@given(flags=st.lists(st.sampled_from([b"\\HasNoChildren", b"\\Sent", b"\\Noselect", b"\\Marked", b"$Junk",
                                        b"Custom-1", b"\\X_Y"]), max_size=3),
       delim=st.sampled_from([b'"/"', b'"."', b"NIL", b'"\\\\"', b'"|"']), name=_name,
       tail=st.sampled_from([b"\r\n", b"", b' ("CHILDINFO" ("SUBSCRIBED"))\r\n']),
       verb=st.sampled_from([b"LIST", b"list", b"LSUB"]))
def test_a_list_line_reads_the_same_with_or_without_the_tokenizer(flags, delim, name, tail, verb):
    raw = b"* " + verb + b" (" + b" ".join(flags) + b") " + delim + b" " + name + tail
    fast, slow = _both(PL.parse_list, PL.parse_list_tokens, raw)
    assert fast == slow


@given(name=_name, items=st.lists(st.tuples(st.sampled_from([b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY",
                                                              b"HIGHESTMODSEQ", b"UNSEEN", b"SIZE", b"messages"]),
                                            st.sampled_from([b"0", b"7", b"4294967295", b"18446744073709551615",
                                                             b"x", b"-1", b"(F2212ea87)"])), max_size=5),
       tail=st.sampled_from([b"\r\n", b""]))
def test_a_status_line_reads_the_same_with_or_without_the_tokenizer(name, items, tail):
    raw = b"* STATUS " + name + b" (" + b" ".join(k + b" " + v for k, v in items) + b")" + tail
    fast, slow = _both(PL.parse_status_reply, PL.parse_status_tokens, raw)
    assert fast == slow


def test_the_usual_lines_take_the_fast_way():
    """What Dovecot, Cyrus and Courier send for a plain folder matches the usual shapes (else the
    fast way would never be taken and the tests above would compare the tokenizer with itself)."""
    for raw in (b'* LIST (\\HasNoChildren) "." "Bulk00"\r\n', b'* LIST (\\HasChildren \\Noselect) "/" INBOX\r\n',
                b'* LIST () NIL "x"\r\n'):
        assert PL._LIST_USUAL.fullmatch(raw)
    assert PL._STATUS_USUAL.fullmatch(b'* STATUS "Bulk00" (MESSAGES 2000 UIDNEXT 2001 UIDVALIDITY 1796681692 '
                                      b'HIGHESTMODSEQ 3)\r\n')


def test_a_long_line_that_is_not_of_the_usual_shape_is_read_at_once():
    """A hostile (or just unusual) server's line that almost matches the usual shape: 60 flags,
    then a name with an escape. The usual pattern must fail at once, not backtrack over every way
    to split the flags (it once took minutes on three flags), and the tokenizer reads the line."""
    flags = b" ".join(b"\\Flag" + str(i).encode() for i in range(60))
    entry = PL.parse_list(b'* LIST (' + flags + b') "/" "X \\"\\"/9."\r\n')
    assert len(entry.flags) == 60 and entry.raw_name == 'X ""/9.'
    items = b" ".join(b"K" + str(i).encode() + b" " + str(i).encode() for i in range(60))
    assert PL.parse_status_reply(b'* STATUS "X \\"" (' + items + b' MAILBOXID (F1))\r\n')[2] == "F1"


@given(name=st.binary(max_size=12), delim=st.binary(min_size=1, max_size=1),
       kind=st.sampled_from([b"LIST", b"STATUS"]))
def test_a_line_of_the_usual_shape_passes_the_full_shape_check_too(name, delim, kind):
    """untagged_checks lets a LIST or STATUS line of the usual shape through without the tokenizer;
    such a line (any bytes in its quoted name and delimiter) must be one the tokenizer's check
    passes as well: the shortcut never lets through what the full check refuses."""
    from mailsync.imap.untagged_checks import _balanced

    if kind == b"LIST":
        text = b'* LIST (\\HasNoChildren) "' + delim + b'" "' + name + b'"'
        usual = PL._LIST_USUAL
    else:
        text = b'* STATUS "' + name + b'" (MESSAGES 1 UIDNEXT 2)'
        usual = PL._STATUS_USUAL
    if usual.fullmatch(text) is not None:
        _balanced(kind.decode(), [text], len(b"* ") + len(kind))  # raises if the full check refuses it


def test_a_list_line_with_a_nul_in_its_name_is_refused_as_before():
    from mailsync.imap.responses import ResponseParser

    with pytest.raises(ProtocolError):
        ResponseParser().feed_line(b'* LIST (\\HasNoChildren) "/" "a\x00b"\r\n')


@given(name=_name, tail=st.sampled_from([b"\r\n", b"\n", b"", b" extra\r\n"]),
       kind=st.sampled_from([b"LIST", b"STATUS"]))
def test_a_listing_line_read_without_the_parser_is_the_event_the_parser_makes(name, tail, kind):
    """usual_listing_event (a LIST-STATUS answer's lines read whole) gives the parser's own event,
    or None and leaves the line to the parser."""
    from mailsync.imap.responses import ResponseParser
    from mailsync.imap.untagged_checks import usual_listing_event

    if kind == b"LIST":
        line = b'* LIST (\\HasNoChildren) "/" ' + name + tail
    else:
        line = b"* STATUS " + name + b" (MESSAGES 1 UIDNEXT 2)" + tail
    fast = usual_listing_event(line)
    if fast is None:
        return
    assert ResponseParser().feed_line(line) == [fast]
