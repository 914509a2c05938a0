"""The whole schema as DDL: what a new SQLite store is created from, and how that file is made.

Owns: schema_metadata() (every table of the schema, the CRM layer's included), the DDL of the
schema for a dialect, and the file SQLITE_SCHEMA that db.create_schema runs for a new SQLite
store. Must not: open stores or migrate them (db.py does).

Why a file: declaring the CRM layer's models costs 25-55 ms and SQLAlchemy's create_all another
9 ms of every first sync, which needs neither; the models are imported only where the whole
schema is created (PostgreSQL), compared (tests) or used (the CRM layer). The file is generated
from the tables (tables.py, and the CRM layer's models), never edited: `python -m
mailsync.store.schema` writes it, and a unit test fails when it no longer matches them.
"""

from __future__ import annotations

import sys
from pathlib import Path

SQLITE_SCHEMA = Path(__file__).with_name("schema_sqlite.sql")
_END = ";\n"


def schema_metadata():
    """Base.metadata with every table of the schema. The CRM layer's tables (crm_*) live on the
    store's Base too, declared in mailsync.crm.models, which mailsync.store.models does not import
    (a sync without the CRM layer never needs them)."""
    from mailsync.crm import models as _crm_models  # noqa: F401  (declares the crm_* tables)
    from mailsync.store.models import Base

    return Base.metadata


def schema_ddl(dialect) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements of the whole schema for ``dialect``, tables in
    dependency order, each table's indexes after it by name."""
    from sqlalchemy.schema import CreateIndex, CreateTable

    out = []
    for table in schema_metadata().sorted_tables:
        out.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        out += [str(CreateIndex(ix).compile(dialect=dialect)).strip()
                for ix in sorted(table.indexes, key=lambda ix: ix.name)]
    return out


def sqlite_statements() -> list[str]:
    """The statements of SQLITE_SCHEMA."""
    text = SQLITE_SCHEMA.read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("-- "))
    return [s.strip() for s in body.split(_END) if s.strip()]


def render_sqlite() -> str:
    from sqlalchemy.dialects import sqlite

    head = ("-- Generated from the models by `python -m mailsync.store.schema`; do not edit.\n"
            "-- mailsync.store.db.create_schema runs it for a new SQLite store.\n")
    return head + "".join(s + _END + "\n" for s in schema_ddl(sqlite.dialect()))


if __name__ == "__main__":
    SQLITE_SCHEMA.write_text(render_sqlite(), encoding="utf-8")
    print(f"wrote {SQLITE_SCHEMA}", file=sys.stderr)
