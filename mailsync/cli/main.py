"""The `mailsync` command: click commands wiring config, store and sync together.

Owns: argument parsing, exit codes, and what goes to stdout (machine-readable output) versus stderr
(progress, logs, errors). Must not: hold sync logic. Heavy modules are imported inside commands so
that start-up stays short (a no-change sync must finish in well under a second).

Exit codes: 0 success; 1 a run failed (each failing account named on stderr); 2 usage or config error.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from pathlib import Path

import click

from mailsync.errors import ConfigError, MailsyncError
from mailsync.cli.output import LOG_FORMAT, fail, say


class _Ctx:
    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path

    def config(self):
        from mailsync.config.loader import load_config

        return load_config(self.config_path)

    def store(self, config):
        from mailsync.store.db import open_store

        store = open_store(config.store.url)
        _startup_over()
        return store


def _startup_over() -> None:
    """The heavy imports are done (SQLAlchemy, the models, the store): what they built lives as
    long as the process, so it is moved out of the collector's sight and collection resumes.
    Collecting during those imports found nothing to free and cost 0.03-0.045 s of a sync's
    start-up; main() turns it off until here."""
    gc.freeze()
    gc.enable()


class _LazyGroup(click.Group):
    """A group some of whose commands live in other modules (``lazy``: name -> "module:attribute"),
    imported when one of them is run, or when the group lists its commands (help): a sync loads none
    of them."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kw) -> None:
        super().__init__(*args, **kw)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        where = self.lazy.pop(name, None)
        if where is not None:
            from importlib import import_module

            module, attribute = where.split(":")
            self.add_command(getattr(import_module(module), attribute), name)
        return super().get_command(ctx, name)


_CHANGES = "mailsync.cli.change_cmds"  # `mailsync flag|label|move|delete|append|mkdir|rmdir|rename` queue a change


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, lazy={
    "auth": "mailsync.cli.auth_cmds:auth", "crm": "mailsync.cli.crm_cmds:crm",
    "channel": "mailsync.cli.channel_cmds:channel",  # `mailsync channel status`
    **{name: f"{_CHANGES}:{name}" for name in ("flag", "label", "move", "delete", "append", "mkdir", "rmdir",
                                                   "rename")},
    "watch": "mailsync.cli.watch_cmd:watch",  # mailsync.push
    "workers": "mailsync.cli.watch_cmd:workers",  # the `watch --worker` processes (mailsync.push.worker)
    "install-service": "mailsync.cli.service_cmd:install_service",  # the systemd unit
    "show": "mailsync.cli.mail_cmds:show"})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              envvar="MAILSYNC_CONFIG", help="Config file (default: $MAILSYNC_CONFIG, else the XDG config path).")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="MAILSYNC_LOG_FORMAT",
              help="Logs, errors and sync summaries on stderr as text, or one JSON object per line.")
