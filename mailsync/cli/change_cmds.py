"""`mailsync flag|label|move|delete|append|mkdir|rmdir|rename`: queue a local change in the store.

Owns: the arguments of those commands. Must not: push anything (the next `mailsync sync`, or the
watch daemon, settles the change); mailsync.changes records it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mailsync.errors import MailsyncError


def _changes(ctx: click.Context):
    from mailsync.changes import LocalChanges

    obj = ctx.obj
    try:
        config = obj.config()
        return LocalChanges(obj.store(config))
    except MailsyncError as exc:
        click.echo(f"mailsync: error: {exc}", err=True)
        sys.exit(exc.exit_code)


def _queued(ctx: click.Context, fn, *args, **kw) -> None:
    changes = _changes(ctx)
    try:
        op_id = fn(changes, *args, **kw)
    except MailsyncError as exc:
        click.echo(f"mailsync: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    finally:
        changes.store.dispose()
    click.echo(f"queued change #{op_id}; the next mailsync sync pushes it", err=True)
    click.echo(str(op_id))


def _parsed(parse, changes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``parse`` (a list of +X/-X in, (added, removed) out) of the arguments, or exit naming the bad one."""
    try:
        return parse(list(changes))
    except MailsyncError as exc:
        click.echo(f"mailsync: error: {exc}", err=True)
        sys.exit(exc.exit_code)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("account")
@click.argument("folder")
@click.argument("uid", type=click.IntRange(min=1))
@click.argument("changes", nargs=-1, required=True)
@click.pass_context
def flag(ctx, account: str, folder: str, uid: int, changes: tuple[str, ...]) -> None:
    """Add (+FLAG) or remove (-FLAG) flags: mailsync flag work INBOX 42 +\\\\Seen -\\\\Flagged +$Label"""
    from mailsync.changes import parse_flag_changes

    add, remove = _parsed(parse_flag_changes, changes)
    _queued(ctx, lambda c: c.flag(account, folder, uid, add=add, remove=remove))


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("account")
@click.argument("folder")
@click.argument("uid", type=click.IntRange(min=1))
@click.argument("changes", nargs=-1, required=True)
@click.pass_context
def label(ctx, account: str, folder: str, uid: int, changes: tuple[str, ...]) -> None:
    """Gmail: add (+LABEL) or remove (-LABEL) labels: mailsync label personal INBOX 42 +Work -\\Important"""
    from mailsync.changes import split_changes

    add, remove = _parsed(lambda specs: split_changes(specs, "label", "mailsync label personal INBOX 42 +Work -Later"),
                          changes)
    _queued(ctx, lambda c: c.label(account, folder, uid, add=add, remove=remove))


@click.command()
@click.argument("account")
@click.argument("folder")
@click.argument("uid", type=click.IntRange(min=1))
@click.argument("dest")
@click.pass_context
def move(ctx, account: str, folder: str, uid: int, dest: str) -> None:
    """Move message UID of FOLDER to DEST."""
    _queued(ctx, lambda c: c.move(account, folder, uid, dest))


@click.command()
@click.argument("account")
@click.argument("folder")
@click.argument("uid", type=click.IntRange(min=1))
@click.pass_context
def delete(ctx, account: str, folder: str, uid: int) -> None:
    """Delete (expunge) message UID of FOLDER."""
    _queued(ctx, lambda c: c.delete(account, folder, uid))


@click.command()
@click.argument("account")
@click.argument("folder")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--flag", "flags", multiple=True, help="A flag to set on the new message (repeatable).")
@click.pass_context
def append(ctx, account: str, folder: str, file: Path, flags: tuple[str, ...]) -> None:
    """Append the message in FILE (RFC 5322, e.g. a .eml) to FOLDER."""
    from mailsync.changes import ChangeError, read_message_file

    try:
        raw = read_message_file(file)
    except ChangeError as exc:
        click.echo(f"mailsync: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    _queued(ctx, lambda c: c.append(account, folder, raw, flags=list(flags)))


@click.command()
@click.argument("account")
@click.argument("name")
@click.pass_context
def mkdir(ctx, account: str, name: str) -> None:
    """Create folder NAME."""
    _queued(ctx, lambda c: c.mkdir(account, name))


@click.command()
@click.argument("account")
@click.argument("name")
@click.pass_context
def rmdir(ctx, account: str, name: str) -> None:
    """Delete folder NAME and its messages."""
    _queued(ctx, lambda c: c.rmdir(account, name))


@click.command()
@click.argument("account")
@click.argument("old")
@click.argument("new")
@click.pass_context
def rename(ctx, account: str, old: str, new: str) -> None:
    """Rename folder OLD to NEW."""
    _queued(ctx, lambda c: c.rename(account, old, new))
