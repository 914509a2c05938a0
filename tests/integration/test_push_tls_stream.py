"""mailsync.push.tls_stream on loopback: plaintext sent ahead of the TLS handshake (after the
server's OK to STARTTLS) is refused, never read as if it were protected; lines and exact reads
come back whole however the bytes arrive."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from mailsync.push.tls_stream import TlsStream


async def _serve(script: list[bytes]):
    """A server that sends each piece of ``script`` after reading a line (the first at once)."""
    async def handle(reader, writer):
        for i, piece in enumerate(script):
            if i:
                await reader.readline()
            writer.write(piece)
            await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_plaintext_sent_before_the_handshake_is_refused():
    async def scenario():
        server, port = await _serve([b"* OK ready\r\n", b"a OK begin TLS\r\n* 1 EXISTS\r\n"])
        async with server:
            stream = await TlsStream.connect("127.0.0.1", port, limit=1024)
            try:
                assert await stream.readuntil(b"\n") == b"* OK ready\r\n"
                stream.write(b"a STARTTLS\r\n")
                await stream.drain()
                assert await stream.readuntil(b"\n") == b"a OK begin TLS\r\n"
                await asyncio.sleep(0.05)  # the injected line has arrived with the OK
                ctx = ssl.create_default_context()
                with pytest.raises(ssl.SSLError, match="before the TLS handshake"):
                    await stream.start_tls(ctx, "localhost", 5)
            finally:
                stream.abort()

    asyncio.run(scenario())


def test_lines_and_literals_come_back_whole_and_long_lines_are_refused():
    async def scenario():
        server, port = await _serve([b"* OK rea", b"dy\r\n{5}\r\nabcde\r\n" + b"x" * 3000 + b"\r\n"])
        async with server:
            stream = await TlsStream.connect("127.0.0.1", port, limit=1024)
            try:
                stream.write(b"go\r\n")
                await stream.drain()
                assert await stream.readuntil(b"\n") == b"* OK ready\r\n"
                assert await stream.readuntil(b"\n") == b"{5}\r\n"
                assert await stream.readexactly(5) == b"abcde"
                assert await stream.readuntil(b"\n") == b"\r\n"
                with pytest.raises(asyncio.LimitOverrunError):
                    await stream.readuntil(b"\n")
            finally:
                stream.abort()

    asyncio.run(scenario())
