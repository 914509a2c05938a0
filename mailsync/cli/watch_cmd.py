"""`mailsync watch`: the push daemon, in the foreground, until SIGTERM or SIGINT; `mailsync workers`.

Owns: the command's options, logging set-up (one structured line per event on stderr), the metrics
endpoint, signal handling (SIGHUP: read the config again, mailsync.push.reload) and the exit code.
Must not: hold daemon logic (mailsync.push.daemon).

With --worker (a PostgreSQL store only), this process is one of many sharing the accounts through
lease rows (mailsync.push.worker): it watches those it holds, and gives them back on SIGTERM.

Exit codes: 0 after SIGTERM/SIGINT (within 5 s: running syncs stop at their next step boundary and
are cut after a grace period; a watchdog exits regardless at 4.7 s); 2 for usage or config errors.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import click

from mailsync.errors import ConfigError, MailsyncError

EXIT_DEADLINE = 4.7  # seconds from the signal to a forced (but clean: exit code 0) exit


@click.command("watch")
@click.option("--account", "accounts", multiple=True, help="Watch only this account (repeatable).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics on ADDR:PORT/metrics (0 picks a free port).")
@click.option("--metrics-addr", default="127.0.0.1", show_default=True,
              help="The address --metrics-port listens on (0.0.0.0 or :: for every interface, e.g. in a container).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="One line per event on stderr, as key=value text or JSON (default: mailsync --log-format).")
@click.option("--backoff-initial", type=click.FloatRange(min=0.01), default=None,
              help="Seconds before the first reconnect attempt (default 1; doubled each time, jittered).")
@click.option("--backoff-max", type=click.FloatRange(min=0.01), default=None,
              help="Cap on the reconnect delay in seconds (default 300).")
@click.option("--keepalive", type=click.FloatRange(min=0.1), default=None,
              help="Probe a silent push connection after this many seconds (default 300).")
@click.option("--response-timeout", type=click.FloatRange(min=0.1), default=None,
              help="A DONE or NOOP unanswered this long means the connection is dead (default 30).")
@click.option("--worker", is_flag=True,
              help="Share the accounts with other `watch --worker` processes (any machine) through lease rows "
                   "in the PostgreSQL store: watch only those this worker holds.")
@click.option("--max-accounts", type=click.IntRange(min=0), default=None,
              help="With --worker: hold at most this many accounts (default: an even share).")
@click.option("--lease-ttl", type=click.FloatRange(min=0.3), default=None,
              help="With --worker: seconds a lease lasts without a heartbeat (default 30); a dead worker's "
                   "accounts are taken over after this long.")
@click.option("--config-poll", type=click.FloatRange(min=0), default=None,
              help="Seconds between looks at the config file for changes (default 1; 0: only SIGHUP, "
                   "and with --worker `mailsync workers reload`, reload it).")
@click.pass_obj
def watch(obj, accounts: tuple[str, ...], metrics_port: int | None, metrics_addr: str, log_format: str | None,
          backoff_initial: float | None, backoff_max: float | None, keepalive: float | None,
          response_timeout: float | None, worker: bool, max_accounts: int | None, lease_ttl: float | None,
          config_poll: float | None) -> None:
    """Keep every account in step: push (NOTIFY, IDLE) or polling, a delta sync on each change,
    local changes sent at once. Runs until SIGTERM or SIGINT.

    The config file is read again when it changes, on SIGHUP, and (--worker) on `mailsync workers
    reload`: new accounts are started, removed ones stopped, changed ones restarted, the others left
    running; a file that does not load is refused (logged) and the running config kept."""
    import asyncio  # imported here, not at the top: `mailsync sync` loads this module too
    import signal
    from dataclasses import replace

    from mailsync.cli.main import _select_accounts
    from mailsync.cli.output import fail
    from mailsync.push import logs
    from mailsync.push.daemon import WatchDaemon
    from mailsync.push.reload import CONFIG_POLL, ConfigReloader
    from mailsync.push.settings import WatchSettings, watched

    log_format = log_format or getattr(obj, "log_format", "text")
    try:
        if not worker and (max_accounts is not None or lease_ttl is not None):
            raise ConfigError("--max-accounts and --lease-ttl are options of --worker",
                              hint="add --worker (with a PostgreSQL store), or leave them out")
        if metrics_port is None and metrics_addr != "127.0.0.1":
            raise ConfigError(f"--metrics-addr {metrics_addr} is given without --metrics-port",
                              hint="add --metrics-port PORT (0 picks a free one)")
        config = obj.config()
        selected = [a for a in _select_accounts(config, accounts) if watched(a)]
        if not selected:
            raise ConfigError(f"no account to watch in {config.path}",
                              hint="add an [[account]] (accounts with watch = false are left out)")
        settings = WatchSettings()
        if backoff_initial is not None or backoff_max is not None:
            initial = backoff_initial if backoff_initial is not None else settings.backoff.initial
            maximum = backoff_max if backoff_max is not None else max(settings.backoff.maximum, initial)
            if maximum < initial:
                raise ConfigError(f"--backoff-max {maximum:g} is less than --backoff-initial {initial:g}",
                                  hint="give a cap at least as large as the first delay")
            settings = replace(settings, backoff=replace(settings.backoff, initial=initial, maximum=maximum))
        if keepalive is not None:
            settings = replace(settings, keepalive=keepalive)
        if response_timeout is not None:
            settings = replace(settings, response_timeout=response_timeout)
        if worker:
            from sqlalchemy.engine import make_url

            from mailsync.store.lease_repo import require_postgresql

            require_postgresql(make_url(config.store.url).get_backend_name(), config.store.url)
        store = obj.store(config)
    except MailsyncError as exc:
        fail(exc)

    level = min(logging.INFO, logging.getLogger().level or logging.INFO)
    logs.setup(log_format, level)
    log = logging.getLogger("mailsync.push")
    last_words: list = []  # run by the watchdog before its forced exit (a worker's leases given back)
    watchdog = threading.Timer(EXIT_DEADLINE, _forced_exit, args=(last_words,))
    watchdog.daemon = True

    async def main() -> None:
        from mailsync.cli.hooks import WatchHooks, hooks_for

        after = None  # each sync is followed by the CRM step when [crm] is configured (mailsync.service)
        if any(hooks_for(config, a.name) for a in selected):  # post_sync / on_new_mail (mailsync.cli.hooks)
            after = WatchHooks(config, store)
        def on_config(old, new) -> None:  # the hooks follow a reloaded config
            names = {a.name for a in (*old.accounts, *new.accounts)}
            if old.hooks == new.hooks and all(hooks_for(old, n) == hooks_for(new, n) for n in names):
                return
            watched_now = [a for a in new.accounts if not accounts or a.name in accounts]
            hooks = WatchHooks(new, store) if any(hooks_for(new, a.name) for a in watched_now) else None
            if hooks is not None and worker:
                hooks.mine = daemon.held_names
            daemon.after_sync = hooks

        if worker:
            from mailsync.push.worker import DEFAULT_LEASE_TTL, WorkerDaemon, WorkerSettings

            daemon = WorkerDaemon(store, selected, settings=settings, config=config, after_sync=after,
                                  worker=WorkerSettings(lease_ttl=lease_ttl or DEFAULT_LEASE_TTL,
                                                        max_accounts=max_accounts))
            last_words.append(daemon.release_now)
            if after is not None:  # a hook runs for the syncs of this worker's accounts only
                after.mine = daemon.held_names
        else:
            daemon = WatchDaemon(store, selected, settings=settings, config=config, after_sync=after)
        loop = asyncio.get_running_loop()

        def on_signal(name: str) -> None:
            if not watchdog.is_alive():
                watchdog.start()
            daemon.request_stop(name)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
        daemon.reloader = ConfigReloader(daemon, config, names=accounts, on_config=on_config,
                                         poll=CONFIG_POLL if config_poll is None else config_poll)
        loop.add_signal_handler(signal.SIGHUP, daemon.reloader.request, "SIGHUP")
        if metrics_port is not None:
            try:
                port = daemon.metrics.serve(metrics_port, metrics_addr)
            except (OSError, ValueError) as exc:  # socket.gaierror is an OSError
                raise ConfigError(f"cannot serve metrics on {metrics_addr}:{metrics_port}: "
                                  f"{getattr(exc, 'strerror', None) or exc}",
                                  hint="choose another --metrics-port, or an address of this machine for "
                                       "--metrics-addr") from None
            host = f"[{metrics_addr}]" if ":" in metrics_addr else metrics_addr
            logs.event(log, "metrics", url=f"http://{host}:{port}/metrics", port=port, addr=metrics_addr)
        await daemon.run()

    try:
        asyncio.run(main())
    except MailsyncError as exc:
        fail(exc)
    finally:
        store.dispose()
    sys.stderr.flush()


def _forced_exit(last_words=()) -> None:
    for fn in last_words:  # e.g. a worker's leases, given back so others need not wait for their expiry
        done = threading.Thread(target=_quietly, args=(fn,), daemon=True)
        done.start()
        done.join(0.2)
    logging.getLogger("mailsync.push").warning("forced_exit reason=\"shutdown took longer than %.1f s\"",
                                               EXIT_DEADLINE)
    logging.shutdown()
    os._exit(0)


def _quietly(fn) -> None:
    try:
        fn()
    except Exception:
        pass


@click.group("workers", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def workers(ctx, as_json: bool) -> None:
    """The `watch --worker` processes sharing the store: their accounts, lease ages and sync lag.

    `mailsync workers reload` makes every worker read its config file again."""
    if ctx.invoked_subcommand is None:
        _list_workers(ctx.obj, as_json)


@workers.command("reload")
@click.pass_obj
def reload(obj) -> None:
    """Make every running `watch --worker` (any machine) read its config file again at once: a NOTIFY
    through the PostgreSQL store. Each applies what changed in its own file, or logs why it refused it."""
    from mailsync.push.notify import ask_reload
    from mailsync.store import lease_repo

    store = _postgresql_store(obj)
    try:
        ask_reload(store)
        with store.engine.connect() as conn:
            alive = sum(1 for w in lease_repo.report(conn) if w["worker"] is not None and w["alive"])
    finally:
        store.dispose()
    click.echo(f"asked {alive} live worker(s) to read their config again")


def _postgresql_store(obj):
    """The config's store, which must be PostgreSQL (the workers' leases live there); else the
    error, naming the fix, and exit."""
    from sqlalchemy.engine import make_url

    from mailsync.cli.output import fail
    from mailsync.store import lease_repo

    try:
        config = obj.config()
        lease_repo.require_postgresql(make_url(config.store.url).get_backend_name(), config.store.url)
        return obj.store(config)
    except MailsyncError as exc:
        fail(exc)


def _list_workers(obj, as_json: bool) -> None:
    import json

    from mailsync.store import lease_repo

    store = _postgresql_store(obj)
    try:
        with store.engine.connect() as conn:
            report = lease_repo.report(conn)
    finally:
        store.dispose()
    if as_json:
        click.echo(json.dumps({"workers": report}, indent=2, sort_keys=True))
        return
    if not report:
        click.echo("no workers (start `mailsync watch --worker`)")
    for w in report:
        if w["worker"] is None:
            click.echo(f"not held: {len(w['accounts'])} account(s)")
        else:
            state = "alive" if w["alive"] else "GONE"
            click.echo(f"{w['worker']} ({state}, heartbeat {w['heartbeat_age']:.1f} s ago, lease_ttl "
                       f"{w['lease_ttl']:g} s, max {w['max_accounts'] if w['max_accounts'] is not None else '-'}): "
                       f"{len(w['accounts'])} account(s)")
        for a in w["accounts"]:
            age = "-" if a["lease_age"] is None else f"{a['lease_age']:.1f} s"
            lag = "-" if a["lag_seconds"] is None else f"{a['lag_seconds']:.2f} s"
            click.echo(f"  {a['account']}: lease age {age}, generation {a['generation']}, "
                       f"last sync {a['last_sync'] or 'never'}, lag {lag}")
