"""Unit tests for mailsync.config (loader and sample): one case per validation rule.

Every error case checks that the message names the file, the key and the bad value, and that the
hint carries the fix. Files are real files in tmp_path with real modes.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsync.config.loader import (
    ACCOUNT_KEYS,
    config_from_mapping,
    default_config_path,
    default_store_url,
    load_config,
    parse_secret_ref,
)
from mailsync.config.model import Config, SecretRef
from mailsync.config.sample import SAMPLE_CONFIG, sample_config, write_sample
from mailsync.errors import ConfigError

ACCOUNT = """
[[account]]
name = "work"
host = "imap.example.com"
username = "me@example.com"
password = "env:WORK_PW"
"""


def account(**overrides: str | None) -> str:
    """The ACCOUNT table with keys replaced (value None: key removed); values are raw TOML."""
    keys = {"name": '"work"', "host": '"imap.example.com"', "username": '"me@example.com"',
            "password": '"env:WORK_PW"'}
    keys.update(overrides)
    body = "\n".join(f"{k} = {v}" for k, v in keys.items() if v is not None)
    return f"\n[[account]]\n{body}\n"


def write(tmp_path: Path, text: str, mode: int = 0o600, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


def load_text(tmp_path: Path, text: str, mode: int = 0o600) -> Config:
    return load_config(write(tmp_path, text, mode))


# --------------------------------------------------------------------------- error table

# (id, file text, mode, fragments the message must contain, fragment the hint must contain)
ERROR_CASES = [
    # --- TOML and top level
    ("invalid-toml", '[[account]]\nname = "work"\nhost = imap.example.com\n', 0o600,
     [":3:8:", "invalid TOML", "Invalid value"], "double quotes"),
    ("duplicate-key-toml", '[store]\nurl = "sqlite://"\nurl = "sqlite://"\n', 0o600,
     ["invalid TOML", "line 3"], "TOML syntax"),
    ("unknown-top-level", 'stroe = 1\n', 0o600, ["top level", "unknown key 'stroe'"], 'did you mean "store"'),
    ("account-single-table", '[account]\nname = "work"\n', 0o600,
     ["key 'account'", "single table"], "[[account]]"),
    ("account-not-table", 'account = ["work"]\n', 0o600, ["account #1", 'the string "work"'], "[[account]]"),
    ("account-not-array", 'account = "work"\n', 0o600, ["key 'account'", 'the string "work"'], "[[account]]"),
    ("crm-not-table", 'crm = 5\n', 0o600, ["key 'crm'", "5"], "[crm]"),
    # --- [store]
    ("store-not-table", 'store = "sqlite:///x.db"\n', 0o600, ["key 'store'", '"sqlite:///x.db"'], "[store]"),
    ("store-unknown-key", '[store]\nulr = "sqlite://"\n', 0o600, ["[store]", "unknown key 'ulr'"],
     'did you mean "url"'),
    ("store-url-type", '[store]\nurl = 5\n', 0o600, ["[store] key 'url'", "the integer 5"], "url ="),
    ("store-url-bad", '[store]\nurl = "not a url"\n', 0o600, ["[store] key 'url'", '"not a url"'],
     "SQLAlchemy URL"),
    ("store-url-backend", '[store]\nurl = "sqlit:///x.db"\n', 0o600, ["[store] key 'url'", '"sqlit"'],
     'did you mean "sqlite"'),
    ("store-url-bad-port", '[store]\nurl = "postgresql://u@h:abc/db"\n', 0o600,
     ["[store] key 'url'", "h:abc"], "SQLAlchemy URL"),
    ("store-url-password-0644", '[store]\nurl = "postgresql://u:s3cr3tpw@h/db"\n', 0o644,
     ["[store] key 'url'", "password (not shown)", "0644"], "chmod 600"),
    # --- account: keys and names
    ("account-unknown-key", account(prot="993"), 0o600, ["account 'work'", "unknown key 'prot'"],
     'did you mean "port"'),
    ("account-unknown-key-no-name", account(name=None, nmae='"work"'), 0o600,
     ["account #1", "unknown key 'nmae'"], 'did you mean "name"'),
    ("name-missing", account(name=None), 0o600, ["account #1", "missing required key 'name'"], 'name = "work"'),
    ("name-invalid", account(name='"my work"'), 0o600, ["account #1 key 'name'", '"my work"'],
     'name = "my-work"'),
    ("name-not-string", account(name="1"), 0o600, ["account #1 key 'name'", "the integer 1"], "name ="),
    ("name-duplicate", ACCOUNT + ACCOUNT, 0o600, ["account 'work' key 'name'", '"work"', "account #1"],
     "different name"),
    # --- host, port, tls
    ("host-missing", account(host=None), 0o600, ["account 'work'", "missing required key 'host'"], "host ="),
    ("host-empty", account(host='""'), 0o600, ["account 'work' key 'host'", '""'], "host ="),
    ("host-url", account(host='"imaps://imap.example.com"'), 0o600,
     ["account 'work' key 'host'", '"imaps://imap.example.com"'], 'host = "imap.example.com"'),
    ("host-with-port", account(host='"imap.example.com:993"'), 0o600,
     ["account 'work' key 'host'", '"imap.example.com:993"'], "port = 993"),
    ("port-quoted", account(port='"993"'), 0o600, ["account 'work' key 'port'", 'the string "993"'],
     "drop the quotes: port = 993"),
    ("port-zero", account(port="0"), 0o600, ["account 'work' key 'port'", "got 0"], "1 to 65535"),
    ("port-too-big", account(port="70000"), 0o600, ["account 'work' key 'port'", "70000"], "1 to 65535"),
    ("port-bool", account(port="true"), 0o600, ["account 'work' key 'port'", "true (a boolean)"],
     "not true/false"),
    ("port-float", account(port="993.0"), 0o600, ["account 'work' key 'port'", "993.0"], "port = 993"),
    ("tls-unknown", account(tls='"ssl"'), 0o600, ["account 'work' key 'tls'", '"ssl"'],
     'did you mean tls = "implicit"'),
    ("tls-typo", account(tls='"startls"'), 0o600, ["account 'work' key 'tls'", '"startls"'],
     'did you mean tls = "starttls"'),
    ("tls-none-remote", account(tls='"none"'), 0o600,
     ["account 'work' key 'tls'", '"none"', '"imap.example.com"', "unencrypted"], "allow_plaintext = true"),
    ("tls-none-private-ip", account(tls='"none"', host='"10.0.0.1"'), 0o600,
     ["account 'work' key 'tls'", '"10.0.0.1"'], 'tls = "starttls"'),
    ("allow-plaintext-quoted", account(allow_plaintext='"true"'), 0o600,
     ["account 'work' key 'allow_plaintext'", 'the string "true"'], "drop the quotes: allow_plaintext = true"),
    # --- username, auth, password
    ("username-missing", account(username=None), 0o600, ["account 'work'", "missing required key 'username'"],
     "username ="),
    ("password-missing", account(password=None), 0o600, ["account 'work'", "missing required key 'password'"],
     'password = "env:WORK_IMAP_PASSWORD"'),
    ("password-env-bad-name", account(password='"env:1WORK"'), 0o600,
     ["account 'work' key 'password'", '"env:1WORK"'], "env:WORK_IMAP_PASSWORD"),
    ("password-env-empty-name", account(password='"env:"'), 0o600,
     ["account 'work' key 'password'", '"env:"'], "variable name"),
    ("password-cmd-empty", account(password='"cmd:  "'), 0o600,
     ["account 'work' key 'password'", '"cmd:  "'], "cmd:pass show"),
    ("password-keyring-no-user", account(password='"keyring:mailsync"'), 0o600,
     ["account 'work' key 'password'", '"keyring:mailsync"'], "keyring set mailsync"),
    ("password-keyring-empty-service", account(password='"keyring:/me"'), 0o600,
     ["account 'work' key 'password'", '"keyring:/me"'], "keyring:mailsync/"),
    ("password-keyring-empty-user", account(password='"keyring:mailsync/"'), 0o600,
     ["account 'work' key 'password'", '"keyring:mailsync/"'], "keyring:mailsync/"),
    ("password-miscased-prefix", account(password='"Env:WORK_PW"'), 0o600,
     ["account 'work' key 'password'", '"Env:"'], "lowercase"),
    ("password-not-string", account(password="123456"), 0o600,
     ["account 'work' key 'password'", "an integer (value not shown)"], "quoted string"),
    ("password-empty", account(password='""'), 0o600, ["account 'work' key 'password'", '""'], "env:NAME"),
    ("auth-unknown", account(auth='"oauth"'), 0o600, ["account 'work' key 'auth'", '"oauth"'],
     'did you mean auth = "oauth2"'),
    ("oauth2-no-provider", account(auth='"oauth2"', password=None), 0o600,
     ["account 'work'", "missing required key 'provider'", 'auth = "oauth2"'], "provider ="),
    ("provider-typo", account(auth='"oauth2"', password=None, provider='"gogle"'), 0o600,
     ["account 'work' key 'provider'", '"gogle"'], 'did you mean provider = "google"'),
    ("oauth2-with-password", account(auth='"oauth2"', provider='"google"'), 0o600,
     ["account 'work' key 'password'", 'auth = "oauth2"'], "remove password"),
    ("provider-without-oauth2", account(provider='"google"'), 0o600,
     ["account 'work' key 'provider'", 'auth = "password"'], 'auth = "oauth2"'),
    ("client-id-bad-env", account(auth='"oauth2"', password=None, provider='"google"', client_id='"env:A-B"'),
     0o600, ["account 'work' key 'client_id'", '"env:A-B"'], "env:"),
    ("endpoint-not-https", account(auth='"oauth2"', password=None, provider='"generic"',
                                   token_endpoint='"http://login.example.com/token"'), 0o600,
     ["account 'work' key 'token_endpoint'", '"http://login.example.com/token"'], "https://"),
    # --- folders, ca_file, policy and limits
    ("folders-string", account(folders='"INBOX"'), 0o600,
     ["account 'work' key 'folders'", 'the string "INBOX"'], 'folders = ["INBOX"]'),
    ("folders-non-string-item", account(folders='["INBOX", 5]'), 0o600,
     ["account 'work' key 'folders'", "item 2", "the integer 5"], "quote every item"),
    ("folders-empty", account(folders="[]"), 0o600, ["account 'work' key 'folders'", "[]"], 'folders = ["*"]'),
    ("exclude-not-array", account(exclude="5"), 0o600, ["account 'work' key 'exclude'", "the integer 5"],
     'exclude = ["Junk", "Trash"]'),
    ("ca-file-missing", account(ca_file='"certs/nope.pem"'), 0o600,
     ["account 'work' key 'ca_file'", '"certs/nope.pem"', "{dir}/certs/nope.pem"], "relative to {dir}"),
    ("conflict-unknown", account(conflict='"remote"'), 0o600, ["account 'work' key 'conflict'", '"remote"'],
     '"server", "local", "newest"'),
    ("max-connections-zero", account(max_connections="0"), 0o600,
     ["account 'work' key 'max_connections'", "got 0"], "at least 1"),
    ("batch-size-zero", account(batch_size="0"), 0o600, ["account 'work' key 'batch_size'", "got 0"],
     "from 1 to 10000"),
    ("batch-size-too-big", account(batch_size="10001"), 0o600, ["account 'work' key 'batch_size'", "10001"],
     "from 1 to 10000"),
    ("timeout-zero", account(timeout="0"), 0o600, ["account 'work' key 'timeout'", "got 0"], "timeout = 60"),
    ("timeout-negative", account(timeout="-1.5"), 0o600, ["account 'work' key 'timeout'", "-1.5"],
     "positive number"),
    ("timeout-inf", account(timeout="inf"), 0o600, ["account 'work' key 'timeout'", "inf"], "positive number"),
    ("timeout-quoted", account(timeout='"60"'), 0o600, ["account 'work' key 'timeout'", 'the string "60"'],
     "drop the quotes: timeout = 60"),
    # --- keys kept for later features
    ("identities-not-array", account(identities='"me@example.com"'), 0o600,
     ["account 'work' key 'identities'", '"me@example.com"'], 'identities = ["me@example.com"]'),
    ("create-contacts-unknown", account(create_contacts='"yes"'), 0o600,
     ["account 'work' key 'create_contacts'", '"yes"'], '"sent_and_received"'),
    ("create-contacts-boolean", account(create_contacts='true'), 0o600,
     ["account 'work' key 'create_contacts'", "true"], 'create_contacts = "none"'),
    ("share-unknown", account(share='"all"'), 0o600, ["account 'work' key 'share'", '"all"'], '"everything"'),
    ("watch-number", account(watch="5"), 0o600, ["account 'work' key 'watch'", "the integer 5"], "watch ="),
    ("poll-interval-zero", account(poll_interval="0"), 0o600, ["account 'work' key 'poll_interval'", "0"],
     "positive number"),
    ("idle-refresh-too-long", account(idle_refresh="3600"), 0o600,
     ["account 'work' key 'idle_refresh'", "3600"], "at most 1740"),
    ("scopes-not-array", account(auth='"oauth2"', password=None, provider='"google"', scopes="1"), 0o600,
     ["account 'work' key 'scopes'", "the integer 1"], "scopes ="),
    ("tenant-not-string", account(auth='"oauth2"', password=None, provider='"microsoft"', tenant="1"), 0o600,
     ["account 'work' key 'tenant'", "the integer 1"], "tenant ="),
    ("deadline-zero", account(command_deadline="0"), 0o600,
     ["account 'work' key 'command_deadline'", "greater than 0", "got 0"], "command_deadline = 120"),
    ("deadline-string", account(command_deadline='"2m"'), 0o600,
     ["account 'work' key 'command_deadline'", 'the string "2m"'], "command_deadline = 120"),
    ("deadline-inf", account(command_deadline="inf"), 0o600,
     ["account 'work' key 'command_deadline'", "finite"], "positive number"),
    ("deadline-a-week", account(command_deadline="604800"), 0o600,
     ["account 'work' key 'command_deadline'", "at most 86400"], "use at most 86400"),
    ("deadline-rate-tiny", account(deadline_rate="10"), 0o600,
     ["account 'work' key 'deadline_rate'", "got 10"], "bytes a second"),
    ("deadline-rate-float", account(deadline_rate="1.5e3"), 0o600,
     ["account 'work' key 'deadline_rate'", "1500.0"], "deadline_rate = 1500"),
    ("defaults-deadline-bad", "[defaults]\ncommand_deadline = -5\n" + ACCOUNT, 0o600,
     ["[defaults] key 'command_deadline'", "got -5"], "command_deadline = 120"),
    ("defaults-unknown-key", "[defaults]\ncommand_deadlin = 5\n" + ACCOUNT, 0o600,
     ["[defaults]", "unknown key 'command_deadlin'"], 'did you mean "command_deadline"'),
    ("defaults-not-table", "defaults = 5\n" + ACCOUNT, 0o600,
     ["key 'defaults'", "must be a table"], "[defaults]"),
]


@pytest.mark.parametrize(("text", "mode", "in_message", "in_hint"),
                         [pytest.param(*case[1:], id=case[0]) for case in ERROR_CASES])
def test_config_error_names_file_key_value_and_fix(tmp_path, text, mode, in_message, in_hint):
    path = write(tmp_path, text, mode)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.message.startswith(str(path)), err.message
    for fragment in in_message:
        assert fragment.format(dir=tmp_path) in err.message, (fragment, err.message)
    assert err.hint, err.message
    assert in_hint.format(dir=tmp_path) in err.hint, (in_hint, err.hint)
    assert err.exit_code == 2
    assert "s3cr3tpw" not in str(err)


# ------------------------------------------------------------------------------ file errors


def test_missing_file_says_run_init(tmp_path):
    path = tmp_path / "nowhere" / "config.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in info.value.message
    assert "not found" in info.value.message
    assert "mailsync init" in info.value.hint


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(tmp_path) in info.value.message
    assert "directory" in info.value.message
    assert info.value.hint


def test_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "config.toml"
    os.mkfifo(path)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in info.value.message and "not a regular file" in info.value.message
    assert info.value.hint


def test_unreadable_file(tmp_path):
    path = tmp_path / "config.toml"
    if os.geteuid() != 0:
        write(tmp_path, ACCOUNT, 0o000)
    else:
        # root reads any file whatever its mode; sysctl files enforce their mode even for root.
        target = Path("/proc/sys/vm/drop_caches")
        try:
            target.open("rb").close()
        except PermissionError:
            path.symlink_to(target)
        except OSError:
            pytest.skip("running as root and no write-only file to stand in for an unreadable one")
        else:
            pytest.skip("running as root and no write-only file to stand in for an unreadable one")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in info.value.message
    assert "cannot read" in info.value.message
    assert "chmod 600" in info.value.hint


def test_not_utf8(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b'[store]\n# caf\xe9\n')
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:2:" in info.value.message
    assert "UTF-8" in info.value.hint


def test_invalid_toml_does_not_quote_the_line(tmp_path):
    # The broken line holds a password; the message points at it without repeating it.
    path = write(tmp_path, '[[account]]\npassword = "hunter2secret\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert ":2:" in info.value.message
    assert "hunter2secret" not in str(info.value)


def test_relative_path_is_made_absolute(tmp_path, monkeypatch):
    write(tmp_path, ACCOUNT)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(Path("config.toml"))
    assert cfg.path == tmp_path / "config.toml"


# --------------------------------------------------------------------------------- success


def test_minimal_account_gets_defaults(tmp_path):
    cfg = load_text(tmp_path, ACCOUNT)
    (acc,) = cfg.accounts
    assert cfg.account("work") is acc
    assert (acc.name, acc.host, acc.username) == ("work", "imap.example.com", "me@example.com")
    assert (acc.port, acc.tls, acc.auth, acc.conflict) == (993, "implicit", "password", "server")
    assert acc.folders == ("*",) and acc.exclude == ()
    assert (acc.max_connections, acc.batch_size, acc.timeout) == (4, 5000, 60.0)
    assert acc.ca_file is None and acc.allow_plaintext is False and acc.extra == {}
    assert acc.password == SecretRef("env", "WORK_PW", f"{tmp_path / 'config.toml'}: account 'work' key 'password'")


def test_command_deadline_defaults_and_overrides(tmp_path):
    """Unset: None (twice timeout) and 32 KiB/s; [defaults] sets them for every account; an
    account's own value wins over [defaults]."""
    (acc,) = load_text(tmp_path, ACCOUNT).accounts
    assert (acc.command_deadline, acc.deadline_rate) == (None, 32768)
    text = ("[defaults]\ncommand_deadline = 300\ndeadline_rate = 4096\n"
            + account() + account(name='"home"', command_deadline="7.5"))
    work, home = load_text(tmp_path, text).accounts
    assert (work.command_deadline, work.deadline_rate) == (300.0, 4096)
    assert (home.command_deadline, home.deadline_rate) == (7.5, 4096)


