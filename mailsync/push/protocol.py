"""The rules of one push connection, as a pure state machine: events in, actions out.

Owns: which push mode an account gets (NOTIFY, IDLE, poll), which folders IDLE watches and which are
polled, the commands a push connection sends and when (NOTIFY SET, EXAMINE, IDLE/DONE, NOOP,
LIST-STATUS / STATUS), what in the server's responses is a reason to look again, and when a
connection counts as dead. Must not: do I/O, read a clock, log or sleep: the shell
(mailsync.push.listener) passes `now` in and carries the actions out, so every timer here -- the
25-minute IDLE refresh, keepalive probes, answer timeouts, the poll interval -- is tested by
handing in times (tests/unit/test_push_protocol.py), as h11 keeps its rules in one file.

One session = one logged-in connection. Its life:

  setup      NOTIFY: [ENABLE CONDSTORE] NOTIFY SET STATUS ... LIST     IDLE: EXAMINE folder     poll: nothing
  baseline   when the session polls: LIST-STATUS (or LIST, then STATUS per folder), remembered
  ready      NOTIFY: waiting for untagged STATUS/LIST/...   IDLE: "+ idling" received
             poll: waiting for the next poll time. The first time: Ready (the daemon then runs
             the catch-up delta sync, so nothing from before the push was live is missed).
  steady     IDLE: DONE when the refresh, keepalive or poll time comes; after its OK a poll if
             due, then IDLE again. NOTIFY/poll: NOOP after `keepalive` seconds of silence or
             `idle_refresh` seconds without a command; LIST-STATUS when the poll is due.

Timing rules (P for push; state bits in PushSession, one line each):
  P1  every command (and DONE) must be answered within `response_timeout`, else Fail (a silent dead
      socket: a NAT that forgot us, a stalled proxy, a hung server).
  P2  IDLE is ended with DONE and re-issued at most `idle_refresh` after it started (servers may
      drop an IDLE after 30 minutes, RFC 2177).
  P3  after `keepalive` seconds with nothing received, the connection is probed (DONE in IDLE,
      NOOP otherwise); Dovecot's "* OK Still here" every 2 minutes in IDLE counts as received.
  P4  a polling session lists folder counters every `poll_interval`; any difference from the last
      listing (a counter, a folder added or gone) is a Wake. Without CONDSTORE the counters cannot
      show flag changes, so every poll then wakes a sync.
What wakes a sync: in IDLE, EXISTS / EXPUNGE / VANISHED / FETCH on the idling folder; in NOTIFY,
STATUS of a folder the account syncs whose counters differ from the last ones the server sent
(NOTIFY SET STATUS sends every folder's counters first, as the baseline), LIST of a folder that is
new, gone (\\NonExistent) or renamed (OLDNAME), and the same selected-folder responses; in polling,
a changed listing. Repeats are not news: Dovecot re-announces every folder, unchanged, some time
after a folder list is first built (seen on 2.3.19), which would otherwise cost a sync per account. BYE, an unexpected tag, an unexpected
continuation, or a refused poll is Fail (reconnect with backoff). A refused NOTIFY SET, EXAMINE or
IDLE is Refused: the daemon plans the account again without it (NOTIFY -> IDLE -> poll).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from mailsync.errors import ProtocolError
from mailsync.imap import utf7
from mailsync.imap.commands import RemoteFolder, selectable
from mailsync.imap.payloads import parse_list, parse_status
from mailsync.imap.responses import Continuation, Event, FetchItem, Tagged, Untagged, quote
from mailsync.sync.plan import folder_selected


class Mode(str, Enum):
    NOTIFY = "NOTIFY"
    IDLE = "IDLE"
    POLL = "poll"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Timing:
    """Seconds. Defaults: IDLE re-issued every 25 minutes (config key idle_refresh), other folders
    polled every minute (poll_interval), a silent connection probed after 5 minutes, and any
    command or DONE answered within 30 seconds."""

    idle_refresh: float = 25 * 60.0
    keepalive: float = 300.0
    response_timeout: float = 30.0
    poll_interval: float = 60.0


# -- actions --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes  # one or more complete lines, CRLF included
    what: str  # for logs: "NOTIFY", "EXAMINE", "IDLE", "DONE", "NOOP", "POLL", ...


@dataclass(frozen=True, slots=True)
class Wake:
    """Something changed (or may have): run a delta sync of the account. Never the state itself."""

    reason: str
    kind: str = "push"  # "push" (the server told us) | "poll" (a listing differed)


@dataclass(frozen=True, slots=True)
class Ready:
    """Push is live on this connection (first time only): run the catch-up sync now."""

    mode: Mode


@dataclass(frozen=True, slots=True)
class Fail:
    """The connection is unusable: close it and reconnect with backoff."""

    reason: str
    silent: bool = False  # P1: the server stopped answering (other connections on the path may hang too)


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused a push command: plan the account again without `what`."""

    what: str  # "NOTIFY" | "IDLE" | "EXAMINE"
    reason: str


