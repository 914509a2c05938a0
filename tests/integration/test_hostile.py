"""The engine against a misbehaving server (tests/hostile_server.py): each case scripts how the
server answers, and after the sync the store must hold what an honest server holds, nothing
less (no message lost, no body overwritten) and nothing more (no message that is not there).
What Dovecot does honestly is tested against Dovecot elsewhere; these are the lies."""

from __future__ import annotations

import hashlib
import json

import pytest

from hostile_server import HostileServer
from hostile_support import (LISTING, VARIANTS, account, cut_after, fill, folder_state, hide_in_listings, lied,
                             listing_without, msg, phantom, server, store, stored, sync, truth, variant)
from mailsync.changes import LocalChanges
from mailsync.config.model import AccountConfig, SecretRef
from mailsync.store.uow import UnitOfWork
from mailsync.sync.engine import sync_account

__all__ = ["server", "store", "variant"]  # fixtures (hostile_support), used by name


# -- item: a listing that misses UIDs must not cost mail --------------------------------------

@VARIANTS
def test_a_listing_missing_uids_once_deletes_nothing(variant, server, store):
    """One listing leaves UIDs 3 and 4 out while another client really expunged 7: in every
    variant (a full listing, CONDSTORE's UID SEARCH ALL, QRESYNC's VANISHED (EARLIER)) the
    contradiction with EXISTS is read again, 7 goes and 3 and 4 stay."""
    fill(server, 10)
    assert sync(store, server).ok
    server.expunge("INBOX", {7})
    hide_in_listings(server, {3, 4})  # once: the re-read is honest
    r = sync(store, server)
    assert r.ok, r.error
    assert lied(server)
    assert stored(store) == truth(server)
    assert r.expunged == 1
    r = sync(store, server)
    assert r.ok and stored(store) == truth(server)


@VARIANTS
def test_uids_that_come_back_are_restored_not_lost(variant, server, store):
    """The server lies consistently for one run (listing and EXISTS agree on 8 of 10): the two are
    taken as expunged. When they come back, they are the same messages again, with the local flag
    change queued on one of them still to be pushed."""
    fill(server, 10)
    assert sync(store, server).ok
    LocalChanges(store).flag("acc", "INBOX", 3, add=["\\Flagged"])
    hide_in_listings(server, {3, 4}, times=None, exists=8)
    r = sync(store, server)
    assert r.ok, r.error
    assert lied(server)
    assert set(stored(store)) == set(range(1, 11)) - {3, 4}
    server._rules.clear()
    r = sync(store, server)
    assert r.ok, r.error
    assert 3 in stored(store) and 4 in stored(store)
    assert "\\Flagged" in server.truth()[3][0]  # the queued change reached the server
    assert stored(store) == truth(server)
    r = sync(store, server)  # and nothing is taken away one run later
    assert r.ok and stored(store) == truth(server)


@VARIANTS
def test_an_empty_listing_against_exists_deletes_nothing_and_says_so(variant, server, store):
    fill(server, 10)
    assert sync(store, server).ok
    server.expunge("INBOX", {10})  # a real change, so that every variant has to list the folder
    hide_in_listings(server, set(range(1, 11)), times=None)
    r = sync(store, server)
    assert set(stored(store)) == set(range(1, 11))  # nothing deleted, not even 10: the listing is not believed
    status, reason = folder_state(store)
    assert status == "held" and "EXISTS" in reason, (status, reason)
    assert r.set_aside and "EXISTS" in r.set_aside[0]  # shown, and the CLI exits 1 for it
    server._rules.clear()
    r = sync(store, server)
    assert r.ok, r.error
    assert stored(store) == truth(server) and folder_state(store) == ("ok", None)