@click.version_option(package_name="mailsync")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int, log_format: str) -> None:
    """Mirror folders, flags and messages between IMAP accounts and a local SQL store."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    LOG_FORMAT[0] = log_format
    if log_format == "json":
        from mailsync.push.logs import setup

        setup("json", level)
    else:
        logging.basicConfig(level=level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = _Ctx(config_path)
    ctx.obj.log_format = log_format


@cli.command()
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
@click.pass_obj
def init(obj: _Ctx, force: bool) -> None:
    """Write a commented sample config (mode 0600) to edit."""
    from mailsync.config.loader import default_config_path
    from mailsync.config.sample import write_sample

    path = obj.config_path or default_config_path()
    try:
        written = write_sample(path, force=force)
    except MailsyncError as exc:
        fail(exc)
    click.echo(f"wrote a sample config to {written}; edit it, then run: mailsync sync", err=True)
    click.echo(str(written))


@cli.command()
@click.option("--account", "accounts", multiple=True, help="Sync only this account (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="No progress display; only errors on stderr.")
@click.option("--allow-deletions", "--allow-mass-delete", "allow_deletions", is_flag=True,
              help="Apply deletions held because most of a folder vanished at once (from the server, the "
                   "Maildir mirror, or one side of a channel).")
@click.option("--json", "as_json", is_flag=True,
              help="The per-account summary as one JSON document on stdout (no progress display).")
@click.option("--dry-run", is_flag=True,
              help="Show what a sync would do, per account and folder, changing nothing: neither the store "
                   "nor the server.")
@click.pass_obj
def sync(obj: _Ctx, accounts: tuple[str, ...], quiet: bool, allow_deletions: bool, as_json: bool,
         dry_run: bool) -> None:
    """One sync of the selected accounts (all by default)."""
    try:
        config = obj.config()
        selected = _select_accounts(config, accounts)
        if dry_run:
            _dry_run(config, selected, allow_deletions, as_json)
        early = _EarlyLogin(selected[0]) if selected and not _throttled(config, selected[0]) else None
        from mailsync.cli.progress import NewMailFolders, make_observer

        observer = NewMailFolders(make_observer(quiet or as_json, log_format=LOG_FORMAT[0]))
        done = _quiet_sync(config, selected, early, observer)
        if done is not None:  # nothing changed: neither the store's machinery nor the engine was needed
            _sync_over([done], [], [], as_json, len(selected))
            return
        store = obj.store(config)
    except MailsyncError as exc:
        fail(exc)
    from mailsync.cli.hooks import SyncChange, run_hooks
    from mailsync.service import run_sync

    def hooks(result) -> list[str]:  # between accounts: a failing hook is logged, never fails the sync
        return run_hooks(config, SyncChange.from_result(result, observer.folders(result.account)))

    # each account, then the CRM step when [crm] is configured (extract what changed, then deliver)
    outcome = run_sync(config, store, observer, accounts=selected, after_account=hooks, quiet=quiet,
                       allow_mass_delete=allow_deletions,
                       **({"connect": early.connect} if early else {}))
    store.dispose()
    _sync_over(outcome.results, outcome.failed, outcome.hook_failures, as_json, len(selected))


def _sync_over(results, failed: list[str], hook_failures: list[str], as_json: bool, selected: int) -> None:
    """The end of `mailsync sync`: the JSON summary, the failed accounts named, exit 1 if any."""
    if as_json:
        from mailsync.cli.progress import summary_json

        click.echo(json.dumps(summary_json(results, failed, hook_failures), indent=2, sort_keys=True))
    if failed:
        say(f"{len(failed)} of {selected} account(s) failed: {', '.join(failed)}", logging.ERROR,
             event="sync_failed", failed=", ".join(failed))
        sys.exit(1)


def _quiet_sync(config, selected, early, observer):
    """The sync of the one selected account when nothing changed on either side (mailsync.sync.quick),
    else None: then the engine runs, on the same connection (or with what logging in raised, or what
    the listing raised, as its own connect would have). Only for what the check covers: one account
    without hooks, no [crm], no channels, a SQLite store that exists."""
    from mailsync.cli.hooks import hooks_for
    from mailsync.config.sqlite_url import plain_sqlite_path

    if (early is None or len(selected) != 1 or config.crm_settings is not None or config.channels
            or hooks_for(config, selected[0].name)):
        return None
    db = plain_sqlite_path(config.store.url)
    if db is None or not os.path.isfile(db) or os.path.getsize(db) == 0:
        return None
    from mailsync.sync.quick import quiet_sync

    try:
        result = quiet_sync(Path(db), selected[0], early.connection)
    except MailsyncError as exc:
        early.failed(exc)
        return None
    if result is not None:
        with observer:  # what the engine tells the display of a run
            observer.account_started(result.account)
            observer.account_done(result)
    return result


def _throttled(config, account) -> bool:
    """Is ``account`` waiting out a throttle (mailsync.store.quiet.throttled)? Then no early login:
    the engine does not contact the server before the wait is over."""
    from mailsync.config.sqlite_url import plain_sqlite_path

    db = plain_sqlite_path(config.store.url)
    if db is None or not os.path.isfile(db):
        return False
    from mailsync.store.quiet import throttled

    return throttled(Path(db), account.name)


def _dry_run(config, selected, allow_deletions: bool, as_json: bool) -> None:
    """`sync --dry-run`: the plans on stdout; exit 0, or 1 when an account could not be planned."""
    from mailsync.cli.dry_run_cmd import as_json as plans_json, plan_accounts, plan_channels, render

    plans = plan_accounts(config, selected, allow_deletions=allow_deletions)
    channels = plan_channels(config, selected, allow_deletions=allow_deletions)
    _startup_over()
    if as_json:
        click.echo(json.dumps(plans_json(plans, channels), indent=2, sort_keys=True))
    else:
        click.echo(render(plans, channels))
    failed = [p.account for p in plans if not p.ok]
    if failed:
        say(f"{len(failed)} of {len(selected)} account(s) failed: {', '.join(failed)}", logging.ERROR,
             event="sync_failed", failed=", ".join(failed))
        sys.exit(1)
    sys.exit(0)


class _EarlyLogin:
    """Log in to the first account on a thread while the store's modules load and the store opens,
    and read the folder listing the sync starts with (_list_ahead): the thread mostly waits on the
    server, which costs those imports nothing (about 0.02 s of a sync's start-up, and the server's
    whole listing time on a large mailbox). ``connect`` is the connect hook for every account's
    sync: its first call for that account hands over this connection, or raises what logging in
    (or that listing) raised, as connecting then would have; any other call (another account, a
    reconnect) connects anew."""

    def __init__(self, account) -> None:
        import threading
        from concurrent.futures import Future

        self.account = account
        self._early: Future = Future()
        self._taken = False
        threading.Thread(target=self._log_in, name="mailsync-login", daemon=True).start()

    def _log_in(self) -> None:
        sock = _dial(self.account)  # first: the server's greeting is on its way while the IMAP modules load
        from mailsync.auth.login import open_connection

        try:
            conn = open_connection(self.account, sock)
        except BaseException as exc:  # handed to the sync, which reports it
            self._early.set_exception(exc)
            return
        try:
            _list_ahead(conn)
        except BaseException as exc:  # what the sync's own listing would have raised: it reports it
            conn.logout()
            self._early.set_exception(exc)
            return
        self._early.set_result(conn)

    def connection(self):
        """The early connection, once logged in; None when logging in failed (the sync reports it)."""
        try:
            return self._early.result()
        except BaseException:
            return None

    def failed(self, exc: BaseException) -> None:
        """The early connection broke (``exc``): the sync's connect raises it, as its own would have."""
        from concurrent.futures import Future

        self._early = Future()
        self._early.set_exception(exc)

    def connect(self, acc):
        from mailsync.auth.login import open_connection

        if self._taken or acc is not self.account:
            return open_connection(acc)
        self._taken = True
        return self._early.result()


