"""Token storage (mailsync.auth.tokens): a private file under the XDG data path, replaced
atomically; the keyring through keyring's real backend API; the choice between them; the lock
that serializes refreshes; and that no token ever shows in a repr or an error."""

from __future__ import annotations

import os
import stat
import threading
import time

import keyring
import pytest

from mailsync.auth import tokens as T
from mailsync.errors import CredentialError
from mailsync.testing.keyring_backend import JsonFileKeyring

AT, RT = "at-SECRET-access-0123456789", "rt-SECRET-refresh-0123456789"


def _record(**kw) -> T.TokenRecord:
    base = dict(provider="generic", username="me@example.com", access_token=AT, expires_at=time.time() + 60,
                lifetime=60.0, refresh_token=RT, scope="mail", updated_at=time.time())
    base.update(kw)
    return T.TokenRecord(**base)


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("MAILSYNC_TOKEN_STORE", raising=False)
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    return tmp_path / "data"


@pytest.fixture
def keyring_backend(tmp_path, monkeypatch):
    """A real keyring backend (JSON file) installed as the process's keyring for the test."""
    before = keyring.get_keyring()
    monkeypatch.setenv("MAILSYNC_TEST_KEYRING_FILE", str(tmp_path / "keyring.json"))
    backend = JsonFileKeyring(tmp_path / "keyring.json")
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(before)


def test_record_repr_hides_tokens():
    rec = _record(msal_cache='{"RefreshToken": {"x": {"secret": "rt-in-cache"}}}')
    for text in (repr(rec), str(rec), f"{rec}"):
        assert AT not in text and RT not in text and "rt-in-cache" not in text
        assert "me@example.com" in text and "***" in text


def test_file_store_round_trip_private_and_under_xdg_data(data_home):
    store = T.FileTokenStore()
    assert store.load("work") is None
    store.save("work", _record())
    path = data_home / "mailsync" / "tokens" / "work.json"
    assert store.path("work") == path and path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    loaded = store.load("work")
    assert loaded.access_token == AT and loaded.refresh_token == RT and loaded.username == "me@example.com"
    assert [p.name for p in path.parent.iterdir()] == ["work.json"]  # no temporary file left behind
    assert str(path) in store.location("work") and AT not in store.location("work")


def test_file_store_replaces_atomically(data_home):
    store = T.FileTokenStore()
    store.save("work", _record())
    first = os.stat(store.path("work")).st_ino
    store.save("work", _record(refresh_token="rt-rotated"))
    # a new file renamed over the old one (never rewritten in place): a reader sees one or the other
    assert os.stat(store.path("work")).st_ino != first
    assert store.load("work").refresh_token == "rt-rotated"


def test_file_store_tightens_loosened_modes(data_home):
    store = T.FileTokenStore()
    store.save("work", _record())
    store.path("work").chmod(0o644)
    store.path("work").parent.chmod(0o755)
    assert store.load("work").access_token == AT
    assert stat.S_IMODE(store.path("work").stat().st_mode) == 0o600
    store.save("work", _record())
    assert stat.S_IMODE(store.path("work").parent.stat().st_mode) == 0o700


def test_damaged_file_is_an_error_without_its_contents(data_home):
    store = T.FileTokenStore()
    store.save("work", _record())
    store.path("work").write_text('{"format": 1, "access_token": "' + AT + '", "broken": ')
    with pytest.raises(CredentialError) as info:
        store.load("work")
    assert AT not in str(info.value) and "mailsync auth login" in str(info.value)


def test_delete(data_home):
    store = T.FileTokenStore()
    assert store.delete("work") is False
    store.save("work", _record())
    assert store.delete("work") is True and store.load("work") is None


def test_keyring_store_uses_the_keyring_api(keyring_backend, data_home):
    store = T.KeyringTokenStore(keyring_backend)
    assert store.load("work") is None
    store.save("work", _record())
    raw = keyring_backend.get_password(T.KEYRING_SERVICE, "work")
    assert raw is not None and T.TokenRecord.from_json(raw, "x").refresh_token == RT
    assert store.load("work").access_token == AT
    assert "JsonFileKeyring" in store.location("work") and AT not in store.location("work")
    assert not (data_home / "mailsync" / "tokens" / "work.json").exists()  # nothing on disk beside it
    assert store.delete("work") is True and store.delete("work") is False


def test_keyring_failures_name_the_backend_and_the_way_out(tmp_path):
    class Locked(JsonFileKeyring):
        def get_password(self, service, username):
            raise RuntimeError("the collection is locked")

    store = T.KeyringTokenStore(Locked(tmp_path / "k.json"))
    with pytest.raises(CredentialError) as info:
        store.load("work")
    assert "Locked" in str(info.value) and "MAILSYNC_TOKEN_STORE=file" in str(info.value)


def test_choice_of_store(data_home, monkeypatch, keyring_backend):
    assert isinstance(T.open_token_store("file"), T.FileTokenStore)
    monkeypatch.setenv("MAILSYNC_TOKEN_STORE", "file")
    assert isinstance(T.open_token_store(), T.FileTokenStore)
    monkeypatch.setenv("MAILSYNC_TOKEN_STORE", "keyring")
    assert isinstance(T.open_token_store(), T.KeyringTokenStore)
    monkeypatch.setenv("MAILSYNC_TOKEN_STORE", "auto")
    assert isinstance(T.open_token_store(), T.KeyringTokenStore)  # a usable backend: the keyring
    monkeypatch.setenv("MAILSYNC_TOKEN_STORE", "bogus")
    with pytest.raises(CredentialError, match="auto, keyring, file"):
        T.open_token_store()


def test_no_usable_keyring_means_a_file(data_home, monkeypatch):
    from keyring.backends import fail

    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        assert T.usable_keyring() is None
        assert isinstance(T.open_token_store("auto"), T.FileTokenStore)
        with pytest.raises(CredentialError, match="no usable keyring"):
            T.open_token_store("keyring")
    finally:
        keyring.set_keyring(before)


def test_low_priority_backends_are_not_trusted_unless_named(tmp_path, monkeypatch):
    class Plain(JsonFileKeyring):
        priority = 0.5  # type: ignore[assignment]  # like keyrings.alt's plaintext file

    before = keyring.get_keyring()
    keyring.set_keyring(Plain(tmp_path / "k.json"))
    try:
        monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
        assert T.usable_keyring() is None
        monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "some.Backend")  # chosen explicitly: trusted
        assert T.usable_keyring() is not None
    finally:
        keyring.set_keyring(before)


def test_lock_serializes_across_open_files(data_home):
    store = T.FileTokenStore()
    order = []
    entered = threading.Event()

    def holder():
        with store.lock("work"):
            entered.set()
            time.sleep(0.3)
            order.append("first done")

    t = threading.Thread(target=holder)
    t.start()
    entered.wait(5)
    with store.lock("work"):  # a second open file description: flock makes it wait
        order.append("second in")
    t.join()
    assert order == ["first done", "second in"]
    assert stat.S_IMODE((data_home / "mailsync" / "tokens" / "work.lock").stat().st_mode) == 0o600
