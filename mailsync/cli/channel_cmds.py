"""`mailsync channel status [--json]`: what each configured channel has done and has left to do.

Owns: the channel group's arguments and output (a table, or JSON on stdout). Must not: run a
channel (`mailsync sync` does, through mailsync.service) or hold channel logic (mailsync.channel).
"""

from __future__ import annotations

import json

import click

from mailsync.cli.output import fail
from mailsync.errors import ConfigError, MailsyncError


@click.group()
def channel() -> None:
    """Channels: folders copied, mirrored or kept in step between two accounts ([[channel]] in the config)."""


@channel.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_obj
def status(obj, as_json: bool) -> None:
    """Per channel: messages paired with their copy, copies waiting for the server, copies refused."""
    from mailsync.channel.run import channel_status

    try:
        config = obj.config()
        if not config.channels:
            raise ConfigError(f"{config.path}: no [[channel]] is configured",
                              hint='add one: [[channel]] with name, from = "ACCOUNT" and to = "ACCOUNT"')
        store = obj.store(config)
        rows = [channel_status(store, c) for c in config.channels]
        store.dispose()
    except MailsyncError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    click.echo(f"{'CHANNEL':20} {'FROM':12} {'TO':12} {'MODE':7} {'PAIRED':>8} {'WAITING':>8} {'FAILED':>7}")
    for r in rows:
        click.echo(f"{r['channel']:20} {r['from']:12} {r['to']:12} {r['mode']:7} {r['pairs']:>8} {r['waiting']:>8} "
                   f"{r['failed']:>7}")
