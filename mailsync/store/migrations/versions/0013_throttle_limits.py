"""The server's throttle beside each account: until when no sync contacts it, why, and how many
throttled runs came in a row (mailsync.imap.throttle, mailsync.sync.pacing); beside each folder, the
messages its account's max_age and max_size left out (mailsync.sync.limits).

Revision ID: 0013_throttle_limits
Revises: 0012_gmail_labels
"""
from alembic import op
import sqlalchemy as sa


revision = "0013_throttle_limits"
down_revision = "0012_gmail_labels"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("throttled_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("throttle_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("throttle_count", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("folders", sa.Column("left_out_age", sa.Integer(), nullable=True))
    op.add_column("folders", sa.Column("left_out_size", sa.Integer(), nullable=True))
    op.add_column("folders", sa.Column("limits", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("folders") as batch:
        batch.drop_column("limits")
        batch.drop_column("left_out_size")
        batch.drop_column("left_out_age")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("throttle_count")
        batch.drop_column("throttle_reason")
        batch.drop_column("throttled_until")