def test_full_account(tmp_path):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    text = account(port="1143", tls='"starttls"', folders='["INBOX", "Archive/*"]', exclude='["Junk"]',
                   ca_file='"certs/ca.pem"', conflict='"newest"', max_connections="15", batch_size="10000",
                   timeout="2.5", identities='["me@example.com", "boss@example.com"]', share='"subject"',
                   create_contacts='"sent_and_received"', watch='["INBOX"]', poll_interval="300", idle_refresh="1500")
    acc = load_text(tmp_path, text).accounts[0]
    assert (acc.port, acc.tls, acc.conflict, acc.max_connections, acc.batch_size) == (
        1143, "starttls", "newest", 15, 10000)
    assert acc.folders == ("INBOX", "Archive/*") and acc.exclude == ("Junk",)
    assert acc.ca_file == tmp_path / "certs" / "ca.pem"
    assert acc.timeout == 2.5
    assert acc.extra == {"identities": ("me@example.com", "boss@example.com"), "share": "subject",
                         "create_contacts": "sent_and_received", "watch": ("INBOX",), "poll_interval": 300.0,
                         "idle_refresh": 1500.0}


def test_absolute_and_home_ca_file(tmp_path, monkeypatch):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    sub = tmp_path / "conf"
    sub.mkdir()
    assert load_text(sub, account(ca_file=f'"{ca}"')).accounts[0].ca_file == ca
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_text(sub, account(ca_file='"~/ca.pem"')).accounts[0].ca_file == ca


