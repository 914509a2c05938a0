"""The push connection's rules (mailsync.push.protocol), driven by hand-made events and times: the
25-minute IDLE refresh, keepalive probes, answer timeouts and polling are checked without waiting."""

from __future__ import annotations

import random

import pytest

from mailsync.imap.responses import ResponseParser
from mailsync.push.backoff import CREDENTIALS, NETWORK, Backoff, BackoffPolicy
from mailsync.imap.commands import RemoteFolder
from mailsync.push.protocol import (Fail, Mode, PushSession, Ready, Refused, Send, SessionPlan, Timing,
                                    Wake, choose_mode, plan_sessions, watched_folders)

T = Timing(idle_refresh=1500.0, keepalive=300.0, response_timeout=30.0, poll_interval=60.0)


def ev(line: bytes):
    """One parsed server response."""
    (out,) = ResponseParser().feed(line if line.endswith(b"\r\n") else line + b"\r\n")
    return out


def sent(actions) -> list[bytes]:
    return [a.data for a in actions if isinstance(a, Send)]


def tag_of(data: bytes) -> bytes:
    return data.split(b" ", 1)[0]


def answer(session, actions, now, status=b"OK"):
    """Answer every command in `actions` with a tagged `status`; return the actions that follow."""
    out = []
    for data in sent(actions):
        for line in data.splitlines():
            if line == b"DONE":
                continue
            out += session.receive(ev(tag_of(line) + b" " + status + b" done"), now)
    return out


# -- planning -------------------------------------------------------------------------------------

LISTING = [RemoteFolder("INBOX", ("\\HasNoChildren",)), RemoteFolder("Sent", ("\\Sent",)),
           RemoteFolder("Archive", ()), RemoteFolder("Junk", ("\\Junk",)), RemoteFolder("Parent", ("\\Noselect",)),
           RemoteFolder("Entw&APw-rfe", ())]


@pytest.mark.parametrize("caps, refused, mode", [
    (("IMAP4rev1", "NOTIFY", "IDLE"), (), Mode.NOTIFY),
    (("IMAP4rev1", "IDLE"), (), Mode.IDLE),
    (("IMAP4rev1",), (), Mode.POLL),
    (("notify", "idle"), ("NOTIFY",), Mode.IDLE),  # advertised but refused: not tried again
    (("NOTIFY", "IDLE"), ("NOTIFY", "IDLE"), Mode.POLL),
])
def test_choose_mode(caps, refused, mode):
    assert choose_mode(caps, refused=refused) is mode


@pytest.mark.parametrize("watch, include, exclude, expected", [
    (None, ("*",), (), ["INBOX", "Sent"]),  # default: INBOX and the \Sent folder
    (True, ("*",), (), ["INBOX", "Sent"]),
    (("inbox", "Entwürfe", "Nope", "Parent"), ("*",), (), ["INBOX", "Entw&APw-rfe"]),  # missing, \Noselect: left out
    (None, ("*",), ("Sent",), ["INBOX"]),  # a folder the account does not sync is not watched
    (False, ("*",), (), []),
])
def test_watched_folders(watch, include, exclude, expected):
    assert watched_folders(LISTING, watch, include, exclude) == expected


def test_plan_sessions_within_the_budget():
    caps = ("IDLE", "CONDSTORE", "LIST-STATUS")
    plans = plan_sessions(Mode.IDLE, caps, LISTING, watch=None, budget=3)
    assert [(p.mode, p.folder, p.poll) for p in plans] == [(Mode.IDLE, "INBOX", True), (Mode.IDLE, "Sent", False)]
    assert plans[0].skip == {"INBOX", "Sent"} and plans[0].condstore and plans[0].list_status
    # budget 1: INBOX idles, Sent is polled with the rest
    (only,) = plan_sessions(Mode.IDLE, caps, LISTING, watch=None, budget=1)
    assert only.folder == "INBOX" and only.skip == {"INBOX"} and only.wanted("Sent")
    # budget 0 (max_connections = 1): no push connection, the sync polls
    assert plan_sessions(Mode.NOTIFY, caps, LISTING, watch=None, budget=0) == []
    (n,) = plan_sessions(Mode.NOTIFY, ("NOTIFY", "CONDSTORE"), [], watch=None, budget=3)
    assert n.mode is Mode.NOTIFY and not n.poll
    (n,) = plan_sessions(Mode.NOTIFY, ("NOTIFY",), [], watch=None, budget=3)
    assert n.poll  # no CONDSTORE: flag changes elsewhere are not pushed, so a periodic sync
    (p,) = plan_sessions(Mode.IDLE, caps, LISTING, watch=("Nope",), budget=3)
    assert p.mode is Mode.POLL and p.poll  # nothing to idle on: poll


