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
    from mailsync.store import headers_only
    from mailsync.store import repositories as repo
    from mailsync.store.uow import UnitOfWork

    if store is None:  # no store yet: every configured account was never synced (and nothing is created)
        accounts = [{"name": a.name, "configured": True, "last_run": None, "last_success": None, "folders": [],
                     "messages": 0, "local_changes": {"pending": 0, "failed": []}, "audit": [], "watch": None}
                    for a in config.accounts]
        _add_login_states(accounts, config)
        return {"accounts": accounts, "store": _store_usage(None, config)}
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
                entry["throttled"] = _throttle(row)
                counts = repo.folder_counts(s, row.id)
                folders = repo.folders_of(s, row.id)
                # held by their headers (max_size): looked up only where max_size left something out
                heads = headers_only.count_by_folder(s.connection(), [f.id for f in folders if f.left_out_size])
                for f in folders:
                    entry["folders"].append({
                        "name": f.name, "raw_name": f.raw_name, "special_use": f.special_use,
                        "messages": counts.get(f.id, 0), "uidvalidity": f.uidvalidity, "uidnext": f.uidnext,
                        "highestmodseq": f.highestmodseq, "status": f.status, "status_reason": f.status_reason,
                        "last_synced": _iso(f.last_synced_at), "left_out": {"max_age": f.left_out_age, "max_size": f.left_out_size},
                        "headers_only": heads.get(f.id, 0)})
                entry["messages"] = sum(counts.values())
            accounts.append(entry)
    _add_local_changes(store, accounts)
    _add_login_states(accounts, config)
    _add_watch_states(store, accounts)
    _add_maildirs(store, accounts, config)
    return {"accounts": accounts, "store": _store_usage(store, config)}


def _throttle(row) -> dict | None:
    """``throttled``: the server throttled the account and no sync contacts it before ``until`` (ISO
    8601), ``seconds_left`` from now, ``reason`` (the server's words), ``in_a_row`` throttled runs;
    None when it is not throttled (or the wait is over)."""
    until = row.throttled_until
    if until is None:
        return None
    if until.tzinfo is None:
        until = until.replace(tzinfo=timezone.utc)
    left = (until - datetime.now(timezone.utc)).total_seconds()
    if left <= 0:
        return None
    return {"until": until.isoformat(), "seconds_left": round(left, 1), "reason": row.throttle_reason,
            "in_a_row": row.throttle_count}


def _add_maildirs(store, accounts: list[dict], config) -> None:
    """``maildir`` (accounts with a live Maildir mirror): its path, and the deletions a scan held
    (the mass-delete guard), per Maildir folder, with the reason."""
    from sqlalchemy import select

    from mailsync.store import tables
    from mailsync.store.uow import UnitOfWork

    by_name = {a.name: a for a in config.accounts}
    a_, mf = tables.accounts.c, tables.mirror_folders.c
    with UnitOfWork(store) as uow:
        for entry in accounts:
            acc = by_name.get(entry["name"])
            if acc is None or acc.mirror.maildir is None:
                continue
            held = [{"folder": r.path, "deletions": r.held, "reason": r.held_reason}
                    for r in uow.connection.execute(select(mf.path, mf.held, mf.held_reason)
                                                    .join(tables.accounts, a_.id == mf.account_id)
                                                    .where(a_.name == acc.name, mf.held.isnot(None))
                                                    .order_by(mf.path))]
            entry["maildir"] = {"path": str(acc.mirror.maildir), "layout": acc.mirror.maildir_layout,
                                "held": held}


def _store_usage(store, config) -> dict:
    """Where the store is, whether it exists, files of it others can read (``mode_problems``), and for
    pack files their size and how much of it is still needed."""
    from sqlalchemy.engine import make_url

    from mailsync.store.db import store_mode_problems

    url = store.url if store is not None else config.store.url
    out: dict = {"url": make_url(url).render_as_string(hide_password=True), "exists": store is not None,
                 "bodies": "database", "mode_problems": store_mode_problems(url)}
    if store is not None and store.packs is not None:
        from mailsync.store.compaction import pack_usage

        usage = pack_usage(store)
        out["bodies"] = "packs"
        out["packs"] = {"folder": str(store.packs.root), "files": len(usage),
                        "bytes": sum(size for size, _ in usage.values()),
                        "live_bytes": sum(live for _, live in usage.values())}
    return out


def _add_local_changes(store, accounts: list[dict]) -> None:
    """``local_changes``: queued changes not yet on the server, and failed ones with their error;
    ``audit``: the latest conflicts, fallbacks and UIDVALIDITY decisions."""
    from sqlalchemy import func, select

    from mailsync.store import repositories as repo
    from mailsync.store.models import AuditEvent, PendingOp
    from mailsync.store.uow import UnitOfWork

    with UnitOfWork(store) as uow:
        s = uow.session
        ids = {a.name: a.id for a in repo.list_accounts(s)}
        for entry in accounts:
            account_id = ids.get(entry["name"])
            if account_id is None:
                entry["local_changes"], entry["audit"] = {"pending": 0, "failed": []}, []
                continue
            pending = s.scalar(select(func.count()).select_from(PendingOp).where(
                PendingOp.account_id == account_id, PendingOp.state.in_(("pending", "sent")))) or 0
            failed = [{"id": op.id, "kind": op.kind, "error": op.error, "at": _iso(op.updated_at)}
                      for op in s.scalars(select(PendingOp).where(PendingOp.account_id == account_id,
                                                                  PendingOp.state == "failed")
                                          .order_by(PendingOp.id.desc()).limit(20))]
            entry["local_changes"] = {"pending": pending, "failed": failed}
            entry["audit"] = [{"at": _iso(e.at), "kind": e.kind, "folder": e.folder, "uid": e.uid, "detail": e.detail}
                              for e in s.scalars(select(AuditEvent).where(AuditEvent.account_id == account_id)
                                                 .order_by(AuditEvent.id.desc()).limit(10))]