@pytest.mark.parametrize(("tls", "port"), [("implicit", 993), ("starttls", 143)])
def test_default_port_follows_tls(tmp_path, tls, port):
    assert load_text(tmp_path, account(tls=f'"{tls}"')).accounts[0].port == port


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.8.7", "::1", "[::1]", "localhost", "LOCALHOST."])
def test_tls_none_allowed_on_loopback(tmp_path, host):
    acc = load_text(tmp_path, account(tls='"none"', host=f'"{host}"')).accounts[0]
    assert acc.tls == "none" and acc.port == 143


def test_tls_none_allowed_with_allow_plaintext(tmp_path):
    acc = load_text(tmp_path, account(tls='"none"', allow_plaintext="true")).accounts[0]
    assert acc.tls == "none" and acc.allow_plaintext is True


@pytest.mark.parametrize(("source", "kind", "value"), [
    ("env:WORK_PW", "env", "WORK_PW"),
    ("env:_x9", "env", "_x9"),
    ("cmd:pass show mail/work", "cmd", "pass show mail/work"),
    ("cmd:  printf 'pw\\n'", "cmd", "printf 'pw\\n'"),
    ("keyring:mailsync/me@example.com", "keyring", "mailsync/me@example.com"),
    ("keyring:svc/dom/user", "keyring", "svc/dom/user"),
])
def test_secret_sources(tmp_path, source, kind, value):
    ref = load_text(tmp_path, account(password=json.dumps(source)), mode=0o644).accounts[0].password
    assert (ref.kind, ref.value) == (kind, value)
    assert ref.origin == f"{tmp_path / 'config.toml'}: account 'work' key 'password'"


