"""Prometheus metrics of the watch daemon (prometheus-client), served on 127.0.0.1 only.

Owns: the metric names and labels, and the HTTP endpoint. Must not: decide anything; the daemon
calls the record_* methods. Each daemon has its own registry (tests run several in one process).

  mailsync_syncs_completed_total{account}          syncs that succeeded
  mailsync_syncs_failed_total{account}             syncs that failed
  mailsync_messages_applied_total{account}         new messages stored
  mailsync_flag_changes_applied_total{account}     server flag changes stored
  mailsync_local_changes_pushed_total{account}     local changes settled on the server
  mailsync_push_events_total{account,kind}         wake-ups: push, poll, local, catchup, retry
  mailsync_reconnects_total{account}               push connections lost and retried
  mailsync_sync_duration_seconds                   histogram of sync durations
  mailsync_connected{account}                      1 while every push connection is live
  mailsync_account_failing{account}                1 while the credentials are refused
  mailsync_seconds_since_last_sync{account}        since the last successful sync (absent before one)
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily


class _SinceLastSync:
    def __init__(self, last_sync: Callable[[], dict[str, float]]) -> None:
        self._last_sync = last_sync

    def collect(self):
        g = GaugeMetricFamily("mailsync_seconds_since_last_sync",
                              "Seconds since the last successful sync of the account", labels=["account"])
        now = time.monotonic()
        for account, when in sorted(self._last_sync().items()):
            g.add_metric([account], max(0.0, now - when))
        yield g


class Metrics:
    def __init__(self, last_sync: Callable[[], dict[str, float]] = dict) -> None:
        r = self.registry = CollectorRegistry()
        self.syncs_completed = Counter("mailsync_syncs_completed", "Syncs that succeeded", ["account"], registry=r)
        self.syncs_failed = Counter("mailsync_syncs_failed", "Syncs that failed", ["account"], registry=r)
        self.messages = Counter("mailsync_messages_applied", "New messages stored", ["account"], registry=r)
        self.flags = Counter("mailsync_flag_changes_applied", "Server flag changes stored", ["account"], registry=r)
        self.pushed = Counter("mailsync_local_changes_pushed", "Local changes settled on the server", ["account"],
                              registry=r)
        self.events = Counter("mailsync_push_events", "Wake-ups of the account's sync", ["account", "kind"],
                              registry=r)
        self.reconnects = Counter("mailsync_reconnects", "Push connections lost and retried", ["account"], registry=r)
        self.duration = Histogram("mailsync_sync_duration_seconds", "Duration of one delta sync", registry=r,
                                  buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        self.connected = Gauge("mailsync_connected", "1 while every push connection is live", ["account"], registry=r)
        self.failing = Gauge("mailsync_account_failing", "1 while the account's credentials are refused", ["account"],
                             registry=r)
        r.register(_SinceLastSync(last_sync))
        self._server = None

    def add_account(self, account: str) -> None:
        """Create the account's series at 0, so dashboards see it before anything happens."""
        for counter in (self.syncs_completed, self.syncs_failed, self.messages, self.flags, self.pushed,
                        self.reconnects):
            counter.labels(account)
        self.connected.labels(account).set(0)
        self.failing.labels(account).set(0)

    def record_sync(self, account: str, result) -> None:
        (self.syncs_completed if result.ok else self.syncs_failed).labels(account).inc()
        self.messages.labels(account).inc(result.new_messages)
        self.flags.labels(account).inc(result.flag_changes)
        self.pushed.labels(account).inc(result.pushed)
        self.duration.observe(result.seconds)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics on addr:port (0 picks a free port); returns the port."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        self._server = server
        return server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
