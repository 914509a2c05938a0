"""A first sync with the live Maildir mirror writes each message's file while it downloads it
(mailsync.mirror.stage): the mirror's write renames those files into place instead of reading the
messages back from the store's packs; a staged file left by a killed run is never taken into the
Maildir, and none is left behind."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from helpers import account_entry, password_var, run_cli, write_config
from mailsync.config.loader import load_config
from mailsync.mirror import live
from mailsync.mirror.stage import PREFIX
from mailsync.service import run_sync
from mailsync.store.db import open_store
from mailsync.testing.corpus import load_into, read_corpus
from maildir_support import read_maildir, server_view

REPO = Path(__file__).resolve().parents[2]


def _setup(tmp_path, user, n: int = 40):
    messages = read_corpus(REPO / "fixtures" / "corpus")[:n]
    load_into(user.server, user.name, messages)
    user.server.force_resync(user.name)
    root = tmp_path / "Mail"
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db",
                       [account_entry(user, "acc", maildir=str(root))])
    return cfg, {password_var("acc"): user.password}, root


def _mirrored(user, root: Path) -> None:
    server = server_view(user)
    for folder, want in server.items():
        path = root if folder == "INBOX" else root / ("." + folder.replace("/", "."))
        assert read_maildir(path) == want, folder


def test_the_first_sync_renames_the_staged_files_into_place(tmp_path, imap_user, monkeypatch):
    cfg, env, root = _setup(tmp_path, imap_user)
    monkeypatch.setenv(password_var("acc"), imap_user.password)
    config = load_config(cfg)
    read_back = []
    bodies = live.LiveMirror._bodies

    def spy(self, c, writes):
        read_back.extend(writes)
        return bodies(self, c, writes)

    monkeypatch.setattr(live.LiveMirror, "_bodies", spy)
    store = open_store(config.store.url)
    try:
        outcome = run_sync(config, store, None, quiet=True)
    finally:
        store.dispose()
    assert not outcome.failed
    assert outcome.results[0].new_messages == 40
    assert read_back == []  # every file was the one written during the download
    _mirrored(imap_user, root)
    assert not [p for p in root.rglob(PREFIX + "*")]


def test_staged_files_of_a_killed_run_are_removed_and_never_renamed_in(tmp_path, dovecot):
    """Killed at each crash point of a first sync, with a staged file of every message left cut
    short in tmp/ (what a kill in the middle of their writes leaves): the rerun writes every file
    whole, from the bytes it downloads or the store holds, and removes what was staged."""
    points = []
    for n in range(1, 40):
        user = dovecot.new_user(f"stage{n}-{os.getpid()}-{tmp_path.name[-8:]}".replace("_", "")[:40], "pw")
        where = tmp_path / str(n)
        where.mkdir()
        cfg, env, root = _setup(where, user, 20)
        bodies: dict[str, bytes] = {}
        server_view(user, bodies)
        crashed = run_cli("sync", "--quiet", config=cfg, env=dict(env, MAILSYNC_CRASH_AFTER=str(n)))
        if crashed.returncode == 0:
            break
        assert crashed.returncode == 99, crashed.stderr
        points.append(re.search(r"crash point \d+ \((.*)\) reached", crashed.stderr).group(1))
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        for sha, raw in bodies.items():
            (root / "tmp" / (PREFIX + sha)).write_bytes(raw[:len(raw) // 2])
        assert run_cli("sync", "--quiet", config=cfg, env=env).returncode == 0, points[-1]
        _mirrored(user, root)
        assert not list(root.rglob(PREFIX + "*"))
    else:
        pytest.fail("the sync never got through")
    assert {"packs written", "mirror files written"} <= set(points), points
