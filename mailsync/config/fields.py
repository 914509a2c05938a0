"""Field readers for the config file: typed getters over one TOML table, with the messages they raise.

Owns: rendering a value as TOML for a message (never a secret), "did you mean" suggestions, where in
the file a key is (:class:`Context`, :class:`Table`), the typed getters (string, integer, number,
boolean, choice, string list) and their error messages, secret references (``env:NAME``,
``cmd:COMMAND``, ``keyring:SERVICE/USER``, literal) and what counts as a loopback host. The loader
and every layer whose settings live in the same file (the CRM's ``[crm]`` table) read through these.
Must not: know any particular key or table (the loader and crm.settings do), read files, resolve
secrets or touch the network. Every error is a ConfigError naming the file, the key and the bad value,
with a ``hint`` that says how to fix it.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from mailsync.config.model import SecretRef
from mailsync.errors import ConfigError

__all__ = ["MISSING", "Context", "Table", "describe", "is_loopback", "one_of", "parse_secret_ref", "show",
           "suggest", "type_name"]

SECRET_PREFIXES = ("env:", "cmd:", "keyring:")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

MISSING = object()  # a key the table does not have


# --------------------------------------------------------------------------------- rendering


def show(value: Any, limit: int = 80) -> str:
    """A value as it would be written in TOML, shortened for messages. Never use on secrets."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = toml_str(value)
    elif isinstance(value, float):
        text = "nan" if math.isnan(value) else repr(value)
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, (datetime, date, time)):
        text = value.isoformat()
    elif isinstance(value, list):
        text = "[" + ", ".join(show(v, limit) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{ " + ", ".join(f"{toml_key(k)} = {show(v, limit)}" for k, v in value.items()) + " }"
    else:  # pragma: no cover - tomllib produces nothing else
        text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def toml_str(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_str(key)


_TYPE_NAMES = ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),  # bool first:
               (list, "an array"), (dict, "a table"), ((datetime, date, time), "a date/time"))  # it is an int


def type_name(value: Any) -> str:
    for types, name in _TYPE_NAMES:
        if isinstance(value, types):
            return name
    return type(value).__name__  # pragma: no cover