@pytest.mark.parametrize(("mode", "ok"), [(0o600, True), (0o400, True), (0o640, False), (0o644, False),
                                          (0o604, False)])
def test_literal_password_needs_private_file(tmp_path, mode, ok):
    secret = "correct-horse-battery-staple"
    path = write(tmp_path, account(password=f'"{secret}"'), mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    if ok:
        ref = load_config(path).accounts[0].password
        assert ref.kind == "literal" and ref.value == secret
        assert secret not in repr(ref) and secret not in str(ref)
        return
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert str(path) in err.message and "account 'work' key 'password'" in err.message
    assert f"{mode:04o}" in err.message
    assert f"chmod 600 {path}" in err.hint
    assert "env:" in err.hint and "cmd:" in err.hint and "keyring:" in err.hint
    assert secret not in str(err)


def test_literal_client_secret_needs_private_file(tmp_path):
    text = account(auth='"oauth2"', password=None, provider='"google"', client_id='"123.apps"',
                   client_secret='"GOCSPX-topsecret"')
    acc = load_text(tmp_path, text, 0o600).accounts[0]
    assert acc.client_id == SecretRef("literal", "123.apps", acc.client_id.origin)
    assert acc.client_secret.value == "GOCSPX-topsecret"
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text, 0o644)
    assert "key 'client_secret'" in info.value.message and "chmod 600" in info.value.hint
    assert "topsecret" not in str(info.value)


