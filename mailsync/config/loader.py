"""Read the mailsync config file (TOML) into the typed settings of mailsync.config.model.

Owns: where the config file and the default store live (``--config``, ``MAILSYNC_CONFIG``, XDG
directories), parsing with tomllib, every validation rule and default, and turning secret
*references* (``env:NAME``, ``cmd:COMMAND``, ``keyring:SERVICE/USER``, literal) into SecretRef.
Must not: resolve secrets (mailsync.auth.secrets does that), open the store, touch the network, or
put a literal secret into any message. Every error is a ConfigError whose message names the file,
the key and the bad value, and whose ``hint`` says how to fix it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mailsync.config.fields import (MISSING, Context, Table, array_of_tables, describe, is_loopback, one_of,
                                    parse_secret_ref, show, suggest)
from mailsync.config.model import (AccountConfig, AccountCrmSettings, Config, HookSettings, OAuthSettings,
                                   MirrorSettings, PushSettings, SecretRef, StoreConfig)
from mailsync.config.sqlite_url import plain_sqlite_url, resolved_plain_sqlite
from mailsync.config.limits import LIMIT_KEYS, limits
from mailsync.errors import ConfigError

__all__ = [
    "ACCOUNT_KEYS",
    "EXTRA_ACCOUNT_KEYS",
    "config_from_mapping",
    "default_config_path",
    "default_store_url",
    "load_config",
    "parse_secret_ref",
]

TOP_LEVEL_KEYS = ("store", "account", "crm", "hooks", "defaults", "channel")
HOOK_KEYS = ("post_sync", "on_new_mail")  # shell commands run after a sync that changed something
STORE_KEYS = ("url",)
# Keys of the account's typed sub-settings (AccountConfig.push, .oauth, .crm, .hooks).
EXTRA_ACCOUNT_KEYS = (
    "identities",
    "share",
    "create_contacts",
    "watch",
    "poll_interval",
    "idle_refresh",
    "scopes",
    "authorization_endpoint",
    "token_endpoint",
    "tenant",
    "maildir",
    "maildir_layout",
) + HOOK_KEYS
ACCOUNT_KEYS = (
    "name",
    "host",
    "port",
    "tls",
    "username",
    "password",
    "folders",
    "exclude",
    "ca_file",
    "allow_plaintext",
    "conflict",
    "max_connections",
    "batch_size",
    "timeout",
    "command_deadline",
    "deadline_rate",
    "auth",
    "provider",
    "client_id",
    "client_secret",
) + LIMIT_KEYS + EXTRA_ACCOUNT_KEYS
# Keys that only mean something with auth = "oauth2".
OAUTH2_ONLY_KEYS = (
    "provider",
    "client_id",
    "client_secret",
    "scopes",
    "authorization_endpoint",
    "token_endpoint",
    "tenant",
)
# Keys whose literal value is a secret: never shown, and refused in a file others can read.
SECRET_KEYS = ("password", "client_secret")

TLS_MODES = ("implicit", "starttls", "none")
CONFLICT_POLICIES = ("server", "local", "newest")
MAILDIR_LAYOUTS = ("maildir++", "fs")
AUTH_METHODS = ("password", "oauth2")
PROVIDERS = ("google", "microsoft", "generic")

ACCOUNT_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")

MAX_BATCH_SIZE = 10_000
# Account keys a [defaults] table may set for every account (an account's own value wins).
DEFAULT_KEYS = ("command_deadline", "deadline_rate")
MAX_COMMAND_DEADLINE = 24 * 3600
MIN_DEADLINE_RATE = 64  # bytes a second: below this one 50 MB message alone could take nine days
MAX_IDLE_REFRESH = 29 * 60  # RFC 2177: servers may drop an IDLE after 30 minutes

SECRET_FORMS = 'env:NAME, cmd:COMMAND or keyring:SERVICE/USER'



# --------------------------------------------------------------------------------------- paths


def _xdg_dir(variable: str, fallback: str) -> Path:
    """An XDG base directory; per the spec, an unset, empty or relative value means the default."""
    value = os.environ.get(variable, "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / fallback


def default_config_path() -> Path:
    """``$MAILSYNC_CONFIG`` if set, else ``$XDG_CONFIG_HOME/mailsync/config.toml``
    (``~/.config/mailsync/config.toml`` when XDG_CONFIG_HOME is unset)."""
    explicit = os.environ.get("MAILSYNC_CONFIG", "")
    if explicit:
        return Path(explicit).expanduser()
    return _xdg_dir("XDG_CONFIG_HOME", ".config") / "mailsync" / "config.toml"


def _default_db_path() -> Path:
    return _xdg_dir("XDG_DATA_HOME", ".local/share") / "mailsync" / "mailsync.db"


def default_store_url() -> str:
    """``sqlite:///`` + ``$XDG_DATA_HOME/mailsync/mailsync.db``
    (``~/.local/share/mailsync/mailsync.db`` when XDG_DATA_HOME is unset)."""
    plain = plain_sqlite_url(str(_default_db_path()))
    if plain is not None:
        return plain
    from sqlalchemy.engine import URL

    # URL.create quotes characters such as '?' or '#' that would otherwise end the path.
    return URL.create("sqlite", database=str(_default_db_path())).render_as_string(hide_password=False)


def _secret(table: Table, key: str) -> SecretRef | None:
    secret = key in SECRET_KEYS
    value = table.data.get(key, MISSING)
    if value is MISSING:
        return None
    example = '"env:NAME"'
    if not isinstance(value, str):
        raise table.type_error(key, value, f"a string ({SECRET_FORMS}, or the secret itself)", example,
                                secret=secret)
    if not value:
        raise table.error(key, 'must not be empty, got ""', f"set it, e.g. {key} = {example}")
    origin = f"{table.ctx.file}: {table.where(key)}"
    ref = parse_secret_ref(value, origin=origin, secret_key=key)
    if ref.kind == "literal" and secret and table.ctx.readable_by_others():
        assert table.ctx.mode is not None
        mode = stat.S_IMODE(table.ctx.mode)
        raise table.error(
            key,
            f"a literal secret (value not shown) is refused because the file is readable by group or others "
            f"(mode {mode:04o})",
            f"chmod 600 {table.ctx.file}, or replace the literal with {SECRET_FORMS}",
        )
    return ref


# ------------------------------------------------------------------------------------ store


_KNOWN_BACKENDS = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")


def _mask_url(text: str) -> str:
    """Hide a password in a URL that may not even parse (scheme://user:PASSWORD@host)."""
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1***@", text)


def _store(ctx: Context, data: Any) -> StoreConfig:
    if data is MISSING:
        return StoreConfig(url=default_store_url())
    if not isinstance(data, dict):
        raise ctx.error("key 'store'", f"must be a table, got {describe(data) if not isinstance(data, str) else 'the string ' + show(_mask_url(data))}",
                        'write it as a table:\n  [store]\n  url = "sqlite:////path/to/mailsync.db"')
    table = Table(ctx, "[store]", data, STORE_KEYS)
    table.check_unknown()
    raw = data.get("url", MISSING)
    if raw is MISSING:
        return StoreConfig(url=default_store_url())
    if not isinstance(raw, str):
        raise table.type_error("url", raw, "a string (an SQLAlchemy database URL)", f'"{default_store_url()}"')
    plain = resolved_plain_sqlite(raw, ctx.base_dir)
    if plain is not None:  # the common case, without loading SQLAlchemy
        return StoreConfig(url=plain)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = show(_mask_url(raw))
    example_hint = (f'use an SQLAlchemy URL such as "{default_store_url()}" or '
                    '"postgresql+psycopg://user@host/mailsync", or remove url to use the default')
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        raise table.error("url", f"is not a valid database URL: {shown} ({exc})", example_hint) from None
    try:
        url.get_dialect()
    except Exception:
        backend = url.get_backend_name()
        guess = suggest(backend, _KNOWN_BACKENDS)
        hint = f'did you mean "{guess}"? ' if guess else ""
        raise table.error("url", f"names an unknown database backend {show(url.drivername)} in {shown}",
                          hint + example_hint) from None
    if url.password and ctx.readable_by_others():
        assert ctx.mode is not None
        raise table.error(
            "url",
            f"contains a password (not shown) and the file is readable by group or others "
            f"(mode {stat.S_IMODE(ctx.mode):04o})",
            f"chmod 600 {ctx.file}, or leave the password out of the URL and let the driver find it "
            "(e.g. ~/.pgpass or PGPASSWORD)",
        )
    if url.get_backend_name() == "sqlite":
        db = url.database or ""
        if db and db != ":memory:" and not db.startswith("file:"):
            path = Path(db).expanduser()
            if not path.is_absolute():
                path = ctx.base_dir / path  # relative to the config file, not to the working directory
            if str(path) != db:
                raw = url.set(database=str(path)).render_as_string(hide_password=False)
    return StoreConfig(url=raw)


# --------------------------------------------------------------------------------- accounts


def _endpoint(table: Table, key: str) -> str | None:
    value = table.string(key, example='"https://login.example.com/oauth2/token"')
    if value is None:
        return None
    parts = urlsplit(value)
    ok = parts.scheme == "https" and bool(parts.hostname)
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        ok = True  # a local test server
    if not ok:
        raise table.error(key, f"must be an https:// URL, got {show(value)}",
                          f'e.g. {key} = "https://login.example.com/oauth2/token"')
    return value


def _deadline(t: Table, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``command_deadline`` (seconds) and ``deadline_rate`` (bytes a second) of a table: an
    account, or [defaults] (``defaults`` empty), whose values an account takes when it has none."""
    out: dict[str, Any] = {}
    if t.has("command_deadline"):
        out["command_deadline"] = t.number(
            "command_deadline", default=None, example="120", maximum=MAX_COMMAND_DEADLINE,
            max_hint=f"a command that may wait a day is not bounded; use at most {MAX_COMMAND_DEADLINE}")
    if t.has("deadline_rate"):
        out["deadline_rate"] = t.integer(
            "deadline_rate", lo=MIN_DEADLINE_RATE, hi=2**40, default=32 * 1024, example="32768",
            range_hint=f"give the slowest rate, in bytes a second, at which an answer may arrive and still "
                       f"earn more time (at least {MIN_DEADLINE_RATE}), e.g. deadline_rate = 32768")
    return {**defaults, **out}


def _account(ctx: Context, index: int, data: Any, seen: dict[str, int],
             defaults: Mapping[str, Any] | None = None) -> AccountConfig:
    position = f"account #{index + 1}"
    if not isinstance(data, dict):
        raise ctx.error(position, f"each [[account]] must be a table, got {describe(data)}",
                        'write each account as a table:\n  [[account]]\n  name = "work"\n  host = ...')
    raw_name = data.get("name")
    if isinstance(raw_name, str) and ACCOUNT_NAME_RE.fullmatch(raw_name):
        label = f"account '{raw_name}'"
    else:
        label = position
    t = Table(ctx, label, data, ACCOUNT_KEYS)
    t.check_unknown()

    # name
    name = t.string("name", required=True, example='"work"',
                    hint_missing=f'give {position} a unique name, e.g. name = "work"')
    if not ACCOUNT_NAME_RE.fullmatch(name):
        raise t.error("name", f"may contain only letters, digits, '.', '_' and '-', got {show(name)}",
                      f'e.g. name = "{re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "work"}"')
    if name in seen:
        raise t.error("name", f"{show(name)} is already used by account #{seen[name] + 1}",
                      "give every [[account]] a different name")
    seen[name] = index

    # host
    host = t.string("host", required=True, example='"imap.example.com"')
    host = host.strip()
    if "://" in host:
        bare = urlsplit(host).hostname or host.split("://", 1)[1]
        raise t.error("host", f"must be a host name, not a URL, got {show(host)}",
                      f'drop the scheme: host = "{bare}" (TLS is chosen with tls = ...)')
    m = re.fullmatch(r"([^:\s\[\]]+):(\d+)", host)
    if m:
        raise t.error("host", f"must be a host name without a port, got {show(host)}",
                      f'split it: host = "{m.group(1)}" and port = {m.group(2)}')
    if any(c.isspace() for c in host) or "/" in host:
        raise t.error("host", f"is not a valid host name, got {show(host)}", 'e.g. host = "imap.example.com"')

    # tls, port
    tls = t.choice("tls", TLS_MODES, default="implicit",
                   aliases={"ssl": "implicit", "tls": "implicit", "imaps": "implicit", "true": "implicit",
                            "start_tls": "starttls", "start-tls": "starttls", "plain": "none",
                            "plaintext": "none", "off": "none", "false": "none"})
    port = t.integer("port", lo=1, hi=65535, default=993 if tls == "implicit" else 143, example="993",
                     range_hint="use a port from 1 to 65535 (993 for tls = \"implicit\", 143 for "
                                "\"starttls\"), or remove port to use that default")
    allow_plaintext = t.boolean("allow_plaintext", default=False)
    if tls == "none" and not allow_plaintext and not is_loopback(host):
        raise t.error(
            "tls",
            f'tls = "none" with host {show(host)}, which is not a loopback address: the password and '
            "every message would cross the network unencrypted, readable and alterable by anyone on the path",
            'use tls = "implicit" (port 993) or tls = "starttls" (port 143); or, only if the network '
            "between you and the server is trusted, add allow_plaintext = true to this account",
        )

    username = t.string("username", required=True, example='"me@example.com"')

    # auth
    auth = t.choice("auth", AUTH_METHODS, default="password", aliases={"oauth": "oauth2", "xoauth2": "oauth2"})
    if auth == "password":
        for key in OAUTH2_ONLY_KEYS:
            if t.has(key):
                raise t.error(key, 'is only used with auth = "oauth2", and this account uses auth = "password"',
                              f'add auth = "oauth2" to use OAuth2, or remove {key}')
        if not t.has("password"):
            raise ctx.error(label, "missing required key 'password' (needed with auth = \"password\")",
                            f'add password = "env:{re.sub(r"[^A-Z0-9]+", "_", name.upper())}_IMAP_PASSWORD" '
                            f"(or cmd:COMMAND, keyring:SERVICE/USER)")
    else:
        if t.has("password"):
            raise t.error("password", 'is not used with auth = "oauth2" (value not shown)',
                          'remove password, or use auth = "password"')
        if not t.has("provider"):
            raise ctx.error(label, "missing required key 'provider' (needed with auth = \"oauth2\")",
                            f'add provider = one of {one_of(PROVIDERS)}')
    password = _secret(t, "password")
    provider = t.choice("provider", PROVIDERS, default=None,
                        aliases={"gmail": "google", "outlook": "microsoft", "office365": "microsoft",
                                 "azure": "microsoft", "o365": "microsoft", "m365": "microsoft"})
    client_id = _secret(t, "client_id")
    client_secret = _secret(t, "client_secret")

    # folders
    folders = t.string_list("folders", default=("*",), example='["*"]', allow_empty=False,
                            empty_hint='folders = [] selects nothing; use folders = ["*"] for all folders, '
                                       "or remove the account")
    exclude = t.string_list("exclude", default=(), example='["Junk", "Trash"]')

    # ca_file
    ca_file: Path | None = None
    raw_ca = t.string("ca_file", example='"certs/ca.pem"')
    if raw_ca is not None:
        candidate = Path(raw_ca).expanduser()
        if not candidate.is_absolute():
            candidate = ctx.base_dir / candidate
        if not candidate.is_file():
            what = "is not a file" if candidate.exists() else "does not exist"
            raise t.error("ca_file", f"{show(raw_ca)} {what} (looked for {candidate})",
                          f"point ca_file at a PEM file of CA certificates; a relative path is relative to "
                          f"{ctx.base_dir}")
        ca_file = candidate

    conflict = t.choice("conflict", CONFLICT_POLICIES, default="server")
    max_connections = t.integer("max_connections", lo=1, hi=None, default=4, example="4")
    batch_size = t.integer("batch_size", lo=1, hi=MAX_BATCH_SIZE, default=5000, example="2000")
    timeout = t.number("timeout", default=60.0, example="60")
    deadline = _deadline(t, defaults or {})
    user_limits = limits(t)

    sub_settings = _sub_settings(t)

    return AccountConfig(
        name=name,
        host=host,
        username=username,
        port=port,
        tls=tls,
        password=password,
        folders=folders,
        exclude=exclude,
        ca_file=ca_file,
        allow_plaintext=allow_plaintext,
        conflict=conflict,
        max_connections=max_connections,
        batch_size=batch_size,
        timeout=timeout,
        **deadline,
        **user_limits,
        auth=auth,
        provider=provider,
        client_id=client_id,
        client_secret=client_secret,
        **sub_settings,
    )


def _get(t: Table, key: str, read):
    """``read()`` when the table has ``key``, else None (the typed settings' "not set")."""
    return read() if t.has(key) else None


def _watch(t: Table) -> bool | tuple[str, ...]:
    value = t.data["watch"]
    if isinstance(value, bool):
        return value
    if isinstance(value, list):
        return t.string_list("watch", default=(), example='["INBOX"]')
    raise t.type_error("watch", value, "true, false or an array of folder names", '["INBOX"]')


def _sub_settings(t: Table) -> dict[str, Any]:
    """The account's typed sub-settings (push, oauth, crm, hooks), checked in the file's key order."""
    crm = AccountCrmSettings(  # what mailsync.crm.settings reads
        identities=_get(t, "identities", lambda: t.string_list("identities", default=(), example='["me@example.com"]')),
        share=_get(t, "share", lambda: t.choice("share", ("metadata", "subject", "everything"), default="metadata")),
        create_contacts=_get(t, "create_contacts", lambda: t.choice(
            "create_contacts", ("none", "sent", "sent_and_received"), default="sent",
            aliases={"all": "sent_and_received", "received": "sent_and_received"})))
    push = PushSettings(
        watch=_get(t, "watch", lambda: _watch(t)),
        poll_interval=t.number("poll_interval", default=None, example="300"),
        idle_refresh=t.number(
            "idle_refresh", default=None, example="1500", maximum=MAX_IDLE_REFRESH,
            max_hint=f"servers may end an IDLE after 30 minutes; use at most {MAX_IDLE_REFRESH} (29 minutes)"))
    oauth = OAuthSettings(
        scopes=_get(t, "scopes", lambda: t.string_list("scopes", default=(), example='["https://mail.google.com/"]')),
        authorization_endpoint=_endpoint(t, "authorization_endpoint"),
        token_endpoint=_endpoint(t, "token_endpoint"),
        tenant=t.string("tenant", example='"common"'))
    return {"crm": crm, "push": push, "oauth": oauth, "hooks": HookSettings(**_hooks(t)), "mirror": _mirror(t)}


def _mirror(t: Table) -> MirrorSettings:
    """``maildir``: the folder of the account's live Maildir mirror (mailsync.mirror.live), ``~``
    expanded, relative to the config file's folder; ``maildir_layout``: how its folders are named."""
    if not t.has("maildir"):
        if t.has("maildir_layout"):
            raise t.error("maildir_layout", "is set but maildir is not",
                          'add maildir = "~/Mail/work", or remove maildir_layout')
        return MirrorSettings()
    raw = t.string("maildir", example='"~/Mail/work"')
    if not raw.strip():
        raise t.error("maildir", "is empty", 'name a folder, e.g. maildir = "~/Mail/work", or remove maildir')
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = t.ctx.base_dir / path
    if path.exists() and not path.is_dir():
        raise t.error("maildir", f"{show(raw)} is not a folder (looked at {path})",
                      "point maildir at a folder (it is created when missing)")
    layout = t.choice("maildir_layout", MAILDIR_LAYOUTS, default="maildir++",
                      aliases={"maildirpp": "maildir++", "verbatim": "fs"})
    return MirrorSettings(maildir=path, maildir_layout=layout)


def _hooks(t: Table) -> dict[str, str]:
    """``post_sync`` / ``on_new_mail``: a shell command each (run by mailsync.cli.hooks)."""
    return {key: t.string(key, example='"notmuch new"') for key in HOOK_KEYS if t.has(key)}


# ------------------------------------------------------------------------------------- entry


def config_from_mapping(doc: Mapping[str, Any], *, path: Path, mode: int | None = 0o600) -> Config:
    """Validate an already parsed TOML document; ``path`` and its ``mode`` are used for messages,
    relative paths and the literal-secret rule (``None``: mode unknown, literals allowed)."""
    ctx = Context(path, mode)
    top = Table(ctx, "top level", doc, TOP_LEVEL_KEYS)
    top.check_unknown()

    store = _store(ctx, doc.get("store", MISSING))

    raw_defaults = doc.get("defaults", MISSING)
    defaults: dict[str, Any] = {}
    if raw_defaults is not MISSING:
        if not isinstance(raw_defaults, dict):
            raise ctx.error("key 'defaults'", f"must be a table, got {describe(raw_defaults)}",
                            "write it as a table: [defaults] with command_deadline = 120")
        table = Table(ctx, "[defaults]", raw_defaults, DEFAULT_KEYS)
        table.check_unknown()
        defaults = _deadline(table, {})

    raw_accounts = array_of_tables(ctx, "account", doc.get("account", MISSING), 'name = "work"\n  ...')
    accounts: list[AccountConfig] = []
    if raw_accounts:
        seen: dict[str, int] = {}
        mirrors: dict[Path, str] = {}
        for i, item in enumerate(raw_accounts):
            accounts.append(_account(ctx, i, item, seen, defaults))
            mirror = accounts[-1].mirror.maildir
            if mirror is not None:  # two accounts in one Maildir would take each other's files for changes
                if mirror in mirrors:
                    raise ctx.error(f"account '{accounts[-1].name}' key 'maildir'",
                                    f"{mirror} is already the Maildir of account '{mirrors[mirror]}'",
                                    "give each account a Maildir folder of its own")
                mirrors[mirror] = accounts[-1].name

    crm = doc.get("crm", MISSING)
    if crm is MISSING:
        crm = {}
    elif not isinstance(crm, dict):
        raise ctx.error("key 'crm'", f"must be a table, got {describe(crm)}", "write it as a table: [crm]")
    crm_settings = None
    if crm:  # its rules are the crm layer's; checked here so a bad value fails at load like any other
        from mailsync.crm.settings import check_crm  # only when there is a [crm] table: no import cycle

        crm_settings = check_crm(ctx, crm, accounts)

    hooks = doc.get("hooks", MISSING)
    if hooks is MISSING:
        hooks = {}
    elif not isinstance(hooks, dict):
        raise ctx.error("key 'hooks'", f"must be a table, got {describe(hooks)}",
                        'write it as a table: [hooks] with post_sync = "notmuch new"')
    else:
        table = Table(ctx, "[hooks]", hooks, HOOK_KEYS)
        table.check_unknown()
        hooks = _hooks(table)

    from mailsync.config.channels import channels_from

    return Config(path=path, store=store, accounts=tuple(accounts), crm=crm, crm_settings=crm_settings,
                  hooks=hooks, channels=channels_from(ctx, doc.get("channel", MISSING), accounts))


def _toml_error(file: Path, exc: tomllib.TOMLDecodeError) -> ConfigError:
    text = str(exc)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", text)
    if m:
        line, col = m.group(1), m.group(2)
        problem = text[: m.start()]
        where = f"{file}:{line}:{col}"
        place = f"at line {line}, column {col}"
    else:
        problem = re.sub(r"\s*\(at end of document\)$", "", text)
        where = f"{file}"
        place = "at the end of the file" if "end of document" in text else ""
    hint = f"fix the TOML syntax {place}".rstrip()
    if problem.startswith("Invalid value"):
        hint += '; strings need double quotes, e.g. host = "imap.example.com"'
    elif problem.startswith("Cannot overwrite a value") or problem.startswith("Cannot declare"):
        hint += "; a key or table is defined twice (use [[account]] for each account)"
    # The offending line is not quoted: it could hold a password.
    return ConfigError(f"{where}: invalid TOML {place}: {problem}".replace(" :", ":"), hint=hint)


def load_config(path: Path | None = None) -> Config:
    """Read and validate the config file (``default_config_path()`` when ``path`` is None)."""
    file = Path(path).expanduser() if path is not None else default_config_path()
    if not file.is_absolute():
        file = Path.cwd() / file
    try:
        pre = os.stat(file)
        if stat.S_ISDIR(pre.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(file))
        if not stat.S_ISREG(pre.st_mode):  # a FIFO or device would block or never end
            raise ConfigError(f"{file}: is not a regular file", hint="pass the path of the config file itself")
        with open(file, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: config file not found",
            hint="run `mailsync init` to write a commented sample there, or point --config / MAILSYNC_CONFIG "
                 "at your config file",
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a directory, not a config file",
                          hint="pass the path of the config file itself, e.g. .../mailsync/config.toml") from None
    except PermissionError as exc:
        raise ConfigError(f"{file}: cannot read the config file: {exc.strerror}",
                          hint=f"make it readable by your user (chmod 600 {file}; check the owner)") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config file: {exc.strerror or exc}",
                          hint="check the path and the disk") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{file}:{line}: invalid TOML: the file is not UTF-8 (bad byte at offset {exc.start})",
                          hint="save the file as UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(file, exc) from None
    return config_from_mapping(doc, path=file, mode=st.st_mode)