def test_plan_sessions_on_gmail_leave_room_for_other_clients():
    """Gmail allows 15 connections per account for all clients together: however many
    max_connections allows, push on an X-GM-EXT-1 server keeps under GMAIL_PUSH_BUDGET."""
    from mailsync.push.protocol import GMAIL_PUSH_BUDGET

    labels = [RemoteFolder(f"Label{i}", flags=("\\HasNoChildren",)) for i in range(20)]
    caps = ("IDLE", "CONDSTORE", "X-GM-EXT-1")
    watch = [f.name for f in labels]
    plans = plan_sessions(Mode.IDLE, caps, labels, watch=watch, budget=14)  # max_connections = 15
    assert plans and len(plans) == GMAIL_PUSH_BUDGET and GMAIL_PUSH_BUDGET + 1 <= 5
    assert len(plan_sessions(Mode.IDLE, caps[:2], labels, watch=watch, budget=14)) == 14  # not Gmail: all of it


def test_wanted_follows_the_account_patterns():
    plan = SessionPlan(Mode.POLL, include=("*",), exclude=("Junk", "Archive/*"), skip=frozenset({"INBOX"}))
    assert plan.wanted("Sent") and plan.wanted("Entw&APw-rfe")
    assert not plan.wanted("Junk") and not plan.wanted("Archive/2024") and not plan.wanted("INBOX")


# -- NOTIFY ---------------------------------------------------------------------------------------


def notify_session(condstore=True, **kw):
    s = PushSession(SessionPlan(Mode.NOTIFY, condstore=condstore, poll=not condstore, exclude=("Junk",), **kw), T)
    first = s.start(0.0)
    return s, first


def notify_ready(s, first):
    """ENABLE, NOTIFY SET STATUS (baseline counters), LIST (baseline names) -> Ready."""
    nxt = s.receive(ev(b"* ENABLED CONDSTORE"), 0.01) + s.receive(ev(b"W1 OK Enabled"), 0.01)
    assert sent(nxt) == [b"W2 NOTIFY SET STATUS (personal (MessageNew MessageExpunge FlagChange MailboxName "
                         b"SubscriptionChange))\r\n"]
    for line in (b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 7 UNSEEN 1 HIGHESTMODSEQ 3)",
                 b"* STATUS Sent (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 8 UNSEEN 0 HIGHESTMODSEQ 1)"):
        assert s.receive(ev(line), 0.01) == []  # the baseline, not news
    listing = s.receive(ev(b"W2 OK NOTIFY completed"), 0.02)
    assert sent(listing) == [b'W3 LIST "" "*"\r\n']
    for line in (b'* LIST () "/" INBOX', b'* LIST (\\Sent) "/" Sent', b'* LIST () "/" Junk'):
        assert s.receive(ev(line), 0.02) == []
    assert s.receive(ev(b"W3 OK List completed"), 0.03) == [Ready(Mode.NOTIFY)]


def test_notify_setup_then_events_wake():
    s, first = notify_session()
    assert sent(first) == [b"W1 ENABLE CONDSTORE\r\n"]
    notify_ready(s, first)
    new_mail = b"* STATUS INBOX (MESSAGES 2 UIDNEXT 3 UNSEEN 2 HIGHESTMODSEQ 4)"
    assert s.receive(ev(new_mail), 5.0) == [Wake("STATUS INBOX")]
    assert s.receive(ev(new_mail), 5.05) == []  # the same counters again: not news
    assert s.receive(ev(b"* STATUS INBOX (HIGHESTMODSEQ 5)"), 5.1) == [Wake("STATUS INBOX")]  # a flag changed
    assert s.receive(ev(b"* STATUS Sent (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 8 UNSEEN 0 HIGHESTMODSEQ 1)"), 5.2) == []
    assert s.receive(ev(b"* STATUS Junk (MESSAGES 9)"), 5.3) == []  # a folder the account leaves out
    assert s.receive(ev(b'* LIST (\\Subscribed) "/" Sent'), 5.4) == []  # known folder: a subscription change
    assert s.receive(ev(b'* LIST () "/" NewFolder'), 5.5) == [Wake("folder NewFolder created")]
    assert s.receive(ev(b'* LIST () "/" NewFolder'), 5.6) == []
    assert s.receive(ev(b'* LIST (\\NonExistent) "/" NewFolder'), 5.7) == [Wake("folder NewFolder deleted")]
    assert s.receive(ev(b'* LIST () "/" Renamed ("OLDNAME" ("Sent"))'), 5.8) == [Wake("folder renamed to Renamed")]
    assert s.receive(ev(b"* OK Still here"), 5.9) == []
    assert s.receive(ev(b"* STATUS Archive (MESSAGES 1 UIDNEXT 2 HIGHESTMODSEQ 2)"), 6.0) == \
        [Wake("STATUS Archive")]  # a folder first heard of


