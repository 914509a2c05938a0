"""Shared machinery for the throwaway Cyrus and Courier servers the cross-server tests run beside Dovecot.

Owns: where the unpacked server packages live (``$MAILSYNC_TEST_SERVERS``, default
/opt/mailsync-test-servers, filled by ``scripts/test-servers``); running a server's process tree in a
private mount namespace (``unshare -m``) in a session of its own, so that compiled-in paths
(/etc/courier, /run/courier, /dev/log) can be pointed at folders under the server's root without
touching the system's copies, and so that stop() ends every process of the tree and nothing else; a
syslog catcher (a datagram socket a private /dev/log points at) for servers that log only to syslog;
the self-signed certificate; loading messages through IMAP APPEND; mapping the tests' folder names
("Archive/2024") to the server's own ("INBOX.Archive.2024" on Courier).
Must not: touch the system's /etc, /run or /dev contents (only empty mount points are created), import
any other mailsync module or third-party library, or be imported by the engine.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mailsync.testing.dovecot_mail import encode_mutf7
from mailsync.testing.server_support import ImapUser, _free_ports, _lookup_ids, _port_open, _session_members, _tail

__all__ = ["ImapServerError", "NamespacedServer", "SyslogCatcher", "packages_dir"]

HOST = "127.0.0.1"
_USER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
#: Folders every new user gets, with their special use (Courier has no SPECIAL-USE: names only).
SPECIAL_FOLDERS = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
                   "Archive": "\\Archive"}


class ImapServerError(RuntimeError):
    """A test server could not be started, stopped or driven; the message carries the tail of its log."""


def packages_dir() -> Path:
    """The folder scripts/test-servers unpacks the Debian packages into."""
    return Path(os.environ.get("MAILSYNC_TEST_SERVERS", "/opt/mailsync-test-servers"))


def make_certificate(cert: Path, key: Path) -> None:
    """A self-signed certificate for DNS:localhost and IP:127.0.0.1 (also the CA clients trust)."""
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
           "-nodes", "-days", "3650", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
           "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
           "-addext", "basicConstraints=critical,CA:TRUE",
           "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
           "-addext", "extendedKeyUsage=serverAuth"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as exc:
        raise ImapServerError("the `openssl` command is needed for the test certificate "
                              "(apt-get install openssl)") from exc
    if proc.returncode != 0:
        raise ImapServerError(f"openssl failed ({proc.returncode}):\n{proc.stderr}")
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)


class SyslogCatcher:
    """A unix datagram socket at ``path`` whose messages are appended, one a line, to ``log_path``.

    A server that logs only through syslog(3) writes to /dev/log; run it where /dev/log is this
    socket (see NamespacedServer.fake_dev) and its log lands in a file of its own."""

    def __init__(self, path: Path, log_path: Path) -> None:
        self.path, self.log_path = path, log_path
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o666)
        sock.settimeout(0.2)
        self._sock, self._stop = sock, threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"syslog {self.path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._sock is not None
        with open(self.log_path, "ab", buffering=0) as out:
            while not self._stop.is_set():
                try:
                    data = self._sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                out.write(data.rstrip(b"\n\0") + b"\n")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._sock is not None:
            self._sock.close()
        self._sock = self._thread = None


class NamespacedServer:
    """Base of CyrusServer and CourierServer: one server process tree under ``root``.

    Subclasses fill in ``_prepare`` (write configs), ``_script`` (the shell lines run inside the
    namespace after the bind mounts; it must stay in the foreground), ``_binds`` (source, mount point
    pairs), ``_add_user`` and ``mailbox_name``. The log of the whole tree (stdout and stderr of every
    process) is ``log_path``; ``syslog_path`` holds what went to syslog when ``fake_dev`` is set.
    """

    host = HOST
    kind = "server"
    fake_dev = False  # give the tree a private /dev whose "log" is a SyslogCatcher
    term_grace = 5.0  # seconds between SIGTERM and SIGKILL in stop()

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.ca_file = self.root / "tls" / "cert.pem"
        self.key_file = self.root / "tls" / "key.pem"
        self.log_path = self.root / f"{self.kind}.log"
        self.syslog_path = self.root / "syslog.log"
        self.script_path = self.root / "run.sh"
        self.imap_port, self.imaps_port = _free_ports(2)
        self.mail_uid, self.mail_gid = (_lookup_ids("mail") if os.geteuid() == 0 else (os.geteuid(), os.getegid()))
        self.passwords: dict[str, str] = {}
        self.capabilities: tuple[str, ...] = ()
        #: In the environment of every process of the tree: how stop() finds those that left the session.
        self.instance = f"{self.kind}-{os.getpid()}-{os.urandom(4).hex()}"
        self._proc: subprocess.Popen | None = None
        self._catcher: SyslogCatcher | None = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, imap_port={self.imap_port}, "
                f"imaps_port={self.imaps_port})")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- to fill in

    def _prepare(self) -> None:
        raise NotImplementedError

    def _script(self) -> str:
        raise NotImplementedError

    def _binds(self) -> list[tuple[Path, Path]]:
        return []

    def _add_user(self, name: str, password: str) -> None:
        raise NotImplementedError

    def mailbox_name(self, name: str) -> str:
        """The server's name (decoded) for a folder the tests name with "/" between levels."""
        raise NotImplementedError

    def binaries(self) -> list[Path]:
        """The files that must exist for this server to start."""
        raise NotImplementedError

    # ----------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def check_available(self) -> None:
        """Raise ImapServerError naming what is missing and how to install it."""
        if os.geteuid() != 0:
            raise ImapServerError(f"the test {self.kind} runs in a private mount namespace and needs root "
                                  "(as in CI: scripts/test runs as root)")
        missing = [str(p) for p in self.binaries() if not p.exists()]
        if missing:
            raise ImapServerError(f"the test {self.kind} is not installed ({', '.join(missing[:3])} missing): "
                                  "run scripts/test-servers as root (it unpacks Debian's packages into "
                                  f"{packages_dir()}; set MAILSYNC_TEST_SERVERS to use another folder)")

    def start(self) -> None:
        """Start the server; return once both ports accept connections and a login works."""
        if self.running:
            return
        self.check_available()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        (self.root / "tls").mkdir(exist_ok=True)
        if not self.ca_file.exists():
            make_certificate(self.ca_file, self.key_file)
        self._prepare()
        for attempt in range(3):
            self._launch()
            try:
                self.capabilities = self._wait_ready()
                return
            except ImapServerError:
                text = self.log_text()
                self.stop()
                if "in use" in text and attempt < 2:
                    self.imap_port, self.imaps_port = _free_ports(2)
                    self._prepare()
                    continue
                raise

    def _launch(self) -> None:
        lines = ["set -e", f"export MAILSYNC_TEST_INSTANCE={self.instance}"]
        if self.fake_dev:
            dev = self.root / "dev"
            dev.mkdir(exist_ok=True)
            for node in ("null", "zero", "random", "urandom", "full", "tty"):
                (dev / node).touch()
                lines.append(f"mount --bind /dev/{node} {dev / node}")
            (dev / "shm").mkdir(exist_ok=True)
            (dev / "pts").mkdir(exist_ok=True)
            lines.append(f"mount --rbind /dev/shm {dev / 'shm'}")
            lines.append(f"mount --rbind /dev/pts {dev / 'pts'}")
            self._catcher = SyslogCatcher(dev / "log", self.syslog_path)
            self._catcher.start()
            lines.append(f"mount --rbind {dev} /dev")
        for source, target in self._binds():
            # An empty mount point is all this leaves behind on the system (the first time only).
            if not target.exists():
                target.mkdir(parents=True)
            lines.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(str(target))}")
        lines.append(self._script())
        self.script_path.write_text("\n".join(lines) + "\n")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh",
                                           str(self.script_path)],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.root,
                                          start_new_session=True)

    def _wait_ready(self, timeout: float = 30.0) -> tuple[str, ...]:
        deadline = time.monotonic() + timeout
        last = "ports not open"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                last = f"the server exited with {self._proc.returncode}"
                break
            if _port_open(self.host, self.imap_port) and _port_open(self.host, self.imaps_port):
                try:
                    return self._probe()
                except (OSError, imaplib.IMAP4.error) as exc:
                    last = f"login failed: {exc!r}"
            time.sleep(0.05)
        raise ImapServerError(f"the test {self.kind} did not become ready on {self.host}:{self.imap_port}/"
                              f"{self.imaps_port} ({last}).\n{self.log_text()}")

    def _probe(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _login_capabilities(self, user: str, password: str) -> tuple[str, ...]:
        """The capabilities the server announces after ``user`` logs in over plain IMAP."""
        conn = imaplib.IMAP4(self.host, self.imap_port, timeout=10)
        try:
            conn.login(user, password)
            typ, data = conn.capability()
            if typ != "OK":
                raise imaplib.IMAP4.error(f"CAPABILITY failed: {data!r}")
            return tuple(data[-1].decode().split())
        finally:
            try:
                conn.logout()
            except Exception:
                pass

    def stop(self) -> None:
        """Stop every process of the tree (SIGTERM, then SIGKILL after ``term_grace`` s). Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            sid, marker = proc.pid, f"MAILSYNC_TEST_INSTANCE={self.instance}".encode()
            for pid in _session_members(sid, marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.term_grace
            while time.monotonic() < deadline and _session_members(sid, marker):
                time.sleep(0.02)
            for pid in _session_members(sid, marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        if self._catcher is not None:
            self._catcher.stop()
            self._catcher = None

    def log_text(self, lines: int = 40) -> str:
        """The tail of the server's log (and of what it sent to syslog), for error messages."""
        out = f"--- {self.log_path}:\n{_tail(self.log_path, lines)}"
        if self.fake_dev:
            out += f"\n--- {self.syslog_path}:\n{_tail(self.syslog_path, lines)}"
        return out

    # ----------------------------------------------------------------- users and mail

    def new_user(self, name: str, password: str = "secret") -> ImapUser:
        """A user with an empty INBOX and the folders of SPECIAL_FOLDERS; logs in at once."""
        name = name.lower()
        if not _USER_NAME.match(name):
            raise ValueError(f"user name {name!r}: use lower-case letters, digits, '-' and '_'")
        if any(c in password for c in ":\n\r\t|"):
            raise ValueError("test passwords cannot contain ':', '|', tabs or line breaks")
        self.passwords[name] = password
        self._add_user(name, password)
        return ImapUser(name=name, password=password, host=self.host, imap_port=self.imap_port,
                        imaps_port=self.imaps_port, ca_file=self.ca_file, server=self)  # type: ignore[arg-type]

    def users(self) -> list[str]:
        return sorted(self.passwords)

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts exactly this server's certificate."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def connect(self, user: str, password: str | None = None, *, tls: bool = True) -> imaplib.IMAP4:
        """A logged-in imaplib connection (implicit TLS by default)."""
        if tls:
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(self.host, self.imaps_port, ssl_context=self.ssl_context(),
                                                    timeout=30)
        else:
            conn = imaplib.IMAP4(self.host, self.imap_port, timeout=30)
        conn.login(user, password if password is not None else self.passwords[user])
        return conn

    def ensure_folder(self, conn: imaplib.IMAP4, name: str) -> str:
        """CREATE ``name`` (a test name with "/") and its parents when missing; returns the raw name."""
        parts = name.split("/")
        raw = ""
        for depth in range(1, len(parts) + 1):
            raw = encode_mutf7(self.mailbox_name("/".join(parts[:depth])))
            if raw.upper() == "INBOX":
                continue
            typ, data = conn.list('""', _quote(raw))
            if typ == "OK" and any(d for d in data if d):
                continue
            typ, data = conn.create(_quote(raw))
            if typ != "OK":
                raise ImapServerError(f"CREATE {raw} failed on the test {self.kind}: {data!r}")
        return raw

    def load(self, user: str, messages: Iterable[bytes | Sequence[object] | Mapping[str, object]], *,
             resync: bool = True) -> list[tuple[str, int | None]]:
        """APPEND messages (as DovecotServer.load takes them: raw bytes for INBOX, or
        ``(folder, raw[, flags[, internaldate]])``, or a mapping with those keys; folder names with "/"
        between levels). Returns (raw folder name, UID from APPENDUID or None) in order."""
        del resync  # APPEND needs no resync: the argument keeps DovecotServer.load's signature
        conn = self.connect(user)
        made: dict[str, str] = {}
        out = []
        try:
            for item in messages:
                if isinstance(item, (bytes, bytearray, memoryview)):
                    folder, raw, flags, when = "INBOX", bytes(item), "", None
                elif isinstance(item, Mapping):
                    folder, raw = str(item.get("folder", "INBOX")), bytes(item["raw"])  # type: ignore[arg-type]
                    flags, when = str(item.get("flags", "") or ""), item.get("internaldate")
                else:
                    if not 2 <= len(item) <= 4:
                        raise ValueError(f"load: a tuple item is (folder, raw[, flags[, internaldate]]), got {item!r}")
                    folder, raw = str(item[0]), bytes(item[1])  # type: ignore[arg-type]
                    flags = str(item[2] or "") if len(item) > 2 else ""
                    when = item[3] if len(item) > 3 else None
                if folder not in made:
                    made[folder] = self.ensure_folder(conn, folder)
                date = imaplib.Time2Internaldate(float(when)) if when is not None else None  # type: ignore[arg-type]
                typ, data = conn.append(_quote(made[folder]), f"({flags})" if flags else None, date, raw)
                if typ != "OK":
                    raise ImapServerError(f"APPEND to {made[folder]} failed on the test {self.kind}: {data!r}")
                m = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
                out.append((made[folder], int(m.group(1)) if m else None))
        finally:
            with contextlib.suppress(Exception):
                conn.logout()
        return out


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
