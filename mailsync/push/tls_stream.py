"""A push connection's byte stream: TCP through asyncio's streams, with TLS (implicit, or after
STARTTLS) done here on memory BIOs (ssl.SSLContext.wrap_bio), not by asyncio's TLS transport.

Owns: the bytes of one push connection: reading a line or exactly n bytes of plaintext, writing,
the TLS handshake and its encryption. Must not: know IMAP (mailsync.push.client does) or map
errors (the client maps what this raises: ssl.SSLError and OSError as they come, EOF as
asyncio.IncompleteReadError, a line past the limit as asyncio.LimitOverrunError, as a StreamReader
would).

Why not asyncio's own TLS (open_connection(ssl=...), StreamWriter.start_tls): it gives every
connection a zero-filled 256 KiB read buffer (asyncio.sslproto), resident for the connection's
life, and offers no public way to make it smaller. A push connection carries a few hundred bytes a
minute and the watch daemon holds one per account: at 1,000 accounts those buffers were about
250 MB of its 470 MB (scripts/bench-watch). Here encrypted bytes go from the socket into the
SSLObject's memory BIO as they arrive (a read of at most _CHUNK bytes at a time) and plaintext is
kept only until the client reads it.
"""

from __future__ import annotations

import asyncio
import ssl

_CHUNK = 32 * 1024  # the most read from the socket at once; a TLS record carries at most 16 KiB


class TlsStream:
    """TCP (asyncio streams), then, after ``start_tls``, TLS on memory BIOs. ``limit``: the longest
    line ``readuntil`` buffers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: int) -> None:
        self._reader, self._writer = reader, writer
        self.limit = limit
        self._tls: ssl.SSLObject | None = None
        self._incoming = self._outgoing = None
        self._plain = bytearray()  # plaintext received and not yet read

    @classmethod
    async def connect(cls, host: str, port: int, *, limit: int, tls: ssl.SSLContext | None = None,
                      server_hostname: str | None = None, handshake_timeout: float | None = None) -> "TlsStream":
        """A TCP connection to host:port; with ``tls``, TLS from the first byte (implicit)."""
        reader, writer = await asyncio.open_connection(host, port, limit=_CHUNK)
        stream = cls(reader, writer, limit)
        if tls is not None:
            try:
                await stream.start_tls(tls, server_hostname or host, handshake_timeout)
            except BaseException:
                stream.abort()
                raise
        return stream

    @property
    def socket(self):
        return self._writer.get_extra_info("socket")

    @property
    def encrypted(self) -> bool:
        return self._tls is not None

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str, timeout: float | None) -> None:
        """The TLS handshake (the certificate checked as ``context`` says). Bytes the server sent
        before it (after its OK to STARTTLS) are refused: they would be read as if they were protected."""
        if self._plain or self._reader.at_eof():
            raise ssl.SSLError("the server sent data before the TLS handshake (an injection attempt?)")
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        async with asyncio.timeout(timeout):
            while True:
                try:
                    self._tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await self._flush()
                    await self._receive()
            await self._flush()

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self._writer.write(data)
            await self._writer.drain()

    async def _receive(self) -> None:
        """Encrypted bytes from the socket into the TLS layer; EOF ends the stream."""
        data = await self._reader.read(_CHUNK)
        if not data:
            raise asyncio.IncompleteReadError(bytes(self._plain), None)
        self._incoming.write(data)

    async def _fill(self) -> None:
        """More plaintext onto the buffer (at least one byte), or IncompleteReadError at the end."""
        if self._tls is None:
            data = await self._reader.read(_CHUNK)
            if not data:
                raise asyncio.IncompleteReadError(bytes(self._plain), None)
            self._plain += data
            return
        while True:
            try:
                data = self._tls.read(_CHUNK)
            except ssl.SSLWantReadError:
                await self._flush()  # what the TLS layer has to say first (a key update's answer)
                await self._receive()
                continue
            except ssl.SSLZeroReturnError:  # the server's close_notify
                data = b""
            if not data:
                raise asyncio.IncompleteReadError(bytes(self._plain), None)
            self._plain += data
            return

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Plaintext up to and including ``separator``; LimitOverrunError past ``limit`` bytes."""
        start = 0
        while True:
            at = self._plain.find(separator, start)
            if at > self.limit:
                raise asyncio.LimitOverrunError("a line longer than the limit", at)
            if at >= 0:
                end = at + len(separator)
                line = bytes(self._plain[:end])
                del self._plain[:end]
                return line
            if len(self._plain) > self.limit:
                raise asyncio.LimitOverrunError("a line longer than the limit", len(self._plain))
            start = max(0, len(self._plain) - len(separator) + 1)
            await self._fill()

    async def readexactly(self, n: int) -> bytes:
        while len(self._plain) < n:
            await self._fill()
        data = bytes(self._plain[:n])
        del self._plain[:n]
        return data

    def write(self, data: bytes) -> None:
        if self._tls is None:
            self._writer.write(data)
            return
        self._tls.write(data)
        self._writer.write(self._outgoing.read())

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        self._writer.transport.abort()
