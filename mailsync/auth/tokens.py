"""Where OAuth2 tokens live between runs: the OS keyring when a usable backend exists, otherwise a
file readable by its owner only, under ``$XDG_DATA_HOME/mailsync/tokens/``.

Owns: the stored record (``TokenRecord``, one JSON document per account), the choice of backend
(``MAILSYNC_TOKEN_STORE`` = ``auto`` (default) | ``keyring`` | ``file``), atomic replacement
(write a new file then rename; one keyring item per account), and the per-account lock that
serializes refreshes across processes (a rotated refresh token must never be used twice).
Must not: talk to a provider (mailsync.auth.oauth2 does), or let a token reach a message, a log
line or an exception: a record's repr hides them, and errors here name paths and backends only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from mailsync.errors import CredentialError
from mailsync.fsutil import fsync_dir, write_all

__all__ = [
    "KEYRING_SERVICE",
    "FileTokenStore",
    "KeyringTokenStore",
    "TokenRecord",
    "TokenStore",
    "open_token_store",
    "token_dir",
]

KEYRING_SERVICE = "mailsync-oauth2"
STORE_ENV = "MAILSYNC_TOKEN_STORE"
STORE_KINDS = ("auto", "keyring", "file")
LOCK_TIMEOUT = 120.0  # seconds to wait for another process's refresh
_SECRET_FIELDS = ("access_token", "refresh_token", "msal_cache")
_FORMAT = 1


@dataclass
class TokenRecord:
    """What is kept for one account. ``needs_login`` set means the tokens are gone and only
    ``mailsync auth login`` helps (the reason is kept for `mailsync status`)."""

    provider: str
    username: str
    access_token: str | None = None
    expires_at: float | None = None  # epoch seconds
    lifetime: float | None = None  # the access token's expires_in, for the refresh margin
    refresh_token: str | None = None
    scope: str | None = None
    msal_cache: str | None = None  # microsoft: msal's serialized token cache (it holds the refresh token)
    needs_login: str | None = None
    updated_at: float = 0.0

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if getattr(self, f.name) and f.name in _SECRET_FIELDS else getattr(self, f.name)!r}"
            for f in fields(self))
        return f"TokenRecord({shown})"

    __str__ = __repr__

    @property
    def can_refresh(self) -> bool:
        return self.needs_login is None and bool(self.refresh_token or self.msal_cache)

    def to_json(self) -> str:
        return json.dumps({"format": _FORMAT, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> TokenRecord:
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != _FORMAT:
                raise ValueError("unknown format")
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError):
            raise CredentialError(f"{where}: the stored OAuth2 tokens cannot be read (damaged or from another "
                                  "version; contents not shown)",
                                  hint="log in again: mailsync auth login ACCOUNT (this replaces them)") from None


class TokenStore:
    """A place for TokenRecords, one per account name."""

    kind = "?"

    def load(self, account: str) -> TokenRecord | None:
        raise NotImplementedError

    def save(self, account: str, record: TokenRecord) -> None:
        raise NotImplementedError

    def delete(self, account: str) -> bool:
        raise NotImplementedError

    def location(self, account: str) -> str:
        """Where the account's tokens are, for messages (never the tokens)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def lock(self, account: str) -> Iterator[None]:
        """Exclusive across processes: held while a refresh reads, uses and replaces the record."""
        folder = token_dir()
        _ensure_private_dir(folder)
        path = folder / f"{account}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                        raise CredentialError(f"{path}: could not lock the OAuth2 tokens of account "
                                              f"'{account}' ({exc.strerror or exc})",
                                              hint="another mailsync may be stuck refreshing; stop it and retry") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def token_dir() -> Path:
    """``$XDG_DATA_HOME/mailsync/tokens`` (``~/.local/share/mailsync/tokens`` by default)."""
    value = os.environ.get("XDG_DATA_HOME", "")
    base = Path(value) if value and os.path.isabs(value) else Path.home() / ".local" / "share"
    return base / "mailsync" / "tokens"


def _ensure_private_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = folder.stat()
        if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
            folder.chmod(0o700)
    except OSError as exc:
        raise CredentialError(f"{folder}: cannot create the folder for OAuth2 tokens: {exc.strerror or exc}",
                              hint="check the permissions of XDG_DATA_HOME (or ~/.local/share)") from None


