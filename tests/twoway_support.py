"""Helpers for the two-way tests: in-process syncs against a harness user, and snapshots of both sides."""

from __future__ import annotations

from mailsync.config.model import AccountConfig, SecretRef
from mailsync.store import repositories as repo
from mailsync.store.uow import UnitOfWork
from mailsync.sync.engine import AccountResult, sync_account

from helpers import client_for, export_snapshot, nonempty, server_snapshot


def account_for(user, name: str = "acc", **kw) -> AccountConfig:
    return AccountConfig(name=name, host=user.host, port=user.imaps_port, tls="implicit", username=user.name,
                         password=SecretRef("literal", user.password), ca_file=user.ca_file, **kw)


def sync(store, account: AccountConfig) -> AccountResult:
    result = sync_account(store, account)
    assert result.ok, result.error
    return result


def store_snapshot(store, account: str = "acc") -> dict:
    with UnitOfWork(store) as uow:
        rows = [r.__dict__ if hasattr(r, "__dict__") else {k: getattr(r, k) for k in r.__slots__}
                for r in repo.export_rows(uow.session, account=account)]
    return export_snapshot(rows, account)


def assert_agree(store, user, account: str = "acc") -> dict:
    server = nonempty(server_snapshot(user))
    assert store_snapshot(store, account) == server, "\n".join(diff(store, user, account))
    return server


def diff(store, user, account="acc"):
    server = nonempty(server_snapshot(user))
    local = store_snapshot(store, account)
    out = []
    for f in sorted(set(server) | set(local)):
        s, l = server.get(f), local.get(f)
        if s == l:
            continue
        if s is None or l is None:
            out.append(f"{f}: only {'local' if s is None else 'server'}")
            continue
        if s["uidvalidity"] != l["uidvalidity"]:
            out.append(f"{f}: uidvalidity {s['uidvalidity']} vs {l['uidvalidity']}")
        for uid in sorted(set(s["messages"]) | set(l["messages"])):
            if s["messages"].get(uid) != l["messages"].get(uid):
                out.append(f"{f}/{uid}: server {s['messages'].get(uid)} local {l['messages'].get(uid)}")
    return out


def msg(i: int, *, mid: bool = True, extra: str = "") -> bytes:
    head = f"Message-ID: <m{i}.{extra}@example.org>\r\n" if mid else ""
    return (f"From: a{i}@example.org\r\nTo: me@example.org\r\n{head}Subject: message {i}{extra}\r\n\r\n"
            f"body {i} {extra}\r\n").encode()


# -- flag merge table, in the style of isync's run-tests.pl --------------------------------------
#  (server flags, base = flags last agreed, local flags) -> expected flags on both sides
FLAG_TABLE = [
    ("", "", "\\Seen", "\\Seen"),                                    # added locally
    ("\\Seen", "", "", "\\Seen"),                                    # added on the server
    ("", "\\Seen", "\\Seen", ""),                                    # removed on the server
    ("\\Seen", "\\Seen", "", ""),                                    # removed locally
    ("\\Seen \\Flagged", "\\Seen", "", "\\Flagged"),                  # server adds one, local removes another
    ("\\Flagged", "\\Seen", "\\Seen $Label1", "\\Flagged $Label1"),   # both sides, different flags
    ("", "\\Seen", "", ""),                                          # removed on both sides
    ("$Label1", "", "$Label1", "$Label1"),                            # added on both sides
    ("\\Answered \\Seen", "\\Seen", "\\Seen \\Draft", "\\Answered \\Draft \\Seen"),
    ("\\Seen", "\\Seen", "\\Seen", "\\Seen"),                          # nothing changed
]


def table_messages() -> list[tuple[str, bytes, str]]:
    """One INBOX message per FLAG_TABLE row, carrying the row's base flags."""
    return [("INBOX", msg(i, extra="t"), base) for i, (_s, base, _l, _e) in enumerate(FLAG_TABLE)]


def apply_table_changes(user, store, account: str = "acc") -> list[int]:
    """After a sync of table_messages(): another client sets each row's server flags, and each row's
    local flags are queued as local changes. Returns the rows' UIDs (then any other INBOX UIDs)."""
    from mailsync.changes import LocalChanges

    c = client_for(user)
    c.select_folder("INBOX")
    uids = sorted(c.search("ALL"))
    for uid, (srv, base, _l, _e) in zip(uids, FLAG_TABLE):
        if srv != base:
            c.set_flags([uid], [f.encode() for f in srv.split()])
    c.logout()
    changes = LocalChanges(store)
    for uid, (_s, base, loc, _e) in zip(uids, FLAG_TABLE):
        add, remove = set(loc.split()) - set(base.split()), set(base.split()) - set(loc.split())
        if add or remove:
            changes.flag(account, "INBOX", uid, add=sorted(add), remove=sorted(remove))
    return uids