def test_oauth2_account(tmp_path):
    text = account(auth='"oauth2"', password=None, provider='"microsoft"', client_id='"env:MS_ID"',
                   tenant='"common"', scopes='["https://outlook.office.com/IMAP.AccessAsUser.All"]',
                   authorization_endpoint='"https://login.example.com/auth"',
                   token_endpoint='"http://127.0.0.1:8080/token"')
    acc = load_text(tmp_path, text).accounts[0]
    assert (acc.auth, acc.provider, acc.password, acc.client_secret) == ("oauth2", "microsoft", None, None)
    assert acc.client_id.kind == "env" and acc.client_id.value == "MS_ID"
    assert acc.extra["tenant"] == "common"
    assert acc.extra["scopes"] == ("https://outlook.office.com/IMAP.AccessAsUser.All",)
    assert acc.extra["token_endpoint"] == "http://127.0.0.1:8080/token"


def test_no_accounts_is_fine(tmp_path):
    for text in ["", "# nothing yet\n", "[store]\n", "account = []\n"]:
        cfg = load_text(tmp_path, text)
        assert cfg.accounts == ()
        assert cfg.store.url == default_store_url()


def test_several_accounts_keep_order(tmp_path):
    text = ACCOUNT + account(name='"b.2"') + account(name='"c_3-x"')
    assert [a.name for a in load_text(tmp_path, text).accounts] == ["work", "b.2", "c_3-x"]


