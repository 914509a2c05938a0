"""mailsync.imap.failures: the one map from library exceptions to mailsync errors."""

from __future__ import annotations

import socket
import ssl
import sys
import types

import pytest

from mailsync.config.model import AccountConfig
from mailsync.errors import ConnectError, TLSVerifyError
from mailsync.imap.failures import mapped

ACC = AccountConfig(name="acc", host="imap.example.org", port=993, username="u")


@pytest.mark.parametrize("exc, error, text", [
    (ConnectionRefusedError(), ConnectError, "connection to imap.example.org:993 refused"),
    (socket.gaierror(-2, "Name or service not known"), ConnectError, "cannot resolve host 'imap.example.org'"),
    (TimeoutError(), ConnectError, "timed out while connecting"),
    (ssl.SSLCertVerificationError(1, "x"), TLSVerifyError, "did not verify"),
    (OSError(101, "Network is unreachable"), ConnectError, "Network is unreachable"),
])
def test_library_exceptions_become_errors_that_name_account_host_and_step(exc, error, text):
    got = mapped(ACC, exc, "connecting")
    assert isinstance(got, error) and text in str(got) and "account 'acc'" in str(got)


def test_a_bug_of_ours_is_not_dressed_up_as_a_connection_problem():
    exc = KeyError("x")
    assert mapped(ACC, exc, "reading") is exc


def test_asyncio_half_imported_by_another_thread_does_not_break_the_map(monkeypatch):
    """`mailsync sync` logs in on a thread while the main thread imports; asyncio can be in
    sys.modules before its names are (a refused connection then raised AttributeError)."""
    monkeypatch.setitem(sys.modules, "asyncio", types.ModuleType("asyncio"))
    assert isinstance(mapped(ACC, ConnectionRefusedError(), "connecting"), ConnectError)
