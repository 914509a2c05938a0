"""A pytest plugin: throwaway Dovecot, Cyrus, Courier and PostgreSQL servers on loopback, as fixtures.

Install ``mailsync[testing]`` and the fixtures below are there in any project's tests (the plugin is
registered under the name ``mailsync``; ``-p no:mailsync`` turns it off):

    def test_my_client(imap_user):          # a fresh user on a session Dovecot
        with imaplib.IMAP4_SSL(imap_user.host, imap_user.imaps_port,
                               ssl_context=ssl.create_default_context(cafile=imap_user.ca_file)) as c:
            c.login(imap_user.name, imap_user.password)

- ``dovecot`` (session): a DovecotServer from the machine's `dovecot` and `doveadm` binaries (Debian's
  dovecot-imapd; 2.3 or 2.4); ``imap_user``: a fresh user on it (INBOX plus Sent, Drafts, Trash,
  Junk, Archive), with ``host``, ``imap_port`` (STARTTLS), ``imaps_port``, ``ca_file``, ``name``,
  ``password``; fill it with ``imap_user.server.load(imap_user.name, [(folder, raw, flags), ...])``.
- ``dovecot_factory`` (session): ``make(remove_capabilities=("CONDSTORE",))`` -> a Dovecot without them.
- ``cyrus``, ``courier`` (session) and ``server_user`` (a user on each of the three in turn): Cyrus IMAP
  3.6 and Courier-IMAP 5.0 unpacked from Debian's packages (mailsync's scripts/test-servers).
- ``postgres`` (session): a PostgreSQL from the machine's initdb/pg_ctl; ``store_url``: a fresh
  mailsync store on SQLite, then on that PostgreSQL.
A missing server binary makes its fixtures FAIL with what to install, never skip. Server folders go
under $MAILSYNC_TEST_SERVER_DIR, else /dev/shm when roomy, else the temp folder;
MAILSYNC_KEEP_TEST_SERVERS=1 keeps them.

Owns: these fixtures and the start/stop of their servers. Must not: import anything heavy at import
time (a plugin is loaded by every pytest run in an environment that has mailsync installed).
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from mailsync.testing.courier import CourierServer
    from mailsync.testing.cyrus import CyrusServer
    from mailsync.testing.dovecot import DovecotServer, ImapUser
    from mailsync.testing.imapserver import NamespacedServer
    from mailsync.testing.postgres import PostgresServer

_user_numbers = itertools.count(1)


def server_parent() -> str | None:
    """Where server folders go: $MAILSYNC_TEST_SERVER_DIR, else /dev/shm when it is a roomy tmpfs
    (Maildir writes there are several times faster and do not stall behind disk journal commits),
    else the default temp folder."""
    chosen = os.environ.get("MAILSYNC_TEST_SERVER_DIR")
    if chosen:
        return chosen
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize >= 2 << 30 and os.access("/dev/shm", os.W_OK):
            return "/dev/shm"
    except OSError:
        pass
    return None


def server_dir(prefix: str) -> Path:
    # Not tmp_path: pytest makes it 0700, and Dovecot's mail user / the postgres user must enter it.
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=server_parent()))
    path.chmod(0o755)
    return path


def start_dovecot(**kwargs: object) -> DovecotServer:
    """A running DovecotServer in a fresh folder, or the test FAILS naming what to install."""
    from mailsync.testing.dovecot import DovecotError, DovecotServer, local_dovecot_available

    if not local_dovecot_available():
        pytest.fail("the Dovecot integration tests need the local `dovecot` and `doveadm` binaries: "
                    "apt-get install dovecot-core dovecot-imapd (they are never skipped)", pytrace=False)
    server = DovecotServer(server_dir("mailsync-dovecot-"), **kwargs)  # type: ignore[arg-type]
    try:
        server.start()
    except (DovecotError, ValueError) as exc:
        shutil.rmtree(server.root, ignore_errors=True)
        pytest.fail(f"could not start the test Dovecot: {exc}", pytrace=False)
    return server


def discard(server: DovecotServer) -> None:
    server.stop()
    if not os.environ.get("MAILSYNC_KEEP_TEST_SERVERS"):
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """One Dovecot for the whole session, with the default capabilities."""
    server = start_dovecot()
    yield server
    discard(server)


@pytest.fixture(scope="session")
def dovecot_factory() -> Iterator[Callable[..., DovecotServer]]:
    """``make(remove_capabilities=("CONDSTORE", "QRESYNC"))`` -> a running DovecotServer without them.

    One server per distinct capability set for the whole session; all stopped at the end.
    """
    servers: dict[frozenset[str], DovecotServer] = {}

    def make(remove_capabilities: Iterable[str] = ()) -> DovecotServer:
        key = frozenset(c.upper() for c in remove_capabilities)
        if key not in servers:
            servers[key] = start_dovecot(remove_capabilities=key)
        return servers[key]

    yield make
    for server in servers.values():
        discard(server)


@pytest.fixture
def imap_user(dovecot: DovecotServer) -> ImapUser:
    """A fresh user (empty mailbox plus the special-use folders) on the session Dovecot."""
    return dovecot.new_user(f"user{next(_user_numbers)}-{secrets.token_hex(3)}", secrets.token_hex(8))


# --------------------------------------------------------------------------- every server (Cyrus, Courier)
# Cyrus IMAP 3.6 and Courier-IMAP 5.0 from Debian's packages, unpacked by scripts/test-servers (they
# conflict with dovecot-imapd, so they are not installed as packages). See mailsync/testing/cyrus.py and
# courier.py for what each is like.

#: The servers `server_user` runs a test on.
SERVER_KINDS = ("dovecot", "cyrus", "courier")


def _start_namespaced(cls: type[NamespacedServer], prefix: str) -> NamespacedServer:
    from mailsync.testing.imapserver import ImapServerError

    server = cls(server_dir(prefix))
    try:
        server.start()
    except (ImapServerError, ValueError, OSError) as exc:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
        pytest.fail(f"could not start the test {server.kind}: {exc}", pytrace=False)
    return server


def _discard_namespaced(server: NamespacedServer) -> None:
    server.stop()
    if not os.environ.get("MAILSYNC_KEEP_TEST_SERVERS"):
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def cyrus() -> Iterator[CyrusServer]:
    """One Cyrus IMAP 3.6 for the whole session."""
    from mailsync.testing.cyrus import CyrusServer

    server = _start_namespaced(CyrusServer, "mailsync-cyrus-")
    yield server  # type: ignore[misc]
    _discard_namespaced(server)


@pytest.fixture(scope="session")
def courier() -> Iterator[CourierServer]:
    """One Courier-IMAP 5.0 for the whole session (IDLE looks at the Maildir every second)."""
    from mailsync.testing.courier import CourierServer

    server = _start_namespaced(CourierServer, "mailsync-courier-")
    yield server  # type: ignore[misc]
    _discard_namespaced(server)


@pytest.fixture(params=SERVER_KINDS)
def server_user(request: pytest.FixtureRequest) -> ImapUser:
    """A fresh user (empty INBOX plus Sent, Drafts, Trash, Junk, Archive) on the session's Dovecot,
    Cyrus or Courier. Fill it with ``user.server.load(user.name, [(folder, raw, flags), ...])``, folder
    names with "/" between levels; ``helpers.mailbox(user, name)`` gives the server's own name."""
    server = request.getfixturevalue(request.param)
    return server.new_user(f"s{next(_user_numbers)}-{secrets.token_hex(3)}", secrets.token_hex(8))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL for the session, started only if a test asks for it."""
    from mailsync.testing.postgres import PostgresError, PostgresServer

    server = PostgresServer(server_dir("mailsync-postgres-"))
    try:
        server.start()
    except PostgresError as exc:
        shutil.rmtree(server.root, ignore_errors=True)
        pytest.fail(f"could not start the test PostgreSQL: {exc}", pytrace=False)
    yield server
    server.stop()
    if not os.environ.get("MAILSYNC_KEEP_TEST_SERVERS"):
        shutil.rmtree(server.root, ignore_errors=True)


_db_numbers = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store: SQLite under tmp_path, or a new database on the session PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"t{next(_db_numbers)}_{secrets.token_hex(3)}")
