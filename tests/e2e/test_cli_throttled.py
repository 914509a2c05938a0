"""`mailsync sync` and `mailsync status` for an account the server throttled with a daily quota
(the scriptable server, tests/hostile_server.py, answering as Gmail's download cap does): exit 1
naming the quota, status showing the wait, no connection at all before the reset, a complete sync
after it."""

from __future__ import annotations

import json
import time

from helpers import run_cli, write_config
from hostile_server import HostileServer
from hostile_support import fill
from throttle_support import O365_CAPABILITIES, throttled_after

QUOTA = b"{tag} NO [OVERQUOTA] Daily download limit exceeded, try again in 8 seconds\r\n"


def test_a_daily_quota_through_the_cli(tmp_path):
    srv = HostileServer(capabilities=O365_CAPABILITIES).start()
    try:
        srv.add_folder("INBOX")
        fill(srv, 6)
        srv.script(r"^UID FETCH .*BODY.PEEK\[\]", throttled_after(2, QUOTA, bye=None))
        conf = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/s.db",
                            [{"name": "gm", "host": srv.host, "port": srv.port, "tls": "none", "username": "u",
                              "password": "p", "throttle_max_wait": 0}])
        first = run_cli("sync", "--quiet", config=conf)
        assert first.returncode == 1 and "download quota is used up" in first.stderr
        status = json.loads(run_cli("status", "--json", config=conf, check=True).stdout)
        (acc,) = [a for a in status["accounts"] if a["name"] == "gm"]
        assert acc["throttled"] is not None and acc["throttled"]["seconds_left"] > 0
        assert "THROTTLED by the server" in run_cli("status", config=conf, check=True).stdout
        connections = srv.connections
        again = run_cli("sync", "--quiet", config=conf)
        assert again.returncode == 1 and "not contacted" in again.stderr
        assert srv.connections == connections  # not even a login before the reset
        time.sleep(max(acc["throttled"]["seconds_left"] - 0.5, 0) + 0.2)
        while json.loads(run_cli("status", "--json", config=conf, check=True).stdout)["accounts"][0]["throttled"]:
            time.sleep(0.2)
        run_cli("sync", "--quiet", config=conf, check=True)
        exported = run_cli("export", "messages", "--format", "jsonl", config=conf, check=True).stdout.splitlines()
        assert sorted(json.loads(line)["uid"] for line in exported) == sorted(srv.truth("INBOX"))
    finally:
        srv.stop()
