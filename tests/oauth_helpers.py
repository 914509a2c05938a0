"""Helpers for the OAuth2 tests: config entries for OAuth2 accounts, driving a sign-in the way a
person's browser would (fetch the printed URL; the local authorization server approves and
redirects to the client's loopback listener), and looking for leaked secrets.

Plain functions; the fixtures (oauth_server, dovecot_oauth2, oauth_user, token_env) are in conftest.py.
"""

from __future__ import annotations

import base64
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import requests

from helpers import REPO
from mailsync.config.loader import config_from_mapping

URL_RE = re.compile(r"^(https://\S+)$", re.M)


def oauth_entry(user, server, client, *, name: str = "acc", provider: str = "generic", **extra) -> dict:
    """A config [[account]] for ``user`` (on the OAuth2 Dovecot) signing in at ``server`` as ``client``.
    The client secret comes from env var ``MS_CS_<NAME>`` (see ``secret_env``)."""
    entry = {"name": name, "host": user.host, "port": user.imaps_port, "tls": "implicit", "ca_file": str(user.ca_file),
             "username": user.name, "auth": "oauth2", "provider": provider, "client_id": client.client_id}
    if client.client_secret:
        entry["client_secret"] = f"env:{secret_var(name)}"
    if provider in ("generic", "google"):
        entry["authorization_endpoint"] = server.authorization_endpoint
        entry["token_endpoint"] = server.token_endpoint
    if provider == "microsoft":
        entry["tenant"] = server.authority("contoso")
    entry.update(extra)
    return entry


def secret_var(name: str) -> str:
    return "MS_CS_" + "".join(c if c.isalnum() else "_" for c in name).upper()


def secret_env(entries: Iterable[tuple[dict, object]]) -> dict[str, str]:
    """{env var: client secret} for (entry, client) pairs."""
    return {secret_var(e["name"]): c.client_secret for e, c in entries if getattr(c, "client_secret", None)}


def account_config(tmp_path: Path, entry: dict):
    """The AccountConfig the loader makes of ``entry`` (as if read from a 0600 file)."""
    return config_from_mapping({"account": [entry]}, path=tmp_path / "config.toml").accounts[0]


def browse(url: str, ca_file: Path) -> requests.Response:
    """What the person's browser does: open the URL, follow the redirect to the loopback listener."""
    return requests.get(url, verify=str(ca_file), timeout=30)


def drive_in_process(run: Callable, server, *, approve: Callable[[str], None] | None = None):
    """Run ``run(ui)`` (a sign-in that blocks until the redirect arrives) in a thread; when it shows
    its URL, "browse" to it (or, with ``approve``, hand the shown text to it, e.g. for a device
    code). Returns run's result, or raises its exception."""
    from mailsync.auth.oauth2 import LoginUI

    said: queue.Queue[str] = queue.Queue()
    box: dict = {}
    ui = LoginUI(open_browser=False, timeout=60, say=said.put)

    def target():
        try:
            box["value"] = run(ui)
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    text = ""
    while not box and thread.is_alive():
        try:
            text = said.get(timeout=0.2)
            break
        except queue.Empty:
            continue
    if text:
        if approve is not None:
            approve(text)
        else:
            match = URL_RE.search(text)
            assert match, f"no URL in {text!r}"
            browse(match.group(1), server.ca_file)
    thread.join(60)
    assert not thread.is_alive(), "the sign-in did not finish"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def cli_login(config: Path, env: dict, account: str, ca_file: Path, *extra: str,
              browse_url: bool = True) -> tuple[subprocess.CompletedProcess, str]:
    """``mailsync auth login ACCOUNT --no-browser``: read the URL it prints, "browse" to it, wait.
    Returns the finished process (stdout/stderr complete) and the URL."""
    full_env = dict(os.environ)
    full_env.update(env)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "mailsync", "--config", str(config), "auth", "login", account, "--no-browser",
           "--timeout", "60", *extra]
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    url = ""
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("https://"):
            url = line.strip()
            break
    if url and browse_url:
        browse(url, ca_file)
    out, err = proc.communicate(timeout=90)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "".join(seen) + err), url


def sasl_forms(user: str, token: str) -> set[str]:
    """The base64 forms a token would take on the wire (XOAUTH2 and OAUTHBEARER initial responses)."""
    from mailsync.imap import sasl

    forms = set()
    for raw in (sasl.xoauth2_initial_response(user, token), sasl.oauthbearer_initial_response(user, token)):
        forms.add(base64.b64encode(raw).decode())
    return forms


def leaks(texts: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """Which ``secrets`` occur in any of ``texts`` (the secrets are shortened in the answer)."""
    found = []
    blobs = [t for t in texts if t]
    for secret in set(secrets):
        if len(secret) < 6:
            continue
        if any(secret in blob for blob in blobs):
            found.append(secret[:8] + "...")
    return found
