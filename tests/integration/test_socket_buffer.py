"""A connection to a server on a short round trip (the test Dovecot, on loopback) gets the large
receive buffer, as far as the system's limit allows; see mailsync.imap.transport."""

from __future__ import annotations

import socket
from pathlib import Path

from mailsync.imap.connection import connect
from mailsync.imap.transport import RECEIVE_BUFFER
from twoway_support import account_for


def test_a_loopback_connection_gets_the_large_receive_buffer(imap_user):
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    conn = connect(account_for(imap_user), imap_user.password)
    try:
        got = conn.wire.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        want = min(RECEIVE_BUFFER, rmem_max)
        if 2 * want > 131072:  # Linux reports the doubled size
            assert got == 2 * want
        else:  # a system limit below the default: left to autotuning
            assert got >= 131072
        assert "INBOX" in [f.raw_name for f in conn.list_folders()]  # and the connection works on
    finally:
        conn.logout()
