"""Opening the store: engine creation, SQLite tuning, and migrations applied on start.

Owns: the Engine, the SQLite pragmas (WAL), where bodies live (the pack folder of a SQLite store),
and creating or migrating the schema.
Must not: hold a connection or session open (they belong to the caller's unit of work, see uow.py),
or import the ORM (a sync never does).

Start-up is on the hot path of every command (a no-change sync must take well under a second), so
the schema revision is checked with one query, a new database is created from the models in one
transaction, and Alembic is imported only when an existing store needs an upgrade.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from mailsync.errors import StoreError
from mailsync.store.packs import PackStore, pack_folder_for
from mailsync.store.revision import HEAD_REVISION

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


@dataclass
class Store:
    url: str
    engine: Engine
    # Where bodies live: pack files beside a SQLite database file (see packs.py); None keeps them in
    # the database (PostgreSQL, where several machines may share the store; in-memory SQLite).
    packs: PackStore | None = None
    # Set once a sync run found a body in the store: a store that held one is never again taken for
    # one before its first sync (rule N1's look-up is skipped only then), so the watch daemon's
    # syncs need not ask again. Wrong only in the safe direction: if every body went, a sync still
    # looks new messages up before downloading them.
    had_bodies: bool = False

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        """Close the engine's connections and the pack files. The two run side by side: closing the
        last SQLite connection checkpoints and deletes the WAL, and dropping the pack batches unmaps
        them, both in the kernel without the GIL. At the end of a 20,000-message first sync this took
        16-18 ms instead of 25-30 ms, all of it after the last byte was read."""
        if self.packs is None:
            self.engine.dispose()
            return
        failed: list[BaseException] = []

        def close_packs() -> None:
            try:
                self.packs.close()
            except BaseException as exc:  # raised below, on the caller's thread
                failed.append(exc)

        closing = threading.Thread(target=close_packs, name="mailsync-packs-close")
        closing.start()
        try:
            self.engine.dispose()
        finally:
            closing.join()
        if failed:
            raise failed[0]


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - exercised via every sqlite test
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect only in a database not created yet
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable against process crashes (kill -9) in WAL mode; only an OS crash may lose
    # the last transactions, never corrupt the file.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # Statement journals of the multi-row inserts stay in memory (on disk they were 88 MB of temp
    # files per 20,000-message first sync), and the pages of the random-keyed indexes (SHA-256,
    # Message-ID) stay cached.
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.execute("PRAGMA cache_size=-65536")
    page_size = cur.execute("PRAGMA page_size").fetchone()[0]
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page_size}")
    cur.execute("PRAGMA journal_size_limit=67108864")  # the WAL file is cut back to 64 MB after a checkpoint
    cur.close()


# Pages of a new store: 16 KB, not SQLite's 4 KB. The SHA-256 and Message-ID keys are random, so a
# commit of a first sync's batch dirties most pages of those indexes, and SQLite writes a WAL frame
# as two pwrite calls (header, page): measured on 20,000 rows committed in 10 batches, 51,000 pwrite
# calls at 4 KB and 14,000 at 16 KB, and 25-35% less time inserting and committing. A store created
# before keeps its page size (changing it needs a VACUUM); the checkpoint intervals below are in
# bytes and turned into pages of whatever size the database has.
PAGE_SIZE = 16384
WAL_CHECKPOINT_BYTES = 4 << 20  # SQLite's default (1,000 pages of 4 KB): a short checkpoint now and then
# A first sync rewrites the same pages of the random-keyed indexes (SHA-256, Message-ID) in every
# batch; checkpointing every 32 MB of WAL instead of every 4 MB copies each page to the database once
# instead of eight times (0.2 s less of a 20,000-message first sync). Only its own connection does so,
# for the time of the download (bulk_checkpoints): a daemon's one-message commits must not be the
# ones that pay for a 32 MB checkpoint.
BULK_WAL_CHECKPOINT_BYTES = 32 << 20


def bulk_checkpoints(connection, on: bool) -> None:
    """Switch a SQLite connection to the bulk checkpoint interval, or back; no-op elsewhere."""
    if connection.dialect.name == "sqlite":
        page_size = connection.exec_driver_sql("PRAGMA page_size").scalar()
        nbytes = BULK_WAL_CHECKPOINT_BYTES if on else WAL_CHECKPOINT_BYTES
        connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint={nbytes // page_size}")


def create_store_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError and others
        raise StoreError(f"store url {url!r} is not a database URL: {exc}",
                         hint="use e.g. sqlite:////path/mailsync.db or postgresql+psycopg://user@host/db") from exc
    if parsed.get_backend_name() == "sqlite":
        db = sqlite_file(parsed)
        if db is not None:
            _create_private(db)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise StoreError(f"the database driver for {parsed.drivername!r} is not installed ({exc.name})",
                         hint="pip install 'mailsync[postgres]' for PostgreSQL") from exc


def sqlite_file(url) -> Path | None:
    """The database file of a SQLite URL (a string or URL), or None (in-memory, or not SQLite)."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() != "sqlite":
        return None
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db).expanduser()


