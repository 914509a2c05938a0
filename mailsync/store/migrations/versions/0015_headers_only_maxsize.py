"""Messages larger than an account's max_size held by their header section alone: bodies.headers_only
(mailsync/store/tables.py, mailsync/store/headers_only.py).

Revision ID: 0015_headers_only_maxsize
Revises: 0014_mirror_snapshot
"""
from alembic import op
import sqlalchemy as sa


revision = "0015_headers_only_maxsize"
down_revision = "0014_mirror_snapshot"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bodies") as batch:
        batch.add_column(sa.Column("headers_only", sa.Boolean(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("bodies") as batch:
        batch.drop_column("headers_only")
