"""A scriptable misbehaving IMAP server on 127.0.0.1, for the faults a real server does not make.

It is an honest, small IMAP4rev1 server over a model of folders and messages (enough of the
grammar the engine speaks, answered in the shapes Dovecot and Cyrus use), until a test scripts a
command to be answered otherwise:

    srv = HostileServer(capabilities=("UIDPLUS",)).start()
    srv.add_folder("INBOX")
    srv.add_message("INBOX", b"Message-ID: <1@x>\\r\\n\\r\\nhello\\r\\n")
    # the next listing leaves UIDs 3 and 4 out: `hook` returns the bytes to send (tagged line
    # included), or None to answer honestly
    srv.script(r"UID FETCH 1:\\* \\(UID FLAGS\\)", lambda s, tag, cmd: s.honest(tag, cmd, hide={3, 4}))
    ...
    srv.stop()

The model (`folders`) is what an honest server holds: a test compares the store with it.

With CONDSTORE (and QRESYNC, RFC 7162) among its capabilities it keeps mod-sequences the way
Dovecot does: every change (a new message, a flag stored, an expunge) takes the folder's next
HIGHESTMODSEQ; SELECT and STATUS give HIGHESTMODSEQ, FETCH gives MODSEQ, UID FETCH takes
(CHANGEDSINCE m), UID STORE takes (UNCHANGEDSINCE m) and answers [MODIFIED set], and a
SELECT ... (QRESYNC (uidvalidity modseq)) answers VANISHED (EARLIER) and the FETCHes of what changed.
Change the model through its methods (add_message, set_flags, expunge) so the modseqs follow.

Owns: its listening socket, one thread per connection, and the model. Must not: import mailsync
(it stands for a server, not for our code) or listen anywhere but 127.0.0.1.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

DATE = "17-Jul-1996 02:44:25 -0700"


def unchangedsince(args: str) -> tuple[int | None, str]:
    """A UID STORE's arguments: (its UNCHANGEDSINCE value or None, the arguments without it)."""
    m = re.match(r"(\S+) \(UNCHANGEDSINCE (\d+)\) (.*)$", args, re.I)
    return (int(m.group(2)), m.group(1) + " " + m.group(3)) if m else (None, args)


@dataclass
class Message:
    uid: int
    body: bytes
    flags: set[str] = field(default_factory=set)
    internaldate: str = DATE
    modseq: int = 1


