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


def test_append_input_is_read_in_chunks_and_checked(tmp_path):
    """An endless input is not read until memory runs out; what is not a message is refused."""
    import resource

    from mailsync.changes import ChangeError, read_message_file

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ChangeError, match="not a mail message"):
        read_message_file("/dev/zero")
    big = tmp_path / "big.eml"
    big.write_bytes(b"From: a@b.test\r\nSubject: x\r\n\r\n" + b"y" * (3 << 20))
    with pytest.raises(ChangeError, match="larger than 2 MiB"):
        read_message_file(big, limit=2 << 20)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) < 64 * 1024  # KiB
    png = tmp_path / "pic.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    with pytest.raises(ChangeError, match="not a mail message"):
        read_message_file(png)
    nul = tmp_path / "nul.eml"
    nul.write_bytes(b"From: a@b.test\r\nX: \0\0\r\n\r\nbody")
    with pytest.raises(ChangeError, match="NUL"):
        read_message_file(nul)
    ok = tmp_path / "ok.eml"
    ok.write_bytes(b"From: a@b.test\r\nSubject: hi\r\n\r\nbody\r\n")
    assert read_message_file(ok) == ok.read_bytes()
