"""Typed settings that the rest of mailsync reads.

Owns: the frozen dataclasses describing a loaded config. Must not: read files, resolve secrets or
touch the network (mailsync.config.loader reads TOML into these; mailsync.auth resolves secrets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the CRM layer's type; importing it here would make config depend on crm
    from mailsync.crm.settings import CrmSettings

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
class PushSettings:
    """How ``mailsync watch`` treats the account (read by mailsync.push.daemon)."""

    watch: bool | tuple[str, ...] | None = None  # false: not watched; folder names; None/true: every folder
    poll_interval: float | None = None  # seconds between STATUS polls (None: the daemon's default)
    idle_refresh: float | None = None  # seconds before an IDLE is re-issued (None: the daemon's default)


@dataclass(frozen=True)
class OAuthSettings:
    """An ``auth = "oauth2"`` account's provider details (read by mailsync.auth.oauth2); None: the
    provider's default."""

    scopes: tuple[str, ...] | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    tenant: str | None = None  # microsoft: a tenant name or id, or an https:// authority URL


@dataclass(frozen=True)
class AccountCrmSettings:
    """What the CRM reads of the account (mailsync.crm.settings); None: the ``[crm]`` default."""

    identities: tuple[str, ...] | None = None  # our own addresses on this account
    share: str | None = None  # metadata | subject | everything
    create_contacts: str | None = None  # none | sent | sent_and_received


@dataclass(frozen=True)
class HookSettings:
    """Shell commands run after a sync of the account (mailsync.cli.hooks); None: the [hooks] table's."""

    post_sync: str | None = None
    on_new_mail: str | None = None


@dataclass(frozen=True)
class MirrorSettings:
    """The account's live Maildir mirror (mailsync.mirror.live); None: the account has none."""

    maildir: Path | None = None  # its folder, ~ expanded, relative paths resolved against the config's folder
    maildir_layout: str | None = None  # maildir++ | fs (set with maildir; maildir++ by default)


_SUB_SETTINGS = (("push", PushSettings), ("oauth", OAuthSettings), ("crm", AccountCrmSettings),
                 ("hooks", HookSettings), ("mirror", MirrorSettings))


def _split_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The typed sub-settings of an ``extra`` mapping (its keys as written in the file)."""
    parts: dict[str, dict[str, Any]] = {name: {} for name, _ in _SUB_SETTINGS}
    for key, value in extra.items():
        for name, cls in _SUB_SETTINGS:
            if key in cls.__dataclass_fields__:
                parts[name][key] = tuple(value) if isinstance(value, list) else value
                break
        else:
            raise TypeError(f"AccountConfig: unknown extra key {key!r}")
    return {name: cls(**parts[name]) for name, cls in _SUB_SETTINGS}


def _join_extra(account: "AccountConfig") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, _ in _SUB_SETTINGS:
        out.update({k: v for k, v in asdict(getattr(account, name)).items() if v is not None})
    return out


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
    # The overall deadline of one IMAP command: command_deadline seconds (None: twice `timeout`),
    # plus one second for each deadline_rate bytes of answer asked for and received (bodies, listings).
    command_deadline: float | None = None
    deadline_rate: int = 32 * 1024
    # Limits the user sets (mailsync.config.limits): only mail newer than max_age seconds, bodies of at
    # most max_size bytes (larger ones: headers only), at most max_download_rate bytes a second; a
    # throttled server is waited for in place up to throttle_max_wait seconds. None: no limit.
    max_age: int | None = None
    max_size: int | None = None
    max_download_rate: int | None = None
    throttle_max_wait: float = 900.0
    auth: Literal["password", "oauth2"] = "password"
    provider: str | None = None
    client_id: SecretRef | None = None
    client_secret: SecretRef | None = None
    push: PushSettings = PushSettings()
    oauth: OAuthSettings = OAuthSettings()
    crm: AccountCrmSettings = AccountCrmSettings()
    hooks: HookSettings = HookSettings()
    mirror: MirrorSettings = MirrorSettings()
    # The keys of the typed settings above that the file sets, as one mapping (identities,
    # share, create_contacts, watch, poll_interval, idle_refresh, scopes, authorization_endpoint,
    # token_endpoint, tenant, post_sync, on_new_mail; arrays as tuples). Given instead of the typed
    # settings (``AccountConfig(..., extra={"poll_interval": 60})``), it is split into them. mailsync
    # reads the typed settings; this view is kept for callers that predate them.
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.extra and dict(self.extra) != _join_extra(self):  # (dataclasses.replace passes both)
            if any(getattr(self, name) != cls() for name, cls in _SUB_SETTINGS):
                raise TypeError("AccountConfig: give either extra or the typed settings, not both")
            for name, value in _split_extra(self.extra).items():
                object.__setattr__(self, name, value)
        object.__setattr__(self, "extra", _join_extra(self))


@dataclass(frozen=True)
class StoreConfig:
    url: str


@dataclass(frozen=True)
class ChannelConfig:
    """A ``[[channel]]``: the folders of ``source`` that ``dest`` gets copies of (mailsync.channel)."""

    name: str
    source: str  # account name ("from")
    dest: str  # account name ("to")
    folders: tuple[str, ...] = ("*",)  # patterns of the source's folder names
    exclude: tuple[str, ...] = ()
    folder_map: Mapping[str, str] = field(default_factory=dict, hash=False)  # source name -> dest name
    mode: str = "copy"
    delete: str = "none"


@dataclass(frozen=True)
class Config:
    path: Path | None
    store: StoreConfig
    accounts: tuple[AccountConfig, ...] = field(default_factory=tuple)
    # The [crm] table as written (empty when the file has none; the CRM runs only when it is not).
    crm: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # ... and its settings, checked and built once by the loader (mailsync.crm.settings owns the
    # rules); None when the file has no [crm] table. Read through CrmSettings.from_config.
    crm_settings: "CrmSettings | None" = field(default=None, hash=False)
    # The [hooks] table: post_sync / on_new_mail shell commands for every account (an account's own
    # keys of the same names take their place for it).
    hooks: Mapping[str, str] = field(default_factory=dict, hash=False)
    channels: tuple[ChannelConfig, ...] = field(default_factory=tuple)

    def account(self, name: str) -> AccountConfig:
        for acc in self.accounts:
            if acc.name == name:
                return acc
        raise KeyError(name)
