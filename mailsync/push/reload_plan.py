"""What a changed config asks of a running watch daemon: which accounts to start, stop or restart.

Owns: choosing the accounts a daemon watches from a config (the --account names, watch = false),
comparing them with those it watches now (ReloadPlan), and refusing a new config the daemon cannot
take while it runs (another store). Pure: configs in, plan out. Must not: read files, or start or
stop anything (mailsync.push.reload and the daemon do).

An account is the same account when its name is; one whose settings changed in any way (host,
password source, folders, push settings, ...) is restarted: its connections closed and opened again
with the new settings, its next sync run with them. Accounts whose settings did not change are left
alone: their connections stay up.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailsync.config.model import AccountConfig, Config
from mailsync.errors import ConfigError
from mailsync.push.settings import watched


@dataclass(frozen=True)
class ReloadPlan:
    add: tuple[AccountConfig, ...] = ()  # new accounts: start watching
    remove: tuple[str, ...] = ()  # gone (or watch = false now): stop watching, close the connections
    restart: tuple[AccountConfig, ...] = ()  # changed: stop, then start with the new settings
    unchanged: tuple[str, ...] = ()  # left running as they are

    @property
    def changes(self) -> bool:
        return bool(self.add or self.remove or self.restart)

    def summary(self) -> dict[str, object]:
        """For the log line: counts, and the names (comma-separated, cut after 20)."""
        def names(xs: Iterable[str]) -> str:
            xs = list(xs)
            return ",".join(xs[:20]) + (f",... ({len(xs) - 20} more)" if len(xs) > 20 else "")

        return {"added": names(a.name for a in self.add), "removed": names(self.remove),
                "restarted": names(a.name for a in self.restart), "unchanged": len(self.unchanged)}


def watched_accounts(config: Config, names: Sequence[str] = ()) -> list[AccountConfig]:
    """The accounts of ``config`` a daemon watches: all, or those named (--account), without the
    ones with watch = false. A named account missing from the config is simply not watched (at
    start the CLI refuses it; on a reload it was removed)."""
    return [a for a in config.accounts if (not names or a.name in names) and watched(a)]


def check_reloadable(old: Config, new: Config) -> None:
    """ConfigError when ``new`` cannot replace ``old`` in a running daemon."""
    if new.store.url != old.store.url:
        raise ConfigError(f"{new.path}: [store] url changed; a running `mailsync watch` keeps the store it "
                          "started with",
                          hint="restart mailsync watch to use the new store (the edit is not applied until then)")


def plan_reload(current: Sequence[AccountConfig], new: Sequence[AccountConfig]) -> ReloadPlan:
    """From the accounts watched now to those of the new config."""
    now = {a.name: a for a in current}
    later = {a.name: a for a in new}
    return ReloadPlan(
        add=tuple(a for a in new if a.name not in now),
        remove=tuple(a.name for a in current if a.name not in later),
        restart=tuple(a for a in new if a.name in now and now[a.name] != a),
        unchanged=tuple(a.name for a in new if a.name in now and now[a.name] == a))
