"""The one error family of mailsync.

Owns: the exception classes every layer raises, and the exit code each maps to.
Must not: import any other mailsync module or any third-party library (library exceptions are
mapped to these at the boundary where they are caught, e.g. mailsync.imap.connection).

Every message names the problem and, where there is one, the fix (``hint``).
"""

from __future__ import annotations


class MailsyncError(Exception):
    """Base of every error mailsync raises on purpose. Anything else escaping is a bug."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  fix: {self.hint}"
        return self.message


class ConfigError(MailsyncError):
    """The config file (or a CLI argument standing for it) is wrong. Exit code 2."""

    exit_code = 2


class CredentialError(MailsyncError):
    """A password source (env:, cmd:, keyring:) could not produce a secret."""


class ConnectError(MailsyncError):
    """The server could not be reached, or the connection broke."""


class TLSVerifyError(ConnectError):
    """The server's certificate did not verify."""


class AuthError(MailsyncError):
    """The server refused the credentials."""


class ProtocolError(MailsyncError):
    """The server sent something that is not valid IMAP (or not what the command allows)."""


class FolderMissing(ProtocolError):
    """The server says a folder a command names does not exist ([NONEXISTENT], or [TRYCREATE] for
    an APPEND, COPY or MOVE into it): deleted or renamed by another client since the store saw it."""


class MappingMismatch(MailsyncError):
    """A UID on the server does not hold the message the store says it does: a destructive command
    (delete, move, expunge) aimed at it is refused before it is sent."""


class StoreError(MailsyncError):
    """The local store could not be opened, migrated or written."""


class TokenError(CredentialError):
    """An OAuth2 provider could not be reached, or refused a request for a reason other than a dead
    refresh token (bad client_id or client_secret, unknown tenant, network down). Retrying may help."""


class NeedsLoginError(AuthError):
    """An OAuth2 account has no usable refresh token: never logged in, or the provider answered
    ``invalid_grant`` (revoked, expired, password changed). Only ``mailsync auth login ACCOUNT``
    fixes it; other accounts go on."""


class Throttled(ConnectError):
    """The server asks the client to slow down or come back later: Microsoft 365's "Request is
    throttled. Suggested Backoff Time: N milliseconds" and "User is authenticated but not connected"
    (too many connections), RFC 5530's [UNAVAILABLE], [OVERQUOTA] and [LIMIT], Gmail's [THROTTLED]
    and its [ALERT]s about bandwidth and connections. Not the account's fault and not the data's: the
    sync stops where it is, with everything read so far committed, and is resumed after the wait.

    ``kind``: throttled | connections | quota | unavailable | limit. ``wait``: the seconds the
    server suggested (None: it named none; the caller backs off). ``reset_at``: a daily quota's reset
    time (Unix seconds) where the server named one. ``daily``: a quota that only a reset lifts."""

    def __init__(self, message: str, *, hint: str | None = None, kind: str = "throttled",
                 wait: float | None = None, reset_at: float | None = None, daily: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.wait = wait
        self.reset_at = reset_at
        self.daily = daily