@dataclass
class Folder:
    raw_name: bytes
    uidvalidity: int
    uidnext: int = 1
    messages: list[Message] = field(default_factory=list)
    list_flags: str = "\\HasNoChildren"
    highestmodseq: int = 1
    expunged: dict[int, int] = field(default_factory=dict)  # UID -> the modseq of its expunge

    def bump(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq

    def by_uid(self, uid: int) -> Message | None:
        return next((m for m in self.messages if m.uid == uid), None)


Hook = Callable[["Session", bytes, str], "bytes | None"]


@dataclass
class _Rule:
    pattern: re.Pattern
    hook: Hook
    times: int | None  # None: every time
    used: int = 0  # how many commands it answered


def _uid_set(text: str, top: int) -> set[int] | Callable[[int], bool]:
    """The members of an IMAP sequence set, with * as ``top``."""
    out: set[int] = set()
    for part in text.split(","):
        a, _, b = part.partition(":")
        lo = top if a == "*" else int(a)
        hi = lo if not b else (top if b == "*" else int(b))
        lo, hi = min(lo, hi), max(lo, hi)
        out.update(range(lo, hi + 1))
    return out


def _tokens(text: str) -> list[str]:
    """Atoms, quoted strings (unquoted) and parenthesised groups (kept whole)."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == " ":
            i += 1
        elif c == '"':
            j, buf = i + 1, []
            while text[j] != '"':
                if text[j] == "\\":
                    j += 1
                buf.append(text[j])
                j += 1
            out.append("".join(buf))
            i = j + 1
        elif c == "(":
            depth, j = 0, i
            while True:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
                if depth == 0:
                    break
            out.append(text[i:j])
            i = j
        else:
            j = text.find(" ", i)
            j = len(text) if j < 0 else j
            out.append(text[i:j])
            i = j
    return out


_SERVED = re.compile(rb"\* \d+ FETCH \(UID (\d+) [^\r\n]*BODY\[\] \{")


def quoted(name: bytes) -> bytes:
    return b'"' + name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class HostileServer:
    session_class: type  # Session, set below; a subclass of the server may answer with its own

    def __init__(self, *, capabilities: tuple[str, ...] = ("UIDPLUS",), delimiter: str = "/") -> None:
        self.capabilities = ("IMAP4rev1",) + tuple(capabilities)
        self.condstore = "CONDSTORE" in capabilities or "QRESYNC" in capabilities
        # the keywords a client may set (PERMANENTFLAGS): None, any ("\*"); a tuple, those alone, and
        # the FLAGS response names them (as Microsoft 365 answers a SELECT)
        self.keywords: tuple[str, ...] | None = None
        self.delimiter = delimiter
        self.folders: dict[bytes, Folder] = {}
        self.lock = threading.RLock()
        self.log: list[str] = []  # every command received, without its tag
        self._rules: list[_Rule] = []
        self._next_validity = 1000
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._stopped = False
        self.password: str | None = None  # when set, LOGIN and AUTHENTICATE PLAIN check it
        self.connections = 0  # sessions accepted
        self.bodies_served: list[tuple[bytes, int]] = []  # (folder, UID) of every whole message sent, in order

    # -- the model --------------------------------------------------------------------------

    def add_folder(self, name: str | bytes, *, uidvalidity: int | None = None) -> Folder:
        raw = name.encode() if isinstance(name, str) else name
        with self.lock:
            if uidvalidity is None:
                self._next_validity += 1
                uidvalidity = self._next_validity
            f = self.folders[raw] = Folder(raw, uidvalidity)
            return f

    def add_message(self, folder: str | bytes, body: bytes, flags: tuple[str, ...] = (),
                    internaldate: str = DATE) -> int:
        raw = folder.encode() if isinstance(folder, str) else folder
        with self.lock:
            f = self.folders[raw]
            uid = f.uidnext
            f.uidnext += 1
            f.messages.append(Message(uid, body, set(flags), internaldate, f.bump()))
            return uid

    def set_flags(self, folder: str | bytes, uid: int, flags: set[str]) -> None:
        """Another client's STORE: the message's flags become ``flags``."""
        raw = folder.encode() if isinstance(folder, str) else folder
        with self.lock:
            f = self.folders[raw]
            m = f.by_uid(uid)
            m.flags = set(flags)
            m.modseq = f.bump()

    def expunge(self, folder: str | bytes, uids) -> None:
        """Another client's expunge of ``uids``."""
        raw = folder.encode() if isinstance(folder, str) else folder
        with self.lock:
            f = self.folders[raw]
            gone = set(uids)
            modseq = f.bump()
            f.messages[:] = [m for m in f.messages if m.uid not in gone]
            f.expunged.update((u, modseq) for u in gone)

    def truth(self, folder: str | bytes = "INBOX") -> dict[int, tuple[frozenset[str], bytes]]:
        """What an honest server holds: uid -> (flags, body)."""
        raw = folder.encode() if isinstance(folder, str) else folder
        with self.lock:
            return {m.uid: (frozenset(m.flags), m.body) for m in self.folders[raw].messages}

    # -- scripting --------------------------------------------------------------------------

    def script(self, pattern: str, hook: Hook | bytes, *, times: int | None = 1) -> None:
        """Answer the next ``times`` commands matching ``pattern`` (a regex searched in the command
        without its tag, case-insensitive) with ``hook(session, tag, command)``: the bytes to send,
        or None for the honest answer. Bytes instead of a hook: sent as they are, with ``{tag}``
        replaced by the tag. Rules are tried in the order they were added."""
        if isinstance(hook, bytes):
            data = hook
            hook = lambda s, tag, cmd: data.replace(b"{tag}", tag)  # noqa: E731
        self._rules.append(_Rule(re.compile(pattern, re.I), hook, times))

    def _scripted(self, command: str) -> Hook | None:
        with self.lock:
            for rule in self._rules:
                if rule.times != 0 and rule.pattern.search(command):
                    if rule.times is not None:
                        rule.times -= 1
                    rule.used += 1
                    return rule.hook
        return None

    # -- running ----------------------------------------------------------------------------

    def start(self) -> "HostileServer":
        t = threading.Thread(target=self._accept, name="hostile-imap", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stopped = True
        self._sock.close()
        for c in list(self._conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def __enter__(self) -> "HostileServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self.connections += 1
            t = threading.Thread(target=self.session_class(self, conn).serve, name="hostile-session", daemon=True)
            t.start()
            self._threads.append(t)


class Session:
    """One client connection: reads commands (with their literals) and answers them."""

    def __init__(self, server: HostileServer, conn: socket.socket) -> None:
        self.server = server
        self.conn = conn
        self.file = conn.makefile("rb")
        self.selected: Folder | None = None
        self.enabled: set[str] = set()

    def send(self, data: bytes) -> None:
        if b"BODY[] {" in data and self.selected is not None:
            served = [(self.selected.raw_name, int(uid)) for uid in _SERVED.findall(data)]
            with self.server.lock:
                self.server.bodies_served.extend(served)
        self.conn.sendall(data)

    def serve(self) -> None:
        try:
            self.send(b"* OK [CAPABILITY " + " ".join(self.server.capabilities).encode() + b"] hostile ready\r\n")
            while True:
                line = self.file.readline()
                if not line:
                    return
                line = line.rstrip(b"\r\n")
                literal = None
                m = re.search(rb"\{(\d+)\}$", line)
                if m:  # one synchronizing literal at the end (APPEND, LOGIN)
                    self.send(b"+ go ahead\r\n")
                    literal = self.file.read(int(m.group(1)))
                    line = line[:m.start()] + self.file.readline().rstrip(b"\r\n")
                tag, _, rest = line.partition(b" ")
                command = rest.decode("utf-8", "surrogateescape")
                self.server.log.append(command)
                self.literal = literal
                hook = self.server._scripted(command)
                try:
                    reply = hook(self, tag, command) if hook is not None else None
                    if reply is None:
                        reply = self.honest(tag, command)
                except Exception as exc:  # a command this model does not understand
                    reply = tag + b" BAD " + repr(exc).encode()[:200] + b"\r\n"
                if reply:
                    self.send(reply)
                if command.upper().startswith("LOGOUT") or reply == b"":
                    return
        except (OSError, ValueError):
            return
        finally:
            try:
                self.conn.close()
            except OSError:
                pass

    # -- honest answers -----------------------------------------------------------------------

    def honest(self, tag: bytes, command: str, **kw) -> bytes:
        """What an honest server answers. ``kw`` bends the answer to a UID FETCH: ``hide`` (UIDs
        left out), ``extra`` (bytes of responses put before the tagged line)."""
        verb, _, args = command.partition(" ")
        verb = verb.upper()
        if verb == "UID":
            sub, _, args = args.partition(" ")
            verb = "UID " + sub.upper()
        with self.server.lock:
            handler = getattr(self, "_" + verb.lower().replace(" ", "_"), None)
            if handler is None:
                return tag + b" BAD unknown command\r\n"
            return handler(tag, args, **kw)

    def _ok(self, tag: bytes, text: str = "done") -> bytes:
        return tag + b" OK " + text.encode() + b"\r\n"

    def _capability(self, tag, args):
        return b"* CAPABILITY " + " ".join(self.server.capabilities).encode() + b"\r\n" + self._ok(tag)

    def _login(self, tag, args):
        toks = _tokens(args)
        if self.server.password is not None and (len(toks) < 2 or toks[1] != self.server.password):
            return tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
        return tag + b" OK [CAPABILITY " + " ".join(self.server.capabilities).encode() + b"] logged in\r\n"

    def _authenticate(self, tag, args):
        import base64

        if args.upper().split()[0] != "PLAIN":
            return tag + b" NO unsupported mechanism\r\n"
        self.send(b"+ \r\n")
        answer = base64.b64decode(self.file.readline().strip())
        _authz, _user, password = answer.split(b"\0")
        if self.server.password is not None and password.decode("utf-8") != self.server.password:
            return tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
        return tag + b" OK [CAPABILITY " + " ".join(self.server.capabilities).encode() + b"] logged in\r\n"

    def _noop(self, tag, args):
        return self._ok(tag)

    def _logout(self, tag, args):
        return b"* BYE logging out\r\n" + self._ok(tag)

    def _enable(self, tag, args):
        known = [c for c in args.upper().split() if c in self.server.capabilities]
        self.enabled.update(known)
        return (b"* ENABLED " + " ".join(known).encode() + b"\r\n" if known else b"") + self._ok(tag)

    def _unselect(self, tag, args):
        self.selected = None
        return self._ok(tag)

    def _list(self, tag, args):
        d = self.server.delimiter.encode()
        out = b"".join(b"* LIST (" + f.list_flags.encode() + b') "' + d + b'" ' + quoted(f.raw_name) + b"\r\n"
                       for f in self.server.folders.values())
        return out + self._ok(tag)

    def _folder(self, token: str) -> Folder | None:
        return self.server.folders.get(token.encode("utf-8", "surrogateescape"))

    def _status(self, tag, args):
        toks = _tokens(args)
        f = self._folder(toks[0])
        if f is None:
            return tag + b" NO [NONEXISTENT] no such mailbox\r\n"
        modseq = b" HIGHESTMODSEQ %d" % f.highestmodseq if "HIGHESTMODSEQ" in toks[-1].upper() else b""
        return (b"* STATUS " + quoted(f.raw_name)
                + b" (MESSAGES %d UIDNEXT %d UIDVALIDITY %d%s)\r\n" % (len(f.messages), f.uidnext, f.uidvalidity,
                                                                       modseq)
                + self._ok(tag))

    def select_answer(self, f: Folder, *, exists: int | None = None, uidvalidity: int | None = None,
                      uidnext: int | None = None) -> bytes:
        """The untagged part of a SELECT, each number replaceable."""
        kw = self.server.keywords
        extra = b" \\*" if kw is None else b"".join(b" " + k.encode() for k in kw)
        return (b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft" + (b"" if kw is None else extra) + b")\r\n"
                b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft" + extra + b")] ok\r\n"
                b"* %d EXISTS\r\n* 0 RECENT\r\n" % (len(f.messages) if exists is None else exists)
                + b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % (f.uidvalidity if uidvalidity is None else uidvalidity)
                + b"* OK [UIDNEXT %d] predicted next UID\r\n" % (f.uidnext if uidnext is None else uidnext)
                + (b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % f.highestmodseq if self.server.condstore else b""))

    def _select(self, tag, args, vanish: set[int] = frozenset(), **kw):
        """SELECT, with (QRESYNC (uidvalidity modseq)) answered as Dovecot does: VANISHED (EARLIER)
        of what was expunged since modseq (and ``vanish``, UIDs said to be gone that are not), then
        the FETCHes of what changed since."""
        toks = _tokens(args)
        f = self._folder(toks[0])
        if f is None:
            self.selected = None
            return tag + b" NO [NONEXISTENT] no such mailbox\r\n"
        self.selected = f
        out = self.select_answer(f, **kw)
        params = toks[1].upper() if len(toks) > 1 else ""
        if params.startswith("(QRESYNC") and "QRESYNC" in self.enabled:
            validity, since = (int(x) for x in params[len("(QRESYNC ("):].split(")")[0].split()[:2])
            if validity == f.uidvalidity:
                gone = sorted({u for u, m in f.expunged.items() if m > since} | set(vanish))
                if gone:
                    out += b"* VANISHED (EARLIER) " + ",".join(map(str, gone)).encode() + b"\r\n"
                for seq, m in enumerate(f.messages, 1):
                    if m.modseq > since and m.uid not in vanish:
                        out += self.fetch_response(seq, m, "UID FLAGS MODSEQ")
        return out + tag + b" OK [READ-WRITE] selected\r\n"

    _examine = _select

    def _create(self, tag, args):
        name = _tokens(args)[0].encode("utf-8", "surrogateescape")
        if name in self.server.folders:
            return tag + b" NO [ALREADYEXISTS] exists\r\n"
        self.server.add_folder(name)
        return self._ok(tag)

    def _delete(self, tag, args):
        name = _tokens(args)[0].encode("utf-8", "surrogateescape")
        if self.server.folders.pop(name, None) is None:
            return tag + b" NO [NONEXISTENT] no such mailbox\r\n"
        return self._ok(tag)

    def _rename(self, tag, args):
        old, new = (t.encode("utf-8", "surrogateescape") for t in _tokens(args)[:2])
        f = self.server.folders.pop(old)
        f.raw_name = new
        self.server.folders[new] = f
        return self._ok(tag)

    def _append(self, tag, args, appenduid: tuple[int, int] | None = None):
        toks = _tokens(args)
        f = self._folder(toks[0])
        if f is None:
            return tag + b" NO [TRYCREATE] no such mailbox\r\n"
        flags = tuple(toks[1][1:-1].split()) if len(toks) > 1 and toks[1].startswith("(") else ()
        uid = self.server.add_message(f.raw_name, self.literal or b"", flags)
        validity, uid = appenduid or (f.uidvalidity, uid)
        if "UIDPLUS" in self.server.capabilities:
            return tag + b" OK [APPENDUID %d %d] appended\r\n" % (validity, uid)
        return self._ok(tag, "appended")

    def _uids(self, text: str) -> list[Message]:
        f = self.selected
        top = max((m.uid for m in f.messages), default=0)
        if text.strip() == "*" or text.endswith(":*"):
            top = max(top, 1)
        wanted = _uid_set(text, top)
        return [m for m in f.messages if m.uid in wanted]

    def fetch_response(self, seq: int, m: Message, items: str) -> bytes:
        """One FETCH response with the items asked for, in the order Dovecot sends them."""
        parts: list[bytes] = [b"UID %d" % m.uid]
        up = items.upper()
        if "FLAGS" in up.replace("HEADER.FIELDS", ""):
            parts.append(b"FLAGS (" + " ".join(sorted(m.flags)).encode() + b")")
        if "INTERNALDATE" in up:
            parts.append(b'INTERNALDATE "' + m.internaldate.encode() + b'"')
        if "RFC822.SIZE" in up:
            parts.append(b"RFC822.SIZE %d" % len(m.body))
        if "MODSEQ" in up and self.server.condstore:
            parts.append(b"MODSEQ (%d)" % m.modseq)
        if "BODY.PEEK[HEADER]" in up or "BODY[HEADER]" in up:  # the whole header section (max_size)
            head = m.body.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            parts.append(b"BODY[HEADER] {%d}\r\n" % len(head) + head)
        elif "HEADER.FIELDS" in up:
            head = b""
            for line in m.body.split(b"\r\n"):
                if not line:
                    break
                if line.lower().startswith(b"message-id:"):
                    head += line + b"\r\n"
            head += b"\r\n"
            parts.append(b"BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}\r\n" % len(head) + head)
        elif "BODY.PEEK[]" in up or "BODY[]" in up:
            parts.append(b"BODY[] {%d}\r\n" % len(m.body) + m.body)
        return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"

    def _uid_fetch(self, tag, args, hide: set[int] = frozenset(), extra: bytes = b""):
        uid_set, _, items = args.partition(" ")
        since = 0
        m_since = re.search(r"\(CHANGEDSINCE (\d+)\)$", items, re.I)
        if m_since:  # RFC 7162 3.1.4.1: only what changed since, with MODSEQ
            since = int(m_since.group(1))
            items = items[:m_since.start()].strip()[:-1] + " MODSEQ)"
        f = self.selected
        out = []
        wanted = {m.uid for m in self._uids(uid_set)}
        for seq, m in enumerate(f.messages, 1):
            if m.uid in wanted and m.uid not in hide and m.modseq > since:
                out.append(self.fetch_response(seq, m, items))
        return b"".join(out) + extra + self._ok(tag)

    def _uid_search(self, tag, args, hide: set[int] = frozenset()):
        f = self.selected
        crit = args
        esearch = crit.upper().startswith("RETURN")
        if esearch:
            crit = crit.split(")", 1)[1].strip()
        up = crit.upper()
        system = {"SEEN": "\\Seen", "ANSWERED": "\\Answered", "FLAGGED": "\\Flagged", "DRAFT": "\\Draft"}
        if up in system:
            found = [m.uid for m in f.messages if m.uid not in hide and system[up] in m.flags]
        elif up.startswith("KEYWORD "):
            found = [m.uid for m in f.messages if m.uid not in hide and crit.split()[1] in m.flags]
        elif up == "ALL":
            found = [m.uid for m in f.messages if m.uid not in hide]
        elif up.startswith("UID "):
            found = [m.uid for m in self._uids(crit[4:].strip())]
        elif up == "DELETED":
            found = [m.uid for m in f.messages if "\\Deleted" in m.flags]
        elif re.fullmatch(r"(NOT )?LARGER \d+", up):  # max_size
            n = int(up.split()[-1])
            found = [m.uid for m in f.messages if m.uid not in hide and (len(m.body) > n) != up.startswith("NOT")]
        elif up.startswith("HEADER MESSAGE-ID"):
            mid = _tokens(crit)[2].encode()
            found = [m.uid for m in f.messages if mid in m.body.split(b"\r\n\r\n", 1)[0]]
        else:
            return tag + b" BAD unsupported search\r\n"
        if esearch and "ESEARCH" in self.server.capabilities:  # RFC 4731, UIDs one by one (a valid set)
            return (b'* ESEARCH (TAG "' + tag + b'") UID' + (b" ALL " + b",".join(b"%d" % u for u in found)
                                                            if found else b"") + b"\r\n" + self._ok(tag))
        return b"* SEARCH" + b"".join(b" %d" % u for u in found) + b"\r\n" + self._ok(tag)

    def _uid_store(self, tag, args):
        unchanged, args = unchangedsince(args)
        uid_set, op, flags = args.split(" ", 2)
        flags = set(flags.strip("()").split())
        out, refused = [], []
        f = self.selected
        for seq, m in enumerate(f.messages, 1):
            if m in self._uids(uid_set):
                if unchanged is not None and m.modseq > unchanged:
                    refused.append(m.uid)
                    continue
                if op.upper().startswith("+"):
                    m.flags |= flags
                elif op.upper().startswith("-"):
                    m.flags -= flags
                else:
                    m.flags = set(flags)
                if self.server.condstore:
                    m.modseq = f.bump()
                mod = b" MODSEQ (%d)" % m.modseq if self.server.condstore else b""
                if not op.upper().endswith(".SILENT"):
                    out.append(b"* %d FETCH (UID %d FLAGS (%s)%s)\r\n"
                               % (seq, m.uid, " ".join(sorted(m.flags)).encode(), mod))
                elif mod:  # RFC 7162 3.1.3: .SILENT leaves FLAGS out, not the new MODSEQ
                    out.append(b"* %d FETCH (UID %d%s)\r\n" % (seq, m.uid, mod))
        if refused:
            return b"".join(out) + tag + b" OK [MODIFIED " + ",".join(map(str, refused)).encode() + b"] done\r\n"
        return b"".join(out) + self._ok(tag)

    def _expunge_where(self, keep: Callable[[Message], bool]) -> bytes:
        f = self.selected
        out, seq = [], 1
        gone = [m for m in f.messages if not keep(m)]
        if not gone:
            return b""
        modseq = f.bump()
        qresync = "QRESYNC" in self.enabled
        for m in list(f.messages):
            if keep(m):
                seq += 1
            else:
                f.messages.remove(m)
                f.expunged[m.uid] = modseq
                if not qresync:
                    out.append(b"* %d EXPUNGE\r\n" % seq)
        if qresync:  # a QRESYNC client is told with VANISHED (RFC 7162 3.2.10); Dovecot does once ENABLEd
            out.append(b"* VANISHED " + ",".join(str(m.uid) for m in gone).encode() + b"\r\n")
        return b"".join(out)

    def _uid_expunge(self, tag, args):
        uids = {m.uid for m in self._uids(args)}
        return self._expunge_where(lambda m: not ("\\Deleted" in m.flags and m.uid in uids)) + self._ok(tag)

    def _expunge(self, tag, args):
        return self._expunge_where(lambda m: "\\Deleted" not in m.flags) + self._ok(tag)

    def _uid_copy(self, tag, args, move: bool = False, copyuid: tuple[int, list[int]] | None = None):
        """UID COPY (MOVE); ``copyuid`` (uidvalidity, destination UIDs) replaces what COPYUID says."""
        uid_set, dest = args.split(" ", 1)
        d = self._folder(_tokens(dest)[0])
        if d is None:
            return tag + b" NO [TRYCREATE] no such mailbox\r\n"
        src, dst = [], []
        for m in self._uids(uid_set):
            src.append(m.uid)
            dst.append(self.server.add_message(d.raw_name, m.body, tuple(m.flags), m.internaldate))
        code = b""
        validity, dst = copyuid or (d.uidvalidity, dst)
        if src and "UIDPLUS" in self.server.capabilities:
            code = b"[COPYUID %d %s %s] " % (validity, ",".join(map(str, src)).encode(),
                                             ",".join(map(str, dst)).encode())
        if move:  # RFC 6851 and Dovecot: COPYUID in an untagged OK, then the expunges
            moved = set(src)
            untagged = (b"* OK " + code + b"Moved UIDs.\r\n") if code else b""
            return untagged + self._expunge_where(lambda m: m.uid not in moved) + tag + b" OK Move completed.\r\n"
        return tag + b" OK " + code + b"done\r\n"

    def _uid_move(self, tag, args, **kw):
        return self._uid_copy(tag, args, move=True, **kw)


HostileServer.session_class = Session
