"""Worker leases for `mailsync watch --worker`: watch_workers and account_leases
(mailsync/store/tables.py).

Revision ID: 0015_leases
Revises: 0014_mirror_snapshot
"""
from alembic import op
import sqlalchemy as sa


revision = "0015_leases"
down_revision = "0014_mirror_snapshot"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watch_workers",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("max_accounts", sa.Integer(), nullable=True),
        sa.Column("lease_ttl", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "account_leases",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("generation", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_index("ix_account_leases_worker", "account_leases", ["worker"])


def downgrade() -> None:
    op.drop_index("ix_account_leases_worker", table_name="account_leases")
    op.drop_table("account_leases")
    op.drop_table("watch_workers")
