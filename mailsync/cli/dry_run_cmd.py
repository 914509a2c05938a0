"""`mailsync sync --dry-run`: the plan of a sync of each selected account, as text or JSON on stdout.

Owns: opening the store without creating or migrating it (no store yet: everything is new), the
plan of each account (mailsync.sync.dry_run), and how the plans look. Must not: write to the
store or the server, run hooks or the CRM layer, or decide anything (the plan is plan.py's).
"""

from __future__ import annotations

from mailsync.cli.safe import terminal_lines
from mailsync.sync.dry_plan import AccountPlan, FolderPlan

SHOWN = 20  # UIDs listed per line of text before "... and N more" (--json lists them all)


def plan_accounts(config, accounts, *, allow_deletions: bool) -> list[AccountPlan]:
    """The plan of each of ``accounts``. MailsyncError (StoreError) when the store cannot be read as it is."""
    from mailsync.store.db import open_store, sqlite_file, store_exists
    from mailsync.sync.dry_run import dry_run

    url = config.store.url
    exists = store_exists(url)  # (a URL that is not one is reported here)
    db = sqlite_file(url)
    # an empty SQLite file is a store that lost its contents: open_store says so, as the sync would
    store = open_store(url, upgrade=False) if exists or (db is not None and db.exists()) else None
    try:
        return [dry_run(store, account, allow_mass_delete=allow_deletions) for account in accounts]
    finally:
        if store is not None:
            store.dispose()


def plan_channels(config, accounts, *, allow_deletions: bool = False) -> list[dict]:
    """What each channel joining two of ``accounts`` would queue, from the store as it is now (before
    the accounts' syncs, whose plans come first): copies, pairs with messages the destination holds,
    folders to create, mirror actions; or why it cannot be planned."""
    from mailsync.channel.run import preview_channel
    from mailsync.errors import MailsyncError
    from mailsync.store.db import open_store, store_exists

    names = {a.name for a in accounts}
    channels = [c for c in config.channels if {c.source, c.dest} <= names]
    if not channels or not store_exists(config.store.url):
        return [{"channel": c.name, "from": c.source, "to": c.dest, "mode": c.mode,
                 "error": "no store yet: the accounts' first syncs come first"} for c in channels]
    store = open_store(config.store.url, upgrade=False)
    out = []
    try:
        for c in channels:
            row = {"channel": c.name, "from": c.source, "to": c.dest, "mode": c.mode}
            try:
                r = preview_channel(store, c, allow_mass_delete=allow_deletions)
            except MailsyncError as exc:
                row["error"] = str(exc)
            else:
                row.update(copies=r.copies, paired=r.paired, folders_to_create=r.folders, mirror=r.mirrored,
                           folder_map=r.folder_map, held=r.held)
                if c.mode == "two-way":  # what goes the other way, into the source
                    row.update(copies_back=r.copies_back, folders_to_create_back=r.folders_back,
                               mirror_back=r.mirrored_back, folders_to_rename=r.renamed)
            out.append(row)
    finally:
        store.dispose()
    return out


def as_json(plans: list[AccountPlan], channels: list[dict] = ()) -> dict:
    failed = [p.account for p in plans if not p.ok]
    return {"dry_run": True, "ok": not failed, "failed": failed, "accounts": [p.as_dict() for p in plans],
            "channels": list(channels)}


def render(plans: list[AccountPlan], channels: list[dict] = ()) -> str:
    return terminal_lines("\n".join([_account(p) for p in plans] + [_channel(c) for c in channels]))


def _channel(c: dict) -> str:
    head = f"channel {c['channel']} ({c['mode']} {c['from']} -> {c['to']}, from the store as it is before these syncs):"
    if "error" in c:
        return f"{head} cannot be planned: {c['error']}"
    parts = [f"{c['copies']} to copy", f"{c['paired']} already there"]
    if c["folders_to_create"]:
        parts.append("folders to create: " + ", ".join(c["folders_to_create"]))
    parts += [f"{n} {kind}" for kind, n in sorted(c["mirror"].items())]
    parts += [f"HELD: {why}" for why in c["held"]]
    if c["mode"] == "two-way":
        parts.append(f"{c['copies_back']} to copy back")
        if c["folders_to_create_back"]:
            parts.append("folders to create back: " + ", ".join(c["folders_to_create_back"]))
        if c["folders_to_rename"]:
            parts.append("folders to rename: " + ", ".join(c["folders_to_rename"]))
        parts += [f"{n} {kind} back" for kind, n in sorted(c["mirror_back"].items())]
    return f"{head} " + "; ".join(parts)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def _uids(uids: list[int]) -> str:
    more = f" ... and {len(uids) - SHOWN} more" if len(uids) > SHOWN else ""
    return ", ".join(map(str, uids[:SHOWN])) + more