@pytest.mark.parametrize("uidnext", ["sent", "left-out"])
def test_a_vanished_earlier_of_every_uid_costs_neither_memory_nor_mail(store, uidnext):
    """A QRESYNC SELECT answers VANISHED (EARLIER) 1:4294967295 (UIDs that never existed may be
    named, RFC 7162) while EXISTS says nothing went: expanding it took all memory (MemoryError, an
    internal error). It is clipped at UIDNEXT, or, without UIDNEXT, left out and the UIDs listed."""
    from hostile_support import CAPABILITIES

    with HostileServer(capabilities=CAPABILITIES["qresync"]) as srv:
        srv.add_folder("INBOX")
        fill(srv, 10)
        assert sync(store, srv).ok
        srv.expunge("INBOX", {4})
        srv.set_flags("INBOX", 2, {"\\Flagged"})

        def select(s, tag, cmd):
            answer = s.honest(tag, cmd)
            if uidnext == "left-out":
                answer = b"".join(x for x in answer.splitlines(keepends=True) if b"[UIDNEXT" not in x)
            at = answer.rfind(tag + b" OK")
            return answer[:at] + b"* VANISHED (EARLIER) 1:4294967295\r\n" + answer[at:]

        srv.script(r"^SELECT", select)
        r = sync(store, srv)
        assert r.ok, r.error
        assert lied(srv)
        assert stored(store) == truth(srv) and r.expunged == 1


@VARIANTS
def test_a_mass_deletion_is_held_until_allowed(variant, server, store):
    """EXISTS agrees with the listing: 9 of 10 messages gone at once. Held, shown, and applied only
    when allowed."""
    fill(server, 10)
    assert sync(store, server).ok
    before = stored(store)
    server.expunge("INBOX", range(2, 11))
    r = sync(store, server)
    assert stored(store) == before  # held
    status, reason = folder_state(store)
    assert status == "held" and "9 of 10" in reason
    r = sync(store, server)  # still held on the next run, whatever the server said last time
    assert stored(store) == before and folder_state(store)[0] == "held"
    r = sync_account(store, account(server), allow_mass_delete=True)
    assert r.ok, r.error
    assert stored(store) == truth(server) and folder_state(store) == ("ok", None)


def test_held_deletions_through_the_cli(server, tmp_path):
    """`sync` exits 1 and `status` shows the held folder; `sync --allow-deletions` applies them."""
    from helpers import run_cli

    fill(server, 8)
    cfg, env = _cli_setup(server, tmp_path)
    run_cli("sync", "-q", config=cfg, env=env, check=True)
    server.expunge("INBOX", range(1, 9))
    proc = run_cli("sync", "-q", "--json", config=cfg, env=env)
    assert proc.returncode == 1 and "8 of 8 messages gone" in proc.stderr, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["failed"] == ["acc"] and "8 of 8 messages gone" in summary["accounts"][0]["set_aside"][0]
    status = run_cli("status", config=cfg, env=env, check=True).stdout
    assert "INBOX: 8 messages" in status and "[HELD: 8 of 8 messages gone" in status, status
    run_cli("sync", "-q", "--allow-deletions", config=cfg, env=env, check=True)
    status = run_cli("status", config=cfg, env=env, check=True).stdout
    assert "INBOX: 0 messages" in status and "HELD" not in status, status


# -- item: a wrong APPENDUID never overwrites a message ------------------------------------------

def _append_and_sync(server, store, appenduid):
    fill(server, 5)
    assert sync(store, server).ok
    new = msg(50)
    LocalChanges(store).append("acc", "INBOX", new, flags=["\\Seen"])
    server.script(r"^APPEND", lambda s, tag, cmd: s.honest(tag, cmd, appenduid=appenduid))
    r = sync(store, server)
    assert r.ok, r.error
    assert stored(store) == truth(server)  # message 3 intact, the new one at the UID the server gave it
    assert stored(store)[6][1] == hashlib.sha256(new).hexdigest()
    r = sync(store, server)
    assert r.ok and stored(store) == truth(server)
    return r


@VARIANTS
def test_an_appenduid_of_another_uidvalidity_is_not_used(variant, server, store):
    validity = server.folders[b"INBOX"].uidvalidity
    _append_and_sync(server, store, (validity + 7, 3))


@VARIANTS
def test_an_appenduid_naming_a_known_uid_is_checked_not_trusted(variant, server, store):
    validity = server.folders[b"INBOX"].uidvalidity
    _append_and_sync(server, store, (validity, 3))


# -- item: only what was asked for is taken from a FETCH -------------------------------------------

