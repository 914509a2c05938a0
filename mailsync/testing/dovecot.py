"""A throwaway Dovecot (2.3 or 2.4) IMAP server for tests and local development.

Owns: one Dovecot instance per ``DovecotServer``, entirely under its ``root`` folder (config, base_dir,
state_dir, log, TLS certificate, users, mail), listening on 127.0.0.1 only; which config syntax to
write, chosen by ``dovecot --version`` (the templates are in mailsync.testing.dovecot_conf, the single
source of truth; ``fixtures/dovecot/dovecot.conf.in`` and ``dovecot24.conf.in`` are generated copies,
rewritten by ``scripts/dovecot template --write``). Fast corpus loading by writing Maildir files
directly is dovecot_mail.py's (a mixin); the ``python -m mailsync.testing.dovecot`` CLI behind
``scripts/dovecot`` is dovecot_cli.py's.
The binaries are the local ones, or those named by $MAILSYNC_DOVECOT and $MAILSYNC_DOVEADM
(scripts/dovecot-chroot makes such wrappers for Debian 13's Dovecot 2.4 in a chroot).
Must not: touch the system's Dovecot (/etc/dovecot, /run/dovecot, its ports or its mail), import any
other mailsync module than its templates or any third-party library (it runs under a bare
``python3``), or be imported by the engine itself.

Facts this module relies on (Dovecot 2.3.19, checked on this machine):
- Without ``imap_capability`` the post-login CAPABILITY includes CONDSTORE QRESYNC NOTIFY IDLE
  LIST-STATUS UIDPLUS MOVE ESEARCH SPECIAL-USE with no mail_plugins at all. Setting
  ``protocol imap { imap_capability = ... }`` replaces the list verbatim (nothing is re-added, not even
  CONDSTORE next to QRESYNC, LITERAL+ or NOTIFY); it is then also sent before login in place of the
  short banner list. Only the advertisement changes: a client that ignores it can still ENABLE QRESYNC
  or UID MOVE on such a server.
- A passwd-file is re-read (on mtime/size change) at most once per second, so a user appended to a
  shared file often cannot log in right after. Each user therefore gets their own passwd-file
  (``users/NAME``, found through ``%u`` in the path): a new user logs in at once, without a reload.
- The auth failure delay (2 s) and the anvil auth penalty (up to 15 s per IP) would slow every test
  after a deliberate bad login; both are switched off.
- New Maildir files get UIDs in the order of the timestamp in their name (seconds, then ``M``
  microseconds, then the base name), and INTERNALDATE is the file's mtime.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from mailsync.testing.dovecot_conf import CONF_TEMPLATE, CONF_TEMPLATE_24, NONROOT_CONF, NONROOT_CONF_24, oauth2_conf_24
from mailsync.testing.dovecot_mail import MaildirWriter, encode_mutf7, maildir_folder_name  # noqa: F401
# the harness's shared names, which the other harness modules and the tests import from here too
from mailsync.testing.server_support import (HOST, DovecotError, ImapUser, _binary, _children, _current_group,
                                             _current_user, _docker_works, _free_ports, _lookup_ids, _pid_alive,
                                             _port_open, _repo_root, _tail, _traversal_problem, _which,
                                             dovecot_version, local_dovecot_available)  # noqa: F401

__all__ = [
    "CONF_TEMPLATE",
    "DovecotError",
    "DovecotServer",
    "ImapUser",
    "encode_mutf7",
    "maildir_folder_name",
]


#: Capabilities the engine relies on; a default server must offer all of them.
REQUIRED_CAPABILITIES = (
    "CONDSTORE", "QRESYNC", "NOTIFY", "IDLE", "LIST-STATUS", "UIDPLUS", "MOVE", "ESEARCH", "SPECIAL-USE",
)

#: Folders every user has from the first login (``auto = subscribe`` in the namespace).
SPECIAL_FOLDERS = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
                   "Archive": "\\Archive"}

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
_USER_NAME = re.compile(r"^[A-Za-z0-9_+=-][A-Za-z0-9._@+=-]{0,63}$")


_PROBE_USER = "mailsync-probe"
_PROBE_PASSWORD = "probe"
_DEFAULT_CAPS_CACHE: dict[tuple[str, str], tuple[str, ...]] = {}


class DovecotServer(MaildirWriter):
    """One throwaway Dovecot instance under ``root`` (see the module docstring).

    Typical use::

        server = DovecotServer(Path(tempfile.mkdtemp()))
        server.start()
        server.add_user("alice", "secret")
        server.load("alice", [("INBOX", raw1), ("Archive/2024", raw2, "\\Seen")])
        ...  # connect to server.host, server.imap_port / server.imaps_port, verify with server.ca_file
        server.stop()

    Attributes: ``host`` ("127.0.0.1"), ``imap_port`` (plain + STARTTLS), ``imaps_port`` (implicit
    TLS), ``ca_file`` (the self-signed certificate, PEM, for DNS:localhost and IP:127.0.0.1),
    ``conf_path``, ``log_path``, ``capabilities`` (post-login CAPABILITY as seen at start) and
    ``default_capabilities`` (the same without ``remove_capabilities``). The ports are picked when
    the object is made and kept across stop/start unless taken meanwhile.

    ``root`` must be reachable by the mail user (uid ``mail`` when run as root): pytest's 0700
    ``tmp_path`` is not; a ``tempfile.mkdtemp()`` folder is (it is chmod 0755 here).
    ``extra_conf`` is appended to the config verbatim. ``docker=True`` runs the same config in a
    container (fixtures/dovecot/docker-compose.yml; needs a source checkout).

    ``oauth2_introspection_url`` adds Dovecot's oauth2 passdb: XOAUTH2 and OAUTHBEARER logins (or
    those of ``oauth2_mechanisms``) are checked by POSTing the token to that RFC 7662 endpoint
    (HTTP basic credentials may be put in the URL), which must answer ``"active": true`` and the
    login name in ``"username"``. ``oauth2_ca_file`` is the CA that endpoint's certificate must
    chain to when it is https. Password users (passwd-file, PLAIN/LOGIN) keep working alongside;
    ``new_user`` serves both kinds. Not available with ``docker=True`` (the container cannot reach
    a server on the host's 127.0.0.1).
    """

    host = HOST

    def __init__(self, root: Path, *, remove_capabilities: Iterable[str] = (), extra_conf: str = "",
                 docker: bool = False, oauth2_introspection_url: str | None = None,
                 oauth2_ca_file: Path | str | None = None,
                 oauth2_mechanisms: Sequence[str] = ("xoauth2", "oauthbearer")) -> None:
        self.root = Path(root).absolute()
        self.remove_capabilities = tuple(sorted({c.upper() for c in remove_capabilities}))
        self.extra_conf = extra_conf
        self.docker = docker
        if oauth2_introspection_url is not None:
            if docker:
                raise ValueError("oauth2_introspection_url is not available with docker=True")
            bad = [m for m in oauth2_mechanisms if m.lower() not in ("xoauth2", "oauthbearer")]
            if bad or not oauth2_mechanisms:
                raise ValueError(f"oauth2_mechanisms: use xoauth2 and/or oauthbearer, got {list(oauth2_mechanisms)!r}")
        self.oauth2_introspection_url = oauth2_introspection_url
        self.oauth2_ca_file = Path(oauth2_ca_file).absolute() if oauth2_ca_file is not None else None
        self.oauth2_mechanisms = tuple(m.lower() for m in oauth2_mechanisms)
        self.oauth2_conf_path = self.root / "dovecot-oauth2.conf.ext"
        self.conf_path = self.root / "dovecot.conf"
        self.log_path = self.root / "dovecot.log"
        self.ca_file = self.root / "tls" / "cert.pem"
        self.key_file = self.root / "tls" / "key.pem"
        self.users_dir = self.root / "users"
        self.home_dir = self.root / "home"
        self.imap_port, self.imaps_port = _free_ports(2)
        self.default_capabilities: tuple[str, ...] = ()
        self.capabilities: tuple[str, ...] = ()
        self._clock = 0  # last microsecond timestamp used in a Maildir file name
        self._seq = 0
        self._ready_dirs: set[Path] = set()
        self._folder_cache: dict[tuple[str, str], str] = {}
        self._flag_cache: dict[str, tuple[str, list[str]]] = {}
        self._base_dir_is_temp = False

        self.is_root = os.geteuid() == 0
        tag = f"{zlib.crc32(str(self.root).encode()):08x}"  # stable across processes (the CLI re-attaches)
        if docker:
            # Inside the container: the mail user is whoever owns the files we write.
            self.mail_uid, self.mail_gid = (8, 8) if self.is_root else (os.geteuid(), os.getegid())
            self.base_dir = Path("/run/mailsync-dovecot")
        else:
            if self.is_root:
                self.mail_uid, self.mail_gid = _lookup_ids("mail")
            else:
                self.mail_uid, self.mail_gid = os.geteuid(), os.getegid()
            self.base_dir = self.root / "run"
            # Unix socket paths are limited to 107 bytes; keep base_dir short.
            if len(str(self.base_dir)) > 60:
                self.base_dir = Path(tempfile.gettempdir()) / f"msdv-{tag}"
                self._base_dir_is_temp = True
        self.instance_name = f"mailsync-{tag}"
        self.compose_project = f"mailsync-dovecot-{tag}"

    # ----------------------------------------------------------------- lifecycle

    def __repr__(self) -> str:
        return (f"DovecotServer(root={str(self.root)!r}, imap_port={self.imap_port}, "
                f"imaps_port={self.imaps_port}, remove_capabilities={self.remove_capabilities!r})")

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The master process id, if its pid file exists (None under Docker)."""
        try:
            return int((self.base_dir / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def running(self) -> bool:
        if self.docker:
            out = self._compose("ps", "-q", check=False)
            return bool(out.strip())
        pid = self.pid
        return pid is not None and _pid_alive(pid)

    def start(self) -> None:
        """Start Dovecot; return once both ports accept connections and a login works.

        With ``remove_capabilities`` the default list is learnt first (from a cache shared by all
        servers of this process, or by one login to this server before the override is applied).
        Raises DovecotError with the tail of Dovecot's log when anything fails.
        """
        if self.running:
            return
        self._check_binaries()
        self._prepare_layout()
        self._write_user_file(_PROBE_USER, _PROBE_PASSWORD)

        cache_key = (self._binary_id(), self.extra_conf, self.oauth2_introspection_url is not None)
        defaults = _DEFAULT_CAPS_CACHE.get(cache_key)
        if self.remove_capabilities and defaults is None:
            defaults = _DEFAULT_CAPS_CACHE[cache_key] = self._launch(capability_override=None)
            self._stop_process()
        if defaults is not None:
            self.default_capabilities = defaults
        override = self._capability_override(defaults) if self.remove_capabilities else None
        caps = self._launch(capability_override=override)
        if not self.remove_capabilities:
            self.default_capabilities = caps
            _DEFAULT_CAPS_CACHE.setdefault(cache_key, caps)
        self.capabilities = caps
        offered = {c.upper() for c in caps}
        if self.remove_capabilities:
            still = [c for c in self.remove_capabilities if c in offered]
            if still:
                self.stop()
                raise DovecotError(f"Dovecot still advertises {' '.join(still)} after removing them "
                                   f"(CAPABILITY: {' '.join(caps)})")
        else:
            missing = [c for c in REQUIRED_CAPABILITIES if c not in offered]
            if missing and not self.extra_conf:
                self.stop()
                raise DovecotError(f"Dovecot does not offer {' '.join(missing)} "
                                   f"(CAPABILITY: {' '.join(caps)})")

    def stop(self, *, graceful: bool = False) -> None:
        """Stop Dovecot. Idempotent.

        ``graceful=True`` runs ``doveadm -c CONF stop``, which returns once the master has exited:
        2-3 s, because the master sleeps after its children are gone before it exits. The default
        sends the same SIGTERM, waits until every child but the log process has exited (a few ms;
        client connections are closed, mail is on disk), then SIGKILLs the master and the log process.
        Either way SIGTERM/SIGKILL to the master pid is the fallback.
        """
        self._stop_process(graceful=graceful)
        if self._base_dir_is_temp:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _stop_process(self, graceful: bool = False) -> None:
        if self.docker:
            if self._compose_file().exists():
                self._compose("down", "--timeout", "2", check=False)
            return
        pid = self.pid
        if pid is None or not _pid_alive(pid):
            return
        if graceful:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run([self._doveadm_bin(), "-c", str(self.conf_path), "stop"],
                               capture_output=True, text=True, timeout=30)
            if self._wait_gone(pid, 10):
                self._kill_leftovers()
                return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _pid_alive(pid):
            children = _children(pid)
            if all(name == "log" for _, name in children):
                for child, _ in children:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
                break
            time.sleep(0.005)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._wait_gone(pid, 5)
        self._kill_leftovers()
        with contextlib.suppress(OSError):
            (self.base_dir / "master.pid").unlink()

    def _kill_leftovers(self) -> None:
        """Kill this instance's processes that outlived the master. Checked on Dovecot 2.3.19 here:
        after the master exits (SIGTERM or `doveadm stop`), the imap and imap-login processes of
        open sessions live on under init and keep serving their clients, so a "stopped" server
        would still answer its old connections (and leak processes). Found by their titles,
        "dovecot-INSTANCE/NAME"."""
        prefix = f"dovecot-{self.instance_name}/".encode()
        for _ in range(3):
            victims = []
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as fh:
                        cmdline = fh.read()
                except OSError:
                    continue
                if cmdline.startswith(prefix):
                    victims.append(int(entry))
            if not victims:
                return
            for victim in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(victim, signal.SIGKILL)
            for victim in victims:
                self._wait_gone(victim, 2)

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return True
            time.sleep(0.02)
        return not _pid_alive(pid)

    def _launch(self, capability_override: str | None) -> tuple[str, ...]:
        """Write the config, start the master, return the post-login CAPABILITY list.

        Retries with new ports when one was taken in the meantime."""
        for attempt in range(3):
            self.conf_path.write_text(self.render_conf(capability_override))
            log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
            if self.docker:
                self._compose("up", "-d", "--build", "--force-recreate")
            else:
                stderr_path = self.root / "dovecot.stderr"
                with open(stderr_path, "wb") as err:
                    # The master daemonizes: do not hand it a pipe it would keep open.
                    rc = subprocess.run([self._dovecot_bin(), "-c", str(self.conf_path)],
                                        stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                        timeout=60).returncode
                if rc != 0:
                    text = stderr_path.read_text(errors="replace")
                    if "Address already in use" in text and attempt < 2:
                        self.imap_port, self.imaps_port = _free_ports(2)
                        continue
                    raise DovecotError(f"`dovecot -c {self.conf_path}` exited with {rc}:\n"
                                       f"{stderr_path.read_text(errors='replace')}\n"
                                       f"--- {self.log_path}:\n{_tail(self.log_path)}")
            try:
                return self._wait_ready()
            except DovecotError:
                new_log = self.log_path.read_text(errors="replace")[log_size:] if self.log_path.exists() else ""
                if not self.docker:
                    # The master writes its pid file a moment after daemonizing: do not leak it.
                    deadline = time.monotonic() + 3
                    while self.pid is None and time.monotonic() < deadline:
                        time.sleep(0.02)
                self._stop_process()
                if "Address already in use" in new_log and attempt < 2:
                    self.imap_port, self.imaps_port = _free_ports(2)
                    continue
                raise
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float = 30.0) -> tuple[str, ...]:
        deadline = time.monotonic() + timeout
        last_error = "ports not open"
        while time.monotonic() < deadline:
            if not self.docker:
                # The pid file appears a moment after `dovecot` returns (the master daemonizes).
                pid = self.pid
                if pid is not None and not _pid_alive(pid):
                    last_error = "the master process exited"
                    break
            if _port_open(self.host, self.imap_port) and _port_open(self.host, self.imaps_port):
                try:
                    return self._login_probe()
                except (OSError, imaplib.IMAP4.error) as exc:
                    last_error = f"login failed: {exc!r}"
            time.sleep(0.05)
        raise DovecotError(f"Dovecot did not become ready on {self.host}:{self.imap_port}/"
                           f"{self.imaps_port} ({last_error}).\n--- {self.log_path}:\n{_tail(self.log_path)}")

    def _login_probe(self) -> tuple[str, ...]:
        conn = imaplib.IMAP4(self.host, self.imap_port, timeout=10)
        try:
            conn.login(_PROBE_USER, _PROBE_PASSWORD)
            typ, data = conn.capability()
            if typ != "OK":
                raise imaplib.IMAP4.error(f"CAPABILITY failed: {data!r}")
            return tuple(data[-1].decode().split())
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    def _capability_override(self, defaults: Sequence[str] | None) -> str:
        assert defaults is not None
        unknown = [c for c in self.remove_capabilities if c not in {d.upper() for d in defaults}]
        if unknown:
            raise ValueError(f"remove_capabilities: {' '.join(unknown)} not offered by this Dovecot "
                             f"(it offers: {' '.join(defaults)})")
        kept = [c for c in defaults if c.upper() not in self.remove_capabilities]
        return "protocol imap {\n  imap_capability = " + " ".join(kept) + "\n}\n"

    # ----------------------------------------------------------------- config and layout

    @property
    def version(self) -> tuple[int, int]:
        """(major, minor) of the Dovecot that runs this server (``dovecot --version``); the docker
        image is 2.3."""
        return (2, 3) if self.docker else dovecot_version()

    def render_conf(self, capability_override: str | None = None) -> str:
        """The filled-in config (what is written to ``conf_path``), in the syntax of ``version``."""
        v24 = self.version >= (2, 4)
        nonroot = NONROOT_CONF_24 if v24 else NONROOT_CONF
        values = {
            "ROOT": str(self.root),
            "BASE_DIR": str(self.base_dir),
            "INSTANCE_NAME": self.instance_name,
            "LOGIN_USER": "dovenull" if (self.is_root or self.docker) else _current_user(),
            "INTERNAL_USER": "dovecot" if (self.is_root or self.docker) else _current_user(),
            "LISTEN": "*" if self.docker else self.host,
            "MAIL_UID": str(self.mail_uid),
            "MAIL_GID": str(self.mail_gid),
            "IMAP_PORT": str(self.imap_port),
            "IMAPS_PORT": str(self.imaps_port),
            "RUN_AS_CONF": "" if (self.is_root or self.docker) else nonroot.replace("{group}", _current_group()),
            "CAPABILITY_CONF": capability_override or "",
            "EXTRA_CONF": self.extra_conf,
            "AUTH_MECHANISMS": " ".join(("plain", "login") + (self.oauth2_mechanisms if self.oauth2_introspection_url
                                                              else ())),
            "OAUTH_PASSDB": self._oauth2_passdb_conf(),
        }

        def fill(match: re.Match[str]) -> str:
            return values[match.group(1)]

        return _PLACEHOLDER.sub(fill, CONF_TEMPLATE_24 if v24 else CONF_TEMPLATE)

    def _oauth2_passdb_conf(self) -> str:
        if self.oauth2_introspection_url is None:
            return ""
        if self.version >= (2, 4):
            return oauth2_conf_24(self.oauth2_mechanisms, self.oauth2_introspection_url,
                                  str(self.oauth2_ca_file) if self.oauth2_ca_file is not None else None)
        return ("passdb {\n  driver = oauth2\n  mechanisms = " + " ".join(self.oauth2_mechanisms) + "\n"
                f"  args = {self.oauth2_conf_path}\n}}\n")

    def _write_oauth2_conf(self) -> None:
        """The oauth2 passdb's settings file (read by the auth process; Dovecot 2.3 syntax)."""
        if self.oauth2_introspection_url is None or self.version >= (2, 4):
            return
        lines = [
            "# Written by mailsync/testing/dovecot.py: validate bearer tokens by RFC 7662 introspection.",
            "introspection_mode = post",
            f"introspection_url = {self.oauth2_introspection_url}",
            "username_attribute = username",
            "active_attribute = active",
            "active_value = true",
        ]
        if self.oauth2_ca_file is not None:
            lines.append(f"tls_ca_cert_file = {self.oauth2_ca_file}")
        tmp = self.oauth2_conf_path.with_name(self.oauth2_conf_path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.oauth2_conf_path)

    def _prepare_layout(self) -> None:
        if not self.docker:
            bad = _traversal_problem(self.root.parent, self.mail_uid, self.mail_gid)
            if bad is not None:
                raise DovecotError(
                    f"{bad} cannot be entered by uid {self.mail_uid}, which Dovecot uses for mail under "
                    f"{self.root}; use a root folder it can reach, e.g. tempfile.mkdtemp() under /tmp "
                    "(pytest's tmp_path is mode 0700)")
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        for folder in (self.users_dir, self.root / "tls", self.root / "state"):
            folder.mkdir(exist_ok=True)
            os.chmod(folder, 0o755)
        self.home_dir.mkdir(exist_ok=True)
        os.chmod(self.home_dir, 0o755)
        self._chown(self.home_dir)
        if self._base_dir_is_temp:
            self.base_dir.mkdir(mode=0o755, exist_ok=True)
        if not self.ca_file.exists() or not self.key_file.exists():
            self._make_certificate()
        self._write_oauth2_conf()

    def _make_certificate(self) -> None:
        cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-nodes", "-days", "3650", "-subj", "/CN=localhost",
               "-keyout", str(self.key_file), "-out", str(self.ca_file),
               "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
               "-addext", "basicConstraints=critical,CA:TRUE",
               "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
               "-addext", "extendedKeyUsage=serverAuth"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except FileNotFoundError as exc:
            raise DovecotError("the `openssl` command is needed to make the test certificate "
                               "(apt-get install openssl)") from exc
        if proc.returncode != 0:
            raise DovecotError(f"openssl failed ({proc.returncode}):\n{proc.stderr}")
        os.chmod(self.ca_file, 0o644)
        os.chmod(self.key_file, 0o600 if not self.docker else 0o644)

    def _check_binaries(self) -> None:
        if self.docker:
            if shutil.which("docker") is None:
                raise DovecotError("`docker` is not on PATH")
            if not self._compose_file().exists():
                raise DovecotError(f"{self._compose_file()} not found: --docker needs a source checkout")
            return
        missing = [b for b in ("dovecot", "doveadm") if _binary(b) is None]
        if missing:
            raise DovecotError(
                f"no local {' and '.join(missing)} binary: install Dovecot (2.3 or 2.4) "
                "(apt-get install dovecot-core dovecot-imapd; disable its system service if you like), "
                "or use `scripts/dovecot start --docker`")

    def _binary_id(self) -> str:
        if self.docker:
            return "docker"
        path = _binary("dovecot") or "dovecot"
        with contextlib.suppress(OSError):
            st = os.stat(path)
            return f"{os.path.realpath(path)}:{st.st_mtime_ns}:{st.st_size}"
        return path

    @staticmethod
    def _dovecot_bin() -> str:
        return _binary("dovecot") or "dovecot"

    @staticmethod
    def _doveadm_bin() -> str:
        return _binary("doveadm") or "doveadm"

    def _chown(self, path: Path | int) -> None:
        if self.is_root:
            if isinstance(path, int):
                os.fchown(path, self.mail_uid, self.mail_gid)
            else:
                os.chown(path, self.mail_uid, self.mail_gid)

    # ----------------------------------------------------------------- docker

    def _compose_file(self) -> Path:
        repo = _repo_root()
        return (repo / "fixtures" / "dovecot" / "docker-compose.yml") if repo else Path("docker-compose.yml")

    def _compose(self, *args: str, check: bool = True) -> str:
        env = dict(os.environ,
                   MAILSYNC_DOVECOT_ROOT=str(self.root),
                   MAILSYNC_DOVECOT_CONF=str(self.conf_path),
                   MAILSYNC_IMAP_PORT=str(self.imap_port),
                   MAILSYNC_IMAPS_PORT=str(self.imaps_port))
        cmd = ["docker", "compose", "-p", self.compose_project, "-f", str(self._compose_file()), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if check and proc.returncode != 0:
            raise DovecotError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return proc.stdout

    # ----------------------------------------------------------------- administration

    def doveadm(self, *args: str) -> str:
        """Run ``doveadm -c CONF ARGS...`` and return its standard output; raise DovecotError on failure."""
        if self.docker:
            return self._compose("exec", "-T", "dovecot", "doveadm", "-c", str(self.conf_path), *args)
        cmd = [self._doveadm_bin(), "-c", str(self.conf_path), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise DovecotError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr.strip()}")
        return proc.stdout

    def force_resync(self, user: str) -> None:
        """Make Dovecot index every file written behind its back: ``doveadm force-resync -u USER '*'``."""
        self.doveadm("force-resync", "-u", user, "*")

    def add_user(self, name: str, password: str) -> None:
        """Create a user (and their Maildir); they can log in at once, without a reload.

        Calling it again for an existing user changes the password; Dovecot notices that within a
        second (it re-reads a passwd-file at most once a second).

        The name must be a plain login name (letters, digits and ``._@+=-``); the password must not
        contain ':' or a line break (passwd-file syntax).
        """
        if not _USER_NAME.match(name) or name == _PROBE_USER:
            raise ValueError(f"user name {name!r}: use letters, digits and ._@+=- (not starting with '.')")
        self._write_user_file(name, password)
        self._ensure_maildir_dir(self.maildir(name))

    def _write_user_file(self, name: str, password: str) -> None:
        if ":" in password or "\n" in password or "\r" in password:
            raise ValueError("passwords for the test server cannot contain ':' or line breaks")
        self.users_dir.mkdir(parents=True, exist_ok=True)
        target = self.users_dir / name
        tmp = self.users_dir / f".{name}.tmp"
        tmp.write_text(f"{name}:{{PLAIN}}{password}\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)

    def users(self) -> list[str]:
        """Names of the users added so far."""
        if not self.users_dir.is_dir():
            return []
        return sorted(p.name for p in self.users_dir.iterdir()
                      if not p.name.startswith(".") and p.name != _PROBE_USER)

    def new_user(self, name: str, password: str = "secret") -> ImapUser:
        """add_user and return an ImapUser with the connection details."""
        self.add_user(name, password)
        return ImapUser(name=name, password=password, host=self.host, imap_port=self.imap_port,
                        imaps_port=self.imaps_port, ca_file=self.ca_file, server=self)

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts exactly this server's certificate."""
        return ssl.create_default_context(cafile=str(self.ca_file))


if __name__ == "__main__":
    from mailsync.testing.dovecot_cli import main

    sys.exit(main())