def test_crm_table_is_kept(tmp_path):
    cfg = load_text(tmp_path, '[crm]\nmax_recipients = 10\n[[crm.sink]]\nname = "f"\ntype = "jsonl"\npath = "x.jsonl"\n')
    assert cfg.crm == {"max_recipients": 10, "sink": [{"name": "f", "type": "jsonl", "path": "x.jsonl"}]}


def test_crm_table_is_checked_at_load(tmp_path):  # the rules themselves: tests/unit/test_crm_settings.py
    with pytest.raises(ConfigError, match="max_recipient"):
        load_text(tmp_path, '[crm]\nmax_recipient = 10\n')


def test_store_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cases = {
        "sqlite:////var/lib/mailsync.db": "sqlite:////var/lib/mailsync.db",
        "sqlite://": "sqlite://",
        "sqlite:///:memory:": "sqlite:///:memory:",
        "sqlite:///state/m.db": f"sqlite:///{tmp_path}/state/m.db",  # relative to the config file
        "sqlite:///~/m.db": f"sqlite:///{tmp_path}/m.db",
        "postgresql+psycopg://mailsync@db.example.com/mailsync": "postgresql+psycopg://mailsync@db.example.com/mailsync",
    }
    for given, expected in cases.items():
        assert load_text(tmp_path, f'[store]\nurl = "{given}"\n').store.url == expected


