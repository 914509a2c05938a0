"""The CLI's start-up: the collector is off while the heavy modules load (mailsync.cli.main.main)
and back on, with what they built frozen, once a command has its store."""

from __future__ import annotations

import gc
from types import SimpleNamespace

from mailsync.cli.main import _Ctx


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
