"""Watch daemon: per-account health (connected, push mode, last event, last sync, lag, errors).

Revision ID: 0004_watch
Revises: 0002_crm
"""
from alembic import op
import sqlalchemy as sa


revision = "0004_watch"
down_revision = "0002_crm"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watch_state",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("mode", sa.String(length=10), nullable=True),
        sa.Column("connections", sa.Integer(), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event", sa.Text(), nullable=True),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lag_seconds", sa.Float(), nullable=True),
        sa.Column("pending_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing", sa.Text(), nullable=True),
        sa.Column("daemon_pid", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id"),
    )


def downgrade() -> None:
    op.drop_table("watch_state")
