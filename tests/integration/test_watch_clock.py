"""Timers of the watch daemon on an injected clock, against the real Dovecot: the 25-minute IDLE
refresh and the reconnect backoff schedules (network and refused credentials) run in a second of
real time. The clock is mailsync.push.clock.ManualClock; sockets and Dovecot are real."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from dataclasses import replace

import pytest

from helpers import client_for
from mailsync.config.model import AccountConfig, SecretRef
from mailsync.push.backoff import BackoffPolicy
from mailsync.push.client import Credentials, PushClient
from mailsync.push.clock import ManualClock
from mailsync.push.daemon import WatchDaemon
from mailsync.push.settings import WatchSettings
from mailsync.push.listener import run_session
from mailsync.push.protocol import Mode, PushSession, Ready, SessionPlan, Timing, Wake
from mailsync.store.db import open_store
from twoway_support import account_for


async def until(predicate, timeout: float = 10.0, what: str = "the condition") -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def test_idle_is_refreshed_every_25_minutes_of_injected_time(dovecot_factory):
    server = dovecot_factory(remove_capabilities=("NOTIFY",))
    user = server.new_user(f"clk{secrets.token_hex(4)}", "pw")
    account = account_for(user, "acc")
    timing = Timing(idle_refresh=1500.0, keepalive=100_000.0, response_timeout=30.0, poll_interval=60.0)

    async def scenario() -> None:
        clock = ManualClock()
        client = await PushClient.open(account, Credentials(password=user.password), timeout=10)
        session = PushSession(SessionPlan(Mode.IDLE, folder="INBOX", condstore=True, list_status=True), timing)
        actions: list = []
        task = asyncio.create_task(run_session(client, session, clock, actions.append))
        try:
            await until(lambda: Ready(Mode.IDLE) in actions, what="IDLE to start")
            assert list(client.transcript)[-2:] == ['W1 EXAMINE "INBOX"', "W2 IDLE"]
            started = clock.now()
            for cycle in range(1, 4):  # 75 minutes of injected time
                await clock.advance(1499.0)
                assert "DONE" not in client.transcript, "refreshed too early"
                await clock.advance(1.0)  # 25 minutes after the IDLE began: DONE, then IDLE again
                await until(lambda: session.phase == "idling" and session.idle_since == clock.now(),
                            what=f"IDLE re-issued (cycle {cycle})")
                assert list(client.transcript)[-2:] == ["DONE", f"W{cycle + 2} IDLE"], list(client.transcript)
                assert clock.now() - started == pytest.approx(1500.0 * cycle)
                client.transcript.clear()
            # push still works on the refreshed IDLE
            other = client_for(user)
            other.append("INBOX", b"Subject: after refresh\r\n\r\nhi\r\n")
            other.logout()
            await until(lambda: any(isinstance(a, Wake) for a in actions), 3, "the EXISTS after the refreshes")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            client.abort()

    asyncio.run(scenario())


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def _schedule(daemon: WatchDaemon, clock: ManualClock, name: str, retries: int) -> list[float]:
    """Let `retries` reconnect delays pass on the injected clock; returns the delays seen."""
    await until(lambda: name in daemon.watchers, what="the daemon to start")
    w = daemon.watchers[name]
    for n in range(retries):
        await until(lambda: w.retry_at is not None and len(w.attempts) == n + 1, what=f"failure {n + 1}")
        await clock.advance(w.retry_at - clock.now())
    await until(lambda: len(w.attempts) == retries + 1, what="the last attempt")
    times = list(w.attempts)
    return [b - a for a, b in zip(times, times[1:])]


def test_reconnect_backoff_schedule_on_an_injected_clock(tmp_path):
    """A server that is down: retries after ~1, 2, 4, 8 s, then capped at 10 s, each jittered down by
    at most half; nothing waits in real time."""
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    account = AccountConfig(name="down", host="127.0.0.1", port=_closed_port(), tls="none", allow_plaintext=True,
                            username="nobody", password=SecretRef("literal", "x"))
    policy = BackoffPolicy(initial=1.0, maximum=10.0, multiplier=2.0, jitter=0.5)
    settings = WatchSettings(backoff=policy, local_poll=3600.0, heartbeat=3600.0)

    async def scenario() -> list[float]:
        clock = ManualClock(start=0.0)
        daemon = WatchDaemon(store, [account], settings=settings, clock=clock)
        task = asyncio.create_task(daemon.run())
        try:
            return await _schedule(daemon, clock, "down", 7)
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 10)

    delays = asyncio.run(scenario())
    store.dispose()
    for n, d in enumerate(delays):
        base = min(10.0, 2.0 ** n)
        assert base * 0.5 <= d <= base, (n, d, delays)
    assert delays[-1] <= 10.0 and delays[-2] >= 5.0  # reached the cap and stays there


def test_refused_credentials_are_retried_slowly(dovecot, tmp_path):
    """A wrong password: the account is marked failing with the reason (never the password) and
    retried on the slow schedule (1 minute, doubling), while a good account goes on."""
    good_user = dovecot.new_user(f"ok{secrets.token_hex(4)}", "pw-good")
    bad_user = dovecot.new_user(f"bad{secrets.token_hex(4)}", "pw-right")
    good = account_for(good_user, "good")
    bad = replace(account_for(bad_user, "bad"), password=SecretRef("literal", "pw-WRONG"))
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    settings = WatchSettings(auth_backoff=BackoffPolicy(initial=60.0, maximum=3600.0, jitter=0.5),
                             local_poll=3600.0, heartbeat=3600.0)

    async def scenario():
        clock = ManualClock(start=0.0)
        daemon = WatchDaemon(store, [good, bad], settings=settings, clock=clock)
        task = asyncio.create_task(daemon.run())
        try:
            # The good account connects (and syncs) before the injected clock jumps minutes ahead: a
            # jump in the middle of its login would fire its response timeout, and its reconnect
            # would then wait on a clock this test no longer moves.
            await until(lambda: "good" in daemon.watchers and daemon.watchers["good"].health.connected,
                        what="the good account to connect")
            delays = await _schedule(daemon, clock, "bad", 3)
            g, b = daemon.watchers["good"], daemon.watchers["bad"]
            return delays, b.health.failing, g.health.connected  # still connected after the bad one's retries
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 10)

    delays, failing, good_connected = asyncio.run(scenario())
    store.dispose()
    assert good_connected
    assert failing and "refused the login" in failing and "pw-WRONG" not in failing
    for n, d in enumerate(delays):
        base = 60.0 * 2 ** n
        assert base * 0.5 <= d <= base, (n, d, delays)
