"""A TCP proxy on 127.0.0.1 for fault tests: forwards to a target, and on demand cuts every
connection, stalls them (sockets stay open, nothing is forwarded: a silent dead peer), or refuses.

Owns: its listening socket, the connections through it and the thread its event loop runs on.
Must not: import any other mailsync module (like dovecot.py, it runs under a bare python3), or
listen anywhere but 127.0.0.1.

    proxy = TcpProxy(dovecot.host, dovecot.imaps_port).start()
    ... connect to 127.0.0.1:proxy.port ...
    proxy.stall()      # open connections stop flowing both ways; TCP stays up (a NAT that forgot us,
                       # a hung peer); new connections flow (stall(new=True) stalls them too)
    proxy.resume()     # everything flows again
    proxy.cut()        # every connection reset at once; new connections still accepted
    proxy.refuse(True) # new connections are reset right away (the server looks down)
    proxy.stop()

    proxy = ConnectProxy().start()   # an HTTP proxy: HTTPS_PROXY=http://127.0.0.1:{proxy.port}
    ... an https client tunnels through it ...
    proxy.connects                   # [("127.0.0.1", 8443), ...]: every CONNECT it was asked for
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

LOOPBACK = ("127.0.0.1", "localhost", "::1")

__all__ = ["ConnectProxy", "TcpProxy"]


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = port
        self.accepted = 0  # connections accepted so far
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._pairs: dict[tuple[asyncio.StreamWriter, asyncio.StreamWriter], asyncio.Event] = {}
        self._stall_new = False
        self._refusing = False
        self._ready = threading.Event()

    # -- control (from any thread) ----------------------------------------------------------

    def start(self) -> "TcpProxy":
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the TCP proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None

    def cut(self) -> int:
        """Reset every open connection; returns how many there were."""
        return self._call(self._cut)

    def stall(self, *, new: bool = False) -> int:
        """Stop forwarding on every open connection (and on new ones too with `new`); returns how
        many connections were stalled."""

        def do() -> int:
            self._stall_new = new
            for flowing in self._pairs.values():
                flowing.clear()
            return len(self._pairs)

        return self._call(do)

    def resume(self) -> None:
        def do() -> None:
            self._stall_new = False
            for flowing in self._pairs.values():
                flowing.set()

        self._call(do)

    def refuse(self, on: bool = True) -> None:
        def set_() -> None:
            self._refusing = on

        self._call(set_)

    @property
    def connections(self) -> int:
        return self._call(lambda: len(self._pairs))

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop's side ----------------------------------------------------------------------

    def _call(self, fn):
        assert self._loop is not None, "start() the proxy first"

        async def run():
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        loop.run_until_complete(serve())
        try:
            loop.run_forever()
        finally:
            # connections still open are ended here, on this thread: left to the garbage collector,
            # their tasks would log "destroyed but pending" / "exception never retrieved" from
            # whichever thread collects them, formatting tracebacks (ast.parse, in CPython 3.11)
            # while the test's thread may be parsing too: on 3.11.7 that corrupts the AST
            # module's recursion counter for the rest of the process (SystemError: AST constructor
            # recursion depth mismatch)
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._cut()

    def _cut(self) -> int:
        n = len(self._pairs)
        for a, b in list(self._pairs):
            for w in (a, b):
                with contextlib.suppress(Exception):
                    w.transport.abort()
        self._pairs.clear()
        return n

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        await self._splice(reader, writer, up_reader, up_writer)

    async def _splice(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        """Pump both ways between the client and the upstream until either side ends, then drop both."""
        pair = (writer, up_writer)
        flowing = asyncio.Event()
        if not self._stall_new:
            flowing.set()
        self._pairs[pair] = flowing
        await asyncio.gather(self._pump(reader, up_writer, flowing), self._pump(up_reader, writer, flowing),
                             return_exceptions=True)
        self._pairs.pop(pair, None)
        for w in pair:
            with contextlib.suppress(Exception):
                w.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event) -> None:
        while True:
            await flowing.wait()
            try:
                data = await reader.read(65536)
            except OSError:  # reset by the peer (a client killed, say): this direction is over
                data = b""
            if not data:
                with contextlib.suppress(Exception):
                    writer.write_eof()
                return
            await flowing.wait()  # stalled after reading: hold the bytes
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                return


class ConnectProxy(TcpProxy):
    """An HTTP proxy on 127.0.0.1 that tunnels ``CONNECT host:port`` (how an https request goes
    through HTTPS_PROXY) and records each target in ``connects``. It tunnels to loopback only and
    answers any other method with 405 (recorded in ``others``); stall/cut/refuse work as for
    TcpProxy (refused CONNECTs get 403)."""

    def __init__(self, *, port: int = 0) -> None:
        super().__init__("127.0.0.1", 0, port=port)
        self.connects: list[tuple[str, int]] = []
        self.others: list[str] = []

    @staticmethod
    def _answer(writer: asyncio.StreamWriter, status: str) -> None:
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode("ascii"))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, OSError):
            writer.transport.abort()
            return
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        target = rest.split(" ", 1)[0]
        if method != "CONNECT":
            self.others.append(f"{method} {target}")
            self._answer(writer, "405 Method Not Allowed")
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()
            return
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        self.connects.append((host, int(port) if port.isdigit() else 0))
        if self._refusing or host not in LOOPBACK or not port.isdigit():
            self._answer(writer, "403 Forbidden")
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            self._answer(writer, "502 Bad Gateway")
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await self._splice(reader, writer, up_reader, up_writer)
