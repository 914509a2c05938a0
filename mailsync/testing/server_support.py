"""What the throwaway IMAP servers of the tests share (Dovecot, Cyrus, Courier): the user type, the
error, free ports, process and path checks, and finding and asking the Dovecot binaries.

Owns: those helpers. Must not: import anything but the standard library (the harness runs under a
bare ``python3``), or start a server.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailsync.testing.dovecot import DovecotServer

HOST = "127.0.0.1"


class DovecotError(RuntimeError):
    """Dovecot could not be started, stopped or driven; the message carries the tail of its log."""


@dataclass(frozen=True)
class ImapUser:
    """A user on a throwaway server, with everything a client needs to log in."""

    name: str
    password: str
    host: str
    imap_port: int
    imaps_port: int
    ca_file: Path
    server: "DovecotServer"


# --------------------------------------------------------------------------- helpers


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            if fh.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return False
    return True


def _processes() -> Iterator[tuple[int, str, list[str]]]:
    """(pid, name, the /proc stat fields after the name: state, ppid, pgrp, session, ...) of every
    process that is not a zombie (Linux /proc)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                data = fh.read()
        except OSError:
            continue
        head, _, rest = data.rpartition(")")
        fields = rest.split()
        if len(fields) > 3 and fields[0] != "Z":
            yield int(entry), head.partition("(")[2], fields


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, short name) of the live child processes of ``pid``."""
    # Dovecot titles its children "dovecot-INSTANCE/NAME"; comm keeps the part after "/".
    return [(child, name.rsplit("/", 1)[-1]) for child, name, fields in _processes() if fields[1] == str(pid)]


def _session_members(sid: int, marker: bytes) -> list[int]:
    """Live processes in session ``sid``, or whose environment holds ``marker`` (a daemon the tree
    started that left the session, like Courier's gam_server)."""
    found = []
    for pid, _name, fields in _processes():
        if fields[3] == str(sid):
            found.append(pid)
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if marker in fh.read().split(b"\0"):
                    found.append(pid)
        except OSError:
            continue
    return found


def _traversal_problem(path: Path, uid: int, gid: int) -> Path | None:
    """The first folder from / down to ``path`` that user uid:gid cannot enter, or None."""
    if uid == 0:
        return None
    for folder in [*reversed(path.parents), path]:
        try:
            st = folder.stat()
        except FileNotFoundError:
            return None
        if st.st_uid == uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return folder
    return None


def _repo_root() -> Path | None:
    """The source checkout this module lives in (the folder holding fixtures/dovecot), if any."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "fixtures" / "dovecot").is_dir() and (parent / "mailsync").is_dir():
            return parent
    return None


def _lookup_ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- the server


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(folder) / name
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _current_group() -> str:
    import grp

    return grp.getgrgid(os.getegid()).gr_name


def _binary(name: str) -> str | None:
    """The dovecot or doveadm to run: $MAILSYNC_DOVECOT / $MAILSYNC_DOVEADM when set (e.g. the
    wrappers scripts/dovecot-chroot writes, which run another release's Dovecot in a chroot), else
    the one on PATH or in /usr/sbin."""
    explicit = os.environ.get(f"MAILSYNC_{name.upper()}")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return _which(name)


_VERSIONS: dict[str, tuple[int, int]] = {}


def dovecot_version() -> tuple[int, int]:
    """(major, minor) from ``dovecot --version`` ("2.3.19.1 (9b53102964)", "2.4.1-4 (7d8c0e5759)"),
    which decides the config syntax. Raises DovecotError when it cannot be run or read."""
    binary = _binary("dovecot")
    if binary is None:
        raise DovecotError("no local dovecot binary (apt-get install dovecot-core dovecot-imapd, "
                           "or set MAILSYNC_DOVECOT)")
    if binary not in _VERSIONS:
        try:
            out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DovecotError(f"`{binary} --version` failed: {exc}") from exc
        m = re.match(r"\s*(\d+)\.(\d+)", out)
        if m is None:
            raise DovecotError(f"`{binary} --version` printed {out.strip()!r}, not a version")
        _VERSIONS[binary] = (int(m.group(1)), int(m.group(2)))
    return _VERSIONS[binary]


def local_dovecot_available() -> bool:
    """True when the dovecot and doveadm binaries exist on this machine (or are named by
    $MAILSYNC_DOVECOT and $MAILSYNC_DOVEADM)."""
    return _binary("dovecot") is not None and _binary("doveadm") is not None


def _docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
