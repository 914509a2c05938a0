"""Gmail messages: gmail_messages (mailsync/store/tables.py), so that one message shown in many
folders is downloaded once, and its labels are kept.

Revision ID: 0012_gmail_labels
Revises: 0011_two_way_channels
"""
from alembic import op
import sqlalchemy as sa


revision = "0012_gmail_labels"
down_revision = "0011_two_way_channels"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gmail_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("msgid", sa.String(length=20), nullable=False),
        sa.Column("thrid", sa.String(length=20), nullable=True),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "msgid", name="uq_gmail_messages_account_msgid"),
    )
    op.create_index("ix_gmail_messages_body", "gmail_messages", ["account_id", "body_sha256"])


def downgrade() -> None:
    op.drop_index("ix_gmail_messages_body", table_name="gmail_messages")
    op.drop_table("gmail_messages")
