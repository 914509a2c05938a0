"""A keyring backend for tests: the ``keyring`` package's backend API over one JSON file.

Owns: ``JsonFileKeyring``, which tests select with ``PYTHON_KEYRING_BACKEND=
mailsync.testing.keyring_backend.JsonFileKeyring`` (for a `mailsync` subprocess) or
``keyring.set_keyring(JsonFileKeyring(path))`` (in process), so that the "tokens in the OS keyring"
path runs through keyring's real API without touching the developer's own keyring.
Must not: be used outside tests (it stores secrets in plain JSON), or import the engine.

The file is ``$MAILSYNC_TEST_KEYRING_FILE`` (or the path given to the constructor).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.compat.properties import classproperty
from keyring.errors import PasswordDeleteError

__all__ = ["JsonFileKeyring"]

FILE_ENV = "MAILSYNC_TEST_KEYRING_FILE"


class JsonFileKeyring(KeyringBackend):
    @classproperty
    def priority(cls) -> float:  # type: ignore[override]
        # keyring instantiates every backend class it knows of when it picks one by itself: without
        # the file named, this one is "not viable" and never picked.
        if not os.environ.get(FILE_ENV):
            raise RuntimeError(f"set {FILE_ENV} to use this test keyring")
        return 1

    def __init__(self, path: Path | str | None = None) -> None:
        super().__init__()
        self._path = Path(path) if path else None

    @property
    def path(self) -> Path:
        chosen = self._path or os.environ.get(FILE_ENV)
        if not chosen:
            raise RuntimeError(f"JsonFileKeyring needs a path or {FILE_ENV}")
        return Path(chosen)

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def _write(self, data: dict) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.path)

    def get_password(self, service: str, username: str) -> str | None:
        return self._read().get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._read()
        data.setdefault(service, {})[username] = password
        self._write(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._read()
        if username not in data.get(service, {}):
            raise PasswordDeleteError(f"no item for {service}/{username}")
        del data[service][username]
        self._write(data)
