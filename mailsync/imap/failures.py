"""Library exceptions of an IMAP connection (socket, ssl, asyncio) mapped to mailsync.errors, once.

Owns: the one table from OSError, ssl.SSLError, socket.gaierror, TimeoutError and the like to
ConnectError or TLSVerifyError, each naming the account, host, port and what was being done. Both
shells use it: mailsync.imap.connection (blocking, through ``mapped_errors``) and
mailsync.push.client (asyncio, through ``mapped``). Must not: do I/O or decide on retries.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import sys

from mailsync.config.model import AccountConfig
from mailsync.errors import ConnectError, MailsyncError, TLSVerifyError


def mapped(account: AccountConfig, exc: BaseException, doing: str) -> BaseException:
    """The mailsync error for ``exc`` (mailsync errors and cancellations pass through as they are)."""
    # asyncio is loaded by the push shell; the sync shell does without it, and another thread may be
    # importing it at this moment (the module is in sys.modules before its names are)
    cancelled = getattr(sys.modules.get("asyncio"), "CancelledError", None)
    where = f"{account.host}:{account.port}"
    name = account.name
    if isinstance(exc, (MailsyncError, KeyboardInterrupt, SystemExit)) or (
            cancelled is not None and isinstance(exc, cancelled)):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = getattr(exc, "verify_message", None) or exc
        return TLSVerifyError(f"account '{name}': the TLS certificate of {where} did not verify: {why}",
                              hint="if the server uses a private CA, set ca_file to its certificate; never disable "
                                   "verification")
    if isinstance(exc, ssl.SSLError):
        return ConnectError(f"account '{name}': TLS failed with {where} while {doing}: {exc.reason or exc}",
                            hint="check port and tls (implicit for 993, starttls for 143)")
    if isinstance(exc, socket.gaierror):
        return ConnectError(f"account '{name}': cannot resolve host {account.host!r}: {exc.strerror}",
                            hint="check the host name")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectError(f"account '{name}': connection to {where} refused",
                            hint="check host and port, and that the server is running")
    if isinstance(exc, TimeoutError):
        return ConnectError(f"account '{name}': {where} timed out while {doing}",
                            hint="check the host and port, or raise timeout")
    if isinstance(exc, OSError):
        return ConnectError(f"account '{name}': connection to {where} failed while {doing}: {exc.strerror or exc}")
    if isinstance(exc, EOFError):  # a stream that ended mid-response
        return ConnectError(f"account '{name}': {where} closed the connection while {doing}")
    return exc  # a bug of ours: not dressed up as a connection problem


@contextlib.contextmanager
def mapped_errors(account: AccountConfig, doing: str):
    """Raise what ``mapped`` makes of any exception of the block."""
    try:
        yield
    except BaseException as exc:
        error = mapped(account, exc, doing)
        if error is exc:
            raise
        raise error from exc
