"""Shared test helpers: writing configs, reading a server's state as a second client, running the CLI.

Not fixtures (those are in conftest.py): plain functions the tests call.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

from imapclient import IMAPClient

from mailsync.imap import utf7

REPO = Path(__file__).resolve().parent.parent


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def write_config(path: Path, store_url: str, accounts: list[dict], *, mode: int = 0o600) -> Path:
    """accounts: dicts of account keys (values: str, int, bool, list of str)."""
    lines = ["[store]", f"url = {toml_str(store_url)}", ""]
    for acc in accounts:
        lines.append("[[account]]")
        for key, value in acc.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, int):
                lines.append(f"{key} = {value}")
            elif isinstance(value, (list, tuple)):
                lines.append(f"{key} = [{', '.join(toml_str(v) for v in value)}]")
            else:
                lines.append(f"{key} = {toml_str(str(value))}")
        lines.append("")
    path.write_text("\n".join(lines))
    path.chmod(mode)
    return path


def account_entry(user, name: str | None = None, *, tls: str = "implicit", **extra) -> dict:
    """A config [[account]] for a harness user; the password comes from env var MS_PW_<NAME>."""
    name = name or user.name
    port = user.imaps_port if tls == "implicit" else user.imap_port
    entry = {"name": name, "host": user.host, "port": port, "tls": tls, "username": user.name,
             "password": f"env:{password_var(name)}"}
    if tls != "none":
        entry["ca_file"] = str(user.ca_file)
    entry.update(extra)
    return entry


def password_var(name: str) -> str:
    return "MS_PW_" + "".join(c if c.isalnum() else "_" for c in name).upper()


def client_for(user) -> IMAPClient:
    ctx = ssl.create_default_context(cafile=str(user.ca_file))
    c = IMAPClient(user.host, port=user.imaps_port, ssl=True, ssl_context=ctx, timeout=30)
    c.login(user.name, user.password)
    return c


def mailbox(user, name: str) -> str:
    """The server's name for a folder the tests write with "/" between levels: the same on Dovecot and
    Cyrus, "INBOX.Archive.2024" for "Archive/2024" on Courier."""
    convert = getattr(user.server, "mailbox_name", None)
    return convert(name) if convert is not None else name


def server_kind(user) -> str:
    """"dovecot", "cyrus" or "courier": the server a harness user lives on."""
    return getattr(user.server, "kind", "dovecot")


def server_snapshot(user) -> dict:
    """What a second IMAP client sees: {folder: {"uidvalidity": n, "messages": {uid: (flags, size, sha256)}}}."""
    c = client_for(user)
    c.folder_encode = False
    out = {}
    try:
        for flags, _delim, raw in c.list_folders():
            if any(f.lower() in (b"\\noselect", b"\\nonexistent") for f in flags):
                continue
            raw_s = raw.decode() if isinstance(raw, bytes) else raw
            try:
                info = c.select_folder(raw_s, readonly=True)
            except c.Error as exc:  # listed, yet not there: Dovecot lists a deleted parent of folders so
                if "exist" not in str(exc):
                    raise
                continue
            msgs = {}
            if info[b"EXISTS"]:
                uids = c.search("ALL")
                for uid, data in c.fetch(uids, ["FLAGS", "RFC822.SIZE", "BODY.PEEK[]"]).items():
                    fl = sorted(f.decode() for f in data[b"FLAGS"] if f.lower() != b"\\recent")
                    body = data[b"BODY[]"]
                    msgs[uid] = (fl, data[b"RFC822.SIZE"], hashlib.sha256(body).hexdigest())
            out[utf7.decode(raw_s)] = {"uidvalidity": info[b"UIDVALIDITY"], "messages": msgs}
    finally:
        c.logout()
    return out


def nonempty(snapshot: dict) -> dict:
    """The folders of a server snapshot that hold messages (an export has rows only for those)."""
    return {name: f for name, f in snapshot.items() if f["messages"]}


def export_snapshot(rows: list[dict], account: str) -> dict:
    out: dict = {}
    for r in rows:
        if r["account"] != account:
            continue
        f = out.setdefault(r["folder"], {"uidvalidity": r["uidvalidity"], "messages": {}})
        assert r["uid"] not in f["messages"], f"duplicate placement {r['folder']}/{r['uid']}"
        f["messages"][r["uid"]] = (r["flags"], r["size"], r["sha256"])
    return out


def run_cli(*args: str, config: Path | None = None, env: dict | None = None, timeout: float = 300,
            check: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mailsync"]
    if config is not None:
        cmd += ["--config", str(config)]
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"mailsync {' '.join(args)} exited {proc.returncode}\nstdout:{proc.stdout}\n"
                             f"stderr:{proc.stderr}")
    return proc


def export_via_cli(config: Path, env: dict | None = None, *extra: str) -> list[dict]:
    proc = run_cli("export", "messages", "--format", "jsonl", *extra, config=config, env=env, check=True)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def damage_stored_body(store_url: str, message_id: str) -> None:
    """Change one byte of a stored message, where the store keeps it (pack file or database row)."""
    from sqlalchemy import select, update

    from mailsync.store.db import open_store
    from mailsync.store.models import Body

    store = open_store(store_url)
    try:
        with store.engine.begin() as conn:
            sha, pack, offset, data = conn.execute(select(Body.sha256, Body.pack, Body.pack_offset, Body.data)
                                                   .where(Body.message_id == message_id)).one()
            if pack is not None:
                with open(store.packs.path(pack), "r+b") as f:
                    f.seek(offset + 40)
                    byte = f.read(1)
                    f.seek(offset + 40)
                    f.write(bytes([byte[0] ^ 0x20]))
            else:
                damaged = bytearray(data)
                damaged[40] ^= 0x20
                conn.execute(update(Body).where(Body.sha256 == sha).values(data=bytes(damaged)))
    finally:
        store.dispose()
