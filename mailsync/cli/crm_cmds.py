"""`mailsync crm ...`: the CRM records, their export, erasure, and the outbox.

Owns: the crm click group's arguments and output (JSON to stdout, summaries and errors to stderr).
Must not: hold CRM logic (mailsync.crm does) or import it at module level (start-up stays short).

  mailsync crm contacts|companies|activities [--json]
  mailsync crm export --format jsonl|csv [--records contacts|companies|activities|all]
  mailsync crm identity [--account A] [--json]
  mailsync crm rebuild
  mailsync crm forget ADDRESS
  mailsync crm preview --sink NAME [--limit N]
  mailsync crm outbox [--retry] [--json]
"""

from __future__ import annotations

import csv
import json
import sys
import time

import click

from mailsync.cli.output import fail
from mailsync.errors import ConfigError, MailsyncError

RECORD_CHOICES = ("contacts", "companies", "activities")


def _open(obj):
    """(config, crm settings, store), or exit 2 when no [crm] table is configured."""
    from mailsync.crm.settings import CrmSettings

    try:
        config = obj.config()
        if not config.crm:
            raise ConfigError(f"{config.path}: no [crm] table: the CRM is not configured",
                              hint="add a [crm] table (at least: [crm] enabled = true) to the config file")
        settings = CrmSettings.from_config(config)
        store = obj.store(config)
    except MailsyncError as exc:
        fail(exc)
    return config, settings, store


def _records(store, kind: str) -> list[dict]:
    from sqlalchemy import select

    from mailsync.crm.models import CrmActivity, CrmCompany, CrmContact
    from mailsync.store.uow import UnitOfWork

    model, order = {"contacts": (CrmContact, CrmContact.address), "companies": (CrmCompany, CrmCompany.domain),
                    "activities": (CrmActivity, CrmActivity.timestamp)}[kind]
    with UnitOfWork(store) as uow:
        stmt = select(model.data).order_by(order, model.id)
        return [json.loads(d) for d in uow.session.scalars(stmt)]


def _with_current_score(records: list[dict], settings) -> list[dict]:
    from mailsync.crm.engagement import current_score

    now = time.time()
    return [{**r, "score_now": current_score(r, now, settings.score_half_life_days)} for r in records]


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    if not rows:
        return "(none)"
    cells = [[("" if r.get(k) is None else str(r.get(k))) for k, _ in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    out = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(out)


@click.group()
def crm() -> None:
    """CRM records (contacts, companies, activities) derived from the synced mail, and their delivery."""


def _list_command(kind: str, columns: list[tuple[str, str]]):
    @click.option("--json", "as_json", is_flag=True, help="A JSON array of the records on stdout.")
    @click.pass_obj
    def command(obj, as_json: bool) -> None:
        _, settings, store = _open(obj)
        rows = _records(store, kind)
        if kind != "activities":
            rows = _with_current_score(rows, settings)
        store.dispose()
        if as_json:
            click.echo(json.dumps(rows, indent=2, ensure_ascii=False, sort_keys=True))
        else:
            click.echo(_table(rows, columns))

    command.__doc__ = f"List the {kind}."
    return crm.command(kind)(command)


_list_command("contacts", [("address", "ADDRESS"), ("display_name", "NAME"), ("company_domain", "COMPANY"),
                           ("sent_count", "SENT"), ("received_count", "RECEIVED"), ("last_contacted", "LAST CONTACTED"),
                           ("deliverability", "DELIVERABILITY"), ("consent", "CONSENT"), ("score_now", "SCORE")])
_list_command("companies", [("domain", "DOMAIN"), ("name", "NAME"), ("contact_count", "CONTACTS"),
                            ("sent_count", "SENT"), ("received_count", "RECEIVED"), ("reply_rate", "REPLY RATE"),
                            ("last_seen", "LAST SEEN"), ("score_now", "SCORE")])
_list_command("activities", [("timestamp", "TIME"), ("kind", "KIND"), ("contact_address", "CONTACT"),
                             ("thread_id", "THREAD"), ("subject", "SUBJECT")])


@crm.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--records", "kind", type=click.Choice(RECORD_CHOICES + ("all",)), default=None,
              help="Which records (default: all for jsonl, contacts for csv).")
@click.pass_obj
def export(obj, fmt: str, kind: str | None) -> None:
    """Export records: JSON Lines (one object per line, with its "type") or CSV (one record type)."""
    from mailsync.crm.records import FIELDS

    kind = kind or ("all" if fmt == "jsonl" else "contacts")
    if fmt == "csv" and kind == "all":
        fail(ConfigError("--format csv exports one record type at a time",
                          hint="add --records contacts (or companies, activities)"))
    _, _, store = _open(obj)
    kinds = RECORD_CHOICES if kind == "all" else (kind,)
    out = sys.stdout
    singular = {"contacts": "contact", "companies": "company", "activities": "activity"}
    if fmt == "jsonl":
        for k in kinds:
            for r in _records(store, k):
                out.write(json.dumps({"type": singular[k], **r}, ensure_ascii=False, sort_keys=True) + "\n")
    else:
        fields = FIELDS[singular[kind]]
        writer = csv.DictWriter(out, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in _records(store, kind):
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    out.flush()
    store.dispose()


@crm.command()
@click.option("--account", default=None, help="One account's identity (default: every account's).")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@click.pass_obj
def identity(obj, account: str | None, as_json: bool) -> None:
    """Who "we" are and why: configured identities and senders learned from Sent folders, the
    addresses turned down (role or mail-system addresses, too little evidence), and our work domains."""
    from mailsync.crm.pipeline import Pipeline

    _, settings, store = _open(obj)
    try:
        idn = Pipeline(store, settings).identity(account)
    except MailsyncError as exc:
        store.dispose()
        fail(exc)
    store.dispose()
    doc = {"account": account, "own": [{"address": a, "why": idn.why[a]} for a in sorted(idn.own)],
           "not_own": [{"address": a, "why": w} for a, w in sorted(idn.rejected.items())],
           "work_domains": sorted(idn.work_domains)}
    if as_json:
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True))
        return
    click.echo(f"identity{' of account ' + account if account else ''}:")
    click.echo(_table([{"a": x["address"], "w": x["why"]} for x in doc["own"]], [("a", "US"), ("w", "WHY")]))
    if doc["not_own"]:
        click.echo("")
        click.echo(_table([{"a": x["address"], "w": x["why"]} for x in doc["not_own"]],
                          [("a", "NOT US"), ("w", "WHY")]))
    click.echo("")
    click.echo("work domains: " + (", ".join(doc["work_domains"]) or "(none)"))


