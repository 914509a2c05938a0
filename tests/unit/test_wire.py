"""mailsync.imap.transport.Wire over a socket pair: lines split across reads, literals read into place
past the buffer, an endless line refused without being held, and bytes sent in plaintext after the
OK to STARTTLS refused (a STARTTLS injection)."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from mailsync.config.model import AccountConfig
from mailsync.errors import ProtocolError
from mailsync.imap.transport import LineTooLong, Wire, log_in


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.settimeout(5)
    yield Wire(a), b
    a.close()
    b.close()


def test_lines_split_across_reads_and_a_literal_past_the_buffer(pair):
    wire, peer = pair
    body = bytes(range(256)) * 4096  # 1 MiB: more than one recv
    peer.sendall(b"* 1 FETCH (BODY[] {%d}\r\n" % len(body))

    def rest():
        peer.sendall(body[:10])
        peer.sendall(body[10:] + b")\r\nA1 OK do")
        peer.sendall(b"ne\r\n")

    t = threading.Thread(target=rest)
    t.start()
    assert wire.readline() == b"* 1 FETCH (BODY[] {%d}\r\n" % len(body)
    out = bytearray(len(body))
    assert wire.readinto(memoryview(out)) == len(body) and out == body
    assert wire.readline() == b")\r\n"
    assert wire.readline() == b"A1 OK done\r\n"
    t.join()
    assert not wire.has_unread()
    peer.sendall(b"* BYE going away\r\n")
    assert wire.has_unread()  # a kept connection with a BYE waiting is not reused
    assert wire.read(5) == b"* BYE"
    peer.close()
    assert wire.readline() == b" going away\r\n" and wire.readline() == b""  # EOF


def test_a_line_without_an_end_is_refused_and_not_held(pair):
    wire, peer = pair
    t = threading.Thread(target=lambda: peer.sendall(b"* OK " + b"x" * 300_000))
    t.start()
    with pytest.raises(LineTooLong):
        wire.readline(100_000)
    t.join()
    assert wire.buffered < 300_000  # what was read was dropped


def test_bytes_after_the_ok_to_starttls_are_refused_before_any_handshake():
    """A man in the middle answers STARTTLS and sends a response in plaintext right behind the OK,
    hoping it is read as if it came over TLS: the login stops there."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen = []

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] hi\r\n")
            line = conn.recv(1000)
            seen.append(line)
            tag = line.split()[0]
            conn.sendall(tag + b" OK begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
            seen.append(conn.recv(1000))  # b"" when the client gives up without a handshake

    t = threading.Thread(target=serve)
    t.start()
    account = AccountConfig(name="a", host="127.0.0.1", port=port, username="u", tls="starttls")
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    wire = Wire(sock)
    try:
        with pytest.raises(ProtocolError, match="after the OK to STARTTLS"):
            log_in(wire, account, "secret")
    finally:
        wire.close()
        t.join(5)
        listener.close()
    assert seen[0].endswith(b"STARTTLS\r\n") and seen[1] == b""
    assert isinstance(wire.sock, socket.socket) and not isinstance(wire.sock, ssl.SSLSocket)
