"""A throwaway Courier-IMAP 5.0 server for tests, from Debian's packages unpacked by scripts/test-servers.

Owns: one Courier instance per ``CourierServer`` (authdaemond with the userdb module, and two
couriertcpd listeners: plain+STARTTLS and implicit TLS through couriertls), entirely under its
``root``: the files Courier's login library looks for at the compiled-in /etc/courier and
/run/courier are in ``root/etc`` and ``root/run``, bind-mounted there inside the server's private
mount namespace (on the system only the empty mount points are created, the first time); the users'
Maildirs under ``root/home``.
Must not: write into the system's /etc/courier or /run/courier, import any other mailsync module or
third-party library, or be imported by the engine.

Facts this module relies on (Courier-IMAP 5.0.13, courier-authlib 0.71.4, Debian 12, checked here):
- imaplogin asks authdaemond through /run/courier/authdaemon/socket, and authdaemond reads
  /etc/courier/authdaemonrc and the userdb module's /etc/courier/userdb.dat and userdbshadow.dat
  (gdbm files, written with makedatprog: "NAME<TAB>uid=..|gid=..|home=..|mail=.." and
  "NAME<TAB>systempw={SHA256}base64"). It finds its modules through LTDL_LIBRARY_PATH.
- imapd takes its settings from the environment (Debian's /etc/courier/imapd is a shell file that
  init scripts source): IMAP_IDLE_TIMEOUT is how often IDLE polls the Maildir (Debian: 60 s; 1 s
  here), IMAP_CHECK_ALL_FOLDERS=1 looks at every folder, IMAP_ENHANCEDIDLE=0 (no FAM daemon).
  IMAP_EMPTYTRASH is cleared: Debian's "Trash:7" would purge old messages the tests put in Trash.
- It offers IMAP4rev1 UIDPLUS CHILDREN NAMESPACE ... IDLE (Debian's IMAP_CAPABILITY): no CONDSTORE,
  QRESYNC, MOVE, LIST-STATUS or SPECIAL-USE. Folders live under the "INBOX." namespace with "." between
  levels: the tests' "Archive/2024" is "INBOX.Archive.2024" here (``mailbox_name``).
- A folder's UIDVALIDITY comes from the clock in seconds: folders made in one second share it.
- A command pipelined behind LOGIN (sent before LOGIN's tagged answer) is dropped: imaplogin reads
  the LOGIN line, then execs imapd, and whatever else was in its input buffer is lost.
- STARTTLS runs couriertls as the user "courier" (made by the package's install script, which did not
  run): the tree sees copies of /etc/passwd and /etc/group with that user, bind-mounted in place.
- couriertcpd does not end on SIGTERM at once; the tree is killed (Maildir writes are atomic).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import subprocess
from pathlib import Path

from mailsync.testing.server_support import ImapUser
from mailsync.testing.imapserver import SPECIAL_FOLDERS, ImapServerError, NamespacedServer, _quote, packages_dir

__all__ = ["CAPABILITY", "CourierServer"]

#: Debian's IMAP_CAPABILITY (courier-imap 5.0.13-3): what a default install advertises.
CAPABILITY = "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE"

_AUTHDAEMONRC = """# mailsync throwaway Courier authdaemon configuration (written by mailsync/testing/courier.py)
authmodulelist="authuserdb"
daemons=3
authdaemonvar=/run/courier/authdaemon
DEBUG_LOGIN=0
DEFAULTOPTIONS=""
LOGGEROPTS=""
"""


class CourierServer(NamespacedServer):
    """One throwaway Courier-IMAP instance under ``root``::

        server = CourierServer(Path(tempfile.mkdtemp()))
        server.start()
        user = server.new_user("alice", "secret")
        server.load("alice", [("Archive/2024", raw, "\\Seen")])   # into INBOX.Archive.2024
        server.stop()

    Attributes as DovecotServer's: ``host``, ``imap_port``, ``imaps_port``, ``ca_file``,
    ``capabilities``; ``log_path`` holds the output of authdaemond, couriertcpd and imapd.
    ``idle_timeout`` is IMAP_IDLE_TIMEOUT (seconds between IDLE's looks at the Maildir).
    Needs root (private mount namespace; imapd runs as ``mail``).
    """

    kind = "courier"
    delimiter = "."
    prefix = "INBOX."
    term_grace = 0.3  # couriertcpd lingers after SIGTERM; Maildir writes are atomic

    def __init__(self, root: Path, *, idle_timeout: int = 1, capability: str = CAPABILITY) -> None:
        super().__init__(root)
        self.idle_timeout = idle_timeout
        self.capability = capability
        pkg = packages_dir()
        self.imapd_bin = pkg / "usr" / "bin" / "imapd"
        self.imaplogin_bin = pkg / "usr" / "lib" / "courier" / "courier" / "imaplogin"
        self.tcpd_bin = pkg / "usr" / "sbin" / "couriertcpd"
        self.tls_bin = pkg / "usr" / "bin" / "couriertls"
        self.authdaemond_bin = pkg / "usr" / "lib" / "courier" / "courier-authlib" / "authdaemond"
        self.makedat_bin = pkg / "usr" / "lib" / "courier" / "courier-authlib" / "makedatprog"
        self.maildirmake_bin = pkg / "usr" / "bin" / "maildirmake.courier"
        self.gam_server_bin = pkg / "usr" / "libexec" / "gam_server"
        self.etc_dir = self.root / "etc"
        self.run_dir = self.root / "run"
        self.home_dir = self.root / "home"

    def binaries(self) -> list[Path]:
        return [self.imapd_bin, self.imaplogin_bin, self.tcpd_bin, self.tls_bin, self.authdaemond_bin,
                self.makedat_bin, self.maildirmake_bin, self.gam_server_bin]

    def mailbox_name(self, name: str) -> str:
        if name.upper() == "INBOX":
            return "INBOX"
        return self.prefix + name.replace("/", self.delimiter)

    def _binds(self) -> list[tuple[Path, Path]]:
        binds = [(self.etc_dir, Path("/etc/courier")), (self.run_dir, Path("/run/courier"))]
        if self._passwd_file.exists():
            binds += [(self._passwd_file, Path("/etc/passwd")), (self._group_file, Path("/etc/group"))]
        return binds

    @property
    def _passwd_file(self) -> Path:
        return self.root / "passwd"

    @property
    def _group_file(self) -> Path:
        return self.root / "group"

    def _write_courier_account(self) -> None:
        """STARTTLS runs couriertls as the user "courier", which the package's install script would
        have made: the tree sees copies of /etc/passwd and /etc/group that have it (as the mail user)."""
        passwd, group = Path("/etc/passwd").read_text(), Path("/etc/group").read_text()
        if not any(line.startswith("courier:") for line in passwd.splitlines()):
            passwd += f"courier:x:{self.mail_uid}:{self.mail_gid}:Courier test server:/nonexistent:/usr/sbin/nologin\n"
        if not any(line.startswith("courier:") for line in group.splitlines()):
            group += f"courier:x:{self.mail_gid}:\n"
        self._passwd_file.write_text(passwd)
        self._group_file.write_text(group)
        os.chmod(self._passwd_file, 0o644)
        os.chmod(self._group_file, 0o644)

    # ----------------------------------------------------------------- config

    def _lib_path(self) -> str:
        pkg = packages_dir()
        return f"{pkg / 'usr' / 'lib' / 'x86_64-linux-gnu'}:{pkg / 'usr' / 'lib'}"

    def _prepare(self) -> None:
        for folder in (self.etc_dir, self.etc_dir / "shared", self.run_dir, self.run_dir / "authdaemon", self.home_dir):
            folder.mkdir(exist_ok=True)
            os.chmod(folder, 0o755)
        (self.etc_dir / "authdaemonrc").write_text(_AUTHDAEMONRC)
        pem = self.etc_dir / "imapd.pem"
        pem.write_bytes(self.key_file.read_bytes() + self.ca_file.read_bytes())
        os.chmod(pem, 0o600)
        os.chown(pem, self.mail_uid, self.mail_gid)  # couriertls reads it as "courier" (STARTTLS)
        (self.etc_dir / "shared" / "index").touch()
        self._write_courier_account()
        self._write_userdb()

    def _env(self) -> dict[str, str]:
        return {
            "LD_LIBRARY_PATH": self._lib_path(),
            "LTDL_LIBRARY_PATH": str(packages_dir() / "usr" / "lib" / "courier-authlib"),
            "IMAP_CAPABILITY": self.capability,
            "IMAP_CAPABILITY_TLS": self.capability + " AUTH=PLAIN",
            "IMAP_KEYWORDS": "1",
            "IMAP_ACL": "1",
            "IMAP_IDLE_TIMEOUT": str(self.idle_timeout),
            "IMAP_CHECK_ALL_FOLDERS": "1",
            "IMAP_ENHANCEDIDLE": "1",
            "IMAP_USELOCKS": "1",
            "GAMIN_DEBUG_SERVER": str(self.gam_server_bin),
            "GAM_CLIENT_ID": self.instance,  # a gam_server of this instance's own
            "IMAP_EMPTYTRASH": "",
            "IMAP_TRASHFOLDERNAME": "Trash",
            "IMAP_MOVE_EXPUNGE_TO_TRASH": "0",
            "IMAP_MAILBOX_SANITY_CHECK": "1",
            "IMAP_UMASK": "022",
            "IMAP_SHAREDINDEXFILE": str(self.etc_dir / "shared" / "index"),
            "IMAP_STARTTLS": "YES",
            "IMAP_TLS_REQUIRED": "0",
            "COURIERTLS": str(self.tls_bin),
            "TLS_CERTFILE": str(self.etc_dir / "imapd.pem"),
            "TLS_PROTOCOL": "TLSv1.2+",
            "TLS_VERIFYPEER": "NONE",
            "TLS_CACHEFILE": "",
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        }

    def _script(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self._env().items())
        tcpd = (f"{self.tcpd_bin} -address={self.host} -maxprocs=500 -maxperip=500 -nodnslookup -noidentlookup")
        login = f"{self.imaplogin_bin} {self.imapd_bin} Maildir"
        return "\n".join([
            f"export {env}",
            f"( set -a; . {self.etc_dir / 'authdaemonrc'}; exec {self.authdaemond_bin} ) &",
            f"{tcpd} {self.imap_port} {login} &",
            f"IMAP_TLS=1 {tcpd} {self.imaps_port} {self.tls_bin} -server -tcpd {login} &",
            "wait",
        ])

    def _probe(self) -> tuple[str, ...]:
        probe = "mailsync-probe"
        if probe not in self.passwords:
            self.passwords[probe] = "probe-" + os.urandom(4).hex()
            self._write_userdb()
            self._make_maildir(probe)
        return self._login_capabilities(probe, self.passwords[probe])

    # ----------------------------------------------------------------- users

    def _write_userdb(self) -> None:
        users, shadow = [], []
        for name, password in sorted(self.passwords.items()):
            home = self.home_dir / name
            users.append(f"{name}\tuid={self.mail_uid}|gid={self.mail_gid}|home={home}|mail={home / 'Maildir'}\n")
            digest = base64.b64encode(hashlib.sha256(password.encode()).digest()).decode()
            shadow.append(f"{name}\tsystempw={{SHA256}}{digest}\n")
        for lines, name in ((users, "userdb"), (shadow, "userdbshadow")):
            text = "".join(lines) + ".\n"
            proc = subprocess.run([str(self.makedat_bin), "-", str(self.etc_dir / f"{name}.tmp"),
                                   str(self.etc_dir / f"{name}.dat")], input=text, capture_output=True, text=True,
                                  env={"LD_LIBRARY_PATH": self._lib_path()}, timeout=30)
            if proc.returncode != 0:
                raise ImapServerError(f"makedatprog {name} failed ({proc.returncode}): {proc.stderr.strip()}")

    def _make_maildir(self, name: str) -> None:
        home = self.home_dir / name
        home.mkdir(exist_ok=True)
        maildir = home / "Maildir"
        if not maildir.exists():
            proc = subprocess.run([str(self.maildirmake_bin), str(maildir)], capture_output=True, text=True,
                                  env={"LD_LIBRARY_PATH": self._lib_path()}, timeout=30)
            if proc.returncode != 0:
                raise ImapServerError(f"maildirmake {maildir} failed ({proc.returncode}): {proc.stderr.strip()}")
        for path in [home, *home.rglob("*")]:
            os.lchown(path, self.mail_uid, self.mail_gid)

    def _add_user(self, name: str, password: str) -> None:
        self._write_userdb()
        self._make_maildir(name)
        conn = self.connect(name, password)
        try:
            for folder in SPECIAL_FOLDERS:
                typ, data = conn.create(_quote(self.mailbox_name(folder)))
                if typ != "OK":
                    raise ImapServerError(f"CREATE {self.mailbox_name(folder)} failed on the test Courier: {data!r}")
        finally:
            conn.logout()

    def new_user(self, name: str, password: str = "secret") -> ImapUser:
        """A user with an empty INBOX and INBOX.Sent, .Drafts, .Trash, .Junk, .Archive."""
        return super().new_user(name, password)
