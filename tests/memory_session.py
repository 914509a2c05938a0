"""An in-memory IMAP session (mailsync.sync.session.ImapSession) over a server model held in Python, so
the engine can be driven without sockets, beside the tests against real servers. It keeps the RFC's
invariants the engine relies on (UIDs ascend and are never reused within a UIDVALIDITY, every change
raises the folder's HIGHESTMODSEQ, UNCHANGEDSINCE refuses a message changed since) and nothing of any
server's quirks: those are what Dovecot, Cyrus, Courier and the hostile server are for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailsync.imap.commands import CopyUids, RemoteFolder, SelectInfo
from mailsync.imap.responses import FetchItem
from mailsync.sync.message import message_id

DATE = "07-Dec-2026 10:00:00 +0000"


@dataclass
class Message:
    body: bytes
    flags: set[str]
    modseq: int


@dataclass
class Folder:
    uidvalidity: int
    uidnext: int = 1
    modseq: int = 1
    messages: dict[int, Message] = field(default_factory=dict)


class MemoryServer:
    """The truth: folders of messages. Change it directly to play another client."""

    def __init__(self) -> None:
        self.folders: dict[str, Folder] = {}
        self._validity = 1000

    def folder(self, name: str) -> Folder:
        if name not in self.folders:
            self._validity += 1
            self.folders[name] = Folder(self._validity)
        return self.folders[name]

    def add(self, name: str, body: bytes, flags=()) -> int:
        f = self.folder(name)
        f.modseq += 1
        uid = f.uidnext
        f.messages[uid] = Message(body, set(flags), f.modseq)
        f.uidnext += 1
        return uid

    def set_flags(self, name: str, uid: int, flags) -> None:
        f = self.folders[name]
        f.modseq += 1
        f.messages[uid].flags, f.messages[uid].modseq = set(flags), f.modseq

    def expunge(self, name: str, uid: int) -> None:
        f = self.folders[name]
        f.modseq += 1
        del f.messages[uid]

    def truth(self, name: str) -> dict[int, tuple[frozenset[str], bytes]]:
        return {uid: (frozenset(m.flags), m.body) for uid, m in self.folders[name].messages.items()}


def _uids(uid_set: str, top: int) -> set[int]:
    out: set[int] = set()
    for part in uid_set.split(","):
        lo, _, hi = part.partition(":")
        a = top if lo == "*" else int(lo)
        b = a if not hi else (top if hi == "*" else int(hi))
        out.update(range(min(a, b), max(a, b) + 1))
    return out


class MemorySession:
    """One logged-in session on a MemoryServer, with CONDSTORE, LIST-STATUS and UIDPLUS."""

    capabilities = frozenset({"IMAP4REV1", "CONDSTORE", "LIST-STATUS", "UIDPLUS", "MOVE", "ENABLE"})

    def __init__(self, server: MemoryServer) -> None:
        self.server = server
        self.broken = False
        self.exists: int | None = None
        self.unlisted: list[str] = []
        self.commands = self.bytes_fetched = self.bodies_fetched = 0
        self.selected: str | None = None
        self.log: list[str] = []

    def _count(self, what: str) -> None:
        self.commands += 1
        self.log.append(what)

    @property
    def condstore(self) -> bool:
        return True

    @property
    def qresync(self) -> bool:
        return False

    @property
    def append_limit(self) -> int | None:
        return None

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    def _status(self, f: Folder) -> dict[str, int]:
        return {"MESSAGES": len(f.messages), "UIDNEXT": f.uidnext, "UIDVALIDITY": f.uidvalidity,
                "HIGHESTMODSEQ": f.modseq}

    def list_folders(self, *, with_status: bool = True, handed: bool = False) -> list[RemoteFolder]:
        self._count("LIST")
        return [RemoteFolder(name, (), "/", self._status(f) if with_status else None)
                for name, f in self.server.folders.items()]

    def status_reply(self, raw_name: str, items: str | None = None):
        self._count("STATUS")
        return self._status(self.server.folders[raw_name]), None

    def create(self, raw_name: str) -> bool:
        self._count("CREATE")
        if raw_name in self.server.folders:
            return False
        self.server.folder(raw_name)
        return True

    def delete(self, raw_name: str) -> bool:
        self._count("DELETE")
        return self.server.folders.pop(raw_name, None) is not None

    def rename(self, old: str, new: str) -> None:
        self._count("RENAME")
        self.server.folders[new] = self.server.folders.pop(old)

    def select(self, raw_name: str, *, readonly: bool = False, qresync=None) -> SelectInfo:
        self._count("EXAMINE" if readonly else "SELECT")
        f = self.server.folders[raw_name]
        self.selected, self.exists = raw_name, len(f.messages)
        return SelectInfo(f.uidvalidity, f.uidnext, len(f.messages), f.modseq)

    def select_with_headers(self, raw_name: str, *, qresync=None, uid_from: int):
        info = self.select(raw_name, qresync=qresync)
        self._count("UID FETCH HEADERS")
        return info, {u: self._item(s, u, m, header=True) for s, u, m in self._each(self._folder().messages)
                      if u >= uid_from}

    def _folder(self) -> Folder:
        return self.server.folders[self.selected]

    def _item(self, seq: int, uid: int, m: Message, *, body: bool = False, header: bool = False) -> FetchItem:
        mid = message_id(m.body)
        return FetchItem(seq, uid, tuple(sorted(m.flags)), DATE, len(m.body), m.body if body else None,
                         f"Message-ID: {mid}\r\n\r\n".encode() if header and mid else (b"\r\n" if header else None),
                         m.modseq)

    def _each(self, uids) -> list[tuple[int, int, Message]]:
        f = self._folder()
        order = sorted(f.messages)
        wanted = set(uids)
        return [(order.index(u) + 1, u, f.messages[u]) for u in order if u in wanted]

    def uid_flags(self, uid_set: str = "1:*", *, changedsince: int | None = None) -> dict[int, FetchItem]:
        self._count("UID FETCH FLAGS")
        f = self._folder()
        uids = _uids(uid_set, max(f.messages, default=0))
        return {u: self._item(s, u, m) for s, u, m in self._each(uids)
                if changedsince is None or m.modseq > changedsince}

    def uid_search(self, criteria: str) -> list[int]:
        self._count("UID SEARCH")
        f = self._folder()
        if criteria == "ALL":
            return sorted(f.messages)
        if criteria == "DELETED":
            return sorted(u for u, m in f.messages.items() if "\\Deleted" in m.flags)
        raise NotImplementedError(criteria)

    def search_message_id(self, mid: str) -> list[int]:
        self._count("UID SEARCH")
        return sorted(u for u, m in self._folder().messages.items() if message_id(m.body) == mid)

    def fetch_headers(self, uids) -> dict[int, FetchItem]:
        self._count("UID FETCH HEADERS")
        return {u: self._item(s, u, m, header=True) for s, u, m in self._each(uids)}

    def fetch_messages(self, uids):
        self._count("UID FETCH BODY")
        for s, u, m in self._each(uids):
            self.bytes_fetched += len(m.body)
            self.bodies_fetched += 1
            yield self._item(s, u, m, body=True)

    def fetch_all_messages(self, *, into=None, ahead=None):
        return self.fetch_messages(list(self._folder().messages))

    def uid_store(self, uids, op: str, flags, *, unchangedsince: int | None = None):
        self._count("UID STORE")
        f = self._folder()
        answered, refused = {}, []
        for s, u, m in self._each(uids):
            if unchangedsince is not None and m.modseq > unchangedsince:
                refused.append(u)
                continue
            given = set(flags)
            m.flags = (m.flags | given if op.startswith("+") else m.flags - given if op.startswith("-") else given)
            f.modseq += 1
            m.modseq = f.modseq
            answered[u] = self._item(s, u, m)
        return answered, refused

    def uid_copy(self, uids, dest: str, *, move: bool = False) -> CopyUids:
        self._count("UID MOVE" if move else "UID COPY")
        src, to = self._folder(), self.server.folders[dest]
        pairs = {}
        for _s, u, m in self._each(uids):
            pairs[u] = self.server.add(dest, m.body, m.flags)
            if move:
                src.modseq += 1
                del src.messages[u]
        return CopyUids(pairs, uidvalidity=to.uidvalidity)

    def uid_expunge(self, uids) -> None:
        self._count("UID EXPUNGE")
        f = self._folder()
        for u in uids:
            if u in f.messages and "\\Deleted" in f.messages[u].flags:
                f.modseq += 1
                del f.messages[u]

    def append(self, raw_name: str, data: bytes, flags=(), internaldate=None):
        self._count("APPEND")
        uid = self.server.add(raw_name, data, flags)
        return self.server.folders[raw_name].uidvalidity, uid

    def logout(self) -> None:
        self.selected = None
