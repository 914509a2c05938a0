"""The server's folder id (RFC 8474 MAILBOXID) beside each folder, for folder identity on renames.

Revision ID: 0006_mailboxid
Revises: 0005_packs
"""
from alembic import op
import sqlalchemy as sa


revision = "0006_mailboxid"
down_revision = "0005_packs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("folders", sa.Column("mailboxid", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("folders") as batch:
        batch.drop_column("mailboxid")