def _list_ahead(conn) -> None:
    """The LIST-STATUS every sync starts with (the quick check's, or the engine's pull), sent as soon as
    the login is done and handed over (ImapConnection.hand_over_listing): the server answers it while
    the sync's modules load and the store is read. Opening a large mailbox's indexes is the server's
    slowest step of a sync with little to do (Dovecot, 200,000 messages in 10 folders, just started:
    0.14-0.16 s with no change, 0.4-0.6 s after changes). Taken only if no other command goes out
    first (a local change pushed ahead of the pull lists again)."""
    if conn.has("LIST-STATUS"):
        conn.list_folders()
        conn.hand_over_listing()


def _dial(account):
    """A TCP connection to the account's server, or None when it cannot be made now (the login then
    connects again, and reports the error as its own connect would). Made before the IMAP modules
    are imported: the server's greeting (measured on Dovecot: 8 ms) arrives while they load."""
    import socket

    try:
        return socket.create_connection((account.host, account.port), timeout=account.timeout)
    except (OSError, ValueError):
        return None


def _select_accounts(config, names: tuple[str, ...]):
    if not names:
        return list(config.accounts)
    known = [a.name for a in config.accounts]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"no account named {unknown[0]!r} in {config.path}",
                          hint=f"choose one of: {', '.join(known) or '(none configured)'}")
    return [a for a in config.accounts if a.name in names]