def test_notify_refused_falls_back():
    s, first = notify_session(condstore=False)
    assert sent(first)[0].startswith(b"W1 NOTIFY SET")
    (act,) = s.receive(ev(b"W1 NO [NOTIFICATIONOVERFLOW] too many"), 0.1)
    assert isinstance(act, Refused) and act.what == "NOTIFY" and "NOTIFICATIONOVERFLOW" in act.reason


def test_notify_keepalive_noop_and_dead_socket():
    s, first = notify_session()
    answer(s, answer(s, answer(s, first, 0.0), 0.0), 0.0)
    assert s.deadline() == 300.0  # P3: probe after 300 s of silence
    assert s.tick(299.9) == []
    noop = s.tick(300.0)
    assert sent(noop) == [b"W4 NOOP\r\n"]
    assert s.deadline() == 330.0  # P1: answered within 30 s
    assert s.receive(ev(b"W4 OK NOOP"), 300.2) == []
    assert s.deadline() == pytest.approx(600.2)
    s.tick(600.2)
    (fail,) = s.tick(630.2)  # no answer to the second NOOP: dead
    assert isinstance(fail, Fail) and "no answer to NOOP within 30 s" in fail.reason
    assert s.receive(ev(b"* STATUS INBOX (MESSAGES 1)"), 631) == []  # nothing after a failure


def test_notify_without_condstore_syncs_every_poll_interval():
    s, first = notify_session(condstore=False)
    assert sent(s.receive(ev(b"W1 OK done"), 1.0)) == [b'W2 LIST "" "*"\r\n']
    assert s.receive(ev(b"W2 OK done"), 1.0) == [Ready(Mode.NOTIFY)]
    assert s.deadline() == 61.0
    (w,) = s.tick(61.0)
    assert isinstance(w, Wake) and w.kind == "poll"
    assert s.deadline() == 121.0


def test_bye_and_garbage_fail():
    s, first = notify_session()
    (f,) = s.receive(ev(b"* BYE Server shutting down."), 1)
    assert isinstance(f, Fail) and "BYE: Server shutting down." in f.reason
    s, first = notify_session()
    (f,) = s.receive(ev(b"X99 OK what"), 1)
    assert isinstance(f, Fail) and "unexpected tagged answer" in f.reason
    s, first = notify_session()
    (f,) = s.receive(ev(b"+ go ahead"), 1)
    assert isinstance(f, Fail) and "continuation" in f.reason


# -- IDLE -----------------------------------------------------------------------------------------


def idle_session(poll=False, condstore=True, list_status=True, timing=T, folder="INBOX"):
    plan = SessionPlan(Mode.IDLE, folder=folder, poll=poll, condstore=condstore, list_status=list_status,
                       skip=frozenset({folder}), exclude=("Junk",))
    s = PushSession(plan, timing)
    return s, s.start(0.0)


def start_idling(s, first, now=0.0):
    """EXAMINE answered -> IDLE sent -> "+" -> Ready."""
    assert sent(first) == [b"W1 EXAMINE \"INBOX\"\r\n"]
    assert s.receive(ev(b"* 3 EXISTS"), now) == []  # part of the EXAMINE answer, not news
    idle = s.receive(ev(b"W1 OK [READ-ONLY] Examine completed"), now)
    assert sent(idle) == [b"W2 IDLE\r\n"]
    assert s.receive(ev(b"+ idling"), now) == [Ready(Mode.IDLE)]


