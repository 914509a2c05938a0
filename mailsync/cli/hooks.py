"""Hooks: ``post_sync`` and ``on_new_mail`` shell commands, run after a sync that changed something.

Owns: deciding which hook runs for an account (the account's own key, else the one in ``[hooks]``),
the environment it gets, running it, and logging its failure. Used by ``mailsync sync`` (with each
account's result) and by ``mailsync watch`` (WatchHooks reads the runs the daemon recorded).
Must not: fail or slow down a sync beyond the hook's own run time: a hook that cannot start, exits
non-zero or outlives HOOK_TIMEOUT is logged on stderr and the sync's outcome stays what it was.

What a hook sees in its environment (besides the caller's):
  MAILSYNC_HOOK           post_sync | on_new_mail
  MAILSYNC_ACCOUNT        the account's name
  MAILSYNC_NEW            messages downloaded;  MAILSYNC_FLAG_CHANGES, MAILSYNC_EXPUNGED,
  MAILSYNC_MOVED          MAILSYNC_PUSHED (local changes sent to the server): the other counts
  MAILSYNC_FOLDERS        the folders where new mail arrived, one per line (decoded names)
  MAILSYNC_CONFIG         the config file in use
Its standard output and error go to mailsync's stderr: stdout is for machine-readable output.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailsync.config.model import HookSettings

log = logging.getLogger("mailsync.hooks")

HOOK_TIMEOUT = 300.0  # seconds; a hook still running then is killed and logged
COUNTS = ("new", "flag_changes", "expunged", "moved", "pushed")


@dataclass(frozen=True)
class SyncChange:
    """What one account's sync changed, as a hook is told."""

    account: str
    new: int = 0
    flag_changes: int = 0
    expunged: int = 0
    moved: int = 0
    pushed: int = 0
    folders: tuple[str, ...] = field(default=())  # where new mail arrived

    @property
    def changed(self) -> bool:
        return any(getattr(self, name) for name in COUNTS)

    @classmethod
    def from_result(cls, result, folders: Iterable[str] = ()) -> "SyncChange":
        """From mailsync.sync.engine.AccountResult (or a SyncRun row: the same count names)."""
        return cls(account=result.account, new=result.new_messages, flag_changes=result.flag_changes,
                   expunged=result.expunged, moved=result.moves, pushed=result.pushed,
                   folders=tuple(sorted(set(folders))))


def hooks_for(config, account_name: str) -> dict[str, str]:
    """{hook name: command} for an account: its own keys, else the [hooks] table's."""
    own = HookSettings()
    for acc in config.accounts:
        if acc.name == account_name:
            own = acc.hooks
    commands = {name: getattr(own, name) or config.hooks.get(name) for name in ("post_sync", "on_new_mail")}
    return {name: command for name, command in commands.items() if command}


def hook_environment(change: SyncChange, hook: str, config_path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "MAILSYNC_HOOK": hook,
        "MAILSYNC_ACCOUNT": change.account,
        "MAILSYNC_NEW": str(change.new),
        "MAILSYNC_FLAG_CHANGES": str(change.flag_changes),
        "MAILSYNC_EXPUNGED": str(change.expunged),
        "MAILSYNC_MOVED": str(change.moved),
        "MAILSYNC_PUSHED": str(change.pushed),
        "MAILSYNC_FOLDERS": "\n".join(change.folders),
    })
    if config_path is not None:
        env["MAILSYNC_CONFIG"] = str(config_path)
    return env


def due_hooks(config, change: SyncChange) -> list[tuple[str, str]]:
    """(hook, command) pairs to run for this change, in order: on_new_mail first, then post_sync."""
    if not change.changed:
        return []
    hooks = hooks_for(config, change.account)
    out = []
    if change.new and "on_new_mail" in hooks:
        out.append(("on_new_mail", hooks["on_new_mail"]))
    if "post_sync" in hooks:
        out.append(("post_sync", hooks["post_sync"]))
    return out


def run_hooks(config, change: SyncChange, *, timeout: float = HOOK_TIMEOUT) -> list[str]:
    """Run the hooks due for ``change``; returns a message per hook that failed (also logged)."""
    failures = []
    for hook, command in due_hooks(config, change):
        problem = _run_one(command, hook_environment(change, hook, config.path), timeout)
        if problem:
            message = f"account '{change.account}': {hook} hook {command!r} {problem}; the sync itself succeeded"
            log.warning("%s", message)
            failures.append(message)
    return failures


