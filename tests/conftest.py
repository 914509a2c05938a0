"""Shared pytest fixtures of this suite. The server fixtures (dovecot, dovecot_factory, imap_user,
cyrus, courier, server_user, postgres, store_url) come from mailsync's pytest plugin,
mailsync/testing/pytest_plugin.py (registered by the install); here are the ones only this suite
needs: an OAuth2 authorization server and Dovecots that check tokens with it, and Dovecots of
special shapes.

A missing server binary makes its fixtures FAIL, never skip: CI counts a skip as a failure.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from mailsync.testing.dovecot import DovecotServer, ImapUser
from mailsync.testing.oauth_server import OAuthServer
from mailsync.testing.pytest_plugin import discard, server_dir, start_dovecot

# Property tests check answers, not speed (speed lives in scripts/bench*): no per-example deadline,
# which a busy CI machine's scheduling, not the code, would otherwise decide.
settings.register_profile("mailsync", deadline=None)
settings.load_profile("mailsync")

_user_numbers = itertools.count(1)

@pytest.fixture
def store(tmp_path: Path):
    """A SQLite store in the test's own folder, disposed of afterwards (a module that needs another
    store defines its own fixture of this name)."""
    from mailsync.store.db import open_store

    s = open_store(f"sqlite:///{tmp_path}/store.db")
    yield s
    s.dispose()


# --------------------------------------------------------------------------- OAuth2 (issue 6)
# A local authorization server (mailsync/testing/oauth_server.py) and a Dovecot whose oauth2 passdb
# checks every XOAUTH2/OAUTHBEARER login by introspection at it, so IMAP logins really check tokens.


@pytest.fixture(scope="session")
def oauth_server() -> Iterator[OAuthServer]:
    """One local OAuth2 authorization server (https://127.0.0.1:PORT) for the session. Tests
    register their own clients (``register_client(access_token_lifetime=...)``) and users."""
    root = server_dir("mailsync-oauth-")
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
            servers[key] = start_dovecot(oauth2_introspection_url=oauth_server.introspection_url(),
                                          oauth2_ca_file=oauth_server.ca_file, oauth2_mechanisms=key)
        return servers[key]

    yield make
    for server in servers.values():
        discard(server)


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
    server = start_dovecot()
    yield server
    discard(server)


#: For tests with hundreds of connections: Dovecot's default process_limit (100 per service) would
#: make it reset new connections (each TLS session also keeps an imap-login process as its proxy).
MANY_CONNECTIONS_CONF = "default_process_limit = 2000\ndefault_client_limit = 20000\n"


@pytest.fixture(scope="session")
def dovecot_many() -> Iterator[DovecotServer]:
    """A Dovecot for many accounts at once (no per-service limit of 100 processes)."""
    server = start_dovecot(extra_conf=MANY_CONNECTIONS_CONF)
    yield server
    discard(server)


# --------------------------------------------------------------------------- a real self-hosted CRM
# BottleCRM (django-crm from PyPI) under gunicorn on 127.0.0.1, from the virtualenv scripts/test-crm
# makes (tests/bottlecrm_server.py); one server for the session, one fresh organization per test.
_crm_started: list[float] = []


@pytest.fixture(scope="session")
def bottlecrm_server() -> Iterator["BottleCrmServer"]:
    from bottlecrm_server import BottleCrmServer, crm_home, crm_python

    python = crm_python()
    if python is None:
        pytest.fail(f"the BottleCRM tests need the CRM installed in {crm_home()}: run scripts/test-crm "
                    "(they are never skipped)", pytrace=False)
    root = server_dir("mailsync-bottlecrm-")
    server = BottleCrmServer(root, python).start()
    _crm_started.append(server.start_seconds)
    yield server
    server.stop()
    if not os.environ.get("MAILSYNC_KEEP_TEST_SERVERS"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def bottlecrm(bottlecrm_server):
    """An organization of the session's BottleCRM that no other test has used (``.url``, ``.token``)."""
    return bottlecrm_server.new_org()


def pytest_terminal_summary(terminalreporter) -> None:
    for seconds in _crm_started:
        terminalreporter.write_line(f"BottleCRM test server started in {seconds:.1f}s")
