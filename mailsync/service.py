"""Sync, then CRM: one run over the selected accounts followed by the CRM step, for ``mailsync sync``
and the watch daemon alike.

Owns: the order of a run -- each account's sync, what runs after a clean one (the CLI's hooks), then,
when the config has a ``[crm]`` table, the incremental CRM extraction of what the syncs changed and
the delivery of its outbox -- and which failures the run reports (accounts by name, "crm").
Must not: parse arguments, choose exit codes or print a sync summary (mailsync.cli does), or hold
sync or CRM logic (mailsync.sync.engine, mailsync.crm.pipeline and mailsync.crm.outbox do).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from mailsync.config.model import AccountConfig, Config
from mailsync.errors import MailsyncError
from mailsync.store.db import Store

__all__ = ["SyncOutcome", "crm_step", "run_sync"]


@dataclass
class SyncOutcome:
    results: list = field(default_factory=list)  # mailsync.sync.engine.AccountResult, one per account
    failed: list[str] = field(default_factory=list)  # accounts not synced cleanly; "crm" when the CRM step failed
    channels: list = field(default_factory=list)  # mailsync.channel.run.ChannelResult, one per channel run
    hook_failures: list[str] = field(default_factory=list)  # what ``after_account`` reported


def _stderr(line: str) -> None:
    import click

    click.echo(line, err=True)


def run_sync(config: Config | None, store: Store, observer=None, *, accounts: Sequence[AccountConfig] | None = None,
             after_account: Callable[[object], list[str]] | None = None, quiet: bool = False,
             crm_after_failure: bool = True, crm_lock: AbstractContextManager | None = None,
             on_crm_error: Callable[[Exception], None] | None = None, report: Callable[[str], None] = _stderr,
             channels_push: bool = True, **sync_options) -> SyncOutcome:
    """Sync ``accounts`` (default: every account of ``config``) one after the other, then run the CRM
    step (:func:`crm_step`) when ``config`` has a [crm] table.

    ``observer`` sees every sync (mailsync.sync.engine.SyncObserver); when it is also a context
    manager (a progress display), it is entered around the syncs and left before the CRM step.
    ``after_account(result)`` runs after each clean sync (ok, nothing set aside) and returns what
    failed in it. ``sync_options`` go to each sync (connect, release, should_stop, allow_mass_delete).
    Channels ([[channel]]) run after the accounts they join (see _run_channels); with
    ``channels_push`` False (the watch daemon), a channel runs after its source's sync and only
    queues its changes in the destination's journal, which wakes the destination's own sync.
    The CRM step is skipped once ``should_stop()`` says so, and, without ``crm_after_failure``, when
    no sync succeeded; it runs inside ``crm_lock``; ``on_crm_error`` is handed an unexpected
    exception of the CRM step instead of letting it propagate (a MailsyncError is reported through
    ``report`` as "crm" failing either way).
    """
    from mailsync.sync.engine import sync_account

    outcome = SyncOutcome()
    selected = list(config.accounts if accounts is None and config is not None else accounts or ())
    display = observer if isinstance(observer, AbstractContextManager) else nullcontext()
    with display:
        for account in selected:
            if account.mirror.maildir is None:
                result = sync_account(store, account, observer=observer, **sync_options)
            else:
                result = _sync_with_mirror(store, account, observer, quiet, report, sync_options)
            outcome.results.append(result)
            if not result.ok or result.set_aside:  # a folder set aside is not a clean sync either
                outcome.failed.append(result.account)
            elif after_account is not None:  # e.g. hooks: a failing one is reported, never fails the sync
                outcome.hook_failures += after_account(result)
        if config is not None and config.channels:
            _run_channels(config, store, observer, selected, outcome, quiet, report, sync_options,
                          push=channels_push)
    stop = sync_options.get("should_stop")
    if config is None or config.crm_settings is None or (stop is not None and stop()):
        return outcome
    if not crm_after_failure and not any(r.ok for r in outcome.results):
        return outcome
    with crm_lock or nullcontext():
        try:
            outcome.failed += crm_step(config, store, quiet=quiet, report=report)
        except Exception as exc:
            if on_crm_error is None:
                raise
            on_crm_error(exc)
    return outcome


def _run_channels(config: Config, store: Store, observer, selected: Sequence[AccountConfig], outcome: SyncOutcome,
                  quiet: bool, report: Callable[[str], None], sync_options: dict, *, push: bool = True) -> None:
    """Each channel whose two accounts this run synced cleanly: its copies queued in the store
    (mailsync.channel.run), then the destination synced again, which APPENDs them. A channel whose
    accounts were not both synced now waits for a run that syncs them. Without ``push`` (the watch
    daemon, one account a run): each channel whose source this run synced cleanly, queued only;
    the daemon sees the destination's new journal entries and syncs it."""
    from mailsync.channel.run import run_channel
    from mailsync.sync.engine import sync_account

    names = {a.name for a in selected}
    for channel in config.channels:
        if not ({channel.source, channel.dest} <= names if push else channel.source in names):
            continue
        name = f"channel {channel.name}"
        if not push:
            if channel.source not in outcome.failed:
                try:
                    ran = run_channel(store, channel)
                    outcome.channels.append(ran)
                except MailsyncError as exc:  # the destination never synced yet, say: the next run tries again
                    import logging

                    logging.getLogger("mailsync.channel").warning("%s", exc)
            continue
        if channel.source in outcome.failed or channel.dest in outcome.failed:
            report(f"mailsync: {name}: skipped, as {channel.source} or {channel.dest} did not sync cleanly")
            outcome.failed.append(name)
            continue
        try:
            ran = run_channel(store, channel)
        except MailsyncError as exc:
            report(f"mailsync: {exc}")
            outcome.failed.append(name)
            continue
        outcome.channels.append(ran)
        if not ran.queued:
            if not quiet and ran.paired:
                report(f"mailsync: {name}: {ran.summary()}")
            continue
        pushed = sync_account(store, config.account(channel.dest), observer=observer, **sync_options)
        if not quiet or not pushed.ok:
            report(f"mailsync: {name}: {ran.summary()}; {channel.dest}: "
                   + (f"{pushed.pushed} change(s) sent" if pushed.ok else f"FAILED: {pushed.error}"))
        if not pushed.ok:
            outcome.failed.append(name)