def _account(p: AccountPlan) -> str:
    if not p.ok and not p.folders_plan and not p.ops:
        return f"{p.account}: FAILED: {p.error}"
    head = (f"{p.account}: a sync would: {p.folders} folders, {p.new_messages} new ({p.downloads} to download, "
            f"{_mb(p.download_bytes)}; "
            + (f"{p.heads} by their headers alone (max_size); " if p.heads else "")
            + (f"{p.completed} of the downloads bodies of messages held by their headers; " if p.completed else "")
            + f"{p.new_messages - p.downloads + p.completed - p.heads} already in the store), "
            f"{p.flag_changes} flag changes, {p.expunged} expunged, {p.moves} moved, "
            f"{p.pushed} local changes pushed, {p.conflicts} conflicts")
    lines = [head]
    if not p.ok:
        lines.append(f"  FAILED: {p.error}")
    for op in p.ops:
        text = f"  local change #{op.id} ({op.kind}{', sent before' if op.state == 'sent' else ''}): {op.what}: "
        if op.outcome == "failed":
            text += f"would fail: {op.why}"
        elif op.sends:
            text += "sends " + "; ".join(op.sends) + (f" ({op.why})" if op.why else "")
        else:
            text += op.why or "nothing to send"
        lines.append(text)
    for old, new in p.renamed:
        lines.append(f"  folder {new!r}: renamed on the server from {old!r}")
    lines += [f"  folder {name!r}: new on the server, added" for name in p.created]
    lines += [f"  folder {name!r}: gone from the server, dropped (its messages kept one run)" for name in p.dropped]
    lines += [f"  {_folder(f)}" for f in p.folders_plan]
    lines += [f"  note: {n}" for n in p.notes]
    lines += [f"  SET ASIDE: {w}" for w in p.set_aside]
    return "\n".join(lines)


def _folder(f: FolderPlan) -> str:
    how = ", ".join(x for x in ("new folder" if f.action == "new" else "", f.mode or "") if x)
    head = f"{f.name!r}" + (f" ({how})" if how else "")
    if f.action in ("unchanged", "aside", "failed", "empty"):
        what = {"unchanged": "unchanged since the last sync, not read", "empty": "made by a local change, empty",
                "aside": f"set aside: {f.reason}", "failed": f"FAILED: {f.reason}"}[f.action]
        return f"{head}: {what}"
    parts = []
    if f.downloads:
        parts.append(f"download {len(f.downloads)} ({_mb(f.download_bytes)}): "
                     + _uids([u for u, _ in f.downloads]))
    if f.heads:
        parts.append(f"{len(f.heads)} larger than max_size, by their headers alone: {_uids(f.heads)}")
    if f.completed:
        parts.append(f"of the downloads, {len(f.completed)} bodies of messages held by their headers (max_size)")
    if f.linked:
        parts.append(f"{len(f.linked)} new already in the store, not downloaded: {_uids(f.linked)}"
                     + (f" ({len(f.moved_in)} moved here from another folder)" if f.moved_in else ""))
    if f.expunged:
        parts.append(f"remove {len(f.expunged)} expunged on the server: {_uids(f.expunged)}")
    if f.held:
        parts.append(f"deletions held: {f.held}")
    if f.flag_changes:
        parts.append(f"take the server's flags for {f.flag_changes}")
    if f.pushes:
        shown = [("the message moved here" if u is None else f"UID {u}") + " "
                 + " ".join([f"+{a}" for a in add] + [f"-{r}" for r in rem])
                 for u, add, rem in f.pushes[:SHOWN]]
        more = f" ... and {len(f.pushes) - SHOWN} more" if len(f.pushes) > SHOWN else ""
        parts.append(f"push flags of {len(f.pushes)}: " + ", ".join(shown) + more)
    if f.conflicts:
        parts.append("conflicts: " + ", ".join(f"UID {u} {flag} {'kept' if kept else 'dropped'}"
                                               for u, flag, kept in f.conflicts[:SHOWN]))
    if f.settled:
        parts.append(f"{f.settled} queued flag change(s) already on the server")
    if f.reason:
        parts.append(f.reason)
    return f"{head}: " + ("; ".join(parts) or "nothing to do")
