"""The schema revision this code reads and writes.

Owns: HEAD_REVISION, the newest migration in migrations/versions (a test checks it is Alembic's
head). Must not: import anything: the no-change check (mailsync.store.quiet) compares a store's
revision with it without loading SQLAlchemy or Alembic.
"""

HEAD_REVISION = "0016_leases"
