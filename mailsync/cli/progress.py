"""Progress display for long syncs: a rich progress bar on stderr, or nothing.

Owns: how sync progress looks. Must not: influence the sync (it only observes).
"""

from __future__ import annotations

import sys

from mailsync.cli.safe import terminal_lines, terminal_text
from mailsync.sync.result import AccountResult, SyncObserver


class RichProgress(SyncObserver):
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        # The task counts messages; bytes ride along in a field, so no column mislabels one as the other.
        self.progress = Progress(TextColumn("[bold]{task.fields[account]}[/] {task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("messages  {task.fields[mb]:.1f} MB"),
                                 TimeRemainingColumn(), console=self.console, transient=True)
        self.tasks: dict[tuple[str, str], int] = {}
        self.mb: dict[tuple[str, str], float] = {}

    def __enter__(self) -> "RichProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def folder_started(self, account: str, folder: str, new: int) -> None:
        if new:
            from rich.markup import escape

            # the name is the server's: neither rich markup nor terminal sequences
            self.tasks[(account, folder)] = self.progress.add_task(
                escape(terminal_text(folder)), total=new, account=escape(terminal_text(account)), mb=0.0)

    def messages_stored(self, account: str, folder: str, count: int, nbytes: int) -> None:
        task = self.tasks.get((account, folder))
        if task is not None:
            self.mb[(account, folder)] = mb = self.mb.get((account, folder), 0.0) + nbytes / 1e6
            self.progress.update(task, advance=count, mb=mb)

    def messages_sent(self, account: str, label: str, count: int, nbytes: int) -> None:
        self.messages_stored(account, label, count, nbytes)

    def folder_done(self, account: str, folder: str) -> None:
        task = self.tasks.pop((account, folder), None)
        if task is not None:
            self.progress.remove_task(task)

    def account_done(self, result: AccountResult) -> None:
        self.console.print(terminal_lines(summary_line(result)), highlight=False, markup=False)


class PlainSummary(SyncObserver):
    """No live display (stderr is not a terminal); one line per account when it finishes."""

    def __enter__(self) -> "PlainSummary":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def account_done(self, result: AccountResult) -> None:
        print(terminal_lines(summary_line(result)), file=sys.stderr, flush=True)


class Quiet(PlainSummary):
    def account_done(self, result: AccountResult) -> None:
        if not result.ok:
            print(terminal_lines(f"{result.account}: FAILED: {result.error}"), file=sys.stderr, flush=True)
        for why in result.set_aside:
            print(terminal_lines(f"{result.account}: SET ASIDE: {why}"), file=sys.stderr, flush=True)


def summary_line(r: AccountResult) -> str:
    if not r.ok:
        return f"{r.account}: FAILED: {r.error}"
    mb = r.bytes_fetched / 1e6
    text = (f"{r.account}: ok: {r.folders} folders, {r.new_messages} new, {r.flag_changes} flag changes, "
            f"{r.expunged} expunged, {r.moves} moved, {r.pushed} local changes pushed, {mb:.1f} MB in "
            f"{r.seconds:.2f} s, {r.commands} IMAP commands after login")
    for note in r.notes:
        text += f"\n  note: {note}"
    for why in r.set_aside:
        text += f"\n  SET ASIDE: {why}"
    return text


class NewMailFolders(SyncObserver):
    """Passes every call on to ``shown`` (the display) and notes the folders where new messages
    were stored, for the hooks (mailsync.cli.hooks). Called from the sync's threads."""

    def __init__(self, shown: SyncObserver) -> None:
        self.shown = shown
        self._folders: dict[str, set[str]] = {}

    def __enter__(self) -> "NewMailFolders":  # the display's live part (mailsync.service.run_sync enters it)
        self.shown.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.shown.__exit__(*exc)

    def folders(self, account: str) -> set[str]:
        return set(self._folders.get(account, ()))

    def account_started(self, account: str) -> None:
        self.shown.account_started(account)

    def folder_started(self, account: str, folder: str, new: int) -> None:
        self.shown.folder_started(account, folder, new)

    def messages_stored(self, account: str, folder: str, count: int, nbytes: int) -> None:
        if count:
            self._folders.setdefault(account, set()).add(folder)
        self.shown.messages_stored(account, folder, count, nbytes)

    def messages_sent(self, account: str, label: str, count: int, nbytes: int) -> None:
        self.shown.messages_sent(account, label, count, nbytes)  # not new mail: no hook for it

    def folder_done(self, account: str, folder: str) -> None:
        self.shown.folder_done(account, folder)

    def account_done(self, result: AccountResult) -> None:
        self.shown.account_done(result)


def summary_json(results: list[AccountResult], failed: list[str], hook_failures: list[str]) -> dict:
    """`mailsync sync --json`: the summary line's figures per account, and the run's outcome."""
    accounts = [{"account": r.account, "ok": r.ok, "error": r.error, "folders": r.folders,
                 "new_messages": r.new_messages, "flag_changes": r.flag_changes, "expunged": r.expunged,
                 "moved": r.moves, "pushed": r.pushed, "conflicts": r.conflicts, "bytes_fetched": r.bytes_fetched,
                 "bodies_downloaded": r.bodies_downloaded, "commands": r.commands,
                 "seconds": round(r.seconds, 3), "notes": list(r.notes), "set_aside": list(r.set_aside)}
                for r in results]
    return {"ok": not failed, "failed": list(failed), "accounts": accounts, "hook_failures": list(hook_failures)}


class JsonSummary(PlainSummary):
    """--log-format json: one JSON log line per account when it finishes (event account_synced or
    account_failed, logger mailsync.summary), with the summary's figures as fields; with --quiet only
    the failures."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def account_done(self, result: AccountResult) -> None:
        import logging

        from mailsync.push.logs import event

        if self.quiet and result.ok:
            return
        fields = {k: v for k, v in summary_json([result], [], [])["accounts"][0].items() if k != "notes"}
        fields["notes"] = "; ".join(result.notes) or None
        log = logging.getLogger("mailsync.summary")
        log.setLevel(logging.INFO)  # shown like the text summary line, whatever -v says
        event(log, "account_synced" if result.ok else "account_failed",
              logging.INFO if result.ok else logging.ERROR, **fields)


def make_observer(quiet: bool, log_format: str = "text"):
    if log_format == "json":
        return JsonSummary(quiet)
    if quiet:
        return Quiet()
    if sys.stderr.isatty():
        return RichProgress()
    return PlainSummary()