Action = Send | Wake | Ready | Fail | Refused


# -- planning an account --------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionPlan:
    """What one push connection does."""

    mode: Mode
    folder: str | None = None  # IDLE: the raw (modified UTF-7) name it EXAMINEs and idles on
    poll: bool = False  # this connection also polls folder counters every poll_interval
    condstore: bool = False  # the server offers CONDSTORE (HIGHESTMODSEQ in STATUS)
    list_status: bool = False  # the server offers LIST-STATUS (one round trip per poll)
    include: tuple[str, ...] = ("*",)  # the account's folder patterns (decoded names)
    exclude: tuple[str, ...] = ()
    skip: frozenset[str] = frozenset()  # raw names not polled (an IDLE connection watches them)

    def wanted(self, raw_name: str) -> bool:
        """Is a change in this folder a reason to sync (rule F1 of the sync, and not IDLE-watched)?"""
        if raw_name in self.skip:
            return False
        try:
            name = utf7.decode(raw_name)
        except Exception:  # a server sending a bad name: let the sync look at it
            return True
        return folder_selected(name, self.include, self.exclude)


def choose_mode(capabilities: Iterable[str], *, refused: Iterable[str] = ()) -> Mode:
    """NOTIFY where offered, else IDLE, else polling; `refused` names modes the server turned down
    (advertised but answered NO/BAD), which are not tried again for this account."""
    caps = {c.upper() for c in capabilities}
    refused = {r.upper() for r in refused}
    if "NOTIFY" in caps and "NOTIFY" not in refused:
        return Mode.NOTIFY
    if "IDLE" in caps and "IDLE" not in refused:
        return Mode.IDLE
    return Mode.POLL


