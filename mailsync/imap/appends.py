"""APPENDs of many messages to one folder without a round trip each, for ImapConnection.

Owns: send_appends (every literal non-synchronizing, LITERAL+ RFC 7888; one MULTIAPPEND command, RFC
3502, where the server offers it, else one APPEND each, pipelined as RFC 3501 5.5 allows) and
read_appends (their answers, APPENDUID per message). A mixin of ImapConnection, whose command
engine (_events), wire and counters it uses. Must not: decide what to append or when (the
journal push does).
"""

from __future__ import annotations

from collections.abc import Iterable

from mailsync.errors import ProtocolError
from mailsync.imap.commands import append_command
from mailsync.imap.failures import mapped_errors
from mailsync.imap.opening import new_tag
from mailsync.imap.payloads import appenduid, appenduids
from mailsync.imap.responses import Tagged

APPEND_CHUNK = 1 << 20  # send_appends writes its commands in pieces of about this many bytes


class Appends:
    @property
    def append_limit(self) -> int | None:
        """The largest message the server takes (APPENDLIMIT=n, RFC 7889), None when it names none."""
        for cap in self.capabilities:
            if cap.startswith("APPENDLIMIT="):
                value = cap.partition("=")[2]
                return int(value) if value.isdigit() else None
        return None

    def send_appends(self, raw_name: str, messages: list[tuple[bytes, Iterable[str], str | None]]) -> tuple:
        """Send the APPENDs of ``messages`` (data, flags, IMAP date) to one folder, every literal
        non-synchronizing (needs LITERAL+, RFC 7888). With MULTIAPPEND (RFC 3502) one command carries
        them all, one transaction on the server; else one APPEND each (RFC 3501 5.5). Their answers
        are read by read_appends(ticket); more commands may be sent before, read_appends of each
        ticket in the order they were sent."""
        if not self.has("LITERAL+"):
            raise ProtocolError(f"account '{self.account.name}': send_appends needs LITERAL+, which the server "
                                f"does not offer")
        if self._ahead is not None:
            self._drop_ahead()
        multi = self.has("MULTIAPPEND")
        tags: list[bytes] = []
        with mapped_errors(self.account, f"appending to {raw_name!r}"):
            try:
                pending: list[bytes] = []
                size = 0
                for i, (data, flags, when) in enumerate(messages):
                    line = append_command(raw_name, len(data), flags, when, literal_plus=True)
                    if not multi or i == 0:
                        tags.append(new_tag())
                        pending.append(tags[-1] + b" " + line)
                    else:  # the next message of the same APPEND: its flags, date and literal
                        pending.append(b" " + line[line.index(b" (", len(b"APPEND ")) + 1:])
                    pending += [b"\r\n", data]
                    if not multi:
                        pending.append(b"\r\n")
                    size += len(data)
                    if size >= APPEND_CHUNK:
                        self.wire.send(b"".join(pending))
                        pending, size = [], 0
                if multi:
                    pending.append(b"\r\n")
                self.wire.send(b"".join(pending))
            except BaseException:
                self.broken = True
                raise
        self.commands += len(tags)
        return raw_name, multi, tags, len(messages)

    def read_appends(self, ticket: tuple) -> list[tuple[int, int] | None | Tagged]:
        """The answers to send_appends' commands. Per message, in order: (uidvalidity, uid) from
        APPENDUID, None for an OK without it, or the Tagged NO/BAD that refused it (a MULTIAPPEND is
        refused whole)."""
        raw_name, multi, tags, count = ticket
        answers = []
        for tag in tags:
            for ev in self._events(b"", f"appending to {raw_name!r}", sent=tag):
                if isinstance(ev, Tagged):
                    answers.append(ev)
        if not multi:
            return [appenduid(t.code) if t.status == "OK" else t for t in answers]
        (tagged,) = answers
        if tagged.status != "OK":
            return [tagged] * count
        uids = appenduids(tagged.code)
        if uids is None or len(uids[1]) != count:
            return [None] * count  # no usable APPENDUID: each copy is looked for by Message-ID
        return [(uids[0], uid) for uid in uids[1]]
