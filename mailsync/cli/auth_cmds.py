"""`mailsync auth`: sign in to OAuth2 accounts, show their state, sign out.

Owns: the ``auth`` click group (``login ACCOUNT [--no-browser] [--device-code]``, ``status
[--json]``, ``logout ACCOUNT``), registered in mailsync.cli.main. Wiring only: the flows and the
token store are mailsync.auth.oauth2 and mailsync.auth.tokens. Must not: print a token, a client
secret or an authorization code (only the authorization URL and device-code instructions are
shown, on stderr); heavy modules are imported inside the commands.

Exit codes as elsewhere: 0 success; 1 the sign-in (or sign-out) failed; 2 usage or config error
(unknown account, an account that does not use OAuth2, a missing client_id ...).
"""

from __future__ import annotations

import json

import click

from mailsync.cli.output import fail
from mailsync.errors import ConfigError, MailsyncError


def _oauth2_account(obj, name: str):
    config = obj.config()
    try:
        account = config.account(name)
    except KeyError:
        known = [a.name for a in config.accounts]
        raise ConfigError(f"no account named {name!r} in {config.path}",
                          hint=f"choose one of: {', '.join(known) or '(none configured)'}") from None
    if account.auth != "oauth2":
        oauth = [a.name for a in config.accounts if a.auth == "oauth2"]
        raise ConfigError(f"account {name!r} uses auth = {account.auth!r}, not OAuth2; there is nothing to log in to",
                          hint=(f"OAuth2 accounts: {', '.join(oauth)}" if oauth
                                else 'set auth = "oauth2" and provider = ... for an OAuth2 account'))
    return account


@click.group()
def auth() -> None:
    """Sign in to OAuth2 accounts (Google, Microsoft, any OAuth2 server) and manage their tokens."""


@auth.command("login")
@click.argument("account_name", metavar="ACCOUNT")
@click.option("--no-browser", is_flag=True, help="Do not open a browser; print the URL to open instead.")
@click.option("--device-code", is_flag=True,
              help="Sign in on another device with a code (Microsoft only), e.g. over SSH.")
@click.option("--timeout", type=click.FloatRange(min=1), default=300, show_default=True,
              help="Seconds to wait for the sign-in to complete.")
@click.pass_obj
def login_cmd(obj, account_name: str, no_browser: bool, device_code: bool, timeout: float) -> None:
    """Sign in for ACCOUNT and store its tokens (keyring, or a private file)."""
    from mailsync.auth.oauth2 import LoginUI, login

    try:
        account = _oauth2_account(obj, account_name)
        ui = LoginUI(open_browser=not no_browser, timeout=timeout)
        record, where = login(account, ui, device_code=device_code)
    except MailsyncError as exc:
        fail(exc)
    click.echo(f"account '{account.name}': signed in ({account.provider}); tokens stored in {where}", err=True)


@auth.command("logout")
@click.argument("account_name", metavar="ACCOUNT")
@click.pass_obj
def logout_cmd(obj, account_name: str) -> None:
    """Forget ACCOUNT's tokens (and revoke them where the provider offers it)."""
    from mailsync.auth.oauth2 import logout

    try:
        account = _oauth2_account(obj, account_name)
        removed, revoked, where = logout(account)
    except MailsyncError as exc:
        fail(exc)
    if removed:
        extra = "; the provider revoked them" if revoked else ""
        click.echo(f"account '{account.name}': tokens removed from {where}{extra}", err=True)
    else:
        click.echo(f"account '{account.name}': no tokens were stored ({where})", err=True)


@auth.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status_cmd(obj, as_json: bool) -> None:
    """Per OAuth2 account: signed in or needs login, and where its tokens are (never the tokens)."""
    from mailsync.auth.oauth2 import login_state

    try:
        config = obj.config()
    except MailsyncError as exc:
        fail(exc)
    rows = []
    for account in config.accounts:
        if account.auth != "oauth2":
            continue
        rows.append({"name": account.name, "username": account.username, **login_state(account)})
    if as_json:
        click.echo(json.dumps({"accounts": rows}, indent=2, sort_keys=True))
        return
    if not rows:
        click.echo("no OAuth2 accounts configured")
        return
    for r in rows:
        if r["logged_in"]:
            expires = r["access_token_expires"] or "unknown"
            click.echo(f"{r['name']}: signed in as {r['username']} ({r['provider']}); access token valid until "
                       f"{expires}; tokens in {r['store']}")
        else:
            click.echo(f"{r['name']}: needs login: run mailsync auth login {r['name']} ({r['reason']})")
