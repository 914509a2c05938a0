"""Open an account's connection as its config says: its password resolved (mailsync.auth.secrets)
or an OAuth2 access token (mailsync.auth.oauth2), then mailsync.imap.connection.connect.

Owns: the choice between the two. Must not: import the store or the engine; the CLI calls this on
a thread while they load (mailsync.cli.main.sync).
"""

from __future__ import annotations

from mailsync.config.model import AccountConfig
from mailsync.errors import MailsyncError


def open_connection(account: AccountConfig, sock=None):
    """A logged-in mailsync.imap.connection.ImapConnection. Raises mailsync.errors only. ``sock``: a
    TCP connection to the account's host and port already made, used instead of a new one (closed
    on every error)."""
    try:
        return _open(account, sock)
    except BaseException:
        if sock is not None:
            sock.close()  # closing twice (connect closed it) does nothing
        raise


def _open(account: AccountConfig, sock):
    from mailsync.auth.secrets import resolve_secret
    from mailsync.imap.connection import connect

    if account.auth == "oauth2":  # a fresh access token on each (re)connect
        from mailsync.auth.oauth2 import tokens_for

        return connect(account, None, tokens=tokens_for(account), sock=sock)
    if account.password is None:
        raise MailsyncError(f"account '{account.name}': no password source configured",
                            hint="set password = \"env:NAME\" (or cmd:, keyring:) for the account")
    return connect(account, resolve_secret(account.password), sock=sock)
