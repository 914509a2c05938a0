"""OAuth2 through the CLI, against the OAuth2 Dovecot and the local authorization server:
`mailsync auth login` driven as a browser would, sync, expiry and rotation, revocation (the account
needs login while another account in the same run still syncs), status in text and JSON, keyring
storage, logout; and, last, a grep of every output and log of this module for tokens and passwords.
"""

from __future__ import annotations

import json
import secrets
import stat
import time
from pathlib import Path

import pytest

from helpers import (account_entry, export_snapshot, export_via_cli, nonempty, password_var, run_cli,
                     server_snapshot, write_config)
from oauth_helpers import cli_login, leaks, oauth_entry, sasl_forms, secret_var

pytestmark = pytest.mark.dovecot

# Everything this module's commands printed, and where their stores and logs are, for the final grep.
OUTPUTS: list[str] = []
FILES: list[Path] = []
PASSWORDS: set[str] = set()
USERS: list = []


def run(*args: str, config: Path, env: dict, check: bool = False):
    proc = run_cli(*args, config=config, env=env, check=check)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    return proc


def login(config: Path, env: dict, account: str, ca_file: Path, *extra: str):
    proc, url = cli_login(config, env, account, ca_file, *extra)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    return proc, url


def _msg(i: int) -> bytes:
    return f"From: a@example.org\r\nMessage-ID: <cli{i}@example.org>\r\nSubject: {i}\r\n\r\nbody {i}\r\n".encode()


def _status(config: Path, env: dict) -> dict:
    report = json.loads(run("status", "--json", config=config, env=env, check=True).stdout)
    return {a["name"]: a for a in report["accounts"]}


def _token_file(env: dict, account: str) -> Path:
    return Path(env["XDG_DATA_HOME"]) / "mailsync" / "tokens" / f"{account}.json"


def _stored(env: dict, account: str) -> dict:
    return json.loads(_token_file(env, account).read_text())


