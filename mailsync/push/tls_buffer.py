"""The read buffer of a push connection's TLS: 32 KiB instead of asyncio's 256 KiB.

Owns: shrinking the buffer asyncio's TLS layer (asyncio.sslproto.SSLProtocol, Python 3.11 to 3.13)
reads encrypted bytes into. Must not: touch anything else of the transport, or fail a connection:
on a Python whose TLS layer is built otherwise it does nothing.

Why: SSLProtocol allocates ``bytearray(max_size)`` (256 KiB, zero-filled, so resident) for every
connection, and reads with ``get_buffer(-1)``, which asks for ``max_size`` again. A push connection
carries a few hundred bytes a minute; the daemon holds one or more per account, so at 1,000 accounts
these buffers were about 250 MB of its 470 MB (scripts/bench-watch). 32 KiB still holds two whole
TLS records (16 KiB of data each), so a burst of responses costs a few more reads, nothing else.
"""

from __future__ import annotations

import asyncio

PUSH_TLS_BUFFER = 32 * 1024


def shrink(transport: asyncio.BaseTransport | None, size: int = PUSH_TLS_BUFFER) -> bool:
    """Give the TLS layer under ``transport`` a ``size``-byte read buffer; True when it did. Call it
    between reads (right after the connection or STARTTLS is made): the buffer is only used inside
    one read callback."""
    proto = getattr(transport, "_ssl_protocol", None)
    buf = getattr(proto, "_ssl_buffer", None)
    if not isinstance(buf, bytearray) or not isinstance(getattr(proto, "max_size", None), int):
        return False
    if len(buf) <= size:
        return True
    proto.max_size = size  # an instance attribute: get_buffer(-1) asks for this much from now on
    proto._ssl_buffer = bytearray(size)
    proto._ssl_buffer_view = memoryview(proto._ssl_buffer)
    return True
