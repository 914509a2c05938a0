"""A real BottleCRM (PyPI: django-crm, MIT) for the bottlecrm sink's tests, run on 127.0.0.1 by gunicorn from
the virtualenv scripts/test-crm makes ($MAILSYNC_TEST_CRM, default /opt/mailsync-test-crm), with its own
SQLite database in a throwaway folder.

Owns: starting and stopping the CRM (its schema made from its models by Django's ``migrate
--run-syncdb``, seconds instead of the minutes its 300 migrations take on an empty database --
MAILSYNC_BOTTLECRM_MIGRATIONS=1 runs them instead, to check that both schemas serve alike; an
organization with one admin and a personal access token scoped to contacts, accounts and
interactions, made with the CRM's own models by a script run in its interpreter), reading what it
holds (its REST API, and its own database read-only), serving it over HTTPS too (gunicorn's own
TLS, ``serve_https``), and ``LossyProxy``: an HTTP proxy in front of
it that fails at random, the way networks and load balancers do.
Must not: be imported by mailsync (the sink speaks HTTP); leave a process behind (``stop`` ends the
process group).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import requests

from mailsync.crm.bottlecrm import marker
from webhook_server import LocalHttpServer

SETTINGS = '''\
import os
from crm.settings import *  # noqa: F401,F403  (the CRM's own settings, then what a test server changes)

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["MAILSYNC_BOTTLECRM_DB"],
                         "OPTIONS": {"timeout": 20}}}
CELERY_BROKER_URL = "memory://"
CELERY_RESULT_BACKEND = "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]


class _Models(dict):  # every app's schema from its models: no migration files are run
    def __contains__(self, app):
        return True

    def __getitem__(self, app):
        return None


if not os.environ.get("MAILSYNC_BOTTLECRM_MIGRATIONS"):
    MIGRATION_MODULES = _Models()
'''

BOOTSTRAP = '''\
import sys

import django

django.setup()
from common.models import Org, PersonalAccessToken, Profile, User

scopes = [f"{r}:{a}" for r in ("contacts", "accounts", "interactions") for a in ("read", "write")]
for n in range(int(sys.argv[1])):
    user = User.objects.create(email=f"sync{n}@crm.test", name="mailsync")
    org = Org.objects.create(name=f"Mailsync test org {n}")
    profile = Profile.objects.create(user=user, org=org, role="ADMIN", is_organization_admin=True,
                                     has_sales_access=True, has_marketing_access=True)
    raw, _ = PersonalAccessToken.generate(profile, "mailsync", scopes=scopes)
    print(org.id.hex, raw)
'''
ORGS = 12  # one fresh organization (and token) per test, made in one go


class BottleCrmError(RuntimeError):
    pass


def crm_home() -> Path:
    return Path(os.environ.get("MAILSYNC_TEST_CRM", "/opt/mailsync-test-crm"))


def crm_python() -> Path | None:
    """The BottleCRM virtualenv's interpreter, or None when scripts/test-crm has not made it."""
    python = crm_home() / "venv" / "bin" / "python"
    return python if python.is_file() and (crm_home() / ".installed").is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CrmOrg:
    """One organization of the test CRM: its id (32 hex digits, as its database holds it) and a token
    of its admin. What it holds is read through the API and straight from the CRM's database."""

    def __init__(self, server: "BottleCrmServer", org_hex: str, token: str) -> None:
        self.server, self.id, self.token = server, org_hex, token

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str, **params) -> dict:
        resp = requests.get(f"{self.url}/api/{path}", headers={"Authorization": f"Bearer {self.token}"},
                            params=params, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def rows(self, table: str, columns: str = "*") -> list[dict]:
        """This organization's rows of a table of the CRM's own database."""
        return self.server.rows(f"SELECT {columns} FROM {table} WHERE org_id = ?", self.id)


class BottleCrmServer:
    """``start()`` -> a BottleCRM at ``url``; ``new_org()`` an organization no test used; ``stop()``."""

    def __init__(self, root: Path, python: Path) -> None:
        self.root = root
        self.python = python
        self.db = root / "crm.sqlite3"
        self.port = 0
        self.orgs: list[CrmOrg] = []
        self.proc: subprocess.Popen | None = None
        self.procs: list[subprocess.Popen] = []
        self.probe_token = ""
        self.start_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "DJANGO"))}
        env.update(PYTHONPATH=str(self.root), DJANGO_SETTINGS_MODULE="mailsync_test_settings",
                   MAILSYNC_BOTTLECRM_DB=str(self.db), ENV_TYPE="dev", DEBUG="False")
        return env

    def _run(self, *args: str) -> str:
        done = subprocess.run([str(self.python), *args], cwd=self.root, env=self._env(), capture_output=True,
                              text=True, timeout=900)
        if done.returncode != 0:
            raise BottleCrmError(f"BottleCRM: {' '.join(args[:3])} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def start(self) -> "BottleCrmServer":
        began = time.monotonic()
        (self.root / "mailsync_test_settings.py").write_text(SETTINGS)
        (self.root / "bootstrap.py").write_text(BOOTSTRAP)
        self._run("-m", "django", "migrate", "--run-syncdb", "-v0")
        lines = [line.split() for line in self._run("bootstrap.py", str(ORGS)).splitlines() if line.strip()]
        self.orgs = [CrmOrg(self, org, token) for org, token in lines[-ORGS:]]
        self.probe_token = self.orgs[0].token
        self.port, self.proc = self._serve()
        self.start_seconds = time.monotonic() - began
        return self

    def _serve(self, *tls: str, verify: str | bool = True) -> tuple[int, subprocess.Popen]:
        """gunicorn serving the CRM on a free port (HTTPS with ``--certfile``/``--keyfile`` in ``tls``),
        once it answers."""
        port = _free_port()
        with open(self.root / "gunicorn.log", "ab") as log:
            proc = subprocess.Popen(
                [str(self.python), "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                 "--threads", "4", "--no-control-socket", "--timeout", "60", *tls, "crm.wsgi:application"],
                cwd=self.root, env=self._env(), stdout=log, stderr=log, start_new_session=True)
        self.procs.append(proc)
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/api/contacts/"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url, headers={"Authorization": f"Bearer {self.probe_token}"}, timeout=5,
                                verify=verify).status_code == 200:
                    return port, proc
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.root / "gunicorn.log").read_text(errors="replace")[-3000:]
                raise BottleCrmError(f"BottleCRM did not start on {url}:\n{tail}")
            time.sleep(0.2)

    def serve_https(self, cert_file: Path, key_file: Path) -> str:
        """The same CRM (the same database) served over HTTPS too, with this certificate: its URL."""
        port, _ = self._serve("--certfile", str(cert_file), "--keyfile", str(key_file), verify=str(cert_file))
        return f"https://127.0.0.1:{port}"

    def new_org(self) -> CrmOrg:
        if not self.orgs:
            raise BottleCrmError(f"the test CRM has no unused organization left: raise ORGS ({ORGS})")
        return self.orgs.pop(0)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.procs = []
        self.proc = None

    def rows(self, sql: str, *args) -> list[dict]:
        """Rows of the CRM's own database, read-only (its ids: UUIDs as 32 hex digits)."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=20)
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(sql, args)]
        finally:
            con.close()


def holdings(crm) -> dict:
    """What the CRM's own database holds for the organization: contacts by email, accounts by website,
    interactions by their marker line."""
    contacts = {r["email"]: r for r in crm.rows("contacts")}
    accounts = {r["website"]: r for r in crm.rows("accounts")}
    interactions = {r["body"].rsplit("\n", 1)[-1]: r for r in crm.rows("interaction")}
    assert len(contacts) == len(crm.rows("contacts")), "a contact twice"
    assert len(accounts) == len(crm.rows("accounts")), "an account twice"
    assert len(interactions) == len(crm.rows("interaction")), "an interaction twice"
    return {"contacts": contacts, "accounts": accounts, "interactions": interactions}


def check_crm_holds(crm, records: dict, kept_accounts: frozenset = frozenset()) -> dict:
    """The organization holds these mailsync records (stored_records' shape), each once, linked as the
    bottlecrm sink links them (accounts in ``kept_accounts`` besides); what it holds, by key."""
    held = holdings(crm)
    contacts, accounts = held["contacts"], held["accounts"]
    assert set(contacts) == {c["address"] for c in records["contacts"].values()}
    assert set(accounts) == {f"https://{c['domain']}" for c in records["companies"].values()} | kept_accounts
    for co in records["companies"].values():
        name = co.get("name") or co["domain"]  # the domain added when another company holds the name
        assert accounts[f"https://{co['domain']}"]["name"] in (name, f"{name} ({co['domain']})")
    for c in records["contacts"].values():
        row = contacts[c["address"]]
        assert row["first_name"] == (c.get("first_name") or c["address"].split("@")[0])
        assert row["last_name"] == (c.get("last_name") or "-")
        want = accounts[f"https://{c['company_domain']}"]["id"] if c.get("company_domain") else None
        assert row["account_id"] == want
    interactions = held["interactions"]
    assert set(interactions) == {marker(a["id"]) for a in records["activities"].values()}
    for a in records["activities"].values():
        row = interactions[marker(a["id"])]
        assert row["kind"] == "email" and row["home"] == "contact"
        assert row["direction"] == ("inbound" if a["direction"] == "in" else "outbound")
        assert row["contact_id"] == contacts[a["contact_address"]]["id"]
        assert row["occurred_at"].replace(" ", "T")[:19] == a["timestamp"][:19]
        assert row["subject"] == (a.get("subject") or f"Email ({a['kind'].replace('_', ' ')})")
    return held


def hex_id(api_id: str) -> str:
    """An id as the API shows it (a dashed UUID) in the form the CRM's SQLite database holds."""
    return uuid.UUID(api_id).hex


class LossyProxy(LocalHttpServer):
    """A reverse proxy to ``target`` on 127.0.0.1 that, for a seeded share of the requests (at most
    ``max_failures``), answers 503 without passing the request on, or passes it on and then closes
    the connection without an answer (the change is made; the sink never hears so)."""

    def __init__(self, target: str, *, seed: int = 0, failure_rate: float = 0.3, max_failures: int = 40) -> None:
        self.target = target
        self.rng = random.Random(seed)
        self.failure_rate = failure_rate
        self.max_failures = max_failures
        self.failures: Counter[str] = Counter()
        self.requests = 0
        self._listen(self._handler())

    def _choose(self) -> str:
        self.requests += 1
        if sum(self.failures.values()) >= self.max_failures or self.rng.random() >= self.failure_rate:
            return "ok"
        kind = self.rng.choice(("503", "done-then-lost"))
        self.failures[kind] += 1
        return kind

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                choice = proxy._choose()
                if choice == "503":
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                resp = requests.request(self.command, proxy.target + self.path, data=body, headers=headers,
                                        timeout=30, allow_redirects=False)
                if choice == "done-then-lost":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() in ("content-type", "retry-after"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

        return Handler
