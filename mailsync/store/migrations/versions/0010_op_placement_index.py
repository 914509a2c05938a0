"""An index on pending_ops.placement_id: deleting placements (expiring tombstones) sets the entries
that name them to NULL, which without the index read all of pending_ops once per placement.

Revision ID: 0010_op_placement_index
Revises: 0009_channels
"""
from alembic import op


revision = "0010_op_placement_index"
down_revision = "0009_channels"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_pending_ops_placement_id", "pending_ops", ["placement_id"])


def downgrade() -> None:
    op.drop_index("ix_pending_ops_placement_id", table_name="pending_ops")