def test_idle_events_wake():
    s, first = idle_session()
    start_idling(s, first)
    assert s.receive(ev(b"* 4 EXISTS"), 1) == [Wake("EXISTS in INBOX")]
    assert s.receive(ev(b"* 1 RECENT"), 1) == []
    assert s.receive(ev(b"* 2 EXPUNGE"), 2) == [Wake("EXPUNGE in INBOX")]
    assert s.receive(ev(b"* 1 FETCH (FLAGS (\\Seen))"), 3) == [Wake("FETCH in INBOX: flags changed")]
    assert s.receive(ev(b"* VANISHED 5:7"), 4) == [Wake("VANISHED in INBOX")]


def test_idle_is_refreshed_every_25_minutes():
    quiet = Timing(idle_refresh=1500.0, keepalive=10_000.0, response_timeout=30.0, poll_interval=60.0)
    s, first = idle_session(timing=quiet)
    start_idling(s, first)
    for cycle in range(3):
        start = cycle * 1500.0 + cycle * 0.5
        assert s.deadline() == pytest.approx(start + 1500.0)  # P2
        assert s.tick(start + 1499.9) == []
        done = s.tick(start + 1500.0)
        assert sent(done) == [b"DONE\r\n"] and s.break_reason == "refresh"
        again = s.receive(ev(b"W%d OK Idle completed" % (cycle + 2)), start + 1500.5)
        assert sent(again) == [b"W%d IDLE\r\n" % (cycle + 3)]
        assert s.receive(ev(b"+ idling"), start + 1500.5) == []  # Ready only the first time


def test_idle_keepalive_counts_server_chatter():
    s, first = idle_session()
    start_idling(s, first)
    for t in (120.0, 240.0, 360.0):  # Dovecot says "* OK Still here" every 2 minutes
        assert s.deadline() == t - 120.0 + 300.0
        assert s.receive(ev(b"* OK Still here"), t) == []
    assert s.tick(659.0) == []
    assert sent(s.tick(660.0)) == [b"DONE\r\n"] and s.break_reason == "keepalive"


def test_idle_done_unanswered_is_a_dead_connection():
    s, first = idle_session()
    start_idling(s, first)
    assert sent(s.tick(300.0)) == [b"DONE\r\n"]
    assert s.tick(329.9) == []
    (f,) = s.tick(330.0)
    assert isinstance(f, Fail) and "no answer to DONE within 30 s" in f.reason


def test_idle_refused_and_examine_refused():
    s, first = idle_session()
    (r,) = s.receive(ev(b"W1 NO [NONEXISTENT] Mailbox doesn't exist"), 0)
    assert isinstance(r, Refused) and r.what == "EXAMINE"
    s, first = idle_session()
    s.receive(ev(b"W1 OK done"), 0)
    (r,) = s.receive(ev(b"W2 BAD Unknown command"), 0)
    assert isinstance(r, Refused) and r.what == "IDLE"


def test_idle_with_polling_of_the_other_folders():
    s, first = idle_session(poll=True)
    base = s.receive(ev(b"W1 OK [READ-ONLY] done"), 0.0)
    assert sent(base) == [b'W2 LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ))\r\n']

    def listing(now, archive_modseq, tag):
        out = []
        for line in (b'* LIST (\\HasNoChildren) "/" INBOX', b"* STATUS INBOX (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 1 "
                     b"HIGHESTMODSEQ 9)", b'* LIST () "/" Archive',
                     b"* STATUS Archive (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 2 HIGHESTMODSEQ %d)" % archive_modseq,
                     b'* LIST (\\Junk) "/" Junk', b"* STATUS Junk (MESSAGES 50 UIDNEXT 51 UIDVALIDITY 3 "
                     b"HIGHESTMODSEQ %d)" % (archive_modseq * 7)):
            out += s.receive(ev(line), now)
        return out + s.receive(ev(tag + b" OK List completed"), now)

    first_idle = listing(0.0, 5, b"W2")
    assert sent(first_idle) == [b"W3 IDLE\r\n"]  # baseline taken: no wake
    assert s.receive(ev(b"+ idling"), 0.0) == [Ready(Mode.IDLE)]
    assert s.snapshot == {"Archive": (1, 2, 2, 5)}  # INBOX is idled on, Junk is not synced
    assert s.deadline() == 60.0
    assert sent(s.tick(60.0)) == [b"DONE\r\n"] and s.break_reason == "poll"
    poll = s.receive(ev(b"W3 OK Idle completed"), 60.1)
    assert sent(poll) == [b'W4 LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ))\r\n']
    out = listing(60.1, 5, b"W4")  # nothing changed (Junk did not either)
    assert [a for a in out if isinstance(a, Wake)] == [] and sent(out) == [b"W5 IDLE\r\n"]
    s.receive(ev(b"+ idling"), 60.1)
    s.tick(120.1)
    s.receive(ev(b"W5 OK done"), 120.2)
    out = listing(120.2, 6, b"W6")  # Archive's HIGHESTMODSEQ moved: a flag changed there
    assert Wake("poll: Archive changed", kind="poll") in out