class FileTokenStore(TokenStore):
    """One ``NAME.json`` per account, mode 0600 in a 0700 folder, replaced atomically."""

    kind = "file"

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder

    @property
    def folder(self) -> Path:
        return self._folder or token_dir()

    def path(self, account: str) -> Path:
        return self.folder / f"{account}.json"

    def location(self, account: str) -> str:
        return f"file {self.path(account)}"

    def load(self, account: str) -> TokenRecord | None:
        path = self.path(account)
        try:
            with open(path, encoding="utf-8") as fh:
                if stat.S_IMODE(os.fstat(fh.fileno()).st_mode) & 0o077:
                    os.fchmod(fh.fileno(), 0o600)  # someone loosened it: tighten, then read
                text = fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CredentialError(f"{path}: cannot read the stored OAuth2 tokens: {exc.strerror or exc}",
                                  hint=f"check the permissions of {path.parent}") from None
        return TokenRecord.from_json(text, str(path))

    def save(self, account: str, record: TokenRecord) -> None:
        folder = self.folder
        _ensure_private_dir(folder)
        path = self.path(account)
        tmp = folder / f".{account}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        data = record.to_json().encode("utf-8")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            fsync_dir(folder)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise CredentialError(f"{path}: cannot save the OAuth2 tokens: {exc.strerror or exc}",
                                  hint=f"check free space and the permissions of {folder}") from None

    def delete(self, account: str) -> bool:
        try:
            self.path(account).unlink()
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise CredentialError(f"{self.path(account)}: cannot remove the OAuth2 tokens: {exc.strerror or exc}") from None


class KeyringTokenStore(TokenStore):
    """One keyring item per account: service ``mailsync-oauth2``, user = the account name."""

    kind = "keyring"

    def __init__(self, backend=None) -> None:
        import keyring

        self._keyring = keyring
        self._backend = backend

    @property
    def backend(self):
        return self._backend or self._keyring.get_keyring()

    @property
    def backend_name(self) -> str:
        cls = type(self.backend)
        return f"{cls.__module__}.{cls.__qualname__}"

    def location(self, account: str) -> str:
        return f"keyring {self.backend_name} (service {KEYRING_SERVICE!r}, user {account!r})"

    def _fail(self, account: str, doing: str, exc: Exception) -> CredentialError:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        detail = f"{type(exc).__name__}: {reason[:200]}" if reason else type(exc).__name__
        return CredentialError(f"the keyring {self.backend_name} failed to {doing} the OAuth2 tokens of account "
                               f"'{account}': {detail}",
                               hint=f"unlock the keyring, or keep tokens in a file instead: export {STORE_ENV}=file")

    def load(self, account: str) -> TokenRecord | None:
        try:
            text = self.backend.get_password(KEYRING_SERVICE, account)
        except Exception as exc:  # any backend failure: locked, D-Bus down ...
            raise self._fail(account, "read", exc) from None
        if not text:
            return None
        return TokenRecord.from_json(text, self.location(account))

    def save(self, account: str, record: TokenRecord) -> None:
        try:
            self.backend.set_password(KEYRING_SERVICE, account, record.to_json())
        except Exception as exc:
            raise self._fail(account, "save", exc) from None

    def delete(self, account: str) -> bool:
        try:
            if not self.backend.get_password(KEYRING_SERVICE, account):
                return False
            self.backend.delete_password(KEYRING_SERVICE, account)
            return True
        except Exception as exc:
            raise self._fail(account, "remove", exc) from None


def usable_keyring():
    """The keyring backend to use, or None when there is none worth trusting: no backend, the
    "fail"/"null" ones, or only low-priority ones (e.g. plaintext files) unless chosen explicitly
    with PYTHON_KEYRING_BACKEND."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:
        return None
    if isinstance(backend, fail.Keyring) or type(backend).__module__ == "keyring.backends.null":
        return None
    if getattr(backend, "backends", None) == []:  # a chainer with nothing in it
        return None
    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        return backend
    try:
        priority = float(backend.priority)
    except Exception:
        return None
    return backend if priority >= 1 else None


def open_token_store(kind: str | None = None) -> TokenStore:
    """The store to use: ``kind`` or ``$MAILSYNC_TOKEN_STORE`` (auto | keyring | file)."""
    kind = (kind or os.environ.get(STORE_ENV) or "auto").strip().lower()
    if kind not in STORE_KINDS:
        raise CredentialError(f"{STORE_ENV}={kind!r} is not a token store",
                              hint=f"use one of: {', '.join(STORE_KINDS)}")
    if kind == "file":
        return FileTokenStore()
    backend = usable_keyring()
    if kind == "keyring":
        if backend is None:
            raise CredentialError(f"{STORE_ENV}=keyring, but no usable keyring backend is installed or running",
                                  hint=f"start or install one (see `keyring --list-backends`), or export {STORE_ENV}=file")
        return KeyringTokenStore(backend)
    return KeyringTokenStore(backend) if backend is not None else FileTokenStore()
