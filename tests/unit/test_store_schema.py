"""The Alembic migrations and the models agree, and open_store migrates a new database."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.config import Config

from mailsync.store.db import (HEAD_REVISION, MIGRATIONS_DIR, create_schema, create_store_engine,
                               current_revision, migrate, open_store)
from mailsync.store.schema import (SQLITE_SCHEMA, render_sqlite, schema_ddl, schema_metadata,
                                   sqlite_statements)


def test_head_revision_constant_matches_alembic():
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_migrations_match_models(tmp_path):
    """A database built by the migrations (as an existing store is upgraded) has the models' schema."""
    engine = create_store_engine(f"sqlite:///{tmp_path}/s.db")
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema_metadata())
    assert diff == []
    assert current_revision(engine) == HEAD_REVISION


def test_a_new_store_is_created_from_the_models_and_stamped(tmp_path):
    """open_store creates a new database without Alembic, with the same schema the migrations give,
    stamped at the head so that later upgrades start from the right place."""
    store = open_store(f"sqlite:///{tmp_path}/new.db")
    assert current_revision(store.engine) == HEAD_REVISION
    migrated = create_store_engine(f"sqlite:///{tmp_path}/migrated.db")
    migrate(migrated)

    def shape(engine):
        from sqlalchemy import inspect

        insp = inspect(engine)
        out = {}
        for table in insp.get_table_names():
            out[table] = (
                sorted((c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)),
                sorted((tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table)),
                sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
                sorted((tuple(f["constrained_columns"]), f["referred_table"]) for f in insp.get_foreign_keys(table)),
                insp.get_pk_constraint(table)["constrained_columns"],
            )
        return out

    assert shape(store.engine) == shape(migrated)
    assert not create_schema(store.engine)  # not empty any more: left alone


def test_an_older_store_is_migrated_and_keeps_its_bodies(tmp_path):
    """A store made before pack files (schema 0004, bodies in the database) is upgraded on open,
    and its bodies stay readable where they are; new bodies go to the pack folder."""
    from mailsync.store import repositories as repo
    from mailsync.store.uow import UnitOfWork

    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_store_engine(url)
    migrate(engine, "0004_watch")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO bodies (sha256, size, message_id, data) VALUES (?, ?, ?, ?)",
                             ("a" * 64, 5, None, b"hello"))
    engine.dispose()
    store = open_store(url)
    assert current_revision(store.engine) == HEAD_REVISION
    with UnitOfWork(store) as uow:
        assert repo.read_body(uow.session, "a" * 64) == b"hello"
        raw = b"Subject: new\r\n\r\nbody\r\n"
        import hashlib

        sha = hashlib.sha256(raw).hexdigest()
        repo.store_bodies(uow.session, [repo.NewBody(sha, len(raw), None, raw)])
        uow.commit()
    with UnitOfWork(store) as uow:
        assert repo.read_body(uow.session, sha) == raw
    assert store.packs is not None and store.packs.packs() == [1]


def test_sqlite_store_uses_wal(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_the_sqlite_schema_file_is_generated_from_the_models():
    """A new SQLite store is created from mailsync/store/schema_sqlite.sql; it must be exactly what
    the models give today."""
    from sqlalchemy.dialects import sqlite

    assert SQLITE_SCHEMA.read_text(encoding="utf-8") == render_sqlite(), (
        "the models changed: run `python -m mailsync.store.schema` to write the schema file again")
    assert sqlite_statements() == schema_ddl(sqlite.dialect())
    assert {s.split()[2] for s in sqlite_statements() if s.startswith("CREATE TABLE")} == set(schema_metadata().tables)


def test_a_new_sqlite_store_has_the_models_schema(tmp_path):
    """Created from the schema file, a store differs in nothing from the models (the CRM layer's
    tables included)."""
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), schema_metadata()) == []
    store.dispose()


def test_a_sync_does_not_declare_the_crm_models():
    """What a sync imports stays free of the CRM layer's models (their declarations cost 25-55 ms)."""
    import subprocess
    import sys

    code = ("import sys, mailsync.store.models, mailsync.store.db, mailsync.sync.engine, mailsync.store.verify; "
            "print('mailsync.crm.models' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