@cli.command()
@click.option("--account", "accounts", multiple=True, help="Check only this account (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def check(obj: _Ctx, accounts: tuple[str, ...], as_json: bool) -> None:
    """Check the config and each account without syncing: secrets, TLS, login, capabilities, and
    the folders that folders/exclude select with their sizes. Creates no store, writes nothing.

    Exit 0 when every account passed, 1 when any failed, 2 for a config error."""
    try:
        config = obj.config()
        selected = _select_accounts(config, accounts)
    except MailsyncError as exc:
        fail(exc)
    from sqlalchemy.engine import make_url

    from mailsync.cli.check import check_account, render
    from mailsync.store.db import store_exists, store_mode_problems

    checks = [check_account(account) for account in selected]
    store = {"url": make_url(config.store.url).render_as_string(hide_password=True), "exists": False,
             "mode_problems": []}
    try:
        store["exists"] = store_exists(config.store.url)
        store["mode_problems"] = store_mode_problems(config.store.url)
    except MailsyncError as exc:
        store["mode_problems"] = [str(exc)]
    if as_json:
        click.echo(json.dumps({"ok": all(c.ok for c in checks), "accounts": [c.as_dict() for c in checks],
                               "store": store}, indent=2, sort_keys=True))
    else:
        click.echo(render(checks, store))
    failed = [c.account for c in checks if not c.ok]
    if failed:
        say(f"{len(failed)} of {len(checks)} account(s) failed the check: {', '.join(failed)}", logging.ERROR,
             event="check_failed", failed=", ".join(failed))
        sys.exit(1)
    if not checks:
        say(f"no accounts configured in {config.path}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(obj: _Ctx, as_json: bool) -> None:
    """Per account and folder: last sync, counts, checkpoints, errors."""
    try:
        config = obj.config()
        from mailsync.store.db import store_exists

        store = obj.store(config) if store_exists(config.store.url) else None  # status never creates one
    except MailsyncError as exc:
        fail(exc)
    from mailsync.cli.status import collect_status, render_status

    report = collect_status(store, config)
    if store is not None:
        store.dispose()
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        click.echo(render_status(report))


@cli.command()
@click.option("--account", "accounts", multiple=True, help="Only this account (repeatable).")
@click.option("--repair", is_flag=True,
              help="Forget the messages that fail the check, so that the next sync downloads them again; "
                   "with --server, re-read the folders whose mapping is wrong.")
@click.option("--server", "against_server", is_flag=True,
              help="Check the UID -> message mapping against the server (Message-ID and size of every "
                   "UID the store knows) instead of reading the stored bodies back.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def verify(obj: _Ctx, accounts: tuple[str, ...], repair: bool, against_server: bool, as_json: bool) -> None:
    """Read back every stored message and check it against its SHA-256 (pack files or database);
    with --server, check that every UID the store knows holds that message on the server.

    Exit 0 when every message reads back intact (or --repair forgot every one that did not), 1 when
    some did not; each is named on stdout with its account, folder and UID."""
    import time

    try:
        config = obj.config()
        selected = _select_accounts(config, accounts)
        store = obj.store(config)
    except MailsyncError as exc:
        fail(exc)
    if against_server:
        _verify_server(store, selected, repair, as_json)
    from mailsync.store.uow import UnitOfWork
    from mailsync.store.verify import forget_bad_bodies, verify_bodies

    t0 = time.monotonic()
    shown = [t0]

    def progress(n: int, nbytes: int) -> None:  # a line on a terminal, at most every 2 s
        now = time.monotonic()
        if now - shown[0] >= 2 and sys.stderr.isatty():
            shown[0] = now
            click.echo(f"\rverifying: {n:,} messages, {nbytes / 1e6:,.0f} MB", err=True, nl=False)

    removed = kept = 0
    try:
        with UnitOfWork(store) as uow:
            result = verify_bodies(uow.session, list(accounts) or None, progress)
            if repair and result.problems:
                removed, kept = forget_bad_bodies(uow.session, result.problems)
                uow.commit()
    except MailsyncError as exc:
        store.dispose()
        fail(exc)
    store.dispose()
    if shown[0] != t0:
        click.echo("", err=True)
    if as_json:
        click.echo(json.dumps({"messages": result.bodies, "bytes": result.nbytes, "forgotten": removed, "kept": kept,
                               "problems": [{"account": p.account, "folder": p.folder, "uid": p.uid, "sha256": p.sha256,
                                             "error": p.error} for p in result.problems]}, indent=2, sort_keys=True))
    else:
        for p in result.problems:
            click.echo(f"{p.account}/{p.folder} UID {p.uid}: {p.error}")
    click.echo(f"verified {result.bodies:,} message(s), {result.nbytes / 1e6:,.1f} MB, in "
               f"{time.monotonic() - t0:.1f} s: {len(result.problems)} problem(s)", err=True)
    if removed:
        click.echo(f"forgot {removed} message(s): the next mailsync sync downloads them again", err=True)
    if kept:
        click.echo(f"kept {kept} message(s) that a local change still waits on: run mailsync sync, then "
                   f"mailsync verify --repair again", err=True)
    elif result.problems and not repair:
        click.echo("run mailsync verify --repair, then mailsync sync, to download them again", err=True)
    sys.exit(1 if result.problems and (not repair or kept) else 0)


def _verify_server(store, accounts, repair: bool, as_json: bool) -> None:
    from mailsync.sync.server_check import check_account

    checks = [check_account(store, acc, repair=repair) for acc in accounts]
    store.dispose()
    if as_json:
        click.echo(json.dumps({"accounts": [{
            "account": c.account, "error": c.error, "repaired": c.repaired, "not_repaired": c.not_repaired,
            "folders": [{"folder": f.folder, "checked": f.checked, "behind": f.behind, "skipped": f.skipped,
                         "mismatches": [{"uid": m.uid, "store": {"message_id": m.store[0], "size": m.store[1]},
                                         "server": {"message_id": m.server[0], "size": m.server[1]}}
                                        for m in f.mismatches]} for f in c.folders]}
            for c in checks]}, indent=2, sort_keys=True))
    else:
        for c in checks:
            for m in c.mismatches:
                click.echo(m.describe())
    failed = False
    for c in checks:
        n = sum(f.checked for f in c.folders)
        behind = sum(f.behind for f in c.folders)
        click.echo(f"{c.account}: {n:,} UID(s) compared with the server, {len(c.mismatches)} mismatch(es)"
                   + (f", {behind} no longer on the server (the next sync removes them)" if behind else ""),
                   err=True)
        for f in c.folders:
            if f.skipped:
                click.echo(f"{c.account}/{f.folder}: not compared: {f.skipped}", err=True)
        if c.repaired:
            click.echo(f"{c.account}: re-read {', '.join(map(repr, c.repaired))} from the server", err=True)
        if c.not_repaired:
            click.echo(f"{c.account}: not re-read, a local change waits on them: {', '.join(map(repr, c.not_repaired))}"
                       f" (run mailsync sync, then mailsync verify --server --repair again)", err=True)
        if c.error:
            click.echo(f"{c.account}: {c.error}", err=True)
        failed |= bool(c.error) or bool(c.mismatches and (not repair or c.not_repaired))
    if not repair and any(c.mismatches for c in checks):
        click.echo("run mailsync verify --server --repair to re-read those folders", err=True)
    sys.exit(1 if failed else 0)


@cli.group(cls=_LazyGroup, lazy={"maildir": "mailsync.cli.mail_cmds:export_maildir",
                                 "mbox": "mailsync.cli.mail_cmds:export_mbox"})
def export() -> None:
    """Export what the store holds."""


@export.command("messages")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--account", default=None, help="Only this account.")
@click.option("--folder", default=None, help="Only this folder (decoded name).")
@click.pass_obj
def export_messages(obj: _Ctx, fmt: str, account: str | None, folder: str | None) -> None:
    """One JSON object per line and per placement (a message larger than max_size, held by its
    headers alone: "headers_only": true and "sha256": null)."""
    try:
        config = obj.config()
        if account is not None:
            _select_accounts(config, (account,))
        store = obj.store(config)
    except MailsyncError as exc:
        fail(exc)
    from dataclasses import asdict

    from mailsync.store import repositories as repo
    from mailsync.store.uow import UnitOfWork

    out = sys.stdout
    try:  # a reader that leaves early (`| head`) ends it quietly: see main()
        from mailsync.store import gmail_repo

        with UnitOfWork(store) as uow:
            gmail: dict[str, dict] = {}  # account -> its Gmail messages by body (gmail_repo.messages_of)
            for row in repo.export_rows(uow.session, account=account, folder=folder):
                obj_ = asdict(row)
                if obj_.pop("headers_only"):  # larger than max_size: its headers alone, no SHA-256 known yet
                    obj_.update(sha256=None, headers_only=True)
                if row.account not in gmail:
                    gmail[row.account] = gmail_repo.messages_of_account(uow.session, row.account)
                gm = gmail[row.account].get(row.sha256)
                if gm is not None:  # a Gmail message: its id, thread and labels
                    obj_["gmail"] = {"msgid": gm[0], "thrid": gm[1], "labels": gm[2]}
                out.write(json.dumps(obj_, ensure_ascii=False, sort_keys=True))
                out.write("\n")
        out.flush()
    finally:
        store.dispose()


def _stdout_gone() -> None:
    """Point stdout at /dev/null, so that what is still buffered for a closed pipe goes nowhere
    instead of raising again at the final flush."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main() -> None:
    """The console script. When the command is over, the process ends at once (_exit_now)."""
    gc.disable()  # until the command has its modules (_startup_over)
    try:
        try:
            cli(prog_name="mailsync")
        except MailsyncError as exc:  # pragma: no cover - commands handle their own; this is the last net
            fail(exc)
        except Exception as exc:  # a damaged store surfaces wherever it is first read: said plainly
            from mailsync.store.db import store_damage

            damaged = store_damage(exc)
            if damaged is None:
                raise
            fail(damaged)
        except BrokenPipeError:  # pragma: no cover - a command's output cut short outside its own handling
            _stdout_gone()
            sys.exit(0)
    except SystemExit as exc:  # click ends every command with one
        code = exc.code
    else:  # pragma: no cover - click's standalone mode always exits
        code = 0
    if isinstance(code, str):
        click.echo(code, err=True)
        code = 1
    if code == 1 and _reader_left():
        code = 0
    _exit_now(code or 0)


def _reader_left() -> bool:
    """Did the command end because the reader of its output left (`mailsync status | head -1`)?
    Then it is not an error: exit 0, nothing on stderr. click ends a command whose write failed
    with EPIPE with exit 1 and no message, after putting its _PacifyFlushWrapper around stdout;
    and stdout's pipe then has no reader (poll says POLLERR). Both must hold, so that a command
    that failed while its stderr alone was cut short still exits 1."""
    import select

    if type(sys.stdout).__name__ != "_PacifyFlushWrapper":
        return False
    try:
        poller = select.poll()
        poller.register(sys.__stdout__.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _fd, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _exit_now(code: int) -> None:
    """Flush the output and the logs, then leave without the interpreter's teardown: after a large
    sync, freeing every object and module one by one took 0.1-0.15 s, for nothing. Every command
    has closed its store, connections and threads by the time it returns (their ``with`` blocks
    and ``finally`` clauses ran), so no work is cut short."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
