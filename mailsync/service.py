"""Sync, then CRM: one run over the selected accounts followed by the CRM step, for ``mailsync sync``
and the watch daemon alike.

Owns: the order of a run -- each account's sync, what runs after a clean one (the CLI's hooks), then,
when the config has a ``[crm]`` table, the incremental CRM extraction of what the syncs changed and
the delivery of its outbox -- and which failures the run reports (accounts by name, "crm").
Must not: parse arguments, choose exit codes or print a sync summary (mailsync.cli does), or hold
sync or CRM logic (mailsync.sync.engine, mailsync.crm.pipeline and mailsync.crm.outbox do).
"""

from __future__ import annotations

import time
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
             channels_push: bool = True, wait_throttled: bool = True, **sync_options) -> SyncOutcome:
    """Sync ``accounts`` (default: every account of ``config``) one after the other, then run the CRM
    step (:func:`crm_step`) when ``config`` has a [crm] table.

    ``observer`` sees every sync (mailsync.sync.engine.SyncObserver); when it is also a context
    manager (a progress display), it is entered around the syncs and left before the CRM step.
    ``after_account(result)`` runs after each clean sync (ok, nothing set aside) and returns what
    failed in it. ``sync_options`` go to each sync (connect, release, should_stop, allow_mass_delete).
    Channels ([[channel]]) run after the accounts they join (see _run_channels); with
    ``channels_push`` False (the watch daemon), a channel runs after its source's sync and only
    queues its changes in the destination's journal, which wakes the destination's own sync.
    An account the server throttles (mailsync.errors.Throttled) is synced again once its wait is
    over, after the other accounts, so that it never holds them up (``wait_throttled``; the watch
    daemon schedules the retry itself): when the wait is at most its ``throttle_max_wait``, up to
    MAX_THROTTLED_RUNS times; the resumed sync skips what was committed.
    The CRM step is skipped once ``should_stop()`` says so, and, without ``crm_after_failure``, when
    no sync succeeded; it runs inside ``crm_lock``; ``on_crm_error`` is handed an unexpected
    exception of the CRM step instead of letting it propagate (a MailsyncError is reported through
    ``report`` as "crm" failing either way).
    """
    from mailsync.sync.engine import sync_account

    outcome = SyncOutcome()
    selected = list(config.accounts if accounts is None and config is not None else accounts or ())
    display = observer if isinstance(observer, AbstractContextManager) else nullcontext()

    def sync_one(account: AccountConfig):
        if account.mirror.maildir is None:
            return sync_account(store, account, observer=observer, **sync_options)
        return _sync_with_mirror(store, account, observer, quiet, report, sync_options)

    def settle(result) -> None:
        if not result.ok or result.set_aside:  # a folder set aside is not a clean sync either
            outcome.failed.append(result.account)
        elif after_account is not None:  # e.g. hooks: a failing one is reported, never fails the sync
            outcome.hook_failures += after_account(result)

    with display:
        throttled: list[tuple[int, AccountConfig]] = []  # waited for once the others are done
        for account in selected:
            result = sync_one(account)
            outcome.results.append(result)
            if wait_throttled and _may_wait(account, result):
                throttled.append((len(outcome.results) - 1, account))
            else:
                settle(result)
        for index in _resume_throttled(throttled, outcome, sync_one, quiet, report, sync_options.get("should_stop")):
            settle(outcome.results[index])
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


MAX_THROTTLED_RUNS = 8  # syncs of one account in one run_sync, throttled ones included


def _may_wait(account: AccountConfig, result) -> bool:
    """Is ``result`` a throttled sync whose wait is short enough to wait for in this run?"""
    until = getattr(result, "throttled_until", None)
    return until is not None and until - time.time() <= account.throttle_max_wait


def _resume_throttled(throttled: list[tuple[int, AccountConfig]], outcome: SyncOutcome, sync_one, quiet: bool,
                      report: Callable[[str], None], should_stop) -> list[int]:
    """Sync each throttled account again once its wait is over, the soonest first, until it is not
    throttled or may not wait (again); its result replaces the throttled one. Returns the indexes
    of the results it settled (all of ``throttled``)."""
    runs = {index: 1 for index, _ in throttled}
    waiting = list(throttled)
    settled: list[int] = []
    while waiting:
        waiting.sort(key=lambda pair: outcome.results[pair[0]].throttled_until)
        index, account = waiting.pop(0)
        result = outcome.results[index]
        delay = result.throttled_until - time.time()
        if not quiet:
            report(f"mailsync: {account.name}: throttled by the server; resuming in {max(delay, 0):.1f} s")
        if not _sleep_until(result.throttled_until, should_stop):
            settled.append(index)
            continue
        result = outcome.results[index] = sync_one(account)
        runs[index] += 1
        if runs[index] < MAX_THROTTLED_RUNS and _may_wait(account, result):
            waiting.append((index, account))
        else:
            settled.append(index)
    return settled


def _sleep_until(when: float, should_stop) -> bool:
    """Sleep until the Unix time ``when``; False when ``should_stop()`` said so first."""
    while True:
        left = when - time.time()
        if should_stop is not None and should_stop():
            return False
        if left <= 0:
            return True
        time.sleep(min(left, 0.2))


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
        # a two-way channel runs after either of its accounts' sync (changes come from both sides)
        either = channel.mode == "two-way" and bool({channel.source, channel.dest} & names)
        if not ({channel.source, channel.dest} <= names if push else channel.source in names or either):
            continue
        name = f"channel {channel.name}"
        if not push:
            if not {channel.source, channel.dest} & set(outcome.failed):
                try:
                    ran = run_channel(store, channel, allow_mass_delete=bool(sync_options.get("allow_mass_delete")))
                    outcome.channels.append(ran)
                    if ran.held:
                        import logging

                        logging.getLogger("mailsync.channel").warning("channel %s: %s", channel.name, ran.summary())
                except MailsyncError as exc:  # the destination never synced yet, say: the next run tries again
                    import logging

                    logging.getLogger("mailsync.channel").warning("%s", exc)
                except Exception:  # a bug here must not stop the account's syncs: logged, and the next run tries again
                    import logging

                    logging.getLogger("mailsync.channel").exception("channel %s failed", channel.name)
            continue
        if channel.source in outcome.failed or channel.dest in outcome.failed:
            report(f"mailsync: {name}: skipped, as {channel.source} or {channel.dest} did not sync cleanly")
            outcome.failed.append(name)
            continue
        try:
            ran = run_channel(store, channel, allow_mass_delete=bool(sync_options.get("allow_mass_delete")))
        except MailsyncError as exc:
            report(f"mailsync: {exc}")
            outcome.failed.append(name)
            continue
        outcome.channels.append(ran)
        if ran.held:  # told whatever --quiet says, and the run fails until they are let through or undone
            report(f"mailsync: {name}: {ran.summary()}")
            outcome.failed.append(name)
        sides = [side for side, queued in ((channel.dest, ran.queued), (channel.source, ran.queued_source)) if queued]
        if not sides:
            if not quiet and ran.paired:
                report(f"mailsync: {name}: {ran.summary()}")
            continue
        sent = []
        for side in sides:
            pushed = sync_account(store, config.account(side), observer=observer, **sync_options)
            sent.append(f"{side}: " + (f"{pushed.pushed} change(s) sent" if pushed.ok else f"FAILED: {pushed.error}"))
            if not pushed.ok and name not in outcome.failed:
                outcome.failed.append(name)
        if not quiet or (name in outcome.failed and not ran.held):
            report(f"mailsync: {name}: {ran.summary()}; " + "; ".join(sent))


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