def test_generic_provider_full_flow(tmp_path, oauth_server, oauth_user, dovecot, token_env):
    client = oauth_server.register_client(scope="mail offline_access", access_token_lifetime=4)
    other = dovecot.new_user(f"pw-{secrets.token_hex(4)}", secrets.token_hex(8))
    USERS.append(oauth_user)
    PASSWORDS.update({oauth_user.password, other.password, client.client_secret})
    oauth_user.server.load(oauth_user.name, [("INBOX", _msg(i)) for i in range(20)]
                           + [("Archive", _msg(100 + i)) for i in range(5)])
    dovecot.load(other.name, [("INBOX", _msg(200 + i)) for i in range(3)])
    FILES.extend([oauth_user.server.log_path, dovecot.log_path, tmp_path / "store.db"])
    cfg = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path}/store.db", [
        oauth_entry(oauth_user, oauth_server, client, name="acc", scopes=["mail", "offline_access"]),
        account_entry(other, "other"),
    ])
    env = {**token_env, secret_var("acc"): client.client_secret, password_var("other"): other.password}

    # Never logged in: the account says so, the other one syncs.
    proc = run("sync", config=cfg, env=env)
    assert proc.returncode == 1
    assert "account 'acc': needs login (not logged in yet)" in proc.stderr
    assert "run mailsync auth login acc" in proc.stderr and "1 of 2 account(s) failed: acc" in proc.stderr
    text = run("status", config=cfg, env=env, check=True).stdout
    assert "needs login: run mailsync auth login acc (not logged in yet)" in text

    # Log in: the URL goes to stderr, the tokens to a private file under the XDG data path.
    proc, url = login(cfg, env, "acc", oauth_server.ca_file)
    assert proc.returncode == 0, proc.stderr
    assert url.startswith(oauth_server.authorization_endpoint) and "code_challenge_method=S256" in url
    assert proc.stdout == "" and "account 'acc': signed in (generic)" in proc.stderr
    path = _token_file(env, "acc")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    first = _stored(env, "acc")

    # Sync (with debug logging, which must not leak either).
    proc = run("-vv", "sync", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = export_via_cli(cfg, env)
    assert export_snapshot(rows, "acc") == nonempty(server_snapshot(oauth_user))
    assert export_snapshot(rows, "other") == nonempty(server_snapshot(other))
    report = _status(cfg, env)
    assert report["acc"]["needs_login"] is False and report["acc"]["auth"]["logged_in"] is True
    assert report["other"]["needs_login"] is False and report["other"]["auth"] == {"method": "password"}
    assert "signed in as " + oauth_user.name in run("auth", "status", config=cfg, env=env, check=True).stdout

    # The access token expires; the next run refreshes it, and the rotated refresh token is stored.
    time.sleep(max(0.0, first["expires_at"] - time.time()) + 0.2)
    oauth_user.server.load(oauth_user.name, [("INBOX", _msg(30))])
    proc = run("-vv", "sync", config=cfg, env=env)  # the refresh, with debug logging on
    assert proc.returncode == 0, proc.stderr
    second = _stored(env, "acc")
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert oauth_server.refresh(client, first["refresh_token"]) == (400, {"error": "invalid_grant"})
    assert export_snapshot(export_via_cli(cfg, env), "acc") == nonempty(server_snapshot(oauth_user))

    # The provider revokes the grant (the user removed mailsync's access): needs login, the other
    # account in the same run still syncs.
    assert oauth_server.revoke(client, second["refresh_token"]) == 200
    oauth_user.server.load(oauth_user.name, [("INBOX", _msg(31))])
    dovecot.load(other.name, [("INBOX", _msg(210))])
    proc = run("sync", config=cfg, env=env)
    assert proc.returncode == 1
    assert "account 'acc': needs login" in proc.stderr and "invalid_grant" in proc.stderr
    assert "1 of 2 account(s) failed: acc" in proc.stderr
    rows = export_via_cli(cfg, env)
    assert export_snapshot(rows, "other") == nonempty(server_snapshot(other))
    assert len(export_snapshot(rows, "acc")["INBOX"]["messages"]) == 21  # nothing new for acc
    text = run("status", config=cfg, env=env, check=True).stdout
    assert "needs login: run mailsync auth login acc" in text and "invalid_grant" in text
    report = _status(cfg, env)
    assert report["acc"]["needs_login"] is True and report["acc"]["auth"]["action"] == "mailsync auth login acc"
    assert report["other"]["needs_login"] is False
    auth_text = run("auth", "status", config=cfg, env=env, check=True).stdout
    assert "acc: needs login: run mailsync auth login acc" in auth_text
    auth_json = json.loads(run("auth", "status", "--json", config=cfg, env=env, check=True).stdout)
    assert auth_json["accounts"][0]["needs_login"] is True

    # Logging in again fixes it.
    proc, _ = login(cfg, env, "acc", oauth_server.ca_file)
    assert proc.returncode == 0, proc.stderr
    proc = run("sync", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    assert export_snapshot(export_via_cli(cfg, env), "acc") == nonempty(server_snapshot(oauth_user))
    assert _status(cfg, env)["acc"]["needs_login"] is False

    # Logout forgets the tokens.
    proc = run("auth", "logout", "acc", config=cfg, env=env)
    assert proc.returncode == 0 and "tokens removed" in proc.stderr
    assert not path.exists()
    assert "not logged in yet" in run("auth", "status", config=cfg, env=env, check=True).stdout


def test_tokens_go_to_the_keyring_when_one_is_usable(tmp_path, oauth_server, oauth_user, token_env):
    client = oauth_server.register_client(scope="mail offline_access")
    USERS.append(oauth_user)
    PASSWORDS.update({oauth_user.password, client.client_secret})
    oauth_user.server.load(oauth_user.name, [("INBOX", _msg(300 + i)) for i in range(4)])
    keyring_file = tmp_path / "keyring.json"
    FILES.append(tmp_path / "store.db")  # (the keyring file is where the tokens belong)
    cfg = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path}/store.db", [
        oauth_entry(oauth_user, oauth_server, client, name="kr", scopes=["mail", "offline_access"])])
    env = {**token_env, "MAILSYNC_TOKEN_STORE": "auto", secret_var("kr"): client.client_secret,
           "PYTHON_KEYRING_BACKEND": "mailsync.testing.keyring_backend.JsonFileKeyring",
           "MAILSYNC_TEST_KEYRING_FILE": str(keyring_file)}
    proc, _ = login(cfg, env, "kr", oauth_server.ca_file)
    assert proc.returncode == 0, proc.stderr
    assert "keyring mailsync.testing.keyring_backend.JsonFileKeyring" in proc.stderr
    assert not _token_file(env, "kr").exists()
    item = json.loads(keyring_file.read_text())["mailsync-oauth2"]["kr"]
    assert json.loads(item)["refresh_token"]
    proc = run("sync", config=cfg, env=env)
    assert proc.returncode == 0, proc.stderr
    assert export_snapshot(export_via_cli(cfg, env), "kr") == nonempty(server_snapshot(oauth_user))
    assert "keyring" in run("auth", "status", config=cfg, env=env, check=True).stdout
    proc = run("auth", "logout", "kr", config=cfg, env=env)
    assert proc.returncode == 0
    assert "kr" not in json.loads(keyring_file.read_text())["mailsync-oauth2"]