@VARIANTS
@pytest.mark.parametrize("phantom", [
    phantom(3, 77, msg(77)),  # a UID beyond UIDNEXT, inside the folder's sequence numbers
    phantom(9, 5, msg(99)),  # beyond EXISTS, with a UID that looks plausible
    phantom(2, 2, msg(98)),  # a second answer for UID 2 with another body
], ids=["uid-beyond-uidnext", "seq-beyond-exists", "duplicate-uid"])
def test_a_first_sync_takes_only_the_messages_asked_for(variant, server, store, phantom):
    fill(server, 4)
    server.script(r"^UID FETCH 1:\* \(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK\[\]",
                  lambda s, tag, cmd: s.honest(tag, cmd, extra=phantom))
    r = sync(store, server)
    assert r.ok, r.error
    assert stored(store) == truth(server)
    assert r.new_messages == 4


@VARIANTS
def test_headers_not_asked_for_are_not_linked(variant, server, store):
    """A later sync recognises new messages by their Message-ID header: an extra header FETCH for a
    UID that was not asked for, naming a body the store has, must not become a placement."""
    fill(server, 4)
    assert sync(store, server).ok
    server.add_message("INBOX", msg(5))
    size = len(msg(2))
    head = b"Message-ID: <m2@hostile.test>\r\n\r\n"
    extra = (b"* 3 FETCH (UID 40 FLAGS () INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE %d "
             b"BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}\r\n" % (size, len(head)) + head + b")\r\n")
    server.script(r"HEADER.FIELDS", lambda s, tag, cmd: s.honest(tag, cmd, extra=extra))
    r = sync(store, server)
    assert r.ok, r.error
    assert stored(store) == truth(server)


# -- item: one bad folder or message fails that item, not the account ------------------------------

def _three_folders(server):
    server.add_folder("Archive")
    server.add_folder("Sent")
    for folder, n in (("INBOX", 5), ("Archive", 4), ("Sent", 4)):
        for i in range(n):
            server.add_message(folder, msg(hash((folder, i)) % 100000))


def _all_but(server, store, bad: str | None):
    for f in ("INBOX", "Archive", "Sent"):
        if f != bad:
            assert stored(store, f) == truth(server, f), f


def _list_with(extra: bytes):
    return lambda s, tag, cmd: extra + s.honest(tag, cmd)


@pytest.mark.parametrize("line", [
    b'* LIST (\\HasNoChildren) "/" "caf\xe9"\r\n',  # raw 8-bit bytes, not modified UTF-7
    b'* LIST (\\HasNoChildren) "/" "&Jjo-&bad"\r\n',  # invalid modified UTF-7
    b'* LIST (\\HasNoChildren) "/" {5}\r\nA\x00B/C\r\n',  # a NUL in a literal name
], ids=["8bit", "bad-utf7", "nul"])
def test_a_folder_with_a_bad_name_is_set_aside(server, store, line):
    _three_folders(server)
    server.script(r"^LIST", _list_with(line), times=None)
    r = sync(store, server)
    _all_but(server, store, None)
    assert r.ok and len(r.set_aside) == 1 and "name" in r.set_aside[0], (r.error, r.set_aside)
    r = sync(store, server)  # and every run after: the others keep syncing
    _all_but(server, store, None)


def test_a_folder_with_a_bad_name_is_shown_by_status_and_fails_the_cli(server, tmp_path):
    from helpers import run_cli

    _three_folders(server)
    server.script(r"^LIST", _list_with(b'* LIST (\\HasNoChildren) "/" "&Jjo-&bad"\r\n'), times=None)
    cfg, env = _cli_setup(server, tmp_path)
    proc = run_cli("sync", "-q", config=cfg, env=env)
    assert proc.returncode == 1 and "SET ASIDE" in proc.stderr and "never closed" in proc.stderr, proc.stderr
    status = run_cli("status", config=cfg, env=env, check=True).stdout
    assert "set aside: a folder was set aside: mailbox name '&Jjo-&bad'" in status, status
    assert "Archive: 4 messages" in status


def test_a_folder_gone_between_list_and_select(server, store):
    """The store holds no mail of it: nothing is at stake, the run is not failed for it, and
    `status` says why the folder is empty."""
    _three_folders(server)
    server.script(r'^SELECT "Archive"', lambda s, tag, cmd: tag + b" NO [NONEXISTENT] Mailbox doesn't exist\r\n",
                  times=None)
    r = sync(store, server)
    _all_but(server, store, "Archive")
    assert r.ok and any("'Archive' is listed but cannot be selected" in n for n in r.notes), r
    status, reason = folder_state(store, "Archive")
    assert status == "error" and "exist" in reason


