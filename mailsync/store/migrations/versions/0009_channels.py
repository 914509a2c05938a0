"""Channels between accounts: channel_pairs (mailsync/store/tables.py).

Revision ID: 0009_channels
Revises: 0008_mirror
"""
from alembic import op
import sqlalchemy as sa


revision = "0009_channels"
down_revision = "0008_mirror"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_pairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("src_placement_id", sa.Integer(), nullable=False),
        sa.Column("dest_placement_id", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "src_placement_id", name="uq_channel_pairs_channel_src"),
    )


def downgrade() -> None:
    op.drop_table("channel_pairs")
