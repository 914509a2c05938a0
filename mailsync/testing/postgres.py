"""A throwaway PostgreSQL server for tests and local development.

Owns: one PostgreSQL cluster per ``PostgresServer``, entirely under its ``root`` folder (data dir, unix
socket, log), listening on 127.0.0.1 on a free port with trust authentication, fsync off; databases
made in it; and the ``python -m mailsync.testing.postgres`` CLI.
Must not: touch any other cluster or the system's PostgreSQL service, import any other mailsync module
(but mailsync.testing.server_support, which is standard library only),
or import a third-party library at module level (psycopg is imported only by ``create_database``), nor
be imported by the engine itself.

PostgreSQL refuses to run as root: when we are root, initdb/pg_ctl run as the ``postgres`` user
(``runuser``), which must exist and own the data dir; the root folder must be reachable by it.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mailsync.testing.server_support import _pid_alive

__all__ = ["PostgresError", "PostgresServer"]

HOST = "127.0.0.1"
SUPERUSER = "postgres"

# Appended to postgresql.conf: speed over durability, loopback only.
_CONF = """
# --- mailsync throwaway cluster (mailsync/testing/postgres.py)
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
log_min_messages = warning
"""


class PostgresError(RuntimeError):
    """PostgreSQL could not be initialised, started or stopped; the message carries its log's tail."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


class PostgresServer:
    """One throwaway PostgreSQL cluster under ``root``.

    ``url(name)`` gives a SQLAlchemy URL (``postgresql+psycopg://postgres@127.0.0.1:PORT/name``);
    ``create_database(name)`` creates the database and returns that URL.
    """

    host = HOST
    user = SUPERUSER

    def __init__(self, root: Path, *, port: int | None = None) -> None:
        self.root = Path(root).absolute()
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.port = port or _free_port()
        self._as_root = os.geteuid() == 0

    def __repr__(self) -> str:
        return f"PostgresServer(root={str(self.root)!r}, port={self.port})"

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return False
        return _pid_alive(pid)

    def start(self) -> None:
        """initdb (first time only) and start; return once it accepts connections."""
        if self.running:
            return
        self._prepare()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run([self._bin("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                       "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"], what="initdb")
            with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as fh:
                fh.write(_CONF.format(socket_dir=self.socket_dir))
        for attempt in range(3):
            try:
                self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                           "-w", "-t", "60", "-o", f"-p {self.port}", "start"], what="pg_ctl start")
                return
            except PostgresError as exc:
                if "already in use" in str(exc) and attempt < 2:
                    self.port = _free_port()
                    continue
                raise

    def stop(self) -> None:
        """Stop the cluster (fast shutdown). Idempotent; the data stays until ``root`` is removed."""
        if not self.running:
            return
        self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop"],
                  what="pg_ctl stop")

    # ----------------------------------------------------------------- databases

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str) -> str:
        """A libpq connection string (for psycopg.connect)."""
        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={dbname}"

    def create_database(self, name: str) -> str:
        """CREATE DATABASE name (needs psycopg); returns its SQLAlchemy URL."""
        try:
            import psycopg
            from psycopg import sql
        except ImportError as exc:  # pragma: no cover - psycopg is a test dependency
            raise PostgresError("create_database needs psycopg: pip install 'psycopg[binary]'") from exc
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    # ----------------------------------------------------------------- plumbing

    def _bin(self, name: str) -> str:
        found = _find_bin(name)
        if found is None:
            raise PostgresError(f"no `{name}` binary: install PostgreSQL (apt-get install postgresql)")
        return found

    def _owner(self) -> tuple[int, int] | None:
        if not self._as_root:
            return None
        import pwd

        try:
            entry = pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise PostgresError("PostgreSQL will not run as root and there is no `postgres` user to run it "
                                "as: useradd --system --user-group --no-create-home postgres") from None
        return entry.pw_uid, entry.pw_gid

    def _prepare(self) -> None:
        owner = self._owner()
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if owner is not None:
            for parent in self.root.parents:
                mode = parent.stat().st_mode
                if not mode & 0o001 and parent.stat().st_uid != owner[0]:
                    raise PostgresError(f"{parent} cannot be entered by the postgres user; use a root folder "
                                        "it can reach, e.g. tempfile.mkdtemp() under /tmp")
            os.chmod(self.root, 0o755)
            for path in (self.root, self.socket_dir):
                os.chown(path, *owner)
            if self.data_dir.exists():
                os.chown(self.data_dir, *owner)
            if self.log_path.exists():
                os.chown(self.log_path, *owner)

    def _run(self, cmd: list[str], *, what: str) -> str:
        if self._as_root:
            cmd = ["runuser", "-u", SUPERUSER, "--", *cmd]
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise PostgresError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()}\n"
                                f"--- {self.log_path}:\n{_tail(self.log_path)}")
        return proc.stdout


# --------------------------------------------------------------------------- CLI


def _default_state_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"mailsync-postgres-{os.getuid()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailsync.testing.postgres",
                                     description="Start, inspect or stop a throwaway PostgreSQL on 127.0.0.1.")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=None,
                        help=f"cluster folder (default {_default_state_dir()})")
    parser.add_argument("--db", default="mailsync", help="database to create on start (default mailsync)")
    args = parser.parse_args(argv)
    root = (args.dir or _default_state_dir()).absolute()
    state_file = root / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else None
    server = PostgresServer(root, port=state["port"] if state else None)

    if args.command == "status":
        print(f"postgres {'running' if server.running else 'not running'}"
              + (f": {state['url']}" if state else ""))
        return 0 if server.running else 1
    if args.command == "stop":
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        print(f"postgres stopped; removed {root}")
        return 0
    if server.running and state:
        print(state["url"])
        return 0
    try:
        server.start()
        url = server.url(args.db)
        with contextlib.suppress(Exception):  # exists already (restart of a kept cluster)
            url = server.create_database(args.db)
    except PostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    state_file.write_text(json.dumps({"port": server.port, "url": url, "root": str(root)}, indent=2))
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