def test_a_synced_folder_gone_between_list_and_select(server, store):
    """The store holds its mail: the run fails, naming it, and keeps every message of it."""
    _three_folders(server)
    assert sync(store, server).ok
    server.add_message("INBOX", msg(99999))
    server.script(r'^SELECT "Archive"', lambda s, tag, cmd: tag + b" NO [NONEXISTENT] Mailbox doesn't exist\r\n",
                  times=None)
    r = sync(store, server)
    _all_but(server, store, "Archive")
    assert not r.ok and "Archive" in r.error
    assert stored(store, "Archive") == truth(server, "Archive")
    status, reason = folder_state(store, "Archive")
    assert status == "error" and "exist" in reason


def test_a_folder_gone_between_list_and_status(server, store):
    """Without LIST-STATUS a new folder's counters come from STATUS; the folder vanished meanwhile."""
    _three_folders(server)
    server.script(r'^STATUS "Archive"', lambda s, tag, cmd: tag + b" NO [NONEXISTENT] Mailbox doesn't exist\r\n",
                  times=None)
    server.script(r'^SELECT "Archive"', lambda s, tag, cmd: tag + b" NO [NONEXISTENT] Mailbox doesn't exist\r\n",
                  times=None)
    r = sync(store, server)
    _all_but(server, store, "Archive")
    assert r.ok and any("'Archive' is listed but cannot be selected" in n for n in r.notes), r
    assert folder_state(store, "Archive")[0] == "error"


@pytest.mark.parametrize("field, value", [("uidvalidity", 2 ** 64), ("uidnext", 2 ** 64), ("uidvalidity", 0)])
def test_counters_out_of_range_set_the_folder_aside(server, store, field, value):
    _three_folders(server)
    server.script(r'^SELECT "Archive"', lambda s, tag, cmd: s.honest(tag, cmd, **{field: value}), times=None)
    r = sync(store, server)
    _all_but(server, store, "Archive")
    assert not r.ok and "Archive" in r.error and str(value) in r.error
    assert "internal error" not in r.error


def test_an_impossible_internaldate_costs_no_message(server, store):
    """31 February: the message is kept (with its date marked unknown in the audit log), and every
    other message of every folder is stored."""
    _three_folders(server)
    with server.lock:
        server.folders[b"Archive"].messages[1].internaldate = "31-Feb-2021 10:00:00 +0000"
    r = sync(store, server)
    _all_but(server, store, None)
    assert r.ok, r.error
    # and on a later sync (the per-message download path), too
    server.add_message("Sent", msg(4242), internaldate="30-Feb-2020 10:00:00 +0000")
    r = sync(store, server)
    assert r.ok, r.error
    _all_but(server, store, None)


# -- item: bad local input --------------------------------------------------------------------

def test_a_password_with_cr_lf_is_refused_before_it_is_sent(server, store):
    fill(server, 2)
    r = sync_account(store, account(server).__class__(
        name="acc", host=server.host, port=server.port, tls="none", allow_plaintext=True, username="u",
        password=SecretRef("literal", "p\r\nX1 DELETE INBOX"), timeout=5))
    assert not r.ok and "control character" in r.error, r.error
    assert not any("DELETE" in c or c.upper().startswith("LOGIN") for c in server.log), server.log
    assert server.truth()  # INBOX still there


@pytest.mark.parametrize("caps, ok", [(("UIDPLUS", "AUTH=PLAIN"), True), (("UIDPLUS",), False)])
def test_a_non_ascii_password_logs_in_with_authenticate_plain(store, caps, ok):
    with HostileServer(capabilities=caps) as srv:
        srv.add_folder("INBOX")
        fill(srv, 2)
        srv.password = "pässwörd€"
        acc = AccountConfig(name="acc", host=srv.host, port=srv.port, tls="none", allow_plaintext=True,
                            username="u", password=SecretRef("literal", srv.password), timeout=5)
        r = sync_account(store, acc)
        if ok:
            assert r.ok, r.error
            assert stored(store) == truth(srv)
        else:
            assert not r.ok and "AUTHENTICATE PLAIN" in r.error and "internal error" not in r.error, r.error