def test_auth_command_errors(tmp_path, oauth_server, oauth_user, imap_user, token_env):
    client = oauth_server.register_client(scope="mail")
    entry = oauth_entry(oauth_user, oauth_server, client, name="acc", scopes=["mail"])
    bare = dict(entry, name="bare")
    del bare["authorization_endpoint"]
    cfg = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path}/store.db",
                       [entry, bare, account_entry(imap_user, "pw")])
    env = {**token_env, secret_var("acc"): client.client_secret, secret_var("bare"): client.client_secret}
    proc = run("auth", "login", "pw", config=cfg, env=env)
    assert proc.returncode == 2 and "not OAuth2" in proc.stderr and "acc, bare" in proc.stderr
    proc = run("auth", "login", "nope", config=cfg, env=env)
    assert proc.returncode == 2 and "no account named 'nope'" in proc.stderr
    proc = run("auth", "login", "acc", "--device-code", config=cfg, env=env)
    assert proc.returncode == 2 and "--device-code is only available for provider \"microsoft\"" in proc.stderr
    proc = run("auth", "login", "bare", config=cfg, env=env)
    assert proc.returncode == 2 and "needs authorization_endpoint" in proc.stderr
    proc = run("auth", "login", "acc", config=cfg, env={**token_env})  # the client secret's env var is unset
    assert proc.returncode == 1 and secret_var("acc") in proc.stderr
    proc = run("auth", "logout", "acc", config=cfg, env=env)
    assert proc.returncode == 0 and "no tokens were stored" in proc.stderr


def test_no_token_or_password_in_any_output_or_log(oauth_server):
    """The grep: every token, authorization code and client secret the server ever issued, their
    SASL (base64) forms, and the users' passwords, against every output of this module's commands,
    Dovecot's logs and the stores."""
    assert OUTPUTS, "run the whole module: the other tests collect the outputs"
    secrets_ = set(oauth_server.secrets()) | PASSWORDS
    for user in USERS:
        for token in oauth_server.tokens_of(user.name):
            secrets_ |= sasl_forms(user.name, token.access_token)
    texts = list(OUTPUTS)
    for path in FILES:
        if path.exists():
            texts.append(path.read_bytes().decode("latin-1"))
    found = leaks(texts, secrets_)
    assert found == [], f"secrets found in outputs or logs: {found}"
    assert len(secrets_) > 20  # the check had something to look for
