"""What a push connection and a TLS context cost, against the real Dovecot: the push client's TLS
(mailsync.push.tls_stream, on memory BIOs) keeps no 256 KiB read buffer per connection as asyncio's
TLS transport does, and carries answers many times its read size intact, over implicit TLS and
STARTTLS; connections that trust the same ca_file share one SSLContext, and a replaced file gets a
new one (mailsync.imap.transport)."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from dataclasses import replace

import pytest

from mailsync.errors import ConnectError
from mailsync.imap.responses import FetchItem, Tagged
from mailsync.imap.transport import tls_context
from mailsync.push.client import Credentials, PushClient
from twoway_support import account_for


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_a_push_connection_reads_large_answers_over_tls(dovecot, tls):
    user = dovecot.new_user(f"tb{secrets.token_hex(4)}", "pw")
    body = b"".join(b"line %06d " % i + secrets.token_hex(24).encode() + b"\r\n" for i in range(6000))
    raw = b"Subject: big\r\nMessage-ID: <big@example.org>\r\n\r\n" + body  # about 400 KB: 12 x the buffer
    user.server.load(user.name, [("INBOX", raw, ())])
    account = account_for(user, "acc")
    if tls == "starttls":
        account = replace(account, tls="starttls", port=user.imap_port)

    async def scenario() -> None:
        client = await PushClient.open(account, Credentials(password=user.password), timeout=10)
        try:
            assert client.stream.encrypted
            _, tagged = await client.command(b'EXAMINE "INBOX"', "EXAMINE")
            assert tagged.status == "OK"
            untagged, tagged = await client.command(b"UID FETCH 1:* (BODY.PEEK[])", "FETCH")
            assert isinstance(tagged, Tagged) and tagged.status == "OK"
            fetched = [ev for ev in untagged if isinstance(ev, FetchItem)]
            assert len(fetched) == 1
            assert fetched[0].body == raw
        finally:
            await client.close(b"WZ LOGOUT\r\n")

    asyncio.run(scenario())


def test_connections_trusting_one_ca_file_share_one_context(dovecot, tmp_path):
    user = dovecot.new_user(f"tc{secrets.token_hex(4)}", "pw")
    ca = tmp_path / "ca.pem"
    shutil.copy(user.ca_file, ca)
    a, b = replace(account_for(user, "a"), ca_file=ca), replace(account_for(user, "b"), ca_file=ca)
    first = tls_context(a)
    assert tls_context(b) is first
    assert tls_context(a).check_hostname and tls_context(a).verify_mode.name == "CERT_REQUIRED"
    # the file replaced (a renewed CA): a new context from the new contents
    ca.write_bytes(ca.read_bytes() + b"\n")
    assert tls_context(a) is not first
    # a file that cannot be read is still an error naming the account, not a stale context
    ca.unlink()
    with pytest.raises(ConnectError, match="account 'a': cannot load ca_file"):
        tls_context(a)


def test_push_connections_over_tls_hold_little_memory_each(dovecot):
    """Ten logged-in push connections over implicit TLS, measured by tracemalloc (Python's own
    allocations): under 64 KiB each once the login is read. asyncio's TLS transport alone allocated
    a zero-filled 256 KiB read buffer per connection (2.5 MiB for ten)."""
    import gc
    import tracemalloc

    user = dovecot.new_user(f"tm{secrets.token_hex(4)}", "pw")
    account = account_for(user, "acc")

    async def scenario() -> int:
        clients = [await PushClient.open(account, Credentials(password=user.password), timeout=10)]
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(10):
                clients.append(await PushClient.open(account, Credentials(password=user.password), timeout=10))
            gc.collect()
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            for c in clients:
                await c.close(b"WZ LOGOUT\r\n")

    grown = asyncio.run(scenario())
    assert grown < 10 * 64 * 1024, f"{grown / 10 / 1024:.0f} KiB per connection"