def test_store_url_password_allowed_in_private_file(tmp_path):
    url = "postgresql://u:pw@h/db"
    assert load_text(tmp_path, f'[store]\nurl = "{url}"\n', 0o600).store.url == url


def test_unknown_key_error_never_shows_value(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, account(pasword='"hunter2hunter2"'), 0o600)
    assert "unknown key 'pasword'" in info.value.message
    assert 'did you mean "password"' in info.value.hint
    assert "hunter2hunter2" not in str(info.value)


def test_parse_secret_ref_without_origin():
    assert parse_secret_ref("env:X") == SecretRef("env", "X", "")
    assert parse_secret_ref("plain") == SecretRef("literal", "plain", "")
    with pytest.raises(ConfigError) as info:
        parse_secret_ref("env:")
    assert "key 'password'" in info.value.message


# ------------------------------------------------------------------------------ default paths


def test_default_config_path(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MAILSYNC_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert default_config_path() == tmp_path / ".config" / "mailsync" / "config.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    assert default_config_path() == tmp_path / ".config" / "mailsync" / "config.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_config_path() == tmp_path / "xdg" / "mailsync" / "config.toml"
    monkeypatch.setenv("MAILSYNC_CONFIG", "~/elsewhere.toml")
    assert default_config_path() == tmp_path / "elsewhere.toml"


def test_load_config_uses_default_path(monkeypatch, tmp_path):
    path = write(tmp_path, ACCOUNT, name="chosen.toml")
    monkeypatch.setenv("MAILSYNC_CONFIG", str(path))
    assert load_config().path == path


def test_default_store_url(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_store_url() == f"sqlite:///{tmp_path}/.local/share/mailsync/mailsync.db"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_store_url() == f"sqlite:///{tmp_path}/data/mailsync/mailsync.db"


# ------------------------------------------------------------------------------------ sample


def test_sample_config_loads_as_is(tmp_path):
    cfg = load_text(tmp_path, SAMPLE_CONFIG, mode=0o644)  # no literal secret in it
    (acc,) = cfg.accounts
    assert acc.name == "work" and acc.password.kind == "env"
    assert cfg.store.url == default_store_url()
    assert "# url = " in SAMPLE_CONFIG


def test_sample_oauth2_example_loads_when_uncommented(tmp_path):
    head, _, tail = SAMPLE_CONFIG.partition("# An OAuth2 account")
    uncommented = "\n".join(re.sub(r"^# ", "", line) for line in tail.splitlines()[1:])
    cfg = load_text(tmp_path, head + uncommented)
    personal = cfg.account("personal")
    assert (personal.auth, personal.provider, personal.max_connections) == ("oauth2", "google", 5)
    assert personal.client_secret.kind == "env"


def test_sample_channel_example_loads_when_uncommented(tmp_path):
    head, _, rest = SAMPLE_CONFIG.partition("# A channel:")
    settings = "\n".join(line[2:] for line in rest.splitlines() if re.match(r"# (\[\[|\w+ = )", line))
    cfg = load_text(tmp_path, head + "\n" + settings)  # the channel, and the OAuth2 account it copies into
    (ch,) = cfg.channels
    assert (ch.name, ch.source, ch.dest, ch.mode) == ("to-new-provider", "work", "personal", "copy")


def test_sample_mentions_every_core_key():
    for key in ACCOUNT_KEYS[:18]:
        assert re.search(rf"^#? ?{key} = ", SAMPLE_CONFIG, re.M), key


def test_write_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    path = tmp_path / "a" / "b" / "config.toml"
    assert write_sample(path) == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(path.parent) == ["config.toml"]  # no temporary file left behind
    text = path.read_text()
    assert text == sample_config(default_store_url())
    assert f'# url = "{default_store_url()}"' in text
    assert load_config(path).accounts[0].name == "work"


def test_write_sample_refuses_to_overwrite(tmp_path):
    path = write(tmp_path, "# mine\n", 0o644)
    with pytest.raises(ConfigError) as info:
        write_sample(path)
    assert str(path) in info.value.message and "exists" in info.value.message
    assert "--force" in info.value.hint
    assert path.read_text() == "# mine\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_write_sample_force_replaces(tmp_path):
    path = write(tmp_path, "# mine\n", 0o644)
    write_sample(path, force=True)
    assert path.read_text().startswith("# mailsync configuration")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["config.toml"]


def test_write_sample_refuses_dangling_symlink(tmp_path):
    link = tmp_path / "config.toml"
    link.symlink_to(tmp_path / "target.toml")
    with pytest.raises(ConfigError):
        write_sample(link)
    assert not (tmp_path / "target.toml").exists()


# ------------------------------------------------------------------------------- properties

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 70000) | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=2),
    max_leaves=4,
)
_account_tables = st.dictionaries(st.sampled_from(ACCOUNT_KEYS + ("bogus", "Port")), _values, max_size=8).map(
    lambda d: {k: v for k, v in d.items() if v is not None})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.booleans(), table=_account_tables, mode=st.sampled_from([0o600, 0o644]))
