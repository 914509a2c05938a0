"""A scriptable fake Gmail on 127.0.0.1: the hostile server (tests/hostile_server.py) with Gmail's
model of mail, for what no Dovecot can show: one message in many folders.

Written from Google's documentation of its IMAP extensions (X-GM-EXT-1) and of Gmail's IMAP
settings, where a real Gmail cannot be reached from a test:
- Gmail keeps each message once, with labels; IMAP shows one folder per label, and every message
  (but those in Trash and Spam) in ``[Gmail]/All Mail`` (special-use \\All). A message with three
  labels is listed, with a UID of each folder's own, in four folders.
- FETCH gives X-GM-MSGID (the message's id, the same in every folder), X-GM-THRID (its thread's)
  and X-GM-LABELS, less the label of the selected folder itself, e.g. ``* 1 FETCH (X-GM-THRID 1278455344230334865 X-GM-MSGID 1278455344230334865
  X-GM-LABELS (\\Inbox \\Sent Important "Muy Importante") UID 4 FLAGS (\\Seen))``.
- ``UID STORE n +X-GM-LABELS (foo)`` (and ``-X-GM-LABELS``, ``X-GM-LABELS``, ``.SILENT``) changes the
  labels, answered with the new X-GM-LABELS; the message enters or leaves the label folders.
- Flags belong to the message: \\Seen set in INBOX is \\Seen in All Mail too. Every change takes the
  next HIGHESTMODSEQ of each folder the message is in (CONDSTORE; Gmail has no QRESYNC nor NOTIFY).
- Deleting, with Gmail's default settings ("auto-expunge on", "archive the message" when it is
  expunged from the last visible folder): an expunge in a label folder (INBOX too) removes that label
  only; the message stays in All Mail. An expunge in All Mail archives, that is keeps, the message.
  A message moved (or copied) into ``[Gmail]/Trash`` loses its labels and leaves every other folder,
  All Mail included; an expunge in Trash or Spam deletes it for ever. COPY into a label folder adds the
  label (the same message, no new one); APPEND makes a new message with that folder's label.

The server counts what it sent of message bodies (``body_bytes``, ``bodies_sent``, and per message
id in ``downloads``) so that a test can assert what crossed the network.

Owns: that model, kept in the HostileServer's folders (each folder's Message shares the flag set of
its GMail). Must not: import mailsync, or listen anywhere but 127.0.0.1.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field

from hostile_server import DATE, Folder, HostileServer, Message, Session, _tokens, quoted, unchangedsince

ALL_MAIL = "[Gmail]/All Mail"
TRASH = "[Gmail]/Trash"
SPAM = "[Gmail]/Spam"
# folder -> (its special-use flag, the label that puts a message in it); Google's LIST transcript
SYSTEM = {
    "INBOX": ("", "\\Inbox"),
    ALL_MAIL: ("\\All", None),
    "[Gmail]/Drafts": ("\\Drafts", "\\Draft"),
    "[Gmail]/Important": ("\\Important", "\\Important"),
    "[Gmail]/Sent Mail": ("\\Sent", "\\Sent"),
    SPAM: ("\\Junk", "\\Spam"),
    "[Gmail]/Starred": ("\\Flagged", "\\Starred"),
    TRASH: ("\\Trash", "\\Trash"),
}
# Gmail's capabilities less what this model does not answer (LIST-STATUS, ESEARCH, COMPRESS, ...)
CAPABILITIES = ("UNSELECT", "IDLE", "NAMESPACE", "ID", "XLIST", "CHILDREN", "X-GM-EXT-1", "UIDPLUS",
                "ENABLE", "MOVE", "CONDSTORE", "SPECIAL-USE")
_ATOM = re.compile(r"\\?[A-Za-z0-9$_.-]+")


@dataclass
class GMail:
    """One Gmail message: what every folder showing it shares."""

    msgid: int
    thrid: int
    body: bytes
    flags: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    internaldate: str = DATE


class GmailServer(HostileServer):
    def __init__(self, *, labels: tuple[str, ...] = (), capabilities: tuple[str, ...] = CAPABILITIES,
                 label_modseq: bool = True) -> None:
        super().__init__(capabilities=capabilities)
        # Does a label change move the message's MODSEQ in the folders still showing it? (CONDSTORE
        # says a change of its data does; Google does not document it for labels: both are tested.)
        self.label_modseq = label_modseq
        self.mail: dict[int, GMail] = {}
        self._ids = itertools.count(1278455344230334865, 7919)
        self.body_bytes = 0  # bytes of message bodies sent (BODY[] literals)
        self.bodies_sent = 0
        self.downloads: Counter[int] = Counter()  # X-GM-MSGID -> bodies of it sent
        for name in SYSTEM:
            self.add_folder(name)
        gm = self.add_folder("[Gmail]")
        gm.list_flags = "\\Noselect \\HasChildren"
        for name in labels:
            self.add_folder(name)
        for name, (use, _) in SYSTEM.items():
            self.folders[name.encode()].list_flags = "\\HasNoChildren" + (" " + use if use else "")

    # -- the model ------------------------------------------------------------------------------

    def label_of(self, folder: str) -> str | None:
        return SYSTEM[folder][1] if folder in SYSTEM else folder

    def shows(self, folder: str, g: GMail) -> bool:
        """Does ``folder`` list ``g``?"""
        gone = bool(g.labels & {"\\Trash", "\\Spam"})
        if folder == ALL_MAIL:
            return not gone
        if folder == "[Gmail]":
            return False
        label = self.label_of(folder)
        if gone and label not in ("\\Trash", "\\Spam"):
            return False
        return label in g.labels

    def add_mail(self, body: bytes, labels=(), flags=(), thread: int | None = None) -> int:
        """A message arrives with these labels (``\\Inbox`` for one in INBOX); its X-GM-MSGID."""
        with self.lock:
            msgid = next(self._ids)
            self.mail[msgid] = GMail(msgid, thread or msgid, body, set(flags), set(labels))
            self.refresh(self.mail[msgid])
            return msgid

    def set_labels(self, msgid: int, labels) -> None:
        """Another client (the web interface) gives the message these labels."""
        with self.lock:
            g = self.mail[msgid]
            g.labels = set(labels)
            self.refresh(g, touched=self.label_modseq)

    def set_mail_flags(self, msgid: int, flags) -> None:
        with self.lock:
            g = self.mail[msgid]
            g.flags.clear()
            g.flags.update(flags)
            self.refresh(g, touched=True)

    def views(self, g: GMail) -> list[tuple[Folder, Message]]:
        return [(f, m) for f in self.folders.values() for m in f.messages if getattr(m, "gm", None) is g]

    def refresh(self, g: GMail, touched: bool = False) -> None:
        """Put ``g`` in the folders that show it (a label new to the account gets its folder),
        take it out of the others; ``touched``: it changed, so each folder it stays in gives it the
        next mod-sequence."""
        with self.lock:
            for name in g.labels - SYSTEM_LABELS:
                if name.encode() not in self.folders:
                    self.add_folder(name)
            for f in self.folders.values():
                name = f.raw_name.decode()
                m = next((m for m in f.messages if getattr(m, "gm", None) is g), None)
                want = g.msgid in self.mail and self.shows(name, g)
                if m is not None and not want:
                    modseq = f.bump()
                    f.messages.remove(m)
                    f.expunged[m.uid] = modseq
                elif m is None and want:
                    m = Message(f.uidnext, g.body, g.flags, g.internaldate, f.bump())
                    m.gm = g
                    f.uidnext += 1
                    f.messages.append(m)
                elif m is not None and touched:
                    m.modseq = f.bump()

    def delete_forever(self, g: GMail) -> None:
        with self.lock:
            del self.mail[g.msgid]
            self.refresh(g)

    def where(self, msgid: int) -> dict[str, int]:
        """Folder -> UID of the message in each folder that shows it."""
        with self.lock:
            return {f.raw_name.decode(): m.uid for f, m in self.views(self.mail[msgid])}


SYSTEM_LABELS = {label for _, label in SYSTEM.values() if label}


def label_list(labels) -> bytes:
    return b"(" + b" ".join(x.encode() if _ATOM.fullmatch(x) else quoted(x.encode()) for x in sorted(labels)) + b")"


class GmailSession(Session):
    server: GmailServer

    def _name(self) -> str:
        return self.selected.raw_name.decode()

    def shown_labels(self, g: GMail) -> set[str]:
        """X-GM-LABELS as Gmail answers it: without the label of the selected folder (reported by
        clients since 2012; the message is in that folder, so the label goes without saying)."""
        return g.labels - {self.server.label_of(self._name())}

    def fetch_response(self, seq: int, m: Message, items: str) -> bytes:
        """Gmail puts its own items first: ``* 1 FETCH (X-GM-MSGID n X-GM-LABELS (...) UID 4 ...)``."""
        out = super().fetch_response(seq, m, items)
        g: GMail = m.gm
        up = items.upper()
        gm = b""
        if "X-GM-THRID" in up:
            gm += b"X-GM-THRID %d " % g.thrid
        if "X-GM-MSGID" in up:
            gm += b"X-GM-MSGID %d " % g.msgid
        if "X-GM-LABELS" in up:
            gm += b"X-GM-LABELS " + label_list(self.shown_labels(g)) + b" "
        if ("BODY.PEEK[]" in up or "BODY[]" in up) and "HEADER" not in up:
            self.server.body_bytes += len(m.body)
            self.server.bodies_sent += 1
            self.server.downloads[g.msgid] += 1
        head = b"* %d FETCH (" % seq
        return head + gm + out[len(head):]

    def _uid_store(self, tag, args):
        unchanged, args = unchangedsince(args)
        uid_set, op, rest = args.split(" ", 2)
        names = [t for t in _tokens(rest.strip()[1:-1])]
        is_labels = "X-GM-LABELS" in op.upper()
        silent = op.upper().endswith(".SILENT")
        out, refused = [], []
        for m in list(self._uids(uid_set)):
            g: GMail = m.gm
            if unchanged is not None and m.modseq > unchanged:
                refused.append(m.uid)
                continue
            target = g.labels if is_labels else g.flags
            new = set(target)
            if op.startswith("+"):
                new |= set(names)
            elif op.startswith("-"):
                new -= set(names)
            else:
                new = set(names)
            if is_labels:
                g.labels = new
            else:
                g.flags.clear()
                g.flags.update(new)
            self.server.refresh(g, touched=True)
            if not silent and m in self.selected.messages:
                seq = self.selected.messages.index(m) + 1
                what = (b"X-GM-LABELS " + label_list(self.shown_labels(g))) if is_labels else \
                    (b"FLAGS (" + " ".join(sorted(g.flags)).encode() + b")")
                out.append(b"* %d FETCH (%s UID %d MODSEQ (%d))\r\n" % (seq, what, m.uid, m.modseq))
        code = (b"[MODIFIED " + ",".join(map(str, refused)).encode() + b"] ") if refused else b""
        return b"".join(out) + tag + b" OK " + code + b"STORE (Success)\r\n"

    def _expunge_where(self, keep) -> bytes:
        """Gmail's expunge: of a label folder, the label goes; of All Mail, the message is kept
        (archived); of Trash or Spam, it is deleted for ever. The EXPUNGEs name what left this folder."""
        f = self.selected
        name = self._name()
        seqs = [seq for seq, m in enumerate(f.messages, 1) if not keep(m)]
        gone = [m for m in f.messages if not keep(m)]
        out = []
        for m in gone:
            g: GMail = m.gm
            g.flags.discard("\\Deleted")
            if name in (TRASH, SPAM):
                self.server.delete_forever(g)
            elif name != ALL_MAIL:
                g.labels.discard(self.server.label_of(name))
                self.server.refresh(g, touched=True)
        for seq in sorted(seqs, reverse=True):
            out.append(b"* %d EXPUNGE\r\n" % seq)
        return b"".join(out) if name != ALL_MAIL else b""

    def _uid_copy(self, tag, args, move: bool = False, copyuid=None):
        """COPY into a label folder adds the label; into Trash, trashes; MOVE also takes the
        source folder's label away. COPYUID names the message's UID in the destination."""
        uid_set, dest = args.split(" ", 1)
        dname = _tokens(dest)[0]
        d = self._folder(dname)
        if d is None:
            return tag + b" NO [TRYCREATE] no such mailbox\r\n"
        src, dst = [], []
        here = self._name()
        seq_of = {m.uid: seq for seq, m in enumerate(self.selected.messages, 1)}
        for m in list(self._uids(uid_set)):
            g: GMail = m.gm
            src.append(m.uid)
            label = self.server.label_of(dname)
            if dname == TRASH:
                g.labels = {"\\Trash"}
            elif label is not None:
                g.labels.discard("\\Trash")
                g.labels.add(label)
            if move and here not in (ALL_MAIL, TRASH) and dname != TRASH:
                g.labels.discard(self.server.label_of(here))
            self.server.refresh(g, touched=True)
            dst.append(next(v.uid for v in d.messages if v.gm is g))
        code = b"[COPYUID %d %s %s] " % (d.uidvalidity, ",".join(map(str, src)).encode(),
                                         ",".join(map(str, dst)).encode()) if src else b""
        if move:
            left = [seq_of[u] for u in src if self.selected.by_uid(u) is None]
            untagged = (b"* OK " + code + b"Moved UIDs.\r\n") if code else b""
            return untagged + b"".join(b"* %d EXPUNGE\r\n" % s for s in sorted(left, reverse=True)) + \
                tag + b" OK Move completed.\r\n"
        return tag + b" OK " + code + b"done\r\n"

    def _append(self, tag, args, appenduid=None):
        toks = _tokens(args)
        f = self._folder(toks[0])
        if f is None:
            return tag + b" NO [TRYCREATE] no such mailbox\r\n"
        flags = tuple(toks[1][1:-1].split()) if len(toks) > 1 and toks[1].startswith("(") else ()
        name = f.raw_name.decode()
        label = self.server.label_of(name)
        msgid = self.server.add_mail(self.literal or b"", labels=(label,) if label else (), flags=flags)
        uid = self.server.where(msgid)[name]
        return tag + b" OK [APPENDUID %d %d] (Success)\r\n" % (f.uidvalidity, uid)


GmailServer.session_class = GmailSession
