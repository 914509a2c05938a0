"""Messages and errors of the ``mailsync`` commands on stderr, as text or (--log-format json) one JSON
line like every log record.

Owns: the chosen log format and the two ways a command speaks on stderr outside its logs: a notice
(:func:`say`) and a fatal error that ends the command with the error's exit code (:func:`fail`).
Must not: write machine-readable output (stdout belongs to each command) or decide exit codes (the
error carries its own).
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import click

from mailsync.errors import MailsyncError

__all__ = ["LOG_FORMAT", "fail", "say"]

LOG_FORMAT = ["text"]  # --log-format, set by the `mailsync` group for the messages below


def fail(exc: MailsyncError) -> NoReturn:
    if LOG_FORMAT[0] == "json":
        say(exc.message, logging.ERROR, event="error", hint=exc.hint, exit_code=exc.exit_code)
    else:
        click.echo(f"mailsync: error: {exc}", err=True)
    sys.exit(exc.exit_code)


def say(message: str, level: int = logging.WARNING, *, event: str = "notice", **fields) -> None:
    """A message for stderr: as is, or with --log-format json one JSON line like every log record."""
    if LOG_FORMAT[0] == "json":
        from mailsync.push.logs import event as log_event

        log_event(logging.getLogger("mailsync"), event, level, message=message, **fields)
    else:
        click.echo(f"mailsync: {message}", err=True)
