"""Every command's fatal error honours --log-format json (one JSON line on stderr, exit code kept),
including the auth and crm groups."""

import json

from helpers import run_cli, write_config


def _config(tmp_path):
    return write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db",
                        [{"name": "acc", "host": "127.0.0.1", "port": 993, "username": "u", "password": "env:PW"}])


def _one_error(proc) -> dict:
    (line,) = proc.stderr.splitlines()
    event = json.loads(line)
    assert event["event"] == "error" and event["level"] == "ERROR" and event["exit_code"] == 2
    return event


def test_crm_error_as_json(tmp_path):
    proc = run_cli("--log-format", "json", "crm", "contacts", config=_config(tmp_path))
    assert proc.returncode == 2
    event = _one_error(proc)
    assert "no [crm] table" in event["message"] and "[crm]" in event["hint"]


def test_auth_error_as_json(tmp_path):
    proc = run_cli("--log-format", "json", "auth", "login", "nosuch", config=_config(tmp_path))
    assert proc.returncode == 2
    event = _one_error(proc)
    assert "no account named 'nosuch'" in event["message"] and "acc" in event["hint"]


def test_text_errors_unchanged(tmp_path):
    proc = run_cli("crm", "contacts", config=_config(tmp_path))
    assert proc.returncode == 2 and proc.stderr.startswith("mailsync: error: ") and "no [crm] table" in proc.stderr
