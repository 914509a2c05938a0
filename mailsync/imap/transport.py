"""The blocking shell's socket: connecting per the account's TLS policy, a buffered reader, and driving
the sans-I/O opening (mailsync.imap.opening) to a logged-in session.

Owns: the TCP socket and its TLS (implicit, or STARTTLS when the opening says so), the read buffer
(``readline`` for lines, ``read``/``readinto`` for literals, so a body read into place is copied once),
the receive-buffer size on a short round trip, and mapping the library exceptions of all that
(mailsync.imap.failures). Must not: build or interpret commands (mailsync.imap.commands and
mailsync.imap.connection do), or log anything a login sends.
"""

from __future__ import annotations

import collections
import os
import select
import socket
import ssl
import struct
import threading

from mailsync.config.model import AccountConfig
from mailsync.errors import AuthError, ConnectError, ProtocolError
from mailsync.imap.failures import mapped_errors
from mailsync.imap.opening import Opened, Receive, Send, StartTls, Token, drive, open_session
from mailsync.imap.responses import MAX_LINE, ResponseParser

RECV_SIZE = 256 * 1024
LINE_CAP = MAX_LINE + 1  # readline() reads at most this much: a longer line is refused, not held


def tls_context(account: AccountConfig) -> ssl.SSLContext:
    """The client context for the account's ca_file (or the system's trusted certificates), shared by
    every connection that trusts the same file: a context holds its parsed certificates (about 20 KB
    with one CA, 800 KB with the system's), and a daemon watching 1,000 accounts holds two
    connections each. A context is never changed once made; a ca_file replaced on disk (another
    size, mtime or inode) gets a new one."""
    path = str(account.ca_file) if account.ca_file else None
    try:
        key = (path, *_file_identity(path))
        with _contexts_lock:
            ctx = _contexts.get(key)
            if ctx is not None:
                _contexts.move_to_end(key)
                return ctx
        ctx = ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ConnectError(f"account '{account.name}': cannot load ca_file {path!r}: {exc}",
                           hint="point ca_file at a PEM file of trusted certificates") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with _contexts_lock:
        ctx = _contexts.setdefault(key, ctx)
        while len(_contexts) > _MAX_CONTEXTS:
            _contexts.popitem(last=False)
    return ctx


_MAX_CONTEXTS = 64
_contexts: collections.OrderedDict[tuple, ssl.SSLContext] = collections.OrderedDict()
_contexts_lock = threading.Lock()


def _file_identity(path: str | None) -> tuple:
    if path is None:
        return ()
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


class LineTooLong(Exception):
    """No line end within the limit a readline was given."""