@crm.command()
@click.pass_obj
def rebuild(obj) -> None:
    """Re-read every message and derive everything again (it yields the same records)."""
    from mailsync.crm.pipeline import Pipeline

    _, settings, store = _open(obj)
    try:
        result = Pipeline(store, settings).run(rebuild=True)
    except MailsyncError as exc:
        fail(exc)
    store.dispose()
    click.echo(result.summary(), err=True)


@crm.command()
@click.argument("address")
@click.pass_obj
def forget(obj, address: str) -> None:
    """Erase ADDRESS: its contact and activities go, a salted hash stays so it is never derived again,
    every sink is sent a deletion, and the audit log records it."""
    from mailsync.crm.pipeline import Pipeline

    _, settings, store = _open(obj)
    try:
        result = Pipeline(store, settings).forget(address)
    except MailsyncError as exc:
        fail(exc)
    store.dispose()
    click.echo(f"crm: forgot a contact{'' if result.contact else ' (none was stored)'} and "
               f"{result.activities} activities; {result.queued} deletion(s) queued; hash {result.hash}", err=True)


@crm.command()
@click.option("--sink", "sink_name", required=True, help="The [[crm.sink]] name.")
@click.option("--limit", default=3, show_default=True, help="Records of each type.")
@click.pass_obj
def preview(obj, sink_name: str, limit: int) -> None:
    """Print the payloads a sink would receive for a few records (its field mapping applied)."""
    from mailsync.crm.outbox import envelope

    _, settings, store = _open(obj)
    try:
        sink = settings.sink(sink_name)
    except MailsyncError as exc:
        fail(exc)
    singular = {"contacts": "contact", "companies": "company", "activities": "activity"}
    out = []
    for kind in RECORD_CHOICES:
        rtype = singular[kind]
        if rtype not in sink.records:
            continue
        for r in _records(store, kind)[:limit]:
            row = {"op": "upsert", "record_type": rtype, "record_id": r["id"], "payload": json.dumps(r),
                   "idempotency_key": "(assigned when queued)"}
            out.append(envelope(row, sink))
    store.dispose()
    click.echo(json.dumps(out, indent=2, ensure_ascii=False, sort_keys=True))


@crm.command()
@click.option("--retry", is_flag=True, help="Put dead letters back in the queue and deliver now.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def outbox(obj, retry: bool, as_json: bool) -> None:
    """Pending and dead deliveries per sink; --retry resends the dead letters."""
    from mailsync.crm.outbox import Worker, outbox_summary, retry_dead

    _, settings, store = _open(obj)
    if retry:
        n = retry_dead(store)
        click.echo(f"crm: {n} dead letter(s) queued again", err=True)
        result = Worker(store, settings).run()
        click.echo(result.summary(), err=True)
        for e in result.errors:
            click.echo(f"mailsync: error: {e}", err=True)
    report = outbox_summary(store)
    store.dispose()
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    configured = {s.name for s in settings.sinks}
    if not report["sinks"]:
        click.echo("outbox empty")
    for name, c in sorted(report["sinks"].items()):
        note = "" if name in configured else "  (sink no longer configured)"
        click.echo(f"{name}: {c['pending']} pending ({c['retrying']} retrying), {c['dead']} dead{note}")
    for d in report["dead"]:
        click.echo(f"  dead #{d['id']} {d['sink']} {d['record_type']} {d['record_id']} {d['op']} after "
                   f"{d['attempts']} attempt(s): {d['last_error']}")
