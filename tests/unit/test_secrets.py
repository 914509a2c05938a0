"""Unit tests for mailsync.auth.secrets: env:, cmd: (real shell commands), keyring: (a small
in-memory implementation of keyring's backend interface), literal; and that no message carries
the secret.
"""

from __future__ import annotations

import os
import time

import keyring
import keyring.backend
import keyring.errors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsync.auth.secrets import resolve_secret
from mailsync.config.model import SecretRef
from mailsync.errors import CredentialError

ORIGIN = "/home/me/.config/mailsync/config.toml: account 'work' key 'password'"
SECRET = "s3cret-Tr0ub4dor&3"


def ref(kind: str, value: str) -> SecretRef:
    return SecretRef(kind, value, ORIGIN)  # type: ignore[arg-type]


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A complete keyring backend that keeps passwords in a dict."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self.passwords[(service, username)]
        except KeyError:
            raise keyring.errors.PasswordDeleteError(username) from None


class LockedKeyring(MemoryKeyring):
    """A backend whose store is locked: every read fails, as a locked Secret Service does."""

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("collection is locked")


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def locked_keyring():
    previous = keyring.get_keyring()
    keyring.set_keyring(LockedKeyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


def assert_credential_error(err: CredentialError, *in_message: str, hint: str) -> None:
    assert err.message.startswith(ORIGIN + ": "), err.message
    for fragment in in_message:
        assert fragment in err.message, (fragment, err.message)
    assert err.hint and hint in err.hint, (hint, err.hint)
    assert SECRET not in str(err)


# ----------------------------------------------------------------------------------- success


def test_literal():
    assert resolve_secret(ref("literal", SECRET)) == SECRET


def test_env(monkeypatch):
    monkeypatch.setenv("WORK_PW", SECRET)
    assert resolve_secret(ref("env", "WORK_PW")) == SECRET


@pytest.mark.parametrize(("command", "expected"), [
    ("printf 'pw\\n'", "pw"),
    ("printf 'pw'", "pw"),
    ("printf 'pw\\r\\n'", "pw"),
    ("printf ' pw with spaces  \\n'", " pw with spaces  "),
    ("echo ignored >&2; printf 'pw\\n'", "pw"),
    ("printf '%s\\n' \"$MAILSYNC_TEST_PW\"", SECRET),
])
def test_cmd(monkeypatch, command, expected):
    monkeypatch.setenv("MAILSYNC_TEST_PW", SECRET)
    assert resolve_secret(ref("cmd", command)) == expected


def test_cmd_unicode():
    assert resolve_secret(ref("cmd", "printf 'p\\303\\244ss\\n'")) == "päss"


def test_keyring(memory_keyring):
    memory_keyring.set_password("mailsync", "me@example.com", SECRET)
    assert resolve_secret(ref("keyring", "mailsync/me@example.com")) == SECRET


def test_keyring_user_with_slash(memory_keyring):
    memory_keyring.set_password("svc", "dom/user", SECRET)
    assert resolve_secret(ref("keyring", "svc/dom/user")) == SECRET


# ------------------------------------------------------------------------------------ errors

# The secret is provided to the failing commands through the environment, so that it is not part
# of the command text (which messages do show).
CMD_ERRORS = [
    ("exit-status", 'printf "%s\\n" "$MAILSYNC_TEST_PW"; echo "gpg: decryption failed" >&2; echo more >&2; exit 3',
     ["exited with status 3", "gpg: decryption failed"], "run the command"),
    ("not-found", "mailsync-no-such-program-xyz", ["exited with status 127", "not found"], "PATH"),
    ("no-stderr", 'printf "%s" "$MAILSYNC_TEST_PW"; exit 1', ["exited with status 1", "nothing on stderr"],
     "run the command"),
    ("killed", 'printf "%s" "$MAILSYNC_TEST_PW"; kill -9 $$', ["killed by signal 9"], "run the command"),
    ("empty-output", "true", ["printed nothing"], "print the secret"),
    ("only-newline", "echo", ["printed nothing"], "print the secret"),
    ("stdin-closed", "cat", ["printed nothing"], "print the secret"),  # would hang if stdin were open
    ("several-lines", 'printf "%s\\nuser: me\\n" "$MAILSYNC_TEST_PW"', ["printed 2 lines"], "head -n 1"),
    ("not-utf8", "printf '\\377\\376'", ["not UTF-8"], "UTF-8"),
]


@pytest.mark.parametrize(("command", "in_message", "hint"), [pytest.param(*c[1:], id=c[0]) for c in CMD_ERRORS])
def test_cmd_errors(monkeypatch, command, in_message, hint):
    monkeypatch.setenv("MAILSYNC_TEST_PW", SECRET)
    with pytest.raises(CredentialError) as info:
        resolve_secret(ref("cmd", command))
    assert_credential_error(info.value, f"`{command}`", *in_message, hint=hint)


def test_cmd_stderr_is_shortened():
    with pytest.raises(CredentialError) as info:
        resolve_secret(ref("cmd", "python3 -c \"import sys; sys.stderr.write('x' * 5000)\"; exit 2"))
    assert len(info.value.message) < 600


def test_cmd_timeout():
    start = time.monotonic()
    with pytest.raises(CredentialError) as info:
        resolve_secret(ref("cmd", "sleep 4; echo late"), timeout=0.5)
    assert time.monotonic() - start < 10
    assert_credential_error(info.value, "did not finish within 0.5 s", hint="without waiting for input")


def test_env_missing(monkeypatch):
    monkeypatch.delenv("WORK_PW", raising=False)
    with pytest.raises(CredentialError) as info:
        resolve_secret(ref("env", "WORK_PW"))
    assert_credential_error(info.value, "WORK_PW", "not set", hint="export WORK_PW=...")


def test_env_empty(monkeypatch):
    monkeypatch.setenv("WORK_PW", "")
    with pytest.raises(CredentialError) as info:
        resolve_secret(ref("env", "WORK_PW"))
    assert_credential_error(info.value, "WORK_PW", "empty", hint="export WORK_PW=...")


def test_keyring_missing_entry(memory_keyring):
    memory_keyring.set_password("mailsync", "other@example.com", SECRET)
    with pytest.raises(CredentialError) as info:
        resolve_secret(ref("keyring", "mailsync/me@example.com"))
    assert_credential_error(info.value, "'mailsync'", "'me@example.com'", "MemoryKeyring", "no password",
                            hint="keyring set mailsync me@example.com")


def test_keyring_backend_failure(locked_keyring):
    with pytest.raises(CredentialError) as info:
        resolve_secret(ref("keyring", "mailsync/me@example.com"))
    assert_credential_error(info.value, "LockedKeyring", "KeyringLocked", "collection is locked",
                            hint="unlock or configure the keyring")


def test_errors_without_origin(monkeypatch):
    monkeypatch.delenv("NOPE_PW", raising=False)
    with pytest.raises(CredentialError) as info:
        resolve_secret(SecretRef("env", "NOPE_PW"))
    assert "NOPE_PW" in info.value.message and info.value.hint == "export NOPE_PW=... in the environment mailsync runs in"


# ------------------------------------------------------------------------------- property


@settings(max_examples=40, deadline=None)
@given(secret=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=6, max_size=30))
def test_failing_command_never_shows_its_stdout(secret):
    marker = "Zq" + secret
    command = 'printf "%s\\n" "$MAILSYNC_PROP_PW"; echo denied >&2; exit 1'
    os.environ["MAILSYNC_PROP_PW"] = marker  # hypothesis does not mix with monkeypatch
    try:
        with pytest.raises(CredentialError) as info:
            resolve_secret(SecretRef("cmd", command, ORIGIN))
    finally:
        del os.environ["MAILSYNC_PROP_PW"]
    assert marker not in str(info.value)
    assert "denied" in info.value.message
