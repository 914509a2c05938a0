"""max_size against Dovecot, through the CLI (issue 23): a message larger than it gets its row and its
headers, not its body; its flags sync both ways and it moves like any other; `export` shows it with
its headers (no SHA-256 yet); `mailsync show` fetches its body from the server on demand, stores it,
and later shows read it from the store; a Maildir mirror writes no file for it until its body is
there; a channel copies it only then. The yardstick is a second IMAP client's view of the server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

from helpers import REPO, account_entry, client_for, export_via_cli, password_var, run_cli, write_config

LARGE = 60_000


def message(i: int, size: int) -> bytes:
    return (b"Message-ID: <big%d@example.org>\r\nFrom: a@example.org\r\nTo: b@example.org\r\n"
            b"Subject: size %d\r\n\r\n" % (i, i)) + (b"y" * 76 + b"\r\n") * (size // 78)


def _setup(tmp_path, user, store_url, **extra):
    user.server.load(user.name, [("INBOX", message(1, 500), ""), ("INBOX", message(2, LARGE), ""),
                                 ("INBOX", message(3, LARGE), "\\Seen"), ("INBOX", message(4, 800), "")])
    cfg = write_config(tmp_path / "c.toml", store_url, [account_entry(user, "acc", max_size="50KB", **extra)])
    return cfg, {password_var("acc"): user.password}


def _show(cfg, env, *args) -> subprocess.CompletedProcess:
    full = dict(os.environ, **env, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "mailsync", "--config", str(cfg), "show", *args],
                          capture_output=True, env=full, timeout=120)


def _server(user, folder: str = "INBOX") -> dict[str, tuple[bytes, set]]:
    """Message-ID -> (raw message, flags) in ``folder``, as a second client sees it."""
    c = client_for(user)
    try:
        c.select_folder(folder, readonly=True)
        out = {}
        for uid, d in c.fetch(c.search("ALL"), ["BODY.PEEK[]", "FLAGS"]).items():
            raw = d[b"BODY[]"]
            mid = next(line.split(b":", 1)[1].strip().decode() for line in raw.split(b"\r\n")
                       if line.lower().startswith(b"message-id:"))
            out[mid] = (raw, {f.decode() for f in d[b"FLAGS"]})
        return out
    finally:
        c.logout()


def _by_mid(rows, folder: str = "INBOX") -> dict[str, dict]:
    return {r["message_id"]: r for r in rows if r["folder"] == folder}


def test_large_messages_are_held_by_their_headers_and_shown_on_demand(tmp_path, imap_user, store_url):
    cfg, env = _setup(tmp_path, imap_user, store_url)
    proc = run_cli("sync", config=cfg, env=env, check=True)
    rows = _by_mid(export_via_cli(cfg, env))
    big, seen_big, small = rows["<big2@example.org>"], rows["<big3@example.org>"], rows["<big1@example.org>"]
    # every message has its row; the large ones by their headers: no SHA-256 of a body not held
    assert len(rows) == 4
    assert big["headers_only"] is True and big["sha256"] is None and big["size"] > 50_000
    assert seen_big["flags"] == ["\\Seen"] and "headers_only" not in small
    assert small["sha256"] == hashlib.sha256(_server(imap_user)["<big1@example.org>"][0]).hexdigest()
    status = run_cli("status", config=cfg, env=env, check=True).stdout
    assert "2 held by their headers alone" in status, status
    verified = run_cli("verify", config=cfg, env=env)  # a header section is checked by its own key
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # --headers shows what is held without asking the server
    head = _show(cfg, env, "acc", "INBOX", str(big["uid"]), "--headers")
    assert head.returncode == 0, head.stderr
    whole = _server(imap_user)["<big2@example.org>"][0]
    assert head.stdout == whole[:whole.index(b"\r\n\r\n") + 4]

    # flags both ways: a local change reaches the server, a server change reaches the store
    run_cli("flag", "acc", "INBOX", str(big["uid"]), "+\\Flagged", config=cfg, env=env, check=True)
    c = client_for(imap_user)
    c.select_folder("INBOX")
    c.add_flags([seen_big["uid"]], ["$Later"])
    c.logout()
    run_cli("sync", config=cfg, env=env, check=True)
    assert "\\Flagged" in _server(imap_user)["<big2@example.org>"][1]
    rows = _by_mid(export_via_cli(cfg, env))
    assert rows["<big3@example.org>"]["flags"] == ["$Later", "\\Seen"]
    assert rows["<big2@example.org>"]["headers_only"] is True

    # show fetches the body from the server (without marking it read), stores it, prints it
    shown = _show(cfg, env, "acc", "INBOX", str(big["uid"]))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == whole
    assert "\\Seen" not in _server(imap_user)["<big2@example.org>"][1]
    rows = _by_mid(export_via_cli(cfg, env))
    assert rows["<big2@example.org>"]["sha256"] == hashlib.sha256(whole).hexdigest()
    assert "headers_only" not in rows["<big2@example.org>"]
    assert rows["<big3@example.org>"]["headers_only"] is True  # the other one still waits
    # later shows read the store: the message is gone from the server, and show still prints it
    c = client_for(imap_user)
    c.select_folder("INBOX")
    c.delete_messages([big["uid"]])
    c.expunge()
    c.logout()
    again = _show(cfg, env, "acc", "INBOX", str(big["uid"]))
    assert again.returncode == 0 and again.stdout == whole
    # a sync after that: the message goes (expunged), the other large one is still held by its headers
    run_cli("sync", config=cfg, env=env, check=True)
    rows = _by_mid(export_via_cli(cfg, env))
    assert "<big2@example.org>" not in rows and rows["<big3@example.org>"]["headers_only"] is True
    # a message no longer on the server cannot be fetched: a clear error, nothing stored
    c = client_for(imap_user)
    c.select_folder("INBOX")
    c.delete_messages([seen_big["uid"]])
    c.expunge()
    c.logout()
    gone = _show(cfg, env, "acc", "INBOX", str(seen_big["uid"]))
    assert gone.returncode != 0 and b"no longer on the server" in gone.stderr and gone.stdout == b""


def test_a_large_message_moves_without_its_body_and_raising_max_size_downloads_it(tmp_path, imap_user, store_url):
    cfg, env = _setup(tmp_path, imap_user, store_url)
    run_cli("sync", config=cfg, env=env, check=True)
    big = _by_mid(export_via_cli(cfg, env))["<big2@example.org>"]
    run_cli("move", "acc", "INBOX", str(big["uid"]), "Archive", config=cfg, env=env, check=True)
    run_cli("sync", config=cfg, env=env, check=True)
    assert "<big2@example.org>" in _server(imap_user, "Archive")
    assert "<big2@example.org>" not in _server(imap_user, "INBOX")
    moved = _by_mid(export_via_cli(cfg, env), "Archive")["<big2@example.org>"]
    assert moved["headers_only"] is True
    # a move on the server: found again by Message-ID and size, not downloaded
    c = client_for(imap_user)
    c.select_folder("INBOX")
    uid = next(u for u, d in c.fetch(c.search("ALL"), ["RFC822.SIZE"]).items() if d[b"RFC822.SIZE"] > 50_000)
    c.move([uid], "Archive")
    c.logout()
    run_cli("sync", config=cfg, env=env, check=True)
    archive = _by_mid(export_via_cli(cfg, env), "Archive")
    assert archive["<big3@example.org>"]["headers_only"] is True
    last = json.loads(run_cli("status", "--json", config=cfg, env=env, check=True).stdout)["accounts"][0]["last_run"]
    assert last["bytes_fetched"] < 50_000  # its body did not cross the network
    # max_size raised: the next sync downloads the bodies now within it
    cfg.write_text(cfg.read_text().replace('max_size = "50KB"', 'max_size = "1MB"'))
    run_cli("sync", config=cfg, env=env, check=True)
    archive = _by_mid(export_via_cli(cfg, env), "Archive")
    server = _server(imap_user, "Archive")
    for mid in ("<big2@example.org>", "<big3@example.org>"):
        assert "headers_only" not in archive[mid]
        assert archive[mid]["sha256"] == hashlib.sha256(server[mid][0]).hexdigest()
    status = run_cli("status", config=cfg, env=env, check=True).stdout
    assert "held by their headers" not in status


def test_the_maildir_mirror_writes_no_file_for_a_message_held_by_its_headers(tmp_path, imap_user, store_url):
    root = tmp_path / "Mail"
    cfg, env = _setup(tmp_path, imap_user, store_url, maildir=str(root))
    proc = run_cli("sync", config=cfg, env=env, check=True)
    assert "held by its headers" not in proc.stderr and "cannot" not in proc.stderr, proc.stderr  # not a failure
    server = _server(imap_user)
    # the two small ones, whole; no file for the large ones (never a truncated message)
    assert sorted(hashlib.sha256(raw).hexdigest() for raw, _ in server.values() if len(raw) < 50_000) == _shas(root)
    # a sync with nothing new writes nothing more and takes nothing from the server
    run_cli("sync", config=cfg, env=env, check=True)
    assert len(_shas(root)) == 2 and _server(imap_user).keys() == server.keys()
    # the body fetched by show: the next sync writes the whole message
    big = _by_mid(export_via_cli(cfg, env))["<big2@example.org>"]
    assert _show(cfg, env, "acc", "INBOX", str(big["uid"])).returncode == 0
    run_cli("sync", config=cfg, env=env, check=True)
    assert hashlib.sha256(server["<big2@example.org>"][0]).hexdigest() in _shas(root)
    assert len(_shas(root)) == 3


def _shas(root) -> list[str]:
    return sorted(hashlib.sha256(p.read_bytes()).hexdigest()
                  for sub in ("cur", "new") for p in (root / sub).iterdir())


def test_a_channel_copies_a_large_message_only_once_its_body_is_held(tmp_path, imap_user, dovecot, store_url):
    other = dovecot.new_user(f"dest-{time.monotonic_ns()}", "pw-dest-1234")
    imap_user.server.load(imap_user.name, [("INBOX", message(1, 500), ""), ("INBOX", message(2, LARGE), "")])
    cfg = write_config(tmp_path / "c.toml", store_url, [account_entry(imap_user, "a", max_size="50KB"),
                                                         account_entry(other, "b")])
    cfg.write_text(cfg.read_text() + '\n[[channel]]\nname = "a-to-b"\nfrom = "a"\nto = "b"\n')
    env = {password_var("a"): imap_user.password, password_var("b"): other.password}
    for _ in range(2):
        run_cli("sync", config=cfg, env=env, check=True)
    assert list(_server(other)) == ["<big1@example.org>"]  # the large one waits for its body
    big = _by_mid(export_via_cli(cfg, env, "--account", "a"))["<big2@example.org>"]
    assert _show(cfg, env, "a", "INBOX", str(big["uid"])).returncode == 0
    for _ in range(2):
        run_cli("sync", config=cfg, env=env, check=True)
    dest, src = _server(other), _server(imap_user)
    assert sorted(dest) == ["<big1@example.org>", "<big2@example.org>"]
    assert dest["<big2@example.org>"][0] == src["<big2@example.org>"][0]  # whole, and once


def test_kill_9_at_every_step_of_the_sync_that_downloads_the_held_bodies_then_a_rerun_converges(tmp_path, imap_user):
    """max_size raised: the sync that downloads the bodies it now allows is killed at each of its
    crash points in turn; a rerun leaves every message once, whole, as the server has it."""
    imap_user.server.load(imap_user.name, [("INBOX", message(1, 500), ""), ("INBOX", message(2, LARGE), ""),
                                           ("INBOX", message(3, LARGE), "\\Seen"), ("Archive", message(4, LARGE), "")])
    server = {**_server(imap_user), **_server(imap_user, "Archive")}
    env = {password_var("acc"): imap_user.password}
    for n in range(1, 60):
        url = f"sqlite:///{tmp_path}/s{n}.db"
        cfg = write_config(tmp_path / f"c{n}.toml", url, [account_entry(imap_user, "acc", max_size="50KB")])
        run_cli("sync", config=cfg, env=env, check=True)
        cfg.write_text(cfg.read_text().replace('max_size = "50KB"', 'max_size = "1MB"'))
        crashed = run_cli("sync", config=cfg, env={**env, "MAILSYNC_CRASH_AFTER": str(n)})
        assert crashed.returncode in (0, 99), crashed.stderr
        run_cli("sync", config=cfg, env=env, check=True)
        rows = export_via_cli(cfg, env)
        assert sorted((r["folder"], r["message_id"]) for r in rows) == sorted(
            [("INBOX", f"<big{i}@example.org>") for i in (1, 2, 3)] + [("Archive", "<big4@example.org>")])
        assert all(r["sha256"] == hashlib.sha256(server[r["message_id"]][0]).hexdigest() for r in rows), rows
        if crashed.returncode == 0:  # past the last crash point
            break
    else:
        raise AssertionError("the sync never ran to its end")
    assert n > 3  # it did pass crash points on the way
