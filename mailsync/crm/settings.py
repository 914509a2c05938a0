"""The ``[crm]`` table, its ``[[crm.sink]]`` entries, and the account keys the CRM reads, validated.

Owns: every rule and default of the CRM settings, and their error messages (file, key, value, fix,
through the field readers of mailsync.config.fields). The loader calls :func:`check_crm` while
loading, so a bad CRM setting fails at start-up like any other, and keeps the result as
``Config.crm_settings``; the CRM layer reads it through :meth:`CrmSettings.from_config`.
Must not: resolve secrets (mailsync.auth.secrets does, at delivery), open the store or the network.

    [crm]
    enabled = true                    # an empty [crm] table is not seen by the loader: write this
    create_contacts = "sent"          # none | sent | sent_and_received (an account may override)
    max_recipients = 25
    blocklist = ["rival@example.com", "@spam.example"]
    internal_domains = []             # besides the domains of our own addresses
    log_internal = false
    role_addresses = []               # extra local parts that are never people
    unsubscribe_addresses = []        # besides the List-Unsubscribe mailto of the mail we send
    loop_guard_messages = 20          # more than this many messages from one address ...
    loop_guard_window = 7200          # ... within this many seconds: stop deriving from it
    score_half_life_days = 90
    delivery_timeout = 60             # seconds the delivery worker may take after a sync

    [[crm.sink]]
    name = "crm"
    type = "webhook"                  # webhook | jsonl
    url = "https://crm.example.com/hooks/mailsync"
    secret = "env:CRM_WEBHOOK_SECRET" # HMAC-SHA256 key: env:, cmd:, keyring: or a literal
    records = ["contact", "company", "activity"]
    batch_size = 1                    # > 1: {"records": [...]} per POST, for receivers that take it
    rate_limit = 10                   # requests per second
    max_attempts = 8
    timeout = 10
    backoff = 1                       # first retry delay, doubled each attempt ...
    max_backoff = 300                 # ... up to this (a Retry-After is honoured as given)
    [crm.sink.fields.contact]
    email = { from = "email", transform = "lower" }
    full_name = { join = ["first_name", "last_name"] }
    first_seen = { transform = "date:%Y-%m-%d" }
    score = false

    [[crm.sink]]                      # records straight into a CRM (hubspot.py, salesforce.py, bottlecrm.py)
    name = "hubspot"
    type = "hubspot"                  # hubspot | salesforce | bottlecrm
    token = "env:HUBSPOT_TOKEN"       # hubspot: a private app's access token; salesforce: an OAuth
                                      # access token (cmd: can fetch a fresh one); bottlecrm: a
                                      # personal access token (bcrm_pat_...)
    url = "https://api.hubapi.com"    # hubspot: the default; salesforce: the instance URL; bottlecrm:
                                      # the server's URL (both required)
    api_version = "59.0"              # salesforce only
    external_id_field = "Mailsync_Id__c"  # salesforce only, optional: an External ID field on
                                      # Contact, Account and Task, upserted by mailsync's record ids
    rate_limit = 4                    # records a second (hubspot's default 4; salesforce: none)
    [crm.sink.fields.contact]         # CRM property = record field; merged over the defaults of
    jobtitle = "display_name"         # mapping.CRM_DEFAULTS; only mapped fields are sent
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mailsync.config.fields import Context, Table, describe, is_loopback, parse_secret_ref, show
from mailsync.config.model import Config, SecretRef
from mailsync.crm.records import RECORD_TYPES
from mailsync.errors import ConfigError

__all__ = ["AccountCrm", "CRM_TYPES", "CrmSettings", "SinkSettings", "check_crm", "POLICIES", "SHARES"]

POLICIES = ("none", "sent", "sent_and_received")
SHARES = ("metadata", "subject", "everything")
CRM_KEYS = ("enabled", "create_contacts", "max_recipients", "blocklist", "internal_domains", "log_internal",
            "role_addresses", "unsubscribe_addresses", "loop_guard_messages", "loop_guard_window",
            "score_half_life_days", "delivery_timeout", "sink")
SINK_KEYS = ("name", "type", "records", "url", "secret", "headers", "path", "batch_size", "rate_limit",
             "max_attempts", "timeout", "backoff", "max_backoff", "ca_file", "fields", "token", "api_version",
             "external_id_field")
SINK_TYPES = ("webhook", "jsonl", "hubspot", "salesforce", "bottlecrm")
CRM_TYPES = ("hubspot", "salesforce", "bottlecrm")  # sinks that write objects into a CRM through its API
HUBSPOT_URL = "https://api.hubapi.com"
EXAMPLE_URL = {"hubspot": HUBSPOT_URL, "salesforce": "https://mycompany.my.salesforce.com",
               "bottlecrm": "https://crm.example.com"}
HUBSPOT_RATE = 4.0  # records a second: each takes 1-4 API calls, within 100 calls per 10 s
_API_VERSION = re.compile(r"\d{2,3}\.0")
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class SinkSettings:
    name: str
    type: str
    records: tuple[str, ...] = RECORD_TYPES
    url: str | None = None
    secret: SecretRef | None = None
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    path: Path | None = None
    batch_size: int = 1
    rate_limit: float | None = None
    max_attempts: int = 8
    timeout: float = 10.0
    backoff: float = 1.0
    max_backoff: float = 300.0
    ca_file: Path | None = None
    fields: Mapping[str, tuple] = field(default_factory=dict, hash=False)  # type -> mapping.Rule tuple
    api_version: str = "59.0"  # salesforce: the REST API version
    external_id_field: str | None = None  # salesforce: an External ID field that holds mailsync ids

    @property
    def crm(self) -> bool:
        return self.type in CRM_TYPES


@dataclass(frozen=True)
class AccountCrm:
    identities: tuple[str, ...] = ()
    share: str = "metadata"
    create_contacts: str = "sent"


@dataclass(frozen=True)
class CrmSettings:
    enabled: bool = True
    create_contacts: str = "sent"
    max_recipients: int = 25
    blocklist: tuple[str, ...] = ()
    internal_domains: tuple[str, ...] = ()
    log_internal: bool = False
    role_addresses: tuple[str, ...] = ()
    unsubscribe_addresses: tuple[str, ...] = ()
    loop_guard_messages: int = 20
    loop_guard_window: float = 7200.0
    score_half_life_days: float = 90.0
    delivery_timeout: float = 60.0
    sinks: tuple[SinkSettings, ...] = ()
    accounts: Mapping[str, AccountCrm] = field(default_factory=dict, hash=False)
    configured_identities: tuple[str, ...] = ()  # every account's identities and address usernames

    @classmethod
    def from_config(cls, config: Config) -> "CrmSettings":
        """The settings the loader built; for a Config made by hand, checked here (ConfigError)."""
        if config.crm_settings is not None:
            return config.crm_settings
        return check_crm(Context(config.path or Path("config.toml"), None), config.crm, config.accounts)

    def sink(self, name: str) -> SinkSettings:
        for s in self.sinks:
            if s.name == name:
                return s
        raise ConfigError(f"no [[crm.sink]] named {name!r}",
                          hint=f"choose one of: {', '.join(s.name for s in self.sinks) or '(none configured)'}")

    def account(self, name: str) -> AccountCrm:
        return self.accounts.get(name) or AccountCrm(create_contacts=self.create_contacts)

    def extract_settings(self):
        from mailsync.crm.extract import ExtractSettings
        from mailsync.crm.junk import Blocklist

        return ExtractSettings(max_recipients=self.max_recipients, blocklist=Blocklist(self.blocklist),
                               role_local_parts=frozenset(r.lower() for r in self.role_addresses),
                               log_internal=self.log_internal, loop_messages=self.loop_guard_messages,
                               loop_window=int(self.loop_guard_window), half_life_days=self.score_half_life_days)

    def fingerprint(self) -> str:
        """What, when changed, asks for a full re-derivation (the blocklist is handled by itself)."""
        doc = {"v": 1, "cc": self.create_contacts, "mr": self.max_recipients, "id": sorted(self.internal_domains),
               "li": self.log_internal, "ra": sorted(self.role_addresses),
               "ua": sorted(self.unsubscribe_addresses), "lg": [self.loop_guard_messages, self.loop_guard_window],
               "hl": self.score_half_life_days, "ci": sorted(self.configured_identities),
               "acc": {n: [sorted(a.identities), a.share, a.create_contacts] for n, a in sorted(self.accounts.items())}}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


# ------------------------------------------------------------------------------------ checking


def _positive(t: Table, key: str, default: float, example: str) -> float:
    value = t.data.get(key)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise t.error(key, f"must be a positive number, got {value!r}", f"e.g. {key} = {example}")
    return float(value)


def _sink(ctx: Context, index: int, data: Any, seen: set[str]) -> SinkSettings:
    from mailsync.crm.mapping import MappingError, compile_mapping

    position = f"[[crm.sink]] #{index + 1}"
    if not isinstance(data, dict):
        raise ctx.error(position, f"must be a table, got {describe(data)}",
                        'write each sink as:\n  [[crm.sink]]\n  name = "crm"\n  type = "webhook"\n  url = ...')
    raw_name = data.get("name")
    label = f"[[crm.sink]] '{raw_name}'" if isinstance(raw_name, str) and _NAME_RE.fullmatch(raw_name) else position
    t = Table(ctx, label, data, SINK_KEYS)
    t.check_unknown()
    name = t.string("name", required=True, example='"crm"')
    if not _NAME_RE.fullmatch(name):
        raise t.error("name", f"may contain only letters, digits, '.', '_' and '-', got {show(name)}", 'e.g. name = "crm"')
    if name in seen:
        raise t.error("name", f"{show(name)} is used by another sink", "give every [[crm.sink]] its own name")
    seen.add(name)
    kind = t.choice("type", SINK_TYPES, default=None, aliases={"http": "webhook", "https": "webhook", "file": "jsonl"})
    if kind is None:
        raise ctx.error(label, "missing required key 'type'", f"add type = one of {', '.join(SINK_TYPES)}")
    records = t.string_list("records", default=RECORD_TYPES, example='["contact", "activity"]', allow_empty=False)
    for r in records:
        if r not in RECORD_TYPES:
            plural = r.rstrip("s") if r.rstrip("s") in RECORD_TYPES else None
            hint = f'write "{plural}" (singular)' if plural else f"use some of {', '.join(RECORD_TYPES)}"
            raise t.error("records", f"unknown record type {show(r)}", hint)
    url = path = secret = None
    api_version, external_id = "59.0", None
    if kind in CRM_TYPES:
        url, secret, api_version, external_id = _crm_sink(ctx, t, label, kind, data)
    elif kind == "webhook":
        url = t.string("url", required=True, example='"https://crm.example.com/hooks/mailsync"')
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise t.error("url", f"must be an http:// or https:// URL, got {show(url)}",
                          'e.g. url = "https://crm.example.com/hooks/mailsync"')
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise t.error("url", f"{show(url)} would send contacts unencrypted over the network",
                          "use https:// (http:// is accepted for loopback test servers only)")
        if "secret" not in data:
            raise ctx.error(label, "missing required key 'secret' (the HMAC key that signs each request)",
                            'add secret = "env:CRM_WEBHOOK_SECRET" (or cmd:, keyring:)')
        value = data["secret"]
        if not isinstance(value, str) or not value:
            raise t.error("secret", "must be a non-empty string (value not shown)", 'e.g. secret = "env:CRM_WEBHOOK_SECRET"')
        secret = parse_secret_ref(value, origin=f"{ctx.file}: {t.where('secret')}", secret_key="secret")
        if secret.kind == "literal" and ctx.readable_by_others():
            raise t.error("secret", "is a literal secret in a config file other users can read (value not shown)",
                          f"chmod 600 {ctx.file}, or use env:NAME, cmd:COMMAND or keyring:SERVICE/USER")
        for key in ("path",):
            if key in data:
                raise t.error(key, 'is only used with type = "jsonl"', f"remove {key}")
    else:
        raw_path = t.string("path", required=True, example='"crm-records.jsonl"')
        path = Path(raw_path).expanduser()
        if not path.is_absolute():
            path = ctx.base_dir / path
        for key in ("url", "secret", "headers", "rate_limit", "ca_file"):
            if key in data:
                raise t.error(key, 'is only used with type = "webhook"', f"remove {key}")
    if kind != "salesforce":
        for key in ("api_version", "external_id_field"):
            if key in data:
                raise t.error(key, 'is only used with type = "salesforce"', f"remove {key}")
    if kind not in CRM_TYPES and "token" in data:
        raise t.error("token", 'is only used with type = "hubspot", "salesforce" or "bottlecrm"',
                      "remove token (a webhook signs with secret)" if kind == "webhook" else "remove token")
    headers: dict[str, str] = {}
    if "headers" in data:
        raw_headers = data["headers"]
        if not isinstance(raw_headers, dict) or not all(isinstance(v, str) for v in raw_headers.values()):
            raise t.error("headers", "must be a table of strings", 'e.g. headers = { "X-Tenant" = "acme" }')
        headers = dict(raw_headers)
    batch_size = t.integer("batch_size", lo=1, hi=1000, default=1, example="50")
    if kind in CRM_TYPES and batch_size != 1:
        raise t.error("batch_size", f"must be 1 for a {kind} sink (each record is its own API calls), got {batch_size}",
                      "remove batch_size")
    max_attempts = t.integer("max_attempts", lo=1, hi=100, default=8, example="8")
    rate = data.get("rate_limit")
    rate_limit = None if rate is None else _positive(t, "rate_limit", 0.0, "10")
    if rate is None and kind == "hubspot":
        rate_limit = HUBSPOT_RATE
    timeout = _positive(t, "timeout", 10.0, "10")
    backoff = _positive(t, "backoff", 1.0, "1")
    max_backoff = _positive(t, "max_backoff", 300.0, "300")
    if max_backoff < backoff:
        raise t.error("max_backoff", f"must be at least backoff ({backoff:g}), got {max_backoff:g}",
                      f"e.g. max_backoff = {max(300, backoff):g}")
    ca_file = None
    if "ca_file" in data:
        candidate = Path(t.string("ca_file", example='"ca.pem"')).expanduser()
        if not candidate.is_absolute():
            candidate = ctx.base_dir / candidate
        if not candidate.is_file():
            raise t.error("ca_file", f"{show(str(candidate))} is not a file", "point ca_file at a PEM file")
        ca_file = candidate
    fields: dict[str, tuple] = {}
    raw_fields = data.get("fields", {})
    if kind in CRM_TYPES and isinstance(raw_fields, dict):  # the CRM's defaults, then the sink's own entries
        from mailsync.crm.mapping import CRM_DEFAULTS

        merged: dict[str, Any] = {rtype: dict(CRM_DEFAULTS[kind][rtype]) for rtype in RECORD_TYPES}
        for rtype, spec in raw_fields.items():
            if rtype in merged and isinstance(spec, dict):
                for target, value in spec.items():
                    if value is False:  # only mapped fields are sent: false takes a default out
                        merged[rtype].pop(target, None)
                    else:
                        merged[rtype][target] = value
            else:
                merged[rtype] = spec  # the checks below name the problem
        raw_fields = merged
    if not isinstance(raw_fields, dict):
        raise t.error("fields", f"must be a table, got {describe(raw_fields)}", "write [crm.sink.fields.contact]")
    for rtype, spec in raw_fields.items():
        if rtype not in RECORD_TYPES:
            plural = rtype.rstrip("s") if rtype.rstrip("s") in RECORD_TYPES else None
            hint = f"write [crm.sink.fields.{plural}]" if plural else f"use one of {', '.join(RECORD_TYPES)}"
            raise ctx.error(f"{label} key 'fields'", f"unknown record type {show(rtype)}", hint)
        if not isinstance(spec, dict):
            raise ctx.error(f"{label} key 'fields.{rtype}'", f"must be a table, got {describe(spec)}",
                            f"write [crm.sink.fields.{rtype}] with one line per field")
        try:
            fields[rtype] = compile_mapping(rtype, spec)
        except MappingError as exc:
            raise ctx.error(f"{label} key 'fields.{rtype}.{exc.key}'", exc.problem, exc.hint) from None
    return SinkSettings(name=name, type=kind, records=tuple(records), url=url, secret=secret, headers=headers,
                        path=path, batch_size=batch_size, rate_limit=rate_limit, max_attempts=max_attempts,
                        timeout=timeout, backoff=backoff, max_backoff=max_backoff, ca_file=ca_file, fields=fields,
                        api_version=api_version, external_id_field=external_id)


def _crm_sink(ctx: Context, t: Table, label: str, kind: str, data: dict):
    """(url, token, api_version, external_id_field) of a hubspot, salesforce or bottlecrm sink."""
    for key in ("path", "headers", "secret"):
        if key in data:
            fix = 'put the API token in token = "env:..."' if key == "secret" else f"remove {key}"
            raise t.error(key, f'is not used with type = "{kind}"', fix)
    url_example = EXAMPLE_URL[kind]
    if kind == "hubspot":
        url = t.string("url", example=f'"{HUBSPOT_URL}"') if "url" in data else HUBSPOT_URL
        example = "a private app's access token"
    else:
        url = t.string("url", required=True, example=f'"{url_example}"')
        example = ("an OAuth access token (e.g. cmd:sf org display --json ...)" if kind == "salesforce" else
                   "a personal access token, bcrm_pat_...")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise t.error("url", f"must be an https:// URL, got {show(url)}", f'e.g. url = "{url_example}"')
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise t.error("url", f"{show(url)} would send contacts and the API token unencrypted over the network",
                      "use https:// (http:// is accepted for loopback test servers only)")
    if "token" not in data:
        raise ctx.error(label, f"missing required key 'token' ({example})",
                        f'add token = "env:{kind.upper()}_TOKEN" (or cmd:, keyring:)')
    value = data["token"]
    if not isinstance(value, str) or not value:
        raise t.error("token", "must be a non-empty string (value not shown)", f'e.g. token = "env:{kind.upper()}_TOKEN"')
    token = parse_secret_ref(value, origin=f"{ctx.file}: {t.where('token')}", secret_key="token")
    if token.kind == "literal" and ctx.readable_by_others():
        raise t.error("token", "is a literal token in a config file other users can read (value not shown)",
                      f"chmod 600 {ctx.file}, or use env:NAME, cmd:COMMAND or keyring:SERVICE/USER")
    api_version, external_id = "59.0", None
    if kind == "salesforce":
        if "api_version" in data:
            raw = data["api_version"]
            api_version = f"{raw:.1f}" if isinstance(raw, (int, float)) and not isinstance(raw, bool) else str(raw)
            if not _API_VERSION.fullmatch(api_version):
                raise t.error("api_version", f"must be a REST API version like \"59.0\", got {show(str(raw))}",
                              'e.g. api_version = "59.0"')
        if "external_id_field" in data:
            external_id = t.string("external_id_field", example='"Mailsync_Id__c"')
            if not _FIELD_NAME.fullmatch(external_id):
                raise t.error("external_id_field", f"{show(external_id)} is not a Salesforce field name",
                              'e.g. external_id_field = "Mailsync_Id__c" (an External ID text field on Contact, '
                              'Account and Task)')
    return url.rstrip("/"), token, api_version, external_id


def _address_list(t: Table, key: str, *, domains: bool) -> tuple[str, ...]:
    from mailsync.crm.addresses import canonical

    values = t.string_list(key, default=(), example='["someone@example.com", "@example.com"]')
    for v in values:
        v = v.strip()
        if v.startswith("@") and domains and "." in v[1:] and " " not in v:
            continue
        if canonical(v) is None:
            form = "an address or @domain" if domains else "an address"
            raise t.error(key, f"{show(v)} is not {form}",
                          'e.g. ["someone@example.com", "@example.com"]' if domains else 'e.g. ["unsubscribe@example.com"]')
    return tuple(v.strip() for v in values)


def check_crm(ctx: Context, crm: Mapping[str, Any], accounts) -> CrmSettings:
    """Validate the parsed ``[crm]`` table (raise ConfigError) and return the settings."""
    t = Table(ctx, "[crm]", crm, CRM_KEYS)
    t.check_unknown()
    enabled = t.boolean("enabled", default=True)
    policy = t.choice("create_contacts", POLICIES, default="sent",
                      aliases={"all": "sent_and_received", "received": "sent_and_received", "off": "none",
                               "no": "none", "sent_only": "sent"})
    max_recipients = t.integer("max_recipients", lo=1, hi=100_000, default=25, example="25")
    blocklist = _address_list(t, "blocklist", domains=True)
    internal = t.string_list("internal_domains", default=(), example='["example.com"]')
    log_internal = t.boolean("log_internal", default=False)
    roles = t.string_list("role_addresses", default=(), example='["info", "sales"]')
    unsub = _address_list(t, "unsubscribe_addresses", domains=False)
    loop_messages = t.integer("loop_guard_messages", lo=1, hi=1_000_000, default=20, example="20")
    loop_window = _positive(t, "loop_guard_window", 7200.0, "7200")
    half_life = _positive(t, "score_half_life_days", 90.0, "90")
    delivery_timeout = _positive(t, "delivery_timeout", 60.0, "60")
    sinks: list[SinkSettings] = []
    raw_sinks = crm.get("sink", [])
    if isinstance(raw_sinks, dict):
        raise ctx.error("[crm] key 'sink'", "must be an array of tables, but [crm.sink] was written as a single table",
                        "write each sink header with double brackets: [[crm.sink]]")
    if not isinstance(raw_sinks, list):
        raise ctx.error("[crm] key 'sink'", f"must be an array of tables, got {describe(raw_sinks)}",
                        'write each sink as:\n  [[crm.sink]]\n  name = "crm"\n  type = "webhook"')
    seen: set[str] = set()
    for i, item in enumerate(raw_sinks):
        sinks.append(_sink(ctx, i, item, seen))
    per_account: dict[str, AccountCrm] = {}
    configured: list[str] = []
    for acc in accounts:
        ids = tuple(acc.crm.identities or ())
        per_account[acc.name] = AccountCrm(identities=ids, share=acc.crm.share or "metadata",
                                           create_contacts=acc.crm.create_contacts or policy)
        configured.extend(ids)
        if "@" in acc.username:
            configured.append(acc.username)
    return CrmSettings(enabled=enabled, create_contacts=policy, max_recipients=max_recipients,
                       blocklist=blocklist, internal_domains=tuple(internal), log_internal=log_internal,
                       role_addresses=tuple(roles), unsubscribe_addresses=unsub,
                       loop_guard_messages=loop_messages, loop_guard_window=loop_window,
                       score_half_life_days=half_life, delivery_timeout=delivery_timeout, sinks=tuple(sinks),
                       accounts=per_account, configured_identities=tuple(configured))
