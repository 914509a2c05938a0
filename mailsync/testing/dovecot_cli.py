"""`python -m mailsync.testing.dovecot` (scripts/dovecot): start, stop, show and template a throwaway
Dovecot for local development, its state in a JSON file.

Owns: the CLI's arguments and output and its state file. Must not: import anything but the standard
library and mailsync.testing.dovecot (it runs under a bare ``python3``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


from mailsync.testing.dovecot import CONF_TEMPLATE, CONF_TEMPLATE_24, DovecotServer
from mailsync.testing.server_support import (DovecotError, _docker_works, _lookup_ids, _repo_root, _traversal_problem,
                                             local_dovecot_available)

# --------------------------------------------------------------------------- CLI


def default_state_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "mailsync-dovecot"
    return Path(tempfile.gettempdir()) / f"mailsync-dovecot-{os.getuid()}"


def attach(state: dict) -> DovecotServer:
    """A DovecotServer object for an instance recorded in a CLI state file."""
    server = DovecotServer(Path(state["root"]), docker=bool(state.get("docker")))
    server.imap_port = int(state["imap_port"])
    server.imaps_port = int(state["imaps_port"])
    if state.get("base_dir"):
        server.base_dir = Path(state["base_dir"])
        server._base_dir_is_temp = bool(state.get("base_dir_is_temp"))
    return server


def _print_info(state: dict, as_json: bool, running: bool = True) -> None:
    if as_json:
        print(json.dumps(dict(state, running=running), indent=2))
        return
    print(f"dovecot {'running' if running else 'NOT running'}"
          + (f" (pid {state['pid']})" if state.get("pid") and running else "")
          + (" in docker" if state.get("docker") else ""))
    print(f"  host      {state['host']}")
    print(f"  imap      {state['imap_port']}  (plain + STARTTLS)")
    print(f"  imaps     {state['imaps_port']}  (implicit TLS)")
    print(f"  ca_file   {state['ca_file']}")
    for user, password in state.get("users", {}).items():
        print(f"  user      {user}  password {password}")
    print(f"  conf      {state['conf_path']}")
    print(f"  log       {state['log_path']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/dovecot",
        description="Start, inspect or stop a throwaway Dovecot IMAP server on 127.0.0.1 for mailsync.")
    parser.add_argument("command", choices=["start", "stop", "status", "template"])
    parser.add_argument("--dir", type=Path, default=None,
                        help=f"state folder (default {default_state_dir()})")
    parser.add_argument("--user", default="demo", help="user to create on start (default demo)")
    parser.add_argument("--password", default="demo", help="password of --user (default demo)")
    parser.add_argument("--docker", action="store_true",
                        help="run Dovecot in a container (automatic when there is no local dovecot)")
    parser.add_argument("--json", action="store_true", help="print the state as JSON")
    parser.add_argument("--write", action="store_true",
                        help="template: rewrite fixtures/dovecot/dovecot.conf.in and dovecot24.conf.in")
    parser.add_argument("--version", choices=["2.3", "2.4"], default="2.3",
                        help="template: which Dovecot's syntax to print (default 2.3)")
    args = parser.parse_args(argv)

    if args.command == "template":
        templates = {"dovecot.conf.in": CONF_TEMPLATE, "dovecot24.conf.in": CONF_TEMPLATE_24}
        if args.write:
            repo = _repo_root()
            if repo is None:
                print("no source checkout found (fixtures/dovecot)", file=sys.stderr)
                return 1
            for name, text in templates.items():
                target = repo / "fixtures" / "dovecot" / name
                target.write_text(text)
                print(f"wrote {target}")
        else:
            sys.stdout.write(CONF_TEMPLATE_24 if args.version == "2.4" else CONF_TEMPLATE)
        return 0

    state_dir: Path = (args.dir or default_state_dir()).absolute()
    state_file = state_dir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else None

    if args.command == "status":
        if state is None:
            print(f"dovecot not running (no state in {state_dir})")
            return 1
        running = attach(state).running
        _print_info(state, args.json, running)
        return 0 if running else 1

    if args.command == "stop":
        if state is None:
            print(f"dovecot not running (no state in {state_dir})")
            return 0
        server = attach(state)
        server.stop(graceful=True)
        shutil.rmtree(Path(state["root"]), ignore_errors=True)
        shutil.rmtree(state_dir, ignore_errors=True)
        print(f"dovecot stopped; removed {state['root']}")
        return 0

    # start
    if state is not None:
        server = attach(state)
        if server.running:
            if args.user not in state.get("users", {}):
                server.add_user(args.user, args.password)
                state.setdefault("users", {})[args.user] = args.password
                state_file.write_text(json.dumps(state, indent=2))
            _print_info(state, args.json)
            return 0
        shutil.rmtree(Path(state["root"]), ignore_errors=True)
    docker = args.docker
    if not docker and not local_dovecot_available():
        if _docker_works():
            docker = True
        else:
            print("error: no local dovecot binary (apt-get install dovecot-core dovecot-imapd) "
                  "and docker is not usable", file=sys.stderr)
            return 1
    state_dir.mkdir(parents=True, exist_ok=True)
    root = state_dir / "server"
    uid, gid = ((8, 8) if os.geteuid() == 0 else (os.geteuid(), os.getegid()))
    if os.geteuid() == 0 and not docker:
        uid, gid = _lookup_ids("mail")
    if not docker and _traversal_problem(state_dir, uid, gid) is not None:
        # e.g. $XDG_RUNTIME_DIR is 0700: keep the state there, the server where the mail user reaches.
        root = Path(tempfile.mkdtemp(prefix="mailsync-dovecot-"))
    server = DovecotServer(root, docker=docker)
    try:
        server.start()
        server.add_user(args.user, args.password)
    except (DovecotError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        server.stop()
        return 1
    state = {
        "root": str(server.root),
        "host": server.host,
        "imap_port": server.imap_port,
        "imaps_port": server.imaps_port,
        "ca_file": str(server.ca_file),
        "conf_path": str(server.conf_path),
        "log_path": str(server.log_path),
        "base_dir": str(server.base_dir),
        "base_dir_is_temp": server._base_dir_is_temp,
        "pid": server.pid,
        "docker": docker,
        "users": {args.user: args.password},
        "capabilities": list(server.capabilities),
    }
    state_file.write_text(json.dumps(state, indent=2))
    _print_info(state, args.json)
    return 0
