"""Writing mail straight into a throwaway Dovecot's Maildirs, for fast corpus loading (a mixin of
DovecotServer).

Owns: write_message and load (Maildir files named so that Dovecot gives UIDs in write order, system
flags as info letters, keywords in dovecot-keywords, INTERNALDATE as the file's mtime). Must not:
import anything but the standard library (it runs under a bare ``python3``), or start or stop Dovecot.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path




_SYSTEM_FLAGS = {"\\answered": "R", "\\deleted": "T", "\\draft": "D", "\\flagged": "F", "\\seen": "S"}
_ATOM_SPECIALS = set('(){ %*"\\]') | {chr(c) for c in range(0, 32)} | {chr(127)}


def encode_mutf7(name: str) -> str:
    """Encode one mailbox name in IMAP modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def maildir_folder_name(folder: str) -> str:
    """The Maildir++ directory name of a folder given as a Unicode path with "/" between levels.

    "INBOX" (any case) or "" is the maildir root and gives ""; "Archive/2024" gives ".Archive.2024";
    "Entwürfe" gives ".Entw&APw-rfe". A "." inside a level cannot be stored in Maildir++ and raises.
    """
    if folder.upper() in ("", "INBOX"):
        return ""
    parts = folder.split("/")
    for part in parts:
        if not part or "." in part or part in ("~",) or any(ord(c) < 0x20 for c in part):
            raise ValueError(
                f"folder {folder!r}: each level must be non-empty, without '.' or control characters "
                "(Maildir++ uses '.' between levels; use '/' to make a subfolder)")
    return "." + ".".join(encode_mutf7(p) for p in parts)


def _parse_flags(flags: str) -> tuple[str, list[str]]:
    """IMAP flags ("\\Seen \\Flagged $label") -> (maildir info letters, keywords)."""
    letters: set[str] = set()
    keywords: list[str] = []
    for flag in flags.split():
        if flag.startswith("\\"):
            letter = _SYSTEM_FLAGS.get(flag.lower())
            if letter is None:
                raise ValueError(f"flag {flag!r} cannot be stored (system flags: \\Seen \\Answered "
                                 "\\Flagged \\Deleted \\Draft; \\Recent is the server's to set)")
            letters.add(letter)
        else:
            if any(c in _ATOM_SPECIALS for c in flag) or not flag.isascii():
                raise ValueError(f"keyword {flag!r} is not an IMAP atom")
            if flag not in keywords:
                keywords.append(flag)
    return "".join(sorted(letters)), keywords