def _sync_with_mirror(store: Store, account: AccountConfig, observer, quiet: bool, report: Callable[[str], None],
                      sync_options: dict):
    """One account's sync with its live Maildir mirror around it (mailsync.mirror.live: the scan
    records a client's changes before, the write puts the synced store into the Maildir after)."""
    from mailsync.mirror.live import sync_with_mirror
    from mailsync.sync.engine import sync_account

    result, mirrored = sync_with_mirror(store, account, lambda stage=None: sync_account(
                                            store, account, observer=observer, mirror_stage=stage, **sync_options),
                                        allow_mass_delete=bool(sync_options.get("allow_mass_delete")))
    # the sync's own summary line is out already: why the mirror failed or held deletions follows it
    if not result.ok and "Maildir mirror" in (result.error or ""):
        report(f"mailsync: {result.error}")
    for why in result.set_aside:
        if why.startswith("Maildir: "):
            report(f"mailsync: {account.name}: SET ASIDE: {why}")
    if not quiet and mirrored is not None:
        if mirrored.summary():
            report(f"mailsync: {account.name}: Maildir {account.mirror.maildir}: {mirrored.summary()}")
        for note in mirrored.notes:
            report(f"mailsync: {account.name}: note: Maildir: {note}")
    return result


def crm_step(config: Config, store: Store, *, quiet: bool = False, report: Callable[[str], None] = _stderr) -> list[str]:
    """The incremental extraction of what the syncs changed, then delivery. Returns ["crm"] when it
    failed (named through ``report``), else []."""
    from mailsync.crm.outbox import Worker
    from mailsync.crm.pipeline import Pipeline
    from mailsync.crm.settings import CrmSettings

    try:
        settings = CrmSettings.from_config(config)
        if not settings.enabled:
            return []
        result = Pipeline(store, settings).run()
        if not quiet:
            report(result.summary())
        if settings.sinks:
            delivery = Worker(store, settings).run()
            if not quiet:
                report(delivery.summary())
            if delivery.errors:
                for e in delivery.errors:
                    report(f"mailsync: error: {e}")
                return ["crm"]
    except MailsyncError as exc:
        report(f"mailsync: crm: error: {exc}")
        return ["crm"]
    return []