def _create_private(db: Path) -> None:
    """A new SQLite store is private: its folder, when made here, is 0700 and the database file is
    created 0600 before SQLite opens it (SQLite gives its -wal and -shm files the database file's
    mode). The file holds names, addresses and the CRM layer's records, like the pack files and the
    token files beside it. An existing folder or file keeps its modes (store_mode_problems tells)."""
    try:
        missing = [p for p in [db.parent, *db.parent.parents] if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
        if not db.exists():
            os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:  # another process created it meanwhile: its modes are its own
        pass
    except OSError as exc:
        raise StoreError(f"cannot create the store {str(db)!r}: {exc.strerror}",
                         hint="set [store] url to a writable location") from exc


def store_exists(url: str) -> bool:
    """Is there a store at ``url`` already? Creates nothing: a SQLite file is looked for on disk;
    another database is asked whether it holds mailsync's schema (alembic_version)."""
    try:
        db = sqlite_file(url)
    except Exception as exc:
        raise StoreError(f"store url {url!r} is not a database URL: {exc}",
                         hint="use e.g. sqlite:////path/mailsync.db or postgresql+psycopg://user@host/db") from exc
    if db is not None:
        return db.is_file() and db.stat().st_size > 0
    if make_url(url).database in (None, "", ":memory:"):
        return False
    engine = create_store_engine(url)
    try:
        return current_revision(engine) is not None
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot reach the store at {engine.url.render_as_string(hide_password=True)}: "
                         f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}",
                         hint="check [store] url and that the database server is running") from exc
    finally:
        engine.dispose()


def store_mode_problems(url: str) -> list[str]:
    """Files of an existing SQLite store (and its folder) that users other than the owner can read
    or enter: each as a sentence with the chmod that fixes it. Empty for other databases."""
    db = sqlite_file(url)
    if db is None or not db.exists():
        return []
    problems = []
    for path, want in ((db.parent, 0o700), (db, 0o600), (Path(f"{db}-wal"), 0o600), (Path(f"{db}-shm"), 0o600)):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            what = "folder" if path == db.parent else "file"
            problems.append(f"the store's {what} {path} has mode {mode:04o}, readable by other users: "
                            f"run chmod {want:o} {path}")
    return problems


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            return None


def migrate(engine: Engine, revision: str = "head") -> None:
    """Apply Alembic migrations up to `revision` (imports Alembic: only called when needed)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def create_schema(engine: Engine) -> bool:
    """Create every table of an empty database and stamp it with HEAD_REVISION, in one transaction
    and without Alembic (whose import and eight migrations cost about 0.2 s of a first sync).
    Returns False, changing nothing, when the database is not empty (someone else created it
    meanwhile, or it holds tables from before Alembic): migrate() is then the way."""
    from sqlalchemy import inspect

    from mailsync.store import schema

    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now, so the check below holds
        elif engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7301944110)")  # 'mailsync' schema creation
        if inspect(conn).get_table_names():
            conn.rollback()
            return False
        if engine.dialect.name == "sqlite":  # the models' DDL, generated ahead (see mailsync.store.schema)
            for statement in schema.sqlite_statements():
                conn.exec_driver_sql(statement)
        else:
            schema.schema_metadata().create_all(conn)
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                             "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": HEAD_REVISION})
        conn.commit()
    return True


_DAMAGE = ("database disk image is malformed", "file is not a database", "database corruption",
           "malformed database schema")


def store_damage(exc: BaseException, url: str | None = None) -> StoreError | None:
    """A StoreError that says the store is damaged, where, and what to do, when ``exc`` (or its
    cause) is SQLite reporting a damaged file; None for anything else."""
    seen = exc
    while seen is not None:
        text = str(seen).lower()
        if any(d in text for d in _DAMAGE):
            where = f" at {make_url(url).render_as_string(hide_password=True)}" if url else ""
            return StoreError(f"the store{where} is damaged: SQLite says {str(seen).splitlines()[0]!r}",
                              hint="restore the database file from a backup, then run mailsync verify; "
                                   "or move it away and run mailsync sync to download everything again "
                                   "(local changes not yet synced are lost that way)")
        seen = seen.__cause__ or seen.__context__
    return None


def _refuse_empty_file(engine: Engine) -> None:
    """A SQLite file of 0 bytes is a store that lost its contents (a failed copy, a full disk), not a
    new store: starting afresh there would silently drop the changes queued in it."""
    db = engine.url.database if engine.dialect.name == "sqlite" else None
    if db and db != ":memory:" and not db.startswith("file:") and os.path.exists(db) and os.path.getsize(db) == 0:
        raise StoreError(f"the store file {db} is empty (0 bytes): its contents were lost",
                         hint="restore it from a backup; or delete the file to start a new store (everything "
                              "is downloaded again, and local changes not yet synced are lost)")


def open_store(url: str, *, upgrade: bool = True) -> Store:
    """Open (and, when needed, create or migrate) the store at `url`."""
    try:
        db = sqlite_file(url)
    except Exception:  # create_store_engine says what is wrong with the URL
        db = None
    existed = db is not None and db.exists()  # a file made empty just now, 0600, is a new store
    engine = create_store_engine(url)
    try:
        if existed:
            _refuse_empty_file(engine)
    except StoreError:
        engine.dispose()
        raise
    try:
        rev = current_revision(engine)
        if rev != HEAD_REVISION:
            if not upgrade:
                raise StoreError(f"the store at {engine.url!r} is at schema {rev!r}, expected {HEAD_REVISION!r}",
                                 hint="run any mailsync command that writes (e.g. mailsync sync) to migrate it")
            if rev is not None or not create_schema(engine):
                migrate(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        damaged = store_damage(exc, url)
        if damaged is not None:
            raise damaged from exc
        raise StoreError(f"cannot open the store at {engine.url.render_as_string(hide_password=True)}: "
                         f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}",
                         hint="check [store] url and that the database server is running") from exc
    return Store(url=url, engine=engine, packs=_packs_for(engine))


def _packs_for(engine: Engine) -> PackStore | None:
    db = engine.url.database if engine.dialect.name == "sqlite" else None
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return PackStore(pack_folder_for(db))