def test_polling_without_list_status_or_condstore():
    plan = SessionPlan(Mode.POLL, poll=True, condstore=False, list_status=False)
    s = PushSession(plan, T)
    first = s.start(0.0)
    assert sent(first) == [b'W1 LIST "" "*"\r\n']
    for line in (b'* LIST () "/" INBOX', b'* LIST () "/" Sent', b'* LIST (\\Noselect) "/" Parent'):
        assert s.receive(ev(line), 0.1) == []
    statuses = s.receive(ev(b"W1 OK done"), 0.1)
    assert sent(statuses) == [b'W2 STATUS "INBOX" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)\r\n'
                              b'W3 STATUS "Sent" (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)\r\n']
    s.receive(ev(b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 1 UNSEEN 1)"), 0.2)
    assert s.receive(ev(b"W2 OK done"), 0.2) == []  # W3 still out
    s.receive(ev(b"* STATUS Sent (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 2 UNSEEN 0)"), 0.2)
    assert s.receive(ev(b"W3 OK done"), 0.2) == [Ready(Mode.POLL)]
    assert s.deadline() == pytest.approx(60.2)
    again = s.tick(60.2)
    assert sent(again) == [b'W4 LIST "" "*"\r\n']
    s.receive(ev(b'* LIST () "/" INBOX'), 60.3)
    s.receive(ev(b'* LIST () "/" Sent'), 60.3)
    s.receive(ev(b"W4 OK done"), 60.3)
    s.receive(ev(b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 1 UNSEEN 1)"), 60.3)
    s.receive(ev(b"W5 OK done"), 60.3)
    out = s.receive(ev(b"W6 NO [NONEXISTENT] gone"), 60.3)  # Sent deleted between LIST and STATUS
    assert [a.kind for a in out if isinstance(a, Wake)] == ["poll"]


def test_poll_without_condstore_always_wakes():
    plan = SessionPlan(Mode.POLL, poll=True, condstore=False, list_status=True)
    s = PushSession(plan, T)
    s.start(0.0)
    s.receive(ev(b'* LIST () "/" INBOX'), 0)
    s.receive(ev(b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 1 UNSEEN 1)"), 0)
    assert s.receive(ev(b"W1 OK done"), 0) == [Ready(Mode.POLL)]
    s.tick(60)
    s.receive(ev(b'* LIST () "/" INBOX'), 60)
    s.receive(ev(b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 1 UNSEEN 1)"), 60)
    (w,) = s.receive(ev(b"W2 OK done"), 60)
    assert isinstance(w, Wake) and "no CONDSTORE" in w.reason


def test_closing_ends_idle_first():
    s, first = idle_session()
    start_idling(s, first)
    assert s.closing() == b"DONE\r\nWZ LOGOUT\r\n"
    s2, _ = notify_session()
    assert s2.closing() == b"WZ LOGOUT\r\n"


# -- backoff ----------------------------------------------------------------------------------------


def test_backoff_schedule_doubles_jitters_and_caps():
    policy = BackoffPolicy(initial=1.0, maximum=300.0, multiplier=2.0, jitter=0.5)
    b = Backoff(policy, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(12)]
    for n, d in enumerate(delays):
        base = min(300.0, 2.0 ** n)
        assert base * 0.5 <= d <= base, (n, d)
    assert max(delays) <= 300.0 and delays[-1] >= 150.0  # capped, and still near the cap
    b.reset()
    assert 0.5 <= b.next_delay() <= 1.0
    # no jitter: the plain schedule
    exact = Backoff(BackoffPolicy(initial=0.5, maximum=4.0, jitter=0.0))
    assert [exact.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    # jitter spreads many clients cut off at once
    spread = {round(Backoff(NETWORK, rng=random.Random(i)).next_delay(), 3) for i in range(50)}
    assert len(spread) > 40
    assert CREDENTIALS.initial >= 60 and CREDENTIALS.maximum >= 3600  # credentials: slowly
    with pytest.raises(ValueError):
        BackoffPolicy(initial=5, maximum=1)
