"""Alembic environment: runs migrations on the connection handed in by mailsync.store.db.migrate."""

from alembic import context

from mailsync.store.schema import schema_metadata

target_metadata = schema_metadata()
connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when someone runs the alembic CLI by hand
    raise SystemExit("run migrations through mailsync (mailsync.store.db.migrate), not the alembic CLI")
context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
