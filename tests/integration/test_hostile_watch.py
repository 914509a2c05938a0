"""The watch daemon with a misbehaving server (tests/hostile_server.py) beside a healthy Dovecot
account: the hostile server's lies and faults fail at most its own account, the daemon keeps
serving the Dovecot account within its usual latency, and once the fault is over the hostile
account's store holds what an honest server holds (or, for a mass deletion, holds it back)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace

import pytest

from hostile_server import HostileServer
from hostile_support import CAPABILITIES, account, cut_after, fill, folder_state, hide_in_listings, lied, msg, \
    phantom, stored, truth
from mailsync.changes import LocalChanges
from mailsync.push.backoff import BackoffPolicy
from throttle_support import MS_THROTTLED, throttled_after
from twoway_support import account_for
from watch_support import FAST, OtherClient, RunningDaemon, message, stored_flags, wait_until

SETTINGS = replace(FAST, sync_retry=BackoffPolicy(initial=0.2, maximum=1.0))
BODY_FETCH = r"^UID FETCH \S+ \(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK\[\]"


def _listing_gap(srv, store):
    srv.expunge("INBOX", {7})
    hide_in_listings(srv, {3, 4})


def _mass_deletion(srv, store):
    srv.expunge("INBOX", range(2, 11))


def _lying_appenduid(srv, store):
    validity = srv.folders[b"INBOX"].uidvalidity
    srv.script(r"^APPEND", lambda s, tag, cmd: s.honest(tag, cmd, appenduid=(validity, 3)))
    LocalChanges(store).append("hostile", "INBOX", msg(50), flags=["\\Seen"])


def _unasked_fetch(srv, store):
    srv.script(BODY_FETCH, lambda s, tag, cmd: s.honest(tag, cmd, extra=phantom(3, 77, msg(77))))
    srv.add_message("INBOX", msg(11))


def _malformed(srv, store, times=1):
    srv.script(BODY_FETCH, b"* 5 FETCH (UID 5 FLAGS (\\Seen INTERNALDATE )))(\r\n{tag} OK done\r\n", times=times)
    srv.add_message("INBOX", msg(11))


def _cut_mid_fetch(srv, store):
    srv.script(BODY_FETCH, cut_after(2))
    for i in range(11, 16):
        srv.add_message("INBOX", msg(i))


def _throttled_mid_fetch(srv, store):  # Microsoft 365's answer: the daemon retries after the suggested wait
    srv.script(BODY_FETCH, throttled_after(2, MS_THROTTLED % 500))
    for i in range(11, 16):
        srv.add_message("INBOX", msg(i))


CASES = {
    "listing-gap": _listing_gap,
    "mass-deletion": _mass_deletion,
    "lying-appenduid": _lying_appenduid,
    "unasked-fetch": _unasked_fetch,
    "malformed": _malformed,
    "malformed-every-time": lambda srv, store: _malformed(srv, store, times=None),
    "cut-mid-fetch": _cut_mid_fetch,
    "throttled-mid-fetch": _throttled_mid_fetch,
}


@pytest.mark.dovecot
@pytest.mark.parametrize("variant", ["plain", "qresync"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_server_fails_only_its_account(dovecot, store, case, variant):
    user = dovecot.new_user(f"hw{secrets.token_hex(4)}", "pw-" + secrets.token_hex(4))
    other = OtherClient(user)
    with HostileServer(capabilities=CAPABILITIES[variant]) as srv:
        srv.add_folder("INBOX")
        fill(srv, 10)
        hostile = account(srv, name="hostile", extra={"poll_interval": 0.3})
        honest = account_for(user, "honest")
        try:
            with RunningDaemon(store, [honest, hostile], settings=SETTINGS) as d:
                d.wait_connected()
                before = stored(store, account="hostile")
                assert before == truth(srv)
                CASES[case](srv, store)
                # the Dovecot account is served as usual, whatever the other server does
                for n in range(3):
                    raw, mid = message(n, "honest")
                    other.append("INBOX", raw)
                    wait_until(lambda: stored_flags(store, "honest", mid) is not None, 3.0,
                               f"{case}: message {n} of the healthy account")
                if case == "mass-deletion":  # held, shown, nothing deleted
                    wait_until(lambda: folder_state(store, account="hostile")[0] == "held", 10, "the deletions to be held")
                    assert stored(store, account="hostile") == before
                elif case == "malformed-every-time":  # failing, with the reason, and nothing stored wrong
                    w = d.watcher("hostile")
                    wait_until(lambda: w.health.last_error and "'INBOX'" in w.health.last_error, 10,
                               "the failure to be reported")
                    assert "account 'hostile'" in w.health.last_error, w.health.last_error
                    assert stored(store, account="hostile") == before
                    assert d.watcher("honest").health.connected
                else:  # the hostile account converges on what the server really holds
                    wait_until(lambda: stored(store, account="hostile") == truth(srv), 15,
                               f"{case}: the store to hold what the server holds")
                    assert lied(srv), "the scripted fault was never met"
                    if case == "lying-appenduid":
                        assert stored(store, account="hostile")[11][1] == hashlib.sha256(msg(50)).hexdigest()
                        assert stored(store, account="hostile")[3] == before[3]
        finally:
            other.close()
