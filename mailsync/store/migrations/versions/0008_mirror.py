"""The live Maildir mirror's state: mirror_folders and mirror_files (mailsync/store/tables.py).

Revision ID: 0008_mirror
Revises: 0007_crm_sink_refs
"""
from alembic import op
import sqlalchemy as sa


revision = "0008_mirror"
down_revision = "0007_crm_sink_refs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mirror_folders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("folder_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("held", sa.Integer(), nullable=True),
        sa.Column("held_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "folder_id", name="uq_mirror_folders_account_folder"),
    )
    op.create_table(
        "mirror_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("placement_id", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("folder", sa.String(length=1000), nullable=False),
        sa.Column("name", sa.String(length=600), nullable=False),
        sa.Column("unique_name", sa.String(length=500), nullable=False),
        sa.Column("flags", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "unique_name", name="uq_mirror_files_account_unique"),
    )
    op.create_index("ix_mirror_files_placement_id", "mirror_files", ["placement_id"])


def downgrade() -> None:
    op.drop_index("ix_mirror_files_placement_id", table_name="mirror_files")
    op.drop_table("mirror_files")
    op.drop_table("mirror_folders")
