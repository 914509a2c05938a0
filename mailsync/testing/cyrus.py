"""A throwaway Cyrus IMAP 3.6 server for tests, from Debian's packages unpacked by scripts/test-servers.

Owns: one Cyrus instance per ``CyrusServer``, entirely under its ``root`` (imapd.conf, cyrus.conf,
config directory, partition, sasldb, certificate, logs), listening on 127.0.0.1 only; its users
(sasldb entries made with saslpasswd2, mailboxes made by the admin); admin commands over IMAP.
Must not: use /etc/imapd.conf, /var/lib/cyrus, /var/spool/cyrus or the system's syslog, import any
other mailsync module or third-party library, or be imported by the engine.

Facts this module relies on (Cyrus 3.6.1, Debian 12, checked on this machine):
- ``master`` stays in the foreground; it hands ``-C`` to nobody, so every service line carries its
  own ``-C imapd.conf``, and START/SERVICES commands need absolute paths (``serverpath`` is not used
  for them). ``cyrus_user``/``cyrus_group`` name the unprivileged user (the package's "cyrus" user
  does not exist here: the package is not installed).
- Cyrus logs only through syslog(3), and /dev/log may not exist: the process tree gets a private
  /dev whose ``log`` is a socket of this harness (``syslog.log`` under root); master's own fatal
  errors go to stderr (``cyrus.log``).
- ``altnamespace: yes`` and ``unixhierarchysep: yes`` (3.x defaults, set explicitly): a user sees
  INBOX and their folders side by side ("Archive/2024"), with "/" between levels; the admin sees
  them as "user/NAME/Archive/2024".
- A folder's UIDVALIDITY is the creation time in seconds: folders made in one second share it.
  It offers CONDSTORE QRESYNC LIST-STATUS MOVE OBJECTID SPECIAL-USE CREATE-SPECIAL-USE IDLE (no
  NOTIFY). IDLE is pushed by ``idled`` (run as a DAEMON); ``imapidlepoll: 1`` is the fallback.
- PLAIN/LOGIN are checked against a sasldb (``sasl_auxprop_plugin: sasldb``) whose realm is
  ``servername``; ``allowplaintext: yes`` lets LOGIN through without TLS on loopback.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mailsync.testing.dovecot_mail import encode_mutf7
from mailsync.testing.server_support import ImapUser
from mailsync.testing.imapserver import (SPECIAL_FOLDERS, ImapServerError, NamespacedServer, _quote,
                                         packages_dir)

__all__ = ["ADMIN", "CyrusServer"]

ADMIN = "cyrusadmin"
_REALM = "localhost"

IMAPD_CONF = """# mailsync throwaway Cyrus IMAP configuration (written by mailsync/testing/cyrus.py)
configdirectory: {root}/lib
partition-default: {root}/spool
sievedir: {root}/sieve
cyrus_user: {user}
cyrus_group: {group}
servername: {realm}
admins: {admin}
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {root}/sasldb2
sasl_mech_list: PLAIN LOGIN
tls_server_cert: {root}/tls/cert.pem
tls_server_key: {root}/tls/key.pem
tls_versions: tls1_2 tls1_3
serverpath: {bin}
idlesocket: {root}/lib/socket/idle
notifysocket: {root}/lib/socket/notify
lmtpsocket: {root}/lib/socket/lmtp
master_pid_file: {root}/run/master.pid
syslog_prefix: mailsync-cyrus
altnamespace: yes
unixhierarchysep: yes
imapidlepoll: 1
delete_mode: immediate
expunge_mode: immediate
maxlogins_per_user: 0
failedloginpause: 0
"""

CYRUS_CONF = """# mailsync throwaway Cyrus master configuration (written by mailsync/testing/cyrus.py)
START {{
  recover cmd="{bin}/ctl_cyrusdb -C {conf} -r"
}}
SERVICES {{
  imap cmd="{bin}/imapd -C {conf}" listen="{host}:{imap_port}" prefork=0
  imaps cmd="{bin}/imapd -s -C {conf}" listen="{host}:{imaps_port}" prefork=0
}}
EVENTS {{
}}
DAEMON {{
  idled cmd="{bin}/idled -C {conf}"
}}
"""


class CyrusServer(NamespacedServer):
    """One throwaway Cyrus instance under ``root``::

        server = CyrusServer(Path(tempfile.mkdtemp()))
        server.start()
        user = server.new_user("alice", "secret")
        server.load("alice", [("Archive/2024", raw, "\\Seen")])
        server.admin("GETACL", "user/alice")
        server.stop()

    Attributes as DovecotServer's: ``host``, ``imap_port``, ``imaps_port``, ``ca_file``,
    ``capabilities`` (post-login, seen at start); ``log_path`` (master's stderr) and ``syslog_path``
    (what Cyrus sent to syslog). Needs root (private mount namespace, files owned by ``mail``).
    """

    kind = "cyrus"
    fake_dev = True
    delimiter = "/"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.bin_dir = packages_dir() / "usr" / "lib" / "cyrus" / "bin"
        self.conf_path = self.root / "imapd.conf"
        self.master_conf_path = self.root / "cyrus.conf"
        self.sasldb = self.root / "sasldb2"
        self.admin_password = "admin-" + os.urandom(6).hex()

    def binaries(self) -> list[Path]:
        return [self.bin_dir / "master", self.bin_dir / "imapd", self.bin_dir / "idled", Path("/usr/sbin/saslpasswd2")]

    def mailbox_name(self, name: str) -> str:
        return name

    # ----------------------------------------------------------------- config

    def _prepare(self) -> None:
        for sub in ("lib", "lib/db", "lib/socket", "lib/proc", "lib/log", "lib/msg", "lib/user", "lib/quota",
                    "lib/ptclient", "lib/sync", "spool", "sieve", "run"):
            (self.root / sub).mkdir(exist_ok=True)
        import grp
        import pwd

        values = dict(root=self.root, bin=self.bin_dir, realm=_REALM, admin=ADMIN,
                      user=pwd.getpwuid(self.mail_uid).pw_name, group=grp.getgrgid(self.mail_gid).gr_name,
                      conf=self.conf_path, host=self.host, imap_port=self.imap_port, imaps_port=self.imaps_port)
        self.conf_path.write_text(IMAPD_CONF.format(**values))
        self.master_conf_path.write_text(CYRUS_CONF.format(**values))
        if not self.sasldb.exists():
            self._saslpasswd(ADMIN, self.admin_password)
        # Cyrus runs as the mail user: it owns everything but the private /dev.
        os.chown(self.root, self.mail_uid, self.mail_gid)
        for top in self.root.iterdir():
            if top.name == "dev":
                continue
            for path in [top, *(top.rglob("*") if top.is_dir() else ())]:
                os.lchown(path, self.mail_uid, self.mail_gid)
        os.chmod(self.key_file, 0o600)

    def _script(self) -> str:
        env = f"LD_LIBRARY_PATH={packages_dir() / 'usr' / 'lib' / 'x86_64-linux-gnu'}"
        return f"exec env {env} {self.bin_dir / 'master'} -C {self.conf_path} -M {self.master_conf_path} " \
               f"-p {self.root / 'run' / 'master.pid'}"

    def _probe(self) -> tuple[str, ...]:
        return self._login_capabilities(ADMIN, self.admin_password)

    def _saslpasswd(self, name: str, password: str) -> None:
        proc = subprocess.run(["/usr/sbin/saslpasswd2", "-p", "-c", "-f", str(self.sasldb), "-u", _REALM, name],
                              input=password, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise ImapServerError(f"saslpasswd2 for {name} failed ({proc.returncode}): {proc.stderr.strip()}")
        os.chown(self.sasldb, self.mail_uid, self.mail_gid)
        os.chmod(self.sasldb, 0o640)

    # ----------------------------------------------------------------- users

    def _add_user(self, name: str, password: str) -> None:
        if name == ADMIN:
            raise ValueError(f"{ADMIN} is the test server's admin")
        self._saslpasswd(name, password)
        self.admin("CREATE", _quote(f"user/{name}"))
        conn = self.connect(name, password)
        try:
            for folder, use in SPECIAL_FOLDERS.items():
                typ, data = conn._simple_command("CREATE", _quote(encode_mutf7(folder)), f"(USE ({use}))")
                if typ != "OK":
                    raise ImapServerError(f"CREATE {folder} (USE ({use})) failed on the test Cyrus: {data!r}")
        finally:
            conn.logout()

    def admin(self, command: str, *args: str) -> list[bytes]:
        """Run one IMAP command as the admin (who sees users' folders as "user/NAME/..."); returns
        the untagged data. Raises ImapServerError unless the answer is OK."""
        conn = self.connect(ADMIN, self.admin_password, tls=False)
        try:
            typ, data = conn._simple_command(command.upper(), *args)
            if typ != "OK":
                raise ImapServerError(f"{command} {' '.join(args)} failed on the test Cyrus: {data!r}\n"
                                      f"{self.log_text(10)}")
            name = command.upper()
            return [d for d in conn.untagged_responses.pop(name, []) if d]
        finally:
            conn.logout()

    def new_user(self, name: str, password: str = "secret") -> ImapUser:
        """A user with an empty INBOX and Sent, Drafts, Trash, Junk, Archive (with their special use)."""
        return super().new_user(name, password)
