"""`mailsync status`: gather the store's view of each account and folder, and render it.

Owns: the status report's shape (the JSON keys are part of the CLI contract). Must not: write.
"""

from __future__ import annotations

from datetime import datetime, timezone


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:  # SQLite drops the zone; the store writes UTC
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.isoformat()


def collect_status(store, config) -> dict:
    from mailsync.store import repositories as repo
    from mailsync.store.uow import UnitOfWork

    accounts = []
    with UnitOfWork(store) as uow:
        s = uow.session
        configured = [a.name for a in config.accounts]
        rows = {a.name: a for a in repo.list_accounts(s)}
        for name in configured + sorted(n for n in rows if n not in configured):
            row = rows.get(name)
            entry: dict = {"name": name, "configured": name in configured, "last_run": None,
                           "last_success": None, "folders": [], "messages": 0}
            if row is not None:
                last = repo.last_run(s, row.id)
                ok = repo.last_run(s, row.id, status="ok")
                if last is not None:
                    entry["last_run"] = {
                        "started": _iso(last.started_at), "finished": _iso(last.finished_at), "status": last.status,
                        "error": last.error, "new_messages": last.new_messages, "flag_changes": last.flag_changes,
                        "expunged": last.expunged, "bytes_fetched": last.bytes_fetched, "notes": last.notes}
                entry["last_success"] = _iso(ok.finished_at) if ok else None
                counts = repo.folder_counts(s, row.id)
                for f in repo.folders_of(s, row.id):
                    entry["folders"].append({
                        "name": f.name, "raw_name": f.raw_name, "special_use": f.special_use,
                        "messages": counts.get(f.id, 0), "uidvalidity": f.uidvalidity, "uidnext": f.uidnext,
                        "highestmodseq": f.highestmodseq, "status": f.status, "status_reason": f.status_reason,
                        "last_synced": _iso(f.last_synced_at)})
                entry["messages"] = sum(counts.values())
            accounts.append(entry)
    return {"accounts": accounts}


def render_status(report: dict) -> str:
    lines = []
    for a in report["accounts"]:
        run = a["last_run"]
        if run is None:
            head = "never synced"
        else:
            head = f"last run {run['status']} at {run['finished'] or run['started']}"
            if run["error"]:
                head += f"\n  error: {run['error']}"
        if not a["configured"]:
            head += " (no longer in the config)"
        lines.append(f"{a['name']}: {a['messages']} messages in {len(a['folders'])} folders; {head}")
        if a["last_success"] and (run is None or run["status"] != "ok"):
            lines.append(f"  last successful sync: {a['last_success']}")
        for f in a["folders"]:
            su = f" {f['special_use']}" if f["special_use"] else ""
            state = "" if f["status"] == "ok" else f"  [{f['status'].upper()}: {f['status_reason']}]"
            lines.append(f"  {f['name']}{su}: {f['messages']} messages, uidvalidity {f['uidvalidity']}, "
                         f"uidnext {f['uidnext']}, highestmodseq {f['highestmodseq']}{state}")
    return "\n".join(lines) if lines else "no accounts configured (run: mailsync init)"
