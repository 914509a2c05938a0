"""The live Maildir mirror's fingerprint, mirror_snapshots, and an index on mirror_files by
(account, state, folder), which the no-change sync counts (mailsync/store/tables.py).

Revision ID: 0014_mirror_snapshot
Revises: 0013_throttle_limits
"""
from alembic import op
import sqlalchemy as sa


revision = "0014_mirror_snapshot"
down_revision = "0013_throttle_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mirror_snapshots",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_index("ix_mirror_files_state", "mirror_files", ["account_id", "state", "folder"])


def downgrade() -> None:
    op.drop_index("ix_mirror_files_state", table_name="mirror_files")
    op.drop_table("mirror_snapshots")
