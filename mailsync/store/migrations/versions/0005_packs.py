"""Bodies in pack files: where a SQLite store keeps a body's bytes (see mailsync.store.packs).

Revision ID: 0005_packs
Revises: 0004_watch
"""
from alembic import op
import sqlalchemy as sa


revision = "0005_packs"
down_revision = "0004_watch"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no table rebuild): bodies already in the database stay where they are.
    op.add_column("bodies", sa.Column("pack", sa.Integer(), nullable=True))
    op.add_column("bodies", sa.Column("pack_offset", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bodies") as batch:
        batch.drop_column("pack_offset")
        batch.drop_column("pack")
