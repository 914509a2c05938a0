"""`mailsync install-service`: a systemd user unit that runs `mailsync watch`.

Owns: the unit's text (UNIT_TEMPLATE: restart policy, stop signal, timeouts), where it is written
($XDG_CONFIG_HOME/systemd/user/mailsync.service), and the systemctl calls with --enable.
Must not: start anything itself besides systemctl, or write the unit for a config that does not load.

The unit stops the daemon with SIGTERM (mailsync watch then exits 0 within 5 s, so TimeoutStopSec
is never reached); it is restarted 30 s after a failure, except after exit 2 (a config error, which
a restart would not mend). Secrets given as env:NAME come from the optional EnvironmentFile.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

UNIT_NAME = "mailsync.service"

UNIT_TEMPLATE = """\
# Written by `mailsync install-service`. Start with: systemctl --user enable --now mailsync.service
[Unit]
Description=mailsync watch: keep IMAP accounts and the local store in step
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
ExecStart={exec_start}
# Secrets the config names as env:NAME (one NAME=value per line, mode 0600); optional.
EnvironmentFile=-{env_file}
Environment=PYTHONUNBUFFERED=1
# SIGTERM: the step in progress finishes and the daemon exits 0 within 5 s.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=15
Restart=on-failure
RestartSec=30
# Exit 2 is a usage or config error: fix the config, then systemctl --user restart mailsync.
RestartPreventExitStatus=2
UMask=0077
NoNewPrivileges=yes

[Install]
WantedBy=default.target
"""


def _quote(arg: str) -> str:
    """One ExecStart word: double-quoted (systemd's quoting) when it holds a space or quote."""
    if arg and not any(c in arg for c in ' \t"\'\\$%;'):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%") + '"'


def unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "systemd" / "user" / UNIT_NAME


def render_unit(config_path: Path, log_format: str = "json") -> str:
    """The unit for this Python (the one running mailsync now) and this config file."""
    words = [sys.executable, "-m", "mailsync", "--config", str(config_path), "--log-format", log_format, "watch"]
    env_file = config_path.with_name("env")
    return UNIT_TEMPLATE.format(exec_start=" ".join(_quote(w) for w in words), env_file=_quote(str(env_file)))


@click.command("install-service")
@click.option("--print", "print_only", is_flag=True, help="Print the unit on stdout instead of writing it.")
@click.option("--enable", is_flag=True, help="Then run systemctl --user daemon-reload and enable --now.")
@click.option("--force", is_flag=True, help="Overwrite an existing unit file.")
@click.pass_obj
def install_service(obj, print_only: bool, enable: bool, force: bool) -> None:
    """Install a systemd user unit that runs `mailsync watch` with this config (restarted on failure,
    stopped with SIGTERM). Then: systemctl --user enable --now mailsync.service"""
    from mailsync.cli.output import fail
    from mailsync.config.loader import default_config_path
    from mailsync.errors import ConfigError, MailsyncError

    try:
        config = obj.config()  # a unit for a config that does not load would only restart in vain
        path = Path(config.path or obj.config_path or default_config_path()).absolute()
        text = render_unit(path)
        if print_only:
            click.echo(text, nl=False)
            return
        target = unit_path()
        if target.exists() and not force:
            raise ConfigError(f"{target} already exists", hint="add --force to overwrite it")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, target)
        except OSError as exc:
            raise ConfigError(f"cannot write {target}: {exc.strerror or exc}",
                              hint="check that the folder is writable, or use --print and place it yourself")
    except MailsyncError as exc:
        fail(exc)
    click.echo(f"wrote {target}", err=True)
    click.echo(str(target))
    steps = [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", UNIT_NAME]]
    if not enable:
        click.echo("start it with: " + " && ".join(" ".join(s) for s in steps), err=True)
        return
    for step in steps:
        try:
            proc = subprocess.run(step, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            fail(MailsyncError(f"`{' '.join(step)}` could not run: {exc}",
                                hint="run it yourself in your login session"))
        if proc.returncode != 0:
            fail(MailsyncError(f"`{' '.join(step)}` failed: {proc.stderr.strip() or proc.returncode}",
                                hint="run it yourself in your login session (systemd --user must be running)"))
    click.echo(f"enabled and started {UNIT_NAME}: journalctl --user -u mailsync -f shows its log", err=True)
