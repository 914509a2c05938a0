"""The throwaway-server harness itself (mailsync.testing), against a real Dovecot and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import imaplib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from imapclient import IMAPClient

from mailsync.testing.dovecot import (
    CONF_TEMPLATE,
    REQUIRED_CAPABILITIES,
    DovecotServer,
    ImapUser,
    encode_mutf7,
    maildir_folder_name,
)

REPO = Path(__file__).resolve().parents[2]


def message(n: int, subject: str | None = None) -> bytes:
    return (f"From: Sender {n} <s{n}@example.org>\r\nTo: r@example.org\r\n"
            f"Subject: {subject or f'message {n}'}\r\nMessage-ID: <m{n}@example.org>\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nBody of message {n}.\r\n").encode()


def connect(user: ImapUser) -> IMAPClient:
    client = IMAPClient(user.host, port=user.imaps_port, ssl=True,
                        ssl_context=ssl.create_default_context(cafile=str(user.ca_file)), timeout=30)
    client.normalise_times = False
    client.login(user.name, user.password)
    return client


# --------------------------------------------------------------------------- connecting


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_imaps_login_verifies_certificate_against_ca_file(imap_user: ImapUser, hostname: str) -> None:
    context = ssl.create_default_context(cafile=str(imap_user.ca_file))
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # the default from Python 3.13 on
    with IMAPClient(hostname, port=imap_user.imaps_port, ssl=True, ssl_context=context, timeout=30) as client:
        client.login(imap_user.name, imap_user.password)
        assert client.noop()


def test_imaps_without_ca_file_does_not_verify(imap_user: ImapUser) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(imap_user.host, port=imap_user.imaps_port, ssl=True,
                   ssl_context=ssl.create_default_context(), timeout=30)


def test_starttls_login(imap_user: ImapUser) -> None:
    client = IMAPClient(imap_user.host, port=imap_user.imap_port, ssl=False, timeout=30)
    assert b"STARTTLS" in client.capabilities()
    client.starttls(ssl.create_default_context(cafile=str(imap_user.ca_file)))
    client.login(imap_user.name, imap_user.password)
    assert client.noop()
    client.logout()


def test_plain_login(imap_user: ImapUser) -> None:
    client = IMAPClient(imap_user.host, port=imap_user.imap_port, ssl=False, timeout=30)
    client.login(imap_user.name, imap_user.password)
    assert client.noop()
    client.logout()


def test_wrong_password_fails_fast(imap_user: ImapUser) -> None:
    client = IMAPClient(imap_user.host, port=imap_user.imap_port, ssl=False, timeout=30)
    started = time.monotonic()
    with pytest.raises(Exception, match="(?i)authentication failed"):
        client.login(imap_user.name, "wrong")
    assert time.monotonic() - started < 1.5  # auth_failure_delay and the anvil penalty are off
    client.login(imap_user.name, imap_user.password)  # the same connection and IP still work
    client.logout()


def test_default_capabilities(imap_user: ImapUser) -> None:
    client = connect(imap_user)
    caps = {c.decode().upper() for c in client.capabilities()}
    client.logout()
    assert set(REQUIRED_CAPABILITIES) <= caps
    assert caps == {c.upper() for c in imap_user.server.capabilities}


def test_special_use_folders_exist_for_a_new_user(imap_user: ImapUser) -> None:
    client = connect(imap_user)
    folders = {name: flags for flags, _, name in client.list_folders()}
    subscribed = {name for _, _, name in client.list_sub_folders()}
    client.logout()
    assert {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"} <= set(folders)
    for name in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert f"\\{name}".encode() in folders[name]
        assert name in subscribed


@pytest.mark.parametrize("removed", [("CONDSTORE", "QRESYNC"), ("UIDPLUS", "MOVE"), ("NOTIFY", "IDLE"),
                                     ("CONDSTORE",)],
                         ids=lambda r: "without-" + "-".join(r))
def test_remove_capabilities(dovecot_factory, dovecot: DovecotServer, removed: tuple[str, ...]) -> None:
    server = dovecot_factory(removed)
    user = server.new_user(f"caps-{'-'.join(removed).lower()}", "pw")
    client = connect(user)
    caps = {c.decode().upper() for c in client.capabilities()}
    client.logout()
    default = {c.upper() for c in dovecot.capabilities}
    assert default - caps == set(removed)
    assert caps <= default
    assert {c.upper() for c in server.default_capabilities} == default
    assert {c.upper() for c in server.capabilities} == caps
    # Before login too (Dovecot then sends the configured list in place of its short banner list).
    plain = IMAPClient(server.host, port=server.imap_port, ssl=False, timeout=30)
    pre = {c.decode().upper() for c in plain.capabilities()}
    plain.logout()
    assert not pre & set(removed)


def test_removed_capabilities_are_only_not_advertised(dovecot_factory) -> None:
    # Dovecot still implements what it no longer advertises: a client must go by CAPABILITY.
    server = dovecot_factory(("CONDSTORE", "QRESYNC"))
    user = server.new_user(f"enable-{os.urandom(3).hex()}", "pw")
    client = connect(user)
    assert client.enable("QRESYNC") == [b"QRESYNC"]
    client.logout()


def test_remove_unknown_capability_is_an_error(dovecot: DovecotServer) -> None:
    root = Path(tempfile.mkdtemp(prefix="mailsync-dovecot-"))
    server = DovecotServer(root, remove_capabilities=["X-NOT-OFFERED"])
    try:
        with pytest.raises(ValueError, match="X-NOT-OFFERED"):
            server.start()
        assert not server.running
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- users


def test_new_users_log_in_at_once_without_restart(dovecot: DovecotServer) -> None:
    pid = dovecot.pid
    token = os.urandom(3).hex()
    for i in range(5):  # several within one second: a shared passwd-file would fail here
        name = f"fresh{i}-{token}"
        dovecot.add_user(name, f"pw{i}")
        conn = imaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=30)
        assert conn.login(name, f"pw{i}")[0] == "OK"
        conn.logout()
    assert dovecot.pid == pid
    assert f"fresh4-{token}" in dovecot.users()


def test_add_user_rejects_bad_names(dovecot: DovecotServer) -> None:
    for bad in ("../etc", "a b", "", ".hidden", "x/y"):
        with pytest.raises(ValueError):
            dovecot.add_user(bad, "pw")
    with pytest.raises(ValueError):
        dovecot.add_user("okname", "pass:word")


# --------------------------------------------------------------------------- mail


def test_folder_names_map_to_maildirpp() -> None:
    assert maildir_folder_name("INBOX") == ""
    assert maildir_folder_name("Archive/2024") == ".Archive.2024"
    assert maildir_folder_name("Entwürfe") == ".Entw&APw-rfe"
    assert maildir_folder_name("A&B") == ".A&-B"
    assert encode_mutf7("日本語") == "&ZeVnLIqe-"
    for bad in ("a.b", "a//b", "/a"):
        with pytest.raises(ValueError):
            maildir_folder_name(bad)


def test_written_messages_appear_with_flags_date_and_folder(imap_user: ImapUser) -> None:
    server = imap_user.server
    when = 1_600_000_000.0  # 2020-09-13 12:26:40 UTC
    server.write_message(imap_user.name, "INBOX", message(1), "\\Seen \\Flagged", internaldate=when)
    server.write_message(imap_user.name, "INBOX", message(2), "", internaldate=when + 60)
    server.write_message(imap_user.name, "INBOX", message(3), "\\Answered \\Draft \\Deleted $Forwarded Project-X")
    path = server.write_message(imap_user.name, "Archive/2024", message(4), "\\Seen", internaldate=when)
    server.write_message(imap_user.name, "Entwürfe", message(5), "\\Draft")
    assert path.parent.parent.name == ".Archive.2024"
    assert path.stat().st_uid == server.mail_uid
    server.force_resync(imap_user.name)

    client = connect(imap_user)
    client.select_folder("INBOX", readonly=True)
    data = client.fetch(client.search(), ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE",
                                "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    by_uid = data  # imapclient uses UID FETCH: keys are UIDs
    assert sorted(by_uid) == [1, 2, 3]  # UIDs in write order
    assert [by_uid[u][b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].strip() for u in (1, 2, 3)] == [
        b"Message-ID: <m1@example.org>", b"Message-ID: <m2@example.org>", b"Message-ID: <m3@example.org>"]
    flags = {u: {f.decode() for f in by_uid[u][b"FLAGS"]} - {"\\Recent"} for u in by_uid}
    assert flags == {1: {"\\Seen", "\\Flagged"}, 2: set(),
                     3: {"\\Answered", "\\Draft", "\\Deleted", "$Forwarded", "Project-X"}}
    assert by_uid[1][b"INTERNALDATE"].timestamp() == when
    assert by_uid[2][b"INTERNALDATE"].timestamp() == when + 60
    assert abs(by_uid[3][b"INTERNALDATE"].timestamp() - time.time()) < 300
    assert by_uid[1][b"RFC822.SIZE"] == len(message(1))

    client.select_folder("Archive/2024", readonly=True)
    data = client.fetch(client.search(), ["FLAGS", "INTERNALDATE"])
    assert [set(d[b"FLAGS"]) - {b"\\Recent"} for d in data.values()] == [{b"\\Seen"}]
    assert next(iter(data.values()))[b"INTERNALDATE"] == dt.datetime.fromtimestamp(when, dt.timezone.utc)

    names = {name for _, _, name in client.list_folders()}
    assert {"Archive/2024", "Entwürfe"} <= names
    client.select_folder("Entwürfe", readonly=True)
    assert [set(d[b"FLAGS"]) - {b"\\Recent"} for d in client.fetch(client.search(), ["FLAGS"]).values()] == [{b"\\Draft"}]
    client.logout()

    # On the wire the folder is in modified UTF-7.
    raw = imaplib.IMAP4(server.host, server.imap_port, timeout=30)
    raw.login(imap_user.name, imap_user.password)
    typ, lines = raw.list()
    raw.logout()
    assert typ == "OK"
    assert any(line.endswith(b'"/" Entw&APw-rfe') for line in lines), lines


def test_messages_written_after_login_appear_after_resync(imap_user: ImapUser) -> None:
    server = imap_user.server
    client = connect(imap_user)
    before = {name for _, _, name in client.list_folders()}
    assert "Later" not in before
    server.load(imap_user.name, [("INBOX", message(1)), ("Later/Sub", message(2), "\\Seen")])
    assert "Later/Sub" in {name for _, _, name in client.list_folders()}
    assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 1
    assert client.folder_status("Later/Sub", ["MESSAGES", "UNSEEN"]) == {b"MESSAGES": 1, b"UNSEEN": 0}
    client.logout()


def test_load_accepts_bytes_tuples_and_mappings(imap_user: ImapUser) -> None:
    server = imap_user.server
    paths = server.load(imap_user.name, [
        message(1),
        ("Projects", message(2)),
        ("Projects", message(3), "\\Seen"),
        ("Projects", message(4), "\\Flagged", 1_500_000_000),
        {"folder": "Projects", "raw": message(5), "flags": "$Label1"},
    ])
    assert len(paths) == 5
    client = connect(imap_user)
    assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 1
    client.select_folder("Projects", readonly=True)
    data = client.fetch(client.search(), ["UID", "FLAGS", "INTERNALDATE"])
    flags = [set(d[b"FLAGS"]) - {b"\\Recent"} for _, d in sorted(data.items())]
    assert flags == [set(), {b"\\Seen"}, {b"\\Flagged"}, {b"$Label1"}]
    assert data[3][b"INTERNALDATE"].timestamp() == 1_500_000_000
    client.logout()


def test_load_5000_messages_speed(dovecot: DovecotServer) -> None:
    user = dovecot.new_user(f"bulk-{os.urandom(3).hex()}", "pw")
    messages = [("INBOX" if n % 5 else "Archive/Bulk", message(n), "\\Seen" if n % 2 else "")
                for n in range(5000)]
    started = time.perf_counter()
    dovecot.load(user.name, messages, resync=False)
    written = time.perf_counter()
    dovecot.force_resync(user.name)
    done = time.perf_counter()
    print(f"\nload 5000 messages: write {written - started:.2f}s + force-resync {done - written:.2f}s "
          f"= {done - started:.2f}s ({5000 / (done - started):.0f} msg/s)")
    client = connect(user)
    assert client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 4000
    assert client.folder_status("Archive/Bulk", ["MESSAGES", "UNSEEN"]) == {b"MESSAGES": 1000, b"UNSEEN": 500}
    client.logout()


# --------------------------------------------------------------------------- plumbing


def test_template_file_is_the_generated_copy() -> None:
    from mailsync.testing.dovecot_conf import CONF_TEMPLATE_24

    assert (REPO / "fixtures" / "dovecot" / "dovecot.conf.in").read_text() == CONF_TEMPLATE, (
        "fixtures/dovecot/dovecot.conf.in is stale: run scripts/dovecot template --write")
    assert (REPO / "fixtures" / "dovecot" / "dovecot24.conf.in").read_text() == CONF_TEMPLATE_24, (
        "fixtures/dovecot/dovecot24.conf.in is stale: run scripts/dovecot template --write")


def test_the_config_syntax_follows_dovecot_version(dovecot: DovecotServer) -> None:
    """2.3 and 2.4 take different configs; the server writes the one its binary reads, and it runs."""
    from mailsync.testing.dovecot import dovecot_version

    conf = dovecot.conf_path.read_text()
    assert dovecot.version == dovecot_version()
    if dovecot.version >= (2, 4):
        assert conf.startswith("dovecot_config_version = ") and "passdb passwd-file {" in conf
        assert "mail_location" not in conf and "%u" not in conf
    else:
        assert "dovecot_config_version" not in conf and "mail_location = maildir:~/Maildir" in conf
    assert dovecot.running and "IMAP4REV1" in {c.upper() for c in dovecot.capabilities}


def test_doveadm(imap_user: ImapUser) -> None:
    imap_user.server.write_message(imap_user.name, "INBOX", message(1))
    imap_user.server.force_resync(imap_user.name)
    out = imap_user.server.doveadm("mailbox", "status", "-u", imap_user.name, "messages", "INBOX")
    assert out.strip() == "INBOX messages=1"


def test_cli_start_status_stop(dovecot: DovecotServer) -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="mailsync-cli-"))
    script = [str(REPO / "scripts" / "dovecot")]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = lambda *args: subprocess.run([*script, *args, "--dir", str(state_dir)],  # noqa: E731
                                       capture_output=True, text=True, env=env, timeout=120)
    started = run("start", "--user", "cli", "--password", "clipw", "--json")
    assert started.returncode == 0, started.stderr
    state = json.loads(started.stdout)
    try:
        assert state["running"] and state["users"] == {"cli": "clipw"}
        with IMAPClient(state["host"], port=state["imaps_port"], ssl=True,
                        ssl_context=ssl.create_default_context(cafile=state["ca_file"]), timeout=30) as c:
            c.login("cli", "clipw")
        status = run("status")
        assert status.returncode == 0 and "running" in status.stdout and str(state["imap_port"]) in status.stdout
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert run("status").returncode == 1
    assert not state_dir.exists()


def test_postgres_create_database(postgres) -> None:
    import sqlalchemy as sa

    url = postgres.create_database(f"harness_{os.urandom(3).hex()}")
    assert url.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("show fsync")).scalar() == "off"
    engine.dispose()


def test_module_runs_under_bare_python() -> None:
    # scripts/dovecot falls back to python3 without the venv: the module must need only the stdlib.
    code = ("import sys; import mailsync.testing.dovecot, mailsync.testing.postgres; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('imapclient', 'psycopg', 'sqlalchemy')]; "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