def watched_folders(listing: Sequence[RemoteFolder], watch: bool | Sequence[str] | None,
                    include: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """The raw names IDLE watches: the config's `watch` list (decoded names), or by default INBOX
    and the folder marked \\Sent; only folders that exist, are selectable and that the account syncs."""
    by_name: dict[str, RemoteFolder] = {}
    for f in listing:
        if f.selectable:
            by_name[f.name.upper() if f.name.upper() == "INBOX" else f.name] = f
    if watch is None or watch is True:
        wanted = ["INBOX"]
        sent = next((f for f in listing if f.selectable and any(x.lower() == "\\sent" for x in f.flags)), None)
        if sent is not None:
            wanted.append(sent.name)
    elif watch is False:
        return []
    else:
        wanted = list(watch)
    out: list[str] = []
    for name in wanted:
        f = by_name.get("INBOX" if name.upper() == "INBOX" else name)
        if f is None or not folder_selected(f.name, include, exclude) or f.raw_name in out:
            continue
        out.append(f.raw_name)
    return out


# Gmail allows 15 simultaneous IMAP connections per account, shared by every client (phones, other
# mail apps); over that it refuses logins. Whatever max_connections says, push on a Gmail account
# (X-GM-EXT-1) takes at most this many, so mailsync holds at most 5 with its sync connection and
# leaves 10 to the others.
GMAIL_PUSH_BUDGET = 4


def plan_sessions(mode: Mode, capabilities: Iterable[str], listing: Sequence[RemoteFolder], *,
                  watch: bool | Sequence[str] | None, budget: int, include: Sequence[str] = ("*",),
                  exclude: Sequence[str] = ()) -> list[SessionPlan]:
    """The push connections of an account in `mode`, within `budget` connections (the account's
    max_connections less the one kept for its sync). An empty list: no connection to spare, so
    the daemon polls by running the delta sync every poll_interval (its LIST-STATUS is the poll).

    IDLE watches at most `budget` folders, one connection each; the first of them also polls every
    other folder, so a folder not watched is seen within poll_interval."""
    caps = {c.upper() for c in capabilities}
    if "X-GM-EXT-1" in caps:  # Gmail: 15 connections per account for every client together
        budget = min(budget, GMAIL_PUSH_BUDGET)
    common = dict(condstore="CONDSTORE" in caps or "QRESYNC" in caps, list_status="LIST-STATUS" in caps,
                  include=tuple(include), exclude=tuple(exclude))
    if budget < 1:
        return []
    if mode is Mode.NOTIFY:
        # Without CONDSTORE a NOTIFY server cannot tell us about flag changes in other folders.
        return [SessionPlan(Mode.NOTIFY, poll=not common["condstore"], **common)]
    if mode is Mode.IDLE:
        folders = watched_folders(listing, watch, include, exclude)[:budget]
        if folders:
            skip = frozenset(folders)
            return [SessionPlan(Mode.IDLE, folder=raw, poll=(i == 0), skip=skip, **common)
                    for i, raw in enumerate(folders)]
    return [SessionPlan(Mode.POLL, poll=True, **common)]


def notify_set_command() -> bytes:
    """RFC 5465 for Dovecot: every folder of the personal namespace, the events a sync cares about,
    and (STATUS) each folder's counters now, as the baseline events are compared with.
    No `selected` clause: the NOTIFY connection selects nothing, and a folder event (STATUS)
    already says "look again". FlagChange in other folders is reported as STATUS HIGHESTMODSEQ,
    which Dovecot sends only once CONDSTORE is enabled (checked by hand on Dovecot 2.3.19)."""
    return b"NOTIFY SET STATUS (personal (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))"


def status_items(condstore: bool) -> str:
    return "MESSAGES UIDNEXT UIDVALIDITY " + ("HIGHESTMODSEQ" if condstore else "UNSEEN")


# -- the session ----------------------------------------------------------------------------------

_COMMAND, _IDLE_SENT, _IDLING, _DONE_SENT, _WAITING, _FAILED = (
    "command", "idle_sent", "idling", "done_sent", "waiting", "failed")
_POLLS = ("POLL-LIST-STATUS", "POLL-LIST", "POLL-STATUS")


@dataclass
class PushSession:
    """One connection's protocol state. Construct, call `start(now)`, then `receive(event, now)` for
    each parsed server response and `tick(now)` whenever `deadline()` has passed."""

    plan: SessionPlan
    timing: Timing = field(default_factory=Timing)

    def __post_init__(self) -> None:
        self._tags = itertools.count(1)
        self._setup: deque[tuple[str, bytes]] = deque()  # commands still to send before push is live
        self._inflight: dict[bytes, str] = {}  # tag -> what, commands sent and not yet answered
        self.phase = "new"  # new | command | idle_sent | idling | done_sent | waiting | failed
        self.ready = False  # Ready was emitted
        self.answer_by: float | None = None  # P1: the deadline of what is in flight
        self.last_rx = 0.0  # P3: when the server last sent anything
        self.last_cmd = 0.0  # when a command was last sent (NOTIFY/poll: refresh against autologout)
        self.idle_since: float | None = None  # P2: when the current IDLE was accepted ("+")
        self.idle_tag: bytes | None = None  # the tag of the IDLE command in progress
        self.break_reason: str | None = None  # why DONE was sent
        self.next_poll: float | None = None  # P4: when the next poll is due (None: not polling)
        self.snapshot: dict[str, tuple[int, ...]] | None = None  # the last poll's counters by raw name
        self._listing: dict[str, tuple[str, ...]] = {}  # the poll in progress: raw name -> flags
        self._counters: dict[str, tuple[int, ...]] = {}  # the poll in progress: raw name -> counters
        self._poll_refused = False  # a STATUS of the poll in progress was refused (folder gone)
        self.counters: dict[str, dict[str, int]] = {}  # NOTIFY: the last counters the server sent, by raw name
        self.names: set[str] = set()  # NOTIFY: the folders the server listed
        plan = self.plan
        if plan.mode is Mode.NOTIFY:
            if plan.condstore:
                self._setup.append(("ENABLE", b"ENABLE CONDSTORE"))
            self._setup.append(("NOTIFY", notify_set_command()))
            self._setup.append(("NOTIFY-LIST", b'LIST "" "*"'))
        elif plan.mode is Mode.IDLE:
            if not plan.folder:
                raise ValueError("an IDLE session needs a folder")
            self._setup.append(("EXAMINE", b"EXAMINE " + _astring(plan.folder)))

    # -- inputs -------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        self.last_rx = self.last_cmd = now
        if self.plan.poll:
            self.next_poll = now  # the baseline listing comes first
        return self._advance(now)

    def receive(self, ev: Event, now: float) -> list[Action]:
        if self.phase == _FAILED:
            return []
        self.last_rx = now
        if isinstance(ev, Tagged):
            return self._tagged(ev, now)
        if isinstance(ev, Continuation):
            if self.phase == _IDLE_SENT:
                self.phase, self.idle_since, self.answer_by = _IDLING, now, None
                if not self.ready:
                    self.ready = True
                    return [Ready(self.plan.mode)]
                return []
            return self._fail(f"unexpected continuation request '+ {ev.text[:80]}'")
        if isinstance(ev, FetchItem):
            if self._examining():
                return []
            where = f" in {self._folder_name()}" if self.plan.folder else ""
            return [Wake(f"FETCH{where}: flags changed")]
        return self._untagged(ev, now)

    def tick(self, now: float) -> list[Action]:
        if self.phase in (_COMMAND, _IDLE_SENT, _DONE_SENT):
            if self.answer_by is not None and now >= self.answer_by:
                what = ", ".join(sorted(set(self._inflight.values()))) or ("IDLE" if self.phase == _IDLE_SENT
                                                                           else "DONE")
                return self._fail(f"no answer to {what} within {self.timing.response_timeout:g} s: "
                                  f"the connection is dead", silent=True)
            return []
        if self.phase == _IDLING:
            reason = self._break_reason(now)
            if reason is None:
                return []
            self.phase, self.break_reason = _DONE_SENT, reason
            self.answer_by = now + self.timing.response_timeout
            return [Send(b"DONE\r\n", "DONE")]
        if self.phase == _WAITING:
            t = self.timing
            if self.next_poll is not None and now >= self.next_poll:
                if self.plan.mode is Mode.NOTIFY:  # NOTIFY without CONDSTORE: look every interval
                    self.next_poll = now + t.poll_interval
                    return [Wake("periodic sync: this server does not push flag changes of other folders "
                                 "(no CONDSTORE)", kind="poll")]
                return self._start_poll(now)
            if now >= self.last_rx + t.keepalive or now >= self.last_cmd + t.idle_refresh:
                return [self._send("NOOP", b"NOOP", now)]
        return []

    def deadline(self) -> float | None:
        """The time by which `tick` must be called (None: only server input can change anything)."""
        t = self.timing
        if self.phase in (_COMMAND, _IDLE_SENT, _DONE_SENT):
            return self.answer_by
        if self.phase == _IDLING:
            assert self.idle_since is not None
            times = [self.idle_since + t.idle_refresh, self.last_rx + t.keepalive]
        elif self.phase == _WAITING:
            times = [self.last_rx + t.keepalive, self.last_cmd + t.idle_refresh]
        else:
            return None
        if self.next_poll is not None:
            times.append(self.next_poll)
        return min(times)

    def closing(self) -> bytes:
        """What to send for a polite goodbye (DONE when idling, then LOGOUT)."""
        out = b"DONE\r\n" if self.phase in (_IDLING, _IDLE_SENT) else b""
        return out + b"WZ LOGOUT\r\n"

    # -- internals ----------------------------------------------------------------------------

    def _send(self, what: str, command: bytes, now: float) -> Send:
        tag = f"W{next(self._tags)}".encode()
        self._inflight[tag] = what
        self.phase = _COMMAND
        self.answer_by = now + self.timing.response_timeout
        self.last_cmd = now
        return Send(tag + b" " + command + b"\r\n", what)

    def _fail(self, reason: str, *, silent: bool = False) -> list[Action]:
        self.phase = _FAILED
        return [Fail(reason, silent)]

    def _examining(self) -> bool:
        return "EXAMINE" in self._inflight.values()

    def _polling(self) -> bool:
        return any(w in _POLLS for w in self._inflight.values())

    def _folder_name(self) -> str:
        return utf7.decode(self.plan.folder) if self.plan.folder else "?"

    def _advance(self, now: float) -> list[Action]:
        """Nothing is in flight: send what comes next."""
        if self._setup:
            what, command = self._setup.popleft()
            return [self._send(what, command, now)]
        if self.next_poll is not None and now >= self.next_poll and self.plan.mode is not Mode.NOTIFY:
            return self._start_poll(now)
        if self.plan.mode is Mode.IDLE:
            tag = f"W{next(self._tags)}".encode()
            self.idle_tag, self.phase = tag, _IDLE_SENT
            self.answer_by = now + self.timing.response_timeout
            self.last_cmd = now
            return [Send(tag + b" IDLE\r\n", "IDLE")]
        self.phase, self.answer_by = _WAITING, None
        if self.plan.mode is Mode.NOTIFY and self.next_poll is not None and now >= self.next_poll:
            self.next_poll = now + self.timing.poll_interval  # the first interval starts when push is live
        if not self.ready:
            self.ready = True
            return [Ready(self.plan.mode)]
        return []

    def _break_reason(self, now: float) -> str | None:
        t = self.timing
        assert self.idle_since is not None
        if now >= self.idle_since + t.idle_refresh:
            return "refresh"
        if self.next_poll is not None and now >= self.next_poll:
            return "poll"
        if now >= self.last_rx + t.keepalive:
            return "keepalive"
        return None

    def _start_poll(self, now: float) -> list[Action]:
        self._listing, self._counters, self._poll_refused = {}, {}, False
        items = status_items(self.plan.condstore)
        if self.plan.list_status:
            return [self._send("POLL-LIST-STATUS", f'LIST "" "*" RETURN (STATUS ({items}))'.encode(), now)]
        return [self._send("POLL-LIST", b'LIST "" "*"', now)]

    def _finish_poll(self, now: float) -> list[Action]:
        wanted = {raw for raw, flags in self._listing.items()
                  if self.plan.wanted(raw) and selectable(flags)}
        current = {raw: c for raw, c in self._counters.items() if raw in wanted}
        for raw in wanted - set(current):  # listed, but no counters (refused STATUS): still a folder
            current[raw] = ()
        previous, self.snapshot = self.snapshot, current
        self.next_poll = now + self.timing.poll_interval
        actions: list[Action] = []
        if previous is not None:
            changed = sorted(utf7.decode(r) for r in set(previous) | set(current) if previous.get(r) != current.get(r))
            if changed:
                shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
                actions.append(Wake(f"poll: {shown} changed", kind="poll"))
            elif not self.plan.condstore:
                actions.append(Wake("poll: no CONDSTORE, so flag changes cannot be seen in counters", kind="poll"))
        return actions + self._advance(now)

    def _tagged(self, ev: Tagged, now: float) -> list[Action]:
        what = self._inflight.pop(ev.tag, None)
        if what is None:
            if ev.tag == self.idle_tag:
                self.idle_tag = None
                if ev.status != "OK" or self.phase == _IDLE_SENT:
                    self.phase = _FAILED
                    return [Refused("IDLE", f"IDLE answered {ev.status} {ev.text[:200]}")]
                self.idle_since, self.answer_by = None, None
                return self._advance(now)
            if ev.tag == b"WZ":  # our LOGOUT
                return []
            return self._fail(f"unexpected tagged answer {ev.tag[:40]!r}")
        if ev.status != "OK":
            text = f"{ev.status} {('[' + ev.code + '] ') if ev.code else ''}{ev.text[:200]}"
            if what in ("NOTIFY", "EXAMINE"):
                self.phase = _FAILED
                name = f" {self._folder_name()}" if what == "EXAMINE" else " SET"
                return [Refused(what, f"{what}{name} answered {text}")]
            if what == "POLL-STATUS":
                self._poll_refused = True  # the folder went away between LIST and STATUS
            elif what in ("POLL-LIST", "POLL-LIST-STATUS"):
                return self._fail(f"the folder listing was refused: {text}")
            # ENABLE or NOOP refused: nothing depends on them
        if self._inflight:
            return []  # pipelined STATUS commands still out
        self.answer_by = None
        if what == "POLL-LIST":
            names = [raw for raw, flags in self._listing.items()
                     if self.plan.wanted(raw) and selectable(flags)]
            if names:
                items = status_items(self.plan.condstore)
                sends = [self._send("POLL-STATUS", b"STATUS " + _astring(raw) + f" ({items})".encode(), now)
                         for raw in names]
                return [Send(b"".join(s.data for s in sends), "POLL-STATUS")]
            return self._finish_poll(now)
        if what in ("POLL-LIST-STATUS", "POLL-STATUS"):
            return self._finish_poll(now)
        return self._advance(now)

    def _untagged(self, ev: Untagged, now: float) -> list[Action]:
        kind = ev.kind
        if kind == "BYE":
            if b"WZ" in self._inflight:
                return []
            return self._fail(f"the server said BYE: {ev.text[:200]}")
        if kind in ("EXISTS", "EXPUNGE", "VANISHED"):
            if self._examining():
                return []  # part of the EXAMINE answer
            where = f" in {self._folder_name()}" if self.plan.folder else ""
            return [Wake(f"{kind}{where}")]
        if kind == "STATUS":
            try:
                raw, values = parse_status(ev.raw)
            except ProtocolError as exc:
                return self._fail(f"bad STATUS response: {exc}")
            if self._polling():
                self._counters[raw] = tuple(values.get(k, -1) for k in status_items(self.plan.condstore).split())
                return []
            if self.plan.mode is Mode.NOTIFY:
                before = self.counters.get(raw)
                self.counters[raw] = {**(before or {}), **values}  # events may carry only what changed
                if "NOTIFY" in self._inflight.values():
                    return []  # the baseline (NOTIFY SET STATUS)
                news = before is None or any(before.get(k) != v for k, v in values.items())
                if news and self.plan.wanted(raw):
                    return [Wake(f"STATUS {utf7.decode(raw)}")]
            return []
        if kind == "LIST":
            if self._polling():
                try:
                    entry = parse_list(ev.raw)
                except ProtocolError as exc:
                    return self._fail(f"bad LIST response: {exc}")
                self._listing[entry.raw_name] = tuple(entry.flags)
                return []
            if self.plan.mode is Mode.NOTIFY:
                try:
                    entry = parse_list(ev.raw)
                except ProtocolError as exc:
                    return self._fail(f"bad LIST response: {exc}")
                raw, low = entry.raw_name, {f.lower() for f in entry.flags}
                if "NOTIFY-LIST" in self._inflight.values():
                    self.names.add(raw)  # the baseline listing
                    return []
                if "\\nonexistent" in low:
                    self.names.discard(raw)
                    self.counters.pop(raw, None)
                    return [Wake(f"folder {utf7.decode(raw)} deleted")]
                if b"OLDNAME" in ev.raw.upper():
                    self.names.add(raw)
                    return [Wake(f"folder renamed to {utf7.decode(raw)}")]
                if raw not in self.names:
                    self.names.add(raw)
                    return [Wake(f"folder {utf7.decode(raw)} created")]
            return []  # a folder already known (a subscription change, or a repeat)
        return []  # OK (e.g. "Still here"), NO, FLAGS, RECENT, CAPABILITY, ENABLED, ...


def _astring(raw_name: str) -> bytes:
    """A folder name as the wire wants it (raw names are 7-bit modified UTF-7)."""
    return quote(raw_name)