class Wire:
    """A connected socket (plain or TLS) with a read buffer of our own, so that what is buffered and
    not yet read can be seen (``buffered``): nothing may be, when TLS starts or a kept connection is
    reused."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()
        self._pos = 0

    # -- writing ----------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    # -- reading ----------------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def _fill(self) -> bool:
        """Read what the socket has (at least one byte, or EOF: False) onto the buffer."""
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > RECV_SIZE:
            del self._buf[:self._pos]
            self._pos = 0
        chunk = self.sock.recv(RECV_SIZE)
        if not chunk:
            return False
        self._buf += chunk
        return True

    def readline(self, limit: int = LINE_CAP) -> bytes:
        """One line with its LF, or what is there at EOF (b"" when nothing). LineTooLong when no LF
        comes within ``limit`` bytes (what was read is dropped, not held)."""
        scanned = self._pos
        while True:
            end = self._buf.find(b"\n", scanned, self._pos + limit)
            if end >= 0:
                with memoryview(self._buf) as view:
                    line = bytes(view[self._pos:end + 1])
                self._pos = end + 1
                return line
            if self.buffered >= limit:
                self._buf.clear()
                self._pos = 0
                raise LineTooLong(limit)
            scanned = len(self._buf)
            base = self._pos
            if not self._fill():
                with memoryview(self._buf) as view:
                    line = bytes(view[self._pos:])
                self._pos = len(self._buf)
                return line
            scanned += self._pos - base  # _fill may have moved what was buffered to the front

    def read(self, n: int) -> bytes:
        """``n`` bytes, fewer only at EOF."""
        if self.buffered >= n:
            data = bytes(self._buf[self._pos:self._pos + n])
            self._pos += n
            return data
        out = bytearray(n)
        got = self.readinto(memoryview(out))
        return bytes(out[:got]) if got < n else bytes(out)

    def readinto(self, view: memoryview) -> int:
        """Fill ``view`` (the buffered bytes first, then straight from the socket); fewer only at EOF."""
        n = len(view)
        have = min(self.buffered, n)
        view[:have] = self._buf[self._pos:self._pos + have]
        self._pos += have
        while have < n:
            got = self.sock.recv_into(view[have:], n - have)
            if not got:
                break
            have += got
        return have

    def has_unread(self) -> bool:
        """Anything the server sent that nobody read (a BYE on a kept connection, say), or EOF."""
        if self.buffered:
            return True
        pending = getattr(self.sock, "pending", None)
        if pending is not None and pending():
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    # -- the connection's life ----------------------------------------------------------------

    def start_tls(self, ctx: ssl.SSLContext, host: str) -> None:
        """Wrap the socket in TLS. Bytes the server sent after its OK to STARTTLS, before the
        handshake, were sent in plaintext by someone: refused (a STARTTLS injection)."""
        if self.buffered:
            raise ProtocolError(f"{self.buffered} bytes arrived after the OK to STARTTLS and before TLS started; "
                                f"refused, as a man in the middle would send them",
                                hint='use tls = "implicit" with port 993 where the server offers it')
        self.sock = ctx.wrap_socket(self.sock, server_hostname=host)

    def set_timeout(self, seconds: float) -> None:
        self.sock.settimeout(seconds)

    def shutdown(self) -> None:
        """End any read or write in progress at once (from another thread, too)."""
        self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def open_wire(account: AccountConfig, timeout: float | None, sock: socket.socket | None = None) -> Wire:
    """A connected socket per the account's TLS policy: TLS from the first byte for "implicit";
    STARTTLS, for "starttls", is a step of the opening. ``sock``: a TCP connection to the account's
    host and port already made (the CLI's early login dials it), used instead of a new one."""
    with mapped_errors(account, "connecting"):
        if sock is None:
            sock = socket.create_connection((account.host, account.port), timeout=timeout)
        else:
            sock.settimeout(timeout)
        try:
            if account.tls == "implicit":
                sock = tls_context(account).wrap_socket(sock, server_hostname=account.host)
        except BaseException:
            sock.close()
            raise
    return Wire(sock)


def log_in(wire: Wire, account: AccountConfig, password: str | None, tokens=None) -> Opened:
    """Drive mailsync.imap.opening on ``wire``: greeting, STARTTLS, login. Raises mailsync.errors only."""
    oauth2 = account.auth == "oauth2"
    if oauth2 and tokens is None:
        raise AuthError(f"account '{account.name}': auth = \"oauth2\" but no token source was given",
                        hint="this is a bug in the caller of connect()")
    parser = ResponseParser()
    events: collections.deque = collections.deque()

    def do(step):
        if isinstance(step, Receive):
            while not events:
                events.extend(_feed(wire, parser, account, "logging in"))
            return events.popleft()
        if isinstance(step, Send):
            wire.send(step.data)
        elif isinstance(step, StartTls):
            with mapped_errors(account, "starting TLS"):
                wire.start_tls(tls_context(account), account.host)
        elif isinstance(step, Token):
            return tokens.access_token(rejected=step.rejected) if step.rejected else tokens.access_token()
        return None

    with mapped_errors(account, "logging in"):
        return drive(open_session(account, password, oauth2=oauth2), do)


def next_line(wire: Wire, account: str, doing: str) -> bytes:
    """The next line of an answer; ProtocolError for one longer than MAX_LINE, ConnectError at EOF."""
    try:
        line = wire.readline(LINE_CAP)
    except LineTooLong:
        raise ProtocolError(f"account '{account}': the server sent a line longer than {MAX_LINE} bytes "
                            f"while {doing}; refused") from None
    if not line:
        raise ConnectError(f"account '{account}': the server closed the connection while {doing}")
    return line


def _feed(wire: Wire, parser: ResponseParser, account: AccountConfig, doing: str) -> list:
    n = parser.wants()
    if n is None:
        return parser.feed_line(next_line(wire, account.name, doing))
    data = wire.read(n)
    if len(data) < n:
        raise ConnectError(f"account '{account.name}': the connection dropped inside a literal while {doing}")
    return parser.feed_literal(data)


# The socket's receive buffer on a link with a short round trip. Linux grows a TCP receive buffer
# as the reader keeps up (autotuning), from 128 KB, and a first sync's reader does not always keep
# up: it hashes, parses and waits on its other threads now and then, the buffer fills, and the
# server stops and waits for the window to open. Measured on loopback (20,000 messages, 434 MB):
# the server was window-limited 61-68% of its busy time; with an 8 MB buffer 30-39%, and the sync
# used 0.15 s less CPU. A fixed size turns autotuning off for the socket, so it is only set where
# autotuning could never need more: a round trip under RTT_LOCAL_US holds at most 1.25 MB at
# 10 Gbit/s. Elsewhere (a WAN link) the kernel's autotuning is left alone, and so is a buffer that
# is already as large, or that the system's limit (net.core.rmem_max) would make smaller.
RTT_LOCAL_US = 1000
RECEIVE_BUFFER = 4 << 20  # asked for; Linux doubles it (bookkeeping), so 8 MB in effect
_TCP_INFO_RTT = struct.Struct("=I")  # struct tcp_info: tcpi_rtt (microseconds) at byte 68
_TCP_INFO_RTT_AT = 68


def receive_buffer_request(rtt_us: int, current: int, rmem_max: int) -> int | None:
    """The SO_RCVBUF to ask for, or None to leave the socket's buffer (and autotuning) alone.
    ``current``: SO_RCVBUF as getsockopt reports it (doubled); ``rmem_max``: the system's limit."""
    if not 0 < rtt_us < RTT_LOCAL_US:
        return None
    want = min(RECEIVE_BUFFER, rmem_max)
    return want if 2 * want > current else None


def widen_receive_buffer(sock) -> None:
    """receive_buffer_request on a connected socket; Linux only, best effort (a failure changes nothing)."""
    if not hasattr(socket, "TCP_INFO"):
        return
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        if len(info) < _TCP_INFO_RTT_AT + 4:
            return
        (rtt,) = _TCP_INFO_RTT.unpack_from(info, _TCP_INFO_RTT_AT)
        with open("/proc/sys/net/core/rmem_max", "rb") as f:
            rmem_max = int(f.read())
        size = receive_buffer_request(rtt, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), rmem_max)
        if size is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except (OSError, ValueError):
        return
