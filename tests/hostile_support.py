"""What the tests against the misbehaving server (tests/hostile_server.py) share: messages, the
store's view and the server's truth to compare, and the variants the most important cases run in.

Variants (``@VARIANTS`` on a test, or the ``variant`` fixture's "plain" otherwise):
- "plain": a server without CONDSTORE (full UID/FLAGS listings), SQLite store;
- "condstore": CONDSTORE alone (CHANGEDSINCE, UID SEARCH ALL when the count does not add up);
- "qresync": CONDSTORE and QRESYNC (SELECT ... (QRESYNC ...): VANISHED (EARLIER) and changed FETCHes);
- "postgresql": the plain server, with the store in PostgreSQL.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from pathlib import Path

import pytest
from sqlalchemy import select

from hostile_server import HostileServer
from mailsync.config.model import AccountConfig, SecretRef
from mailsync.store import tables
from mailsync.store.db import open_store
from mailsync.store.uow import UnitOfWork
from mailsync.sync.engine import sync_account

CAPABILITIES = {
    "plain": ("UIDPLUS",),
    "condstore": ("UIDPLUS", "CONDSTORE"),
    "qresync": ("UIDPLUS", "ENABLE", "CONDSTORE", "QRESYNC"),
    "postgresql": ("UIDPLUS",),
}
VARIANTS = pytest.mark.parametrize("variant", list(CAPABILITIES))
_db_numbers = itertools.count(1)


@pytest.fixture
def variant() -> str:
    return "plain"


@pytest.fixture
def server(variant):
    srv = HostileServer(capabilities=CAPABILITIES[variant]).start()
    srv.add_folder("INBOX")
    yield srv
    srv.stop()


@pytest.fixture
def store(variant, tmp_path: Path, request):
    if variant == "postgresql":
        url = request.getfixturevalue("postgres").create_database(f"h{next(_db_numbers)}_{secrets.token_hex(3)}")
    else:
        url = f"sqlite:///{tmp_path / 'store.db'}"
    s = open_store(url)
    yield s
    s.dispose()


def msg(n: int, size: int = 40) -> bytes:
    return (b"Message-ID: <m%d@hostile.test>\r\nSubject: message %d\r\n\r\n" % (n, n)) + (b"body %d\r\n" % n) * size


def account(srv: HostileServer, **kw) -> AccountConfig:
    kw.setdefault("timeout", 5)
    kw.setdefault("name", "acc")
    return AccountConfig(host=srv.host, port=srv.port, tls="none", allow_plaintext=True,
                         username="u", password=SecretRef("literal", "p"), **kw)


def fill(srv: HostileServer, n: int, folder: str = "INBOX") -> None:
    for i in range(1, n + 1):
        srv.add_message(folder, msg(i), ("\\Seen",) if i % 3 == 0 else ())


def stored(store, folder: str = "INBOX", account: str | None = None) -> dict[int, tuple[frozenset[str], str]]:
    """The store's live placements of ``folder``: uid -> (flags, sha256 of the body)."""
    pl, fo, ac = tables.placements.c, tables.folders.c, tables.accounts.c
    q = (select(pl.uid, pl.flags, pl.body_sha256).join(tables.folders, fo.id == pl.folder_id)
         .where(fo.raw_name == folder, pl.uid.isnot(None), pl.tombstone_run.is_(None)))
    if account is not None:
        q = q.join(tables.accounts, ac.id == fo.account_id).where(ac.name == account)
    with UnitOfWork(store) as uow:
        rows = uow.connection.execute(q).all()
    return {uid: (frozenset(flags.split()), sha) for uid, flags, sha in rows}


def truth(srv: HostileServer, folder: str = "INBOX") -> dict[int, tuple[frozenset[str], str]]:
    return {uid: (flags, hashlib.sha256(body).hexdigest()) for uid, (flags, body) in srv.truth(folder).items()}


def folder_state(store, folder: str = "INBOX", account: str | None = None) -> tuple[str, str | None]:
    fo, ac = tables.folders.c, tables.accounts.c
    q = select(fo.status, fo.status_reason).where(fo.raw_name == folder)
    if account is not None:
        q = q.join(tables.accounts, ac.id == fo.account_id).where(ac.name == account)
    with UnitOfWork(store) as uow:
        return uow.connection.execute(q).one()


def sync(store, srv, **kw):
    return sync_account(store, account(srv, **kw))


def listing_without(hide: set[int]):
    """A UID/FLAGS listing (UID FETCH 1:* (UID FLAGS)) that leaves ``hide`` out."""
    return lambda s, tag, cmd: s.honest(tag, cmd, hide=hide)


LISTING = r"^UID FETCH 1:\* \(UID FLAGS\)"


def hide_in_listings(srv: HostileServer, hide: set[int], *, times: int | None = 1, **select) -> None:
    """Every way the engine learns which UIDs a folder holds leaves ``hide`` out (each ``times``
    times): the full listing `UID FETCH 1:* (UID FLAGS[ MODSEQ])`, `UID SEARCH ALL` (CONDSTORE, when
    the count does not add up), and a SELECT with QRESYNC, whose VANISHED (EARLIER) names them.
    ``select``: numbers every SELECT answers instead (``exists=8``), for a lie kept consistent."""
    srv.script(r"^UID FETCH 1:\* \(UID FLAGS( MODSEQ)?\)$", listing_without(hide), times=times)
    srv.script(r"^UID SEARCH (RETURN \(ALL\) )?ALL$", lambda s, tag, cmd: s.honest(tag, cmd, hide=hide), times=times)
    srv.script(r"^SELECT ", lambda s, tag, cmd: s.honest(tag, cmd, vanish=hide, **select), times=times)


def lied(srv: HostileServer) -> bool:
    """Was a scripted answer given (a rule with a count used up, or one without a count matched)?"""
    with srv.lock:
        return any(r.times == 0 or (r.times is None and r.used) for r in srv._rules)


def phantom(seq: int, uid: int, body: bytes) -> bytes:
    """A FETCH response carrying a whole message: put before the tagged OK of a FETCH that did not ask for it."""
    return (b'* %d FETCH (UID %d FLAGS () INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE %d BODY[] {%d}\r\n'
            % (seq, uid, len(body), len(body)) + body + b")\r\n")


def cut_after(n: int):
    """Answer a body FETCH with its first ``n`` messages, then cut the connection mid-literal."""
    def hook(s, tag, cmd):
        answer = s.honest(tag, cmd)
        starts = [i for i in range(len(answer)) if answer.startswith(b"* ", i) and b" FETCH (" in answer[i:i + 20]]
        cut = starts[n] + 80 if len(starts) > n else len(answer) // 2
        s.send(answer[:cut])
        return b""  # and the session ends
    return hook
