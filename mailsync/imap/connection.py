"""One logged-in IMAP connection for the sync: the blocking shell around the sans-I/O core.

Owns: the command engine (`_events`: send a command, read its answer with the sans-I/O
mailsync.imap.responses parser, `readline()` for lines and `read(n)` for literals of the socket's
buffer, so each body is copied once) and the commands the sync needs. A whole-folder download can
go further: with ``into``, fetch_all_messages reads each body with `readinto()` straight into the
buffer the caller will write it to disk from (see _body_fetch). Must not: touch the store or decide
what to sync (mailsync.sync does). The socket, TLS and the login are mailsync.imap.transport's (which
drives mailsync.imap.opening, shared with the push shell); what commands look like and what their
answers mean are mailsync.imap.commands'; payloads of untagged answers are parsed in
mailsync.imap.payloads; library exceptions are mapped in mailsync.imap.failures.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable, Iterator

from mailsync.config.model import AccountConfig
from mailsync.errors import ConnectError, ProtocolError
from mailsync.imap.appends import Appends
from mailsync.imap.commands import (CopyUids, RemoteFolder, SelectInfo, append_command, list_command,
                                    names_a_missing_folder, read_copyuid, read_listing, read_select, refusal,
                                    select_command, status_items)
from mailsync.imap.deadline import Watchdog
from mailsync.imap.failures import mapped_errors
from mailsync.imap.opening import new_tag, shared_capabilities
from mailsync.imap.pace import RateLimit
from mailsync.imap.payloads import (appenduid, modified, parse_esearch, parse_search, parse_status_reply, set_size,
                                    vanished_ranges)
from mailsync.imap.responses import (Continuation, FetchItem, ResponseParser, Tagged, Untagged, body_fetch_head,
                                     body_fetch_item, flags_listing_item, format_uid_set, quote,
                                     usual_body_fetch)
from mailsync.imap.throttle import throttle_check, untagged_throttle
from mailsync.imap.transport import Wire, log_in, next_line, open_wire, widen_receive_buffer
from mailsync.imap.untagged_checks import usual_listing_event

_ATOM_LABEL = re.compile(r"\\?[A-Za-z0-9$_.-]+")  # sent as an atom (\\Inbox, Work); others quoted
GM_ITEMS = "X-GM-MSGID X-GM-THRID X-GM-LABELS"  # Gmail's FETCH items (X-GM-EXT-1)
MAX_KEPT = 64 << 20  # bytes of untagged responses one command may keep
_USEFUL = frozenset(("LIST", "STATUS", "SEARCH", "ESEARCH", "VANISHED", "CAPABILITY", "ENABLED", "FLAGS"))
_COUNTS = frozenset(("EXISTS", "EXPUNGE", "VANISHED"))  # untagged responses that move the message count


class ImapConnection(Appends):
    """A logged-in connection. Use `connect()`; close with `logout()` or as a context manager.

    Every command goes through `_events` (our parser on the Wire's buffer). `commands` counts the
    commands sent after login, so tests and benchmarks can check round trips.
    """

    def __init__(self, account: AccountConfig, wire: Wire, capabilities: frozenset[str]) -> None:
        self.account = account
        self.wire = wire
        self.capabilities = shared_capabilities(c.upper() for c in capabilities)
        self.bytes_fetched = 0
        self.bodies_fetched = 0
        self.commands = 0
        self.enabled: set[str] = set()
        self.broken = False  # the stream is out of step (a parse error mid-response): do not reuse
        self.selected: str | None = None
        # EXISTS of the selected folder as this connection last heard it: set by SELECT, moved by the
        # untagged EXISTS, EXPUNGE and VANISHED of any later command (a listing is checked against it)
        self.exists: int | None = None
        self.unlisted: list[str] = []  # why entries of the last LIST were set aside (list_folders)
        self.untagged_dropped = 0  # untagged responses not needed by any command, counted and dropped
        self._watchdog = Watchdog(account, wire.shutdown)
        rate = getattr(account, "max_download_rate", None)
        self._pace = RateLimit(rate) if rate else None  # mailsync.imap.pace: bodies read at most this fast
        if rate:  # the deadline of a command grows with the time its answer must take at that rate
            self._watchdog.rate = min(self._watchdog.rate, rate / 2)
        # Sent by bulk_ahead and not yet read: (folder, tag of its SELECT or None once read, tag of its FETCH)
        self._ahead: tuple[str, bytes | None, bytes] | None = None
        self._listed: tuple[int, list[RemoteFolder], list[str]] | None = None  # the last listing with counters
        self._handed: tuple[int, list[RemoteFolder], list[str]] | None = None  # hand_over_listing's

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    @property
    def qresync(self) -> bool:
        return self.has("QRESYNC") and self.has("ENABLE")

    @property
    def condstore(self) -> bool:
        return self.has("CONDSTORE") or self.qresync

    # -- the command engine ---------------------------------------------------------------------

    def _events(self, command: bytes, doing: str, literal: bytes | None = None,
                into: Callable[[int], memoryview] | None = None, sent: bytes | None = None,
                then: Callable[[], None] | None = None, fast: Callable[[bytes], object] | None = None) -> Iterator:
        """Send one command (with at most one synchronizing literal) and yield its responses until
        the tagged completion, which is yielded last. Raises on NO/BAD only if the caller asks.
        With ``into`` (see fetch_all_messages), a FETCH response of the usual one-message shape is
        read here, its literal straight into place (_body_fetch); every other response goes through
        ResponseParser. With ``sent``, the command went out already under that tag (bulk_ahead):
        only its answer is read. Before any other command, what bulk_ahead sent is read and
        dropped (_drop_ahead). ``then()`` is called once the command has gone out. With ``fast``, a line
        it reads whole (not None: a UID/FLAGS listing's, flags_listing_item; a LIST-STATUS answer's,
        usual_listing_event) is that event, without the general parser."""
        if self.broken:
            raise ConnectError(f"account '{self.account.name}': the connection is out of step; reconnect")
        if sent is None and self._ahead is not None:
            self._drop_ahead()
        wire = self.wire
        tag = sent or new_tag()
        parser = ResponseParser()
        read = wire.read
        watchdog = self._watchdog
        watchdog.begin()
        with mapped_errors(self.account, doing):
            try:
                if sent is None:
                    self.commands += 1
                    wire.send(tag + b" " + command + b"\r\n")
                if then is not None:
                    then()
                while True:
                    n = parser.wants()
                    if n is None:
                        line = next_line(wire, self.account.name, doing)
                        if fast is not None and parser.at_boundary:  # a listing's usual lines
                            item = fast(line)
                            if item is not None:
                                watchdog.credit += 64
                                yield item
                                continue
                        if into is not None and parser.at_boundary:
                            usual = usual_body_fetch(line)
                            head = (usual[0], None, usual[6]) if usual is not None else body_fetch_head(line)
                        else:
                            head = None
                        if head is None:
                            events = parser.feed_line(line)
                        else:
                            item, events = self._body_fetch(parser, line, head, into, doing, usual)
                            if item is not None:
                                yield item
                                continue
                    else:  # a literal of the general path: a bytes object of its own
                        data = read(n)
                        if len(data) < n:
                            raise ConnectError(f"account '{self.account.name}': the connection dropped inside "
                                               f"a {n}-byte literal while {doing}")
                        self.bytes_fetched += n
                        watchdog.credit += n
                        if self._pace is not None:
                            self._paced(n)
                        events = parser.feed_literal(data)
                    for ev in events:
                        if isinstance(ev, Continuation):
                            if literal is None:
                                raise ProtocolError(f"account '{self.account.name}': unexpected continuation "
                                                    f"request while {doing}")
                            wire.send(literal + b"\r\n")
                            watchdog.credit += len(literal)  # the time to send it counts as answer time
                            literal = None
                            continue
                        if isinstance(ev, Tagged):
                            if ev.tag != tag:
                                raise ProtocolError(f"account '{self.account.name}': unexpected tagged answer "
                                                    f"{ev.tag!r} while {doing}")
                            yield ev
                            return
                        if isinstance(ev, FetchItem):
                            watchdog.credit += len(ev.body) + 64 if ev.body is not None else 64
                        elif isinstance(ev, Untagged):
                            if ev.kind in _USEFUL:
                                watchdog.credit += len(ev.raw)
                            elif ev.kind in ("OK", "NO", "BAD") and not ev.text.startswith("["):
                                self.untagged_dropped += 1  # text for people: not kept
                                continue
                            if ev.kind == "BYE":
                                throttled = untagged_throttle(self.account.name, "BYE", ev.text, doing)
                                if throttled is not None:  # Microsoft 365 ends a throttled session so
                                    raise throttled
                                raise ConnectError(f"account '{self.account.name}': the server said BYE while "
                                                   f"{doing}: {ev.text[:200]}")
                            if ev.kind in _COUNTS:
                                self._count(ev)
                        yield ev
            except BaseException as exc:  # a bad response, a dropped connection, or the caller gone mid-response
                self.broken = True
                if watchdog.expired:
                    raise ConnectError(f"account '{self.account.name}': {doing} took longer than allowed "
                                       f"({watchdog.allowance():.0f} s for {watchdog.credit} bytes of answer); "
                                       f"the server is too slow or sends what was not asked for",
                                       hint="if the server is just slow, raise command_deadline (seconds "
                                            "every command may take) or lower deadline_rate (bytes a second "
                                            "an answer must keep up) for this account") from exc
                raise
            finally:
                watchdog.end()

    def _paced(self, n: int) -> None:
        """max_download_rate: pause after a literal of n bytes as the account's rate limit says."""
        wait = self._pace.pause(n, time.monotonic())
        if wait > 0:
            time.sleep(wait)

    def _count(self, ev: Untagged) -> None:
        """Keep ``exists`` in step with an untagged EXISTS, EXPUNGE or VANISHED."""
        if ev.kind == "EXISTS":
            self.exists = ev.number
        elif self.exists is not None:
            if ev.kind == "EXPUNGE":
                self.exists = max(self.exists - 1, 0)
            else:
                earlier, ranges = vanished_ranges(ev.raw)
                if not earlier:
                    self.exists = max(self.exists - set_size(ranges), 0)

    def _body_fetch(self, parser: ResponseParser, line: bytes, head: tuple[int, bytes | None, int],
                    into: Callable[[int], memoryview], doing: str,
                    usual: tuple | None) -> tuple[FetchItem | None, list]:
        """The rest of a response whose first line usual_body_fetch read (``usual``) or
        body_fetch_head accepted: the literal, read into ``into(n)``, then the last line. (item, [])
        for the simple shape; otherwise the response goes to ResponseParser after all, the literal
        with it, and (None, its events) comes back."""
        seq, items, n = head
        file = self.wire
        view = into(n)
        if len(view) != n:
            raise ValueError(f"into({n}) gave a buffer of {len(view)} bytes")
        if file.readinto(view) != n:
            raise ConnectError(f"account '{self.account.name}': the connection dropped inside a {n}-byte "
                               f"literal while {doing}")
        self.bytes_fetched += n
        self._watchdog.credit += n
        if self._pace is not None:
            self._paced(n)
        end = next_line(file, self.account.name, doing)
        if end == b")\r\n":
            if usual is not None:
                _seq, uid, flags, internaldate, size, modseq, _n = usual
                return FetchItem(seq, uid, flags, internaldate, size, view, None, modseq), []
            item = body_fetch_item(seq, items, view)
            if item is not None:
                return item, []
        parser.feed_line(line)
        parser.feed_literal(view)
        return None, parser.feed_line(end)

    def _run(self, command: bytes, doing: str, *, literal: bytes | None = None, ok: bool = True,
             sent: bytes | None = None, fast: Callable[[bytes], object] | None = None):
        """Run a command to completion: (untagged list, fetch items, tagged). ``fast``: as _events'."""
        untagged, fetches = [], []
        tagged = None
        kept = 0
        for ev in self._events(command, doing, literal, sent=sent, fast=fast):
            if isinstance(ev, Tagged):
                tagged = ev
            elif isinstance(ev, FetchItem):
                fetches.append(ev)
            else:
                kept += len(ev.raw)
                if kept > MAX_KEPT:
                    self.broken = True
                    raise ProtocolError(f"account '{self.account.name}': more than {MAX_KEPT} bytes of untagged "
                                        f"responses while {doing}; refused")
                untagged.append(ev)
        if ok and tagged.status != "OK":
            raise refusal(self.account.name, tagged, doing)
        return untagged, fetches, tagged

    def enable(self, *caps: str) -> None:
        wanted = [c for c in caps if c.upper() not in self.enabled]
        if wanted and self.has("ENABLE"):
            self._run(b"ENABLE " + " ".join(wanted).encode(), "enabling " + " ".join(wanted))
            self.enabled.update(c.upper() for c in wanted)

    # -- folders --------------------------------------------------------------------------------

    def list_folders(self, *, with_status: bool = True, handed: bool = False) -> list[RemoteFolder]:
        """LIST every folder; with LIST-STATUS also UIDVALIDITY, UIDNEXT, MESSAGES, HIGHESTMODSEQ in the
        same round trip (RFC 5819). Entries that cannot be used are set aside, with why, in ``unlisted``.
        With ``handed``, the listing hand_over_listing() handed over is the answer, when no command
        went out since it was read (the sync's quick check read it a moment ago); else a LIST."""
        kept, self._handed = self._handed, None
        if handed and with_status and kept is not None and kept[0] == self.commands:
            self.unlisted = list(kept[2])
            return list(kept[1])
        cmd = list_command(self.capabilities, status=self._status_items() if with_status else None)
        untagged, _, _ = self._run(cmd, "listing folders", fast=usual_listing_event)
        folders, self.unlisted = read_listing(untagged)
        self._listed = (self.commands, folders, list(self.unlisted)) if with_status else None
        return folders

    def hand_over_listing(self) -> None:
        """Let the next list_folders(handed=True) answer with the listing just read, if no command
        goes out before it (the quick check hands its listing to the engine: one LIST fewer)."""
        if self._listed is not None and self._listed[0] == self.commands:
            self._handed = self._listed

    def _status_items(self) -> str:
        return status_items(self.condstore)

    def status(self, raw_name: str) -> dict[str, int]:
        return self.status_reply(raw_name)[0]

    def status_reply(self, raw_name: str, items: str | None = None) -> tuple[dict[str, int], str | None]:
        """STATUS of one folder: (its counters, its MAILBOXID where the server offers OBJECTID); ``items``
        other than the usual counters where asked (SIZE, RFC 8438, say)."""
        items = items or self._status_items()
        untagged, _, _ = self._run(b"STATUS " + quote(raw_name) + f" ({items})".encode(), f"STATUS {raw_name!r}")
        for ev in untagged:
            if ev.kind == "STATUS":
                return parse_status_reply(ev.raw)[1:]
        raise ProtocolError(f"account '{self.account.name}': STATUS {raw_name!r} gave no STATUS response")

    def create(self, raw_name: str) -> bool:
        """CREATE; False when the folder already exists (idempotent for journaled retries)."""
        _, _, tagged = self._run(b"CREATE " + quote(raw_name), f"creating {raw_name!r}", ok=False)
        if tagged.status == "OK":
            return True
        if (tagged.code or "").upper().startswith("ALREADYEXISTS") or "exists" in tagged.text.lower():
            return False
        throttle_check(self.account.name, tagged, f"creating {raw_name!r}")
        raise ProtocolError(f"account '{self.account.name}': CREATE {raw_name!r} failed: {tagged.text}")

    def delete(self, raw_name: str) -> bool:
        """DELETE; False when the folder does not exist."""
        self._leave(raw_name)
        _, _, tagged = self._run(b"DELETE " + quote(raw_name), f"deleting {raw_name!r}", ok=False)
        if tagged.status == "OK":
            if self.selected == raw_name:
                self.selected = None
            return True
        if names_a_missing_folder(tagged):
            return False
        throttle_check(self.account.name, tagged, f"deleting {raw_name!r}")
        raise ProtocolError(f"account '{self.account.name}': DELETE {raw_name!r} failed: {tagged.text}")

    def rename(self, old: str, new: str) -> None:
        self._leave(old, subtree=True)
        self._run(b"RENAME " + quote(old) + b" " + quote(new), f"renaming {old!r} to {new!r}")

    def _leave(self, raw_name: str, *, subtree: bool = False) -> None:
        """Leave the selected folder before it (``subtree``: it or a folder under it) is deleted or
        renamed: a server may end the session when the selected folder goes (Dovecot: "BYE Selected
        mailbox was deleted, have to disconnect"). UNSELECT where offered; else an EXAMINE of a name
        no one uses, which fails and so leaves no folder selected (RFC 3501 6.3.1); CLOSE would
        expunge."""
        sel = self.selected
        if sel is None or not (sel == raw_name or (subtree and sel.startswith(raw_name))):
            return
        if not self.unselect():
            nowhere = "mailsync-no-such-folder"
            _, _, tagged = self._run(b"EXAMINE " + quote(nowhere), "leaving the folder", ok=False)
            self.selected = nowhere if tagged.status == "OK" else None

    # -- selected state -------------------------------------------------------------------------

    def select(self, raw_name: str, *, readonly: bool = False,
               qresync: tuple[int, int] | None = None) -> SelectInfo:
        """SELECT (or EXAMINE). With `qresync=(uidvalidity, modseq)` on a QRESYNC server the answer
        includes VANISHED (EARLIER) and the FETCHes of what changed since modseq (RFC 7162 3.2.5)."""
        sent = None
        if self._ahead is not None and self._ahead[0] == raw_name and self._ahead[1] and not readonly and not qresync:
            sent = self._ahead[1]  # bulk_ahead sent this very command
            self._ahead = (raw_name, None, self._ahead[2])
        elif qresync and self.qresync:
            self.enable("QRESYNC")
        untagged, fetches, _ = self._run(self._select_command(raw_name, readonly, qresync),
                                         f"selecting {raw_name!r}", sent=sent)
        return self._selected(raw_name, untagged, fetches)

    def _selected(self, raw_name: str, untagged, fetches) -> SelectInfo:
        """The SelectInfo of a SELECT's answer; raw_name is now the selected folder."""
        info = read_select(self.account.name, raw_name, untagged, fetches)
        self.selected = raw_name
        self.exists = info.exists
        return info

    def select_with_headers(self, raw_name: str, *, qresync: tuple[int, int] | None,
                            uid_from: int) -> tuple[SelectInfo, dict[int, FetchItem]]:
        """select(raw_name, qresync=...) and fetch_headers() of the UIDs from ``uid_from`` on, both
        sent in one write (pipelining, RFC 3501 5.5; the sync's rule D6): the server answers the
        FETCH while the caller works on the SELECT's answer. A refused SELECT raises as select()
        would, after the FETCH's answer (refused too: no folder selected) has been read."""
        if self._ahead is not None:
            self._drop_ahead()
        if qresync and self.qresync:
            self.enable("QRESYNC")
        doing = f"selecting {raw_name!r}"
        select_tag, fetch_tag = self._send_select_and_fetch(raw_name, qresync, f"{uid_from}:*", self._header_items())
        untagged, fetches, tagged = self._run(b"", doing, ok=False, sent=select_tag)
        if tagged.status != "OK":
            self.selected = None
            for _ in self._events(b"", "reading the headers asked for with a refused SELECT", sent=fetch_tag):
                pass
            raise refusal(self.account.name, tagged, doing)
        info = self._selected(raw_name, untagged, fetches)
        headers = {it.uid: it for it in self._bulk("", "fetching headers", sent=fetch_tag)
                   if it.uid is not None and it.uid >= uid_from}  # n:* answers the last UID when n is past it
        return info, headers

    def _select_command(self, raw_name: str, readonly: bool, qresync: tuple[int, int] | None) -> bytes:
        return select_command(raw_name, readonly=readonly, qresync=qresync if self.qresync else None,
                              condstore=self.condstore)

    def bulk_ahead(self, raw_name: str) -> None:
        """Pipelining for a first sync (RFC 3501 5.5): send ``SELECT raw_name`` and its ``UID FETCH
        1:*`` of whole messages now, while the answer to the FETCH in progress is still being read,
        so that the server goes on to them without waiting for us (it spent 5-12 ms before the
        first message of each folder). The next select(raw_name) and fetch_all_messages() read
        their answers; any other command first reads and drops them. At most one folder ahead."""
        if self._ahead is not None or self.broken:
            return
        select_tag, fetch_tag = self._send_select_and_fetch(raw_name, None, "1:*", self._message_items())
        self._ahead = (raw_name, select_tag, fetch_tag)

    def _send_select_and_fetch(self, raw_name: str, qresync: tuple[int, int] | None, uid_set: str,
                               items: str) -> tuple[bytes, bytes]:
        """SELECT raw_name and UID FETCH uid_set (items) in one write, not read: their tags."""
        select_tag, fetch_tag = new_tag(), new_tag()
        fetch = f"UID FETCH {uid_set} ({items})".encode("ascii")
        with mapped_errors(self.account, f"selecting {raw_name!r}"):
            try:
                self.wire.send(select_tag + b" " + self._select_command(raw_name, False, qresync) + b"\r\n"
                               + fetch_tag + b" " + fetch + b"\r\n")
            except BaseException:
                self.broken = True
                raise
        self.commands += 2
        return select_tag, fetch_tag

    def _drop_ahead(self) -> None:
        """Read what bulk_ahead sent to its end and drop it: the sync went another way (the folder
        turned out empty, its SELECT failed, the sync stopped)."""
        raw_name, select_tag, fetch_tag = self._ahead
        self._ahead = None
        doing = f"finishing the pipelined commands for {raw_name!r}"
        if select_tag is not None:
            for ev in self._events(b"", doing, sent=select_tag):
                if isinstance(ev, Tagged):  # a failed SELECT leaves no folder selected
                    self.selected = raw_name if ev.status == "OK" else None
        for _ in self._events(b"", doing, sent=fetch_tag):
            pass

    def uid_flags(self, uid_set: str = "1:*", *, changedsince: int | None = None) -> dict[int, FetchItem]:
        """UID -> FETCH item (UID FLAGS [MODSEQ]) of `uid_set` in the selected folder, streamed."""
        items = "UID FLAGS MODSEQ" if self.condstore else "UID FLAGS"
        if self.gmail:  # a label change is a change too (Gmail moves MODSEQ for it)
            items += " " + GM_ITEMS
        mod = f" (CHANGEDSINCE {changedsince})" if changedsince is not None else ""
        out: dict[int, FetchItem] = {}
        for item in self._bulk(f"UID FETCH {uid_set} ({items}){mod}", "listing UIDs and flags",
                                fast=flags_listing_item):
            if item.uid is None:  # an unsolicited FETCH (another client's change): not an answer
                continue
            if item.flags is None:
                raise ProtocolError(f"account '{self.account.name}': FETCH of UID {item.uid} without FLAGS")
            out[item.uid] = item
        return out

    @property
    def gmail(self) -> bool:
        """Gmail's extensions (X-GM-EXT-1): message ids, thread ids and labels."""
        return "X-GM-EXT-1" in self.capabilities

    def gm_listing(self, uid_set: str = "1:*") -> dict[int, FetchItem]:
        """UID -> FETCH item of `uid_set` with what a placement needs but its body (UID FLAGS
        INTERNALDATE RFC822.SIZE [MODSEQ]) and Gmail's id, thread and labels (X-GM-EXT-1): enough
        to place a message whose X-GM-MSGID the store holds already, without downloading it."""
        items = "UID FLAGS INTERNALDATE RFC822.SIZE " + GM_ITEMS + (" MODSEQ" if self.condstore else "")
        return {it.uid: it for it in self._bulk(f"UID FETCH {uid_set} ({items})", "listing Gmail message ids")
                if it.uid is not None}

    def uid_store_labels(self, uids: Iterable[int], op: str, labels: Iterable[str]) -> dict[int, FetchItem]:
        """UID STORE uids +X-GM-LABELS|-X-GM-LABELS (labels) on Gmail; the FETCHes it answered."""
        uid_set = format_uid_set(uids)
        names = " ".join(label if _ATOM_LABEL.fullmatch(label) else quote(label, utf8=True).decode("utf-8")
                         for label in labels)
        if not uid_set or not names:
            return {}
        _, fetches, _ = self._run(f"UID STORE {uid_set} {op} ({names})".encode(), "storing Gmail labels")
        return {f.uid: f for f in fetches if f.uid is not None}

    def uid_search(self, criteria: str) -> list[int]:
        if self.has("ESEARCH"):
            untagged, _, _ = self._run(f"UID SEARCH RETURN (ALL) {criteria}".encode(), "searching")
            for ev in untagged:
                if ev.kind == "ESEARCH":
                    return list(parse_esearch(ev.raw)["ALL"])
            return []
        untagged, _, _ = self._run(f"UID SEARCH {criteria}".encode(), "searching")
        out: list[int] = []
        for ev in untagged:
            if ev.kind == "SEARCH":
                out.extend(parse_search(ev.raw))
        return out

    def search_message_id(self, message_id: str) -> list[int]:
        mid = message_id.replace("\\", "").replace('"', "")
        return self.uid_search(f'HEADER Message-ID "{mid}"')

    def fetch_headers(self, uids: Iterable[int]) -> dict[int, FetchItem]:
        """(UID RFC822.SIZE INTERNALDATE FLAGS Message-ID header) of `uids`: enough to recognise a
        message already in the store without downloading it."""
        uid_set = format_uid_set(uids)
        if not uid_set:
            return {}
        return {it.uid: it for it in self._bulk(f"UID FETCH {uid_set} ({self._header_items()})", "fetching headers")
                if it.uid is not None}

    def _header_items(self) -> str:
        return "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]" + (
            " MODSEQ" if self.condstore else "")

    def fetch_heads(self, uids: Iterable[int]) -> Iterator[FetchItem]:
        """What a placement needs and the whole header section (BODY.PEEK[HEADER], in
        ``header_fields``) of `uids`, without their bodies: messages larger than max_size
        (mailsync.store.headers_only), streamed in server order."""
        uid_set = format_uid_set(uids)
        if not uid_set:
            return iter(())
        items = self._message_items().replace("BODY.PEEK[]", "BODY.PEEK[HEADER]")
        return self._bulk(f"UID FETCH {uid_set} ({items})", "fetching header sections")

    def uid_store(self, uids: Iterable[int], op: str, flags: Iterable[str], *,
                  unchangedsince: int | None = None) -> tuple[dict[int, FetchItem], list[int]]:
        """UID STORE uids [UNCHANGEDSINCE m] +FLAGS|-FLAGS (flags). Returns (the FETCHes the server sent
        back, the UIDs it refused as MODIFIED)."""
        uid_set = format_uid_set(uids)
        flag_list = " ".join(flags)
        if not uid_set or (not flag_list and not op.upper().startswith("FLAGS")):  # FLAGS () clears them all
            return {}, []
        mod = f" (UNCHANGEDSINCE {unchangedsince})" if unchangedsince is not None and self.condstore else ""
        cmd = f"UID STORE {uid_set}{mod} {op} ({flag_list})".encode()
        _, fetches, tagged = self._run(cmd, "storing flags")
        return {f.uid: f for f in fetches if f.uid is not None}, modified(tagged.code)

    def uid_copy(self, uids: Iterable[int], dest: str, *, move: bool = False) -> "CopyUids":
        """UID COPY (or UID MOVE) to `dest`; returns source UID -> destination UID when the server
        says (COPYUID, RFC 4315), with the UIDVALIDITY it gave them in ``uidvalidity``, else {}."""
        verb = "UID MOVE" if move else "UID COPY"
        untagged, _, tagged = self._run(f"{verb} {format_uid_set(uids)} ".encode() + quote(dest),
                                        f"{verb.lower()} to {dest!r}")
        return read_copyuid(untagged, tagged)

    def uid_expunge(self, uids: Iterable[int]) -> None:
        """Remove exactly `uids` (already flagged \\Deleted). UID EXPUNGE with UIDPLUS; without it, the
        RFC 4315 workaround: take \\Deleted off other messages, EXPUNGE, put it back. Never a bare
        EXPUNGE that could remove another client's \\Deleted messages."""
        uids = sorted(set(uids))
        if not uids:
            return
        if self.has("UIDPLUS"):
            self._run(f"UID EXPUNGE {format_uid_set(uids)}".encode(), "expunging")
            return
        others = sorted(set(self.uid_search("DELETED")) - set(uids))
        if others:
            self.uid_store(others, "-FLAGS.SILENT", ["\\Deleted"])
        try:
            self._run(b"EXPUNGE", "expunging")
        finally:
            if others:
                self.uid_store(others, "+FLAGS.SILENT", ["\\Deleted"])

    def append(self, raw_name: str, data: bytes, flags: Iterable[str] = (),
               internaldate: str | None = None) -> tuple[int, int] | None:
        """APPEND; (uidvalidity, uid) from APPENDUID when the server offers UIDPLUS, else None."""
        cmd = append_command(raw_name, len(data), flags, internaldate)
        _, _, tagged = self._run(cmd, f"appending to {raw_name!r}", literal=data)
        return appenduid(tagged.code)

    def noop(self) -> None:
        self._run(b"NOOP", "NOOP")

    def unselect(self) -> bool:
        """Leave the selected folder without expunging anything (UNSELECT, RFC 3691), so a connection
        kept open between syncs (the watch daemon) collects no updates meanwhile. False when the
        server lacks UNSELECT (the folder stays selected)."""
        if self.selected is None:
            return True
        if not self.has("UNSELECT"):
            return False
        self._run(b"UNSELECT", "unselecting")
        self.selected = None
        return True

    def logout(self) -> None:
        """LOGOUT (its answer read for at most a couple of seconds), then close. Never raises."""
        self._watchdog.end()
        if not self.broken and self._ahead is None:
            with contextlib.suppress(Exception):
                self.wire.set_timeout(min(2.0, float(self.account.timeout or 2.0)))
                tag = new_tag()
                self.wire.send(tag + b" LOGOUT\r\n")
                while True:  # the BYE, then the tagged OK (or the server just closes)
                    line = self.wire.readline()
                    if not line or line.startswith(tag + b" "):
                        break
        self.broken = True
        with contextlib.suppress(Exception):
            self.wire.shutdown()
        self.wire.close()

    def shutdown(self) -> None:
        """Cut the connection at once, from any thread: a command in progress fails with ConnectError."""
        with contextlib.suppress(Exception):
            self.wire.shutdown()

    def has_unread(self) -> bool:
        """Whether the server sent something nobody asked for (a BYE, say) or closed: a connection
        kept between syncs is only reused when it has not."""
        try:
            return self.wire.has_unread()
        except (OSError, ValueError):
            return True

    def set_timeout(self, seconds: float) -> None:
        with contextlib.suppress(OSError):
            self.wire.set_timeout(seconds)

    def __enter__(self) -> "ImapConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.logout()

    # -- bulk reader ----------------------------------------------------------------------------

    def _bulk(self, command: str, doing: str, into: Callable[[int], memoryview] | None = None,
              sent: bytes | None = None, then: Callable[[], None] | None = None,
              fast: Callable[[bytes], object] | None = None) -> Iterator[FetchItem]:
        """Send `command` and yield its FETCH items as they arrive, until its tagged answer."""
        for ev in self._events(command.encode("ascii"), doing, into=into, sent=sent, then=then, fast=fast):
            if isinstance(ev, FetchItem):
                if ev.body is not None:
                    self.bodies_fetched += 1
                yield ev
            elif isinstance(ev, Tagged) and ev.status != "OK":
                raise refusal(self.account.name, ev, doing)

    def fetch_messages(self, uids: Iterable[int]) -> Iterator[FetchItem]:
        """Full messages (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]) of `uids`, in server order."""
        uid_set = format_uid_set(uids)
        if not uid_set:
            return iter(())
        return self._bulk(f"UID FETCH {uid_set} ({self._message_items()})", "fetching messages")

    def fetch_all_messages(self, *, into: Callable[[int], memoryview] | None = None,
                           ahead: str | None = None) -> Iterator[FetchItem]:
        """Every message of the selected folder, as fetch_messages gives them (UID FETCH 1:*).

        ``into(n)``, when given, says where to read an n-byte message: the literal of a response of
        the usual shape is read straight into the memoryview it returns, and that view is the
        item's ``body`` (valid until the next call of ``into``). Any other body is a bytes object
        of its own, as it always is without ``into``. ``ahead``: the folder whose SELECT and FETCH
        to send right behind this FETCH (bulk_ahead)."""
        then = None if ahead is None else (lambda: self.bulk_ahead(ahead))
        sent = None
        if self._ahead is not None and self._ahead[1] is None and self._ahead[0] == self.selected:
            sent = self._ahead[2]  # bulk_ahead sent it, and its SELECT has been read
            self._ahead = None
        return self._bulk(f"UID FETCH 1:* ({self._message_items()})", "fetching messages", into, sent, then)

    def _message_items(self) -> str:
        return ("UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]" + (" MODSEQ" if self.condstore else "")
                + (" " + GM_ITEMS if self.gmail else ""))


def connect(account: AccountConfig, password: str | None, *, timeout: float | None = None,
            tokens=None, sock=None) -> ImapConnection:
    """Open a connection per the account's TLS policy and log in (mailsync.imap.opening's steps, rules
    O1-O6). Raises mailsync.errors only.

    With ``account.auth == "oauth2"``, ``tokens`` (a mailsync.imap.sasl.TokenSource) gives the
    access token and ``password`` is not used. ``sock``: a TCP connection to the account's host and
    port already made (the CLI's early login dials it while the IMAP modules load), used
    instead of a new one."""
    wire = open_wire(account, timeout or account.timeout, sock)
    try:
        opened = log_in(wire, account, password, tokens)
        widen_receive_buffer(wire.sock)
        return ImapConnection(account, wire, opened.capabilities)
    except BaseException:
        wire.close()
        raise