class MaildirWriter:
    """The mail half of DovecotServer: it keeps ``_clock``, ``_seq``, ``_ready_dirs``, ``_folder_cache``
    and ``_flag_cache`` and provides ``home_dir``, ``force_resync`` and ``_chown``."""


    def maildir(self, user: str) -> Path:
        """The user's Maildir root (= INBOX); subfolders are ``.Name`` folders inside it."""
        return self.home_dir / user / "Maildir"

    def folder_dir(self, user: str, folder: str) -> Path:
        """The Maildir folder of ``folder`` (a Unicode name with "/" between levels)."""
        name = maildir_folder_name(folder)
        return self.maildir(user) / name if name else self.maildir(user)

    def write_message(self, user: str, folder: str, raw: bytes, flags: str = "",
                      internaldate: float | None = None) -> Path:
        """Write one message straight into the user's Maildir and return its path.

        ``folder`` is a decoded name with "/" between levels ("INBOX", "Archive/2024", "Entwürfe");
        the folder is created on disk if missing. ``flags`` is a space-separated IMAP flag list:
        system flags map to Maildir info letters (\\Seen S, \\Answered R, \\Flagged F, \\Deleted T,
        \\Draft D); keywords are recorded in the folder's ``dovecot-keywords`` file (at most 26 per
        folder) and map to letters a-z. ``internaldate`` (epoch seconds) becomes the file's mtime,
        which Dovecot reports as INTERNALDATE; default now. Dovecot sees the message after
        ``force_resync(user)`` (or its own next sync of that folder); UIDs follow write order.
        """
        return self._write(user, folder, raw, flags, internaldate, {})

    def load(self, user: str, messages: Iterable[bytes | Sequence[object] | Mapping[str, object]], *,
             resync: bool = True) -> list[Path]:
        """Write many messages, then ``force_resync`` once. Returns the paths in order.

        Each item is raw ``bytes`` (goes to INBOX), a tuple ``(folder, raw[, flags[, internaldate]])``
        in write_message's order, or a mapping with those keys.
        """
        keyword_cache: dict[Path, list[str]] = {}
        paths = []
        for item in messages:
            if isinstance(item, (bytes, bytearray, memoryview)):
                args: tuple = ("INBOX", bytes(item), "", None)
            elif isinstance(item, Mapping):
                args = (item.get("folder", "INBOX"), item["raw"], item.get("flags", ""),
                        item.get("internaldate"))
            else:
                if not 2 <= len(item) <= 4:
                    raise ValueError(f"load: a tuple item is (folder, raw[, flags[, internaldate]]), got {item!r}")
                args = (*tuple(item), "", None)[:4] if len(item) == 2 else (*tuple(item), None)[:4]
            paths.append(self._write(user, args[0], args[1], args[2] or "", args[3], keyword_cache))
        if resync:
            self.force_resync(user)
        return paths

    def _next_name(self) -> str:
        now = time.time_ns() // 1000
        self._clock = max(now, self._clock + 1)
        self._seq += 1
        secs, usecs = divmod(self._clock, 1_000_000)
        return f"{secs}.M{usecs}P{os.getpid()}Q{self._seq}.mailsync"

    def _ensure_maildir_dir(self, path: Path) -> None:
        if path in self._ready_dirs:
            return
        maildir_root = path if path.name == "Maildir" else path.parent
        home = maildir_root.parent
        for folder in (home, maildir_root, path):
            if not folder.exists():
                folder.mkdir(mode=0o700, exist_ok=True)
                self._chown(folder)
        for sub in ("cur", "new", "tmp"):
            d = path / sub
            if not d.exists():
                d.mkdir(mode=0o700, exist_ok=True)
                self._chown(d)
        if path != maildir_root and not (path / "maildirfolder").exists():
            (path / "maildirfolder").touch()
            self._chown(path / "maildirfolder")
        self._ready_dirs.add(path)

    def _keyword_letters(self, folder_dir: Path, keywords: list[str], cache: dict[Path, list[str]]) -> str:
        if not keywords:
            return ""
        kw_file = folder_dir / "dovecot-keywords"
        known = cache.get(folder_dir)
        if known is None:
            known = []
            if kw_file.exists():
                for line in kw_file.read_text(errors="replace").splitlines():
                    idx, _, name = line.partition(" ")
                    if idx.isdigit() and name:
                        while len(known) <= int(idx):
                            known.append("")
                        known[int(idx)] = name
            cache[folder_dir] = known
        lowered = [k.lower() for k in known]
        letters = []
        changed = False
        for kw in keywords:
            if kw.lower() in lowered:
                idx = lowered.index(kw.lower())
            else:
                if len(known) >= 26:
                    raise ValueError(f"{folder_dir}: Maildir keeps at most 26 keywords per folder")
                known.append(kw)
                lowered.append(kw.lower())
                idx = len(known) - 1
                changed = True
            letters.append(chr(ord("a") + idx))
        if changed:
            tmp = folder_dir / "tmp" / f"dovecot-keywords.{os.getpid()}"
            tmp.write_text("".join(f"{i} {k}\n" for i, k in enumerate(known) if k))
            self._chown(tmp)
            os.replace(tmp, kw_file)
        return "".join(sorted(letters))

    def _write(self, user: str, folder: str, raw: bytes, flags: str, internaldate: float | None,
               keyword_cache: dict[Path, list[str]]) -> Path:
        # Hot path (load() of tens of thousands of messages): plain strings and os calls only.
        if not isinstance(raw, (bytes, bytearray)):
            raise TypeError(f"raw message must be bytes, not {type(raw).__name__}")
        key = (user, folder)
        folder_dir = self._folder_cache.get(key)
        if folder_dir is None:
            path = self.folder_dir(user, folder)
            self._ensure_maildir_dir(path)
            folder_dir = self._folder_cache[key] = str(path)
        parsed = self._flag_cache.get(flags)
        if parsed is None:
            parsed = self._flag_cache[flags] = _parse_flags(flags)
        letters, keywords = parsed
        if keywords:
            letters = "".join(sorted(letters + self._keyword_letters(Path(folder_dir), keywords, keyword_cache)))
        size = len(raw)
        vsize = size + raw.count(b"\n") - raw.count(b"\r\n")  # with every bare LF as CRLF
        base = f"{self._next_name()},S={size},W={vsize}"
        tmp_path = f"{folder_dir}/tmp/{base}"
        final = f"{folder_dir}/cur/{base}:2,{letters}"
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:
            # The folder was deleted behind our back (e.g. by a test over IMAP): make it again.
            self._folder_cache.pop(key, None)
            self._ready_dirs.discard(Path(folder_dir))
            self._ensure_maildir_dir(Path(folder_dir))
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            written = os.write(fd, raw)
            if written < size:
                view = memoryview(raw)[written:]
                while view:
                    view = view[os.write(fd, view):]
            if self.is_root:
                os.fchown(fd, self.mail_uid, self.mail_gid)
            if internaldate is not None:
                os.utime(fd, (internaldate, internaldate))
        finally:
            os.close(fd)
        os.rename(tmp_path, final)
        return Path(final)
