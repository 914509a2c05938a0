"""`mailsync show` and `mailsync export maildir|mbox`: the stored mail out to stdout, a Maildir or mbox
(`show` fetches the body of a message held by its headers alone, mailsync.sync.on_demand).

Owns: their arguments, what goes to stdout (only the message that `show` was asked for) and to stderr
(progress on a terminal, the summary, each message that could not be exported), and exit codes (0
done; 1 some message could not be read back intact; 2 usage or config error). Must not: hold export
logic (mailsync.mirror.export) or touch the store but through it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from mailsync.cli.output import fail


def _main():
    from mailsync.cli import main

    return main


def _open(obj, account: str | None):
    from mailsync.errors import MailsyncError

    main = _main()
    try:
        config = obj.config()
        if account is not None:
            main._select_accounts(config, (account,))
        return obj.store(config)
    except MailsyncError as exc:
        fail(exc)


@click.command()
@click.argument("account")
@click.argument("folder")
@click.argument("uid", type=click.IntRange(min=1))
@click.option("--headers", is_flag=True, help="Only the header section (with the blank line that ends it).")
@click.pass_obj
def show(obj, account: str, folder: str, uid: int, headers: bool) -> None:
    """The message ACCOUNT FOLDER UID exactly as downloaded (its SHA-256 checked), to stdout.

    A message larger than the account's max_size, held by its headers alone, is fetched from the
    server first and stored (later shows read it here); with --headers, its stored headers are shown."""
    from mailsync.errors import MailsyncError
    from mailsync.mirror.export import checked_body, find_message, header_of
    from mailsync.store import repositories as repo
    from mailsync.store.uow import UnitOfWork

    store = _open(obj, account)
    try:
        with UnitOfWork(store) as uow:
            row = find_message(uow.session, account, folder, uid)
            if not row.headers_only:
                raw = checked_body(uow.session, row)
            elif headers:
                raw = repo.read_body(uow.connection, row.sha256, heads=True)
        if row.headers_only and not headers:
            from mailsync.sync.on_demand import fetch_body

            acc = next(a for a in obj.config().accounts if a.name == account)
            raw = fetch_body(store, acc, folder, uid)
    except MailsyncError as exc:
        fail(exc)
    finally:
        store.dispose()
    out = sys.stdout.buffer
    out.write(header_of(raw) if headers else raw)
    out.flush()


class _Progress:
    """A line on stderr at most every 2 s, when stderr is a terminal."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.t0 = self.last = time.monotonic()
        self.shown = False

    def __call__(self, result) -> None:
        now = time.monotonic()
        if now - self.last >= 2 and sys.stderr.isatty():
            self.last, self.shown = now, True
            click.echo(f"\r{self.what}: {result.written:,} messages, {result.nbytes / 1e6:,.0f} MB", err=True,
                       nl=False)

    def finish(self, result, target: Path) -> None:
        if self.shown:
            click.echo("", err=True)
        for note in result.notes:
            click.echo(f"mailsync: note: {note}", err=True)
        for p in result.problems:
            click.echo(f"mailsync: not exported: {p.error}", err=True)
        click.echo(f"exported {result.written:,} message(s), {result.nbytes / 1e6:,.1f} MB, from {result.folders} "
                   f"folder(s) to {target} in {time.monotonic() - self.t0:.1f} s; {result.present:,} already "
                   f"there; {len(result.problems)} problem(s)", err=True)
        if result.problems:
            click.echo("run mailsync verify to list the damaged messages, then mailsync verify --repair and "
                       "mailsync sync to download them again, and export again", err=True)
            sys.exit(1)


_account = click.option("--account", default=None,
                        help="Only this account; DIR is then its root (else DIR/ACCOUNT for each account).")
_folder = click.option("--folder", default=None, help="Only this folder (decoded name).")


@click.command("maildir")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_account
@_folder
@click.option("--layout", type=click.Choice(["maildir++", "fs"]), default="maildir++", show_default=True,
              help="maildir++: INBOX at the root, others .A.B; fs: A/B.")
@click.pass_obj
def export_maildir(obj, directory: Path, account: str | None, folder: str | None, layout: str) -> None:
    """Write the stored messages into a Maildir (flags in the file names, keywords through
    dovecot-keywords, INTERNALDATE as mtime); a rerun adds only what is missing."""
    from mailsync.errors import MailsyncError
    from mailsync.mirror.export import export_maildir as run
    from mailsync.store.uow import UnitOfWork

    store = _open(obj, account)
    progress = _Progress("exporting")
    try:
        with UnitOfWork(store) as uow:
            result = run(uow.session, directory, account=account, folder=folder, layout=layout,
                         per_account=account is None, progress=progress)
    except MailsyncError as exc:
        fail(exc)
    finally:
        store.dispose()
    progress.finish(result, directory)


@click.command("mbox")
@click.argument("target", type=click.Path(path_type=Path))
@_account
@_folder
@click.pass_obj
def export_mbox(obj, target: Path, account: str | None, folder: str | None) -> None:
    """Write the stored messages as mboxrd: TARGET a directory (one A/B.mbox per folder) or one
    file (one folder: an existing file, or a new path with --folder); a rerun adds only what is
    missing."""
    from mailsync.errors import ConfigError, MailsyncError
    from mailsync.mirror.export import export_mbox as run, selection_folders
    from mailsync.store.uow import UnitOfWork

    single = target.is_file() or (not target.exists() and folder is not None and not str(target).endswith("/"))
    store = _open(obj, account)
    progress = _Progress("exporting")
    try:
        with UnitOfWork(store) as uow:
            if single:
                chosen = selection_folders(uow.session, account, folder)
                if len(chosen) > 1:
                    names = ", ".join(f"{a}/{f}" for a, f in chosen[:5]) + (", ..." if len(chosen) > 5 else "")
                    raise ConfigError(f"{target} is one mbox file, for one folder; the selection has "
                                      f"{len(chosen)}: {names}",
                                      hint="name one with --account and --folder, or give a directory "
                                           "(one file per folder)")
            result = run(uow.session, target, single_file=single, account=account, folder=folder,
                         per_account=account is None, progress=progress)
    except MailsyncError as exc:
        fail(exc)
    finally:
        store.dispose()
    progress.finish(result, target)