def _run_one(command: str, env: dict[str, str], timeout: float) -> str | None:
    import subprocess  # here: imported only by a sync that runs a hook

    sys.stderr.flush()
    try:
        proc = subprocess.run(command, shell=True, env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(),
                              stderr=sys.stderr.fileno(), timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        return f"was still running after {timeout:g} s and was stopped"
    except OSError as exc:
        return f"could not be started: {exc.strerror or exc}"
    if proc.returncode == 127:
        return "failed: command not found (exit 127); check the command and PATH"
    if proc.returncode != 0:
        return f"failed with exit status {proc.returncode}" if proc.returncode > 0 else \
            f"was killed by signal {-proc.returncode}"
    return None


# -- the watch daemon -------------------------------------------------------------------------


def folder_marks(session, account_ids: Iterable[int]) -> dict[tuple[int, str], int]:
    """UIDNEXT of every folder of these accounts, as the store holds it."""
    from sqlalchemy import select

    from mailsync.store import tables

    f = tables.folders.c
    rows = session.execute(select(f.account_id, f.name, f.uidnext).where(f.account_id.in_(list(account_ids))))
    return {(acc, name): uidnext or 0 for acc, name, uidnext in rows}


class WatchHooks:
    """The daemon's after-sync callback: for each sync run recorded since the last call that
    succeeded and changed something, run the account's hooks. New mail's folders are those whose
    UIDNEXT rose since the previous call (or the daemon's start)."""

    def __init__(self, config, store) -> None:
        from mailsync.store import repositories as repo
        from mailsync.store.uow import UnitOfWork

        self.config = config
        names = {a.name for a in config.accounts if hooks_for(config, a.name)}
        with UnitOfWork(store) as uow:
            rows = [a for a in repo.list_accounts(uow.session) if a.name in names]
            self.accounts = {a.id: a.name for a in rows}
            self.seen = {a.id: (r.id if (r := repo.last_run(uow.session, a.id)) else 0) for a in rows}
            self.marks = folder_marks(uow.session, self.accounts)
        self.names = names
        # Under `watch --worker`: the names of the accounts this worker holds now. Runs of the others
        # are another worker's, whose own hooks run them: they are passed over (marked seen), so
        # that a hook runs once per sync however many workers share the accounts.
        self.mine = None

    def __call__(self, store) -> None:
        from sqlalchemy import select

        from mailsync.store import repositories as repo
        from mailsync.store.models import SyncRun
        from mailsync.store.uow import UnitOfWork

        mine = set(self.mine()) if self.mine is not None else None
        with UnitOfWork(store) as uow:
            s = uow.session
            for account in repo.list_accounts(s):  # accounts synced for the first time since the start
                if account.name in self.names and account.id not in self.accounts:
                    self.accounts[account.id], self.seen[account.id] = account.name, 0
            r = SyncRun
            runs = s.execute(select(r.id, r.account_id, r.status, r.finished_at, r.new_messages, r.flag_changes,
                                    r.expunged, r.moves, r.pushed)
                             .where(r.account_id.in_(list(self.accounts)), r.id > min(self.seen.values(), default=0))
                             .order_by(r.id)).all()
            marks = folder_marks(s, self.accounts)
        changes = []
        for run_id, account_id, status, finished, new, flag_changes, expunged, moves, pushed in runs:
            if run_id <= self.seen.get(account_id, 0) or finished is None:
                continue
            self.seen[account_id] = run_id
            if status != "ok" or (mine is not None and self.accounts[account_id] not in mine):
                continue
            folders = [name for (acc, name), uidnext in marks.items()
                       if acc == account_id and uidnext > self.marks.get((acc, name), 0)]
            changes.append(SyncChange(account=self.accounts[account_id], new=new, flag_changes=flag_changes,
                                      expunged=expunged, moved=moves, pushed=pushed, folders=tuple(sorted(folders))))
        self.marks = marks
        for change in changes:
            run_hooks(self.config, change)
