"""What a channel writes for its copies (mailsync.store.channel_repo.add_copies, add_pairs), on SQLite
and PostgreSQL: multi-row statements whose RETURNING is matched back to each copy by (folder, body),
so every copy gets its own placement, journal entry (with its own arguments) and pair, in order;
copies that share (folder, body) take the ordered path and still get one placement each."""

from __future__ import annotations

from sqlalchemy import select

from mailsync.store import channel_repo, tables
from mailsync.store import repositories as repo
from mailsync.store.db import open_store
from mailsync.store.uow import UnitOfWork


def _setup(c) -> tuple[int, list[int], list[str]]:
    account = repo.account_id(c, "b", "imap.example", "b")
    folders = [c.execute(tables.folders.insert().values(account_id=account, name=n, raw_name=n, fetched_uid=0,
                                                        status="ok")).inserted_primary_key[0] for n in ("X", "Y")]
    shas = [f"{i:064x}" for i in range(1, 5)]
    repo.insert_rows(c, "bodies", ("sha256", "size", "message_id", "data", "pack", "pack_offset"),
                     [(sha, 10 + i, f"<{i}@x>", b"", None, None) for i, sha in enumerate(shas)])
    return account, folders, shas


def _written(c, ids: list[int]) -> list[tuple]:
    p, o = tables.placements.c, tables.pending_ops.c
    rows = {r.id: r for r in c.execute(select(p.id, p.folder_id, p.body_sha256, p.flags, p.uid, p.internaldate, p.size)
                                       .where(p.id.in_(ids)))}
    ops = {r.placement_id: r for r in c.execute(select(o.placement_id, o.kind, o.args, o.state, o.folder_id,
                                                       o.created_at).where(o.placement_id.in_(ids)))}
    return [(rows[i].folder_id, rows[i].body_sha256, rows[i].flags, rows[i].uid, rows[i].internaldate, rows[i].size,
             ops[i].args,
             ops[i].state, ops[i].folder_id == rows[i].folder_id, ops[i].created_at is not None) for i in ids]


def test_copies_get_their_own_rows_in_order(store_url):
    store = open_store(store_url)
    try:
        with UnitOfWork(store) as uow:
            c = uow.connection
            account, (x, y), shas = _setup(c)
            # the same body into two folders, and bodies in an order the table does not keep
            day = "2024-01-0{}T03:04:05+01:00".format
            copies = [(y, shas[2], "\\Seen", day(2), 12), (x, shas[2], "", day(3), 12),
                      (x, shas[0], "\\Flagged", day(4), 10), (y, shas[3], "", day(5), 13)]
            ids = channel_repo.add_copies(c, account, copies, "append", [f"a{i}" for i in range(4)])
            assert len(set(ids)) == 4
            assert _written(c, ids) == [(f, sha, flags, None, when, size, f"a{i}", "pending", True, True)
                                        for i, (f, sha, flags, when, size) in enumerate(copies)]
            # two copies of one body into one folder (not what a plan makes, rule C3): one placement each
            twice = [(x, shas[1], "", day(6), 11), (x, shas[1], "\\Seen", day(6), 11)]
            more = channel_repo.add_copies(c, account, twice, "append", ["t0", "t1"])
            assert len(set(more) | set(ids)) == 6
            assert [r[2] for r in _written(c, more)] == ["", "\\Seen"]
            assert [r[6] for r in _written(c, more)] == ["t0", "t1"]

            channel_repo.add_pairs(c, "ch", [(1000 + i, pid, sha) for i, (pid, (_f, sha, *_)) in
                                             enumerate(zip(ids, copies))])
            cp = tables.channel_pairs.c
            pairs = c.execute(select(cp.src_placement_id, cp.dest_placement_id, cp.sha256, cp.created_at)
                              .where(cp.channel == "ch").order_by(cp.src_placement_id)).all()
            assert [tuple(p[:3]) for p in pairs] == [(1000 + i, pid, copies[i][1]) for i, pid in enumerate(ids)]
            assert all(p.created_at is not None for p in pairs)
            assert channel_repo.channel_counts(c, "ch") == {"pairs": 4, "waiting": 4, "failed": 0}
            uow.commit()
    finally:
        store.dispose()
