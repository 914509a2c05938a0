"""The pytest plugin as another project gets it: `pip install 'mailsync[testing]'` into a fresh
virtualenv (no editable install, no checkout on the path), then a project of its own whose tests use
the fixtures against a real Dovecot."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import REPO

PROJECT_TEST = textwrap.dedent('''
    import imaplib
    import ssl


    def test_a_fresh_user_on_a_real_dovecot(imap_user):
        ctx = ssl.create_default_context(cafile=imap_user.ca_file)
        with imaplib.IMAP4_SSL(imap_user.host, imap_user.imaps_port, ssl_context=ctx) as c:
            c.login(imap_user.name, imap_user.password)
            assert c.append("INBOX", None, None, b"Subject: hi\\r\\n\\r\\nhello\\r\\n")[0] == "OK"
            typ, data = c.select("INBOX")
            assert (typ, data) == ("OK", [b"1"])


    def test_another_user_is_another_mailbox(imap_user, dovecot):
        assert imap_user.server is dovecot
        other = dovecot.new_user("someone-else", "pw")
        assert other.name != imap_user.name
''')


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           f"{REPO}[testing]"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return py


def _run_project(py: Path, project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    return subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(1200)
def test_the_fixtures_work_from_a_plain_install(fresh_venv, tmp_path):
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_mail.py").write_text(PROJECT_TEST)
    where = subprocess.run([str(fresh_venv), "-c", "import mailsync; print(mailsync.__file__)"],
                           capture_output=True, text=True, cwd=project, check=True).stdout
    assert str(REPO) not in where  # the installed package, not this checkout
    proc = _run_project(fresh_venv, project)
    assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.timeout(1200)
def test_the_plugin_can_be_turned_off(fresh_venv, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_off.py").write_text("def test_uses_it(imap_user):\n    pass\n")
    proc = _run_project(fresh_venv, project, "-p", "no:mailsync")
    assert proc.returncode != 0 and "fixture 'imap_user' not found" in proc.stdout, proc.stdout + proc.stderr
