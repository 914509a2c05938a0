"""The watch daemon's settings: daemon-wide ones (WatchSettings) and the push timing of one account.

Owns: their defaults and how an account's config becomes its Timing. Must not: run anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailsync.config.model import AccountConfig
from mailsync.push.backoff import CREDENTIALS, NETWORK, BackoffPolicy
from mailsync.push.health import HEARTBEAT
from mailsync.push.protocol import Timing


@dataclass(frozen=True)
class WatchSettings:
    """Daemon-wide settings (the per-account ones come from the config: watch, poll_interval,
    idle_refresh, max_connections). Seconds throughout."""

    local_poll: float = 0.2  # how often the store is asked for new local changes
    heartbeat: float = HEARTBEAT
    keepalive: float = 300.0  # probe a push connection after this long without a byte from the server
    response_timeout: float = 30.0  # an unanswered DONE/NOOP/command after this long: the connection is dead
    connect_timeout: float = 30.0
    backoff: BackoffPolicy = NETWORK
    auth_backoff: BackoffPolicy = CREDENTIALS
    sync_retry: BackoffPolicy = BackoffPolicy(initial=2.0, maximum=300.0)
    stable_after: float = 60.0  # a connection up this long resets its backoff
    sync_threads: int = 4  # syncs running at once (the store's connection pool allows a few more)
    reuse_connections: bool = True  # keep each account's sync connection open between syncs
    reuse_idle: float = 120.0  # ... and close it once it was idle this long (an idle account holds only push)
    shutdown_grace: float = 3.0  # running syncs get this long to reach a step boundary


DEFAULT_POLL_INTERVAL = 60.0
DEFAULT_IDLE_REFRESH = 25 * 60.0


def account_timing(account: AccountConfig, settings: WatchSettings) -> Timing:
    refresh = float(account.push.idle_refresh or DEFAULT_IDLE_REFRESH)
    return Timing(idle_refresh=refresh, keepalive=min(settings.keepalive, refresh),
                  response_timeout=settings.response_timeout,
                  poll_interval=float(account.push.poll_interval or DEFAULT_POLL_INTERVAL))


def watched(account: AccountConfig) -> bool:
    """`watch = false` leaves an account out of the daemon (`mailsync sync` still syncs it)."""
    return account.push.watch is not False
