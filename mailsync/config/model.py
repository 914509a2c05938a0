"""Typed settings that the rest of mailsync reads.

Owns: the frozen dataclasses describing a loaded config. Must not: read files, resolve secrets or
touch the network (mailsync.config.loader reads TOML into these; mailsync.auth resolves secrets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

TlsMode = Literal["implicit", "starttls", "none"]
ConflictPolicy = Literal["server", "local", "newest"]


@dataclass(frozen=True)
class SecretRef:
    """Where a secret comes from: ``env:NAME``, ``cmd:COMMAND``, ``keyring:SERVICE/USER`` or a literal.

    ``repr`` never shows a literal's value, so a SecretRef can be logged safely.
    """

    kind: Literal["env", "cmd", "keyring", "literal"]
    value: str
    origin: str = ""  # "FILE: account 'work' key 'password'", for error messages

    def __repr__(self) -> str:
        shown = "***" if self.kind == "literal" else self.value
        return f"SecretRef({self.kind}:{shown})"

    __str__ = __repr__


@dataclass(frozen=True)
class AccountConfig:
    name: str
    host: str
    username: str
    port: int = 993
    tls: TlsMode = "implicit"
    password: SecretRef | None = None
    folders: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    ca_file: Path | None = None
    allow_plaintext: bool = False
    conflict: ConflictPolicy = "server"
    max_connections: int = 4
    batch_size: int = 5000  # messages per committed batch
    timeout: float = 60.0  # seconds for connect and each read
    auth: Literal["password", "oauth2"] = "password"
    provider: str | None = None
    client_id: SecretRef | None = None
    client_secret: SecretRef | None = None
    # Keys that later features read (identities, share, create_contacts, watch, poll_interval,
    # idle_refresh, scopes, authorization_endpoint, token_endpoint, tenant; the hooks post_sync and
    # on_new_mail), type-checked by the loader and kept here as parsed (arrays as tuples). Only the
    # keys present in the file appear.
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class StoreConfig:
    url: str


@dataclass(frozen=True)
class Config:
    path: Path | None
    store: StoreConfig
    accounts: tuple[AccountConfig, ...] = field(default_factory=tuple)
    # The reserved [crm] table, as parsed and not yet validated (the crm layer will own its rules).
    crm: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # The [hooks] table: post_sync / on_new_mail shell commands for every account (an account's own
    # keys of the same names take their place for it).
    hooks: Mapping[str, str] = field(default_factory=dict, hash=False)

    def account(self, name: str) -> AccountConfig:
        for acc in self.accounts:
            if acc.name == name:
                return acc
        raise KeyError(name)
