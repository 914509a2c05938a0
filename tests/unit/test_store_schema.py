"""The Alembic migrations and the models agree, and open_store migrates a new database."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.config import Config

from mailsync.store.db import HEAD_REVISION, MIGRATIONS_DIR, current_revision, open_store
from mailsync.store.models import Base


def test_head_revision_constant_matches_alembic():
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_migrations_match_models(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert current_revision(store.engine) == HEAD_REVISION


def test_sqlite_store_uses_wal(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
