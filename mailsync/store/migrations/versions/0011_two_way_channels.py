"""Two-way channels: the agreed state of each pair, and channel_folders (mailsync/store/tables.py).

Revision ID: 0011_two_way_channels
Revises: 0010_op_placement_index
"""
from alembic import op
import sqlalchemy as sa


revision = "0011_two_way_channels"
down_revision = "0010_op_placement_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("channel_pairs") as batch:
        batch.add_column(sa.Column("agreed_flags", sa.Text(), nullable=True))
        batch.add_column(sa.Column("dest_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("src_folder_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("dest_folder_id", sa.Integer(), nullable=True))
    op.create_table(
        "channel_folders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("src_folder_id", sa.Integer(), nullable=False),
        sa.Column("dest_folder_id", sa.Integer(), nullable=False),
        sa.Column("src_name", sa.Text(), nullable=False),
        sa.Column("dest_name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "src_folder_id", name="uq_channel_folders_channel_src"),
    )


def downgrade() -> None:
    op.drop_table("channel_folders")
    with op.batch_alter_table("channel_pairs") as batch:
        batch.drop_column("dest_folder_id")
        batch.drop_column("src_folder_id")
        batch.drop_column("dest_sha256")
        batch.drop_column("agreed_flags")
