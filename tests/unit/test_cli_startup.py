"""The CLI's start-up: the collector is off while the heavy modules load (mailsync.cli.main.main)
and back on, with what they built frozen, once a command has its store; the commands of other
modules are loaded when one of them runs (a sync loads none), under the names they give themselves."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import click

from mailsync.cli.main import _Ctx, _LazyGroup, cli


def test_collection_resumes_once_the_store_is_open(tmp_path):
    config = SimpleNamespace(store=SimpleNamespace(url=f"sqlite:///{tmp_path}/s.db"))
    gc.disable()  # as main() leaves it
    try:
        store = _Ctx(None).store(config)
        try:
            assert gc.isenabled()  # a long command (mailsync watch) collects as usual
            assert gc.get_freeze_count() > 0
        finally:
            store.dispose()
    finally:
        gc.unfreeze()
        gc.enable()


def test_each_lazy_command_is_the_one_its_module_names_so():
    ctx = click.Context(cli)
    groups = [cli, cli.get_command(ctx, "export")]
    lazy = [(group, name) for group in groups for name in sorted(group.lazy)]
    assert len(lazy) >= 13
    for group, name in lazy:
        command = group.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name
        assert name in group.commands and name not in group.lazy
    assert isinstance(groups[1], _LazyGroup) and set(groups[1].list_commands(ctx)) >= {"messages", "maildir", "mbox"}
