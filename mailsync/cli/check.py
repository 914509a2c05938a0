"""`mailsync check`: does each account's configuration work, end to end, without syncing anything?

Owns: the checks, in order, per account: every secret source resolves (the values are never shown),
the connection with the account's TLS policy, the login, the capabilities the engine makes use of,
and the folders that ``folders``/``exclude`` select, with their message counts and sizes; plus the
file modes of an existing SQLite store. Must not: create or open the store, write anything, or stop
at the first failing account (each is checked and reported on its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The capabilities the engine changes its behaviour for (delta sync, push, moves, Gmail's extensions).
CAPABILITIES = ("CONDSTORE", "QRESYNC", "NOTIFY", "IDLE", "LIST-STATUS", "MOVE", "UIDPLUS", "X-GM-EXT-1")


@dataclass
class AccountCheck:
    account: str
    steps: list[dict] = field(default_factory=list)  # {"step", "ok", "detail"} in the order run
    capabilities: dict[str, bool] = field(default_factory=dict)
    folders: list[dict] = field(default_factory=list)  # {"name", "messages", "bytes" (None: not offered)}

    @property
    def ok(self) -> bool:
        return all(s["ok"] for s in self.steps)

    def step(self, name: str, ok: bool, detail: str) -> bool:
        self.steps.append({"step": name, "ok": ok, "detail": detail})
        return ok

    def as_dict(self) -> dict:
        return {"account": self.account, "ok": self.ok, "steps": self.steps, "capabilities": self.capabilities,
                "folders": self.folders}


def _secret_refs(account) -> list[tuple[str, object]]:
    return [(key, ref) for key in ("password", "client_id", "client_secret")
            if (ref := getattr(account, key, None)) is not None]


def check_account(account) -> AccountCheck:
    from mailsync.auth.secrets import resolve_secret
    from mailsync.errors import MailsyncError

    out = AccountCheck(account.name)
    for key, ref in _secret_refs(account):
        try:
            resolve_secret(ref)
        except MailsyncError as exc:
            out.step(f"secret {key}", False, str(exc))
        else:
            out.step(f"secret {key}", True, f"{ref.kind} source resolved" if ref.kind != "literal"
                     else "given in the config file")
    if account.auth == "oauth2":
        from mailsync.auth.oauth2 import login_state

        state = login_state(account)
        if state.get("needs_login"):
            return _stop(out, "oauth2 sign-in", f"not signed in ({state.get('reason') or 'no token'}): "
                         f"run mailsync auth login {account.name}")
        out.step("oauth2 sign-in", True, "a token is stored")
    if not out.ok:
        return out
    _check_server(account, out)
    return out


def _stop(out: AccountCheck, step: str, detail: str) -> AccountCheck:
    out.step(step, False, detail)
    return out


def _check_server(account, out: AccountCheck) -> None:
    from mailsync.auth.login import open_connection
    from mailsync.errors import MailsyncError
    from mailsync.sync.plan import folder_selected

    tls = {"implicit": "implicit TLS", "starttls": "STARTTLS", "none": "no TLS (plaintext)"}[account.tls]
    try:
        conn = open_connection(account)
    except MailsyncError as exc:
        out.step("connect and log in", False, str(exc) + (f" (hint: {exc.hint})" if exc.hint else ""))
        return
    try:
        out.step("connect and log in", True, f"{account.host}:{account.port} with {tls}, logged in as "
                 f"{account.username}")
        out.capabilities = {c: conn.has(c) for c in CAPABILITIES}
        folders = conn.list_folders(with_status=True)
        chosen = sorted((f for f in folders if f.selectable and folder_selected(f.name, account.folders,
                                                                               account.exclude)),
                        key=lambda f: (f.name.upper() != "INBOX", f.name))
        sizes = conn.has("STATUS=SIZE")
        for f in chosen:
            messages, nbytes = _sizes(conn, f, sizes)
            out.folders.append({"name": f.name, "messages": messages, "bytes": nbytes})
        if chosen:
            out.step("folders", True, f"{len(chosen)} of {len(folders)} folder(s) selected by folders/exclude")
        else:
            out.step("folders", False, f"folders = {list(account.folders)} and exclude = {list(account.exclude)} "
                     f"select none of the {len(folders)} folder(s) on the server: "
                     f"{', '.join(sorted(f.name for f in folders)[:20])}")
    except MailsyncError as exc:
        out.step("folders", False, str(exc))
    finally:
        try:
            conn.logout()
        except MailsyncError:
            pass


def _sizes(conn, folder, sizes: bool) -> tuple[int | None, int | None]:
    """(messages, bytes) of a folder: MESSAGES from LIST-STATUS (or STATUS), bytes from STATUS SIZE
    (RFC 8438) where the server offers it."""
    from mailsync.errors import MailsyncError

    messages = (folder.status or {}).get("MESSAGES")
    if messages is None:
        messages = conn.status(folder.raw_name).get("MESSAGES")
    nbytes = None
    if sizes:
        try:
            nbytes = conn.status_reply(folder.raw_name, "SIZE")[0].get("SIZE")
        except MailsyncError:  # the size is a nicety: the check does not fail for it
            nbytes = None
    return messages, nbytes


def render(checks: list[AccountCheck], store: dict) -> str:
    lines = []
    for c in checks:
        lines.append(f"{c.account}: {'OK' if c.ok else 'FAILED'}")
        for s in c.steps:
            lines.append(f"  [{'ok' if s['ok'] else 'FAIL'}] {s['step']}: {s['detail']}")
        if c.capabilities:
            have = [k for k, v in c.capabilities.items() if v]
            lack = [k for k, v in c.capabilities.items() if not v]
            lines.append(f"  capabilities: {' '.join(have) or '(none)'}"
                         + (f"; not offered: {' '.join(lack)}" if lack else ""))
        for f in c.folders:
            size = f" {f['bytes'] / 1e6:,.1f} MB" if f["bytes"] is not None else ""
            count = "?" if f["messages"] is None else f"{f['messages']:,}"
            lines.append(f"  folder {f['name']}: {count} messages{size}")
    lines.append(f"store: {store['url']}" + ("" if store["exists"] else " (not created yet; check creates nothing)"))
    for problem in store["mode_problems"]:
        lines.append(f"  WARNING: {problem}")
    return "\n".join(lines)