@pytest.mark.dovecot
def test_a_non_ascii_password_logs_in_to_dovecot(dovecot, store):
    """The same against the real server: Dovecot offers AUTH=PLAIN and takes UTF-8 passwords."""
    import uuid

    from mailsync.imap.connection import connect

    user = dovecot.new_user(f"pw{uuid.uuid4().hex[:10]}", "pässwörd€")
    acc = AccountConfig(name="acc", host=user.host, port=user.imap_port, tls="none", allow_plaintext=True,
                        username=user.name, password=SecretRef("literal", user.password), timeout=10)
    conn = connect(acc, user.password)
    try:
        assert conn.select("INBOX").uidvalidity > 0
    finally:
        conn.logout()


def test_append_of_endless_or_binary_input_is_refused(server, tmp_path):
    from helpers import run_cli

    fill(server, 1)
    cfg, env = _cli_setup(server, tmp_path)
    run_cli("sync", "-q", config=cfg, env=env, check=True)
    proc = run_cli("append", "acc", "INBOX", "/dev/zero", config=cfg, env=env, timeout=60)
    assert proc.returncode == 2 and "not a mail message" in proc.stderr and "Traceback" not in proc.stderr
    binary = tmp_path / "a.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    proc = run_cli("append", "acc", "INBOX", str(binary), config=cfg, env=env)
    assert proc.returncode == 2 and "not a mail message" in proc.stderr
    run_cli("sync", "-q", config=cfg, env=env, check=True)
    assert len(server.truth()) == 1  # nothing was pushed


def _cli_setup(server, tmp_path):
    from helpers import write_config

    cfg = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path / 'cli.db'}", [
        {"name": "acc", "host": server.host, "port": server.port, "tls": "none", "allow_plaintext": True,
         "username": "u", "password": "env:MS_PW_HOSTILE", "timeout": 5}])
    return cfg, {"MS_PW_HOSTILE": "p"}


def test_a_damaged_store_is_named_not_a_traceback(server, tmp_path):
    from helpers import run_cli

    fill(server, 30)
    cfg, env = _cli_setup(server, tmp_path)
    run_cli("sync", "-q", config=cfg, env=env, check=True)
    db = tmp_path / "cli.db"
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    for at in range(page, len(data), page):  # every page but the first overwritten
        data[at:at + page] = b"\xa5" * min(page, len(data) - at)
    db.write_bytes(bytes(data))
    for args in (("status",), ("sync", "-q"), ("export", "messages")):
        proc = run_cli(*args, config=cfg, env=env)
        assert proc.returncode != 0, args
        assert "damaged" in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert "backup" in proc.stderr


