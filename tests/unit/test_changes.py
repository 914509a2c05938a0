import pytest

from mailsync.changes import ChangeError, ensure_message_id, normalise_flag, parse_flag_changes
from mailsync.sync.message import message_id


@pytest.mark.parametrize("specs,add,remove", [
    (["+\\Seen"], ["\\Seen"], []),
    (["-\\flagged", "+$Label1"], ["$Label1"], ["\\Flagged"]),  # system flags in canonical case
    (["+Project-X"], ["Project-X"], []),
])
def test_parse_flag_changes(specs, add, remove):
    assert parse_flag_changes(specs) == (add, remove)


@pytest.mark.parametrize("specs,match", [
    (["Seen"], "must start with"),
    (["+"], "must start with"),
    (["+has space"], "not a valid IMAP flag"),
    (["+\\Recent"], "not a valid IMAP flag"),  # \Recent is the server's, never set by a client
    (["+(paren"], "not a valid IMAP flag"),
    (["+\\Seen", "-\\Seen"], "both added and removed"),
])
def test_bad_flag_changes(specs, match):
    with pytest.raises(ChangeError, match=match) as e:
        parse_flag_changes(specs)
    assert e.value.exit_code == 2


def test_normalise_keeps_keywords():
    assert normalise_flag("$Forwarded") == "$Forwarded" and normalise_flag("\\DRAFT") == "\\Draft"


def test_ensure_message_id():
    raw = b"From: a@b\r\nSubject: x\r\n\r\nbody\r\n"
    out = ensure_message_id(raw)
    assert out.endswith(raw) and message_id(out).endswith("@mailsync.invalid>")
    with_id = b"Message-ID: <x@y>\r\n" + raw
    assert ensure_message_id(with_id) is with_id