def _add_watch_states(store, accounts: list[dict]) -> None:
    """``watch``: what the watch daemon last reported for the account (mailsync.push.health), or None."""
    from mailsync.push.health import watch_report
    from mailsync.store import repositories as repo
    from mailsync.store.uow import UnitOfWork

    with UnitOfWork(store) as uow:
        ids = {a.name: a.id for a in repo.list_accounts(uow.session)}
        for entry in accounts:
            account_id = ids.get(entry["name"])
            entry["watch"] = watch_report(uow.session, account_id) if account_id is not None else None


def _add_login_states(accounts: list[dict], config) -> None:
    """``auth`` (method, and for OAuth2 the sign-in state from the token store, never a token) and
    ``needs_login`` (true when only `mailsync auth login NAME` can make the account sync again)."""
    by_name = {a.name: a for a in config.accounts}
    for entry in accounts:
        acc = by_name.get(entry["name"])
        if acc is not None and acc.auth == "oauth2":
            from mailsync.auth.oauth2 import login_state

            entry["auth"] = login_state(acc)
            entry["needs_login"] = entry["auth"]["needs_login"]
        else:
            entry["auth"] = {"method": acc.auth if acc is not None else None}
            entry["needs_login"] = False


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
            for note in (run.get("notes") or "").split("\n"):
                if note.startswith("SET ASIDE: "):
                    head += f"\n  set aside: {note[len('SET ASIDE: '):]}"
        if not a["configured"]:
            head += " (no longer in the config)"
        lines.append(f"{a['name']}: {a['messages']} messages in {len(a['folders'])} folders; {head}")
        changes = a.get("local_changes") or {}
        if changes.get("pending"):
            lines.append(f"  {changes['pending']} local change(s) waiting for the next sync")
        for op in changes.get("failed", [])[:5]:
            lines.append(f"  local change #{op['id']} ({op['kind']}) FAILED: {op['error']}")
        for e in (a.get("audit") or [])[:5]:
            where = f"{e['folder']}" + (f"/{e['uid']}" if e["uid"] else "") if e["folder"] else ""
            lines.append(f"  {e['at']} {e['kind']}{' ' + where if where else ''}: {e['detail']}")
        if a.get("throttled"):
            t = a["throttled"]
            lines.append(f"  THROTTLED by the server: waiting until {t['until']} ({t['seconds_left']:.0f} s left; "
                         f"{t['in_a_row']} throttled run(s) in a row); the next sync resumes then")
        if a.get("needs_login"):
            reason = a["auth"].get("reason")
            lines.append(f"  needs login: run mailsync auth login {a['name']}" + (f" ({reason})" if reason else ""))
        for h in (a.get("maildir") or {}).get("held", []):
            lines.append(f"  Maildir deletions HELD: {h['reason']}; `mailsync sync --allow-deletions` sends them")
        if a.get("watch"):
            from mailsync.push.health import render_watch

            lines.extend(render_watch(a["watch"]))
        if a["last_success"] and (run is None or run["status"] != "ok"):
            lines.append(f"  last successful sync: {a['last_success']}")
        for f in a["folders"]:
            su = f" {f['special_use']}" if f["special_use"] else ""
            state = "" if f["status"] == "ok" else f"  [{f['status'].upper()}: {f['status_reason']}]"
            left = f.get("left_out") or {}
            if left.get("max_age"):
                state += f"; {left['max_age']} older message(s) left out by max_age"
            if left.get("max_size"):
                state += f"; {left['max_size']} message(s) larger than max_size left out"
            if f.get("headers_only"):
                state += (f" ({f['headers_only']} held by their headers alone: `mailsync show` fetches a body; "
                          f"not in a Maildir mirror nor copied by a channel until then)")
            lines.append(f"  {f['name']}{su}: {f['messages']} messages, uidvalidity {f['uidvalidity']}, "
                         f"uidnext {f['uidnext']}, highestmodseq {f['highestmodseq']}{state}")
    if not lines:
        return "no accounts configured (run: mailsync init)"
    from mailsync.cli.safe import terminal_lines

    lines = [terminal_lines(line) for line in lines]  # names and reasons come from servers
    st = report.get("store")
    if st:
        where = f"store: {st['url']}" + ("" if st.get("exists", True) else " (not created yet: run mailsync sync)")
        packs = st.get("packs")
        if packs and packs["files"]:
            dead = packs["bytes"] - packs["live_bytes"]
            where += (f"; bodies {_mb(packs['bytes'])} in {packs['files']} pack file(s) under {packs['folder']}, "
                      f"{_mb(max(dead, 0))} no longer needed (reclaimed by a sync once half a pack is; checked hourly)")
        lines.append(where)
        for problem in st.get("mode_problems", []):
            lines.append(f"  WARNING: {problem}")
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