def test_an_empty_store_file_is_refused_not_started_afresh(server, tmp_path):
    from helpers import run_cli

    fill(server, 3)
    cfg, env = _cli_setup(server, tmp_path)
    run_cli("sync", "-q", config=cfg, env=env, check=True)
    (tmp_path / "cli.db").write_bytes(b"")
    for name in ("cli.db-wal", "cli.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    proc = run_cli("sync", "-q", config=cfg, env=env)
    assert proc.returncode != 0 and "empty (0 bytes)" in proc.stderr, proc.stderr
    assert (tmp_path / "cli.db").stat().st_size == 0  # left as it was, for the user to restore


# -- item: server-chosen names never reach a terminal raw -------------------------------------------

NASTY = ["[/]", "Archive [/2019]", "\x1b]0;pwned\x07Title", "a\x9b31mred", "rtl\u202eevil", "bell\x07"]
RAW_BAD = ["\x1b", "\x07", "\x9b", "\u202e", "\x00"]


def test_the_progress_display_takes_any_folder_name():
    """rich markup in a name (`[/]`) crashed the live display; control characters went to the terminal."""
    import io

    from rich.console import Console

    from mailsync.cli.progress import RichProgress

    buf = io.StringIO()
    p = RichProgress()
    p.console = p.progress.live.console = Console(file=buf, force_terminal=True, width=120)
    with p:
        for name in NASTY:
            p.folder_started("acc", name, 3)
            p.messages_stored("acc", name, 1, 10)
            p.progress.refresh()
            p.folder_done("acc", name)
    out = buf.getvalue()
    assert "\x9b" not in out and "\u202e" not in out and "pwned\x07" not in out


def test_status_escapes_names_and_json_keeps_them(store):
    """A server names its folders; `status` prints them escaped, `status --json` exactly."""
    import json

    from mailsync.cli.status import collect_status, render_status
    from mailsync.config.model import Config, StoreConfig
    from mailsync.store import repositories as repo

    with UnitOfWork(store) as uow:
        acc_id = repo.account_id(uow.connection, "acc", "h", "u")
        for i, name in enumerate(NASTY + ["nul\x00x"]):
            repo.add_folder(uow.connection, acc_id, f"raw{i}", name, "/", None)
        uow.commit()
    config = Config(path=None, store=StoreConfig(url=store.url),
                    accounts=(AccountConfig(name="acc", host="h", username="u"),))
    report = collect_status(store, config)
    text = render_status(report)
    for bad in RAW_BAD:
        assert bad not in text, repr(bad)
    assert "[/]" in text and "\\x1b]0;pwned\\x07" in text and "\\u202e" in text
    names = {f["name"] for f in json.loads(json.dumps(report))["accounts"][0]["folders"]}
    assert set(NASTY) <= names and "nul\x00x" in names


# -- smaller: errors name where they happened ---------------------------------------------------------

@VARIANTS
def test_a_bad_fetch_names_the_account_and_the_folder(variant, server, store):
    _three_folders(server)
    assert sync(store, server).ok
    server.add_message("Archive", msg(777))
    server.script(r"^UID FETCH \d+ \(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK\[\]",
                  b"* 5 FETCH (UID 5 FLAGS (\\Seen INTERNALDATE )))(\r\n{tag} OK done\r\n")
    r = sync(store, server)
    assert not r.ok and "account 'acc'" in r.error and "'Archive'" in r.error, r.error
    r = sync(store, server)  # the next run, honest again, completes it
    assert r.ok, r.error
    _all_but(server, store, None)


# -- a connection cut in the middle of a FETCH ------------------------------------------------------

@VARIANTS
@pytest.mark.parametrize("when", ["first-sync", "later-sync"])
def test_a_connection_cut_mid_fetch_loses_and_duplicates_nothing(variant, server, store, when):
    """The connection drops inside the third message of a body FETCH: the run fails with a clear
    error, and the next one completes the folder with each message stored once."""
    fill(server, 6)
    if when == "later-sync":
        assert sync(store, server).ok
        for i in range(7, 13):
            server.add_message("INBOX", msg(i))
        server.set_flags("INBOX", 2, {"\\Answered"})
    server.script(r"^UID FETCH \S+ \(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK\[\]", cut_after(2))
    r = sync(store, server)
    assert not r.ok and "internal error" not in r.error and "acc" in r.error, r.error
    r = sync(store, server)
    assert r.ok, r.error
    assert stored(store) == truth(server)
    from mailsync.store import tables
    from sqlalchemy import func, select

    with UnitOfWork(store) as uow:  # each body once, each placement once
        assert uow.connection.scalar(select(func.count()).select_from(tables.bodies)) == len(truth(server))
        assert uow.connection.scalar(select(func.count()).select_from(tables.placements)) == len(truth(server))


# -- item: a message over the server's APPENDLIMIT (RFC 7889) is not sent ------------------------

def test_a_message_over_the_appendlimit_is_not_sent_and_the_others_are(store):
    with HostileServer(capabilities=("UIDPLUS", "APPENDLIMIT=1000")) as srv:
        srv.add_folder("INBOX")
        fill(srv, 2)
        assert sync(store, srv).ok
        big, small = msg(60, size=2000), msg(61)
        LocalChanges(store).append("acc", "INBOX", big)
        LocalChanges(store).append("acc", "INBOX", small)
        r = sync(store, srv)
        assert not any(c.upper().startswith("APPEND") and "{%d}" % len(big) in c for c in srv.log), srv.log
        assert any("APPENDLIMIT 1,000 bytes" in n for n in r.notes), r.notes
        assert hashlib.sha256(small).hexdigest() in {sha for _f, sha in truth(srv).values()}
        assert hashlib.sha256(big).hexdigest() not in {sha for _f, sha in stored(store).values()}  # dropped, said
        assert stored(store) == truth(srv)
