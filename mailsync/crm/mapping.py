"""Per-sink field mapping: rename fields, apply simple transforms, join, drop -- checked at load time.

Owns: the mapping language and its checks. A sink's ``[crm.sink.fields.TYPE]`` table (TYPE: contact,
company, activity) maps an output field name to one of
  false                                  drop the field
  "source"                               the value of another field (a rename: the source is not
                                         sent under its own name unless mapped again)
  { from = "source", transform = T }     a field, transformed
  { join = ["a", "b"], sep = " " }       fields joined (empty ones skipped), optionally transformed
  { transform = T }                      the field of the same name, transformed in place
T is one of: lower, upper, strip, title, string, epoch (ISO time -> seconds), date:FORMAT (an ISO
time re-written with a strftime FORMAT, e.g. "date:%d.%m.%Y"). Fields not mentioned pass through,
except to a CRM sink (hubspot, salesforce, bottlecrm): it sends only mapped fields, its defaults
(``CRM_DEFAULTS``) merged with the sink's table (``false`` there drops a default).
Every name is checked against the record type's field list when the config loads, and every
transform against the field's kind, so a typo fails at start-up and not at 3 a.m. in the sink.
Must not: touch the store or the network; know about sinks' transports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mailsync.crm.records import DATE_FIELDS, FIELDS, RECORD_TYPES

__all__ = ["CRM_DEFAULTS", "MappingError", "Rule", "apply_mapping", "compile_mapping", "TRANSFORMS"]

# What a CRM sink sends when its [crm.sink.fields.TYPE] tables say nothing: record field -> the CRM's
# standard property (HubSpot: contact, company, email engagement; Salesforce: Contact, Account, Task;
# BottleCRM: contact, account, interaction).
CRM_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "hubspot": {
        "contact": {"firstname": "first_name", "lastname": "last_name"},  # email: always the address
        "company": {"domain": "domain", "name": "name"},
        "activity": {"hs_timestamp": "timestamp", "hs_email_subject": "subject", "hs_email_text": "body_preview"},
    },
    "salesforce": {
        "contact": {"FirstName": "first_name", "LastName": "last_name"},  # Email: always the address
        "company": {"Name": "name", "Website": "domain"},
        "activity": {"Subject": "subject", "Description": "body_preview",
                     "ActivityDate": {"from": "timestamp", "transform": "date:%Y-%m-%d"}},
    },
    "bottlecrm": {  # contact, account, interaction (kind email)
        "contact": {"first_name": "first_name", "last_name": "last_name"},  # email: always the address
        "company": {"name": "name"},  # website: always https:// and the domain
        "activity": {"occurred_at": "timestamp", "subject": "subject", "body": "body_preview"},
    },
}
TRANSFORMS = ("lower", "upper", "strip", "title", "string", "epoch", "date:FORMAT")
_SAMPLE = datetime(2024, 3, 5, 14, 3, 22, tzinfo=timezone.utc)


class MappingError(ValueError):
    """A mapping entry is wrong: ``key`` names the entry, ``hint`` says how to fix it."""

    def __init__(self, key: str, problem: str, hint: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem, self.hint = key, problem, hint


@dataclass(frozen=True, slots=True)
class Rule:
    target: str
    drop: bool = False
    source: str | None = None
    join: tuple[str, ...] = ()
    sep: str = " "
    transform: str | None = None


def _check_transform(record_type: str, key: str, transform: Any, sources: tuple[str, ...]) -> str:
    if not isinstance(transform, str):
        raise MappingError(key, f"transform must be a string, got {transform!r}",
                           f"use one of {', '.join(TRANSFORMS)}")
    if transform.startswith("date:") or transform == "epoch":
        fmt = transform[5:]
        if transform.startswith("date:"):
            if not fmt:
                raise MappingError(key, "date: needs a strftime format", 'e.g. transform = "date:%Y-%m-%d"')
            try:
                _SAMPLE.strftime(fmt)
            except ValueError as exc:
                raise MappingError(key, f"bad date format {fmt!r}: {exc}", 'e.g. transform = "date:%Y-%m-%d"') from None
        bad = [s for s in sources if s not in DATE_FIELDS[record_type]]
        if bad:
            raise MappingError(key, f"{transform!r} applies to date fields, and {bad[0]!r} is not one",
                               f"date fields of a {record_type}: {', '.join(DATE_FIELDS[record_type])}")
        return transform
    if transform not in ("lower", "upper", "strip", "title", "string"):
        raise MappingError(key, f"unknown transform {transform!r}", f"use one of {', '.join(TRANSFORMS)}")
    return transform


def _check_source(record_type: str, key: str, source: Any) -> str:
    fields = FIELDS[record_type]
    if not isinstance(source, str) or source not in fields:
        import difflib

        guess = difflib.get_close_matches(str(source), fields, n=1)
        hint = f'did you mean "{guess[0]}"? ' if guess else ""
        raise MappingError(key, f"{source!r} is not a field of a {record_type}",
                           hint + f"fields: {', '.join(fields)}")
    return source


def compile_mapping(record_type: str, spec: Mapping[str, Any]) -> tuple[Rule, ...]:
    """Check one ``[crm.sink.fields.TYPE]`` table; raise MappingError naming the bad entry."""
    if record_type not in RECORD_TYPES:
        raise MappingError(record_type, f"unknown record type {record_type!r}",
                           f"use one of {', '.join(RECORD_TYPES)}")
    rules: list[Rule] = []
    for target, value in spec.items():
        if not target.strip():
            raise MappingError(target, "an empty output field name", "name the output field")
        if value is False:
            _check_source(record_type, target, target)
            rules.append(Rule(target, drop=True))
        elif isinstance(value, str):
            rules.append(Rule(target, source=_check_source(record_type, target, value)))
        elif isinstance(value, dict):
            unknown = set(value) - {"from", "join", "sep", "transform"}
            if unknown:
                raise MappingError(target, f"unknown key {sorted(unknown)[0]!r}",
                                   "an entry may have from, join, sep and transform")
            if "from" in value and "join" in value:
                raise MappingError(target, "has both from and join", "use from for one field, join for several")
            if "join" in value:
                join = value["join"]
                if not isinstance(join, list) or len(join) < 2:
                    raise MappingError(target, "join must list at least two fields",
                                       'e.g. join = ["first_name", "last_name"]')
                sources = tuple(_check_source(record_type, target, s) for s in join)
                sep = value.get("sep", " ")
                if not isinstance(sep, str):
                    raise MappingError(target, "sep must be a string", 'e.g. sep = " "')
                transform = value.get("transform")
                if transform is not None:
                    transform = _check_transform(record_type, target, transform, ())
                    if transform == "epoch" or transform.startswith("date:"):
                        raise MappingError(target, "a joined value is text; date transforms do not apply",
                                           "transform the date fields in entries of their own")
                rules.append(Rule(target, join=sources, sep=sep, transform=transform))
            else:
                source = _check_source(record_type, target, value.get("from", target))
                if "sep" in value:
                    raise MappingError(target, "sep only goes with join", "remove sep or use join")
                transform = value.get("transform")
                if transform is not None:
                    transform = _check_transform(record_type, target, transform, (source,))
                rules.append(Rule(target, source=source, transform=transform))
        else:
            raise MappingError(target, f"must be false, a field name or a table, got {value!r}",
                               f'e.g. {target} = "email" or {target} = {{ from = "email", transform = "lower" }}')
    return tuple(rules)


def _transform(value: Any, transform: str | None) -> Any:
    if transform is None or value is None:
        return value
    if transform == "lower":
        return str(value).lower()
    if transform == "upper":
        return str(value).upper()
    if transform == "strip":
        return str(value).strip()
    if transform == "title":
        return str(value).title()
    if transform == "string":
        return str(value)
    parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    if transform == "epoch":
        return int(parsed.timestamp())
    return parsed.strftime(transform[5:])


def apply_mapping(record: Mapping[str, Any], rules: tuple[Rule, ...], *, passthrough: bool = True) -> dict[str, Any]:
    """The record as the sink wants it. Pure; the record itself is not changed. Without
    ``passthrough`` (CRM sinks, whose APIs refuse unknown properties) only the mapped fields are
    there."""
    if not passthrough:
        out: dict[str, Any] = {}
        _apply_rules(record, rules, out)
        return out
    if not rules:
        return dict(record)
    out = dict(record)
    renamed = {r.source for r in rules if r.source and r.source != r.target}
    targets = {r.target for r in rules}
    for name in renamed - targets:
        out.pop(name, None)
    _apply_rules(record, rules, out)
    return out


def _apply_rules(record: Mapping[str, Any], rules: tuple[Rule, ...], out: dict[str, Any]) -> None:
    """Each rule in turn, into ``out``: a drop removes its field, a join or a source sets it."""
    for r in rules:
        if r.drop:
            out.pop(r.target, None)
        elif r.join:
            parts = [str(record.get(s)) for s in r.join if record.get(s) not in (None, "")]
            out[r.target] = _transform(r.sep.join(parts), r.transform)
        else:
            out[r.target] = _transform(record.get(r.source), r.transform)
