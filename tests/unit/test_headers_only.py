"""The pure parts of holding a message by its headers (max_size, issue 23): the header section's
key, which can never name a downloaded message, and the SEARCH of what is held so."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest
from sqlalchemy import column, create_engine, select, table, text

from mailsync.store.headers_only import PREFIX, headers_key, held_key, is_headers_key, new_head, whole_key
from mailsync.sync.heads import larger_criteria

HEAD = b"Message-ID: <a@b>\r\nSubject: big\r\n\r\n"


def test_a_header_key_is_as_long_as_a_sha256_and_never_one():
    key = headers_key(HEAD, 30_000_000)
    assert len(key) == 64 and key.startswith(PREFIX) and is_headers_key(key)
    real = hashlib.sha256(HEAD).hexdigest()
    assert not is_headers_key(real) and real != key
    assert set(real) <= set("0123456789abcdef")  # a SHA-256 in hex never starts with PREFIX


def test_the_key_follows_the_header_section_and_the_size():
    assert headers_key(HEAD, 100) == headers_key(bytearray(HEAD), 100)  # copies of one message share it
    assert headers_key(HEAD, 100) != headers_key(HEAD, 101)
    assert headers_key(HEAD, 100) != headers_key(HEAD.replace(b"big", b"bog"), 100)


def test_new_head_is_a_body_row_of_the_header_section_with_the_whole_size():
    row = new_head(HEAD, 30_000_000, "<a@b>")
    assert (row.sha256, row.size, row.message_id, row.data, row.headers_only) == (
        headers_key(HEAD, 30_000_000), 30_000_000, "<a@b>", HEAD, True)


@pytest.mark.parametrize("key, held", [
    (hashlib.sha256(b"x").hexdigest(), False), ("f" * 64, False), ("0" * 64, False),
    (headers_key(HEAD, 1), True), ("h" + "f" * 63, True), ("h" + "0" * 63, True)])
def test_the_sql_ranges_tell_header_keys_from_sha256s(key, held):
    engine = create_engine("sqlite://")
    t = table("t", column("k"))
    with engine.connect() as c:
        c.execute(text("CREATE TABLE t (k TEXT)"))
        c.execute(text("INSERT INTO t VALUES (:k)"), {"k": key})
        assert bool(c.execute(select(t.c.k).where(held_key(t.c.k))).first()) is held
        assert bool(c.execute(select(t.c.k).where(whole_key(t.c.k))).first()) is not held


def test_larger_criteria():
    now = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
    assert larger_criteria(None, 25_000_000, now) == "LARGER 25000000"
    assert larger_criteria(10 * 86400, 1000, now) == "LARGER 1000 SINCE 28-Feb-2026"
