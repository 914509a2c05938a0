"""Gmail messages in the store (table gmail_messages): which body an X-GM-MSGID has, and its labels.

Owns: the queries of that table. Must not: commit (the caller's unit of work does), speak IMAP, or
decide what to download (mailsync.sync.gmail does).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import select, update

from mailsync.store import tables

_CHUNK = 500  # names in one IN (...) list


def labels_text(labels: Iterable[str] | None) -> str:
    """Labels as the table keeps them: a sorted JSON list, each once."""
    return json.dumps(sorted(set(labels or ())), ensure_ascii=False)


def labels_list(text: str | None) -> list[str]:
    return json.loads(text) if text else []


def _chunks(values: list) -> Iterable[list]:
    for i in range(0, len(values), _CHUNK):
        yield values[i:i + _CHUNK]


def known_bodies(db, account_id: int, msgids: Iterable[int]) -> dict[int, str]:
    """X-GM-MSGID -> SHA-256 of its body, for those of ``msgids`` whose body the store holds."""
    g, b = tables.gmail_messages.c, tables.bodies.c
    out: dict[int, str] = {}
    for part in _chunks(sorted({str(m) for m in msgids})):
        q = (select(g.msgid, g.body_sha256).join(tables.bodies, b.sha256 == g.body_sha256)
             .where(g.account_id == account_id, g.msgid.in_(part)))
        out.update((int(msgid), sha) for msgid, sha in db.execute(q))
    return out


def record(db, account_id: int, rows: Iterable[tuple[int, int | None, str, Iterable[str] | None]]) -> None:
    """Rows of (X-GM-MSGID, X-GM-THRID, body SHA-256, labels or None): added, or brought up to
    date (a message whose body was dropped and downloaded again names it again)."""
    rows = {str(msgid): (thrid, sha, labels) for msgid, thrid, sha, labels in rows}
    if not rows:
        return
    g = tables.gmail_messages.c
    have: dict[str, tuple] = {}
    for part in _chunks(sorted(rows)):
        have.update((m, (sha, labels)) for m, sha, labels in db.execute(
            select(g.msgid, g.body_sha256, g.labels).where(g.account_id == account_id, g.msgid.in_(part))))
    new = []
    for msgid, (thrid, sha, labels) in rows.items():
        text = labels_text(labels) if labels is not None else None
        if msgid not in have:
            new.append({"account_id": account_id, "msgid": msgid, "thrid": None if thrid is None else str(thrid),
                        "body_sha256": sha, "labels": text or "[]"})
        elif have[msgid] != (sha, text if text is not None else have[msgid][1]):
            values = {"body_sha256": sha} | ({"labels": text} if text is not None else {})
            db.execute(update(tables.gmail_messages)
                       .where(g.account_id == account_id, g.msgid == msgid).values(**values))
    if new:
        db.execute(tables.gmail_messages.insert(), new)


def set_labels(db, account_id: int, labels: dict[int, Iterable[str]]) -> int:
    """The labels the server gave known messages (X-GM-MSGID -> labels); how many changed.
    Messages the store does not know are left to the download that will record them."""
    if not labels:
        return 0
    g = tables.gmail_messages.c
    wanted = {str(m): labels_text(v) for m, v in labels.items()}
    changed = 0
    for part in _chunks(sorted(wanted)):
        for msgid, text in db.execute(select(g.msgid, g.labels).where(g.account_id == account_id,
                                                                      g.msgid.in_(part))).all():
            if text != wanted[msgid]:
                db.execute(update(tables.gmail_messages).where(g.account_id == account_id, g.msgid == msgid)
                           .values(labels=wanted[msgid]))
                changed += 1
    return changed


def messages_of(db, account_id: int) -> dict[str, tuple[str, str | None, list[str]]]:
    """Body SHA-256 -> (X-GM-MSGID, X-GM-THRID, labels) of an account's Gmail messages (for export;
    two messages with one body, which Gmail allows, show the labels of both)."""
    g = tables.gmail_messages.c
    out: dict[str, tuple[str, str | None, list[str]]] = {}
    for msgid, thrid, sha, text in db.execute(select(g.msgid, g.thrid, g.body_sha256, g.labels)
                                              .where(g.account_id == account_id).order_by(g.msgid)):
        if sha in out:
            labels = sorted(set(out[sha][2]) | set(labels_list(text)))
            out[sha] = (out[sha][0], out[sha][1], labels)
        else:
            out[sha] = (msgid, thrid, labels_list(text))
    return out


def messages_of_account(db, name: str) -> dict[str, tuple[str, str | None, list[str]]]:
    """messages_of, for the account of that name (empty for an account without Gmail messages)."""
    a = tables.accounts.c
    account_id = db.execute(select(a.id).where(a.name == name)).scalar_one_or_none()
    return {} if account_id is None else messages_of(db, account_id)


def change_labels(db, account_id: int, sha256: str, add: Iterable[str], remove: Iterable[str]) -> bool:
    """A local label change of the message(s) with that body; False when the store knows no Gmail
    message with it."""
    g = tables.gmail_messages.c
    rows = db.execute(select(g.id, g.labels).where(g.account_id == account_id, g.body_sha256 == sha256)).all()
    for row_id, text in rows:
        labels = (set(labels_list(text)) | set(add)) - set(remove)
        db.execute(update(tables.gmail_messages).where(g.id == row_id).values(labels=labels_text(labels)))
    return bool(rows)


def live_elsewhere(db, account_id: int, folder_id: int, shas: Iterable[str]) -> set[str]:
    """Of ``shas``, the bodies with a live placement (on the server, not a tombstone) in another
    folder of the account than ``folder_id``."""
    p, f = tables.placements.c, tables.folders.c
    out: set[str] = set()
    for part in _chunks(sorted(set(shas))):
        out.update(db.execute(select(p.body_sha256).join(tables.folders, f.id == p.folder_id).where(
            f.account_id == account_id, p.folder_id != folder_id, p.uid.isnot(None), p.tombstone_run.is_(None),
            p.body_sha256.in_(part))).scalars())
    return out


def drop_label(db, account_id: int, shas: Iterable[str], label: str) -> None:
    """``label`` taken from the Gmail messages with these bodies."""
    g = tables.gmail_messages.c
    for part in _chunks(sorted(set(shas))):
        for row_id, text in db.execute(select(g.id, g.labels).where(g.account_id == account_id,
                                                                    g.body_sha256.in_(part))).all():
            labels = labels_list(text)
            if label in labels:
                labels.remove(label)
                db.execute(update(tables.gmail_messages).where(g.id == row_id).values(labels=labels_text(labels)))
