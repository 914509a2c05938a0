"""Shared pytest fixtures: throwaway Dovecot and PostgreSQL servers (see mailsync/testing/).

A missing dovecot binary makes the Dovecot fixtures FAIL, never skip: CI counts a skip as a failure.
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

from mailsync.testing.dovecot import DovecotError, DovecotServer, ImapUser, local_dovecot_available
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