def describe(value: Any) -> str:
    """'the string "993"', 'the integer 70000', 'true (a boolean)', '[1, 2] (an array)'."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return f"the {type_name(value).split(' ', 1)[1]} {show(value)}"
    return f"{show(value)} ({type_name(value)})"


def suggest(word: str, choices: Iterable[str]) -> str | None:
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered:
        return lowered[word.lower()]
    import difflib  # only when a config is wrong

    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not found:
        found = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
        found = [lowered[f] for f in found]
    return found[0] if found else None


def one_of(choices: Iterable[str]) -> str:
    return ", ".join(f'"{c}"' for c in choices)


# ---------------------------------------------------------------------------------- context


class Context:
    """Where in the file we are: builds messages of the form ``FILE: WHERE: PROBLEM``."""

    def __init__(self, file: Path, mode: int | None) -> None:
        self.file = file
        self.mode = mode

    @property
    def base_dir(self) -> Path:
        return self.file.parent

    def error(self, where: str, problem: str, hint: str | None) -> ConfigError:
        return ConfigError(f"{self.file}: {where}: {problem}", hint=hint)

    def readable_by_others(self) -> bool:
        return self.mode is not None and os.name == "posix" and bool(self.mode & 0o077)


def array_of_tables(ctx: "Context", key: str, raw: Any, example: str) -> list:
    """``raw`` as the array of tables ``[[key]]`` must be: [] when missing, else a ConfigError naming
    how it was written wrong (a single [key] table, or not a table at all)."""
    if raw is MISSING:
        return []
    if isinstance(raw, dict):
        raise ctx.error(f"key '{key}'", f"must be an array of tables, but [{key}] was written as a single table",
                        f"write each {key} header with double brackets: [[{key}]]")
    if not isinstance(raw, list):
        raise ctx.error(f"key '{key}'", f"must be an array of tables, got {describe(raw)}",
                        f"write each {key} as:\n  [[{key}]]\n  {example}")
    return raw


class Table:
    """One TOML table being validated: typed getters that raise ConfigError naming key and value."""

    def __init__(self, ctx: Context, label: str, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
        self.ctx = ctx
        self.label = label  # e.g. "account 'work'" or "[store]"
        self.data = data
        self.allowed = allowed

    def where(self, key: str) -> str:
        return f"{self.label} key '{key}'"

    def error(self, key: str, problem: str, hint: str | None) -> ConfigError:
        return self.ctx.error(self.where(key), problem, hint)

    def check_unknown(self) -> None:
        for key in self.data:
            if key in self.allowed:
                continue
            guess = suggest(key, self.allowed)
            hint = f'did you mean "{guess}"? ' if guess else ""
            hint += f"known keys here: {', '.join(self.allowed)}"
            # The value of an unknown key is never shown: it may be a misspelt password.
            raise self.ctx.error(f"{self.label}", f"unknown key '{key}'", hint)

    def has(self, key: str) -> bool:
        return key in self.data

    # --- typed getters -----------------------------------------------------------------

    def type_error(self, key: str, value: Any, expected: str, example: str, secret: bool = False) -> ConfigError:
        if secret:
            return self.error(key, f"must be {expected}, got {type_name(value)} (value not shown)",
                              f'write it as a quoted string, e.g. {key} = {example}')
        hint = f"write it as {expected}, e.g. {key} = {example}"
        if isinstance(value, str):
            stripped = value.strip()
            unquoted: str | None = None
            if expected.startswith(("an integer", "a number")) and re.fullmatch(r"[+-]?\d+(\.\d+)?", stripped):
                unquoted = stripped
            elif expected.startswith("a boolean") and stripped.lower() in ("true", "false"):
                unquoted = stripped.lower()
            if unquoted is not None:
                hint = f"drop the quotes: {key} = {unquoted}"
        elif isinstance(value, bool) and expected.startswith(("an integer", "a number")):
            hint = f"use a number, not true/false, e.g. {key} = {example}"
        return self.error(key, f"must be {expected}, got {describe(value)}", hint)

    def string(self, key: str, *, required: bool = False, example: str = '"..."', default: Any = None,
               hint_missing: str | None = None) -> Any:
        value = self.data.get(key, MISSING)
        if value is MISSING:
            if required:
                raise self.ctx.error(self.label, f"missing required key '{key}'",
                                     hint_missing or f"add {key} = {example}")
            return default
        if not isinstance(value, str):
            raise self.type_error(key, value, "a string", example)
        if not value.strip():
            raise self.error(key, f"must not be empty, got {show(value)}", f"set it, e.g. {key} = {example}")
        return value

    def integer(self, key: str, *, lo: int, hi: int | None, default: int, example: str,
                range_hint: str | None = None) -> int:
        value = self.data.get(key, MISSING)
        if value is MISSING:
            return default
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            raise self.error(key, f"must be a whole number, got the float {show(value)}",
                             f"drop the decimal point: {key} = {int(value)}")
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.type_error(key, value, "an integer", example)
        if value < lo or (hi is not None and value > hi):
            bounds = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
            raise self.error(key, f"must be an integer {bounds}, got {value}",
                             range_hint or f"use a value {bounds}, e.g. {key} = {example}")
        return value

    def number(self, key: str, *, default: Any, example: str, maximum: float | None = None,
               max_hint: str | None = None) -> Any:
        value = self.data.get(key, MISSING)
        if value is MISSING:
            return default
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self.type_error(key, value, "a number of seconds", example)
        if not math.isfinite(value) or value <= 0:
            raise self.error(key, f"must be a finite number of seconds greater than 0, got {show(value)}",
                             f"use a positive number, e.g. {key} = {example}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum:g} seconds, got {show(value)}",
                             max_hint or f"use at most {maximum:g}")
        return float(value)

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.data.get(key, MISSING)
        if value is MISSING:
            return default
        if not isinstance(value, bool):
            raise self.type_error(key, value, "a boolean (true or false)", "true")
        return value

    def choice(self, key: str, choices: tuple[str, ...], *, default: Any, aliases: Mapping[str, str] | None = None) -> Any:
        value = self.data.get(key, MISSING)
        if value is MISSING:
            return default
        if not isinstance(value, str):
            raise self.type_error(key, value, f"one of {one_of(choices)}", f'"{choices[0]}"')
        if value in choices:
            return value
        guess = (aliases or {}).get(value.lower()) or suggest(value, choices)
        hint = f'use one of {one_of(choices)}'
        if guess:
            hint = f'did you mean {key} = "{guess}"? ({hint})'
        raise self.error(key, f"must be one of {one_of(choices)}, got {show(value)}", hint)

    def string_list(self, key: str, *, default: Any, example: str, allow_empty: bool = True,
                    empty_hint: str | None = None) -> Any:
        value = self.data.get(key, MISSING)
        if value is MISSING:
            return default
        if isinstance(value, str):
            raise self.error(key, f"must be an array of strings, got the string {show(value)}",
                             f"put it in brackets: {key} = [{show(value)}]")
        if not isinstance(value, list):
            raise self.type_error(key, value, "an array of strings", example)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(key, f"item {i + 1} must be a string, got {describe(item)} in {show(value)}",
                                 f"quote every item, e.g. {key} = {example}")
            if not item.strip():
                raise self.error(key, f"item {i + 1} is an empty string in {show(value)}",
                                 "remove the empty item")
        if not value and not allow_empty:
            raise self.error(key, "must not be an empty array, got []", empty_hint or f"e.g. {key} = {example}")
        return tuple(value)


# ---------------------------------------------------------------------------------- secrets


def parse_secret_ref(text: str, *, origin: str = "", secret_key: str = "password") -> SecretRef:
    """Parse a secret source: ``env:NAME``, ``cmd:COMMAND``, ``keyring:SERVICE/USER``, else a literal.

    ``origin`` ("FILE: account 'work' key 'password'") is kept in the SecretRef and starts every
    error message. A literal's value is never put in a message.
    """
    where = origin or f"key '{secret_key}'"
    if text.startswith("env:"):
        name = text[len("env:"):]
        if not ENV_NAME_RE.fullmatch(name):
            problem = f"{show(text)} does not name a valid environment variable"
            example = "WORK_IMAP_PASSWORD" if secret_key == "password" else secret_key.upper()
            fix = ("after env: give a variable name made of letters, digits and '_' that does not start "
                   f'with a digit, e.g. {secret_key} = "env:{example}"')
            raise ConfigError(f"{where}: {problem}", hint=fix)
        return SecretRef("env", name, origin)
    if text.startswith("cmd:"):
        command = text[len("cmd:"):]
        if not command.strip():
            raise ConfigError(f"{where}: {show(text)} has no command after cmd:",
                              hint=f'give the command that prints the secret, e.g. {secret_key} = "cmd:pass show mail/work"')
        return SecretRef("cmd", command.strip(), origin)
    if text.startswith("keyring:"):
        rest = text[len("keyring:"):]
        service, slash, user = rest.partition("/")
        if not slash or not service.strip() or not user.strip():
            raise ConfigError(
                f"{where}: {show(text)} must be keyring:SERVICE/USER with both parts non-empty",
                hint=f'e.g. {secret_key} = "keyring:mailsync/me@example.com" '
                     "(store it with: keyring set mailsync me@example.com)",
            )
        return SecretRef("keyring", f"{service}/{user}", origin)
    lowered = text.lower()
    for prefix in SECRET_PREFIXES:
        if lowered.startswith(prefix):
            # e.g. "Env:FOO": almost surely a source with a miscased prefix; show only the prefix.
            raise ConfigError(
                f"{where}: starts with {show(text[: len(prefix)])}, but secret source prefixes are lowercase",
                hint=f"write {prefix} in lowercase (a literal secret starting with {prefix} can be given as "
                     f"cmd:COMMAND instead)",
            )
    return SecretRef("literal", text, origin)


def is_loopback(host: str) -> bool:
    h = host.strip().rstrip(".").lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        addr = ipaddress.ip_address(h)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback
