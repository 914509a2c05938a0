"""The watch daemon (`mailsync watch`): push where the server offers it, polling where it does not,
and a delta sync of the account on every wake-up.

Owns: everything that runs while the daemon runs -- per-account push connections on asyncio
(NOTIFY, IDLE, STATUS polling), their reconnect policy, scheduling of the synchronous delta sync in
a thread pool, the per-account connection budget, noticing local changes, the daemon's health rows
in the store, its metrics and structured logs, and shutdown.
Must not: decide what a sync changes (mailsync.sync does, and the daemon only asks it to run), trust
pushed data as the state (a push event only says "look again"), or import the CLI.

Modules, from pure to I/O:
  clock.py     the injectable clock (real and manual) every timer goes through
  backoff.py   jittered exponential backoff schedules (pure)
  protocol.py  the push connection's rules: events in, actions out (pure, no I/O)
  client.py    one IMAP connection over asyncio streams (thin: bytes <-> ResponseParser)
  listener.py  runs a protocol session over a client connection
  daemon.py    accounts, wake-ups, syncs, budget, local changes, health, shutdown
  health.py    the daemon's per-account state (watch_state rows) and reading it back
  metrics.py   Prometheus metrics
  logs.py      one-line structured logs (text or JSON) that never carry a secret
"""