def test_any_account_table_gives_config_or_config_error(tmp_path, base, table, mode):
    data = {"name": "work", "host": "imap.example.com", "username": "u", "password": "env:P"} if base else {}
    data.update(table)
    try:
        cfg = config_from_mapping({"account": [data]}, path=tmp_path / "config.toml", mode=mode)
    except ConfigError as err:
        assert err.message.startswith(str(tmp_path / "config.toml") + ": ")
        assert err.hint
        return
    assert len(cfg.accounts) == 1


@settings(max_examples=200, deadline=None)
@given(secret=st.text(min_size=1, max_size=40), key=st.sampled_from(["password", "client_secret"]))
def test_literal_secret_never_in_message(secret, key):
    marker = "Zq" + secret  # long and odd enough not to occur in a message by chance
    data = {"name": "work", "host": "imap.example.com", "username": "u", key: marker}
    if key == "client_secret":
        data.update(auth="oauth2", provider="google")
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"account": [data]}, path=Path("/etc/mailsync.toml"), mode=0o644)
    assert marker not in str(info.value)
    assert "chmod 600 /etc/mailsync.toml" in info.value.hint


# --------------------------------------------------------------------------- maildir mirror

def test_maildir_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    acc = load_text(tmp_path, account(maildir='"~/Mail/work"')).accounts[0]
    assert acc.mirror.maildir == tmp_path / "home" / "Mail" / "work"
    assert acc.mirror.maildir_layout == "maildir++"
    acc = load_text(tmp_path, account(maildir='"mail/w"', maildir_layout='"fs"')).accounts[0]
    assert acc.mirror.maildir == tmp_path / "mail" / "w"  # relative to the config file's folder
    assert acc.mirror.maildir_layout == "fs"
    assert load_text(tmp_path, ACCOUNT).accounts[0].mirror.maildir is None


@pytest.mark.parametrize("text, where, fix", [
    (account(maildir='"~/Mail"', maildir_layout='"mh"'), "key 'maildir_layout'", "maildir++"),
    (account(maildir_layout='"fs"'), "key 'maildir_layout'", "add maildir ="),
    (account(maildir="7"), "key 'maildir'", "maildir ="),
    (account(maildir='""'), "key 'maildir'", "maildir ="),
    (account(maildir='"config.toml"'), "key 'maildir'", "point maildir at a folder"),
    (account(maildir='"m"') + account(name='"home"', maildir='"m"'), "key 'maildir'", "a Maildir folder of its own"),
])
def test_maildir_errors(tmp_path, text, where, fix):
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    assert where in info.value.message and str(tmp_path / "config.toml") in info.value.message
    assert fix in (info.value.hint or "")
