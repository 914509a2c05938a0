"""Shared pytest fixtures: throwaway Dovecot, Cyrus, Courier and PostgreSQL servers (see mailsync/testing/).

A missing server binary makes its fixtures FAIL, never skip: CI counts a skip as a failure.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from mailsync.testing.courier import CourierServer
from mailsync.testing.cyrus import CyrusServer
from mailsync.testing.dovecot import DovecotError, DovecotServer, ImapUser, local_dovecot_available
from mailsync.testing.imapserver import ImapServerError, NamespacedServer
from mailsync.testing.oauth_server import OAuthServer
from mailsync.testing.postgres import PostgresError, PostgresServer

_user_numbers = itertools.count(1)


def _server_parent() -> str | None:
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


def _server_dir(prefix: str) -> Path:
    # Not tmp_path: pytest makes it 0700, and Dovecot's mail user / the postgres user must enter it.
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=_server_parent()))
    path.chmod(0o755)
    return path


def _start_dovecot(**kwargs: object) -> DovecotServer:
    if not local_dovecot_available():
        pytest.fail("the Dovecot integration tests need the local `dovecot` and `doveadm` binaries: "
                    "apt-get install dovecot-core dovecot-imapd (they are never skipped)", pytrace=False)
    server = DovecotServer(_server_dir("mailsync-dovecot-"), **kwargs)  # type: ignore[arg-type]
    try:
        server.start()
    except (DovecotError, ValueError) as exc:
        shutil.rmtree(server.root, ignore_errors=True)
        pytest.fail(f"could not start the test Dovecot: {exc}", pytrace=False)
    return server


def _discard(server: DovecotServer) -> None:
    server.stop()
    if not os.environ.get("MAILSYNC_KEEP_TEST_SERVERS"):
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """One Dovecot for the whole session, with the default capabilities."""
    server = _start_dovecot()
    yield server
    _discard(server)


@pytest.fixture(scope="session")
def dovecot_factory() -> Iterator[Callable[..., DovecotServer]]:
    """``make(remove_capabilities=("CONDSTORE", "QRESYNC"))`` -> a running DovecotServer without them.

    One server per distinct capability set for the whole session; all stopped at the end.
    """
    servers: dict[frozenset[str], DovecotServer] = {}

    def make(remove_capabilities: Iterable[str] = ()) -> DovecotServer:
        key = frozenset(c.upper() for c in remove_capabilities)
        if key not in servers:
            servers[key] = _start_dovecot(remove_capabilities=key)
        return servers[key]

    yield make
    for server in servers.values():
        _discard(server)


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
    server = cls(_server_dir(prefix))
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
    server = _start_namespaced(CyrusServer, "mailsync-cyrus-")
    yield server  # type: ignore[misc]
    _discard_namespaced(server)


@pytest.fixture(scope="session")
def courier() -> Iterator[CourierServer]:
    """One Courier-IMAP 5.0 for the whole session (IDLE looks at the Maildir every second)."""
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
    server = PostgresServer(_server_dir("mailsync-postgres-"))
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


# --------------------------------------------------------------------------- OAuth2 (issue 6)
# A local authorization server (mailsync/testing/oauth_server.py) and a Dovecot whose oauth2 passdb
# checks every XOAUTH2/OAUTHBEARER login by introspection at it, so IMAP logins really check tokens.


@pytest.fixture(scope="session")
def oauth_server() -> Iterator[OAuthServer]:
    """One local OAuth2 authorization server (https://127.0.0.1:PORT) for the session. Tests
    register their own clients (``register_client(access_token_lifetime=...)``) and users."""
    root = _server_dir("mailsync-oauth-")
    server = OAuthServer(root, access_token_lifetime=30)
    server.start()
    yield server
    server.stop()
    if not os.environ.get("MAILSYNC_KEEP_TEST_SERVERS"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot_oauth2_factory(oauth_server: OAuthServer) -> Iterator[Callable[..., DovecotServer]]:
    """``make(mechanisms=("xoauth2", "oauthbearer"))`` -> a running Dovecot that takes bearer tokens
    (checked at ``oauth_server``) with those SASL mechanisms, and passwords (PLAIN, LOGIN)."""
    servers: dict[tuple[str, ...], DovecotServer] = {}

    def make(mechanisms: Iterable[str] = ("xoauth2", "oauthbearer")) -> DovecotServer:
        key = tuple(m.lower() for m in mechanisms)
        if key not in servers:
            servers[key] = _start_dovecot(oauth2_introspection_url=oauth_server.introspection_url(),
                                          oauth2_ca_file=oauth_server.ca_file, oauth2_mechanisms=key)
        return servers[key]

    yield make
    for server in servers.values():
        _discard(server)


@pytest.fixture
def dovecot_oauth2(dovecot_oauth2_factory: Callable[..., DovecotServer]) -> DovecotServer:
    """The session's Dovecot with XOAUTH2 and OAUTHBEARER checked at the local OAuth server."""
    return dovecot_oauth2_factory()


@pytest.fixture
def oauth_user(dovecot_oauth2: DovecotServer, oauth_server: OAuthServer) -> ImapUser:
    """A fresh user on the OAuth2 Dovecot, known to the OAuth server (and with a password, so that
    tests can look at the mailbox as a second client)."""
    user = dovecot_oauth2.new_user(f"ouser{next(_user_numbers)}-{secrets.token_hex(3)}", secrets.token_hex(8))
    oauth_server.add_user(user.name)
    return user


@pytest.fixture
def token_env(tmp_path: Path, oauth_server: OAuthServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Tokens in a private file under tmp_path (never the developer's keyring), and requests trusting
    the OAuth server's certificate. Set in this process, and returned for CLI subprocesses."""
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg-data"), "MAILSYNC_TOKEN_STORE": "file",
           "REQUESTS_CA_BUNDLE": str(oauth_server.ca_file)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


# --------------------------------------------------------------------------- watch daemon (issue 4)


@pytest.fixture
def dovecot_private() -> Iterator[DovecotServer]:
    """A Dovecot of this test's own, which it may stop and start again (same ports, same mail)."""
    server = _start_dovecot()
    yield server
    _discard(server)


#: For tests with hundreds of connections: Dovecot's default process_limit (100 per service) would
#: make it reset new connections (each TLS session also keeps an imap-login process as its proxy).
MANY_CONNECTIONS_CONF = "default_process_limit = 2000\ndefault_client_limit = 20000\n"


@pytest.fixture(scope="session")
def dovecot_many() -> Iterator[DovecotServer]:
    """A Dovecot for many accounts at once (no per-service limit of 100 processes)."""
    server = _start_dovecot(extra_conf=MANY_CONNECTIONS_CONF)
    yield server
    _discard(server)
